"""``ToolNode(wrap_tool_call=...)`` and ``create_agent`` middleware, sync and async.

The wrapper checks and mints before ``execute`` and sets the acting context around
it; a refusal stops the tool (raised, or answered as an error ``ToolMessage``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from ajwt_core.errors import InvalidGrant, Reason, UnauthorizedClient
from ajwt_core.shim import AgentContext, Run, Shim, ShimEvent
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_langchain import AJWTAgentMiddleware, AJWTToolWrapper


def react_graph(model: Any, tools: list[BaseTool], wrapper: AJWTToolWrapper) -> Any:
    """A model node and a ToolNode whose tool calls go through ``wrapper``."""

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node(
        "tools",
        ToolNode(
            tools, wrap_tool_call=wrapper.wrap_tool_call, awrap_tool_call=wrapper.awrap_tool_call
        ),
    )
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile()


ASK = {"messages": [("user", "List the repositories.")]}


def test_tool_node_call_runs_as_the_agent_at_its_step(
    shim: Shim,
    run: Run,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
    calls: Callable[[Run], list[CallRecord]],
    events: list[ShimEvent],
) -> None:
    graph = react_graph(
        fake_model(tool_call("list_repos"), "Done."),
        [tools["list_repos"]],
        AJWTToolWrapper(shim, agent="supervisor"),
    )
    with shim.run(run):
        result = graph.invoke(ASK)
    assert result["messages"][-1].content == "Done."
    [call] = calls(run)
    assert (call.agent, call.step, call.tool, call.chain) == (
        "supervisor",
        "triage",
        "list_repos",
        ["supervisor"],
    )
    assert [e.kind for e in events] == [
        "token_minted",
        "tool_started",
        "api_accepted",
        "tool_finished",
    ]
    assert shim.current() is None


async def test_async_tool_node_call_runs_as_the_agent(
    shim: Shim,
    run: Run,
    api: PatcherApi,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    graph = react_graph(
        fake_model(tool_call("list_repos"), "Done."),
        [tools["list_repos"]],
        AJWTToolWrapper(shim, agent="supervisor"),
    )
    with shim.run(run):
        await graph.ainvoke(ASK)
    assert [(c.agent, c.step, c.tool) for c in calls(run)] == [
        ("supervisor", "triage", "list_repos")
    ]
    await shim.aclose()
    await api.aclose()


def test_acting_context_is_set_around_the_tool_only(
    shim: Shim, run: Run, fake_model: Callable[..., Any], tool_call: Callable[..., AIMessage]
) -> None:
    seen: list[AgentContext | None] = []

    def list_repos() -> str:
        seen.append(shim.current())
        return "[]"

    tool = StructuredTool.from_function(
        list_repos, description="List the organisation's repositories with their dependencies."
    )
    graph = react_graph(
        fake_model(tool_call("list_repos"), "Done."), [tool], AJWTToolWrapper(shim, "supervisor")
    )
    with shim.run(run):
        graph.invoke(ASK)
        assert shim.current() is None
    [context] = seen
    assert context is not None
    assert (context.agent, context.step, context.tool) == ("supervisor", "triage", "list_repos")


def test_refused_mint_raises_out_of_the_graph(
    shim: Shim,
    run: Run,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    reading = tool_call("read_file", repo="acme/storefront", path="package.json")
    graph = react_graph(
        fake_model(reading, "Done."), [tools["read_file"]], AJWTToolWrapper(shim, "planner")
    )
    with shim.run(run), pytest.raises(InvalidGrant) as info:
        graph.invoke(ASK)
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert calls(run) == []


def test_refusal_can_answer_the_model_instead(
    shim: Shim,
    run: Run,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    reading = tool_call("read_file", repo="acme/storefront", path="package.json")
    wrapper = AJWTToolWrapper(shim, "planner", on_refusal="message")
    graph = react_graph(fake_model(reading, "Gave up."), [tools["read_file"]], wrapper)
    with shim.run(run):
        result = graph.invoke(ASK)
    answer = result["messages"][2]
    assert isinstance(answer, ToolMessage) and answer.status == "error"
    assert "Refused by A-JWT (dependencies_incomplete)" in str(answer.content)
    assert result["messages"][-1].content == "Gave up."
    assert calls(run) == []


def test_create_agent_middleware_checks_tools_and_completes_the_step(
    shim: Shim,
    run: Run,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    middleware = AJWTAgentMiddleware(shim, complete_on_finish=True)
    agent = create_agent(
        fake_model(tool_call("list_repos"), "Listed."),
        [tools["list_repos"]],
        middleware=[middleware],
        name="supervisor",
    )
    with shim.run(run):
        agent.invoke(ASK)
    assert [(c.agent, c.step, c.tool) for c in calls(run)] == [
        ("supervisor", "triage", "list_repos")
    ]
    assert shim.completed_steps(run) == {"triage"}


async def test_create_agent_middleware_async(
    shim: Shim,
    run: Run,
    api: PatcherApi,
    tools: dict[str, BaseTool],
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
) -> None:
    middleware = AJWTAgentMiddleware(shim, "supervisor", complete_on_finish=True)
    agent = create_agent(
        fake_model(tool_call("list_repos"), "Listed."),
        [tools["list_repos"]],
        middleware=[middleware],
    )
    with shim.run(run):
        result = await agent.ainvoke(ASK)
    assert json.loads(str(result["messages"][2].content))["caller"]["agent"] == "supervisor"
    assert shim.completed_steps(run) == {"triage"}
    await shim.aclose()
    await api.aclose()


def test_same_named_tool_of_a_sub_agent_inside_a_wrapped_call_is_gated_as_its_own(
    shim: Shim, run: Run, fake_model: Callable[..., Any], tool_call: Callable[..., AIMessage]
) -> None:
    # The supervisor's list_repos runs a sub-agent whose own tool is also named
    # list_repos: the wrapper securing the outer call does not cover the inner one,
    # which the handler gates as the planner (whose step has no list_repos).
    from ajwt_langchain import AJWTCallbackHandler

    def inner_list_repos() -> str:
        raise AssertionError("the planner may not call list_repos")

    inner = StructuredTool.from_function(
        inner_list_repos, name="list_repos", description="List repositories."
    )
    refused: list[UnauthorizedClient] = []

    def list_repos() -> str:
        call = {"name": "list_repos", "args": {}, "id": "sub-agent-call", "type": "tool_call"}
        with pytest.raises(UnauthorizedClient) as info:
            inner.invoke(call, config={"callbacks": [AJWTCallbackHandler(shim, "planner")]})
        refused.append(info.value)
        return "[]"

    tool = StructuredTool.from_function(
        list_repos, description="List the organisation's repositories with their dependencies."
    )
    graph = react_graph(
        fake_model(tool_call("list_repos"), "Done."), [tool], AJWTToolWrapper(shim, "supervisor")
    )
    with shim.run(run):
        graph.invoke(ASK)
    [error] = refused
    assert error.reason == Reason.TOOL_NOT_ALLOWED
    assert "agent 'planner' may not call tool 'list_repos'" in error.description


def test_callback_handler_beside_the_wrapper_does_not_gate_the_same_call_twice(
    shim: Shim,
    run: Run,
    fake_model: Callable[..., Any],
    tool_call: Callable[..., AIMessage],
    events: list[ShimEvent],
) -> None:
    from ajwt_langchain import AJWTCallbackHandler

    tool = StructuredTool.from_function(
        lambda: "[]",
        name="list_repos",
        description="List the organisation's repositories with their dependencies.",
    )
    graph = react_graph(
        fake_model(tool_call("list_repos"), "Done."), [tool], AJWTToolWrapper(shim, "supervisor")
    )
    with shim.run(run):
        graph.invoke(ASK, config={"callbacks": [AJWTCallbackHandler(shim, "supervisor")]})
    assert [e.kind for e in events].count("tool_started") == 1
    assert [e.kind for e in events].count("tool_finished") == 1
