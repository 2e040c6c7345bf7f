"""The AutoGen 0.7 internals the adapter reads are where it expects them.

If one of these fails after an AutoGen upgrade, ``ajwt_autogen/_internals.py`` is the
one file to adapt.
"""

from __future__ import annotations

import asyncio
import doctest

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow, Swarm
from autogen_core.model_context import BufferedChatCompletionContext
from autogen_core.tools import (
    FunctionTool,
    StaticStreamWorkbench,
    StaticWorkbench,
    ToolOverride,
)

import ajwt_autogen.adapter
import ajwt_autogen.draft
import ajwt_autogen.manifest
import ajwt_autogen.refusals
import ajwt_autogen.resume
import ajwt_demo.scenarios.autogen.scripted
from ajwt_autogen import _internals
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient


def read_file(repo: str, path: str) -> str:
    return f"{repo}/{path}"


async def list_repos() -> str:
    return ""


def test_assistant_agent_internals() -> None:
    agent = AssistantAgent(
        "planner",
        ScriptedChatCompletionClient([]),
        tools=[read_file],
        handoffs=["classifier"],
        system_message="Plan.",
    )
    assert _internals.system_message(agent) == "Plan."
    assert isinstance(_internals.model_client(agent), ScriptedChatCompletionClient)
    [bench] = _internals.workbenches(agent)
    assert isinstance(bench, StaticStreamWorkbench)
    tools, overrides = _internals.static_tools(bench) or ([], {})
    assert [t.name for t in tools] == ["read_file"] and overrides == {}
    assert [t["name"] for t in _internals.listed_tools(bench)] == ["read_file"]
    assert [t.name for t in _internals.handoff_tools(agent)] == ["transfer_to_classifier"]
    assert _internals.handoffs(agent)["transfer_to_classifier"].target == "classifier"


def test_team_and_context_internals() -> None:
    model = ScriptedChatCompletionClient([])
    context = BufferedChatCompletionContext(buffer_size=3)
    first = AssistantAgent("first", model, tools=[read_file], model_context=context)
    second = AssistantAgent("second", model)
    assert _internals.model_context(first) is context
    assert _internals.participants(Swarm([first, second])) == [first, second]
    builder = DiGraphBuilder().add_node(first).add_node(second).add_edge(first, second)
    graph = builder.build()
    assert _internals.graph(GraphFlow([first, second], graph=graph)) is graph
    [bench] = _internals.workbenches(first)
    replacement = FunctionTool(list_repos, description="")
    _internals.set_static_tools(bench, [replacement])
    assert (_internals.static_tools(bench) or ([], {}))[0] == [replacement]


def test_function_tool_internals() -> None:
    assert _internals.sync_function(FunctionTool(read_file, description="")) is read_file
    assert _internals.sync_function(FunctionTool(list_repos, description="")) is None
    assert _internals.tool_function(FunctionTool(list_repos, description="")) is list_repos


def test_static_workbench_listing_is_autogens() -> None:
    # The adapter lists a StaticWorkbench itself (each tool's schema remembered): what
    # it lists must be what AutoGen's own list_tools gives, overrides included.
    tools = [
        FunctionTool(read_file, description="Read one file."),
        FunctionTool(list_repos, description="List the repositories.", strict=True),
    ]
    overrides = {"read_file": ToolOverride(name="fetch_file", description="Fetch one file.")}
    bench = StaticWorkbench(tools, tool_overrides=overrides)
    assert _internals.listed_tools(bench) == asyncio.run(bench.list_tools())
    plain = StaticWorkbench(tools)
    assert _internals.listed_tools(plain) == asyncio.run(plain.list_tools())


@pytest.mark.parametrize(
    "module",
    [
        ajwt_autogen.adapter,
        ajwt_autogen.draft,
        ajwt_autogen.manifest,
        ajwt_autogen.refusals,
        ajwt_autogen.resume,
        ajwt_demo.scenarios.autogen.scripted,
    ],
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0
