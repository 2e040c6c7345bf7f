"""Schema migrations for the IdP tables (Alembic), applied on start.

``upgrade(db)`` brings SQLite or PostgreSQL to the newest revision. With PostgreSQL,
several IdP workers start at once: a transaction-level advisory lock makes one of them
migrate while the others wait, then find nothing to do.

    .venv/bin/python -m ajwt_core.idp.migrate sqlite:///ajwt-idp.db       # upgrade by hand
"""

from __future__ import annotations

import sys
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from ajwt_core.idp.db import Database

# A fixed key for pg_advisory_xact_lock: "ajwt" in ASCII.
_MIGRATION_LOCK = 0x616A7774


def alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("ajwt_core.idp") / "migrations"))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Any) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")


async def upgrade(db: Database) -> None:
    """Apply every pending migration (idempotent; safe with concurrent workers)."""
    await db.run_with_connection(_upgrade)


def main(argv: list[str]) -> int:
    import asyncio

    if len(argv) != 1:
        print("usage: python -m ajwt_core.idp.migrate DATABASE_URL", file=sys.stderr)
        return 2
    db = Database(argv[0])
    asyncio.run(upgrade(db))
    asyncio.run(db.dispose())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
