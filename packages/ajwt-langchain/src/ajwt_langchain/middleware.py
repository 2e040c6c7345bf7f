"""LangChain 1.x agent middleware: A-JWT for the tools of ``create_agent``.

``create_agent(model, tools, middleware=[AJWTAgentMiddleware(shim)], name="planner")``:
its ``wrap_tool_call`` / ``awrap_tool_call`` do what :class:`AJWTToolWrapper` does
for a ``ToolNode`` (``create_agent`` builds one from the middleware's hooks), and
``after_agent`` completes the agent's step when the agent finishes.

(The resource-server middleware of ``ajwt_core.rs`` is ``AJWTMiddleware``: it verifies
requests at an API. This one acts for agents.)
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

__all__ = ["AJWTAgentMiddleware"]


class AJWTAgentMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """A-JWT for every tool call of a ``create_agent`` agent.

    ``agent`` defaults to the agent's ``name`` (else the surrounding
    :func:`~ajwt_langchain.ajwt_node`'s agent). With ``complete_on_finish`` the
    agent's step is completed when the agent finishes normally (the agent is one
    workflow step).

    >>> from ajwt_core.shim import Shim
    >>> middleware = AJWTAgentMiddleware(Shim("http://127.0.0.1:9", "app", client_secret="s"))
    >>> middleware.name
    'AJWTAgentMiddleware'
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

    def _finished(self) -> tuple[Run, str]:
        gate = self._wrapper.gate
        return gate.run_for(), gate.agent_for(get_config().get("metadata"))

    def after_agent(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        if self._complete_on_finish:
            run, agent = self._finished()
            self._wrapper.gate.tracker.complete_current(run, agent)
        return None

    async def aafter_agent(
        self, state: AgentState[Any], runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        if self._complete_on_finish:
            run, agent = self._finished()
            await self._wrapper.gate.tracker.acomplete_current(run, agent)
        return None
