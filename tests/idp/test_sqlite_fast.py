"""Core statements on SQLite straight through the driver (``ajwt_core.idp.sqlite_fast``).

The fast path must be indistinguishable from SQLAlchemy's execution: the same rows (JSON
and boolean columns converted, labelled columns by their labels, an IN of a constant
list expanded), the same row counts, the same exceptions (a duplicate key is
SQLAlchemy's ``IntegrityError``, which the IdP maps to a replay), and statements it
cannot reproduce (Python-side defaults, ``text()``) left to SQLAlchemy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, and_, bindparam, insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from ajwt_core.idp.base import (
    _INSERT_ENTRY,
    _LATEST_WORKFLOW,
    _MOVE_HEAD,
    _STATE_EVENTS,
    insert_entries,
)
from ajwt_core.idp.clients import _CLIENT
from ajwt_core.idp.db import ClientRow, Database, LedgerRow, RunRow, detached, execute_core
from ajwt_core.idp.runs import _STATUS
from ajwt_core.idp.sqlite_fast import FastCache, FastRow
from ajwt_core.ledger import GENESIS_HASH, EntryKind, chain_after
from ajwt_core.workflow import STATE_EVENTS

_clients = cast(Table, ClientRow.__table__)
_runs = cast(Table, RunRow.__table__)
_ledger = cast(Table, LedgerRow.__table__)
# Labels, an outer join and an IN of a constant list (expanded once).
_RUN_WITH_STATE_EVENTS = (
    select(
        _runs,
        _ledger.c.seq.label("event_seq"),
        _ledger.c.kind.label("event_kind"),
        _ledger.c.data.label("event_data"),
    )
    .select_from(
        _runs.outerjoin(
            _ledger,
            and_(_ledger.c.run_id == _runs.c.run_id, _ledger.c.kind.in_(sorted(STATE_EVENTS))),
        )
    )
    .where(_runs.c.run_id == bindparam("run_id"))
)


async def _database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path}/idp.db")
    await db.create_schema()
    async with db.transaction() as session:
        session.add(
            ClientRow(
                client_id="app",
                secret_hash="sha256:x",
                jwks={"keys": []},
                scopes="repo:read",
                shim_checksums=["a"],
                allow_runtime_registration=True,
                created_at=0,
            )
        )
        session.add(
            RunRow(
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
        )
    return db


def _both(db: Database, statement: Any, params: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The rows through the fast path and through SQLAlchemy, as (fields, values)."""
    engine = db._sync_engine
    assert engine is not None
    with engine.connect() as connection:
        slow = connection.execute(statement, params).all()
        fast = FastCache(engine.dialect).compiled_for(statement, params)
        assert fast is not None
        quick = fast.run(connection.connection.driver_connection, params).all()
    return (
        [(tuple(r._fields), tuple(r)) for r in quick],
        [(tuple(r._fields), tuple(r)) for r in slow],
    )


def test_rows_are_those_sqlalchemy_reads(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await _database(tmp_path)
        entry = chain_after(-1, GENESIS_HASH, "run-1", EntryKind.STEP_ENTERED, 1, {"step": "a"})
        async with db.transaction() as session:
            await insert_entries(session, [entry])  # one row: through the fast path
        for statement, params in (
            (_CLIENT, {"client_id": "app"}),  # JSON and boolean columns
            (_CLIENT, {"client_id": "nobody"}),
            (_RUN_WITH_STATE_EVENTS, {"run_id": "run-1"}),  # labels, a constant IN list
            (_STATE_EVENTS, {"run_id": "run-1"}),
            (_STATUS, {"run": "run-1", "registration": ""}),  # outer joins, NULLs
            (_LATEST_WORKFLOW, {"workflow_id": "wf"}),  # LIMIT as a parameter
        ):
            fast, slow = _both(db, statement, params)
            assert fast == slow
        row = await db.fetch_one(_CLIENT, {"client_id": "app"})
        assert isinstance(row, FastRow)
        client = detached(ClientRow, row)
        assert client.jwks == {"keys": []}
        assert client.shim_checksums == ["a"]
        assert client.allow_runtime_registration is True
        assert client.revoked_at is None
        assert row._mapping["scopes"] == "repo:read"
        with pytest.raises(AttributeError):
            _ = row.no_such_column

    asyncio.run(scenario())


def test_row_counts_and_driver_errors_as_sqlalchemy_reports_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = await _database(tmp_path)
        moves = {"run": "run-1", "old_seq": -1, "old_hash": GENESIS_HASH}
        async with db.transaction() as session:
            moved = await execute_core(
                session, _MOVE_HEAD, {**moves, "new_seq": 0, "new_hash": "h0"}
            )
            assert moved.rowcount == 1
            stale = await execute_core(
                session, _MOVE_HEAD, {**moves, "new_seq": 1, "new_hash": "h1"}
            )
            assert stale.rowcount == 0
        row = {
            "run_id": "run-1",
            "seq": 5,
            "kind": "step_entered",
            "at": 0,
            "data": {},
            "prev_hash": "p",
            "entry_hash": "e",
        }
        with pytest.raises(IntegrityError):
            async with db.transaction() as session:
                await execute_core(session, _INSERT_ENTRY, [row, row])  # executemany
        async with db.read() as session:
            assert (await execute_core(session, _RUN_WITH_STATE_EVENTS, {"run_id": "run-1"})).all()
        # The failed transaction wrote nothing; the first one committed its move.
        head = await db.fetch_one(select(_runs.c.head_seq), {})
        assert head is not None and head.head_seq == 0

    asyncio.run(scenario())


def test_what_it_cannot_reproduce_is_left_to_sqlalchemy() -> None:
    cache = FastCache(sqlite.dialect())
    # Python-side defaults (ClientRow.scopes, shim_checksums…) for the omitted columns.
    assert cache.compiled_for(insert(_clients), {"client_id": "c", "created_at": 0}) is None
    assert cache.compiled_for(text("SELECT 1"), {}) is None
    assert cache.compiled_for(update(_runs).returning(_runs.c.run_id), {"state": "x"}) is None
    # The same statement and names: compiled once.
    first = cache.compiled_for(_CLIENT, {"client_id": "a"})
    assert first is not None and cache.compiled_for(_CLIENT, {"client_id": "b"}) is first
