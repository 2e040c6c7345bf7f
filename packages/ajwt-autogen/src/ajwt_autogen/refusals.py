"""Refusals as the model, and the developer, read them: what was refused, why, and the fix.

A refusal keeps the shim's error class and reason (the ``[reason]`` at the end is what
tests and logs match on); the sentence adds the AutoGen names and, where the cause is
the application's wiring rather than the agent's behaviour, the ``secure_agent`` /
``secure_team`` argument that fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def unknown_agent_hint(error: AJWTError, name: str, agent_id: str, run: Run | None) -> str:
    """The fix when an AutoGen agent acts under an id the run's workflow does not name."""
    if run is None or error.reason != Reason.WRONG_AGENT_FOR_STEP:
        return ""
    if agent_id in run.workflow.agents():
        return ""
    known = _agents(run.workflow)
    return (
        f" (the AutoGen agent {name!r} acts as workflow agent {agent_id!r}; if the workflow "
        f"knows it by another id, map it: agent_ids={{{name!r}: '<one of {known}>'}})"
    )


def not_an_agent(target: str, agent_id: str, run: Run, humans: Iterable[str]) -> AJWTError:
    """A hand-off to a name the workflow does not know: a person, or a missing mapping."""
    people = sorted({*humans, target})
    return UnauthorizedClient(
        Reason.WRONG_AGENT_FOR_STEP,
        f"hand-off target {target!r} (workflow agent {agent_id!r}) is not an agent of workflow "
        f"{run.workflow.id!r} v{run.workflow.version} (its agents: {_agents(run.workflow)}). "
        f"If {target!r} is a person (a HandoffTermination target), pass "
        f"human_targets={people!r} to secure_agent, or secure the team with secure_team, "
        "which treats hand-off targets outside the team as people; if it is an agent the "
        f"workflow knows by another id, map it: agent_ids={{{target!r}: '<agent id>'}}",
    )
