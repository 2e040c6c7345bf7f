"""The IdP's ledger end is anchored (issue 12 §4).

``/runs/{run}/ledger/verify`` checks the chain against the head stored with the run, so
entries deleted from the end, or all of them, no longer verify as "ok"; and every append
a client asks for (run start, token, completion) comes back with an IdP-signed
checkpoint that the shim keeps and anyone with the JWKS can check.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ajwt_core.keys import KeyResolver
from ajwt_core.ledger import Anchor, verify_chain
from ajwt_core.shim import Run, Shim
from ajwt_core.tokens import decode_checkpoint, decode_intent_token
from ajwt_demo.stack import Stack, start_stack


@pytest.fixture(scope="module")
def idp_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ledger") / "idp.db"


@pytest.fixture(scope="module")
def stack(idp_db: Path) -> Iterator[Stack]:
    running = start_stack(idp_db)
    yield running
    running.close()


@pytest.fixture(scope="module")
def jwks(stack: Stack) -> KeyResolver:
    document = httpx.get(stack.idp_url + "/.well-known/jwks.json", timeout=10).json()
    return KeyResolver.from_jwks(document)


def run_with_entries(stack: Stack) -> tuple[Shim, Run]:
    """run started, triage entered, token, triage completed, delegation, plan entered, the
    planner's token: 7 entries."""
    shim = stack.shim()
    run = stack.start_run(shim)
    with shim.run(run):
        with shim.acting("supervisor", tool="list_repos") as context:
            shim.token(context, stack.rs_url)
        shim.complete("supervisor")
        shim.handoff("supervisor", "planner", "plan")
    return shim, run


def delete_entries(db: Path, run_id: str, from_seq: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM ledger_entries WHERE run_id = ? AND seq >= ?", (run_id, from_seq))


def test_idp_verify_detects_entries_cut_from_the_end(stack: Stack, idp_db: Path) -> None:
    _, run = run_with_entries(stack)
    assert stack.admin.verify_ledger(run.run_id)["ok"] is True
    delete_entries(idp_db, run.run_id, 3)
    report = stack.admin.verify_ledger(run.run_id)
    assert report["ok"] is False
    assert report["entries"] == 3 and report["first_bad_seq"] == 3
    assert report["problem"] == (
        "the ledger ends at entry 2, but the head recorded for the run pins entry 6 "
        "(entries were removed from its end)"
    )


def test_idp_verify_detects_an_emptied_ledger(stack: Stack, idp_db: Path) -> None:
    _, run = run_with_entries(stack)
    delete_entries(idp_db, run.run_id, 0)
    report = stack.admin.verify_ledger(run.run_id)
    assert (report["ok"], report["entries"]) == (False, 0)  # was "ok, 0 entries"
    assert "the ledger is empty" in report["problem"]


def test_every_append_the_client_asks_for_returns_a_checkpoint(
    stack: Stack, jwks: KeyResolver
) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    started = shim.checkpoint(run)
    assert started is not None
    first = decode_checkpoint(started, jwks, issuer=stack.idp_url, run_id=run.run_id)
    assert first.seq == 0
    with shim.run(run):
        with shim.acting("supervisor", tool="list_repos") as context:
            token = shim.token(context, stack.rs_url).token
        after_token = shim.checkpoint(run)
        shim.complete("supervisor")
        after_completion = shim.checkpoint(run)
    assert after_token is not None and after_completion is not None
    minted = decode_checkpoint(after_token, jwks, issuer=stack.idp_url, run_id=run.run_id)
    claims = decode_intent_token(token, jwks, issuer=stack.idp_url, audience=stack.rs_url)
    # The token's checkpoint pins the token's own entry.
    # (run started, triage entered, the token's entry)
    assert (minted.seq, minted.head) == (2, claims.intent.step_sequence_hash)
    done = decode_checkpoint(after_completion, jwks, issuer=stack.idp_url, run_id=run.run_id)
    status = httpx.get(f"{stack.idp_url}/runs/{run.run_id}/status", timeout=10).json()
    assert (done.seq, done.head) == (3, status["ledger_head"])
    entries = stack.admin.ledger(run.run_id)["entries"]
    anchors = [
        Anchor(source="checkpoint", seq=c.seq, entry_hash=c.head) for c in (first, minted, done)
    ]
    assert verify_chain(entries, run_id=run.run_id, anchors=anchors).ok
    shim.close()


def test_shim_keeps_the_latest_checkpoint_of_each_run(stack: Stack, jwks: KeyResolver) -> None:
    shim = stack.shim()
    runs = [stack.start_run(shim), stack.start_run(shim)]

    async def mint(audience: str) -> None:
        async with shim.aacting("supervisor", tool="list_repos", run=runs[0]) as context:
            await shim.atoken(context, audience)

    async def concurrently() -> None:
        # Answers to concurrent calls arrive in any order; the longest ledger is kept.
        await asyncio.gather(*(mint(f"https://api-{i}.example") for i in range(6)))

    asyncio.run(concurrently())
    kept = [shim.checkpoint(run) for run in runs]
    assert kept[0] is not None and kept[1] is not None
    latest = decode_checkpoint(kept[0], jwks, issuer=stack.idp_url, run_id=runs[0].run_id)
    assert latest.seq == 7  # run started, triage entered, six tokens
    other = decode_checkpoint(kept[1], jwks, issuer=stack.idp_url, run_id=runs[1].run_id)
    assert other.seq == 0
    assert shim.checkpoint(runs[0].run_id) == kept[0]
    assert shim.checkpoint("run-unknown") is None
    shim.close()
