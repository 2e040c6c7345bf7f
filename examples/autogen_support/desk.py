"""Run the support desk for one user and see what the API and the run's ledger saw.

``python -m examples.autogen_support`` runs the whole story offline: triage routes the
ticket, billing reads and refunds the invoice and asks the customer (the team stops:
a human pause), the customer answers, billing hands off to the closer, which closes the
ticket. It prints every API call with the user, agent, step, tool and delegation chain
the API verified.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import HandoffMessage, TextMessage, ToolCallExecutionEvent

from ajwt_autogen import binding_of
from ajwt_core.shim import Run, Shim
from ajwt_demo.scenarios.autogen.scripted import Turn
from examples.autogen_support.app import Call, Services, SupportTeam, build_team, start_services


@dataclass
class Desk:
    """A support run's outcome: what the API and the ledger saw, and the team."""

    services: Services
    shim: Shim
    run: Run
    team: SupportTeam
    results: list[TaskResult] = field(default_factory=list)

    def checksum(self, name: str) -> str | None:
        """The registered checksum of this team's agent ``name``."""
        binding = binding_of(self.team.agents[name])
        return binding.checksum if binding is not None else None

    def calls(self) -> list[Call]:
        return self.services.calls_of(self.run.run_id)

    def seen(self) -> list[tuple[str, str, str | None, list[str]]]:
        return [(c.agent, c.step, c.tool, c.chain) for c in self.calls()]

    def ledger(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.services.admin.ledger(self.run.run_id)["entries"]
        return entries

    def kinds(self) -> list[str]:
        return [entry["kind"] for entry in self.ledger()]

    def completed(self) -> list[str]:
        return [e["data"]["step"] for e in self.ledger() if e["kind"] == "step_completed"]

    def refused_mints(self) -> list[tuple[str, str, str]]:
        return [
            (e["data"]["agent"], e["data"]["step"], e["data"]["reason"])
            for e in self.ledger()
            if e["kind"] == "mint_refused"
        ]

    def messages(self) -> list[Any]:
        return [m for result in self.results for m in result.messages]

    def tool_errors(self) -> list[str]:
        return [
            r.content
            for m in self.messages()
            if isinstance(m, ToolCallExecutionEvent)
            for r in m.content
            if r.is_error
        ]

    def refusals(self) -> list[tuple[str, str]]:
        """(source, reason) of each turn A-JWT turned into a text message."""
        return [
            (m.source, m.metadata["ajwt_reason"])
            for m in self.messages()
            if isinstance(m, TextMessage) and "ajwt_reason" in m.metadata
        ]

    def handoffs(self) -> list[tuple[str, str]]:
        return [(m.source, m.target) for m in self.messages() if isinstance(m, HandoffMessage)]

    async def turn(self, task: str | HandoffMessage) -> TaskResult:
        """One ``team.run`` inside the run (a human's answer is a HandoffMessage)."""
        with self.shim.run(self.run):
            result = await self.team.swarm.run(task=task)
        self.results.append(result)
        return result

    async def answer(self, text: str = "Yes, please refund it.") -> TaskResult:
        return await self.turn(HandoffMessage(source="user", target="billing", content=text))


def new_desk(
    services: Services,
    *,
    shim: Shim | None = None,
    user: str = "alice",
    scripts: Mapping[str, Sequence[Turn]] | None = None,
    tenant: str = "acme",
) -> Desk:
    the_shim = shim or services.new_shim()
    team = build_team(the_shim, services.api_url, scripts=scripts, tenant=tenant)
    run = the_shim.start_run(services.admin.user_token(user), "support")
    return Desk(services, the_shim, run, team)


async def story(services: Services) -> Desk:
    """The whole ticket, with the customer's answer after the pause."""
    desk = new_desk(services)
    try:
        await desk.turn("Please refund invoice INV-42, I was charged twice.")
        await desk.answer()
        await desk.shim.acomplete("closer", run=desk.run, checksum=desk.checksum("closer"))
    finally:
        await desk.team.aclose()
        await desk.shim.aclose()
    return desk


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp) / "idp.db")
        try:
            desk = asyncio.run(story(services))
            for c in desk.calls():
                print(
                    f"{c.method:4} {c.path:24} user={c.subject} agent={c.agent:<8} "
                    f"step={c.step:<7} tool={c.tool!s:<13} chain={' → '.join(c.chain)}"
                )
            verified = bool(services.admin.verify_ledger(desk.run.run_id)["ok"])
            print(f"steps completed: {', '.join(desk.completed())}; ledger verifies: {verified}")
        finally:
            services.close()
    return 0 if verified and len(desk.calls()) == 3 else 1
