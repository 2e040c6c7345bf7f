"""The IdP's shared core: its settings, storage, signing keys, registered workflows, and
the run ledger it appends to (DESIGN §8) with a run's position in its workflow.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ajwt_core.errors import (
    InvalidGrant,
    InvalidToken,
    LedgerError,
    NotFound,
    Reason,
)
from ajwt_core.idp.db import (
    ClientRow,
    Database,
    DbSession,
    LedgerRow,
    RunRow,
    SecretRow,
    WorkflowRow,
    after_commit,
    before_commit,
    execute_core,
)
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.idp.upstream import UpstreamProvider
from ajwt_core.keys import SigningKeySet, b64url
from ajwt_core.ledger import (
    EntryKind,
    LedgerEntry,
    chain_after,
)
from ajwt_core.opaque import reveal_names, workflow_refs
from ajwt_core.rs.stores import Revoked
from ajwt_core.tokens import (
    CheckpointClaims,
    IntentTokenClaims,
    decode_intent_token,
    encode_checkpoint,
)
from ajwt_core.workflow import STATE_EVENTS, RunState, Workflow

log = logging.getLogger("ajwt_core.idp")

#: The ``idp_secrets`` row keying the opaque workflow names (DESIGN §5.1).
OPAQUE_NAMES_SECRET: Final = "opaque-names"


class RevocationPublisher(Protocol):
    """Where revocations are announced to resource servers (Redis: ``RedisRevocationPublisher``)."""

    #: How long an announcement lasts: revocations older than this need none.
    ttl: int

    async def publish(self, kind: str, ident: str) -> None: ...

    async def republish_if_lost(
        self, active: Callable[[], Awaitable[Iterable[Revoked]]], *, force: bool = False
    ) -> bool: ...


_INSERT_ENTRY = insert(cast(Table, LedgerRow.__table__))


_runs = cast(Table, RunRow.__table__)


_MOVE_HEAD = (
    update(_runs)
    .where(
        _runs.c.run_id == bindparam("run"),
        _runs.c.head_seq == bindparam("old_seq"),
        _runs.c.head_hash == bindparam("old_hash"),
    )
    .values(head_seq=bindparam("new_seq"), head_hash=bindparam("new_hash"))
)


_workflows = cast(Table, WorkflowRow.__table__)
_LATEST_WORKFLOW = (
    select(_workflows.c.version)
    .where(_workflows.c.workflow_id == bindparam("workflow_id"))
    .order_by(_workflows.c.version.desc())
    .limit(1)
)
_WORKFLOW = select(_workflows.c.definition).where(
    _workflows.c.workflow_id == bindparam("workflow_id"),
    _workflows.c.version == bindparam("version"),
)


# The entries a run's position is computed from (DESIGN §6.3). No ORDER BY: sorting by
# seq in SQL makes the planner walk the primary key, i.e. the run's whole ledger, instead
# of the (run_id, kind) index; the few rows sort in Python.
_STATE_EVENTS = select(LedgerRow.seq, LedgerRow.kind, LedgerRow.data).where(
    LedgerRow.run_id == bindparam("run_id"), LedgerRow.kind.in_(sorted(STATE_EVENTS))
)


#: Runs whose position this process knows (their ledger head and state), at most.
MAX_KNOWN_RUNS: Final = 4096


@dataclass(frozen=True)
class _KnownState:
    """A run's state after every state event up to its ledger head ``(seq, hash)``."""

    head_seq: int
    head_hash: str
    state: RunState


def _entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(
        run_id=row.run_id,
        seq=row.seq,
        kind=EntryKind(row.kind),
        at=row.at,
        data=row.data,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


class IdPBase:
    """What every part of the IdP shares: settings, storage, keys, workflows, and a run's
    ledger and position."""

    def __init__(
        self,
        settings: IdPSettings,
        db: Database,
        keys: SigningKeySet | Callable[[], SigningKeySet],
        *,
        clock: Callable[[], float] = time.time,
        upstream: UpstreamProvider | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._keys = keys
        self.clock = clock
        #: The user's upstream OpenID provider (``settings.upstream_issuer``), if any.
        self.upstream = upstream
        self._workflows: dict[tuple[str, int], Workflow] = {}
        self._names: dict[tuple[str, int], dict[str, str]] = {}
        self._opaque_secret: bytes | None = None
        #: Where runs stand (DESIGN §6.3), by run id, as of their ledger head: a request
        #: whose run's head is still there reads no ledger entry (see ``_run_state``).
        self._known: OrderedDict[str, _KnownState] = OrderedDict()
        #: Where revocations are announced to resource servers (Redis), if anywhere.
        self.revocations: RevocationPublisher | None = None

    def now(self) -> int:
        return int(self.clock())

    @property
    def keys(self) -> SigningKeySet:
        """The signing keys (re-read from the key file when it changes)."""
        return self._keys if isinstance(self._keys, SigningKeySet) else self._keys()

    async def workflow(self, workflow_id: str, version: int | None = None) -> Workflow:
        """A registered workflow version (the latest without ``version``); immutable,
        so a version once read is served from memory (the latest is looked up by its
        version number alone: another worker may have registered a newer one)."""
        missing = NotFound(Reason.NOT_FOUND, f"no workflow {workflow_id!r} (version {version})")
        if version is None:
            latest = await self.db.fetch_one(_LATEST_WORKFLOW, {"workflow_id": workflow_id})
            if latest is None:
                raise missing
            version = int(latest.version)
        key = (workflow_id, version)
        if key not in self._workflows:
            row = await self.db.fetch_one(
                _WORKFLOW, {"workflow_id": workflow_id, "version": version}
            )
            if row is None:
                raise missing
            self._workflows[key] = Workflow.from_mapping(row.definition)
        return self._workflows[key]

    # ------------------------------------------------------------ opaque names

    async def opaque_secret(self) -> bytes:
        """The key of the opaque workflow names (privacy mode, DESIGN §5.1): 32 random
        bytes made once, kept in the database so that every worker and every restart
        gives a name the same reference. Read once per process; call it outside any
        write transaction (the first call may insert it)."""
        if self._opaque_secret is None:
            row = await self._secret_row(OPAQUE_NAMES_SECRET)
            if row is None:
                try:
                    async with self.db.transaction() as session:
                        session.add(
                            SecretRow(
                                name=OPAQUE_NAMES_SECRET,
                                value=b64url(secrets.token_bytes(32)),
                                created_at=self.now(),
                            )
                        )
                except IntegrityError:
                    pass  # another worker made it first: use theirs
                row = await self._secret_row(OPAQUE_NAMES_SECRET)
            assert row is not None
            self._opaque_secret = base64.urlsafe_b64decode(row + "=" * (-len(row) % 4))
        return self._opaque_secret

    async def _secret_row(self, name: str) -> str | None:
        async with self.db.read() as session:
            row = await session.get(SecretRow, name)
            return None if row is None else row.value

    async def opaque_names(self, workflow: Workflow) -> dict[str, str]:
        """``{reference: name}`` for every name of ``workflow`` (DESIGN §5.1)."""
        key = (workflow.id, workflow.version)
        if key not in self._names:
            self._names[key] = workflow_refs(await self.opaque_secret(), workflow)
        return self._names[key]

    async def decode_own_token(self, token: str) -> IntentTokenClaims:
        """An intent token of this IdP (any audience, verified now), with its names
        revealed if its workflow hides them: how the IdP reads a parent token and a
        completion's token."""
        claims = decode_intent_token(
            token,
            self.keys.verification_keys(),
            issuer=self.settings.issuer,
            audience=None,
            now=self.clock(),
        )
        return await self.reveal_own(claims)

    async def reveal_own(self, claims: IntentTokenClaims) -> IntentTokenClaims:
        """``claims`` of one of this IdP's tokens with its opaque names revealed (from
        its run's workflow); unchanged if it has none."""
        if not claims.intent.opaque_names:
            return claims
        async with self.db.read() as session:
            run = await session.get(RunRow, claims.intent.run_id)
            key = None if run is None else (run.workflow_id, run.workflow_version)
        if key is None:
            raise InvalidToken(Reason.RUN_NOT_FOUND, "the token's run is unknown")
        return reveal_names(claims, await self.opaque_names(await self.workflow(*key)))

    async def _open_run(
        self, session: DbSession, client: ClientRow, run_id: str
    ) -> tuple[RunRow, RunState]:
        """The client's open run, locked (appends to its ledger are serialised), and where
        it stands in its workflow (DESIGN §6.3).

        The run row is read first (on PostgreSQL ``SELECT … FOR UPDATE``; SQLite's write
        transaction holds the database's write lock from its start), then its state: from
        this process's memory when the run's ledger head is the one remembered, else from
        its entries by the next statement (a locking ``SELECT`` joined to the entries
        would, on PostgreSQL, return the run's new row with the entries of its own older
        snapshot after waiting for a concurrent transaction: a step entered twice)."""
        try:
            locked = await self.db.lock_run(session, run_id)
        except NotFound:
            locked = None
        if locked is None or locked.client_id != client.client_id:
            raise InvalidGrant(Reason.RUN_NOT_FOUND, "no such run for this client")
        self._check_open(locked)
        workflow = await self.workflow(locked.workflow_id, locked.workflow_version)
        return locked, await self._run_state(session, locked, workflow)

    async def _run_state(self, session: DbSession, run: RunRow, workflow: Workflow) -> RunState:
        """Where the locked ``run`` stands: a copy of the state remembered for its ledger
        head, or the state replayed from its ledger (then remembered).

        What is remembered is exact: a state read with the head in the same locked
        transaction, or one extended by the entries a transaction appended onto that
        head, once it committed (``_remember_appends``). The head is the hash of the
        whole chain, so a head that matches means the same entries; a head moved by
        another worker does not match, and the ledger is read."""
        known = self._known.get(run.run_id)
        if (
            known is not None
            and known.head_seq == run.head_seq
            and known.head_hash == run.head_hash
            and known.state.workflow.id == workflow.id
            and known.state.workflow.version == workflow.version
        ):
            self._known.move_to_end(run.run_id)
            return known.state.copy()
        state = await self._state(session, run.run_id, workflow)
        self._remember(run.run_id, run.head_seq, run.head_hash, state.copy())
        return state

    def _remember(self, run_id: str, head_seq: int, head_hash: str, state: RunState) -> None:
        self._known[run_id] = _KnownState(head_seq, head_hash, state)
        self._known.move_to_end(run_id)
        while len(self._known) > MAX_KNOWN_RUNS:
            self._known.popitem(last=False)

    def _remember_appends(self, appends: _Appends) -> None:
        """After the commit of ``appends``: the remembered state of their run, if it was
        the one at the head they were chained onto, moves with them; else it is
        forgotten (another request moved the head first: the ledger will be read)."""
        known = self._known.pop(appends.run_id, None)
        if known is None or (known.head_seq, known.head_hash) != (
            appends.old_seq,
            appends.old_hash,
        ):
            return
        state = known.state.copy()
        try:
            for entry in appends.entries:
                if entry.kind.value in STATE_EVENTS:
                    state.apply(entry.kind.value, entry.data)
        except Exception:  # committed already: forget it, the ledger decides
            log.exception("cannot follow run %s's state past its append", appends.run_id)
            return
        last = appends.entries[-1]
        self._remember(appends.run_id, last.seq, last.entry_hash, state)

    @staticmethod
    def _check_open(run: RunRow) -> None:
        if run.state == "revoked":
            raise InvalidGrant(Reason.RUN_REVOKED, "the run has been revoked")
        if run.state == "intent_revoked":
            raise InvalidGrant(Reason.INTENT_REVOKED, "the run's intent has been revoked")
        if run.state != "open":
            raise InvalidGrant(Reason.RUN_CLOSED, "the run is closed")

    async def _state(self, session: DbSession, run_id: str, workflow: Workflow) -> RunState:
        """Where the run stands in its workflow (DESIGN §6.3), from its ledger."""
        rows = sorted((await execute_core(session, _STATE_EVENTS, {"run_id": run_id})).all())
        return RunState.replay(workflow, ((kind, data) for _, kind, data in rows))

    async def _record(
        self,
        session: DbSession,
        run: RunRow,
        state: RunState,
        events: list[dict[str, Any]],
        kind: EntryKind,
        data: dict[str, Any],
    ) -> LedgerEntry:
        """Append an entry that moves the run (a completion, an entry, a hand-off…), apply
        it to ``state``, and note it in ``events`` for the response."""
        entry = await self._append(session, run, kind, data, self.now())
        state.apply(kind.value, data)
        events.append({"entry": kind.value, "data": data})
        return entry

    async def _readable_run(
        self, session: DbSession, run_id: str, client: ClientRow | None
    ) -> RunRow:
        run = await session.get(RunRow, run_id)
        if run is None or (client is not None and run.client_id != client.client_id):
            raise NotFound(Reason.RUN_NOT_FOUND, "no such run")
        return run

    async def _entries(self, session: DbSession, run_id: str) -> list[LedgerEntry]:
        rows = (
            await session.execute(
                select(LedgerRow).where(LedgerRow.run_id == run_id).order_by(LedgerRow.seq)
            )
        ).scalars()
        return [_entry(r) for r in rows]

    def checkpoint(self, entry: LedgerEntry) -> str:
        """A checkpoint of the ledger ending at ``entry``, signed with the active key
        (DESIGN §12): returned on every append a client asks for, after its commit."""
        claims = CheckpointClaims(
            iss=self.settings.issuer,
            run_id=entry.run_id,
            seq=entry.seq,
            head=entry.entry_hash,
            iat=self.now(),
        )
        return encode_checkpoint(claims, self.keys.active)

    async def _append(
        self, session: DbSession, run: RunRow, kind: EntryKind, data: dict[str, Any], at: int
    ) -> LedgerEntry:
        """Append to the run's ledger; ``run`` must be locked (or inserted new) in this
        transaction.

        The entry is chained now and written just before the transaction commits
        (``db.before_commit``), together with the others of the same run: one UPDATE of
        the run's head that only matches the head the first of them was chained onto, so
        appends that raced others are refused instead of forking the chain, then one
        INSERT of the entries. Core statements, not the ORM unit of work (which cost most
        of a mint's commit); two statements however many entries a request appends.
        """
        entry = chain_after(run.head_seq, run.head_hash, run.run_id, kind, at, data)
        pending: dict[str, _Appends] = session.info.setdefault(_APPENDS, {})
        appends = pending.get(run.run_id)
        if appends is None:
            appends = pending[run.run_id] = _Appends(run.run_id, run.head_seq, run.head_hash)
            if len(pending) == 1:
                before_commit(session, _write_appends)
            after_commit(session, partial(self._remember_appends, appends))
        appends.entries.append(entry)
        # The run object follows its head; it is detached or committed: no write of its own.
        set_committed_value(run, "head_seq", entry.seq)
        set_committed_value(run, "head_hash", entry.entry_hash)
        return entry


_APPENDS: Final = "ajwt_ledger_appends"


@dataclass
class _Appends:
    """The entries a transaction appends to one run's ledger, and the head they follow."""

    run_id: str
    old_seq: int
    old_hash: str
    entries: list[LedgerEntry] = field(default_factory=list)


async def _write_appends(session: DbSession) -> None:
    for appends in session.info.pop(_APPENDS, {}).values():
        last = appends.entries[-1]
        moved = await execute_core(
            session,
            _MOVE_HEAD,
            {
                "run": appends.run_id,
                "old_seq": appends.old_seq,
                "old_hash": appends.old_hash,
                "new_seq": last.seq,
                "new_hash": last.entry_hash,
            },
        )
        if moved.rowcount != 1:
            raise LedgerError(Reason.LEDGER_BROKEN, "the run's ledger head moved during the append")
        await insert_entries(session, appends.entries)


async def insert_entries(session: DbSession, entries: list[LedgerEntry]) -> None:
    """INSERT ledger entries (one statement); the caller moves the run's head."""
    rows = [
        {
            "run_id": entry.run_id,
            "seq": entry.seq,
            "kind": entry.kind.value,
            "at": entry.at,
            "data": entry.data,
            "prev_hash": entry.prev_hash,
            "entry_hash": entry.entry_hash,
        }
        for entry in entries
    ]
    await execute_core(session, _INSERT_ENTRY, rows if len(rows) > 1 else rows[0])
