"""The few AutoGen 0.7 internals the adapter reads or replaces, in one place.

AutoGen exposes no public accessor for an ``AssistantAgent``'s system message, tools,
handoffs, model client or model context, for a team's participants or a ``GraphFlow``'s
graph, nor for the function inside a ``FunctionTool``; these helpers
read the private attributes (checked against autogen-agentchat/core 0.7.5 by the tests,
``test_internals.py``) so that a change in a later AutoGen breaks here, loudly, and
nowhere else.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import ChatAgent, Handoff, Team
from autogen_agentchat.teams import BaseGroupChat, DiGraph, GraphFlow
from autogen_agentchat.tools import AgentTool, TeamTool
from autogen_core.model_context import ChatCompletionContext
from autogen_core.models import ChatCompletionClient
from autogen_core.tools import BaseTool, FunctionTool, StaticWorkbench, ToolSchema, Workbench


def system_message(agent: AssistantAgent) -> str:
    """The system message the model sees ("" when the agent has none)."""
    return "\n".join(str(message.content) for message in agent._system_messages)


def model_client(agent: AssistantAgent) -> ChatCompletionClient:
    return agent._model_client


def workbenches(agent: AssistantAgent) -> list[Workbench]:
    return list(agent._workbench)


def set_workbenches(agent: AssistantAgent, benches: Sequence[Workbench]) -> None:
    agent._workbench = list(benches)


def handoff_tools(agent: AssistantAgent) -> list[BaseTool[Any, Any]]:
    return list(agent._handoff_tools)


def set_handoff_tools(agent: AssistantAgent, tools: Sequence[BaseTool[Any, Any]]) -> None:
    agent._handoff_tools = list(tools)


def handoffs(agent: AssistantAgent) -> dict[str, Handoff]:
    """The agent's handoffs by the name of their tool (``transfer_to_<target>``)."""
    return dict(agent._handoffs)


def static_tools(bench: Workbench) -> tuple[list[BaseTool[Any, Any]], dict[str, Any]] | None:
    """The tools and tool overrides of a ``StaticWorkbench`` (``None`` for other benches)."""
    if not isinstance(bench, StaticWorkbench):
        return None
    return list(bench._tools), dict(bench._tool_overrides)


def set_static_tools(bench: Workbench, tools: Sequence[BaseTool[Any, Any]]) -> None:
    """Replace a ``StaticWorkbench``'s tools in place (the bench keeps its class, so a
    subclass's own ``call_tool`` still runs)."""
    bench._tools = list(tools)  # type: ignore[attr-defined]


def task_runner(tool: BaseTool[Any, Any]) -> ChatAgent | Team | None:
    """The agent an ``AgentTool`` runs, or the team a ``TeamTool`` runs (``None`` for
    any other tool)."""
    if _runs_tasks(type(tool)):
        runner: ChatAgent | Team = tool._task_runner  # type: ignore[attr-defined]
        return runner
    return None


@functools.lru_cache(maxsize=256)
def _runs_tasks(cls: type) -> bool:
    # By class, once: ``isinstance`` against these classes walks AutoGen's runtime
    # protocols (``hasattr`` on every member, the tool's schema built each time), and it
    # is asked at every tool call.
    return issubclass(cls, AgentTool | TeamTool)


def model_context(agent: AssistantAgent) -> ChatCompletionContext:
    return agent._model_context


def participants(team: BaseGroupChat) -> list[ChatAgent | Team]:
    """The team's participants, in the order they were given."""
    return list(team._participants)


def graph(team: GraphFlow) -> DiGraph:
    """The graph of a ``GraphFlow``."""
    return team._graph


def is_mcp(bench: Workbench) -> bool:
    """Whether ``bench`` is autogen-ext's ``McpWorkbench`` (its tools run in an MCP server)."""
    return any(kind.__module__.startswith("autogen_ext.tools.mcp") for kind in type(bench).__mro__)


#: A class attribute of the adapter's tool wrappers (``AJWTTool``, the handoff tool):
#: their schema is their ``inner`` tool's.
SCHEMA_OF_INNER = "_ajwt_schema_of_inner"

# What each tool's schema was computed from, and the schema (see tool_schema).
_schemas: weakref.WeakKeyDictionary[BaseTool[Any, Any], tuple[tuple[Any, ...], ToolSchema]] = (
    weakref.WeakKeyDictionary()
)
_schemas_lock = threading.Lock()
_CORE = "__pydantic_core_schema__"


def tool_schema(tool: BaseTool[Any, Any]) -> ToolSchema:
    """``tool.schema``, computed again only when what ``BaseTool.schema`` builds it from
    changed: the tool's name, description, argument type (or that type, rebuilt) or
    strictness.

    ``BaseTool.schema`` asks pydantic for the argument type's JSON schema on every read
    (about 0.15 ms a tool), and the shim re-reads the live agent's manifest before every
    mint, hand-off, completion and tool call. A tool class with a ``schema`` of its own
    is asked every time; a wrapper of the adapter's own (``SCHEMA_OF_INNER``) is
    described by the tool it wraps. The answer is shared: callers must not change it
    (what the model is offered is a copy, :func:`offered_schema`).
    """
    while getattr(type(tool), SCHEMA_OF_INNER, False):
        tool = tool.inner  # type: ignore[attr-defined]
    if type(tool).schema is not BaseTool.schema:
        return tool.schema
    args = tool._args_type
    # The class's core schema too: pydantic replaces it when the class is rebuilt.
    made_from = (tool._name, tool._description, args, args.__dict__.get(_CORE), tool._strict)
    try:
        with _schemas_lock:
            held = _schemas.get(tool)
    except TypeError:  # a tool class that cannot be a weak key: asked every time
        return tool.schema
    if held is not None and held[0] == made_from:
        return held[1]
    schema = tool.schema
    with _schemas_lock:
        _schemas[tool] = (made_from, schema)
    return schema


def offered_schema(tool: BaseTool[Any, Any]) -> ToolSchema:
    """What a wrapper of the adapter's own offers the model: a copy of
    :func:`tool_schema`, so that nothing the model client does to it reaches the
    manifest."""
    return copy.deepcopy(tool_schema(tool))


def _static_schemas(bench: StaticWorkbench) -> list[ToolSchema]:
    # StaticWorkbench.list_tools (autogen-core 0.7), each tool's schema from tool_schema.
    schemas: list[ToolSchema] = []
    for tool in bench._tools:
        original = tool_schema(tool)
        override = bench._tool_overrides.get(tool.name)
        if override is None:
            schemas.append(original)
            continue
        schema: ToolSchema = {
            "name": override.name if override.name is not None else original["name"],
            "description": override.description
            if override.description is not None
            else original.get("description", ""),
        }
        if "parameters" in original:
            schema["parameters"] = original["parameters"]
        if "strict" in original:
            schema["strict"] = original["strict"]
        schemas.append(schema)
    return schemas


def listed_tools(bench: Workbench) -> list[ToolSchema]:
    """``await bench.list_tools()`` for a workbench that answers without waiting.

    A static workbench lists its tools without any I/O, so its coroutine finishes on the
    first step; a manifest must be computable synchronously (the shim recomputes it
    before every mint). A workbench that needs I/O to list its tools (an MCP server)
    cannot be described that way. A ``StaticWorkbench`` that keeps AutoGen's
    ``list_tools`` is listed as it would list itself, with :func:`tool_schema`.
    """
    if type(bench).list_tools is StaticWorkbench.list_tools:
        return _static_schemas(bench)  # type: ignore[arg-type]
    coroutine = bench.list_tools()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return list(done.value)
    coroutine.close()
    raise TypeError(
        f"{type(bench).__name__} needs I/O to list its tools, so the agent's manifest (computed "
        "before every mint) cannot describe them: give the agent tools=[...], a "
        "StaticWorkbench, or a workbench that lists its tools without waiting"
    )


def sync_function(tool: BaseTool[Any, Any]) -> Callable[..., Any] | None:
    """The function of a ``FunctionTool`` that wraps a *sync* function, else ``None``.

    ``FunctionTool`` runs sync functions with ``loop.run_in_executor`` without copying
    the context (FRAMEWORKS.md), so the adapter runs them itself.
    """
    if not isinstance(tool, FunctionTool):
        return None
    function: Callable[..., Any] | None = getattr(tool, "_func", None)
    if function is None or inspect.iscoroutinefunction(function):
        return None
    return function


def tool_function(tool: BaseTool[Any, Any]) -> Callable[..., Any] | type:
    """What deep mode hashes for a tool: its function, else its class."""
    function: Callable[..., Any] | None = getattr(tool, "_func", None)
    if isinstance(tool, FunctionTool) and function is not None:
        return function
    return type(tool)
