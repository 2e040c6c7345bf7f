"""Revocation (DESIGN §6.9): committed with an outbox row, then announced to resource
servers, and re-announced if Redis loses it (DESIGN §12).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from ajwt_core.errors import (
    AccessDenied,
    AJWTError,
    InvalidGrant,
    InvalidRequest,
    Reason,
)
from ajwt_core.idp.base import IdPBase, RevocationPublisher, _runs, log
from ajwt_core.idp.db import (
    AgentRow,
    ClientRow,
    DbSession,
    RevocationRow,
    RunRow,
    execute_core,
)
from ajwt_core.idp.outages import backend_of
from ajwt_core.ledger import (
    EntryKind,
)
from ajwt_core.rs.stores import REVOCATION_TTL, Revoked
from ajwt_core.tokens import decode_intent_token

_revocations = cast(Table, RevocationRow.__table__)


_REVOCATION_COLUMNS = (
    _revocations.c.kind,
    _revocations.c.ident,
    _revocations.c.revoked_at,
    _revocations.c.published_at,
)


_REVOCATIONS_SINCE = select(*_REVOCATION_COLUMNS).where(
    _revocations.c.revoked_at >= bindparam("cutoff")
)


_PENDING_REVOCATIONS = _REVOCATIONS_SINCE.where(_revocations.c.published_at.is_(None))


_MARK_PUBLISHED = (
    update(_revocations)
    .where(_revocations.c.kind == bindparam("k"), _revocations.c.ident == bindparam("i"))
    .values(published_at=bindparam("at"))
)


#: Seconds of overlap between two reads of the revocation feed: a revocation is stamped
#: with the IdP's clock before its transaction commits, so one that commits late (or on
#: another IdP worker whose clock runs behind) still falls inside the next read.
FEED_MARGIN = 10


@dataclass(frozen=True)
class _Revocation(Revoked):
    pending: bool = False


async def record_revocation(session: DbSession, kind: str, ident: str, now: int) -> None:
    """The revocation's row, in the revoking transaction; pending until announced."""
    row = await session.get(RevocationRow, (kind, ident))
    if row is None:
        session.add(RevocationRow(kind=kind, ident=ident, revoked_at=now, published_at=None))
    else:
        row.published_at = None  # revoked again: announce it again


class Revocations(IdPBase):
    """Revocation of runs, intents, agents and clients: recorded, then announced
    (DESIGN §6.9, §12)."""

    async def revoke(self, kind: str, ident: str, client: ClientRow | None) -> dict[str, Any]:
        """Revoke a run, an intent, an agent registration or (admin only) a client.

        ``client`` is None for the administrator; a client may revoke only its own
        runs, intents and registrations. An unknown id (or another client's) is no
        error (RFC 7009 §2.2): it answers ``{"revoked": False}``; a revocation answers
        ``{"revoked": True}``. Committed first (with a ``revocations`` row), then, when
        the IdP publishes to Redis, announced there and answered with ``published``, so
        a resource server never learns of a revocation the IdP could still lose. If the
        announcement fails, the answer still says ``revoked`` (it is, at the IdP: no
        token is minted for it any more) with ``published: false``, and
        :meth:`announce_revocations` publishes it as soon as Redis answers.
        """
        result = await self._revoke(kind, ident, client)
        if result["revoked"] and self.revocations is not None:
            result["published"] = await self._publish(self.revocations, kind, ident)
        return result

    async def revoke_token(self, client: ClientRow, token: str) -> None:
        """RFC 7009 token revocation, as ``client``.

        An intent (or step) token is revoked with the grant it came from (§2.1 allows
        it): its run, so the IdP mints nothing more for the run and resource servers
        refuse every token of it (status endpoint, Redis). A token this IdP did not
        issue, or that is no longer valid, is no error (§2.2); a valid token of another
        client is refused (``invalid_grant``, ``token_of_another_client``).
        """
        try:
            claims = decode_intent_token(
                token,
                self.keys.verification_keys(),
                issuer=self.settings.issuer,
                audience=None,
                now=self.clock(),
            )
        except AJWTError:
            return
        if claims.client_id != client.client_id:
            raise InvalidGrant(
                Reason.TOKEN_OF_ANOTHER_CLIENT, "the token was not issued to this client"
            )
        await self.revoke("run", claims.intent.run_id, client)

    async def _publish(self, publisher: RevocationPublisher, kind: str, ident: str) -> bool:
        try:
            await publisher.publish(kind, ident)
        except Exception as exc:  # noqa: BLE001 - Redis unreachable: the revocation stays pending
            if backend_of(exc) is not None:
                self.db.outages.down("redis", exc)
            log.warning("revocation of %s %s committed; announcing it is pending", kind, ident)
            return False
        self.db.outages.up("redis")
        try:
            await self._mark_published([(kind, ident)])
        except SQLAlchemyError:  # it is announced; at worst it is announced again later
            log.warning("revocation of %s %s announced but not marked so", kind, ident)
        return True

    async def _revoke(self, kind: str, ident: str, client: ClientRow | None) -> dict[str, Any]:
        now = self.now()
        async with self.db.transaction() as session:
            if kind in ("run", "intent"):
                column = RunRow.run_id if kind == "run" else RunRow.intent_id
                run = (
                    await session.execute(select(RunRow).where(column == ident))
                ).scalar_one_or_none()
                if run is None or (client and run.client_id != client.client_id):
                    return {"revoked": False}
                run = await self.db.lock_run(session, run.run_id)
                if run.state in ("open", "closed"):
                    state = "revoked" if kind == "run" else "intent_revoked"
                    await execute_core(
                        session,
                        update(_runs).where(_runs.c.run_id == bindparam("run")),
                        {"run": run.run_id, "state": state, "closed_at": now},
                    )
                    await self._append(
                        session, run, EntryKind.REVOKED, {"kind": kind, "id": ident}, now
                    )
                await record_revocation(session, kind, ident, now)
                return {"revoked": True}
            if kind == "agent":
                agent = await session.get(AgentRow, ident)
                if agent is None or (client and agent.client_id != client.client_id):
                    return {"revoked": False}
                agent.revoked_at = agent.revoked_at or now
                await record_revocation(session, kind, ident, now)
                return {"revoked": True}
            if kind == "client":
                if client is not None:
                    raise AccessDenied(
                        Reason.MALFORMED_REQUEST, "only an administrator revokes clients"
                    )
                row = await session.get(ClientRow, ident)
                if row is None:
                    return {"revoked": False}
                row.revoked_at = row.revoked_at or now
                await record_revocation(session, kind, ident, now)
                return {"revoked": True}
        raise InvalidRequest(Reason.MALFORMED_REQUEST, f"cannot revoke a {kind!r}")

    async def revocation_feed(self, since: int | None) -> dict[str, Any]:
        """The versioned revocation list resource servers follow (DESIGN §12).

        Without ``since``: every revocation whose tokens may still be live (revoked in
        the last ``REVOCATION_TTL`` seconds), ``full: true``. With ``since`` (the
        ``version`` of an earlier answer): those revoked since then, less
        :data:`FEED_MARGIN` seconds, so a revocation may come more than once but never
        falls between two reads. ``version`` is the IdP's clock at the read. One
        indexed query on ``revocations.revoked_at``.
        """
        now = self.now()
        horizon = now - REVOCATION_TTL
        cutoff = horizon if since is None else max(horizon, min(since, now) - FEED_MARGIN)
        rows = await self._revocations(_REVOCATIONS_SINCE, cutoff)
        return {
            "version": now,
            "full": since is None,
            "revoked": [{"kind": r.kind, "id": r.ident, "revoked_at": r.revoked_at} for r in rows],
        }

    async def announce_revocations(self, *, force: bool = False) -> None:
        """One pass of the revocation announcer (DESIGN §12); the IdP runs it on start
        (``force``: republish whatever Redis holds) and then every second or so.

        1. If Redis lost what was published (its ``revocations:ready`` marker is gone),
           republish every revocation recent enough for its tokens to be live, then set
           the marker (see ``RedisRevocationPublisher.republish_if_lost``).
        2. Publish the revocations still pending (committed while Redis was unreachable).

        Raises whatever Redis or the database raise; the caller retries on its next pass.
        """
        publisher = self.revocations
        if publisher is None:
            return
        cutoff = self.now() - publisher.ttl
        snapshot: list[_Revocation] = []

        async def active() -> list[_Revocation]:
            snapshot.extend(await self._revocations(_REVOCATIONS_SINCE, cutoff))
            return snapshot

        if await publisher.republish_if_lost(active, force=force):
            await self._mark_published([(r.kind, r.ident) for r in snapshot if r.pending])
        pending = await self._revocations(_PENDING_REVOCATIONS, cutoff)
        for item in pending:
            await publisher.publish(item.kind, item.ident)
        await self._mark_published([(r.kind, r.ident) for r in pending])

    async def _revocations(self, statement: Any, cutoff: int) -> list[_Revocation]:
        async with self.db.read() as session:
            rows = (await execute_core(session, statement, {"cutoff": cutoff})).all()
        return [
            _Revocation(kind, ident, at, published is None) for kind, ident, at, published in rows
        ]

    async def _mark_published(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        now = self.now()
        async with self.db.transaction() as session:
            await session.execute(
                _MARK_PUBLISHED, [{"k": kind, "i": ident, "at": now} for kind, ident in items]
            )
