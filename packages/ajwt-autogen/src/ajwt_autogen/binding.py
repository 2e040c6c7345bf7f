"""Who an AutoGen agent is to the shim: its workflow id, its live object, its registration,
its run.

An :class:`AgentBinding` ties one AutoGen agent object to a :class:`~ajwt_core.shim.Shim`
and to the registration of that object's manifest (its ``checksum``): a shim may hold
several versions of one agent id (two teams, or two tenants, whose agents share a name
but not a prompt), and each object acts, hands off and completes as its own version.

While one of its tools or hand-offs runs, a binding is *live* (a context variable): the
checksum the shim recomputes before a mint, a hand-off or a completion is then the
checksum of the object that is actually acting, also when several objects (one per
concurrent run) share one registration.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autogen_agentchat.agents import AssistantAgent

from ajwt_autogen.manifest import manifest_from_autogen
from ajwt_core.checksum import AgentManifest, PromptSpec
from ajwt_core.errors import AgentContextError, AJWTError, Reason
from ajwt_core.shim import AgentContext, RegisteredAgent, Run, Shim
from ajwt_core.shim.context import current_run

if TYPE_CHECKING:
    from ajwt_autogen.team import TeamBinding

__all__ = ["AgentBinding", "register_agent"]

_live: ContextVar[tuple[AgentBinding, ...]] = ContextVar("ajwt_autogen_live", default=())
_BINDING = "_ajwt_binding"


def binding_of(agent: object) -> AgentBinding | None:
    """The binding of an agent secured by :func:`~ajwt_autogen.secure_agent` (``None``
    if it is not)."""
    found = getattr(agent, _BINDING, None)
    return found if isinstance(found, AgentBinding) else None


def set_binding(agent: AssistantAgent, binding: AgentBinding) -> None:
    setattr(agent, _BINDING, binding)


@dataclass(eq=False)
class AgentBinding:
    """One AutoGen agent as the shim knows it.

    ``agent`` is the ``AssistantAgent`` (``None`` when only the id is known: the
    application registered the manifest itself). ``run`` pins the binding to one run;
    by default the run is the shim's current run (``with shim.run(run):`` around
    ``team.run(...)``), else the run its saved state was resumed in. ``checksum`` is the
    registration it acts as (set by :func:`register_agent`).
    :func:`~ajwt_autogen.secure_agent` makes one per agent.

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
    checksum: str | None = None
    #: The run a saved state was loaded into (``agent.load_state``): used when no run is
    #: pinned and none is current.
    resumed: Run | None = None
    #: The run it last acted in, saved with the agent's state.
    last_run: Run | None = None
    #: The team it was secured with (hand-offs find their delegate's version there).
    team: TeamBinding | None = field(default=None, repr=False)

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

    @property
    def name(self) -> str:
        """The AutoGen name (the agent id when bound by id only)."""
        return self.agent.name if self.agent is not None else self.agent_id

    def current_run(self) -> Run:
        run = self.run or current_run()
        if run is None:
            acting = self.shim.current()
            run = acting.run if acting is not None else None
        # A resumed run, never one merely acted in before: outside `with shim.run(...)`
        # an agent must not drift into an earlier user's run.
        run = run or self.resumed or (self.team.resumed if self.team is not None else None)
        if run is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                f"agent {self.agent_id!r} acted outside any run: start one and run the team "
                "inside `with shim.run(run):`, pin the agent to it (secure_agent(..., run=run)) "
                "or load a state saved during a run (team.load_state)",
            )
        self.last_run = run
        if self.team is not None:
            self.team.last_run = run
        return run

    def known_run(self) -> Run | None:
        """The run this agent acts in, or last acted in (itself or a member of its team),
        or was resumed in; ``None`` if none: what its saved state records."""
        team = self.team
        return (
            self.run
            or current_run()
            or self.last_run
            or self.resumed
            or (team.last_run or team.resumed if team is not None else None)
        )

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
            checksum=self.checksum,
        )

    @contextlib.contextmanager
    def acting(self, *others: AgentBinding) -> Iterator[AgentBinding]:
        """Make this binding (and ``others``: a hand-off's delegate) the live objects
        whose manifests the shim checks."""
        token = _live.set((self, *others, *_live.get()))
        try:
            yield self
        finally:
            _live.reset(token)


class LiveManifest:
    """The manifest source registered with the shim for one version of an agent id.

    Called before every mint, hand-off and completion: it describes the live object of
    this registration if one is acting, else the object it was registered with.
    """

    def __init__(self, binding: AgentBinding) -> None:
        self.binding = binding

    def __call__(self) -> AgentManifest:
        mine = self.binding
        for live in _live.get():
            if (
                live.shim is mine.shim
                and live.agent_id == mine.agent_id
                and live.checksum == mine.checksum
                and live.agent is not None
            ):
                return live.manifest()
        return mine.manifest()


_registry_lock = threading.Lock()
_registry: weakref.WeakKeyDictionary[Shim, dict[str, weakref.WeakSet[Any]]] = (
    weakref.WeakKeyDictionary()
)


def register_agent(binding: AgentBinding) -> RegisteredAgent:
    """Register the bound agent with its shim, with a live manifest source, and set the
    binding's ``checksum`` (:func:`register_agents` for one agent)."""
    return register_agents([binding])[0]


def register_agents(bindings: Sequence[AgentBinding]) -> list[RegisteredAgent]:
    """Register the bound agents with their shim in one request, each with a live
    manifest source, and set each binding's ``checksum``.

    If the shim already holds a registration of an agent id with the same checksum
    (registered from a static manifest, or live from another object of the same agent,
    one per concurrent run), that registration is kept and only made live: nothing is
    sent for it. Changed agents and new ones are registered with the IdP, all in one
    request (``Shim.register_many``), each as one more version of its agent id.
    """
    registered: list[RegisteredAgent | None] = []
    # shim -> (agent id, checksum) -> the binding registered for it (one per version).
    pending: dict[Shim, dict[tuple[str, str], AgentBinding]] = {}
    for binding in bindings:
        checksum = binding.manifest().checksum()
        binding.checksum = checksum
        try:
            existing: RegisteredAgent | None = binding.shim.agent(binding.agent_id, checksum)
        except AJWTError:
            existing = None
        if existing is not None and not isinstance(existing.source, LiveManifest):
            existing.source = LiveManifest(binding)
        registered.append(existing)
        if existing is None:
            pending.setdefault(binding.shim, {}).setdefault((binding.agent_id, checksum), binding)
    fresh: dict[tuple[Shim, str, str], RegisteredAgent] = {}
    for shim, waiting in pending.items():
        done = shim.register_many([LiveManifest(binding) for binding in waiting.values()])
        fresh.update(((shim, *key), agent) for key, agent in zip(waiting, done, strict=True))
    with _registry_lock:
        for binding in bindings:
            known = _registry.setdefault(binding.shim, {})
            known.setdefault(binding.agent_id, weakref.WeakSet()).add(binding)
    return [
        agent
        if agent is not None
        else fresh[(binding.shim, binding.agent_id, binding.checksum or "")]
        for binding, agent in zip(bindings, registered, strict=True)
    ]


def bindings_of(shim: Shim, agent_id: str) -> list[AgentBinding]:
    """The live bindings of ``agent_id`` registered with ``shim`` by this adapter."""
    with _registry_lock:
        found: list[AgentBinding] = list(_registry.get(shim, {}).get(agent_id, ()))
    return found


def live_bindings() -> tuple[AgentBinding, ...]:
    """The bindings whose tool or hand-off is running in this context (innermost first)."""
    return _live.get()
