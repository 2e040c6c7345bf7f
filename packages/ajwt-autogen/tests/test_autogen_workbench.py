"""Workbenches (issue 14): a ``StaticWorkbench`` subclass keeps its class and its own
``call_tool`` (it used to be replaced by a plain ``StaticWorkbench``), another in-process
workbench is secured whole, and one workbench shared by two agents is refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_core import CancellationToken
from autogen_core.tools import (
    StaticWorkbench,
    TextResultContent,
    ToolResult,
    ToolSchema,
    Workbench,
)

from ajwt_autogen import AJWTWorkbench, secure_agent, secure_team
from ajwt_demo.scenarios.autogen.scripted import call
from examples.autogen_support.app import Services, SupportTeam, build_team
from examples.autogen_support.desk import Desk

BILLING_SCRIPT = [
    [call("get_invoice", number="INV-42")],
    [call("issue_refund", number="INV-42", amount=30)],
    [call("close_ticket", ticket="T-7")],  # not a tool of the refund step
    "Done. TERMINATE",
]


class AuditedWorkbench(StaticWorkbench):
    """An application's StaticWorkbench subclass: it logs every call it routes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[str] = []

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        cancellation_token: CancellationToken | None = None,
        call_id: str | None = None,
    ) -> ToolResult:
        self.log.append(name)
        return await super().call_tool(name, arguments, cancellation_token, call_id)


class RouterWorkbench(Workbench):
    """An in-process workbench that is not a StaticWorkbench: it routes calls to the
    support tools itself and lists them without I/O."""

    def __init__(self, team_tools: Any) -> None:
        self.tools = {
            n: team_tools.tool(n) for n in ("get_invoice", "issue_refund", "close_ticket")
        }
        self.called: list[str] = []

    async def list_tools(self) -> list[ToolSchema]:
        return [tool.schema for tool in self.tools.values()]

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        cancellation_token: CancellationToken | None = None,
        call_id: str | None = None,
    ) -> ToolResult:
        self.called.append(name)
        result = await self.tools[name].run_json(dict(arguments or {}), CancellationToken())
        return ToolResult(name=name, result=[TextResultContent(content=str(result))])

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reset(self) -> None: ...

    async def save_state(self) -> Mapping[str, Any]:
        return {}

    async def load_state(self, state: Mapping[str, Any]) -> None: ...


def team_with_bench(services: Services, make_bench: Any) -> tuple[Desk, SupportTeam, Workbench]:
    shim = services.new_shim()
    team = build_team(shim, services.api_url, scripts={"billing": BILLING_SCRIPT}, secure=False)
    old = team.agents["billing"]
    bench = make_bench(team.tools)
    billing = AssistantAgent(
        "billing",
        team.models["billing"],
        workbench=bench,
        handoffs=["closer", "user"],
        system_message=old._system_messages[0].content,  # type: ignore[arg-type]
        max_tool_iterations=1,
    )
    team.agents["billing"] = billing
    team.swarm._participants[1] = billing  # type: ignore[attr-defined]
    secure_team(team.swarm, shim)
    run = shim.start_run(services.admin.user_token("alice"), "support")
    return Desk(services, shim, run, team), team, bench


async def test_a_static_workbench_subclass_keeps_its_own_call_tool(services: Services) -> None:
    desk, team, bench = team_with_bench(
        services,
        lambda tools: AuditedWorkbench(
            [tools.tool(n) for n in ("get_invoice", "issue_refund", "close_ticket")]
        ),
    )
    await desk.turn("Refund INV-42.")
    await team.aclose()
    assert type(team.agents["billing"]._workbench[0]) is AuditedWorkbench
    assert isinstance(bench, AuditedWorkbench)
    assert bench.log == ["get_invoice", "issue_refund", "close_ticket"]
    assert desk.seen() == [
        ("billing", "refund", "get_invoice", ["triage", "billing"]),
        ("billing", "refund", "issue_refund", ["triage", "billing"]),
    ]
    [error] = desk.tool_errors()
    assert "A-JWT refused tool 'close_ticket'" in error and error.endswith("[tool_not_allowed]")


async def test_another_in_process_workbench_is_secured_whole(services: Services) -> None:
    desk, team, bench = team_with_bench(services, RouterWorkbench)
    await desk.turn("Refund INV-42.")
    await team.aclose()
    secured = team.agents["billing"]._workbench[0]
    assert isinstance(secured, AJWTWorkbench) and secured.inner is bench
    assert isinstance(bench, RouterWorkbench)
    assert bench.called == ["get_invoice", "issue_refund"]  # the refused call never reached it
    assert [c.tool for c in desk.calls()] == ["get_invoice", "issue_refund"]
    assert {tuple(c.chain) for c in desk.calls()} == {("triage", "billing")}
    [error] = desk.tool_errors()
    assert "A-JWT refused tool 'close_ticket'" in error and error.endswith("[tool_not_allowed]")


def test_a_workbench_shared_by_two_agents_is_refused(services: Services) -> None:
    shim = services.new_shim()
    team = build_team(shim, services.api_url, secure=False)
    bench = StaticWorkbench([team.tools.tool("get_invoice")])
    first = AssistantAgent("billing", team.models["billing"], workbench=bench)
    second = AssistantAgent("closer", team.models["closer"], workbench=bench)
    secure_agent(first, shim)
    with pytest.raises(TypeError, match="give each agent its own workbench"):
        secure_agent(second, shim, register=False)
