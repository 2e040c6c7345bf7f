"""Which workflow step an agent is at, and which step a hand-off gives its delegate.

AutoGen knows agents and tools, not workflow steps. The step of a tool call is the
shim's to resolve (``prepare``); for a hand-off the adapter names both ends, from the
run's position (:meth:`~ajwt_core.shim.Shim.run_state`, which a resumed shim rebuilds
from the IdP's ledger) and, in this process, the agent's latest action:

- the delegator's step: the step of its latest tool call, mint or delegation in the
  run seen by this process; else its one entered and open step; else its one due step;
  else the step it last handed work on from; else its one entered (or only) step;
- the delegate's step: among the delegate's steps after the delegator's, the first (in
  workflow order) that is open and ready; else the first open one; else a step the
  delegator may send work back to (``loop_to``); else the first after it; else the
  delegate's first step, which the delegation check then refuses with its specific
  reason (T8, T11).
"""

from __future__ import annotations

import collections
import threading
import weakref
from dataclasses import dataclass, field

from ajwt_core.errors import AgentContextError, Reason, UnauthorizedClient
from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_core.workflow import Delegated

__all__ = [
    "current_step",
    "delegated_step",
    "delegation_of",
    "ready_after",
    "refusals",
    "track",
]

_TRACKED_KINDS = frozenset(
    {"tool_started", "token_minted", "handoff", "consultation", "step_completed"}
)


#: Runs whose agents' steps a tracker remembers (the least recently seen forgotten first).
TRACKED_RUNS_MAX = 4096


@dataclass
class _Seen:
    """One run as this process saw it: each agent's latest step, its refusals."""

    steps: dict[str, str] = field(default_factory=dict)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)


class _StepTracker:
    """The latest step each agent acted at, per run, and how many of its actions were
    refused, as this process saw it (the latest ``TRACKED_RUNS_MAX`` runs)."""

    def __init__(self) -> None:
        self._runs: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, event: ShimEvent) -> None:
        if event.kind in _TRACKED_KINDS and event.step is not None:
            with self._lock:
                self._seen(event.run_id).steps[event.agent] = event.step
        elif event.kind.endswith("_refused"):
            with self._lock:
                self._seen(event.run_id).refused[event.agent] += 1

    def _seen(self, run_id: str) -> _Seen:
        seen = self._runs.get(run_id)
        if seen is None:
            seen = self._runs[run_id] = _Seen()
            if len(self._runs) > TRACKED_RUNS_MAX:
                self._runs.popitem(last=False)
        else:
            self._runs.move_to_end(run_id)
        return seen

    def step(self, run: Run, agent: str) -> str | None:
        seen = self._runs.get(run.run_id)
        return seen.steps.get(agent) if seen is not None else None

    def refused(self, run: Run, agent: str) -> int:
        seen = self._runs.get(run.run_id)
        return seen.refused[agent] if seen is not None else 0


_trackers: weakref.WeakKeyDictionary[Shim, _StepTracker] = weakref.WeakKeyDictionary()
_trackers_lock = threading.Lock()


def track(shim: Shim) -> None:
    """Start following the shim's events (once per shim)."""
    with _trackers_lock:
        if shim not in _trackers:
            tracker = _StepTracker()
            shim.subscribe(tracker)
            _trackers[shim] = tracker


def refusals(shim: Shim, agent: str, run: Run) -> int:
    """How many of ``agent``'s actions in ``run`` were refused so far (tool calls, API
    requests, hand-offs, completions), as this process saw them."""
    tracker = _trackers.get(shim)
    return tracker.refused(run, agent) if tracker is not None else 0


def current_step(shim: Shim, agent: str, run: Run) -> str:
    """The step ``agent`` is acting at in ``run`` (see the module docstring)."""
    tracker = _trackers.get(shim)
    seen = tracker.step(run, agent) if tracker is not None else None
    if seen is not None:
        return seen
    workflow = run.workflow
    own = workflow.steps_of(agent)
    if not own:
        raise UnauthorizedClient(
            Reason.WRONG_AGENT_FOR_STEP,
            f"agent {agent!r} has no step in workflow {workflow.id!r} v{workflow.version}",
        )
    state = shim.run_state(run)
    active = state.active_steps(agent)
    if len(active) == 1:
        return active[0]
    due = [s for s in state.due() if workflow.steps[s].agent == agent]
    if not active and len(due) == 1:
        return due[0]
    for delegated in reversed(state.delegations):
        if delegated.from_agent == agent and delegated.kind != "consult":
            return delegated.from_step
    entered = [s for s in own if s in state.entered]
    for candidates in (entered, own):
        if len(candidates) == 1:
            return candidates[0]
    raise AgentContextError(
        Reason.AMBIGUOUS_STEP,
        f"agent {agent!r} may act in steps {', '.join(repr(s) for s in active or due or own)} "
        "and has not acted yet in this run; it cannot hand off before it calls a tool",
    )


def delegation_of(shim: Shim, agent: str, step: str, run: Run) -> Delegated | None:
    """The hand-off or consultation that put ``agent`` in ``step`` (``None``: it entered
    the step by itself, e.g. at the run's root)."""
    state = shim.run_state(run)
    return state.consultation(agent, step) or state.delegation_to(agent, step)


def _candidates(
    shim: Shim, from_step: str, to_agent: str, run: Run
) -> tuple[list[str], list[str], list[str]]:
    """``to_agent``'s steps after ``from_step`` on the run's path: all of them, the open
    ones, and the open ones ready now (the delegator's step counted as done: the
    hand-off completes it)."""
    workflow = run.workflow
    state = shim.run_state(run)
    skipped = state.skipped()
    done = set(state.completed) | {from_step}
    later = workflow.descendants(from_step)
    after = [s for s in workflow.steps_of(to_agent) if s in later and s not in skipped]
    open_after = [s for s in after if s not in state.completed]
    ready = [s for s in open_after if not workflow.waits_for(s, done)]
    return after, open_after, ready


def ready_after(shim: Shim, from_step: str, to_agent: str, run: Run) -> bool:
    """Whether ``to_agent`` has an open step after ``from_step`` that may run now."""
    return bool(_candidates(shim, from_step, to_agent, run)[2])


def delegated_step(shim: Shim, from_step: str, to_agent: str, run: Run) -> str:
    """The step a hand-off from ``from_step`` gives ``to_agent`` (see the module docstring)."""
    workflow = run.workflow
    own = workflow.steps_of(to_agent)
    if not own:
        raise UnauthorizedClient(
            Reason.WRONG_AGENT_FOR_STEP,
            f"agent {to_agent!r} has no step in workflow {workflow.id!r} v{workflow.version}, "
            "so no step can be handed to it",
        )
    after, open_after, ready = _candidates(shim, from_step, to_agent, run)
    back = [s for s in own if s in workflow.steps[from_step].loop_to]
    return (ready or open_after or back or after or own)[0]
