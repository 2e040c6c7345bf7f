"""IdP storage: SQLAlchemy 2 (async) tables and the transaction discipline.

SQLite (a file, WAL mode) by default, PostgreSQL by URL. Every write that issues a token
or appends to a run ledger happens inside one transaction together with that ledger
entry, so a crash never leaves a token without its entry. Appends to one run's ledger
are serialised: a row lock on the run (PostgreSQL ``SELECT … FOR UPDATE``) or the single
SQLite writer, plus the ``(run_id, seq)`` primary key as the last line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ajwt.errors import NotFound, Reason


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class ClientRow(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(80))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scopes: Mapped[str] = mapped_column(Text, default="")
    shim_checksums: Mapped[list[Any]] = mapped_column(JSON, default=list)
    allow_runtime_registration: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class AgentRow(Base):
    __tablename__ = "agent_registrations"
    __table_args__ = (UniqueConstraint("client_id", "agent_id", "version"),)

    registration_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    agent_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(80))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    alg: Mapped[str] = mapped_column(String(16))
    jkt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class WorkflowRow(Base):
    __tablename__ = "workflows"

    workflow_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(80))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)


class RunRow(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    intent_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    workflow_version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(512))
    intent: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[int | None] = mapped_column(BigInteger)


class LedgerRow(Base):
    __tablename__ = "ledger_entries"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(80))
    entry_hash: Mapped[str] = mapped_column(String(80))


class DelegationRow(Base):
    __tablename__ = "delegations"

    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    from_agent: Mapped[str] = mapped_column(String(128))
    to_agent: Mapped[str] = mapped_column(String(128))
    from_step: Mapped[str] = mapped_column(String(128))
    to_step: Mapped[str] = mapped_column(String(128))
    chain: Mapped[list[Any]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(Text)
    assertion_hash: Mapped[str] = mapped_column(String(80))
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ApprovalRow(Base):
    __tablename__ = "approvals"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    step: Mapped[str] = mapped_column(String(128), primary_key=True)
    approved_by: Mapped[str] = mapped_column(String(512))
    at: Mapped[int] = mapped_column(BigInteger)


class UsedAssertionRow(Base):
    """Client-assertion ``jti`` values seen (RFC 7523 §3 item 7: single use)."""

    __tablename__ = "used_client_assertions"

    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class Database:
    """The engine, a session factory, and ``transaction()``: one unit of work each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {}
        if not self.is_sqlite:
            options.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer; serialising writers here avoids "database is locked".
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def dispose(self) -> None:
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def lock_run(self, session: AsyncSession, run_id: str) -> RunRow:
        """Load a run for update: appends to its ledger are serialised per run."""
        stmt = select(RunRow).where(RunRow.run_id == run_id)
        if not self.is_sqlite:
            stmt = stmt.with_for_update()
        run = (await session.execute(stmt)).scalar_one_or_none()
        if run is None:
            raise NotFound(Reason.RUN_NOT_FOUND, "no such run")
        return run


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers do not block the writer; synchronous=NORMAL is durable against a
    # process crash (the case we guarantee), fsyncing at checkpoints.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
