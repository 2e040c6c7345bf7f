"""Resume and human pauses (issue 14): a team saved with AutoGen's ``save_state`` continues
in a new process (its run resumed from the IdP's ledger), and a hand-off after a human
pause longer than the tokens' lifetime works without a tool call first."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from ajwt_autogen import saved_run_id
from ajwt_core.shim import ShimEvent
from ajwt_demo.scenarios.autogen.scripted import call
from examples.autogen_support.app import SCOPES, Services
from examples.autogen_support.desk import new_desk

ROOT = Path(__file__).resolve().parents[3]
PAUSE = 1.5  # longer than the short-lived IdP's tokens are handed out (conftest)

#: The second process: the same application code, a new shim for the same client, the
#: saved state. Nothing else travels (no run object, no token, no key).
CHILD = """
import asyncio, json, sys
from autogen_agentchat.messages import HandoffMessage
from ajwt_autogen import run_of
from ajwt_core.shim import Shim
from ajwt_demo.scenarios.autogen.scripted import call
from examples.autogen_support.app import build_team

idp_url, api_url, client_id, secret, path = sys.argv[1:6]

async def main() -> None:
    shim = Shim(idp_url, client_id, client_secret=secret, default_audience=api_url)
    team = build_team(shim, api_url, scripts={"billing": [[call("transfer_to_closer")]]})
    with open(path) as saved:
        await team.swarm.load_state(json.load(saved))
    answer = HandoffMessage(source="user", target="billing", content="Yes, refund it.")
    result = await team.swarm.run(task=answer)
    run = run_of(team.swarm)
    await shim.acomplete("closer", run=run)
    await team.aclose()
    print(json.dumps({"run_id": run.run_id, "stop": result.stop_reason}))

asyncio.run(main())
"""


async def test_a_team_saved_in_one_process_continues_in_another(
    services: Services, tmp_path: Path
) -> None:
    client = services.admin.register_client(scopes=SCOPES)
    desk = new_desk(services, shim=services.shim_for(client))
    await desk.turn("Refund INV-42.")  # billing asks the user: the team stops
    state = await desk.team.swarm.save_state()
    await desk.team.aclose()
    await desk.shim.aclose()
    assert saved_run_id(state) == desk.run.run_id
    saved = tmp_path / "team.json"
    saved.write_text(json.dumps(state))

    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHILD, services.idp_url, services.api_url,
         client["client_id"], client["client_secret"], str(saved)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcome["run_id"] == desk.run.run_id
    assert "TERMINATE" in outcome["stop"]
    assert desk.seen() == [
        ("billing", "refund", "get_invoice", ["triage", "billing"]),
        ("billing", "refund", "issue_refund", ["triage", "billing"]),
        ("closer", "close", "close_ticket", ["triage", "billing", "closer"]),
    ]
    assert {c.subject for c in desk.calls()} == {"alice"}
    assert desk.completed() == ["route", "refund", "close"]
    assert services.admin.verify_ledger(desk.run.run_id)["ok"]


async def test_a_saved_state_without_a_run_loads_as_plain_autogen_state(
    services: Services,
) -> None:
    desk = new_desk(services)
    state = await desk.team.swarm.save_state()  # before any run: nothing to resume
    await desk.team.aclose()
    assert saved_run_id(state) is None
    again = new_desk(services, shim=desk.shim)
    await again.team.swarm.load_state(state)
    await again.team.aclose()


async def test_a_hand_off_after_a_pause_longer_than_the_tokens_live(
    short_services: Services,
) -> None:
    # billing has two tools (a step token is the only token that fits a hand-off);
    # after the pause it hands off at once, with no tool call first.
    scripts = {
        "billing": [
            [call("get_invoice", number="INV-42")],
            [call("issue_refund", number="INV-42", amount=30)],
            [call("transfer_to_user")],
            [call("transfer_to_closer")],
        ]
    }
    desk = new_desk(short_services, scripts=scripts)
    events: list[ShimEvent] = []
    desk.shim.subscribe(events.append)
    await desk.turn("Refund INV-42.")
    await asyncio.sleep(PAUSE)
    await desk.answer()
    await desk.team.aclose()
    assert desk.tool_errors() == [] and desk.refusals() == []
    assert desk.handoffs() == [
        ("triage", "billing"),
        ("billing", "user"),
        ("user", "billing"),  # the answer
        ("billing", "closer"),
    ]
    assert desk.seen()[-1] == ("closer", "close", "close_ticket", ["triage", "billing", "closer"])
    # After the pause billing's tokens were stale: the hand-off minted a step token.
    step_tokens = [
        e for e in events if e.kind == "token_minted" and e.agent == "billing" and e.tool is None
    ]
    assert [e.step for e in step_tokens] == ["refund"]
    assert desk.completed() == ["route", "refund"]
