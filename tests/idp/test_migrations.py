"""The Alembic migrations create exactly the schema the models describe, idempotently."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text

from ajwt_core.idp.db import Base, Database
from ajwt_core.idp.migrate import alembic_config, upgrade
from tests.e2e.test_postgres_redis import postgres_url  # noqa: F401 - fixture


def _check_no_drift(db: Database) -> None:
    # alembic's `check` raises if autogenerate would produce any operation.
    asyncio.run(db.run_with_connection(lambda conn: command.check(alembic_config(conn))))


def _tables(db: Database) -> set[str]:
    found: set[str] = set()
    asyncio.run(db.run_with_connection(lambda conn: found.update(inspect(conn).get_table_names())))
    return found


def test_sqlite_migrations_match_the_models_and_are_idempotent(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/idp.db")
    asyncio.run(upgrade(db))
    asyncio.run(upgrade(db))  # a second start changes nothing
    assert set(Base.metadata.tables) <= _tables(db)
    assert "alembic_version" in _tables(db)
    _check_no_drift(db)


@pytest.mark.postgres
def test_postgres_migrations_match_the_models_under_concurrent_starts(
    postgres_url: str,  # noqa: F811
) -> None:
    async def start_workers() -> None:
        dbs = [Database(postgres_url) for _ in range(3)]
        await asyncio.gather(*(upgrade(db) for db in dbs))
        for db in dbs:
            await db.dispose()

    asyncio.run(start_workers())
    found: set[str] = set()

    def inspect_and_check(conn: object) -> None:
        found.update(inspect(conn).get_table_names())
        command.check(alembic_config(conn))

    async def verify() -> None:
        db = Database(postgres_url)
        await db.run_with_connection(inspect_and_check)
        await db.dispose()

    asyncio.run(verify())
    assert set(Base.metadata.tables) <= found


async def _jti_lengths(db: Database) -> dict[str, int | None]:
    lengths: dict[str, int | None] = {}

    def read(conn: object) -> None:
        for table in ("used_client_assertions", "delegations"):
            column = next(c for c in inspect(conn).get_columns(table) if c["name"] == "jti")
            lengths[table] = getattr(column["type"], "length", None)

    await db.run_with_connection(read)
    return lengths


async def _migrate_0002_to_head_keeping_rows(db: Database) -> list[object]:
    """Upgrade 0002 → head with a row in place; returns the ``jti`` column's rows after."""

    def to_0002(conn: Any) -> None:
        command.upgrade(alembic_config(conn), "0002")
        conn.execute(text("INSERT INTO used_client_assertions VALUES ('kept-jti', 'c', 1)"))

    await db.run_with_connection(to_0002)
    await upgrade(db)
    found: list[object] = []
    await db.run_with_connection(
        lambda conn: found.extend(
            conn.execute(text("SELECT jti FROM used_client_assertions")).scalars()
        )
    )
    return found


def test_0003_widens_the_jti_columns_and_keeps_rows_sqlite(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = Database(f"sqlite:///{tmp_path}/idp.db")
        assert await _migrate_0002_to_head_keeping_rows(db) == ["kept-jti"]
        assert await _jti_lengths(db) == {"used_client_assertions": 512, "delegations": 556}
        await db.run_with_connection(lambda conn: command.downgrade(alembic_config(conn), "0002"))
        assert await _jti_lengths(db) == {"used_client_assertions": 256, "delegations": 256}
        await db.dispose()

    asyncio.run(scenario())


@pytest.mark.postgres
def test_0003_widens_the_jti_columns_on_postgresql() -> None:
    from tests.idp.support import postgres_database

    async def scenario(url: str) -> None:
        db = Database(url)
        assert await _migrate_0002_to_head_keeping_rows(db) == ["kept-jti"]
        assert await _jti_lengths(db) == {"used_client_assertions": 512, "delegations": 556}
        await db.dispose()

    with postgres_database() as url:
        asyncio.run(scenario(url))


def test_0007_numbers_existing_registrations_by_checksum(tmp_path: Path) -> None:
    """Registrations made before agent governance get their checksum's version; a client
    that could never register agents becomes ``pinned``."""
    db = Database(f"sqlite:///{tmp_path}/old.db")
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64

    def at_0004_with_registrations(conn: Any) -> None:
        command.upgrade(alembic_config(conn), "0004")
        conn.execute(
            text(
                "INSERT INTO clients (client_id, scopes, shim_checksums, "
                "allow_runtime_registration, created_at) "
                "VALUES ('open-app', '', '[]', 1, 0), ('closed-app', '', '[]', 0, 0)"
            )
        )
        for reg, version, checksum in (("r1", 1, a), ("r2", 2, b), ("r3", 3, a)):
            conn.execute(
                text(
                    "INSERT INTO agent_registrations (registration_id, client_id, agent_id, "
                    "version, checksum, manifest, jwk, alg, jkt, created_at, expires_at) "
                    "VALUES (:reg, 'open-app', 'planner', :version, :checksum, '{}', '{}', "
                    "'ES256', 'jkt', :version, 100)"
                ),
                {"reg": reg, "version": version, "checksum": checksum},
            )

    asyncio.run(db.run_with_connection(at_0004_with_registrations))
    asyncio.run(upgrade(db))
    rows: dict[str, Any] = {}

    def read(conn: Any) -> None:
        rows["policies"] = {
            r[0]: r[1] for r in conn.execute(text("SELECT client_id, agent_policy FROM clients"))
        }
        rows["checksums"] = list(
            conn.execute(
                text("SELECT checksum, version, status FROM agent_checksums ORDER BY version")
            )
        )
        rows["registrations"] = {
            r[0]: r[1]
            for r in conn.execute(text("SELECT registration_id, version FROM agent_registrations"))
        }

    asyncio.run(db.run_with_connection(read))
    assert rows["policies"] == {"open-app": "open", "closed-app": "pinned"}
    assert [tuple(r) for r in rows["checksums"]] == [(a, 1, "allowed"), (b, 2, "allowed")]
    assert rows["registrations"] == {"r1": 1, "r2": 2, "r3": 1}
    _check_no_drift(db)

    # Down and up again: registration versions unique per registration in between.
    def versions_after_downgrade(conn: Any) -> None:
        command.downgrade(alembic_config(conn), "0006")
        query = text("SELECT registration_id, version FROM agent_registrations")
        rows["down"] = {r[0]: r[1] for r in conn.execute(query)}

    asyncio.run(db.run_with_connection(versions_after_downgrade))
    assert rows["down"] == {"r1": 1, "r2": 2, "r3": 3}
    asyncio.run(upgrade(db))
    asyncio.run(db.run_with_connection(read))
    assert rows["registrations"] == {"r1": 1, "r2": 2, "r3": 1}
    asyncio.run(db.dispose())
