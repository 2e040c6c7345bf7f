"""Tool-call wrappers for LangGraph's ``ToolNode(wrap_tool_call=..., awrap_tool_call=...)``.

The wrapper runs the A-JWT checks before ``execute`` (resolve the step, check, mint;
hand off for a hand-off tool) and sets the shim's acting context around ``execute``,
so the tool's HTTP calls through ``shim.auth()`` carry the agent, step and tool. A
refusal raises (the default: ``ToolNode`` re-raises it and the graph run stops with
the :class:`~ajwt_core.errors.AJWTError`), or with ``on_refusal="message"`` answers the
model with an error ``ToolMessage`` while the tool does not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Literal

from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from ajwt_core.errors import AJWTError
from ajwt_core.shim import AgentContext, Run, Shim
from ajwt_langchain._gate import (
    AgentChoice,
    ToolGate,
    message_agent,
    secured,
    securing,
    tool_ended,
)

__all__ = ["AJWTToolWrapper", "OnRefusal", "ToolResult"]

ToolResult = ToolMessage | Command[Any]
OnRefusal = Literal["raise", "message"]


def _metadata(request: ToolCallRequest) -> Mapping[str, Any]:
    config = getattr(request.runtime, "config", None) or {}
    metadata = config.get("metadata") or {}
    return metadata if isinstance(metadata, Mapping) else {}


def _tool_metadata(request: ToolCallRequest) -> Mapping[str, Any]:
    return (request.tool.metadata if request.tool is not None else None) or {}


def _named(request: ToolCallRequest) -> str | None:
    return message_agent(request.state, request.tool_call.get("id"))


def _error_of(result: ToolResult) -> str | None:
    if isinstance(result, ToolMessage) and result.status == "error":
        return str(result.content)
    return None


class AJWTToolWrapper:
    """A-JWT around each tool call of a ``ToolNode`` (sync and async).

    ``agent`` is the acting agent's id, or a function of the run metadata returning
    it; by default the first registered of: the ``create_agent(name=...)`` name, the
    agent of the surrounding :func:`~ajwt_langchain.ajwt_node`, and the name on the AI
    message that asked for the tool (``create_react_agent(name=...)`` sets it). The
    tool about to run must be the one in the agent's live manifest (a tool added to
    the agent, or changed, after registration is refused). ``run`` defaults to the
    current run;
    ``audience`` serves hand-offs and step completions that need a token the agent
    does not hold yet (default ``shim.default_audience``).

    >>> from ajwt_core.shim import Shim
    >>> from langgraph.prebuilt import ToolNode
    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> wrapper = AJWTToolWrapper(shim, agent="planner")
    >>> node = ToolNode([], wrap_tool_call=wrapper.wrap_tool_call,
    ...                 awrap_tool_call=wrapper.awrap_tool_call)
    """

    def __init__(
        self,
        shim: Shim,
        agent: AgentChoice = None,
        *,
        run: Run | None = None,
        audience: str | None = None,
        on_refusal: OnRefusal = "raise",
    ) -> None:
        self.gate = ToolGate(shim, agent, run, audience)
        self.on_refusal: OnRefusal = on_refusal

    def _refused(self, request: ToolCallRequest, error: AJWTError) -> ToolMessage:
        if self.on_refusal == "raise":
            raise error
        return ToolMessage(
            content=f"Refused by A-JWT ({error.reason.value}): {error.description}",
            name=request.tool_call["name"],
            tool_call_id=request.tool_call["id"] or "",
            status="error",
        )

    def wrap_tool_call(
        self, request: ToolCallRequest, execute: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        """The ``wrap_tool_call`` hook: check, mint, then run the tool as its agent."""
        name, call_id = request.tool_call["name"], request.tool_call["id"]
        if secured(name, call_id) or request.tool is None:
            # Secured by an outer A-JWT hook; or not a tool of this node (ToolNode
            # answers with its own error, and nothing is minted).
            return execute(request)
        try:
            context = self.gate.begin(
                name,
                _metadata(request),
                _tool_metadata(request),
                tool=request.tool,
                named=_named(request),
            )
        except AJWTError as error:
            return self._refused(request, error)
        if context is None:
            with securing(name, call_id):
                return execute(request)
        with self._acting(context), securing(name, call_id):
            try:
                result = execute(request)
            except BaseException as error:
                tool_ended(self.gate.shim, context, error)
                raise
        self.gate.shim.tool_finished(context, _error_of(result))
        return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        """The ``awrap_tool_call`` hook: the async twin of :meth:`wrap_tool_call`."""
        name, call_id = request.tool_call["name"], request.tool_call["id"]
        if secured(name, call_id) or request.tool is None:
            return await execute(request)
        try:
            context = await self.gate.abegin(
                name,
                _metadata(request),
                _tool_metadata(request),
                tool=request.tool,
                named=_named(request),
            )
        except AJWTError as error:
            return self._refused(request, error)
        if context is None:
            with securing(name, call_id):
                return await execute(request)
        with self._acting(context), securing(name, call_id):
            try:
                result = await execute(request)
            except BaseException as error:
                tool_ended(self.gate.shim, context, error)
                raise
        self.gate.shim.tool_finished(context, _error_of(result))
        return result

    __call__ = wrap_tool_call

    def _acting(self, context: AgentContext) -> AbstractContextManager[AgentContext]:
        return self.gate.shim.acting(
            context.agent,
            step=context.step,
            tool=context.tool,
            run=context.run,
            input_digest=context.input_digest,
        )
