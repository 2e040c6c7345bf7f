"""What the adapter knows for one shim: which CrewAI agent is which workflow agent.

A :class:`CrewAIBinding` maps CrewAI roles to workflow agent ids, registers the agents
(with a manifest source that is re-read before every mint, DESIGN §3), and translates
the three CrewAI events onto the shim:

- a tool call (:meth:`CrewAIBinding.call_tool`): resolve the calling agent from the
  hook-announced call, ``shim.prepare`` (step, local checks, mint), run the tool as that
  agent (``shim.acting``), report ``tool_finished``;
- a delegation (:meth:`CrewAIBinding.delegate`, CrewAI's "Delegate work to coworker"):
  the coworker takes over the next step of the workflow; the delegator's ready steps
  are completed, the one it hands from by the hand-off itself, and ``shim.handoff``
  signs the delegation;
- a question (:meth:`CrewAIBinding.consult`, "Ask question to coworker"): a
  consultation inside the asking agent's step (``shim.consult``); the run does not move;
- the end of work (:meth:`CrewAIBinding.finish_delegation`,
  :meth:`CrewAIBinding.complete_task`): a step in which the agent made a successful tool
  call, and no call was refused, is reported complete (``shim.complete``).

Every refusal lands in :attr:`CrewAIBinding.refusals`: a secured tool refused before it
ran, a request of an unsecured tool the shim could not get a token for (IdP unreachable
included), the API's own 401/403 (seen by the shim's ``httpx.Auth`` in the
``WWW-Authenticate`` challenge, even when the tool returns the text instead of raising),
a refused delegation, consultation or completion (one deferred to the run's next token
request included: refused when it is sent).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.process import Process
from crewai.tools.tool_failure import ToolFailure

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import (
    AgentContextError,
    AJWTError,
    InvalidGrant,
    Reason,
    error_from_oauth,
)
from ajwt_core.shim import AgentContext, RegisteredAgent, Run, Shim
from ajwt_core.shim.client import ShimEvent
from ajwt_core.shim.context import current_run
from ajwt_crewai.calls import DELEGATION_TOOLS, current_call
from ajwt_crewai.manifest import (
    agent_prompt,
    default_agent_id,
    describe_change,
    manifest_from_crewai,
    role_template,
)

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


#: How many refusals ``CrewAIBinding.refusals`` keeps (the oldest go first).
REFUSALS_KEPT = 1000
#: Runs whose steps' progress (work done, refusals) a binding keeps, the least recently
#: used forgotten first: a run forgotten mid-way completes no step at the end of a task.
PROGRESS_RUNS_KEPT = 4096


@dataclass(frozen=True)
class Refusal:
    """A tool call, delegation or step completion the adapter refused or that failed."""

    agent: str
    tool: str
    error: AJWTError
    #: The run it happened in (None: outside any run).
    run_id: str | None = None

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
    #: ``"handoff"`` (delegate work: the coworker takes the step) or ``"consult"`` (ask a
    #: question: the coworker answers inside the asking agent's step).
    kind: str = "handoff"


@dataclass
class _StepProgress:
    agent: str
    succeeded: int = 0
    failed: int = 0
    refused: int = 0
    #: Requests the API accepted (2xx) in the step, through ``shim.auth()``: the work of
    #: a tool the adapter does not wrap (a secured tool's calls count in ``succeeded``).
    accepted: int = 0

    @property
    def did_work(self) -> bool:
        """A secured tool call succeeded, or (no secured call failed) the API accepted a
        request of the step."""
        return bool(self.succeeded or (self.accepted and not self.failed))


class CrewAIBinding:
    """The CrewAI agents of one shim, and their progress through each run.

    Get it with :func:`secure_crew` (or :func:`binding_for`); ``refusals`` lists the
    calls the adapter refused, with their A-JWT reasons, in every run of the shim (the
    latest :data:`REFUSALS_KEPT`); :meth:`refusals_in` those of one run.

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
        # The crews secured with this binding, by identity (an agent CrewAI creates at
        # kickoff, the manager built from manager_llm, is known by its crew).
        self._crews: dict[int, weakref.ReferenceType[Crew]] = {}
        self._registered: set[str] = set()
        # The manifest each agent id was registered with: what changed is said from it.
        self._manifests: dict[str, AgentManifest] = {}
        # run id -> (step, agent) -> progress (a consulted agent acts in the asker's step).
        # run id -> (step, agent) -> its progress, for the latest PROGRESS_RUNS_KEPT runs.
        self._progress: OrderedDict[str, dict[tuple[str, str], _StepProgress]] = OrderedDict()
        self._lock = threading.Lock()
        self.refusals: list[Refusal] = []
        # The crews secured with ``strict=True``: a refusal aborts their kickoff.
        self._strict: set[int] = set()

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

    def add_crew(self, crew: Crew, *, strict: bool = False) -> None:
        """Know ``crew`` as secured with this binding; ``strict``: a refusal aborts its
        kickoff."""
        with self._lock:
            self._crews = {k: r for k, r in self._crews.items() if r() is not None}
            self._strict &= set(self._crews)
            self._crews[id(crew)] = weakref.ref(crew)
            if strict:
                self._strict.add(id(crew))
            else:
                self._strict.discard(id(crew))

    def strict_for(self, crew: object) -> bool:
        """Whether a refusal aborts ``crew``'s kickoff (``secure_crew(..., strict=True)``)."""
        return self.secured(crew) and id(crew) in self._strict

    def secured(self, crew: object) -> bool:
        """Whether ``crew`` was secured with this binding (by identity)."""
        ref = self._crews.get(id(crew))
        return ref is not None and ref() is crew

    def register(self) -> list[RegisteredAgent]:
        """Register the agents not registered yet (one batch request to the IdP)."""
        with self._lock:
            pending = [a for a in self._agents if a not in self._registered]
        if not pending:
            return []
        registered = self.shim.register_many([self._source(agent_id) for agent_id in pending])
        with self._lock:
            self._registered.update(pending)
            for agent_id in pending:
                self._manifests[agent_id] = manifest_from_crewai(self._agents[agent_id], agent_id)
        return registered

    def check_same_agent(self, agent: BaseAgent, agent_id: str) -> None:
        """Refuse a crew's agent whose id this shim already registered as another agent
        (the same role with other tools, prompt or model): one shim holds one version
        of each agent, and the live object's checksum would be refused at every call."""
        with self._lock:
            registered = self._manifests.get(agent_id)
        if registered is None or self.knows(agent):
            return
        live = manifest_from_crewai(agent, agent_id)
        if live.checksum() == registered.checksum():
            return
        change = describe_change(registered, live, agent) or "its manifest differs"
        raise InvalidGrant(
            Reason.CHECKSUM_MISMATCH,
            f"agent {agent_id!r} of this crew is not the agent {agent_id!r} this shim "
            f"registered for an earlier crew (compared with that one, {change}): one shim "
            "holds one version of each agent. Build the crew's agents the same way for every crew, "
            "secure this crew with a Shim of its own, or give the role another agent id "
            "(a step of its own in the workflow)",
        )

    def explained(self, error: AJWTError, agent_id: str, agent: BaseAgent | None) -> AJWTError:
        """``error`` with what changed in the agent when it is a ``checksum_mismatch``
        (same class and reason)."""
        registered = self._manifests.get(agent_id)
        if error.reason != Reason.CHECKSUM_MISMATCH or registered is None:
            return error
        live_agent = agent or self._live_object(agent_id)
        change = describe_change(registered, manifest_from_crewai(live_agent, agent_id), live_agent)
        if not change or change in error.description:
            return error
        explained = type(error)(error.reason, f"{error.description}: since secure_crew, {change}")
        explained.__cause__ = error
        return explained

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
        from ajwt_crewai.hooks import hooks_installed

        removed = (
            ""
            if hooks_installed()
            else (
                " (the adapter's CrewAI hooks are not installed: crewai.hooks."
                "clear_all_global_hooks() removed them? secured crews reinstall them at kickoff)"
            )
        )
        raise AgentContextError(
            Reason.NO_AGENT_CONTEXT,
            f"tool {tool!r} was called outside any CrewAI agent and any A-JWT acting "
            f"context; refusing to run it{removed}",
        )

    def _caller_label(self) -> str:
        call = current_call()
        if call is None or call.agent is None:
            acting = self.shim.current()
            return acting.agent if acting is not None else "?"
        return self.agent_id_for(call.agent) or call.agent.role

    def record_refusal(
        self, agent: str, tool: str, error: AJWTError, run_id: str | None = None
    ) -> None:
        """List a refusal, in ``run_id`` (default: the current run)."""
        if run_id is None:
            run = current_run()
            run_id = run.run_id if run is not None else None
        with self._lock:
            self.refusals.append(Refusal(agent=agent, tool=tool, error=error, run_id=run_id))
            del self.refusals[:-REFUSALS_KEPT]
        call = current_call()
        if call is not None:
            call.refused.append((agent, tool, error))

    def refusals_in(self, run: Run | str) -> list[Refusal]:
        """The refusals of one run (a user's kickoff), of those ``refusals`` keeps: what a
        service serving several users at once checks after its user's kickoff.

        >>> from ajwt_core.shim import Shim
        >>> binding = binding_for(Shim("http://127.0.0.1:9", "app", client_secret="s"))
        >>> binding.refusals_in("run-1")
        []
        """
        run_id = run if isinstance(run, str) else run.run_id
        with self._lock:
            return [refusal for refusal in self.refusals if refusal.run_id == run_id]

    def on_event(self, event: ShimEvent) -> None:
        """The shim's observer: a request refused by the IdP or by the API, made by any
        tool (secured or not), is a refusal of the call in progress, and its step is not
        completed; a request the API accepted counts as work done in its step, so that
        the step of a plain tool using ``shim.auth()`` completes like a secured tool's;
        a deferred step completion refused when it was sent is a refusal too
        (``complete:<step>``)."""
        if event.kind == "api_accepted":
            step = self._event_step(event)
            if step is not None:
                progress = self._step_of(event.run_id, step, event.agent)
                with self._lock:
                    progress.accepted += 1
            return
        detail = event.detail
        if event.kind == "completion_refused" and detail.get("deferred"):
            # A completion deferred at the end of a task (sent with the next token
            # request, or when the shim.run block ends) that the IdP or the shim refused
            # then: the step was not completed after all.
            step = f"complete:{event.step}"
            error = _refusal_of(detail, "the IdP refused it")
            self.record_refusal(event.agent, step, error, event.run_id or None)
            return
        if event.kind not in ("api_refused", "request_refused"):
            return
        error = _refusal_of(detail, f"the API refused the request (HTTP {detail.get('status')})")
        if event.kind == "api_refused":
            error = type(error)(error.reason, f"the API refused the request: {error.description}")
        self.record_refusal(event.agent, event.tool or "?", error, event.run_id or None)
        step = self._event_step(event)
        if step is not None:
            progress = self._step_of(event.run_id, step, event.agent)
            with self._lock:
                progress.refused += 1

    def _event_step(self, event: ShimEvent) -> str | None:
        """The step of a shim event: as the shim resolved it, else (a request refused
        before a token named its step) the step the agent's tool belongs to now."""
        if event.step is not None:
            return event.step
        run = current_run()
        if run is None or run.run_id != event.run_id:
            return None
        try:
            return self.shim.resolve_step(AgentContext(event.agent, run, tool=event.tool))
        except AJWTError:
            return None

    def _begin(
        self, tool: str, step: str | None, audience: str | None
    ) -> tuple[AgentContext, BaseAgent | None]:
        context: AgentContext | None = None
        caller: BaseAgent | None = None
        try:
            context, caller = self._tool_context(tool, step)
            with self._acting_objects({context.agent: caller}):
                resolved = self.shim.prepare(context)
                if audience is not None:
                    self.shim.token(resolved, audience)
        except AJWTError as error:
            raise self._refused(tool, error, context, caller) from None
        self._enter(resolved.run, resolved.step or "", resolved.agent)
        return resolved, caller

    def _refused(
        self,
        tool: str,
        error: AJWTError,
        context: AgentContext | None,
        caller: BaseAgent | None,
    ) -> AJWTError:
        if context is not None:
            error = self.explained(error, context.agent, caller)
        self.record_refusal(self._caller_label(), tool, error)
        return error

    async def _abegin(
        self, tool: str, step: str | None, audience: str | None
    ) -> tuple[AgentContext, BaseAgent | None]:
        context: AgentContext | None = None
        caller: BaseAgent | None = None
        try:
            context, caller = self._tool_context(tool, step)
            with self._acting_objects({context.agent: caller}):
                resolved = await self.shim.aprepare(context)
                if audience is not None:
                    await self.shim.atoken(resolved, audience)
        except AJWTError as error:
            raise self._refused(tool, error, context, caller) from None
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
        call = current_call()
        if error is None and call is not None and call.refused:
            # The tool answered, but an API call it made was refused (it returned the
            # 401/403 text instead of raising): the call did not do its work.
            error = call.refused[-1][2]
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

    def cache_scope(self, tool: str) -> str | None:
        """The :class:`~ajwt_crewai.cache.StepCache` key of the call in progress: its
        workflow agent, run and step (``None``: not cached, nor served from the cache)."""
        call = current_call()
        run = current_run()
        if call is None or call.agent is None or run is None:
            return None
        agent_id = self.agent_id_for(call.agent)
        if agent_id is None:
            return None
        try:
            step = self.shim.resolve_step(AgentContext(agent_id, run, tool=tool))
        except AJWTError:
            return None
        return f"{agent_id}\x1f{run.run_id}\x1f{step}"

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
        return AgentContext(agent_id, run, tool=call.tool_name, acting_block=call.scope)

    # --------------------------------------------------------------- progress

    def _step(self, run: Run, step: str, agent: str) -> _StepProgress:
        return self._step_of(run.run_id, step, agent)

    def _step_of(self, run_id: str, step: str, agent: str) -> _StepProgress:
        with self._lock:
            steps = self._progress.get(run_id)
            if steps is None:
                steps = self._progress[run_id] = {}
                if len(self._progress) > PROGRESS_RUNS_KEPT:
                    self._progress.popitem(last=False)
            else:
                self._progress.move_to_end(run_id)
            return steps.setdefault((step, agent), _StepProgress(agent))

    def _enter(self, run: Run, step: str, agent: str) -> None:
        self._step(run, step, agent)

    def _open_steps(self, run: Run, agent: str) -> list[str]:
        completed = self.shim.completed_steps(run)
        with self._lock:
            steps = self._progress.get(run.run_id, {})
            # A refused call in the step, the agent's or a consulted agent's, keeps it open.
            refused = {step for (step, _), p in steps.items() if p.refused}
            return [
                step
                for (step, who), p in steps.items()
                if who == agent and p.did_work and step not in refused and step not in completed
            ]

    def _complete(self, agent: str, step: str, run: Run, obj: BaseAgent | None) -> None:
        try:
            with self._acting_objects({agent: obj}):
                # Sent with the run's next token request (the next delegation), or when
                # its shim.run block ends (DESIGN §6.7).
                self.shim.complete(agent, step, run=run, defer=True)
        except AJWTError as error:
            explained = self.explained(error, agent, obj)
            self.record_refusal(agent, f"complete:{step}", explained, run.run_id)
            raise explained from None

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
        # The step handed from, when it is one the delegator hands on, is completed by
        # the hand-off itself (one request, DESIGN §6.7); any earlier ones first.
        rides = bool(handing_on) and handing_on[-1] == from_step
        with self._explaining({from_id: delegator, to_id: coworker}):
            for step in handing_on[:-1] if rides else handing_on:
                self.shim.complete(from_id, step, run=run, audience=self.audience)
            self.shim.handoff(
                from_id,
                to_id,
                to_step,
                run=run,
                from_step=from_step,
                audience=self.audience,
                complete=rides,
            )
        self._enter(run, to_step, to_id)
        return Handoff(from_id, to_id, from_step, to_step, run, coworker)

    def consult(self, asker: BaseAgent, coworker: BaseAgent, run: Run) -> Handoff:
        """``asker`` asks ``coworker`` a question (CrewAI's "Ask question to coworker"):
        a consultation inside the asker's current step (``shim.consult``; the step must
        list the coworker in its ``consult``). The coworker then acts in that step with
        what the consultation grants; the run does not move and nothing is completed."""
        from_id = self._require_id(asker)
        to_id = self._require_id(coworker)
        with self._explaining({from_id: asker, to_id: coworker}):
            issued = self.shim.consult(from_id, to_id, run=run, audience=self.audience)
        return Handoff(from_id, to_id, issued.step, issued.step, run, coworker, kind="consult")

    @contextlib.contextmanager
    def _explaining(self, objects: Mapping[str, BaseAgent]) -> Iterator[None]:
        """Act with these CrewAI objects; a checksum refusal names what changed."""
        try:
            with self._acting_objects(objects):
                yield
        except AJWTError as error:
            if error.reason != Reason.CHECKSUM_MISMATCH:
                raise
            for agent_id, agent in objects.items():
                explained = self.explained(error, agent_id, agent)
                if explained is not error:
                    raise explained from None
            raise

    def finish_delegation(self, handoff: Handoff) -> bool:
        """The coworker's delegated work returned: complete its step if it made a
        successful tool call in it. Returns whether the step was completed."""
        if handoff.kind == "consult":
            return False
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
            shim.subscribe(binding.on_event)
        return binding


def _refusal_of(detail: Mapping[str, Any], otherwise: str) -> AJWTError:
    """The typed error a shim event's ``detail`` tells of (``error``, ``reason``,
    ``description``, ``status``); ``otherwise`` when it carries no description."""
    body = {
        "error": detail.get("error"),
        "error_description": detail.get("description") or otherwise,
        "ajwt_reason": detail.get("reason"),
    }
    return error_from_oauth(body, int(detail.get("status") or 400))


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


def manager_from_llm(crew: Crew) -> BaseAgent:
    """The manager CrewAI builds from ``manager_llm`` when a hierarchical crew is kicked
    off, built the same way (role, goal and backstory from CrewAI's prompts, the same
    LLM, no tools of its own) so that it can be registered before kickoff: its checksum
    is the live manager's."""
    from crewai import Agent
    from crewai.utilities.i18n import get_i18n
    from crewai.utilities.llm_utils import create_llm

    i18n = get_i18n(prompt_file=crew.prompt_file)
    return Agent(
        role=i18n.retrieve("hierarchical_manager_agent", "role"),
        goal=i18n.retrieve("hierarchical_manager_agent", "goal"),
        backstory=i18n.retrieve("hierarchical_manager_agent", "backstory"),
        tools=[],
        allow_delegation=True,
        llm=create_llm(crew.manager_llm),
    )


def _install_step_cache(crew: Crew, binding: CrewAIBinding, members: list[BaseAgent]) -> None:
    from crewai.agents.cache.cache_handler import CacheHandler

    from ajwt_crewai.cache import StepCache

    cache = StepCache()
    cache.set_scope(binding.cache_scope)
    crew._cache_handler = cache
    for agent in members:
        handler = getattr(agent.tools_handler, "cache", None)
        if isinstance(handler, CacheHandler) and not isinstance(handler, StepCache):
            agent.set_cache_handler(cache)


def _check_tool_shims(crew: Crew, members: list[BaseAgent], shim: Shim) -> None:
    """Refuse a tool secured with another shim: its calls would be bound to that shim's
    agents, which this crew's agents are not, and refused (``no_agent_context``) where
    this shim's observers never see them."""
    from ajwt_crewai.tools import AJWTTool

    tools = [t for a in members for t in a.tools or []]
    tools += [t for task in crew.tasks for t in task.tools or []]
    for tool in tools:
        if isinstance(tool, AJWTTool) and tool.shim is not shim:
            raise ValueError(
                f"tool {tool.name!r} was secured with another Shim than this crew's: "
                "secure the crew and its tools with the same shim (ajwt_tool(shim), "
                "secure_tool(tool, shim))"
            )


def secure_crew(
    crew: Crew,
    shim: Shim,
    agents: Mapping[str, str] | None = None,
    *,
    audience: str | None = None,
    strict: bool = False,
) -> CrewAIBinding:
    """Register every agent of ``crew`` with ``shim`` and install the CrewAI hooks.

    ``agents`` maps each CrewAI role (as written, before inputs are filled in) to its
    workflow agent id; without it an agent's id is :func:`default_agent_id` of its
    role. ``audience`` is the resource for hand-offs and step completions made before
    an agent holds a token (default: the shim's ``default_audience``). A hierarchical
    crew's manager is registered too: its ``manager_agent``, or the manager CrewAI
    builds from ``manager_llm`` (role ``"Crew Manager"``, :func:`manager_from_llm`);
    map it like the others, to the agent of a routing step (a step with no tools).

    ``strict=True``: a refusal (a tool, the API, a delegation) aborts ``kickoff`` with
    :class:`~ajwt_crewai.hooks.AJWTRefusal` (CrewAI's ``HookAborted``, carrying the
    A-JWT error) instead of being told to the agent. The crew's tool cache is replaced
    by one keyed by workflow agent, run and step (:class:`~ajwt_crewai.cache.StepCache`),
    and the crew reinstalls the adapter's hooks at each kickoff.

    >>> binding = secure_crew(crew, shim, {"Security supervisor": "supervisor",
    ...                                    "Dependency planner": "planner"})  # doctest: +SKIP
    >>> with shim.run(run):                                                 # doctest: +SKIP
    ...     crew.kickoff(inputs={"org": "acme"})
    """
    from ajwt_crewai.hooks import install_hooks, reinstall_at_kickoff

    binding = binding_for(shim)
    if audience is not None:
        binding.audience = audience
    members = _members(crew)
    if crew.process == Process.hierarchical and crew.manager_agent is None:
        if crew.manager_llm is None:
            raise ValueError("a hierarchical crew needs a manager_agent or a manager_llm")
        members.append(manager_from_llm(crew))
    missing = []
    chosen: list[tuple[BaseAgent, str]] = []
    for agent in members:
        role = role_template(agent) or agent.role
        if agents is None:
            chosen.append((agent, default_agent_id(role)))
        elif role in agents:
            chosen.append((agent, agents[role]))
        else:
            missing.append(role)
    if missing:
        raise ValueError(f"no workflow agent id for the CrewAI role(s) {missing!r}")
    _check_tool_shims(crew, members, shim)
    for agent, agent_id in chosen:
        binding.check_same_agent(agent, agent_id)
    for agent, agent_id in chosen:
        binding.add(agent, agent_id)
    binding.register()
    binding.add_crew(crew, strict=strict)
    _install_step_cache(crew, binding, members)
    if reinstall_at_kickoff not in crew.before_kickoff_callbacks:
        crew.before_kickoff_callbacks.append(reinstall_at_kickoff)
    install_hooks()
    return binding
