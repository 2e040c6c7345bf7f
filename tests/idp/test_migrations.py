"""The Alembic migrations create exactly the schema the models describe, idempotently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

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
