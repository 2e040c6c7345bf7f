"""What the adapter knows for one shim: which CrewAI agent is which workflow agent.

A :class:`CrewAIBinding` maps CrewAI roles to workflow agent ids, registers the agents
(with a manifest source that is re-read before every mint, DESIGN §3), and translates
the three CrewAI events onto the shim:

- a tool call (:meth:`CrewAIBinding.call_tool`): resolve the calling agent from the
  hook-announced call, ``shim.prepare`` (step, local checks, mint), run the tool as that
  agent (``shim.acting``), report ``tool_finished``;
- a delegation (:meth:`CrewAIBinding.delegate`): the coworker takes over the next step
  of the workflow; the delegator's ready steps are completed and ``shim.handoff`` signs
  the delegation;
- the end of work (:meth:`CrewAIBinding.finish_delegation`,
  :meth:`CrewAIBinding.complete_task`): a step in which the agent made a successful tool
  call is reported complete (``shim.complete``).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.process import Process
from crewai.tools.tool_failure import ToolFailure

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import AgentContextError, AJWTError, InvalidGrant, Reason
from ajwt_core.shim import AgentContext, RegisteredAgent, Run, Shim
from ajwt_core.shim.context import current_run
from ajwt_crewai.calls import DELEGATION_TOOLS, current_call
from ajwt_crewai.manifest import agent_prompt, default_agent_id, manifest_from_crewai, role_template

if TYPE_CHECKING:
    from crewai import Crew

__all__ = ["CrewAIBinding", "Handoff", "Refusal", "binding_for", "bindings", "secure_crew"]

T = TypeVar("T")

# The CrewAI agent object acting as a workflow agent right now, per binding: the
# manifest source reads it, so the checksum is the calling object's (which may be a
# copy CrewAI made) and not only the registered one's.
_live: ContextVar[Mapping[tuple[int, str], BaseAgent] | None] = ContextVar(
    "ajwt_crewai_live", default=None
)


@dataclass(frozen=True)
class Refusal:
    """A tool call, delegation or step completion the adapter refused or that failed."""

    agent: str
    tool: str
    error: AJWTError

    @property
    def reason(self) -> Reason:
        return self.error.reason


@dataclass(frozen=True)
class Handoff:
    """A signed delegation made for a CrewAI delegation tool call."""

    from_agent: str
    to_agent: str
    from_step: str
    to_step: str
    run: Run
    coworker: BaseAgent


@dataclass
class _StepProgress:
    agent: str
    succeeded: int = 0
    failed: int = 0


class CrewAIBinding:
    """The CrewAI agents of one shim, and their progress through each run.

    Get it with :func:`secure_crew` (or :func:`binding_for`); ``refusals`` lists every
    call the adapter refused, with its A-JWT reason.

    >>> from ajwt_core.shim import Shim
    >>> binding = binding_for(Shim("http://127.0.0.1:9", "app", client_secret="s"))
    >>> binding.agent_ids
    {}
    """

    def __init__(self, shim: Shim) -> None:
        self._shim_ref = weakref.ref(shim)
        self._audience: str | None = None
        self._roles: dict[str, str] = {}
        self._agents: dict[str, BaseAgent] = {}
        # Every CrewAI object added (one per crew secured for an agent id), by identity.
        self._objects: dict[int, weakref.ReferenceType[BaseAgent]] = {}
        self._registered: set[str] = set()
        self._progress: dict[str, dict[str, _StepProgress]] = {}
        self._lock = threading.Lock()
        self.refusals: list[Refusal] = []

    # ------------------------------------------------------------------ agents

    @property
    def shim(self) -> Shim:
        shim = self._shim_ref()
        if shim is None:  # pragma: no cover - the registry drops bindings with their shim
            raise AgentContextError(Reason.NO_AGENT_CONTEXT, "the shim has been closed")
        return shim

    @property
    def audience(self) -> str | None:
        """The resource for hand-offs and completions: as set, else the shim's default."""
        return self._audience or self.shim.default_audience

    @audience.setter
    def audience(self, value: str | None) -> None:
        self._audience = value

    @property
    def agent_ids(self) -> dict[str, str]:
        """CrewAI role → workflow agent id."""
        return dict(self._roles)

    def add(self, agent: BaseAgent, agent_id: str) -> None:
        """Know ``agent`` (by its role) as workflow agent ``agent_id``."""
        role = role_template(agent) or agent.role
        with self._lock:
            known = self._roles.get(role)
            if known is not None and known != agent_id:
                raise ValueError(f"role {role!r} is already mapped to agent {known!r}")
            self._roles[role] = agent_id
            self._agents.setdefault(agent_id, agent)
            self._objects = {k: r for k, r in self._objects.items() if r() is not None}
            self._objects[id(agent)] = weakref.ref(agent)

    def knows(self, agent: BaseAgent) -> bool:
        """Whether ``agent`` is an object added to this binding (of any crew secured with
        it), by identity: not merely an agent with a known role."""
        ref = self._objects.get(id(agent))
        return ref is not None and ref() is agent

    def register(self) -> list[RegisteredAgent]:
        """Register the agents not registered yet (one batch request to the IdP)."""
        with self._lock:
            pending = [a for a in self._agents if a not in self._registered]
        if not pending:
            return []
        registered = self.shim.register_many([self._source(agent_id) for agent_id in pending])
        with self._lock:
            self._registered.update(pending)
        return registered

    def _source(self, agent_id: str) -> Callable[[], AgentManifest]:
        def manifest() -> AgentManifest:
            return manifest_from_crewai(self._live_object(agent_id), agent_id)

        return manifest

    def _live_object(self, agent_id: str) -> BaseAgent:
        agent = (_live.get() or {}).get((id(self), agent_id))
        if agent is not None:
            return agent
        call = current_call()
        if (
            call is not None
            and call.agent is not None
            and self.agent_id_for(call.agent) == agent_id
        ):
            return call.agent
        return self._agents[agent_id]

    @contextlib.contextmanager
    def _acting_objects(self, objects: Mapping[str, BaseAgent | None]) -> Iterator[None]:
        mine = {(id(self), agent_id): agent for agent_id, agent in objects.items() if agent}
        token = _live.set({**(_live.get() or {}), **mine})
        try:
            yield
        finally:
            _live.reset(token)

    def agent_id_for(self, agent: BaseAgent) -> str | None:
        """The workflow id of a CrewAI agent, by its role; ``None`` for an unknown agent
        or one whose role was changed."""
        role = role_template(agent)
        return None if role is None else self._roles.get(role)

    def registered_agents(self) -> list[BaseAgent]:
        return list(self._agents.values())

    def _require_id(self, agent: BaseAgent | None) -> str:
        if agent is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT, "CrewAI named no agent for this tool call"
            )
        agent_id = self.agent_id_for(agent)
        if agent_id is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                f"the CrewAI agent with role {agent.role!r} is not an A-JWT agent of this "
                "shim (map its role in secure_crew(crew, shim, {role: agent id}))",
            )
        return agent_id

    # -------------------------------------------------------------- tool calls

    def _tool_context(self, tool: str, step: str | None) -> tuple[AgentContext, BaseAgent | None]:
        call = current_call()
        if call is not None:
            agent_id = self._require_id(call.agent)
            assert call.agent is not None
            digest = agent_prompt(call.agent).input_digest
            context = self.shim.context(agent_id, step=step, tool=tool, input_digest=digest)
            return context, call.agent
        acting = self.shim.current()
        if acting is not None:
            context = AgentContext(
                acting.agent,
                acting.run,
                step=step or acting.step,
                tool=tool,
                input_digest=acting.input_digest,
            )
            return context, None
        raise AgentContextError(
            Reason.NO_AGENT_CONTEXT,
            f"tool {tool!r} was called outside any CrewAI agent and any A-JWT acting "
            "context; refusing to run it",
        )

    def _caller_label(self) -> str:
        call = current_call()
        if call is None or call.agent is None:
            acting = self.shim.current()
            return acting.agent if acting is not None else "?"
        return self.agent_id_for(call.agent) or call.agent.role

    def record_refusal(self, agent: str, tool: str, error: AJWTError) -> None:
        with self._lock:
            self.refusals.append(Refusal(agent=agent, tool=tool, error=error))

    def _begin(
        self, tool: str, step: str | None, audience: str | None
    ) -> tuple[AgentContext, BaseAgent | None]:
        try:
            context, caller = self._tool_context(tool, step)
            with self._acting_objects({context.agent: caller}):
                resolved = self.shim.prepare(context)
                if audience is not None:
                    self.shim.token(resolved, audience)
        except AJWTError as error:
            self.record_refusal(self._caller_label(), tool, error)
            raise
        self._enter(resolved.run, resolved.step or "", resolved.agent)
        return resolved, caller

    async def _abegin(
        self, tool: str, step: str | None, audience: str | None
    ) -> tuple[AgentContext, BaseAgent | None]:
        try:
            context, caller = self._tool_context(tool, step)
            with self._acting_objects({context.agent: caller}):
                resolved = await self.shim.aprepare(context)
                if audience is not None:
                    await self.shim.atoken(resolved, audience)
        except AJWTError as error:
            self.record_refusal(self._caller_label(), tool, error)
            raise
        self._enter(resolved.run, resolved.step or "", resolved.agent)
        return resolved, caller

    @contextlib.contextmanager
    def _running(self, resolved: AgentContext, caller: BaseAgent | None) -> Iterator[None]:
        with (
            self._acting_objects({resolved.agent: caller}),
            self.shim.acting(
                resolved.agent,
                step=resolved.step,
                tool=resolved.tool,
                run=resolved.run,
                input_digest=resolved.input_digest,
            ),
        ):
            yield

    def _end(self, resolved: AgentContext, error: BaseException | None) -> None:
        self.shim.tool_finished(resolved, error=error)
        progress = self._step(resolved.run, resolved.step or "", resolved.agent)
        with self._lock:
            if error is None:
                progress.succeeded += 1
            else:
                progress.failed += 1

    def call_tool(
        self,
        tool: str,
        run_tool: Callable[[], T],
        *,
        step: str | None = None,
        audience: str | None = None,
    ) -> T:
        """Run ``run_tool`` as the agent CrewAI is executing, for ``tool``.

        Raises the shim's :class:`~ajwt_core.errors.AJWTError` before the tool runs if the
        call is refused (CrewAI then shows the agent a tool error).
        """
        resolved, caller = self._begin(tool, step, audience)
        with self._running(resolved, caller):
            try:
                result = run_tool()
            except BaseException as error:
                self._end(resolved, error)
                raise
        self._end(resolved, _failure_of(result))
        return result

    async def acall_tool(
        self,
        tool: str,
        run_tool: Callable[[], Awaitable[T]],
        *,
        step: str | None = None,
        audience: str | None = None,
    ) -> T:
        """The async twin of :meth:`call_tool`."""
        resolved, caller = await self._abegin(tool, step, audience)
        with self._running(resolved, caller):
            try:
                result = await run_tool()
            except BaseException as error:
                self._end(resolved, error)
                raise
        self._end(resolved, _failure_of(result))
        return result

    def resolve(self) -> AgentContext | None:
        """The context resolver for HTTP calls made by tools that are not secured: the
        agent and tool of the hook-announced call (delegation calls excepted)."""
        call = current_call()
        run = current_run()
        if call is None or call.agent is None or run is None:
            return None
        if call.tool_name in DELEGATION_TOOLS:
            return None
        agent_id = self.agent_id_for(call.agent)
        if agent_id is None:
            return None
        return AgentContext(agent_id, run, tool=call.tool_name)

    # --------------------------------------------------------------- progress

    def _step(self, run: Run, step: str, agent: str) -> _StepProgress:
        with self._lock:
            steps = self._progress.setdefault(run.run_id, {})
            progress = steps.get(step)
            if progress is None or progress.agent != agent:
                progress = steps[step] = _StepProgress(agent)
            return progress

    def _enter(self, run: Run, step: str, agent: str) -> None:
        self._step(run, step, agent)

    def _open_steps(self, run: Run, agent: str) -> list[str]:
        completed = self.shim.completed_steps(run)
        with self._lock:
            steps = self._progress.get(run.run_id, {})
            return [
                step
                for step, p in steps.items()
                if p.agent == agent and p.succeeded and step not in completed
            ]

    def _complete(self, agent: str, step: str, run: Run, obj: BaseAgent | None) -> None:
        try:
            with self._acting_objects({agent: obj}):
                self.shim.complete(agent, step, run=run, audience=self.audience)
        except AJWTError as error:
            self.record_refusal(agent, f"complete:{step}", error)
            raise

    def complete_task(self, agent: BaseAgent, run: Run) -> list[str]:
        """A CrewAI task of ``agent`` ended: complete the steps in which it made a
        successful tool call. Returns the steps completed."""
        agent_id = self.agent_id_for(agent)
        if agent_id is None:
            return []
        steps = self._open_steps(run, agent_id)
        for step in steps:
            self._complete(agent_id, step, run, agent)
        return steps

    # -------------------------------------------------------------- delegation

    def delegate(self, delegator: BaseAgent, coworker: BaseAgent, run: Run) -> Handoff:
        """``delegator`` hands work to ``coworker`` (a CrewAI delegation tool call).

        The coworker takes over the *next* step of the workflow: the first step that is
        ready once the delegator's own ready steps are done and whose agent is the
        coworker. If the next step belongs to another agent the hand-off is refused
        (``delegate_mismatch``, T11), locally and by the IdP. The delegator's ready
        steps are completed (it hands on its work), then ``shim.handoff`` signs the
        delegation and mints the coworker's first token.
        """
        from_id = self._require_id(delegator)
        to_id = self._require_id(coworker)
        workflow = run.workflow
        completed = set(self.shim.completed_steps(run))
        handing_on: list[str] = []
        while True:
            ready = [
                s
                for s in workflow.next_steps(completed | set(handing_on))
                if workflow.step(s).agent == from_id
            ]
            if not ready:
                break
            handing_on.extend(ready)
        done = completed | set(handing_on)
        ready = workflow.next_steps(done)
        if not ready:
            raise InvalidGrant(
                Reason.DELEGATION_NOT_ALONG_WORKFLOW,
                f"{from_id!r} delegated to {to_id!r}, but no step of the run is left to hand on",
            )
        to_step = next((s for s in ready if workflow.step(s).agent == to_id), ready[0])
        before = workflow.ancestors(to_step)
        own = [
            s
            for s in workflow.topological_order()
            if s in done and s in before and workflow.step(s).agent == from_id
        ]
        if not own:
            raise InvalidGrant(
                Reason.DELEGATION_NOT_ALONG_WORKFLOW,
                f"{from_id!r} has no step before step {to_step!r}, so it cannot hand it on",
            )
        from_step = own[-1]
        if self.shim.local_checks:
            workflow.check_delegation_edge(from_step, to_step, to_id)
        with self._acting_objects({from_id: delegator, to_id: coworker}):
            for step in handing_on:
                self.shim.complete(from_id, step, run=run, audience=self.audience)
            self.shim.handoff(
                from_id,
                to_id,
                to_step,
                run=run,
                from_step=from_step,
                audience=self.audience,
            )
        self._enter(run, to_step, to_id)
        return Handoff(from_id, to_id, from_step, to_step, run, coworker)

    def finish_delegation(self, handoff: Handoff) -> bool:
        """The coworker's delegated work returned: complete its step if it made a
        successful tool call in it. Returns whether the step was completed."""
        if handoff.to_step not in self._open_steps(handoff.run, handoff.to_agent):
            return False
        self._complete(handoff.to_agent, handoff.to_step, handoff.run, handoff.coworker)
        return True


def _failure_of(result: Any) -> BaseException | None:
    if isinstance(result, ToolFailure):
        return RuntimeError(result.message)
    return None


_BINDINGS: weakref.WeakKeyDictionary[Shim, CrewAIBinding] = weakref.WeakKeyDictionary()
_BINDINGS_LOCK = threading.Lock()


def binding_for(shim: Shim) -> CrewAIBinding:
    """The adapter's binding for ``shim`` (created on first use)."""
    with _BINDINGS_LOCK:
        binding = _BINDINGS.get(shim)
        if binding is None:
            binding = _BINDINGS[shim] = CrewAIBinding(shim)
            shim.add_context_resolver(binding.resolve)
        return binding


def bindings() -> list[CrewAIBinding]:
    with _BINDINGS_LOCK:
        return list(_BINDINGS.values())


def _members(crew: Crew) -> list[BaseAgent]:
    members: list[BaseAgent] = []
    candidates: list[BaseAgent | None] = [
        *crew.agents,
        *(task.agent for task in crew.tasks),
        crew.manager_agent,
    ]
    for agent in candidates:
        if agent is not None and all(agent is not m for m in members):
            members.append(agent)
    return members


def secure_crew(
    crew: Crew,
    shim: Shim,
    agents: Mapping[str, str] | None = None,
    *,
    audience: str | None = None,
) -> CrewAIBinding:
    """Register every agent of ``crew`` with ``shim`` and install the CrewAI hooks.

    ``agents`` maps each CrewAI role (as written, before inputs are filled in) to its
    workflow agent id; without it an agent's id is :func:`default_agent_id` of its
    role. ``audience`` is the resource for hand-offs and step completions made before
    an agent holds a token (default: the shim's ``default_audience``). A hierarchical
    crew needs an explicit ``manager_agent`` (mapped like the others).

    >>> binding = secure_crew(crew, shim, {"Security supervisor": "supervisor",
    ...                                    "Dependency planner": "planner"})  # doctest: +SKIP
    >>> with shim.run(run):                                                 # doctest: +SKIP
    ...     crew.kickoff(inputs={"org": "acme"})
    """
    from ajwt_crewai.hooks import install_hooks

    if crew.process == Process.hierarchical and crew.manager_agent is None:
        raise ValueError(
            "secure_crew needs the hierarchical crew's manager_agent: the manager "
            "CrewAI creates from manager_llm at kickoff cannot be registered beforehand"
        )
    binding = binding_for(shim)
    if audience is not None:
        binding.audience = audience
    members = _members(crew)
    missing = []
    for agent in members:
        role = role_template(agent) or agent.role
        if agents is None:
            binding.add(agent, default_agent_id(role))
        elif role in agents:
            binding.add(agent, agents[role])
        else:
            missing.append(role)
    if missing:
        raise ValueError(f"no workflow agent id for the CrewAI role(s) {missing!r}")
    binding.register()
    install_hooks()
    return binding
