"""LangChain 1.x agent middleware: A-JWT for the tools of ``create_agent``.

``create_agent(model, tools, middleware=[AJWTMiddleware(shim)], name="planner")``:
its ``wrap_tool_call`` / ``awrap_tool_call`` do what :class:`AJWTToolWrapper` does
for a ``ToolNode`` (``create_agent`` builds one from the middleware's hooks), and
``after_agent`` completes the agent's step when the agent finishes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime

from ajwt_core.shim import Run, Shim
from ajwt_langchain._gate import AgentChoice
from ajwt_langchain.tools import AJWTToolWrapper, OnRefusal, ToolResult

__all__ = ["AJWTMiddleware"]


class AJWTMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """A-JWT for every tool call of a ``create_agent`` agent.

    ``agent`` defaults to the surrounding :func:`~ajwt_langchain.ajwt_node`'s agent,
    else the agent's ``name``. With ``complete_on_finish`` the agent's step is
    completed when the agent finishes normally (the agent is one workflow step).

    >>> from ajwt_core.shim import Shim
    >>> middleware = AJWTMiddleware(Shim("http://127.0.0.1:9", "app", client_secret="s"))
    >>> middleware.name
    'AJWTMiddleware'
    """

    def __init__(
        self,
        shim: Shim,
        agent: AgentChoice = None,
        *,
        run: Run | None = None,
        audience: str | None = None,
        on_refusal: OnRefusal = "raise",
        complete_on_finish: bool = False,
    ) -> None:
        super().__init__()
        self._wrapper = AJWTToolWrapper(
            shim, agent, run=run, audience=audience, on_refusal=on_refusal
        )
        self._complete_on_finish = complete_on_finish

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolResult],
    ) -> ToolResult:
        return self._wrapper.wrap_tool_call(request, handler)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        return await self._wrapper.awrap_tool_call(request, handler)

    def _finished_step(self) -> tuple[Run, str, str | None] | None:
        """(run, agent, step) when this agent is the one acting last in its run."""
        gate = self._wrapper.gate
        run = gate.run_for()
        agent = gate.agent_for(get_config().get("metadata"))
        last, step = gate.tracker.acting_agent(run)
        return (run, agent, step) if last == agent else None

    def after_agent(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        if self._complete_on_finish and (acting := self._finished_step()) is not None:
            run, agent, step = acting
            self._wrapper.gate.tracker.finish(run, agent, step, self._wrapper.gate.audience)
        return None

    async def aafter_agent(
        self, state: AgentState[Any], runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        if self._complete_on_finish and (acting := self._finished_step()) is not None:
            run, agent, step = acting
            await self._wrapper.gate.tracker.afinish(run, agent, step, self._wrapper.gate.audience)
        return None
