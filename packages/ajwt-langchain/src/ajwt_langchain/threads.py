"""An A-JWT run that travels with a LangGraph thread (a checkpointer's ``thread_id``).

A graph paused by ``interrupt()`` (a person reviewing), or stopped by a crash, is
continued later, maybe in another process, from its checkpointer thread. The A-JWT run
goes with it: :func:`run_config` records the run id in the thread's checkpoints (as
LangGraph records every ``config["metadata"]`` key), and :func:`resume_thread` reads
it back and picks the run up from the IdP's verified ledger (``shim.resume``): the
steps completed, the hand-offs and who holds which step. Tokens are minted again on
demand, so a pause longer than a token's lifetime needs nothing more.

    config = run_config(run, {"configurable": {"thread_id": "t-42"}})
    with shim.run(run):
        app.invoke(inputs, config)            # stops at interrupt()
    ...                                       # later, in another process
    run = resume_thread(shim, app, {"configurable": {"thread_id": "t-42"}})
    with shim.run(run):
        app.invoke(Command(resume="approved"), run_config(run, config))
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.shim import Run, Shim

__all__ = ["RUN_METADATA_KEY", "aresume_thread", "resume_thread", "run_config", "thread_run_id"]

#: The checkpoint metadata key holding the A-JWT run id.
RUN_METADATA_KEY = "ajwt_run_id"


def run_config(run: Run, config: RunnableConfig | None = None) -> RunnableConfig:
    """``config`` with ``run``'s id in its metadata, so the thread's checkpoints keep it.

    >>> from ajwt_core.shim import Run
    >>> from ajwt_core.workflow import reference_workflow
    >>> wf = reference_workflow()
    >>> run = Run("run-1", "intent-1", "user:alice", wf, wf.workflow_hash)
    >>> run_config(run, {"configurable": {"thread_id": "t-1"}})["metadata"]
    {'ajwt_run_id': 'run-1'}
    """
    the_config: dict[str, Any] = dict(config or {})
    the_config["metadata"] = {
        **dict(the_config.get("metadata") or {}),
        RUN_METADATA_KEY: run.run_id,
    }
    return the_config  # type: ignore[return-value]


def thread_run_id(app: Pregel[Any, Any, Any, Any], config: RunnableConfig) -> str:
    """The A-JWT run id recorded in the thread's checkpoints (the latest one that has it)."""
    for snapshot in app.get_state_history(config):
        run_id = (snapshot.metadata or {}).get(RUN_METADATA_KEY)
        if isinstance(run_id, str) and run_id:
            return run_id
    thread = (config.get("configurable") or {}).get("thread_id")
    raise InvalidRequest(
        Reason.MALFORMED_REQUEST,
        f"thread {thread!r} has no A-JWT run in its checkpoints: invoke the graph with "
        "run_config(run, config) so that the run travels with the thread",
    )


def resume_thread(
    shim: Shim,
    app: Pregel[Any, Any, Any, Any],
    config: RunnableConfig,
    *,
    checkpoint: str | None = None,
) -> Run:
    """The A-JWT run of a checkpointer thread, picked up from the IdP's ledger
    (``shim.resume``; ``checkpoint``: a ledger checkpoint kept outside the IdP)."""
    return shim.resume(thread_run_id(app, config), checkpoint=checkpoint)


async def aresume_thread(
    shim: Shim,
    app: Pregel[Any, Any, Any, Any],
    config: RunnableConfig,
    *,
    checkpoint: str | None = None,
) -> Run:
    """The async twin of :func:`resume_thread` (reads the thread with ``aget_state_history``)."""
    run_id: str | None = None
    async for snapshot in app.aget_state_history(config):
        found = (snapshot.metadata or {}).get(RUN_METADATA_KEY)
        if isinstance(found, str) and found:
            run_id = found
            break
    if run_id is None:
        run_id = thread_run_id(app, config)  # raises the explanation
    return await shim.aresume(run_id, checkpoint=checkpoint)
