"""A run that travels with a CrewAI Flow's state (DESIGN §6.4, §8).

A Flow persists its state (``@persist``, ``flow.kickoff(inputs={"id": ...})`` restores
it) across human pauses and processes. :func:`flow_run` keeps the A-JWT run in that
state, under ``"ajwt_run"`` (the run id and the latest ledger checkpoint the IdP
returned): the first call starts the run, a later one, in this process or another,
resumes it from the IdP's ledger (``shim.resume``, verified against the checkpoint),
so the crews of the flow go on where the run stands (completed steps, hand-offs and
chains come from the ledger; tokens are minted again on demand, also after a pause
longer than their lifetime). :func:`save_run` records the latest checkpoint.

The state is a dict (``Flow`` without a type) or a pydantic model with an
``ajwt_run: dict | None`` field.

>>> state = {"id": "flow-1", "ajwt_run": {"run_id": "r-1", "checkpoint": None}}
>>> run_record(state)
{'run_id': 'r-1', 'checkpoint': None}
>>> run_record({"id": "flow-1"}) is None
True
"""

from __future__ import annotations

from typing import Any

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.shim import Run, Shim

__all__ = ["RUN_KEY", "flow_run", "run_record", "save_run"]

#: The key (or field) of a Flow state that holds its A-JWT run.
RUN_KEY = "ajwt_run"


def _read(state: Any) -> Any:
    if isinstance(state, dict):
        return state.get(RUN_KEY)
    return getattr(state, RUN_KEY, None)


def _write(state: Any, record: dict[str, str | None]) -> None:
    if isinstance(state, dict):
        state[RUN_KEY] = record
        return
    if RUN_KEY not in getattr(type(state), "model_fields", {}):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"the flow's state has no {RUN_KEY!r} field: add `{RUN_KEY}: dict | None = None` "
            "to its model (or use a dict state)",
        )
    setattr(state, RUN_KEY, record)


def run_record(state: Any) -> dict[str, str | None] | None:
    """The run a flow state carries (``None``: none yet)."""
    record = _read(state)
    if record is None:
        return None
    run_id = record.get("run_id") if isinstance(record, dict) else None
    checkpoint = record.get("checkpoint") if isinstance(record, dict) else None
    if not isinstance(run_id, str) or not (checkpoint is None or isinstance(checkpoint, str)):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"the flow state's {RUN_KEY!r} needs a string 'run_id' and a string (or null) "
            "'checkpoint'",
        )
    return {"run_id": run_id, "checkpoint": checkpoint}


def flow_run(
    shim: Shim,
    state: Any,
    *,
    user_token: str | None = None,
    workflow: str | None = None,
    intent: str = "",
) -> Run:
    """The run of the flow whose state is ``state``: resumed from the IdP's ledger if the
    state carries one, else started for ``user_token`` and ``workflow`` and recorded in
    the state."""
    record = run_record(state)
    if record is not None:
        run = shim.resume(str(record["run_id"]), checkpoint=record["checkpoint"])
    else:
        if user_token is None or workflow is None:
            raise InvalidRequest(
                Reason.MISSING_PARAMETER,
                "the flow's state carries no run: pass user_token= and workflow= to start one",
            )
        run = shim.start_run(user_token, workflow, intent=intent)
    save_run(shim, state, run)
    return run


def save_run(shim: Shim, state: Any, run: Run) -> None:
    """Record ``run`` and its latest ledger checkpoint in the flow state (call it at the
    end of a flow method that ran a crew, before the state is persisted)."""
    _write(state, {"run_id": run.run_id, "checkpoint": shim.checkpoint(run)})
