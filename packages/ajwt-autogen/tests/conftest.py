"""Fixtures: the real IdP and resource server on 127.0.0.1, a shim per test, and a
helper that runs the AutoGen patcher swarm (scripted models, real agent loop)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent

from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.autogen.scripted import Turn
from ajwt_demo.scenarios.autogen.swarm import TASK, PatcherTeam, build_patcher_swarm
from ajwt_demo.stack import Stack, start_stack
from examples.autogen_support.app import Services, start_services


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("idp") / "idp.db")
    yield running
    running.close()


@pytest.fixture
def events() -> list[ShimEvent]:
    return []


@pytest.fixture
async def shim(stack: Stack, events: list[ShimEvent]) -> AsyncIterator[Shim]:
    """A shim for a fresh client; it mints before each tool runs (default audience)."""
    client = stack.new_client()
    the_shim = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
    )
    the_shim.subscribe(events.append)
    yield the_shim
    await the_shim.aclose()


@dataclass
class SwarmRun:
    """One run of the patcher swarm, and what the resource server and ledger saw."""

    run: Run
    team: PatcherTeam
    result: TaskResult
    calls: list[CallRecord]
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def seen(self) -> list[tuple[str | None, str | None, str | None, list[str]]]:
        return [(c.agent, c.step, c.tool, c.chain) for c in self.calls]

    def tool_errors(self) -> list[str]:
        return [
            result.content
            for message in self.result.messages
            if isinstance(message, ToolCallExecutionEvent)
            for result in message.content
            if result.is_error
        ]

    def texts(self) -> list[TextMessage]:
        return [m for m in self.result.messages if isinstance(m, TextMessage)]

    def ledger_kinds(self) -> list[str]:
        return [entry["kind"] for entry in self.ledger]


RunSwarm = Callable[..., Awaitable[SwarmRun]]


@pytest.fixture
def run_swarm(stack: Stack, shim: Shim) -> RunSwarm:
    """``await run_swarm(scripts=..., handoffs=..., tamper=...)``: one swarm run."""

    async def go(
        *,
        scripts: Mapping[str, Sequence[Turn]] | None = None,
        handoffs: Mapping[str, Sequence[str]] | None = None,
        agent_tools: Mapping[str, Sequence[str]] | None = None,
        tamper: Callable[[PatcherTeam], None] | None = None,
        user: str = "user:alice",
        pin_run: bool = False,
    ) -> SwarmRun:
        run = stack.start_run(shim, user)
        team = build_patcher_swarm(
            shim,
            stack.rs_url,
            scripts=scripts,
            handoffs=handoffs,
            agent_tools=agent_tools,
            run=run if pin_run else None,
        )
        if tamper is not None:
            tamper(team)
        try:
            with shim.run(run):
                result = await team.swarm.run(task=TASK)
        finally:
            await team.aclose()
        calls = [c for c in stack.api.state.calls if c.run_id == run.run_id]
        ledger = stack.admin.ledger(run.run_id)["entries"]
        return SwarmRun(run, team, result, calls, ledger)

    return go


# ----------------------------------------------------------- the support desk (issue 14)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """An IdP and the support API of ``examples.autogen_support`` on 127.0.0.1."""
    running = start_services(tmp_path_factory.mktemp("support") / "idp.db")
    yield running
    running.close()


#: Tokens of the short-lived IdP are handed out for ~1 s (lifetime 31 s minus the
#: shim's 30 s refresh margin): a pause of PAUSE seconds outlives every cached token.
SHORT_LIFETIME = 31
PAUSE = 1.5


@pytest.fixture(scope="session")
def short_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The same, with intent tokens that live 31 s: a human pause outlives them."""
    running = start_services(
        tmp_path_factory.mktemp("short") / "idp.db", token_lifetime=SHORT_LIFETIME
    )
    yield running
    running.close()
