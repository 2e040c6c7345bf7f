"""Per-shim state of the adapter: who acts in each run, who routed to whom, and the
contexts of tool calls.

One :class:`Tracker` per :class:`~ajwt_core.shim.Shim` (:func:`tracker_for`). It holds

- the acting context of each tool call started by a callback handler, keyed by the
  tool run's id (LangChain's ``run_id``), and answers the shim's "who is acting now"
  through the shim's one general hook, :meth:`~ajwt_core.shim.Shim.add_context_resolver`
  (a node's own context answers only when the node declared the tool its calls make);
- for each A-JWT run, what LangGraph told it: the agent that acted last, the agent whose
  node finished last (the node that routed to the next ones), the step each agent acted
  in, and how many nodes of each agent are running (``Send`` runs one node many times).

Where the run stands is the shim's copy of the IdP's ledger (:meth:`Shim.run_state`),
so a run resumed in another process (``shim.resume``) continues with no state of ours.
:meth:`Tracker.enter` decides how an agent starts acting (DESIGN §6.3):

1. it goes on in its current (entered, not completed) step;
2. a step of its own already handed to it (by a hand-off tool, or another ``Send``
   instance): it acts there;
3. the agent that routed to it hands it a step that comes after the router's step
   (a hand-off, which completes the router's step when the new one waits for it),
   or sends work back to one of its completed steps (``loop_to``), or consults it
   (the router's step lists it in ``consult``); a hand-off tool's hand-off is sent as
   the app made it even when the workflow has no such move (the shim or the IdP
   refuses it with the reason);
4. otherwise a step of its own whose missing predecessor is another agent's entered or
   completed step is handed over by that agent (a fan-out's branches after the node that
   routed finished, a run resumed without knowing who routed);
5. a due step of its own with no other agent before it: it simply acts (the first
   agent, or its next step);
6. a completed step of its own: it takes control back (a supervisor after its worker),
   and the open step of the agent that returned control is completed first;
7. nothing fits: it acts in its first open step, and the IdP (the shim first) refuses
   the mint with the reason.

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
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from langchain_core.runnables.config import var_child_runnable_config

from ajwt_core.errors import AgentContextError, AJWTError, InvalidGrant, Reason
from ajwt_core.shim import AgentContext, Run, Shim
from ajwt_core.shim.context import ActingBlock, current_run
from ajwt_core.workflow import RunState, Workflow

#: Runs remembered per shim (least recently used forgotten first).
MAX_TRACKED_RUNS = 4096


@dataclass
class _RunRecord:
    """What the adapter saw of one run (the run's position itself is the shim's)."""

    last_acting: tuple[str, str | None] | None = None
    last_finished: tuple[str, str | None] | None = None
    step_of: dict[str, str] = field(default_factory=dict)
    running: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: How many times an agent acted in the run, and when each (agent, step) last did;
    #: ``returned_at``: ``acts`` when an app last returned in it (not paused).
    acts: int = 0
    acted_at: dict[tuple[str, str], int] = field(default_factory=dict)
    returned_at: int = 0


@dataclass(frozen=True)
class NodeActing:
    """What :func:`ajwt_langchain.ajwt_node` sets while a node runs."""

    tracker: Tracker
    agent: str
    run: Run
    step: str | None
    #: The tool the node's own HTTP calls are made for (declared), else None: a call
    #: made in the node outside any tool is refused.
    tool: str | None
    #: The node's scope, entered when it starts: inside a shim.acting block around the
    #: graph (an agent run from another agent's tool), the node's agent acts.
    scope: ActingBlock = field(default_factory=ActingBlock, compare=False)


_node_acting: ContextVar[NodeActing | None] = ContextVar("ajwt_langchain_node", default=None)


@dataclass(frozen=True)
class Move:
    """How an agent starts acting: the step, and the delegation that gets it there."""

    step: str | None
    #: (from_agent, from_step): a hand-off of ``step`` (or work sent back to it).
    handoff: tuple[str, str] | None = None
    #: (from_agent, from_step): a consultation inside ``from_step``.
    consult: tuple[str, str] | None = None
    #: (agent, step): the router's open step, completed first (a worker returned control
    #: to the agent that takes it back).
    complete: tuple[str, str] | None = None


def _snapshot(shim: Shim, run: Run) -> RunState:
    # The shim moves its copy while other branches' calls return: read a stable copy.
    state = shim.run_state(run)
    for _ in range(5):
        try:
            return state.copy()
        except RuntimeError:  # a set changed size while being copied
            continue
    return state.copy()


def _predecessors(workflow: Workflow, step: str) -> list[str]:
    definition = workflow.step(step)
    return [*definition.after, *definition.after_any]


class _Planner:
    """The decision of :meth:`Tracker.enter` on one snapshot of the run (pure)."""

    def __init__(self, state: RunState, record: _RunRecord, local_checks: bool) -> None:
        self.state = state
        self.workflow = state.workflow
        self.record = record
        self.local_checks = local_checks
        self.skipped = state.skipped()

    def own(self, agent: str) -> list[str]:
        return [s for s in self.workflow.steps_of(agent) if s not in self.skipped]

    def current_step(self, agent: str) -> str | None:
        """The step ``agent`` acts in now: its entered, open step (the one it acted in
        last if several), else the step it last acted in."""
        active = self.state.active_steps(agent)
        remembered = self.record.step_of.get(agent)
        if remembered in active:
            return remembered
        if active:
            return active[-1]
        if remembered is not None and remembered in self.workflow.steps:
            return remembered
        done = [s for s in self.own(agent) if s in self.state.completed]
        return done[-1] if done else None

    def startable_after(self, step: str, given: str) -> bool:
        """Whether ``step`` may start once ``given`` is completed (by handing on from it)."""
        return not self.workflow.waits_for(step, self.state.completed | {given})

    def from_router(
        self, agent: str, router: str, router_step: str | None, wanted: list[str]
    ) -> Move | None:
        if router_step is None or router_step in self.skipped:
            return None
        later = self.workflow.descendants(router_step)
        for step in wanted:
            fresh = step not in self.state.completed and step in later
            if fresh and self.startable_after(step, router_step):
                return Move(step, handoff=(router, router_step))
        source = self.workflow.step(router_step)
        for step in wanted:
            if step in source.loop_to and step in self.state.completed:
                return Move(step, handoff=(router, router_step))
        if agent in source.consult and router_step not in self.state.completed:
            return Move(router_step, consult=(router, router_step))
        return None

    def from_workflow(self, agent: str, wanted: list[str], router: str | None) -> Move | None:
        """A hand-off from the agent of a predecessor step that was entered (the router's
        first, then one still open, then the latest completed)."""
        for step in wanted:
            if step in self.state.completed:
                continue
            givers = [
                p
                for p in _predecessors(self.workflow, step)
                if self.workflow.step(p).agent != agent
                and p not in self.skipped
                and (p in self.state.entered or p in self.state.completed)
                and self.startable_after(step, p)
            ]
            if not givers:
                continue
            givers.sort(
                key=lambda p: (
                    self.workflow.step(p).agent != router,
                    p in self.state.completed,
                    -self.workflow.topological_order().index(p),
                )
            )
            giver = givers[0]
            return Move(step, handoff=(self.workflow.step(giver).agent, giver))
        return None

    def plan(
        self,
        agent: str,
        router: str | None,
        router_step: str | None,
        declared: str | None,
        explicit: bool = False,
    ) -> Move:
        state, workflow = self.state, self.workflow
        if declared is not None:
            if workflow.step(declared).agent != agent:
                raise AgentContextError(
                    Reason.WRONG_AGENT_FOR_STEP,
                    f"step {declared!r} belongs to agent {workflow.step(declared).agent!r}, "
                    f"not {agent!r} (ajwt_node(..., step=...) names a step of the node's agent)",
                )
            wanted = [declared]
        else:
            wanted = self.own(agent)
        if not workflow.steps_of(agent) and not any(
            agent in workflow.step(s).consult for s in workflow.steps
        ):
            raise AgentContextError(
                Reason.WRONG_AGENT_FOR_STEP,
                f"agent {agent!r} has no step in workflow {workflow.id!r} v{workflow.version} "
                f"(its agents: {', '.join(workflow.agents())})",
            )
        active = [s for s in state.active_steps(agent) if s in wanted]
        if active:
            remembered = self.record.step_of.get(agent)
            return Move(remembered if remembered in active else active[-1])
        for step in wanted:
            if step not in state.completed and state.delegation_to(agent, step) is not None:
                return Move(step)
        if router is not None and router != agent:
            move = self.from_router(agent, router, router_step, wanted)
            if move is not None:
                return move
        if explicit and router is not None and router_step is not None:
            # A hand-off the app made (a hand-off tool) is sent as made, even where the
            # workflow has none: the shim or the IdP refuses it with the reason.
            open_steps = [s for s in wanted if s not in state.completed]
            target = open_steps[0] if open_steps else (wanted[-1] if wanted else None)
            if target is not None:
                return Move(target, handoff=(router, router_step))
        move = self.from_workflow(agent, wanted, router)
        if move is not None:
            return move
        for step in wanted:
            if step in state.completed:
                continue
            if not workflow.waits_for(step, state.completed):
                return Move(step)
            if all(workflow.step(p).agent == agent for p in _predecessors(workflow, step)):
                return Move(step)  # its next step: the IdP completes its own earlier ones
        done = [s for s in wanted if s in state.completed]
        if done:
            remembered = self.record.step_of.get(agent)
            returned: tuple[str, str] | None = None
            if router is not None and router != agent:
                open_steps = state.active_steps(router)
                if open_steps:
                    returned = (
                        router,
                        router_step if router_step in open_steps else open_steps[-1],
                    )
            return Move(remembered if remembered in done else done[-1], complete=returned)
        if router is not None and router != agent and router_step is not None:
            # The router hands on a step that cannot start yet: the hand-off is sent as
            # the app made it, and refused (the IdP says what the step waits for).
            later = self.workflow.descendants(router_step)
            for step in wanted:
                if step in later and step not in self.skipped:
                    return Move(step, handoff=(router, router_step))
        waiting = [s for s in wanted if s not in state.completed]
        if waiting and self.local_checks:
            self.refuse_waiting(agent, waiting[0])
        return Move(waiting[0] if waiting else (wanted[0] if wanted else None))

    def refuse_waiting(self, agent: str, step: str) -> None:
        """Say why ``agent`` cannot start ``step``, naming a predecessor that never acted
        through A-JWT (its tool calls or hand-offs bypassed the adapter)."""
        workflow, state = self.workflow, self.state
        missing = workflow.waits_for(step, state.completed)
        silent = [
            s
            for s in missing
            if s not in state.entered and workflow.step(s).agent not in self.record.step_of
        ]
        text = (
            f"agent {agent!r} is running, but its step {step!r} waits for "
            + ", ".join(f"{s!r} (agent {workflow.step(s).agent!r})" for s in missing)
            + f"; {state.describe()}"
        )
        if silent:
            who = workflow.step(silent[0]).agent
            text += (
                f". Agent {who!r} never acted through A-JWT in this run. If the app ran it "
                "first, its tool calls and hand-offs bypassed the adapter: secure the "
                "compiled app with secure_graph(shim, app) (it re-installs the tool "
                "wrappers create_supervisor drops), and wrap a node function of yours that "
                "routes or acts for an agent with ajwt_node(shim, node, agent=...). If the "
                f"app starts with {agent!r}, the workflow's order is not the app's: "
                f"{', '.join(repr(s) for s in missing)} must not come before {step!r} "
                "(draft_workflow(app) drafts the order the app's edges give). If the app "
                "resumes a paused thread, continue the thread's run (resume_thread(shim, "
                "app, config)), not a new one"
            )
        raise InvalidGrant(Reason.DEPENDENCIES_INCOMPLETE, text)


class Tracker:
    """The adapter's state for one shim; see the module docstring."""

    def __init__(self, shim: Shim) -> None:
        self._shim_ref = weakref.ref(shim)
        self._calls: dict[UUID, AgentContext] = {}
        self._runs: OrderedDict[str, _RunRecord] = OrderedDict()
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
        """The shim's context resolver: the current tool call, else the current node's
        declared tool (a node's own HTTP call without one is not a tool call: refused)."""
        config = var_child_runnable_config.get()
        if config is not None:
            run_id = getattr(config.get("callbacks"), "parent_run_id", None)
            if run_id is not None:
                context = self._calls.get(run_id)
                if context is not None:
                    return context
        node = self.node()
        if node is not None and node.tool is not None:
            return AgentContext(node.agent, node.run, node.step, node.tool, acting_block=node.scope)
        return None

    def start_call(self, run_id: UUID, context: AgentContext) -> None:
        # The call's scope is entered now: inside any shim.acting block around it, so
        # the shim prefers it to that block's context (a sub-agent run from a tool).
        self._calls[run_id] = replace(context, acting_block=ActingBlock())

    def end_call(self, run_id: UUID) -> AgentContext | None:
        return self._calls.pop(run_id, None)

    def open_calls(self) -> int:
        """How many tool calls started by a callback handler have not ended."""
        return len(self._calls)

    def node(self) -> NodeActing | None:
        """The :func:`~ajwt_langchain.ajwt_node` running now (of this shim), if any."""
        node = _node_acting.get()
        return node if node is not None and node.tracker is self else None

    @contextmanager
    def acting_node(self, node: NodeActing) -> Iterator[None]:
        token = _node_acting.set(node)
        try:
            yield
        finally:
            _node_acting.reset(token)

    # -------------------------------------------------------------------- runs

    def run_for(self, explicit: Run | None) -> Run:
        """The run to act in: explicit, else the current node's, else ``shim.run(...)``'s."""
        if explicit is not None:
            return explicit
        node = self.node()
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

    def _record(self, run: Run) -> _RunRecord:
        with self._lock:
            record = self._runs.get(run.run_id)
            if record is None:
                record = self._runs[run.run_id] = self._from_ledger(run)
                while len(self._runs) > MAX_TRACKED_RUNS:
                    old, _ = self._runs.popitem(last=False)
                    self._sync_locks.pop(old, None)
                    self._async_locks.pop(old, None)
            else:
                self._runs.move_to_end(run.run_id)
            return record

    def _from_ledger(self, run: Run) -> _RunRecord:
        """A run this tracker has not seen (resumed, or started by other code): the last
        actor is the latest delegate still in its step, else an agent in an open step."""
        record = _RunRecord()
        state = self.shim.run_state(run)
        for delegated in reversed(state.delegations):
            if delegated.step in state.active_steps(delegated.agent):
                record.last_acting = (delegated.agent, delegated.step)
                break
        else:
            for step in run.workflow.topological_order():
                if step in state.entered and step not in state.completed:
                    record.last_acting = (run.workflow.step(step).agent, step)
        if record.last_acting is not None and record.last_acting[1] is not None:
            record.step_of[record.last_acting[0]] = record.last_acting[1]
        # The open steps were acted in before (this process resumes the run): an app
        # that returns now completes them (complete_returned).
        for step in run.workflow.topological_order():
            if step in state.entered and step not in state.completed:
                record.acts += 1
                record.acted_at[(run.workflow.step(step).agent, step)] = record.acts
        return record

    def acting_agent(self, run: Run) -> tuple[str | None, str | None]:
        """The agent that acted last in ``run`` and its step (``(None, None)`` at first)."""
        record = self._record(run)
        with self._lock:
            return record.last_acting if record.last_acting is not None else (None, None)

    def acted(self, run: Run, agent: str, step: str | None) -> None:
        """Record that ``agent`` acts in ``step`` (a tool call resolved it)."""
        record = self._record(run)
        with self._lock:
            record.last_acting = (agent, step)
            if step is not None:
                record.step_of[agent] = step
                record.acts += 1
                record.acted_at[(agent, step)] = record.acts

    def _acted_open(self, run: Run) -> tuple[list[tuple[str, str]], int]:
        record = self._record(run)
        state = self.shim.run_state(run)
        with self._lock:
            acted = sorted(
                (mark, agent, step)
                for (agent, step), mark in record.acted_at.items()
                if mark > record.returned_at
            )
            running = {key for key, count in record.running.items() if count > 0}
            now = record.acts
        steps = [
            (agent, step)
            for _, agent, step in acted
            if step in state.active_steps(agent) and (agent, step) not in running
        ]
        return steps, now

    def complete_returned(self, run: Run) -> list[tuple[str, str]]:
        """An app returned in ``run`` (not paused): complete the open steps agents acted
        in since an app last returned in it (before a pause too: the resumed app's
        return ends them), deferred like a hand-off's. Returns them as ``(agent, step)``."""
        with self._sync_lock(run):
            steps, now = self._acted_open(run)
            for agent, step in steps:
                self.shim.complete(agent, step, run=run, defer=True)
            record = self._record(run)
            with self._lock:
                record.returned_at = max(record.returned_at, now)
            return steps

    def step_of(self, run: Run, agent: str) -> str | None:
        """The step ``agent`` acts in now, as far as the run and the adapter know."""
        planner = _Planner(_snapshot(self.shim, run), self._record(run), self.shim.local_checks)
        return planner.current_step(agent)

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

    def _router(self, record: _RunRecord, agent: str) -> str | None:
        """Who routed to ``agent``: the agent whose node finished last, else the agent
        that acted last (when it is another agent)."""
        for seen in (record.last_finished, record.last_acting):
            if seen is not None and seen[0] != agent:
                return seen[0]
        return None

    def plan(
        self,
        run: Run,
        agent: str,
        *,
        router: str | None = None,
        router_step: str | None = None,
        step: str | None = None,
        explicit: bool = False,
    ) -> Move:
        """How ``agent`` starts acting now (see the module docstring); no I/O.
        ``explicit``: the router handed off on purpose (a hand-off tool)."""
        record = self._record(run)
        planner = _Planner(_snapshot(self.shim, run), record, self.shim.local_checks)
        the_router = router if router is not None else self._router(record, agent)
        the_router_step = router_step
        if the_router is not None and the_router_step is None:
            the_router_step = planner.current_step(the_router)
        return planner.plan(agent, the_router, the_router_step, step, explicit)

    def enter(
        self,
        run: Run,
        agent: str,
        audience: str | None = None,
        *,
        router: str | None = None,
        router_step: str | None = None,
        step: str | None = None,
        explicit: bool = False,
    ) -> Move:
        """``agent`` acts now in ``run``: hand it its step if another agent routed to it.

        Raises the shim's :class:`~ajwt_core.errors.AJWTError` when refused.
        """
        the_audience = audience or self.shim.default_audience
        with self._sync_lock(run):
            move = self.plan(
                run, agent, router=router, router_step=router_step, step=step, explicit=explicit
            )
            if move.complete is not None:
                # A worker handing back: sent with the run's next token request, or when
                # its shim.run block ends (DESIGN §6.7).
                self.shim.complete(*move.complete, run=run, defer=True)
            if move.handoff is not None and move.step is not None:
                giver, from_step = move.handoff
                self.shim.handoff(
                    giver, agent, move.step, run=run, audience=the_audience, from_step=from_step
                )
            elif move.consult is not None:
                giver, from_step = move.consult
                self.shim.consult(giver, agent, run=run, audience=the_audience, from_step=from_step)
            self.acted(run, agent, move.step)
            return move

    async def aenter(
        self,
        run: Run,
        agent: str,
        audience: str | None = None,
        *,
        router: str | None = None,
        router_step: str | None = None,
        step: str | None = None,
        explicit: bool = False,
    ) -> Move:
        """The async twin of :meth:`enter`."""
        the_audience = audience or self.shim.default_audience
        async with self._async_lock(run):
            move = self.plan(
                run, agent, router=router, router_step=router_step, step=step, explicit=explicit
            )
            if move.complete is not None:
                await self.shim.acomplete(*move.complete, run=run, defer=True)
            if move.handoff is not None and move.step is not None:
                giver, from_step = move.handoff
                await self.shim.ahandoff(
                    giver, agent, move.step, run=run, audience=the_audience, from_step=from_step
                )
            elif move.consult is not None:
                giver, from_step = move.consult
                await self.shim.aconsult(
                    giver, agent, run=run, audience=the_audience, from_step=from_step
                )
            self.acted(run, agent, move.step)
            return move

    # ------------------------------------------------------------------ nodes

    def node_started(self, run: Run, agent: str, step: str | None) -> None:
        if step is None:
            return
        record = self._record(run)
        with self._lock:
            record.running[(agent, step)] += 1

    def _node_done(self, run: Run, agent: str, step: str | None) -> str | None:
        """Count a node of ``agent`` out; the step to complete when it was the last one
        running in it and the step is still open."""
        record = self._record(run)
        with self._lock:
            record.last_finished = (agent, step)
            if step is None:
                return None
            record.running[(agent, step)] -= 1
            if record.running[(agent, step)] > 0:
                return None
            del record.running[(agent, step)]
        state = self.shim.run_state(run)
        if step in state.completed or run.workflow.step(step).agent != agent:
            return None
        return step

    def node_left(self, run: Run, agent: str, step: str | None, *, returned: bool = False) -> None:
        """A node of ``agent`` ended without completing its step: it raised (an error, an
        interrupt, a ``Command(graph=PARENT)``), or ``returned`` with its step left open
        (``complete_on_exit=False``; it still routed to the next nodes)."""
        record = self._record(run)
        with self._lock:
            if returned:
                record.last_finished = (agent, step)
            if step is not None and record.running[(agent, step)] > 0:
                record.running[(agent, step)] -= 1
                if not record.running[(agent, step)]:
                    del record.running[(agent, step)]

    def finish(self, run: Run, agent: str, step: str | None) -> bool:
        """A node of ``agent`` returned: complete its step when it was the last node of
        the agent running in it. True if the step was completed."""
        with self._sync_lock(run):
            open_step = self._node_done(run, agent, step)
            if open_step is None:
                return False
            # Sent with the run's next token request, or when its shim.run block ends.
            self.shim.complete(agent, open_step, run=run, defer=True)
            return True

    async def afinish(self, run: Run, agent: str, step: str | None) -> bool:
        """The async twin of :meth:`finish`."""
        async with self._async_lock(run):
            open_step = self._node_done(run, agent, step)
            if open_step is None:
                return False
            await self.shim.acomplete(agent, open_step, run=run, defer=True)
            return True

    def _open_step(self, run: Run, agent: str) -> str | None:
        step = self.step_of(run, agent)
        if step is None or step in self.shim.completed_steps(run):
            return None
        return step if run.workflow.step(step).agent == agent else None

    def complete_current(self, run: Run, agent: str) -> bool:
        """Complete the step ``agent`` acts in, if it is open (an agent that finished)."""
        with self._sync_lock(run):
            step = self._open_step(run, agent)
            if step is None:
                return False
            self.shim.complete(agent, step, run=run)
            return True

    async def acomplete_current(self, run: Run, agent: str) -> bool:
        """The async twin of :meth:`complete_current`."""
        async with self._async_lock(run):
            step = self._open_step(run, agent)
            if step is None:
                return False
            await self.shim.acomplete(agent, step, run=run)
            return True

    # ------------------------------------------------------------------ agents

    def is_agent(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is registered with the shim."""
        try:
            self.shim.agent(agent_id)
        except AgentContextError:
            return True  # several versions of it are registered
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


def metadata_agent(metadata: Any) -> str | None:
    """The agent name LangChain's ``create_agent(name=...)`` puts in run metadata."""
    name = (metadata or {}).get("lc_agent_name") if hasattr(metadata, "get") else None
    return name if isinstance(name, str) and name else None
