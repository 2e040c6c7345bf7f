"""The shim and the identity of the live agent across processes and teams (issue 14, core):
a run resumed by a new shim from the IdP's ledger, several versions of one agent id in one
shim, and tools that are not the live agent's."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import AgentContextError, AJWTError, InvalidGrant, LedgerError, Reason
from ajwt_core.shim import Shim
from ajwt_demo.agents import reference_manifest, reference_manifests
from ajwt_demo.stack import Stack, start_stack


@pytest.fixture(scope="module")
def idp_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("resume")) / "idp.db"


@pytest.fixture(scope="module")
def stack(idp_db: Path) -> Iterator[Stack]:
    running = start_stack(idp_db)
    yield running
    running.close()


def new_shim(stack: Stack, client: dict[str, str]) -> Shim:
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    shim.register_many(reference_manifests())
    return shim


def test_a_new_shim_resumes_a_run_from_the_idps_ledger(stack: Stack) -> None:
    client = stack.new_client()
    first = new_shim(stack, client)
    run = stack.start_run(first)
    with httpx.Client(base_url=stack.rs_url, auth=first.auth()) as http, first.run(run):
        with first.acting("supervisor", tool="list_repos"):
            assert http.get("/repos").status_code == 200
        first.handoff("supervisor", "planner", "plan")
    kept = first.checkpoint(run)
    first.close()

    # Another process: a fresh shim, the same client, the run id (and the checkpoint).
    second = new_shim(stack, client)
    resumed = second.resume(run.run_id, checkpoint=kept)
    assert (resumed.run_id, resumed.workflow_hash) == (run.run_id, run.workflow_hash)
    assert second.completed_steps(resumed) == {"triage"}
    assert second.run_state(resumed).delegation_to("planner", "plan") is not None
    with httpx.Client(base_url=stack.rs_url, auth=second.auth()) as http, second.run(resumed):
        with second.acting("planner", tool="read_file"):
            response = http.get("/repos/acme/storefront/files/package.json")
        # The hand-off made by the first shim still shapes the chain.
        assert response.json()["caller"]["chain"] == ["supervisor", "planner"]
        second.handoff("planner", "classifier", "classify")
        with second.acting("classifier", tool="query_advisories"):
            assert http.get("/advisories", params={"package": "lodash"}).status_code == 200
    assert stack.admin.verify_ledger(run.run_id)["ok"]
    second.close()


def test_resume_refuses_a_ledger_cut_below_the_kept_checkpoint(stack: Stack, idp_db: Path) -> None:
    client = stack.new_client()
    first = new_shim(stack, client)
    run = stack.start_run(first)
    with first.run(run):
        with first.acting("supervisor", tool="list_repos") as context:
            first.token(context, stack.rs_url)
        first.complete("supervisor")
    kept = first.checkpoint(run)
    assert kept is not None
    # Someone with the database cuts the last entries and moves the stored head back.
    with sqlite3.connect(idp_db) as conn:
        rows = conn.execute(
            "SELECT seq, entry_hash FROM ledger_entries WHERE run_id = ? ORDER BY seq",
            (run.run_id,),
        ).fetchall()
        conn.execute(
            "DELETE FROM ledger_entries WHERE run_id = ? AND seq >= ?", (run.run_id, len(rows) - 1)
        )
        conn.execute(
            "UPDATE runs SET head_seq = ?, head_hash = ? WHERE run_id = ?",
            (rows[-2][0], rows[-2][1], run.run_id),
        )
    second = new_shim(stack, client)
    second.resume(run.run_id)  # without the checkpoint the cut cannot be seen
    with pytest.raises(LedgerError) as info:
        second.resume(run.run_id, checkpoint=kept)
    assert info.value.reason == Reason.LEDGER_BROKEN
    assert "checkpoint" in info.value.description


def test_resume_of_another_clients_run_is_refused(stack: Stack) -> None:
    owner = new_shim(stack, stack.new_client())
    run = stack.start_run(owner)
    stranger = new_shim(stack, stack.new_client())
    with pytest.raises(AJWTError) as info:
        stranger.resume(run.run_id)
    assert info.value.reason == Reason.RUN_NOT_FOUND


def test_two_teams_whose_agents_share_a_name_live_in_one_shim(stack: Stack) -> None:
    client = stack.new_client()
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    shim.register_many(reference_manifests())
    other = reference_manifest("supervisor").model_dump()
    other["prompt"]["template"] = "You supervise the second team for {org}."
    second = shim.register(AgentManifest.model_validate(other))
    first = shim.agent("supervisor", reference_manifest("supervisor").checksum())
    assert first.checksum != second.checksum
    run_a, run_b = stack.start_run(shim), stack.start_run(shim)
    for run, registration in ((run_a, first), (run_b, second)):
        with shim.acting(
            "supervisor", tool="list_repos", run=run, checksum=registration.checksum
        ) as context:
            issued = shim.token(context, stack.rs_url)
        assert issued.checksum == registration.checksum
    # Without saying which one acts, the shim does not guess.
    with pytest.raises(AgentContextError) as info:
        shim.acting("supervisor", tool="list_repos", run=run_a).__enter__()
    assert info.value.reason == Reason.AMBIGUOUS_AGENT
    assert "checksum=" in info.value.description
    # A completion without a checksum is the version that acted in the run (the only
    # one holding a token there): an app completing the last agent's step needs no more.
    shim.complete("supervisor", run=run_b)
    [done] = [
        e for e in stack.admin.ledger(run_b.run_id)["entries"] if e["kind"] == "step_completed"
    ]
    assert done["data"]["step"] == "triage"
    # In a run where neither acted, it asks.
    run_c = stack.start_run(shim)
    with pytest.raises(AgentContextError) as info:
        shim.complete("supervisor", "triage", run=run_c)
    assert info.value.reason == Reason.AMBIGUOUS_AGENT


def test_a_tool_the_live_agent_was_not_registered_with_is_refused(stack: Stack) -> None:
    # The workflow lets the planner's step use read_file; this planner was registered
    # without it (its manifest says what it runs): the shim and the IdP refuse.
    client = stack.new_client()
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    manifests = [m for m in reference_manifests() if m.agent_id != "planner"]
    bare = reference_manifest("planner").model_dump()
    bare["tools"] = []
    shim.register_many([*manifests, AgentManifest.model_validate(bare)])
    run = stack.start_run(shim)
    shim.handoff("supervisor", "planner", "plan", run=run)  # a step token for the planner
    with shim.acting("planner", tool="read_file", run=run) as context:
        with pytest.raises(AJWTError) as info:
            shim.token(context, stack.rs_url)
        assert info.value.reason == Reason.TOOL_NOT_ALLOWED
        shim.local_checks = False
        with pytest.raises(AJWTError) as at_idp:
            shim.token(context, stack.rs_url)
        assert at_idp.value.reason == Reason.TOOL_NOT_ALLOWED
        assert "registered manifest" in at_idp.value.description
    assert isinstance(at_idp.value, AJWTError) and not isinstance(at_idp.value, InvalidGrant)
