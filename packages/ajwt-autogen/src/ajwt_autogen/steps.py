"""Which workflow step an agent is at, and which step a handoff gives its delegate.

AutoGen knows agents and tools, not workflow steps. The step of a tool call is the
shim's to resolve (``prepare``); for a handoff the adapter must name both ends:

- the delegator's step: the step of its latest tool call, mint or delegation in the
  run (observed through :meth:`~ajwt_core.shim.Shim.subscribe`), else its only step, else its
  only step that is ready now;
- the delegate's step: among the delegate's steps, the first (in workflow order) that
  comes after the delegator's step, is not completed and whose dependencies are
  complete; else the first that comes after it; else the delegate's first step, which the
  shim's delegation check then refuses with its specific reason (T8, T11).
"""

from __future__ import annotations

import threading
import weakref

from ajwt_core.errors import AgentContextError, Reason, UnauthorizedClient
from ajwt_core.shim import Run, Shim, ShimEvent

__all__ = ["current_step", "delegated_step", "delegator_of"]

_TRACKED_KINDS = frozenset({"tool_started", "token_minted", "handoff", "step_completed"})


class _StepTracker:
    """The latest step each agent acted at, and who delegated to it, per run."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], str] = {}
        self._delegators: dict[tuple[str, str], str] = {}

    def __call__(self, event: ShimEvent) -> None:
        if event.kind in _TRACKED_KINDS and event.step is not None:
            self._steps[(event.run_id, event.agent)] = event.step
        if event.kind == "handoff":
            self._delegators[(event.run_id, event.agent)] = str(event.detail["from_agent"])

    def step(self, run: Run, agent: str) -> str | None:
        return self._steps.get((run.run_id, agent))

    def delegator(self, run: Run, agent: str) -> str | None:
        return self._delegators.get((run.run_id, agent))


_trackers: weakref.WeakKeyDictionary[Shim, _StepTracker] = weakref.WeakKeyDictionary()
_trackers_lock = threading.Lock()


def track(shim: Shim) -> None:
    """Start following the shim's events (once per shim)."""
    with _trackers_lock:
        if shim not in _trackers:
            tracker = _StepTracker()
            shim.subscribe(tracker)
            _trackers[shim] = tracker


def delegator_of(shim: Shim, agent: str, run: Run) -> str | None:
    """The agent that last delegated to ``agent`` in ``run`` (``None``: the run's root)."""
    tracker = _trackers.get(shim)
    return tracker.delegator(run, agent) if tracker is not None else None


def current_step(shim: Shim, agent: str, run: Run) -> str:
    """The step ``agent`` is acting at in ``run`` (see the module docstring)."""
    tracker = _trackers.get(shim)
    seen = tracker.step(run, agent) if tracker is not None else None
    if seen is not None:
        return seen
    workflow = run.workflow
    own = [s for s in workflow.topological_order() if workflow.step(s).agent == agent]
    if not own:
        raise UnauthorizedClient(
            Reason.WRONG_AGENT_FOR_STEP,
            f"agent {agent!r} has no step in workflow {workflow.id!r} v{workflow.version}",
        )
    if len(own) == 1:
        return own[0]
    done = shim.completed_steps(run)
    ready = [s for s in own if s not in done and workflow.ancestors(s) <= done]
    if len(ready) == 1:
        return ready[0]
    raise AgentContextError(
        Reason.AMBIGUOUS_STEP,
        f"agent {agent!r} has several steps and has not acted yet; it cannot hand off",
    )


def delegated_step(shim: Shim, from_step: str, to_agent: str, run: Run) -> str:
    """The step a handoff from ``from_step`` gives ``to_agent`` (see the module docstring)."""
    workflow = run.workflow
    own = [s for s in workflow.topological_order() if workflow.step(s).agent == to_agent]
    if not own:
        raise UnauthorizedClient(
            Reason.WRONG_AGENT_FOR_STEP,
            f"agent {to_agent!r} has no step in workflow {workflow.id!r} v{workflow.version}, "
            "so no step can be handed to it",
        )
    # The delegator hands off when its step is done (the adapter completes it first).
    done = shim.completed_steps(run) | {from_step}
    after = [s for s in own if from_step in workflow.ancestors(s)]
    open_after = [s for s in after if s not in done]
    ready = [s for s in open_after if workflow.ancestors(s) <= done]
    return (ready or open_after or after or own)[0]
