"""Run the AutoGen patcher swarm against an embedded IdP and resource server.

Starts the A-JWT IdP and the reference API on 127.0.0.1, runs the DESIGN §11 workflow
as an AutoGen ``Swarm`` with scripted models, and prints every API call the resource
server accepted with the agent, step, tool and delegation chain it verified.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage

from ajwt_core.shim import Shim, ShimEvent
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.autogen import TASK, run_patcher
from ajwt_demo.stack import Stack, start_stack


@dataclass
class Outcome:
    """What one run of the example did."""

    run_id: str
    calls: list[CallRecord]
    pulls: list[dict[str, object]]
    events: list[ShimEvent]
    messages: list[BaseAgentEvent | BaseChatMessage]
    ledger_ok: bool
    stop_reason: str | None = None
    handoffs: list[str] = field(default_factory=list)


def run_on(stack: Stack) -> Outcome:
    """Run the example on a running stack (a fresh client, agents and run)."""
    client = stack.new_client()
    shim = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
    )
    events: list[ShimEvent] = []
    shim.subscribe(events.append)
    run = stack.start_run(shim)
    pulls_before = len(stack.api.state.pulls)

    async def go() -> list[BaseAgentEvent | BaseChatMessage]:
        try:
            result = await run_patcher(shim, run, stack.rs_url, task=TASK)
        finally:
            await shim.aclose()
        return list(result.messages)

    messages = asyncio.run(go())
    calls = [c for c in stack.api.state.calls if c.run_id == run.run_id]
    return Outcome(
        run_id=run.run_id,
        calls=calls,
        pulls=list(stack.api.state.pulls[pulls_before:]),
        events=events,
        messages=messages,
        ledger_ok=bool(stack.admin.verify_ledger(run.run_id)["ok"]),
        handoffs=[
            f"{e.detail['from_agent']} → {e.agent} ({e.step})"
            for e in events
            if e.kind == "handoff"
        ],
    )


def run_example(db_path: Path | None = None) -> Outcome:
    """Start the embedded stack, run the swarm once, stop the stack."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(db_path or Path(tmp) / "idp.db")
        try:
            return run_on(stack)
        finally:
            stack.close()


def report(outcome: Outcome) -> str:
    lines = [f"AutoGen Swarm under A-JWT, run {outcome.run_id}", "", "API calls:"]
    for c in outcome.calls:
        lines.append(
            f"  {c.method:4} {c.path:42} agent={c.agent!s:<10} step={c.step!s:<8} "
            f"tool={c.tool!s:<19} chain={' → '.join(c.chain)}"
        )
    lines += ["", "Handoffs (signed delegations):"]
    lines += [f"  {h}" for h in outcome.handoffs]
    lines += ["", "Pull requests:"]
    lines += [f"  #{p['number']} {p['repo']}: {p['title']}" for p in outcome.pulls]
    lines += ["", f"Run ledger verifies: {outcome.ledger_ok}"]
    return "\n".join(lines)


def main() -> int:
    outcome = run_example()
    print(report(outcome))
    return 0 if outcome.ledger_ok and len(outcome.calls) == 10 else 1
