"""What every tool hook does before a tool runs (callback handler, ToolNode wrapper,
agent middleware).

*Agent acts*: find the acting agent and the run; if the agent is not yet acting in the
run, it starts (:meth:`Tracker.enter`: a hand-off from the agent that routed to it,
when one did). *Tool is called*: the tool object about to run must be the one in the
agent's live manifest; ``shim.prepare`` resolves the workflow step for (agent, tool),
runs the local checks and mints the token, or raises. A hand-off tool
(``transfer_to_<agent>``, or a tool whose metadata names ``__handoff_destination``)
makes no API call of its own: it hands off to its destination instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeAlias

from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphInterrupt

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import (
    AgentContextError,
    AJWTError,
    InvalidGrant,
    Reason,
    UnauthorizedClient,
)
from ajwt_core.shim import AgentContext, Run, Shim
from ajwt_langchain._tracker import Tracker, metadata_agent, tracker_for

#: The tool-metadata key naming a hand-off tool's destination (langgraph-supervisor,
#: langgraph-swarm).
HANDOFF_DESTINATION = "__handoff_destination"
HANDOFF_PREFIX = "transfer_to_"

#: Which agent acts: its id, or a function of the LangChain run metadata.
AgentChoice: TypeAlias = str | Callable[[Mapping[str, Any]], str | None] | None


@dataclass(frozen=True)
class _Securing:
    """The tool call an A-JWT hook is running now (set around the tool's execution), so
    that a second hook on the same call (a callback handler beside a ToolNode wrapper,
    two wrappers) does not check and mint twice."""

    tool: str
    call_id: str | None


_securing: ContextVar[_Securing | None] = ContextVar("ajwt_langchain_securing", default=None)


@contextmanager
def securing(tool: str, call_id: str | None) -> Iterator[None]:
    token = _securing.set(_Securing(tool, call_id))
    try:
        yield
    finally:
        _securing.reset(token)


def secured(tool: str, call_id: str | None) -> bool:
    """Whether an A-JWT hook around it already secures this call of ``tool``: the same
    name, and the same tool-call id where both know one (ToolNode hands it to the
    tool's callbacks). A tool of that name a sub-agent calls inside the secured one has
    its own id, from its model: a call of its own, gated and acting as its agent. The
    tool's code calling a tool of its own name directly (``tool.invoke(args)``, no id)
    is part of the call."""
    held = _securing.get()
    if held is None or held.tool != tool:
        return False
    return held.call_id is None or call_id is None or held.call_id == call_id


def tool_ended(shim: Shim, context: AgentContext, error: BaseException | str | None) -> None:
    """Tell the shim how a tool call ended: an ``interrupt()`` inside it is a pause (the
    call runs again on resume), not a failure."""
    if isinstance(error, GraphInterrupt):
        shim.tool_paused(context)
    else:
        shim.tool_finished(context, error)


def message_agent(state: Any, tool_call_id: str | None) -> str | None:
    """The ``name`` of the AI message that made tool call ``tool_call_id``: both agent
    factories (``create_agent``, ``create_react_agent``) name their replies after the
    agent."""
    if not tool_call_id:
        return None
    messages = state.get("messages") if isinstance(state, Mapping) else None
    if messages is None:
        messages = getattr(state, "messages", None)
    for message in reversed(messages or []):
        if isinstance(message, AIMessage) and any(
            call.get("id") == tool_call_id for call in message.tool_calls
        ):
            return message.name if isinstance(message.name, str) and message.name else None
    return None


def manifest_of(source: Any) -> AgentManifest:
    """The manifest a registration source gives now (a manifest, a mapping, a callable)."""
    if isinstance(source, AgentManifest):
        return source
    if callable(source):
        made: AgentManifest = source()
        return made
    return AgentManifest.model_validate(source)


def _same_tool(manifest: AgentManifest, tool: BaseTool) -> bool:
    from ajwt_langchain.manifest import tool_spec

    entry = next((t for t in manifest.tools if t.name == tool.name), None)
    if entry is None:
        return False
    live = tool_spec(tool, deep=entry.source is not None)
    return (live.description, live.parameters, live.source) == (
        entry.description,
        entry.parameters,
        entry.source,
    )


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

    def agent_for(self, metadata: Mapping[str, Any] | None, named: str | None = None) -> str:
        """The acting agent: as configured; else the first registered of the
        ``create_agent(name=...)`` name in the run metadata, the surrounding
        :func:`~ajwt_langchain.ajwt_node`'s agent, and ``named`` (the name on the AI
        message that asked for the tool, as ``create_react_agent(name=...)`` sets it)."""
        if isinstance(self._agent, str):
            return self._agent
        if self._agent is not None:
            chosen = self._agent(metadata or {})
            if chosen:
                return chosen
        node = self.tracker.node()
        candidates = [
            metadata_agent(dict(metadata or {})),
            node.agent if node is not None else None,
            named,
        ]
        names = [c for c in candidates if c is not None]
        for name in names:
            if self.tracker.is_agent(name):
                return name
        if names:
            raise InvalidGrant(
                Reason.AGENT_NOT_REGISTERED,
                f"the tool is called by agent {names[0]!r}, which is not registered with this "
                "shim (register it, e.g. secure_graph(shim, app) registers the app's agents)",
            )
        raise AgentContextError(
            Reason.NO_AGENT_CONTEXT,
            "cannot tell which agent calls this tool: pass agent=..., run the tool inside "
            "an ajwt_node, name the agent (create_agent(name=...)), or secure the compiled "
            "app with secure_graph(shim, app)",
        )

    def run_for(self) -> Run:
        return self.tracker.run_for(self._run)

    def run_or_none(self) -> Run | None:
        """The run :meth:`run_for` would act in, or None where there is none."""
        try:
            return self.run_for()
        except AgentContextError:
            return None

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

    def check_tool(self, agent: str, tool: BaseTool | None) -> None:
        """The tool about to run must be the one in ``agent``'s live manifest: a tool that
        is not there (added to the running agent after it was registered) or differs
        from its entry (description, arguments) is refused before it runs."""
        if tool is None or not self.shim.local_checks:
            return
        from ajwt_langchain.manifest import is_handoff_tool, tool_spec

        if is_handoff_tool(tool):
            return
        registered = self.shim.agent(agent)
        # The tool as the agent was last seen registered: the shim reads the live agent
        # right after (prepare), so a match here is a match with the live agent too.
        known = registered.verified_manifest()
        if known is not None and _same_tool(known, tool):
            return
        manifest = manifest_of(registered.source)
        entry = next((t for t in manifest.tools if t.name == tool.name), None)
        if entry is None:
            names = ", ".join(sorted(t.name for t in manifest.tools)) or "none"
            raise UnauthorizedClient(
                Reason.TOOL_NOT_ALLOWED,
                f"tool {tool.name!r} runs in agent {agent!r}'s tool node but is not one of the "
                f"agent's tools ({names}); register the agent as it runs "
                "(secure_graph(shim, app) reads it from the app)",
            )
        live = tool_spec(tool, deep=entry.source is not None)
        if (live.description, live.parameters, live.source) != (
            entry.description,
            entry.parameters,
            entry.source,
        ):
            raise InvalidGrant(
                Reason.CHECKSUM_MISMATCH,
                f"tool {tool.name!r} of agent {agent!r} is not the tool the agent was "
                "registered with (its description, arguments or code changed)",
            )

    def _tool_step(self, run: Run, step: str | None, tool_name: str, agent: str) -> str | None:
        """The step to mint in: the agent's current one when it allows the tool, else
        left to the shim (the agent's next step, a consultation...)."""
        if step is None:
            return None
        definition = run.workflow.step(step)
        tools = definition.tools if definition.agent == agent else []
        if agent in definition.consult:
            tools = [*tools, *definition.consult[agent].tools]
        return step if tool_name in tools else None

    def _acting_step(self, run: Run, agent: str) -> tuple[str | None, str | None]:
        """(router, router step) for an agent entering from a tool hook: the node's
        agent when the tool runs inside another agent's node."""
        node = self.tracker.node()
        if node is not None and node.agent != agent and node.run.run_id == run.run_id:
            return node.agent, node.step
        return None, None

    def begin(
        self,
        tool_name: str,
        metadata: Mapping[str, Any] | None,
        tool_metadata: Mapping[str, Any] | None,
        *,
        tool: BaseTool | None = None,
        named: str | None = None,
    ) -> AgentContext | None:
        """Before the tool runs. Returns its acting context, or ``None`` for a hand-off
        tool (whose hand-off is then done). Raises on refusal."""
        run = self.run_for()
        agent = self.agent_for(metadata, named)
        node = self.tracker.node()
        if node is not None and node.agent == agent and node.run.run_id == run.run_id:
            step = node.step
        else:
            router, router_step = self._acting_step(run, agent)
            step = self.tracker.enter(
                run, agent, self.audience, router=router, router_step=router_step
            ).step
        destination = self.handoff_destination(tool_name, tool_metadata)
        if destination is not None:
            self.tracker.enter(
                run,
                destination,
                self.audience,
                router=agent,
                router_step=step or self.tracker.step_of(run, agent),
                explicit=True,
            )
            return None
        self.check_tool(agent, tool)
        context = self.shim.prepare(
            self.shim.context(
                agent, step=self._tool_step(run, step, tool_name, agent), tool=tool_name, run=run
            )
        )
        self.tracker.acted(run, agent, context.step)
        return context

    async def abegin(
        self,
        tool_name: str,
        metadata: Mapping[str, Any] | None,
        tool_metadata: Mapping[str, Any] | None,
        *,
        tool: BaseTool | None = None,
        named: str | None = None,
    ) -> AgentContext | None:
        """The async twin of :meth:`begin`."""
        run = self.run_for()
        agent = self.agent_for(metadata, named)
        node = self.tracker.node()
        if node is not None and node.agent == agent and node.run.run_id == run.run_id:
            step = node.step
        else:
            router, router_step = self._acting_step(run, agent)
            step = (
                await self.tracker.aenter(
                    run, agent, self.audience, router=router, router_step=router_step
                )
            ).step
        destination = self.handoff_destination(tool_name, tool_metadata)
        if destination is not None:
            await self.tracker.aenter(
                run,
                destination,
                self.audience,
                router=agent,
                router_step=step or self.tracker.step_of(run, agent),
                explicit=True,
            )
            return None
        self.check_tool(agent, tool)
        context = await self.shim.aprepare(
            self.shim.context(
                agent, step=self._tool_step(run, step, tool_name, agent), tool=tool_name, run=run
            )
        )
        self.tracker.acted(run, agent, context.step)
        return context


__all__ = [
    "AJWTError",
    "AgentChoice",
    "ToolGate",
    "manifest_of",
    "message_agent",
    "secured",
    "securing",
    "tool_ended",
]
