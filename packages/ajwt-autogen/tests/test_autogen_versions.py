"""Several live versions of one agent id in one shim (issue 14): two tenants' teams whose
agents share names but not prompts, and a team resumed with a slightly changed agent.
Each call reaches the API as its own version (checksum), user and chain."""

from __future__ import annotations

import asyncio

from autogen_agentchat.agents import AssistantAgent

from ajwt_autogen import binding_of, saved_run_id, secure_agent, secure_team
from ajwt_core.errors import Reason
from ajwt_demo.scenarios.autogen.scripted import call
from examples.autogen_support.app import Services, build_team
from examples.autogen_support.desk import Desk, new_desk

CHAIN = ["triage", "billing"]


def full_story(desk: Desk) -> list[tuple[str, str, str | None, list[str]]]:
    return [
        ("billing", "refund", "get_invoice", CHAIN),
        ("billing", "refund", "issue_refund", CHAIN),
        ("closer", "close", "close_ticket", [*CHAIN, "closer"]),
    ]


async def test_two_tenants_teams_share_agent_names_in_one_shim(services: Services) -> None:
    shim = services.new_shim()
    acme = new_desk(services, shim=shim, user="alice", tenant="acme")
    globex = new_desk(services, shim=shim, user="bob", tenant="globex")
    for name in ("triage", "billing", "closer"):
        assert acme.checksum(name) != globex.checksum(name)

    async def serve(desk: Desk) -> None:
        await desk.turn("Refund INV-42.")
        await desk.answer()

    await asyncio.gather(serve(acme), serve(globex))
    for desk, user in ((acme, "alice"), (globex, "bob")):
        await desk.team.aclose()
        assert desk.tool_errors() == [] and desk.refusals() == []
        assert desk.seen() == full_story(desk)
        assert {c.subject for c in desk.calls()} == {user}
        assert {(c.agent, c.checksum) for c in desk.calls()} == {
            ("billing", desk.checksum("billing")),
            ("closer", desk.checksum("closer")),
        }
    assert acme.completed() == ["route", "refund"] == globex.completed()


async def test_agents_secured_one_by_one_ask_for_secure_team_when_versions_clash(
    services: Services,
) -> None:
    shim = services.new_shim()
    new_desk(services, shim=shim, tenant="acme")  # acme's team, secured with secure_team
    team = build_team(shim, services.api_url, tenant="globex", secure=False)
    for agent in team.agents.values():
        secure_agent(agent, shim)
    run = shim.start_run(services.admin.user_token("bob"), "support")
    desk = Desk(services, shim, run, team)
    desk.team.models["triage"].script.append("TERMINATE")
    await desk.turn("Refund INV-42.")
    await desk.team.aclose()
    assert desk.refusals() == [("triage", Reason.AMBIGUOUS_AGENT.value)]
    [message] = [m.content for m in desk.messages() if "ajwt_reason" in m.metadata]
    assert "secure_team(team, shim)" in message
    assert desk.calls() == []


async def test_a_team_resumed_with_a_slightly_changed_agent_hands_off_as_the_new_version(
    services: Services,
) -> None:
    shim = services.new_shim()
    first = new_desk(services, shim=shim)
    await first.turn("Refund INV-42.")
    state = await first.team.swarm.save_state()
    await first.team.aclose()
    assert saved_run_id(state) == first.run.run_id

    # The next release reworded billing's prompt; same process, same shim.
    second = build_team(
        shim, services.api_url, scripts={"billing": [[call("transfer_to_closer")]]}, secure=False
    )
    billing = second.agents["billing"]
    billing._system_messages[0].content += " Be brief."  # type: ignore[operator]
    secure_team(second.swarm, shim)
    await second.swarm.load_state(state)
    new_billing = binding_of(billing)
    assert new_billing is not None and new_billing.checksum != first.checksum("billing")
    assert new_billing.resumed is not None and new_billing.resumed.run_id == first.run.run_id

    desk = Desk(services, shim, first.run, second)
    await desk.answer()
    await second.aclose()
    assert desk.refusals() == [] and desk.tool_errors() == []
    ledger = desk.ledger()
    handed = [
        e["data"] for e in ledger if e["kind"] == "delegation" and e["data"]["to"] == "closer"
    ]
    assert len(handed) == 1 and handed[0]["from"] == "billing"
    assert desk.seen()[-1] == ("closer", "close", "close_ticket", [*CHAIN, "closer"])
    assert "refund" in desk.completed()


def test_a_second_team_with_identical_agents_shares_their_registrations(
    services: Services,
) -> None:
    shim = services.new_shim()
    one = new_desk(services, shim=shim)
    two = new_desk(services, shim=shim)
    for name in ("triage", "billing", "closer"):
        assert one.checksum(name) == two.checksum(name)
        assert shim.agent(name).checksum == one.checksum(name)  # one version only


def test_secure_team_leaves_participants_it_cannot_secure_as_people(services: Services) -> None:
    shim = services.new_shim()
    team = build_team(shim, services.api_url, secure=False)
    secure_team(team.swarm, shim)
    triage = binding_of(team.agents["triage"])
    assert triage is not None and triage.team is not None
    assert triage.team.is_human("user") and not triage.team.is_human("billing")
    assert isinstance(team.agents["billing"], AssistantAgent)
