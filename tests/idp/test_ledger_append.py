"""The IdP's ledger append: Core statements guarded by the run's head, and the facts read.

``IdP._append`` chains an entry at once and writes a transaction's entries just before
it commits: an UPDATE of the run's head that only matches the head the first of them was
chained onto, then one INSERT. These tests show appends on a stale head refused (they
would fork the chain) while appends on the current head go through, several at a time;
a failed transaction writes none, and an append in a read-only session is an error; and
that the reads of completions, approvals and delegations use the ``(run_id, kind)``
index rather than walking the whole ledger, and that a run's state is remembered at its
ledger head (read again when another worker moved it, unchanged by a rollback).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ajwt_core.errors import LedgerError, Reason
from ajwt_core.idp.base import _STATE_EVENTS
from ajwt_core.idp.db import ClientRow, Database, RunRow
from ajwt_core.idp.service import IdP
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import SigningKeySet
from ajwt_core.ledger import GENESIS_HASH, EntryKind, verify_or_raise
from ajwt_core.workflow import Workflow


async def _idp_with_run(tmp_path: Path) -> tuple[IdP, str]:
    db = Database(f"sqlite:///{tmp_path}/idp.db")
    await db.create_schema()
    settings = IdPSettings(issuer="https://idp.test", db_url=db.url, admin_token="a" * 32)
    idp = IdP(settings, db, SigningKeySet.generate())
    async with db.transaction() as session:
        session.add(
            ClientRow(
                client_id="app",
                secret_hash=None,
                jwks=None,
                scopes="repo:read",
                shim_checksums=[],
                allow_runtime_registration=False,
                created_at=0,
            )
        )
        run = RunRow(
            run_id="run-1",
            intent_id="intent-1",
            client_id="app",
            workflow_id="wf",
            workflow_version=1,
            subject="user:alice",
            intent="test",
            state="open",
            created_at=0,
            head_seq=-1,
            head_hash=GENESIS_HASH,
        )
        session.add(run)
        await session.flush()
        await idp._append(session, run, EntryKind.RUN_STARTED, {"intent_id": "intent-1"}, 0)
    return idp, "run-1"


def test_append_on_the_current_head_extends_the_chain(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)
        for at in (1, 2):
            async with idp.db.transaction() as session:
                run = await idp.db.lock_run(session, run_id)
                entry = await idp._append(session, run, EntryKind.STEP_COMPLETED, {"step": "s"}, at)
                assert (run.head_seq, run.head_hash) == (entry.seq, entry.entry_hash)
        entries = await idp.ledger(run_id, None)
        assert [e.seq for e in entries] == [0, 1, 2]
        verify_or_raise(entries)
        async with idp.db.read() as session:
            stored = await session.get(RunRow, run_id)
        assert stored is not None and stored.head_hash == entries[-1].entry_hash
        await idp.db.dispose()

    asyncio.run(scenario())


def test_append_on_a_stale_head_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)
        async with idp.db.read() as session:
            stale = await session.get(RunRow, run_id)
        assert stale is not None
        # Another writer appends first: the head moves on.
        async with idp.db.transaction() as session:
            run = await idp.db.lock_run(session, run_id)
            await idp._append(session, run, EntryKind.STEP_COMPLETED, {"step": "a"}, 1)
        # An append chained onto the old head would fork the ledger: refused, rolled back.
        with pytest.raises(LedgerError) as caught:
            async with idp.db.transaction() as session:
                await idp._append(session, stale, EntryKind.STEP_COMPLETED, {"step": "b"}, 2)
        assert caught.value.reason is Reason.LEDGER_BROKEN
        entries = await idp.ledger(run_id, None)
        assert [e.data.get("step") for e in entries] == [None, "a"]
        verify_or_raise(entries)
        await idp.db.dispose()

    asyncio.run(scenario())


def test_the_mint_facts_read_uses_the_kind_index(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        idp, _ = await _idp_with_run(tmp_path)
        engine = idp.db._sync_engine
        assert engine is not None
        sql = _STATE_EVENTS.params(run_id="run-1").compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
        with engine.connect() as connection:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
        await idp.db.dispose()
        return [str(row[-1]) for row in plan]

    plan = asyncio.run(scenario())
    assert any("ix_ledger_entries_run_id_kind" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step or "SCAN" in step for step in plan), plan


_WORKFLOW = {
    "id": "wf",
    "version": 1,
    "steps": {"a": {"agent": "x"}, "b": {"agent": "x", "after": ["a"]}},
}


def test_the_state_of_a_run_is_remembered_at_its_head(tmp_path: Path) -> None:
    """A request whose run's ledger head is the one this process remembers reads no
    ledger entry; the state is the one the ledger gives. A head moved by another worker
    (another IdP on the same database) is not the one remembered: the ledger is read. A
    transaction that rolls back leaves the memory at the committed head."""

    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)
        other = IdP(idp.settings, idp.db, SigningKeySet.generate())
        workflow = Workflow.from_mapping(_WORKFLOW)
        for one in (idp, other):
            one._workflows[("wf", 1)] = workflow
        client = ClientRow(client_id="app")
        reads = 0
        state_of = idp._state

        async def counted(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await state_of(*args)

        idp._state = counted  # type: ignore[method-assign]

        async def open_run(by: IdP) -> set[str]:
            async with idp.db.transaction() as session:
                _, state = await by._open_run(session, client, run_id)
                return set(state.completed)

        async def complete(by: IdP, step: str) -> None:
            async with idp.db.transaction() as session:
                run, state = await by._open_run(session, client, run_id)
                await by._record(
                    session, run, state, [], EntryKind.STEP_COMPLETED, {"step": step, "agent": "x"}
                )

        assert await open_run(idp) == set() and reads == 1  # first contact: the ledger
        await complete(idp, "a")
        assert await open_run(idp) == {"a"} and reads == 1  # moved with its own append
        await complete(other, "b")  # another worker moves the head
        assert await open_run(idp) == {"a", "b"} and reads == 2

        async def rolled_back() -> None:
            async with idp.db.transaction() as session:
                run, _ = await idp._open_run(session, client, run_id)
                await idp._append(session, run, EntryKind.STEP_REOPENED, {}, 9)
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await rolled_back()
        assert await open_run(idp) == {"a", "b"} and reads == 2
        async with idp.db.read() as session:
            replayed = await state_of(session, run_id, workflow)
        assert replayed.completed == {"a", "b"}
        verify_or_raise(await idp.ledger(run_id, None))
        await idp.db.dispose()

    asyncio.run(scenario())


def test_run_state_keeps_ledger_order_for_delegations(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)
        workflow = Workflow.from_mapping(
            {
                "id": "wf",
                "version": 1,
                "steps": {
                    "r": {"agent": "a"},
                    "s": {"agent": "b", "tools": ["t"], "after": ["r"]},
                },
            }
        )
        async with idp.db.transaction() as session:
            run = await idp.db.lock_run(session, run_id)
            for n, scope in enumerate(("repo:read", "repo:write")):
                await idp._append(
                    session,
                    run,
                    EntryKind.DELEGATION,
                    {
                        "from": "a",
                        "to": "b",
                        "from_step": "r",
                        "to_step": "s",
                        "chain": ["a", "b"],
                        "scope": scope,
                        "assertion": f"sha256:{n}",
                    },
                    n + 1,
                )
        async with idp.db.read() as session:
            state = await idp._state(session, run_id, workflow)
        delegated = state.delegation_to("b", "s")
        assert delegated is not None and delegated.scope == "repo:write"  # the latest one
        await idp.db.dispose()

    asyncio.run(scenario())


def test_appends_of_one_transaction_are_written_together_at_commit(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)
        async with idp.db.transaction() as session:
            run = await idp.db.lock_run(session, run_id)
            for step in ("a", "b", "c"):
                await idp._append(session, run, EntryKind.STEP_COMPLETED, {"step": step}, 1)
        entries = await idp.ledger(run_id, None)
        assert [e.data.get("step") for e in entries] == [None, "a", "b", "c"]
        verify_or_raise(entries)
        report = await idp.verify_ledger(run_id, None)
        assert report.ok and report.head == entries[-1].entry_hash
        await idp.db.dispose()

    asyncio.run(scenario())


def test_appends_on_a_stale_head_are_refused_all_together(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)
        async with idp.db.read() as session:
            stale = await session.get(RunRow, run_id)
        assert stale is not None
        async with idp.db.transaction() as session:
            run = await idp.db.lock_run(session, run_id)
            await idp._append(session, run, EntryKind.STEP_COMPLETED, {"step": "a"}, 1)

        async def two_appends_on_the_stale_head() -> None:
            async with idp.db.transaction() as session:
                for step in ("b", "c"):
                    await idp._append(session, stale, EntryKind.STEP_COMPLETED, {"step": step}, 2)

        with pytest.raises(LedgerError) as caught:
            await two_appends_on_the_stale_head()
        assert caught.value.reason is Reason.LEDGER_BROKEN
        entries = await idp.ledger(run_id, None)
        assert [e.data.get("step") for e in entries] == [None, "a"]
        verify_or_raise(entries)
        await idp.db.dispose()

    asyncio.run(scenario())


def test_a_failed_transaction_writes_none_of_its_appends(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)

        async def append_then_fail() -> None:
            async with idp.db.transaction() as session:
                run = await idp.db.lock_run(session, run_id)
                await idp._append(session, run, EntryKind.STEP_COMPLETED, {"step": "a"}, 1)
                raise RuntimeError("refused after the append")

        with pytest.raises(RuntimeError, match="refused after the append"):
            await append_then_fail()
        entries = await idp.ledger(run_id, None)
        assert [e.kind for e in entries] == [EntryKind.RUN_STARTED]
        assert (await idp.verify_ledger(run_id, None)).ok
        await idp.db.dispose()

    asyncio.run(scenario())


def test_an_append_in_a_read_only_session_is_an_error_not_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        idp, run_id = await _idp_with_run(tmp_path)

        async def append_in_a_read() -> None:
            async with idp.db.read() as session:
                run = await idp.db.lock_run(session, run_id)
                await idp._append(session, run, EntryKind.STEP_COMPLETED, {"step": "a"}, 1)

        with pytest.raises(RuntimeError, match="read-only"):
            await append_in_a_read()
        assert len(await idp.ledger(run_id, None)) == 1
        await idp.db.dispose()

    asyncio.run(scenario())
