"""LangChain callback handlers: every tool call becomes an A-JWT tool call.

On ``on_tool_start`` the handler resolves the workflow step for (agent, tool), runs the
local checks and mints the intent token (``shim.prepare``); a refusal raises, and since
``raise_error`` is set LangChain does not run the tool and the error reaches the agent
loop. The tool's HTTP calls through ``shim.auth()`` then carry that agent, step and
tool: the handler keys the call's context by the tool run's id, which the shim finds
through its context resolver. ``on_tool_end`` / ``on_tool_error`` report the outcome
and forget the context. A call already secured by a ``ToolNode`` wrapper or the agent
middleware is left to it.

LangChain logs a handler's exception ("Error in ... callback") before re-raising it
for a handler with ``raise_error``; since the refusal is raised anyway (and says the
same), that log line is dropped for these handlers, so a refusal is reported once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler

from ajwt_core.shim import Run, Shim
from ajwt_langchain._gate import AgentChoice, ToolGate, secured, tool_ended

__all__ = ["AJWTCallbackHandler", "AsyncAJWTCallbackHandler"]


class _RaisedRefusals(logging.Filter):
    """Drops LangChain's log line for an exception these handlers raise anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            record.msg == "Error in %s.%s callback: %s"
            and args[:1]
            in (("AJWTCallbackHandler",), ("AsyncAJWTCallbackHandler",), ("SecuredAppHandler",))
        )


_filter = _RaisedRefusals()
logging.getLogger("langchain_core.callbacks.manager").addFilter(_filter)


def _tool_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    name = (serialized or {}).get("name") or kwargs.get("name")
    return str(name or "")


class AJWTCallbackHandler(BaseCallbackHandler):
    """A-JWT for LangChain tool calls, sync and async (a sync handler in an async run
    is called on a worker thread, and its refusals still stop the tool).

    ``agent`` is the acting agent's id, or a function of the run metadata returning
    it; by default the agent of the surrounding :func:`~ajwt_langchain.ajwt_node`, else
    the ``create_agent(name=...)`` name. ``run`` defaults to the current run
    (``with shim.run(run):``); ``audience`` is used when a hand-off or a step
    completion needs a token the agent does not hold yet (default
    ``shim.default_audience``).

    >>> from ajwt_core.shim import Shim
    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> handler = AJWTCallbackHandler(shim, agent="planner")
    >>> handler.raise_error
    True

    Use it as ``tool.invoke(args, config={"callbacks": [handler]})`` or attach it to
    an agent with ``agent.with_config(callbacks=[handler])``.
    """

    raise_error: bool = True

    def __init__(
        self,
        shim: Shim,
        agent: AgentChoice = None,
        *,
        run: Run | None = None,
        audience: str | None = None,
    ) -> None:
        super().__init__()
        self._gate = ToolGate(shim, agent, run, audience)

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _tool_name(serialized, kwargs)
        if secured(name, kwargs.get("tool_call_id")):
            return
        context = self._gate.begin(name, metadata, metadata)
        if context is not None:
            self._gate.tracker.start_call(run_id, context)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        context = self._gate.tracker.end_call(run_id)
        if context is not None:
            self._gate.shim.tool_finished(context)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        context = self._gate.tracker.end_call(run_id)
        if context is not None:
            tool_ended(self._gate.shim, context, error)


class AsyncAJWTCallbackHandler(AsyncCallbackHandler):
    """The async twin of :class:`AJWTCallbackHandler` (mints without blocking the loop).

    Use it only for async runs (``ainvoke``/``astream``): LangChain's sync callback
    manager swallows the errors of async handlers, so a refusal could not stop a
    tool there. :class:`AJWTCallbackHandler` serves both.

    >>> from ajwt_core.shim import Shim
    >>> handler = AsyncAJWTCallbackHandler(Shim("http://127.0.0.1:9", "app", client_secret="s"))
    >>> handler.raise_error, handler.run_inline
    (True, True)
    """

    raise_error: bool = True
    run_inline: bool = True

    def __init__(
        self,
        shim: Shim,
        agent: AgentChoice = None,
        *,
        run: Run | None = None,
        audience: str | None = None,
    ) -> None:
        super().__init__()
        self._gate = ToolGate(shim, agent, run, audience)

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _tool_name(serialized, kwargs)
        if secured(name, kwargs.get("tool_call_id")):
            return
        context = await self._gate.abegin(name, metadata, metadata)
        if context is not None:
            self._gate.tracker.start_call(run_id, context)

    async def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        context = self._gate.tracker.end_call(run_id)
        if context is not None:
            self._gate.shim.tool_finished(context)

    async def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        context = self._gate.tracker.end_call(run_id)
        if context is not None:
            tool_ended(self._gate.shim, context, error)
