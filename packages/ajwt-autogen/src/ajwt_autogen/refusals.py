"""Refusals as the model, and the developer, read them: what was refused, why, and the fix.

A refusal keeps the shim's error class and reason (the ``[reason]`` at the end is what
tests and logs match on); the sentence adds the AutoGen names and, where the cause is
the application's wiring rather than the agent's behaviour, the ``secure_agent`` /
``secure_team`` argument that fixes it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from ajwt_core.errors import AJWTError, Reason, UnauthorizedClient
from ajwt_core.shim import Run
from ajwt_core.workflow import Workflow

__all__ = ["not_an_agent", "refusal", "unknown_agent_hint"]


def refusal(error: AJWTError, agent: str, action: str, hint: str = "") -> AJWTError:
    """The same error (class and reason) with a sentence the model can act on."""
    return type(error)(
        error.reason,
        f"A-JWT refused {action} for agent {agent!r}: {error.description}{hint} "
        f"[{error.reason.value}]",
    )


def _agents(workflow: Workflow) -> str:
    return ", ".join(repr(a) for a in workflow.agents())


def unknown_agent_hint(error: AJWTError, names: Mapping[str, str], run: Run | None) -> str:
    """The fix when AutoGen agents act under ids the run's workflow does not name.

    ``names`` maps the AutoGen names involved (the acting agent, the previous speaker of
    a turn) to the workflow agent ids they act as.

    >>> from ajwt_core.workflow import reference_workflow
    >>> run = Run("r", "i", "user:alice", reference_workflow(), "h")
    >>> error = UnauthorizedClient(Reason.WRONG_AGENT_FOR_STEP, "...")
    >>> unknown_agent_hint(error, {"Planner": "Planner"}, run)
    " (map AutoGen names to the workflow's agent ids: agent_ids={'Planner': 'planner'})"
    """
    if run is None or error.reason != Reason.WRONG_AGENT_FOR_STEP:
        return ""
    known = run.workflow.agents()
    unknown = {name: agent_id for name, agent_id in names.items() if agent_id not in known}
    if not unknown:
        return ""
    mapping = ", ".join(
        f"{name!r}: {_closest(agent_id, known)!r}" for name, agent_id in unknown.items()
    )
    return f" (map AutoGen names to the workflow's agent ids: agent_ids={{{mapping}}})"


def _closest(agent_id: str, known: list[str]) -> str:
    lowered = {k.lower(): k for k in known}
    if agent_id.lower() in lowered:
        return lowered[agent_id.lower()]
    close = difflib.get_close_matches(agent_id, known, n=1)
    return close[0] if close else "<workflow agent id>"


def not_an_agent(
    target: str, agent_id: str, run: Run, humans: Iterable[str], *, agent: bool = False
) -> AJWTError:
    """A hand-off to a name the workflow does not know: a person, or a missing mapping.
    ``agent``: the target is known to be an agent (a secured member of the team)."""
    mapping = f"agent_ids={{{target!r}: {_closest(agent_id, run.workflow.agents())!r}}}"
    head = (
        f"hand-off target {target!r} (workflow agent {agent_id!r}) is not an agent of workflow "
        f"{run.workflow.id!r} v{run.workflow.version} (its agents: {_agents(run.workflow)})"
    )
    if agent:
        return UnauthorizedClient(
            Reason.WRONG_AGENT_FOR_STEP,
            f"{head}; map the AutoGen name to the workflow's agent id: {mapping}",
        )
    people = sorted({*humans, target})
    return UnauthorizedClient(
        Reason.WRONG_AGENT_FOR_STEP,
        f"{head}. If {target!r} is a person (a HandoffTermination target), pass "
        f"human_targets={people!r} to secure_agent, or secure the team with secure_team, "
        "which treats hand-off targets outside the team as people; if it is an agent the "
        f"workflow knows by another id, map it: {mapping}",
    )
