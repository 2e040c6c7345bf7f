"""The callback handlers: every LangChain tool call is an A-JWT tool call.

Against the real IdP and resource server: the tool's HTTP calls carry the agent, step
and tool; a refused mint stops the tool before it runs; the per-call context is keyed
by the tool run's id, so it neither leaks into the caller nor mixes between
concurrent calls, sync or async.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt

from ajwt_core.errors import InvalidGrant, Reason, UnauthorizedClient
from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_demo.stack import Stack
from ajwt_langchain import AJWTCallbackHandler, AsyncAJWTCallbackHandler
from ajwt_langchain._tracker import tracker_for

SUPERVISOR = {
    "agent": "supervisor",
    "step": "triage",
    "tool": "list_repos",
    "chain": ["supervisor"],
    "user": "user:alice",
}


def caller(output: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(output)["caller"]
    return result


def hand_plan_to_planner(shim: Shim, run: Run, tools: dict[str, BaseTool]) -> None:
    with shim.run(run):
        tools["list_repos"].invoke(
            {}, config={"callbacks": [AJWTCallbackHandler(shim, "supervisor")]}
        )
    shim.complete("supervisor", "triage", run=run)
    shim.handoff("supervisor", "planner", "plan", run=run)


def test_sync_tool_call_carries_agent_step_and_tool(
    shim: Shim, run: Run, tools: dict[str, BaseTool], events: list[ShimEvent]
) -> None:
    handler = AJWTCallbackHandler(shim, agent="supervisor")
    with shim.run(run):
        output = tools["list_repos"].invoke({}, config={"callbacks": [handler]})
        # The context was keyed by the tool run: nothing leaks into the caller.
        assert shim.current() is None
    assert caller(output) == SUPERVISOR
    assert tracker_for(shim).open_calls() == 0
    assert [e.kind for e in events] == [
        "token_minted",
        "tool_started",
        "api_accepted",
        "tool_finished",
    ]


@pytest.mark.parametrize("handler_class", [AJWTCallbackHandler, AsyncAJWTCallbackHandler])
async def test_async_tool_call_carries_agent_step_and_tool(
    shim: Shim, run: Run, tools: dict[str, BaseTool], handler_class: type[Any]
) -> None:
    handler = handler_class(shim, agent="supervisor")
    with shim.run(run):
        output = await tools["list_repos"].ainvoke({}, config={"callbacks": [handler]})
        assert shim.current() is None
    assert caller(output) == SUPERVISOR
    assert tracker_for(shim).open_calls() == 0
    await shim.aclose()


@pytest.mark.parametrize("handler_class", [AJWTCallbackHandler, AsyncAJWTCallbackHandler])
async def test_sync_tool_run_from_async_code_finds_its_context(
    shim: Shim, run: Run, api: PatcherApi, handler_class: type[Any]
) -> None:
    def list_repos() -> str:  # a sync-only tool: LangChain runs it on a worker thread
        return json.dumps(api.get("/repos"))

    sync_only = StructuredTool.from_function(list_repos, description="List repositories.")
    with shim.run(run):
        output = await sync_only.ainvoke(
            {}, config={"callbacks": [handler_class(shim, "supervisor")]}
        )
    assert caller(output) == SUPERVISOR
    await shim.aclose()


def test_refused_mint_blocks_the_tool_before_it_runs(
    stack: Stack, shim: Shim, run: Run, api: PatcherApi, calls: Callable[[Run], list[CallRecord]]
) -> None:
    ran: list[str] = []

    def read_file(repo: str, path: str) -> str:
        ran.append(path)
        return json.dumps(api.get(f"/repos/{repo}/files/{path}"))

    tool = StructuredTool.from_function(read_file, description="Read one file.")
    args = {"repo": "acme/storefront", "path": "package.json"}
    with shim.run(run):
        # The planner before the supervisor's triage step is done (T8).
        with pytest.raises(InvalidGrant) as info:
            tool.invoke(args, config={"callbacks": [AJWTCallbackHandler(shim, "planner")]})
        assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
        # The supervisor calling the planner's tool (T7).
        with pytest.raises(UnauthorizedClient) as refused:
            tool.invoke(args, config={"callbacks": [AJWTCallbackHandler(shim, "supervisor")]})
        assert refused.value.reason == Reason.TOOL_NOT_ALLOWED
    assert ran == [] and calls(run) == []
    assert tracker_for(shim).open_calls() == 0


def test_tool_failure_is_reported_and_its_context_forgotten(
    shim: Shim, run: Run, events: list[ShimEvent]
) -> None:
    def list_repos() -> str:
        raise RuntimeError("the code host is down")

    tool = StructuredTool.from_function(list_repos, description="List repositories.")
    with shim.run(run), pytest.raises(RuntimeError):
        tool.invoke({}, config={"callbacks": [AJWTCallbackHandler(shim, "supervisor")]})
    assert events[-1].kind == "tool_failed"
    assert events[-1].detail == {"error": "the code host is down"}
    assert tracker_for(shim).open_calls() == 0


def test_a_tool_paused_by_an_interrupt_is_reported_as_paused_not_failed(
    shim: Shim, run: Run, events: list[ShimEvent]
) -> None:
    def list_repos() -> str:
        raise GraphInterrupt((Interrupt("Which organisation?"),))  # what interrupt() raises

    tool = StructuredTool.from_function(list_repos, description="List repositories.")
    with shim.run(run), pytest.raises(GraphInterrupt):
        tool.invoke({}, config={"callbacks": [AJWTCallbackHandler(shim, "supervisor")]})
    assert [e.kind for e in events[-2:]] == ["tool_started", "tool_paused"]
    assert events[-1].detail == {}
    assert tracker_for(shim).open_calls() == 0


def test_http_call_outside_any_tool_is_refused(shim: Shim, run: Run, stack: Stack) -> None:
    from ajwt_core.errors import AgentContextError

    AJWTCallbackHandler(shim, "supervisor")  # installs the resolver
    with (
        shim.run(run),
        httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http,
        pytest.raises(AgentContextError) as info,
    ):
        http.get("/repos")
    assert info.value.reason == Reason.NO_AGENT_CONTEXT


async def test_concurrent_calls_of_different_agents_and_runs_keep_their_contexts(
    stack: Stack, shim: Shim, api: PatcherApi, tools: dict[str, BaseTool]
) -> None:
    """One handler, two runs, two agents, calls interleaved on one event loop."""
    alice, bob = stack.start_run(shim, "user:alice"), stack.start_run(shim, "user:bob")
    hand_plan_to_planner(shim, bob, tools)

    async def slow_list_repos() -> str:
        await asyncio.sleep(0.01)  # let the other calls run in between
        return json.dumps(await api.aget("/repos"))

    async def slow_read_file(repo: str, path: str) -> str:
        await asyncio.sleep(0.01)
        return json.dumps(await api.aget(f"/repos/{repo}/files/{path}"))

    list_repos = StructuredTool.from_function(
        coroutine=slow_list_repos, name="list_repos", description="List repositories."
    )
    read_file = StructuredTool.from_function(
        coroutine=slow_read_file, name="read_file", description="Read one file."
    )
    handler = AsyncAJWTCallbackHandler(shim, agent=lambda metadata: metadata["agent"])

    async def as_supervisor() -> dict[str, Any]:
        with shim.run(alice):
            config: Any = {"callbacks": [handler], "metadata": {"agent": "supervisor"}}
            return caller(await list_repos.ainvoke({}, config=config))

    async def as_planner(path: str) -> dict[str, Any]:
        with shim.run(bob):
            config: Any = {"callbacks": [handler], "metadata": {"agent": "planner"}}
            args = {"repo": "acme/billing", "path": path}
            return caller(await read_file.ainvoke(args, config=config))

    seen = await asyncio.gather(
        *(as_supervisor() for _ in range(3)),
        *(as_planner("requirements.txt") for _ in range(3)),
    )
    assert seen[:3] == [SUPERVISOR] * 3
    assert (
        seen[3:]
        == [
            {
                "agent": "planner",
                "step": "plan",
                "tool": "read_file",
                "chain": ["supervisor", "planner"],
                "user": "user:bob",
            }
        ]
        * 3
    )
    assert tracker_for(shim).open_calls() == 0
    await shim.aclose()
    await api.aclose()


def test_handler_takes_the_agent_from_create_agent_name(
    shim: Shim,
    run: Run,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., Any],
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    agent = create_agent(
        fake_model(tool_call("list_repos"), "Listed."), [tools["list_repos"]], name="supervisor"
    )
    with shim.run(run):
        result = agent.invoke(
            {"messages": [("user", "List the repositories.")]},
            config={"callbacks": [AJWTCallbackHandler(shim)]},
        )
    assert result["messages"][-1].content == "Listed."
    assert [(c.agent, c.step, c.tool) for c in calls(run)] == [
        ("supervisor", "triage", "list_repos")
    ]


def test_handoff_tool_under_the_handler_is_a_signed_delegation(
    shim: Shim, run: Run, tools: dict[str, BaseTool]
) -> None:
    from ajwt_demo.scenarios.langgraph.agents import handoff_tool

    supervisor = AJWTCallbackHandler(shim, "supervisor")
    transfer = handoff_tool("planner")
    call = {
        "name": transfer.name,
        "args": {"state": {"messages": []}},
        "id": "call-9",
        "type": "tool_call",
    }
    with shim.run(run):
        tools["list_repos"].invoke({}, config={"callbacks": [supervisor]})
        transfer.invoke(call, config={"callbacks": [supervisor]})
        planner = AJWTCallbackHandler(shim, "planner")
        args = {"repo": "acme/storefront", "path": "package.json"}
        output = tools["read_file"].invoke(args, config={"callbacks": [planner]})
    assert caller(output)["chain"] == ["supervisor", "planner"]
    assert shim.completed_steps(run) == {"triage"}


async def test_sync_handler_refusal_stops_an_async_tool(
    shim: Shim, run: Run, tools: dict[str, BaseTool], calls: Callable[[Run], list[CallRecord]]
) -> None:
    args = {"repo": "acme/storefront", "path": "package.json"}
    with shim.run(run), pytest.raises(InvalidGrant) as info:
        await tools["read_file"].ainvoke(
            args, config={"callbacks": [AJWTCallbackHandler(shim, "planner")]}
        )
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert calls(run) == []


def test_handler_inside_an_agent_node_refines_the_nodes_context_with_the_tool(
    shim: Shim, run: Run, calls: Callable[[Run], list[CallRecord]]
) -> None:
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    from ajwt_langchain import ajwt_node

    class State(TypedDict, total=False):
        done: bool

    inside: list[Any] = []

    def list_repos() -> str:
        inside.append(shim.current())
        return "[]"

    tool = StructuredTool.from_function(list_repos, description="List repositories.")
    handler = AJWTCallbackHandler(shim)  # the agent is the node's

    def supervisor(state: State) -> dict[str, Any]:
        inside.append(shim.current())
        tool.invoke({}, config={"callbacks": [handler]})
        return {"done": True}

    builder = StateGraph(State)
    builder.add_node("supervisor", ajwt_node(shim, supervisor, agent="supervisor"))
    builder.add_edge(START, "supervisor")
    with shim.run(run):
        builder.compile().invoke({})
    node, call = inside
    # The node itself is not a tool call: its own HTTP calls would be refused.
    assert node is None
    assert (call.agent, call.step, call.tool) == ("supervisor", "triage", "list_repos")
    assert shim.completed_steps(run) == {"triage"}


def test_tool_call_under_the_handler_inside_another_agents_acting_block_is_its_own(
    shim: Shim, run: Run, tools: dict[str, BaseTool]
) -> None:
    # A supervisor's tool runs a sub-agent whose tools are seen by the handler: the
    # sub-agent's tool call acts as the sub-agent, not as the supervisor whose
    # shim.acting block (an outer tool call) is still open around it.
    hand_plan_to_planner(shim, run, tools)
    planner = AJWTCallbackHandler(shim, "planner")
    args = {"repo": "acme/storefront", "path": "package.json"}
    with shim.run(run), shim.acting("supervisor", step="triage", tool="list_repos"):
        output = tools["read_file"].invoke(args, config={"callbacks": [planner]})
        assert shim.current() is not None and shim.current().agent == "supervisor"
    assert caller(output)["agent"] == "planner"
    assert caller(output)["tool"] == "read_file"


def test_acting_block_entered_inside_a_handler_tool_call_is_the_one_acting(
    shim: Shim, run: Run, tools: dict[str, BaseTool]
) -> None:
    # The other nesting: a tool call seen by the handler enters shim.acting for
    # another agent; inside the block, that agent acts; after it, the tool call's.
    hand_plan_to_planner(shim, run, tools)
    seen: list[tuple[str, str | None]] = []

    def read_file(repo: str, path: str) -> str:
        with shim.acting("supervisor", step="triage", tool="list_repos") as inner:
            current = shim.current()
            assert current is not None and current.acting_block is inner.acting_block
            seen.append((current.agent, current.tool))
        current = shim.current()
        assert current is not None
        seen.append((current.agent, current.tool))
        return "{}"

    tool = StructuredTool.from_function(read_file, description="Read a file.")
    with shim.run(run):
        tool.invoke(
            {"repo": "acme/storefront", "path": "package.json"},
            config={"callbacks": [AJWTCallbackHandler(shim, "planner")]},
        )
    assert seen == [("supervisor", "list_repos"), ("planner", "read_file")]
