"""The few AutoGen 0.7 internals the adapter reads or replaces, in one place.

AutoGen exposes no public accessor for an ``AssistantAgent``'s system message, tools,
handoffs or model client, nor for the function inside a ``FunctionTool``; these helpers
read the private attributes (checked against autogen-agentchat/core 0.7.5 by the tests,
``test_internals.py``) so that a change in a later AutoGen breaks here, loudly, and
nowhere else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import Handoff
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


def listed_tools(bench: Workbench) -> list[ToolSchema]:
    """``await bench.list_tools()`` for a workbench that answers without waiting.

    A static workbench lists its tools without any I/O, so its coroutine finishes on the
    first step; a manifest must be computable synchronously (the shim recomputes it
    before every mint). A workbench that needs I/O to list its tools (an MCP server)
    cannot be described that way.
    """
    coroutine = bench.list_tools()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return list(done.value)
    coroutine.close()
    raise TypeError(
        f"{type(bench).__name__} lists its tools asynchronously; A-JWT describes agents "
        "with static tools (tools=[...] or a StaticWorkbench)"
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
