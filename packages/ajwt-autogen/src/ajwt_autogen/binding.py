"""Who an AutoGen agent is to the shim: its workflow id, its live object, its run.

An :class:`AgentBinding` ties one AutoGen agent object to a :class:`~ajwt_core.shim.Shim`.
Tools and handoffs of the agent act through it: it knows the run they belong to, the
prompt values the agent was given (``intent.input_digest``) and, while one of them
runs, it is the *acting binding* (a context variable), so that the checksum the shim
recomputes before a mint is the checksum of the agent object that is actually acting
— also when several objects (one per concurrent run) share one agent id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from autogen_agentchat.agents import AssistantAgent

from ajwt_autogen.manifest import manifest_from_autogen
from ajwt_core.checksum import AgentManifest, PromptSpec
from ajwt_core.errors import AgentContextError, InvalidGrant, Reason
from ajwt_core.shim import AgentContext, RegisteredAgent, Run, Shim
from ajwt_core.shim.context import current_run

__all__ = ["AgentBinding", "register_agent"]

_acting_binding: ContextVar[AgentBinding | None] = ContextVar("ajwt_autogen_acting", default=None)


@dataclass(eq=False)
class AgentBinding:
    """One AutoGen agent as the shim knows it.

    ``agent`` is the ``AssistantAgent`` (or ``None`` when only the id is known: the
    application registered the manifest itself). ``run`` pins the binding to one run;
    by default the run is the shim's current run (``with shim.run(run):`` around
    ``team.run(...)``). :func:`~ajwt_autogen.secure_agent` makes one per agent.

    Example::

        binding = AgentBinding(shim, "supervisor", supervisor_agent,
                               prompt=PromptSpec(template="... for {org}.", variables=["org"]),
                               prompt_values={"org": "acme"})
        register_agent(binding)        # live manifest: recomputed before every mint
        tool = AJWTTool(list_repos_tool, shim, agent=binding)
    """

    shim: Shim
    agent_id: str
    agent: AssistantAgent | None = None
    run: Run | None = None
    prompt: PromptSpec | None = None
    prompt_values: Mapping[str, str] = field(default_factory=dict)
    deep: bool = False

    def manifest(self) -> AgentManifest:
        if self.agent is None:
            raise TypeError(f"agent {self.agent_id!r} is bound by id only; it has no live object")
        return manifest_from_autogen(
            self.agent,
            agent_id=self.agent_id,
            prompt=self.prompt,
            prompt_values=self.prompt_values,
            deep=self.deep,
        )

    def current_run(self) -> Run:
        run = self.run or current_run()
        if run is None:
            acting = self.shim.current()
            run = acting.run if acting is not None else None
        if run is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                f"agent {self.agent_id!r} acted outside any run: start one and run the team "
                "inside `with shim.run(run):`, or bind the agent to the run",
            )
        return run

    def input_digest(self) -> str | None:
        if self.prompt is None:
            return None
        return self.prompt.render(self.prompt_values).input_digest

    def context(self, tool: str | None = None, step: str | None = None) -> AgentContext:
        return self.shim.context(
            self.agent_id,
            tool=tool,
            step=step,
            run=self.current_run(),
            input_digest=self.input_digest(),
        )

    @contextlib.contextmanager
    def acting(self) -> Iterator[AgentBinding]:
        """Make this binding the acting one (its object is what the shim checks)."""
        token = _acting_binding.set(self)
        try:
            yield self
        finally:
            _acting_binding.reset(token)


class LiveManifest:
    """The manifest source registered with the shim for an AutoGen agent id.

    Called before every mint: it describes the acting object of this agent id if one is
    acting, else the object it was registered with.
    """

    def __init__(self, binding: AgentBinding) -> None:
        self.binding = binding

    def __call__(self) -> AgentManifest:
        acting = _acting_binding.get()
        if (
            acting is not None
            and acting.shim is self.binding.shim
            and acting.agent_id == self.binding.agent_id
            and acting.agent is not None
        ):
            return acting.manifest()
        return self.binding.manifest()


def register_agent(binding: AgentBinding) -> RegisteredAgent:
    """Register the bound agent with its shim, with a live manifest source.

    If the shim already holds a registration of this agent id with the same checksum
    (registered from a static manifest, or live from another object of the same agent,
    one per concurrent run), that registration is kept and only made live: no request
    is sent. A changed agent, or a new one, is registered with the IdP.
    """
    checksum = binding.manifest().checksum()
    try:
        existing = binding.shim.agent(binding.agent_id)
    except InvalidGrant:
        existing = None
    if existing is not None and existing.checksum == checksum:
        if not isinstance(existing.source, LiveManifest):
            existing.source = LiveManifest(binding)
        return existing
    return binding.shim.register(LiveManifest(binding))


def acting_binding() -> AgentBinding | None:
    """The binding whose tool or handoff is running in this context, if any."""
    return _acting_binding.get()
