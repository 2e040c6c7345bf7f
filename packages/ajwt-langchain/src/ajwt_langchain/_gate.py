"""What every tool hook does before a tool runs (callback handler, ToolNode, middleware).

*Agent acts*: find the acting agent and the run; if another agent acted last in the
run, that is a hand-off (:meth:`Tracker.enter`). *Tool is called*: ``shim.prepare``
resolves the workflow step for (agent, tool), runs the local checks and mints the
token, or raises. A hand-off tool (``transfer_to_<agent>``, or a tool whose metadata
names ``__handoff_destination``) makes no API call of its own: it hands off to its
destination instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from ajwt_core.errors import AgentContextError, AJWTError, Reason
from ajwt_core.shim import AgentContext, Run, Shim
from ajwt_langchain._tracker import Tracker, metadata_agent, tracker_for

#: The tool-metadata key naming a hand-off tool's destination (langgraph-supervisor,
#: langgraph-swarm).
HANDOFF_DESTINATION = "__handoff_destination"
HANDOFF_PREFIX = "transfer_to_"

#: Which agent acts: its id, or a function of the LangChain run metadata.
AgentChoice: TypeAlias = str | Callable[[Mapping[str, Any]], str | None] | None


class ToolGate:
    """The checks before a tool call, shared by the handler, ToolNode wrapper, middleware."""

    def __init__(
        self, shim: Shim, agent: AgentChoice, run: Run | None, audience: str | None
    ) -> None:
        self.shim = shim
        self.tracker: Tracker = tracker_for(shim)
        self._agent = agent
        self._run = run
        self.audience = audience

    def agent_for(self, metadata: Mapping[str, Any] | None) -> str:
        """The acting agent: as configured, else the current node's, else ``lc_agent_name``."""
        if isinstance(self._agent, str):
            return self._agent
        if self._agent is not None:
            chosen = self._agent(metadata or {})
            if chosen:
                return chosen
        node = self.tracker.node_context()
        if node is not None:
            return node.agent
        named = metadata_agent(dict(metadata or {}))
        if named is not None:
            return named
        raise AgentContextError(
            Reason.NO_AGENT_CONTEXT,
            "cannot tell which agent calls this tool: pass agent=..., run the tool inside "
            "an ajwt_node, or name the agent (create_agent(name=...))",
        )

    def run_for(self) -> Run:
        return self.tracker.run_for(self._run)

    def handoff_destination(
        self, tool_name: str, tool_metadata: Mapping[str, Any] | None
    ) -> str | None:
        """The registered agent a hand-off tool transfers to, or ``None`` for other tools."""
        destination = (tool_metadata or {}).get(HANDOFF_DESTINATION)
        if not isinstance(destination, str) and tool_name.startswith(HANDOFF_PREFIX):
            destination = tool_name[len(HANDOFF_PREFIX) :]
        if isinstance(destination, str) and self.tracker.is_agent(destination):
            return destination
        return None

    def begin(
        self,
        tool_name: str,
        metadata: Mapping[str, Any] | None,
        tool_metadata: Mapping[str, Any] | None,
    ) -> AgentContext | None:
        """Before the tool runs. Returns its acting context, or ``None`` for a hand-off
        tool (whose hand-off is then done). Raises on refusal."""
        run = self.run_for()
        agent = self.agent_for(metadata)
        entered = self.tracker.enter(run, agent, self.audience)
        try:
            destination = self.handoff_destination(tool_name, tool_metadata)
            if destination is not None:
                self.tracker.enter(run, destination, self.audience)
                return None
            context = self.shim.prepare(
                self.shim.context(agent, step=entered.step, tool=tool_name, run=run)
            )
        except AJWTError:
            self.tracker.revert(run, entered)
            raise
        self.tracker.note_step(run, agent, context.step)
        return context

    async def abegin(
        self,
        tool_name: str,
        metadata: Mapping[str, Any] | None,
        tool_metadata: Mapping[str, Any] | None,
    ) -> AgentContext | None:
        """The async twin of :meth:`begin`."""
        run = self.run_for()
        agent = self.agent_for(metadata)
        entered = await self.tracker.aenter(run, agent, self.audience)
        try:
            destination = self.handoff_destination(tool_name, tool_metadata)
            if destination is not None:
                await self.tracker.aenter(run, destination, self.audience)
                return None
            context = await self.shim.aprepare(
                self.shim.context(agent, step=entered.step, tool=tool_name, run=run)
            )
        except AJWTError:
            self.tracker.revert(run, entered)
            raise
        self.tracker.note_step(run, agent, context.step)
        return context
