"""IdP storage: SQLAlchemy 2 tables and the transaction discipline.

SQLite (a file, WAL mode) by default, PostgreSQL (asyncpg, async) by URL. SQLite calls
take tens of microseconds, so the embedded default runs them inline on the event loop
through SQLAlchemy's sync engine: aiosqlite's thread hand-off per call cost more than
the queries (26 hops, ~15 ms of a mint on a busy 2-core machine). Inline calls must never
wait, so SQLite never sleeps on a lock (``busy_timeout=0``): a write transaction takes
the write lock up front (``BEGIN IMMEDIATE``) and, if another process holds it, retries
with ``asyncio.sleep`` for a bounded time, then answers 503. Every write that issues a token
or appends to a run ledger happens inside one transaction together with that ledger
entry, so a crash never leaves a token without its entry. Appends to one run's ledger
are serialised: a row lock on the run (PostgreSQL ``SELECT … FOR UPDATE``) or the single
SQLite writer, plus the ``(run_id, seq)`` primary key as the last line of defence.

A backend failure (connection refused or lost, disk full, the file locked) leaves this
module as :class:`~ajwt_core.errors.ServerError` (503), and is logged once per outage by
:class:`~ajwt_core.idp.outages.Outages`, not once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final, Protocol, TypeVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ajwt_core._extras import needs_extra
from ajwt_core.errors import AJWTError, NotFound, Reason
from ajwt_core.idp.outages import Outages, database_outage, unavailable
from ajwt_core.idp.sqlite_fast import FastCache
from ajwt_core.tokens import JKT_LENGTH, MAX_CLAIM_LENGTH

#: How long a write waits for SQLite's write lock held by another process (a backup, a
#: second process on the same file) before answering 503; the wait is asyncio sleeps.
SQLITE_LOCK_WAIT: Final = 0.25
#: Schema migrations on start may wait longer for that lock.
SQLITE_MIGRATION_LOCK_WAIT: Final = 10.0


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class ClientRow(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(80))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scopes: Mapped[str] = mapped_column(Text, default="")
    shim_checksums: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Superseded by ``agent_policy`` (migration 0006); kept written for older readers.
    allow_runtime_registration: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    #: The resource servers (RFC 8707 URIs) this client stands for: it may introspect
    #: tokens whose audience is one of them (RFC 7662 §4). NULL: none.
    resources: Mapped[list[Any] | None] = mapped_column(JSON)
    #: Which agent checksums may register (DESIGN §12 Governance): ``open`` (any),
    #: ``pinned`` (those an administrator registered), ``approval`` (a new one waits).
    agent_policy: Mapped[str] = mapped_column(String(16), default="open", server_default="open")


class AgentRow(Base):
    """One registration of an agent: a checksum and a PoP key (several may be live)."""

    __tablename__ = "agent_registrations"
    # The mint reads an agent's registrations by (client, agent), newest version first.
    # ``version`` is the version of the checksum (AgentChecksumRow), shared by every
    # registration of that checksum (key rotations, restarts), so it is not unique here.
    __table_args__ = (
        Index("ix_agent_registrations_client_agent", "client_id", "agent_id", "version"),
    )

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


class AgentChecksumRow(Base):
    """Every checksum a client's agent has had, with its version and whether it may
    register (DESIGN §12 Governance): ``allowed`` (registered by an administrator,
    approved, or seen under the ``open`` policy), ``pending`` (waiting for approval) or
    ``revoked``. The first checksum of an agent is version 1, each new one the next."""

    __tablename__ = "agent_checksums"
    __table_args__ = (UniqueConstraint("client_id", "agent_id", "version"),)

    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    checksum: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: ``admin`` (registered by an administrator) or ``runtime`` (a shim registered it).
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(256))


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
    #: The issuer that vouched for ``subject`` (this IdP for a local user); NULL on runs
    #: started before it was recorded (migration 0005).
    subject_issuer: Mapped[str | None] = mapped_column(String(512))
    intent: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[int | None] = mapped_column(BigInteger)
    # The ledger head, kept with the (locked) run so an append needs no extra read.
    head_seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(80))


class LedgerRow(Base):
    __tablename__ = "ledger_entries"
    # Every mint reads the run's completions, approvals and delegations by kind; without
    # this index that read scans the whole ledger and a mint slows as the run grows.
    __table_args__ = (Index("ix_ledger_entries_run_id_kind", "run_id", "kind"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(80))
    entry_hash: Mapped[str] = mapped_column(String(80))


class DelegationRow(Base):
    """Delegation assertions consumed (single use by ``jti``); the chain is in the ledger."""

    __tablename__ = "delegations"

    # ``<delegator jkt>:<assertion jti>``: as long as the delegation claims allow.
    jti: Mapped[str] = mapped_column(String(JKT_LENGTH + 1 + MAX_CLAIM_LENGTH), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    assertion_hash: Mapped[str] = mapped_column(String(80))
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)


class RevocationRow(Base):
    """Every revocation, written in the revoking transaction: what the IdP republishes to
    Redis when Redis lost it, and an outbox (``published_at`` NULL until it reached
    Redis) so a revocation committed while Redis was unreachable is announced later."""

    __tablename__ = "revocations"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ident: Mapped[str] = mapped_column(String(128), primary_key=True)
    revoked_at: Mapped[int] = mapped_column(BigInteger, index=True)
    published_at: Mapped[int | None] = mapped_column(BigInteger)


class SecretRow(Base):
    """Secrets the IdP generates once and every worker shares (the key of the opaque
    workflow names, DESIGN §5.1); created on first use."""

    __tablename__ = "idp_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: base64url of the secret's bytes.
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[int] = mapped_column(BigInteger)


class UsedAssertionRow(Base):
    """Client-assertion ``jti`` values seen (RFC 7523 §3 item 7: single use)."""

    __tablename__ = "used_client_assertions"

    jti: Mapped[str] = mapped_column(String(MAX_CLAIM_LENGTH), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


T = TypeVar("T")


class DbSession(Protocol):
    """What the IdP service uses of a session (an ``AsyncSession`` has all of it)."""

    def add(self, instance: object) -> None: ...

    async def execute(self, statement: Any, params: Any = None) -> Any: ...

    async def get(self, entity: type[T], ident: Any) -> T | None: ...

    async def flush(self) -> None: ...

    async def connection(self) -> Any: ...

    @property
    def info(self) -> dict[Any, Any]: ...


#: ``session.info`` key: work to run in the transaction after its body, before COMMIT
#: (``async (session) -> None`` callables, in order): the run ledger's buffered appends.
BEFORE_COMMIT: Final = "ajwt_before_commit"


def before_commit(session: DbSession, work: Callable[[DbSession], Awaitable[None]]) -> None:
    """Run ``work(session)`` once the transaction's body has succeeded, just before it
    commits (in the transaction: a failure rolls everything back)."""
    session.info.setdefault(BEFORE_COMMIT, []).append(work)


#: ``session.info`` key: what to do once the transaction has committed (plain callables,
#: in order; never run for a transaction that rolled back): the IdP's memory of runs.
AFTER_COMMIT: Final = "ajwt_after_commit"


def after_commit(session: DbSession, work: Callable[[], None]) -> None:
    """Run ``work()`` once the transaction has committed (not if it rolls back)."""
    session.info.setdefault(AFTER_COMMIT, []).append(work)


def _committed(info: dict[Any, Any]) -> None:
    for work in info.pop(AFTER_COMMIT, ()):
        work()


async def _finish(session: DbSession) -> None:
    # Work may register more work (it does not today); run until none is left.
    while pending := session.info.pop(BEFORE_COMMIT, None):
        for work in pending:
            await work(session)


def _nothing_pending(info: dict[Any, Any]) -> None:
    # A read commits nothing: work left for its commit (a ledger append) would be lost.
    if info.get(BEFORE_COMMIT):
        raise RuntimeError("a write (a ledger append) in a read-only session")


class _InlineSession:
    """The async face of sync SQLAlchemy calls that run inline (SQLite): Core statements
    on ``bind`` (a write transaction's connection, or the engine for a read), ORM calls
    on a session over it, made when first needed (most requests need none: a session
    and its unit of work cost more than the statements)."""

    def __init__(self, bind: Connection | Engine, fast: FastCache) -> None:
        self._bind = bind
        self._fast = fast
        self._orm: Session | None = None
        self._core: Connection | None = None
        self.info: dict[Any, Any] = {}

    @property
    def _session(self) -> Session:
        if self._orm is None:
            # On a connection in a transaction the session joins it: the connection's
            # transaction commits (or rolls back) everything, the session never does.
            self._orm = Session(self._bind, expire_on_commit=False)
        return self._orm

    def add(self, instance: object) -> None:
        self._session.add(instance)

    async def execute(self, statement: Any, params: Any = None) -> Any:
        return self._session.execute(statement, params)

    async def get(self, entity: type[T], ident: Any) -> T | None:
        return self._session.get(entity, ident)

    async def flush(self) -> None:
        self.flush_now()

    def flush_now(self) -> None:
        if self._orm is not None:
            self._orm.flush()

    async def connection(self) -> Any:
        if isinstance(self._bind, Connection):
            return self._bind
        return self._session.connection()

    def execute_core(self, statement: Any, params: dict[str, Any] | list[dict[str, Any]]) -> Any:
        """A Core statement on this session's connection: straight through the driver
        when :mod:`~ajwt_core.idp.sqlite_fast` can run it, else through SQLAlchemy."""
        if isinstance(self._bind, Connection):
            connection = self._bind
        else:  # a read: a connection of its own (the ORM session, if any, has another)
            if self._core is None:
                self._core = self._bind.connect()
            connection = self._core
        fast = self._fast.compiled_for(statement, params)
        if fast is None:
            return connection.execute(statement, params)
        return fast.run(connection.connection.driver_connection, params)

    def close(self) -> None:
        if self._orm is not None:
            self._orm.close()
        if self._core is not None:
            self._core.close()


async def execute_core(
    session: DbSession, statement: Any, params: dict[str, Any] | list[dict[str, Any]]
) -> Any:
    """Run a Core statement on the session's connection, in its transaction (``params``
    a list: once per item, as one executemany).

    ``Session.execute`` sends even a plain Core select through the ORM's execution
    machinery; the mint's five statements skip it (measured: ~30 µs each).
    """
    if isinstance(session, _InlineSession):
        return session.execute_core(statement, params)
    connection = await session.connection()
    return await connection.execute(statement, params)


class Database:
    """The engine and ``transaction()`` / ``read()``: one unit of work each."""

    def __init__(self, url: str, *, outages: Outages | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        #: Up/down state of the database, shared with the HTTP layer's 503 answers.
        self.outages = outages or Outages()
        self._engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._write_engine: Engine | None = None
        #: SQLite: Core statements straight through the driver (sqlite_fast).
        self._fast: FastCache | None = None
        if self.is_sqlite:
            sync_url = url.replace("sqlite+aiosqlite://", "sqlite://", 1)
            self._sync_engine = _sqlite_engine(sync_url)
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            event.listen(self._sync_engine, "begin", _sqlite_begin)
            # The same pool; its transactions take the write lock at BEGIN.
            self._write_engine = self._sync_engine.execution_options(**{_SQLITE_WRITE: True})
            self._fast = FastCache(self._sync_engine.dialect)
        else:
            # No pre-ping (it cost ~1.5 ms per mint, measured): a connection found dead is
            # invalidated by the failing statement, and recycling bounds its age.
            # The driver (asyncpg) is imported here, by SQLAlchemy.
            with needs_extra("postgres", "the IdP on PostgreSQL"):
                self._engine = create_async_engine(
                    url, pool_size=10, max_overflow=10, pool_recycle=1800
                )
            self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        # SQLite has one writer; serialising writers here avoids "database is locked".
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    async def create_schema(self) -> None:
        """Bring the schema to the newest migration (Alembic; see ``ajwt_core.idp.migrate``)."""
        from ajwt_core.idp.migrate import upgrade

        await upgrade(self)

    async def run_with_connection(self, work: Callable[[Any], None]) -> None:
        """Run ``work(connection)`` in one transaction on a sync-style connection."""
        try:
            if self._write_engine is not None:
                connection = await self._sqlite_begin_write(
                    self._write_engine.connect, SQLITE_MIGRATION_LOCK_WAIT
                )
                with connection:
                    work(connection)
                    connection.commit()
                return
            assert self._engine is not None
            async with self._engine.begin() as async_connection:
                await async_connection.run_sync(work)
        except Exception as exc:
            if not self._outage(exc):
                raise
            raise unavailable("database") from None

    async def dispose(self) -> None:
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        if self._engine is not None:
            await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[DbSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        try:
            if self._write_engine is not None:
                assert self._write_lock is not None
                async with self._write_lock:
                    connection = await self._sqlite_begin_write(
                        self._write_engine.connect, SQLITE_LOCK_WAIT
                    )
                    begun = connection.get_transaction()
                    assert begun is not None
                    with connection, begun:
                        assert self._fast is not None
                        inline = _InlineSession(connection, self._fast)
                        try:
                            yield inline
                            await _finish(inline)
                            inline.flush_now()  # what the ORM holds, before the COMMIT
                        finally:
                            inline.close()
                    # Committed, and still under the write lock: no other write between.
                    _committed(inline.info)
            else:
                async with self._sessions() as session:
                    async with session.begin():
                        yield cast(DbSession, session)
                        await _finish(cast(DbSession, session))
                    _committed(session.info)
        except Exception as exc:
            if not self._outage(exc):
                raise
            raise unavailable("database") from None
        self.outages.up("database")

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[DbSession]:
        try:
            if self._sync_engine is not None:
                assert self._fast is not None
                inline = _InlineSession(self._sync_engine, self._fast)
                try:
                    yield inline
                    _nothing_pending(inline.info)
                finally:
                    inline.close()
            else:
                async with self._sessions() as session:
                    yield cast(DbSession, session)
                    _nothing_pending(session.info)
        except Exception as exc:
            if not self._outage(exc):
                raise
            raise unavailable("database") from None
        self.outages.up("database")

    async def fetch_one(self, statement: Any, params: dict[str, Any]) -> Any:
        """One Core row (or None) on a short connection of its own, outside any session.

        For the hot read-only lookups (client authentication): a Core select costs a
        fraction of an ORM session and ``get`` (measured: ~40 µs against ~160 µs).
        """
        try:
            if self._sync_engine is not None:
                assert self._fast is not None
                fast = self._fast.compiled_for(statement, params)
                row: Any
                if fast is not None:
                    with self._sync_engine.connect() as connection:
                        row = fast.run(connection.connection.driver_connection, params).first()
                else:
                    with self._sync_engine.connect() as connection:
                        row = connection.execute(statement, params).first()
            else:
                assert self._engine is not None
                async with self._engine.connect() as async_connection:
                    row = (await async_connection.execute(statement, params)).first()
        except Exception as exc:
            if not self._outage(exc):
                raise
            raise unavailable("database") from None
        self.outages.up("database")
        return row

    def _outage(self, exc: Exception) -> bool:
        """Whether ``exc`` means the database is unavailable (then noted, once)."""
        if isinstance(exc, AJWTError) or not database_outage(exc):
            return False
        self.outages.down("database", exc)
        return True

    async def _sqlite_begin_write(self, open_: Callable[[], Connection], wait: float) -> Connection:
        """``open_()`` and begin its transaction (``BEGIN IMMEDIATE``), retrying with
        asyncio sleeps while another process holds the write lock, for at most ``wait``
        seconds (once only while the database is already known to be down)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0.0 if self.outages.is_down("database") else wait)
        delay = 0.002
        while True:
            opened = open_()
            try:
                opened.begin()
                return opened
            except OperationalError as exc:
                opened.close()
                if not _sqlite_locked(exc) or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def lock_run(self, session: DbSession, run_id: str) -> RunRow:
        """Read a run for update (appends to its ledger are serialised per run).

        The row comes back detached (a Core select, no identity map): setting its
        attributes writes nothing. The ledger append moves the head with its own guarded
        UPDATE, and the one state change (revocation) is an explicit UPDATE too.
        """
        stmt = _RUN if self.is_sqlite else _RUN_FOR_UPDATE
        row = (await execute_core(session, stmt, {"run_id": run_id})).first()
        if row is None:
            raise NotFound(Reason.RUN_NOT_FOUND, "no such run")
        return detached(RunRow, row)


_SQLITE_WRITE = "ajwt_sqlite_write"


def _sqlite_engine(url: str) -> Engine:
    """The SQLite engine. A file database's pool hands out the connection used last
    (LIFO): it is nearly always the same one, whose page cache its own commits leave
    valid, where a FIFO pool's next connection rereads the pages another one changed
    (~20 us a read, measured). An in-memory database has a pool of its own (no choice)."""
    try:
        return create_engine(url, pool_use_lifo=True)
    except TypeError:  # SingletonThreadPool (":memory:") takes no pool_use_lifo
        return create_engine(url)


_RUN = select(cast(Table, RunRow.__table__)).where(RunRow.run_id == bindparam("run_id"))
_RUN_FOR_UPDATE = _RUN.with_for_update()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the driver, begins transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Never sleep inside SQLite: its calls run inline on the event loop. A write waits
    # for the lock with asyncio sleeps instead (Database._sqlite_begin_write); a WAL
    # reader does not wait for writers at all.
    cursor.execute("PRAGMA busy_timeout=0")
    # WAL: readers do not block the writer; synchronous=NORMAL is durable against a
    # process crash (the case we guarantee), fsyncing at checkpoints.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A write transaction takes the write lock at BEGIN, before any of its work, so the
    # lock can be waited for (asynchronously) and the work never meets SQLITE_BUSY. A
    # read runs in autocommit, as the driver did before: WAL readers take no lock.
    if connection.get_execution_options().get(_SQLITE_WRITE):
        # Straight to the driver (SQLAlchemy's execution path cost more than the BEGIN),
        # its error wrapped as SQLAlchemy would wrap it ("database is locked": retried).
        try:
            driver = cast(sqlite3.Connection, connection.connection.driver_connection)
            driver.execute("BEGIN IMMEDIATE").close()
        except sqlite3.Error as exc:
            raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc


def _sqlite_locked(exc: OperationalError) -> bool:
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)


def detached(entity: type[T], row: Any) -> T:
    """A transient ORM object holding a Core row's columns, for reading only.

    It belongs to no session, so changing it writes nothing; columns the row lacks read
    as ``None``.
    """
    return transient(entity, row._mapping)


def transient(entity: type[T], values: Mapping[str, Any]) -> T:
    """A transient ORM object holding ``values`` (column keys of ``entity``), made
    without the instrumented constructor: the values go straight into the object's
    ``__dict__`` (a tenth of the constructor's cost, which records each value as a
    pending change no one will flush). A key that is not a column is refused, as the
    constructor refuses it."""
    manager = entity._sa_class_manager  # type: ignore[attr-defined]
    columns = _COLUMN_KEYS.get(entity)
    if columns is None:
        columns = _COLUMN_KEYS[entity] = frozenset(manager.mapper.column_attrs.keys())
    unknown = values.keys() - columns
    if unknown:
        raise TypeError(f"{sorted(unknown)!r} are not columns of {entity.__name__}")
    instance: T = manager.new_instance()
    instance.__dict__.update(values)
    return instance


_COLUMN_KEYS: dict[type, frozenset[str]] = {}
