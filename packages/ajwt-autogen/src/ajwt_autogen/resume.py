"""A run saved with an AutoGen state, and picked up again (DESIGN §6.4, §8).

AutoGen persists a team with ``await team.save_state()`` / ``await team.load_state(state)``
(the messages of each agent and the team's position). A secured agent adds to its own
state the run it acts in, under ``"ajwt_run"``: the run id and the latest ledger
checkpoint the IdP returned. Loading that state in another process resumes the run from
the IdP's ledger (:meth:`~ajwt_core.shim.Shim.aresume`, verified against the checkpoint),
so the agents continue where the run stands: completed steps, hand-offs and chains come
from the ledger; tokens are minted again on demand.

>>> saved_run_record({"llm_context": {}, "ajwt_run": {"run_id": "r-1", "checkpoint": None}})
{'run_id': 'r-1', 'checkpoint': None}
>>> saved_run_record({"llm_context": {}}) is None
True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.shim import Run, Shim

__all__ = ["RUN_KEY", "resume_saved_run", "saved_run_id", "saved_run_record"]

#: The key under which a secured agent's saved state holds its run.
RUN_KEY = "ajwt_run"

_lock = threading.Lock()
# shim -> (run id, checkpoint) -> the run resumed from the ledger for that saved state.
_resumed: weakref.WeakKeyDictionary[Shim, dict[tuple[str, str | None], Run]] = (
    weakref.WeakKeyDictionary()
)


def saved_run_record(state: Mapping[str, Any]) -> dict[str, str | None] | None:
    """The run an agent's saved state was taken in (``None``: saved outside any run)."""
    record = state.get(RUN_KEY)
    if record is None:
        return None
    if not isinstance(record, Mapping):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, f"the saved {RUN_KEY!r} is not an object")
    run_id, checkpoint = record.get("run_id"), record.get("checkpoint")
    if not isinstance(run_id, str) or not (checkpoint is None or isinstance(checkpoint, str)):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"the saved {RUN_KEY!r} needs a string 'run_id' and a string (or null) 'checkpoint'",
        )
    return {"run_id": run_id, "checkpoint": checkpoint}


def saved_run_id(state: Mapping[str, Any]) -> str | None:
    """The run id in a saved agent or team state (``await team.save_state()``), if any.

    >>> saved_run_id({"agent_states": {"planner": {"agent_state": {
    ...     "ajwt_run": {"run_id": "r-1", "checkpoint": None}}}}})
    'r-1'
    """
    record = saved_run_record(state) if RUN_KEY in state else None
    if record is not None:
        return record["run_id"]
    for value in state.values():
        if isinstance(value, Mapping):
            found = saved_run_id(value)
            if found is not None:
                return found
    return None


async def resume_saved_run(shim: Shim, record: Mapping[str, str | None]) -> Run:
    """The run of a saved state, resumed by ``shim`` from the IdP's ledger once per saved
    state (the agents of one team, saved together, load their states one after the
    other: the first resumes the run, the others share it; a state saved later resumes
    it again)."""
    key = (str(record["run_id"]), record.get("checkpoint"))
    with _lock:
        known = _resumed.get(shim, {}).get(key)
    if known is not None:
        return known
    run = await shim.aresume(key[0], checkpoint=key[1])
    with _lock:
        _resumed.setdefault(shim, {})[key] = run
    return run
