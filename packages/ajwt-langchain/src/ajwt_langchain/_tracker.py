"""Per-shim state of the adapter: who acts in each run, and the contexts of tool calls.

One :class:`Tracker` per :class:`~ajwt_core.shim.Shim` (:func:`tracker_for`). It holds

- the acting context of each tool call started by a callback handler, keyed by the
  tool run's id (LangChain's ``run_id``), and answers the shim's "who is acting now"
  through the shim's one general hook, :meth:`~ajwt_core.shim.Shim.add_context_resolver`;
- the agent that acted last in each A-JWT run and its step, so that a change of agent
  becomes a hand-off (:meth:`Tracker.enter`): the previous agent's step is completed
  and a delegation assertion is signed by the previous agent for the next one
  (DESIGN §6.6, §6.7).

A ContextVar set in a LangChain callback does not reach the tool reliably (a sync
handler's value leaks into the caller, an async handler's never reaches the tool), so
tool calls are looked up by run id: inside a tool, LangChain's
``var_child_runnable_config`` holds a callback manager whose ``parent_run_id`` is the
tool run's id, for sync and async tools alike.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.runnables.config import var_child_runnable_config

from ajwt_core.errors import AgentContextError, AJWTError, Reason, UnauthorizedClient
from ajwt_core.shim import AgentContext, Run, Shim
from ajwt_core.shim.context import current_run

#: Runs remembered per shim (least recently used forgotten first).
MAX_TRACKED_RUNS = 4096


@dataclass
class _RunState:
    """The agent that acted last in a run, and the step it acted in."""

    agent: str | None = None
    step: str | None = None


@dataclass(frozen=True)
class _NodeActing:
    """What :func:`ajwt_langchain.ajwt_node` sets while a node runs."""

    tracker: Tracker
    context: AgentContext


_node_acting: ContextVar[_NodeActing | None] = ContextVar("ajwt_langchain_node", default=None)


@dataclass(frozen=True)
class Entered:
    """The outcome of :meth:`Tracker.enter`: the step the agent acts in, and how it got
    there (``handed_over``: a step was completed or handed off at the IdP)."""

    step: str | None
    previous: tuple[str | None, str | None]
    handed_over: bool


@dataclass(frozen=True)
class _Transition:
    """What entering an agent takes: complete a step, hand off, then act in ``step``."""

    complete: tuple[str, str] | None  # (agent, step)
    handoff: tuple[str, str, str, str | None] | None  # (from, to, to_step, from_step)
    step: str | None


class Tracker:
    """The adapter's state for one shim; see the module docstring."""

    def __init__(self, shim: Shim) -> None:
        self._shim_ref = weakref.ref(shim)
        self._calls: dict[UUID, AgentContext] = {}
        self._runs: OrderedDict[str, _RunState] = OrderedDict()
        self._lock = threading.Lock()
        self._sync_locks: dict[str, threading.Lock] = {}
        self._async_locks: dict[
            str, tuple[weakref.ref[asyncio.AbstractEventLoop], asyncio.Lock]
        ] = {}

    @property
    def shim(self) -> Shim:
        shim = self._shim_ref()
        if shim is None:  # pragma: no cover - the shim owns its resolver, hence us
            raise RuntimeError("the shim of this tracker is gone")
        return shim

    # ------------------------------------------------------- "who is acting now"

    def resolve(self) -> AgentContext | None:
        """The shim's context resolver: the current tool call, else the current node."""
        config = var_child_runnable_config.get()
        if config is not None:
            run_id = getattr(config.get("callbacks"), "parent_run_id", None)
            if run_id is not None:
                context = self._calls.get(run_id)
                if context is not None:
                    return context
        node = _node_acting.get()
        if node is not None and node.tracker is self:
            return node.context
        return None

    def start_call(self, run_id: UUID, context: AgentContext) -> None:
        self._calls[run_id] = context

    def end_call(self, run_id: UUID) -> AgentContext | None:
        return self._calls.pop(run_id, None)

    def open_calls(self) -> int:
        """How many tool calls started by a callback handler have not ended."""
        return len(self._calls)

    def node_context(self) -> AgentContext | None:
        """The context of the :func:`~ajwt_langchain.ajwt_node` running now, if any."""
        node = _node_acting.get()
        return node.context if node is not None and node.tracker is self else None

    @contextmanager
    def acting_node(self, context: AgentContext) -> Iterator[None]:
        token = _node_acting.set(_NodeActing(self, context))
        try:
            yield
        finally:
            _node_acting.reset(token)

    # -------------------------------------------------------------------- runs

    def run_for(self, explicit: Run | None) -> Run:
        """The run to act in: explicit, else the current node's, else ``shim.run(...)``'s."""
        if explicit is not None:
            return explicit
        node = self.node_context()
        if node is not None:
            return node.run
        run = current_run()
        if run is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                "no A-JWT run: invoke the graph or tool inside `with shim.run(run):` "
                "(or pass run=...)",
            )
        return run

    def acting_agent(self, run: Run) -> tuple[str | None, str | None]:
        """The agent that acted last in ``run`` and its step (``(None, None)`` at first)."""
        with self._lock:
            state = self._runs.get(run.run_id)
            return (state.agent, state.step) if state is not None else (None, None)

    def _state(self, run: Run) -> _RunState:
        with self._lock:
            state = self._runs.get(run.run_id)
            if state is None:
                state = self._runs[run.run_id] = _RunState()
                while len(self._runs) > MAX_TRACKED_RUNS:
                    old, _ = self._runs.popitem(last=False)
                    self._sync_locks.pop(old, None)
                    self._async_locks.pop(old, None)
            else:
                self._runs.move_to_end(run.run_id)
            return state

    def note_step(self, run: Run, agent: str, step: str | None) -> None:
        """Record the step ``agent`` acts in, once a tool call resolved it."""
        if step is None:
            return
        state = self._state(run)
        with self._lock:
            if state.agent == agent:
                state.step = step

    def _sync_lock(self, run: Run) -> threading.Lock:
        with self._lock:
            return self._sync_locks.setdefault(run.run_id, threading.Lock())

    def _async_lock(self, run: Run) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop; a run continued on another loop
        # (a second asyncio.run) gets a fresh one.
        loop = asyncio.get_running_loop()
        with self._lock:
            held = self._async_locks.get(run.run_id)
            if held is None or held[0]() is not loop:
                held = self._async_locks[run.run_id] = (weakref.ref(loop), asyncio.Lock())
            return held[1]

    # ------------------------------------------------------------- transitions

    def _plan(self, run: Run, state: _RunState, agent: str) -> _Transition:
        """What it takes for ``agent`` to act now, after ``state.agent`` (DESIGN §6.6).

        - the same agent goes on in its step (or in its next ready step);
        - the first agent of the run acts in its ready step, without delegation;
        - otherwise the previous agent's open step is completed, then the previous
          agent hands ``agent`` its ready step (a signed delegation);
        - an agent with no ready step but a completed one takes control back (a
          supervisor after its worker): no delegation, it re-enters its step;
        - any other agent is handed the step that is due next, which the shim and
          the IdP refuse because that step belongs to another agent (T11).
        """
        workflow = run.workflow
        own = [s for s in workflow.topological_order() if workflow.step(s).agent == agent]
        if not own:
            raise UnauthorizedClient(
                Reason.WRONG_AGENT_FOR_STEP,
                f"agent {agent!r} has no step in workflow {workflow.id!r} v{workflow.version}",
            )
        completed = set(self.shim.completed_steps(run))
        complete: tuple[str, str] | None = None
        previous, previous_step = state.agent, state.step
        if (
            previous is not None
            and previous != agent
            and previous_step is not None
            and previous_step not in completed
        ):
            complete = (previous, previous_step)
            completed.add(previous_step)
        due = workflow.next_steps(completed)
        ready = [s for s in due if workflow.step(s).agent == agent]
        if previous == agent:
            if previous_step is not None and previous_step in completed and ready:
                return _Transition(None, None, ready[0])
            return _Transition(None, None, previous_step)
        if previous is None:
            reentered = [s for s in own if s in completed]
            step = ready[0] if ready else (reentered[-1] if reentered else None)
            if step is None and len(own) == 1:
                step = own[0]  # not due yet: its mint is refused with the reason why
            return _Transition(None, None, step)
        if ready:
            return _Transition(complete, (previous, agent, ready[0], previous_step), ready[0])
        reentered = [s for s in own if s in completed]
        if reentered:
            return _Transition(complete, None, reentered[-1])
        target = due[0] if due else own[0]
        return _Transition(complete, (previous, agent, target, previous_step), target)

    def enter(self, run: Run, agent: str, audience: str | None = None) -> Entered:
        """``agent`` acts now in ``run``: hand off to it if another agent acted last.

        Returns the step it acts in (``None`` when only its tool can tell). Raises the
        shim's :class:`~ajwt_core.errors.AJWTError` when the hand-off is refused.
        """
        the_audience = audience or self.shim.default_audience
        with self._sync_lock(run):
            state = self._state(run)
            plan = self._plan(run, state, agent)
            if plan.complete is not None:
                who, step = plan.complete
                self.shim.complete(who, step, run=run, audience=the_audience)
            if plan.handoff is not None:
                giver, taker, to_step, from_step = plan.handoff
                self.shim.handoff(
                    giver, taker, to_step, run=run, audience=the_audience, from_step=from_step
                )
            return self._entered(state, agent, plan)

    async def aenter(self, run: Run, agent: str, audience: str | None = None) -> Entered:
        """The async twin of :meth:`enter`."""
        the_audience = audience or self.shim.default_audience
        async with self._async_lock(run):
            state = self._state(run)
            plan = self._plan(run, state, agent)
            if plan.complete is not None:
                who, step = plan.complete
                await self.shim.acomplete(who, step, run=run, audience=the_audience)
            if plan.handoff is not None:
                giver, taker, to_step, from_step = plan.handoff
                await self.shim.ahandoff(
                    giver, taker, to_step, run=run, audience=the_audience, from_step=from_step
                )
            return self._entered(state, agent, plan)

    def _entered(self, state: _RunState, agent: str, plan: _Transition) -> Entered:
        with self._lock:
            previous = (state.agent, state.step)
            state.agent, state.step = agent, plan.step
        handed_over = plan.complete is not None or plan.handoff is not None
        return Entered(plan.step, previous, handed_over)

    def revert(self, run: Run, entered: Entered) -> None:
        """Undo an :meth:`enter` whose agent was then refused, unless the IdP already
        recorded a hand-over (a refused agent must not become the one that acted)."""
        if entered.handed_over:
            return
        state = self._state(run)
        with self._lock:
            state.agent, state.step = entered.previous

    def _open_step(self, run: Run, agent: str, step: str | None) -> str | None:
        if step is None or step in self.shim.completed_steps(run):
            return None
        if run.workflow.step(step).agent != agent:
            return None
        return step

    def finish(self, run: Run, agent: str, step: str | None, audience: str | None = None) -> bool:
        """Complete ``agent``'s ``step`` if it is still open; True if it was completed."""
        open_step = self._open_step(run, agent, step)
        if open_step is None:
            return False
        with self._sync_lock(run):
            if open_step in self.shim.completed_steps(run):
                return False
            self.shim.complete(
                agent, open_step, run=run, audience=audience or self.shim.default_audience
            )
            return True

    async def afinish(
        self, run: Run, agent: str, step: str | None, audience: str | None = None
    ) -> bool:
        """The async twin of :meth:`finish`."""
        open_step = self._open_step(run, agent, step)
        if open_step is None:
            return False
        async with self._async_lock(run):
            if open_step in self.shim.completed_steps(run):
                return False
            await self.shim.acomplete(
                agent, open_step, run=run, audience=audience or self.shim.default_audience
            )
            return True

    # ------------------------------------------------------------------ agents

    def is_agent(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is registered with the shim."""
        try:
            self.shim.agent(agent_id)
        except AJWTError:
            return False
        return True


_trackers: weakref.WeakKeyDictionary[Shim, Tracker] = weakref.WeakKeyDictionary()
_trackers_lock = threading.Lock()


def tracker_for(shim: Shim) -> Tracker:
    """The tracker of ``shim``, created (and its resolver added to the shim) once."""
    with _trackers_lock:
        tracker = _trackers.get(shim)
        if tracker is None:
            tracker = _trackers[shim] = Tracker(shim)
            shim.add_context_resolver(tracker.resolve)
        return tracker


def metadata_agent(metadata: dict[str, Any] | None) -> str | None:
    """The agent name LangChain's ``create_agent(name=...)`` puts in run metadata."""
    name = (metadata or {}).get("lc_agent_name")
    return name if isinstance(name, str) and name else None
