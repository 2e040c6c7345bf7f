"""The tool calls in progress, as CrewAI's tool-call hooks announce them.

CrewAI runs its ``before_tool_call`` hooks, then the tool, then its ``after_tool_call``
hooks, all in the same thread and context (parallel tool calls each run in a thread
with a copy of the context). The before-hook pushes a :class:`ToolCall` here, naming
the agent CrewAI is executing; the tool reads it back to know who calls it; the
after-hook pops it. Calls nest: a coworker's tool calls run inside the delegating
agent's delegation call.

The hooks give no handle that links a before-call to its after-call except the
``tool_input`` dict, which CrewAI passes to both: its identity is the key.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crewai.tools.agent_tools.ask_question_tool import AskQuestionTool
from crewai.tools.agent_tools.delegate_work_tool import DelegateWorkTool
from crewai.utilities.string_utils import sanitize_tool_name

from ajwt_core.shim.context import ActingBlock

if TYPE_CHECKING:
    from crewai.agents.agent_builder.base_agent import BaseAgent

    from ajwt_crewai.binding import CrewAIBinding, Handoff

__all__ = [
    "CONSULT_TOOL",
    "DELEGATE_TOOL",
    "DELEGATION_TOOLS",
    "ToolCall",
    "current_call",
    "pop_call",
    "push_call",
]

#: The names of CrewAI's delegation tools in tool calls (``delegate_work_to_coworker``,
#: ``ask_question_to_coworker``).
DELEGATE_TOOL = sanitize_tool_name(str(DelegateWorkTool.model_fields["name"].default))
CONSULT_TOOL = sanitize_tool_name(str(AskQuestionTool.model_fields["name"].default))
DELEGATION_TOOLS = frozenset({DELEGATE_TOOL, CONSULT_TOOL})


@dataclass(frozen=True)
class ToolCall:
    """One tool call CrewAI is making: which agent, which tool, and (for a delegation)
    the hand-off made for it or the reason it was refused."""

    key: int
    tool_name: str
    agent: BaseAgent | None
    crew: Any = None
    binding: CrewAIBinding | None = None
    handoff: Handoff | None = None
    refusal: Exception | None = None
    #: A-JWT refusals met while the call ran (a mint, the API's 401/403): the call
    #: did not do its work, whatever the tool answered.
    #: Each as (agent, tool, error): a coworker's refusal inside a delegation is the
    #: delegation's too, under the coworker's name.
    refused: list[tuple[str, str, Exception]] = field(default_factory=list)
    #: When the call started, for the shim to tell it from an acting block it runs
    #: inside (another framework's tool that kicked the crew off): the later one acts.
    scope: ActingBlock = field(default_factory=ActingBlock, compare=False, repr=False)


_calls: ContextVar[tuple[ToolCall, ...]] = ContextVar("ajwt_crewai_calls", default=())


def push_call(call: ToolCall) -> None:
    _calls.set((*_calls.get(), call))


def pop_call(key: int, tool_name: str) -> ToolCall | None:
    """Remove and return the call pushed for this ``tool_input`` (``None`` if another
    before-hook blocked the call before ours ran, so nothing was pushed)."""
    calls = _calls.get()
    for index in range(len(calls) - 1, -1, -1):
        call = calls[index]
        if call.key == key and call.tool_name == tool_name:
            _calls.set(calls[:index] + calls[index + 1 :])
            if index and call.refused:
                # A coworker's refusal inside a delegation is the delegation's too.
                calls[index - 1].refused.extend(call.refused)
            return call
    return None


def current_call() -> ToolCall | None:
    """The innermost tool call in progress in this context, if any."""
    calls = _calls.get()
    return calls[-1] if calls else None
