"""Revocations: the database is the source of truth, Redis a copy the IdP keeps in step
(issue 12 §3).

A revocation is committed with a ``revocations`` row, then published. If publishing
fails, the answer is still 200 ``revoked`` (it is, at the IdP) with ``published: false``,
and the announcer publishes it when Redis answers; when Redis has lost everything (its
ready marker is gone), the announcer republishes every recent revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from ajwt_core.idp.app import _announce_revocations
from ajwt_core.idp.db import AgentRow, ClientRow, Database, RevocationRow, RunRow
from ajwt_core.idp.service import IdP
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import SigningKeySet
from ajwt_core.ledger import GENESIS_HASH, EntryKind
from ajwt_core.rs.stores import Revoked
from tests.support import NOW


class FakeRedis:
    """What a RevocationPublisher does, in memory; ``down`` makes every call fail."""

    ttl = 3600

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}  # key -> revoked_at (0: published singly)
        self.ready = False
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Redis is unreachable")

    async def publish(self, kind: str, ident: str) -> None:
        self._check()
        self.keys[f"{kind}:{ident}"] = 0

    async def republish_if_lost(
        self, active: Callable[[], Awaitable[Iterable[Revoked]]], *, force: bool = False
    ) -> bool:
        self._check()
        if self.ready and not force:
            return False
        for item in await active():
            self.keys[f"{item.kind}:{item.ident}"] = item.revoked_at
        self.ready = True
        return True

    def restart_empty(self) -> None:
        self.keys.clear()
        self.ready = False


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[IdP]:
    db = Database(f"sqlite:///{tmp_path}/idp.db")
    await db.create_schema()
    settings = IdPSettings(issuer="https://idp.test", db_url=db.url, admin_token="a" * 32)
    service = IdP(settings, db, SigningKeySet.generate(), clock=lambda: NOW)
    service.revocations = FakeRedis()
    await service.register_workflow(
        {"id": "wf", "version": 1, "steps": {"a": {"agent": "x", "tools": ["t"]}}}
    )
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
        await session.flush()
        session.add(
            AgentRow(
                registration_id="reg-1",
                client_id="app",
                agent_id="planner",
                version=1,
                checksum="sha256:" + "a" * 64,
                manifest={},
                jwk={},
                alg="ES256",
                jkt="jkt",
                created_at=0,
                expires_at=NOW + 3600,
            )
        )
        for run_id in ("run-1", "run-2"):
            run = RunRow(
                run_id=run_id,
                intent_id="intent-" + run_id,
                client_id="app",
                workflow_id="wf",
                workflow_version=1,
                subject="user:alice",
                intent="",
                state="open",
                created_at=0,
                head_seq=-1,
                head_hash=GENESIS_HASH,
            )
            session.add(run)
            await session.flush()
            await service._append(session, run, EntryKind.RUN_STARTED, {}, 0)
    yield service
    await db.dispose()


def redis_of(idp: IdP) -> FakeRedis:
    assert isinstance(idp.revocations, FakeRedis)
    return idp.revocations


async def pending(idp: IdP) -> set[str]:
    async with idp.db.read() as session:
        rows = (await session.execute(RevocationRow.__table__.select())).all()
    return {f"{r.kind}:{r.ident}" for r in rows if r.published_at is None}


async def test_revoke_commits_then_publishes(idp: IdP) -> None:
    assert await idp.revoke("run", "run-1", None) == {"revoked": True, "published": True}
    assert "run:run-1" in redis_of(idp).keys
    assert await pending(idp) == set()


async def test_revoke_while_redis_is_down_is_committed_and_pending_not_an_error(
    idp: IdP,
) -> None:
    redis_of(idp).down = True
    assert await idp.revoke("run", "run-1", None) == {"revoked": True, "published": False}
    assert (await idp.status("run-1", None)).state == "revoked"  # committed at the IdP
    assert await pending(idp) == {"run:run-1"}
    # The announcer keeps failing while Redis is down, and publishes once it answers.
    with pytest.raises(ConnectionError):
        await idp.announce_revocations()
    redis_of(idp).down = False
    redis_of(idp).ready = True  # Redis kept its data: only the pending one is missing
    await idp.announce_revocations()
    assert "run:run-1" in redis_of(idp).keys
    assert await pending(idp) == set()


async def test_redis_restarted_empty_gets_every_recent_revocation_back(idp: IdP) -> None:
    for kind, ident in (("run", "run-1"), ("intent", "intent-run-2"), ("agent", "reg-1")):
        await idp.revoke(kind, ident, None)
    await idp.revoke("client", "app", None)
    redis = redis_of(idp)
    redis.ready = True
    redis.restart_empty()
    await idp.announce_revocations()
    assert redis.ready
    assert set(redis.keys) == {"run:run-1", "intent:intent-run-2", "agent:reg-1", "client:app"}


async def test_the_idp_republishes_on_start_even_if_redis_looks_intact(idp: IdP) -> None:
    redis = redis_of(idp)
    redis.down = True
    await idp.revoke("run", "run-1", None)
    redis.down = False
    redis.ready = True
    async with idp.db.transaction() as session:  # as if marked published, then lost
        row = await session.get(RevocationRow, ("run", "run-1"))
        assert row is not None
        row.published_at = NOW
    await idp.announce_revocations()
    assert redis.keys == {}
    await idp.announce_revocations(force=True)
    assert "run:run-1" in redis.keys


async def test_revocations_older_than_any_live_token_are_not_republished(idp: IdP) -> None:
    async with idp.db.transaction() as session:
        session.add(RevocationRow(kind="run", ident="old", revoked_at=NOW - 7200))
        session.add(RevocationRow(kind="run", ident="recent", revoked_at=NOW - 60))
    await idp.announce_revocations(force=True)
    assert set(redis_of(idp).keys) == {"run:recent"}


async def test_unknown_or_foreign_revocations_record_nothing(idp: IdP) -> None:
    assert await idp.revoke("run", "run-nope", None) == {"revoked": False}
    assert await pending(idp) == set() and redis_of(idp).keys == {}


async def test_revoking_again_announces_again(idp: IdP) -> None:
    await idp.revoke("agent", "reg-1", None)
    redis = redis_of(idp)
    redis.keys.clear()  # lost without losing the marker (e.g. evicted)
    assert (await idp.revoke("agent", "reg-1", None))["published"] is True
    assert "agent:reg-1" in redis.keys


@contextlib.asynccontextmanager
async def announcer(idp: IdP) -> AsyncIterator[None]:
    """The IdP's background announcer, passing every 10 ms while the block runs."""
    task = asyncio.create_task(_announce_revocations(idp, interval=0.01))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def announcer_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, bool]]:
    """Each line the announcer logged, and whether it carries a traceback."""
    return [
        (r.getMessage(), bool(r.exc_info))
        for r in caplog.records
        if "announc" in r.getMessage() and r.name == "ajwt_core.idp"
    ]


async def test_the_announcer_says_an_outage_in_one_line_and_its_end_in_another(
    idp: IdP, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ajwt_core.idp")
    redis = redis_of(idp)
    redis.down = True
    await idp.revoke("run", "run-1", None)
    caplog.clear()  # the revocation's own "announcing it is pending"
    async with announcer(idp):
        await asyncio.sleep(0.1)
        redis.down = False
        await asyncio.sleep(0.1)
    assert "run:run-1" in redis.keys
    # Redis being down is its state, not a bug: one line without a traceback, not one
    # per pass, and one when it answers again.
    assert announcer_lines(caplog) == [
        (
            "cannot announce revocations to Redis (ConnectionError: Redis is unreachable); "
            "retrying",
            False,
        ),
        ("revocations announced to Redis again", False),
    ]


async def test_the_announcer_logs_a_bug_with_its_traceback(
    idp: IdP, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="ajwt_core.idp")

    async def broken(*, force: bool = False) -> None:
        raise KeyError("kind")

    monkeypatch.setattr(idp, "announce_revocations", broken)
    async with announcer(idp):
        await asyncio.sleep(0.1)
    assert announcer_lines(caplog) == [
        ("cannot announce revocations to Redis (KeyError: 'kind'); retrying", True)
    ]


def test_migration_0004_copies_the_revocations_made_before_it(tmp_path: Path) -> None:
    import asyncio

    from alembic import command
    from sqlalchemy import text

    from ajwt_core.idp.migrate import alembic_config, upgrade

    db = Database(f"sqlite:///{tmp_path}/old.db")

    def at_0002_with_revocations(conn: Any) -> None:
        command.upgrade(alembic_config(conn), "0002")
        conn.execute(
            text(
                "INSERT INTO clients (client_id, scopes, shim_checksums, "
                "allow_runtime_registration, created_at, revoked_at) "
                "VALUES ('gone', '', '[]', 1, 0, 50), ('live', '', '[]', 1, 0, NULL)"
            )
        )
        for run_id, state, closed in (("r1", "revoked", 70), ("r2", "intent_revoked", 80)):
            conn.execute(
                text(
                    "INSERT INTO runs (run_id, intent_id, client_id, workflow_id, "
                    "workflow_version, subject, intent, state, created_at, closed_at, "
                    "head_seq, head_hash) VALUES (:run, :intent, 'live', 'wf', 1, 'u', '', "
                    ":state, 0, :closed, -1, 'h')"
                ),
                {"run": run_id, "intent": "i-" + run_id, "state": state, "closed": closed},
            )

    async def scenario() -> set[tuple[str, str, int, int | None]]:
        await db.run_with_connection(at_0002_with_revocations)
        await upgrade(db)
        async with db.read() as session:
            rows = (await session.execute(RevocationRow.__table__.select())).all()
        await db.dispose()
        return {(r.kind, r.ident, r.revoked_at, r.published_at) for r in rows}

    assert asyncio.run(scenario()) == {
        ("client", "gone", 50, 50),
        ("run", "r1", 70, 70),
        ("intent", "i-r2", 80, 80),
    }
