"""Governance of agent versions (DESIGN §12): which checksums a client's agents may have.

Every checksum an agent of a client has had is recorded (``agent_checksums``) with its
version: the agent's first checksum is version 1, each new one the next, and every
registration of a checksum (a key rotation, a restarted process) keeps its version. A
client's ``agent_policy`` decides what a checksum never seen before does:

- ``open``: it registers at once (and is recorded, so operators see every version);
- ``pinned``: it is refused; only checksums an administrator registered
  (``ajwt agents register``, e.g. from CI) register;
- ``approval``: it is recorded as ``pending`` and refused until an administrator
  approves it (``ajwt agents approve``); the refusal names the checksum.

Revoking a checksum refuses its future registrations and revokes its live ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ajwt_core.checksum import compute_checksum
from ajwt_core.errors import InvalidRequest, NotFound, Reason, UnauthorizedClient
from ajwt_core.idp.base import IdPBase
from ajwt_core.idp.db import AgentChecksumRow, AgentRow, ClientRow, DbSession
from ajwt_core.idp.inventory import decode_cursor, page_of
from ajwt_core.idp.revocation import record_revocation

AgentPolicy = Literal["open", "pinned", "approval"]
AGENT_POLICIES: Final[tuple[AgentPolicy, ...]] = ("open", "pinned", "approval")
#: How often an admission is retried when another worker recorded the same checksum (or
#: took the same version number) at the same moment.
_ADMISSION_ATTEMPTS = 3

_registrations = cast(Table, AgentRow.__table__)


@dataclass(frozen=True)
class Admission:
    """The outcome of one checksum's admission: its version, or why it is refused."""

    agent_id: str
    checksum: str
    version: int
    status: str


def checksum_view(row: AgentChecksumRow, live: int | None = None) -> dict[str, Any]:
    """What the admin endpoints answer about one checksum of an agent."""
    view: dict[str, Any] = {
        "client_id": row.client_id,
        "agent_id": row.agent_id,
        "checksum": row.checksum,
        "version": row.version,
        "status": row.status,
        "source": row.source,
        "created_at": row.created_at,
        "decided_at": row.decided_at,
        "decided_by": row.decided_by,
    }
    if live is not None:
        view["live_registrations"] = live
    return view


class Governance(IdPBase):
    """Registration policy and the record of agent checksums (DESIGN §12 Governance)."""

    async def _next_checksum_version(
        self, session: DbSession, client_id: str, agent_id: str
    ) -> int:
        current = (
            await session.execute(
                select(func.max(AgentChecksumRow.version)).where(
                    AgentChecksumRow.client_id == client_id,
                    AgentChecksumRow.agent_id == agent_id,
                )
            )
        ).scalar_one_or_none()
        return int(current or 0) + 1

    async def admit_checksums(
        self, client: ClientRow, manifests: Sequence[dict[str, Any]]
    ) -> dict[tuple[str, str], int]:
        """The version of each ``(agent_id, checksum)`` the client's policy admits.

        New checksums are recorded first, in their own transaction (``allowed`` under
        ``open``, ``pending`` under ``approval``), so a refused one is still listed for an
        administrator; then, if any checksum is not allowed, the whole request is refused
        with the reason of the first and every refused checksum named.
        """
        wanted: dict[tuple[str, str], dict[str, Any]] = {}
        for manifest in manifests:
            checksum = compute_checksum(manifest)  # validates the manifest first
            wanted.setdefault((str(manifest["agent_id"]), checksum), manifest)
        policy = client.agent_policy or "open"
        for attempt in range(_ADMISSION_ATTEMPTS):
            try:
                admitted = await self._admit(client.client_id, policy, wanted)
                break
            except IntegrityError:
                # Another worker recorded one of these checksums (or took its version
                # number) between our read and our write: read again.
                if attempt == _ADMISSION_ATTEMPTS - 1:
                    raise
        refused = [a for a in admitted if a.status != "allowed"]
        if refused:
            raise _refusal(client.client_id, refused)
        return {(a.agent_id, a.checksum): a.version for a in admitted}

    async def _admit(
        self, client_id: str, policy: str, wanted: dict[tuple[str, str], dict[str, Any]]
    ) -> list[Admission]:
        now = self.now()
        admitted: list[Admission] = []
        async with self.db.transaction() as session:
            for (agent_id, checksum), manifest in wanted.items():
                row = await session.get(AgentChecksumRow, (client_id, agent_id, checksum))
                if row is None:
                    if policy == "pinned":
                        admitted.append(Admission(agent_id, checksum, 0, "not_pinned"))
                        continue
                    row = AgentChecksumRow(
                        client_id=client_id,
                        agent_id=agent_id,
                        checksum=checksum,
                        version=await self._next_checksum_version(session, client_id, agent_id),
                        status="allowed" if policy == "open" else "pending",
                        manifest=manifest,
                        source="runtime",
                        created_at=now,
                        decided_at=None,
                        decided_by=None,
                    )
                    session.add(row)
                    await session.flush()
                admitted.append(Admission(agent_id, checksum, row.version, row.status))
        return admitted

    # ------------------------------------------------------------- administrator

    async def pin_agents(
        self, client_id: str, manifests: Sequence[dict[str, Any]], decided_by: str
    ) -> list[dict[str, Any]]:
        """Register (pin) agent manifests for a client, as an administrator: each checksum
        becomes ``allowed`` (a pending one is approved, a revoked one allowed again)."""
        await self.client_row(client_id)
        for attempt in range(_ADMISSION_ATTEMPTS):
            try:
                return await self._pin(client_id, manifests, decided_by)
            except IntegrityError:
                if attempt == _ADMISSION_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _pin(
        self, client_id: str, manifests: Sequence[dict[str, Any]], decided_by: str
    ) -> list[dict[str, Any]]:
        now = self.now()
        pinned: list[dict[str, Any]] = []
        async with self.db.transaction() as session:
            for manifest in manifests:
                checksum = compute_checksum(manifest)
                agent_id = str(manifest["agent_id"])
                row = await session.get(AgentChecksumRow, (client_id, agent_id, checksum))
                if row is None:
                    row = AgentChecksumRow(
                        client_id=client_id,
                        agent_id=agent_id,
                        checksum=checksum,
                        version=await self._next_checksum_version(session, client_id, agent_id),
                        status="allowed",
                        manifest=manifest,
                        source="admin",
                        created_at=now,
                        decided_at=now,
                        decided_by=decided_by,
                    )
                    session.add(row)
                elif row.status != "allowed":
                    row.status, row.decided_at, row.decided_by = "allowed", now, decided_by
                await session.flush()
                pinned.append(checksum_view(row))
        return pinned

    async def approve_checksum(
        self, client_id: str, agent_id: str, checksum: str, decided_by: str
    ) -> dict[str, Any]:
        """Approve a pending checksum (or allow a revoked one again)."""
        now = self.now()
        async with self.db.transaction() as session:
            row = await self._checksum(session, client_id, agent_id, checksum)
            if row.status != "allowed":
                row.status, row.decided_at, row.decided_by = "allowed", now, decided_by
                await session.flush()
            return checksum_view(row)

    async def revoke_checksum(
        self, client_id: str, agent_id: str, checksum: str, decided_by: str
    ) -> dict[str, Any]:
        """Refuse a checksum from now on and revoke its live registrations (announced to
        resource servers like any agent revocation)."""
        now = self.now()
        async with self.db.transaction() as session:
            row = await self._checksum(session, client_id, agent_id, checksum)
            row.status, row.decided_at, row.decided_by = "revoked", now, decided_by
            live = (
                (
                    await session.execute(
                        select(AgentRow.registration_id).where(
                            AgentRow.client_id == client_id,
                            AgentRow.agent_id == agent_id,
                            AgentRow.checksum == checksum,
                            AgentRow.revoked_at.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
            if live:
                await session.execute(
                    update(_registrations)
                    .where(_registrations.c.registration_id.in_(live))
                    .values(revoked_at=now)
                )
            for registration_id in live:
                await record_revocation(session, "agent", registration_id, now)
            await session.flush()
            view = checksum_view(row)
        view["revoked_registrations"] = sorted(live)
        if self.revocations is not None:
            for registration_id in live:
                # Best effort now; the announcer publishes whatever is still pending.
                try:
                    await self.revocations.publish("agent", registration_id)
                except Exception:  # noqa: BLE001, S112 - pending rows are retried later
                    continue
        return view

    async def list_checksums(
        self,
        client_id: str,
        *,
        agent_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> dict[str, Any]:
        """A page of the client's agent checksums (by agent, then version), each with how
        many live registrations use it (``{"items", "next"}``, as the other admin lists)."""
        await self.client_row(client_id)
        now = self.now()
        stmt = select(AgentChecksumRow).where(AgentChecksumRow.client_id == client_id)
        if agent_id is not None:
            stmt = stmt.where(AgentChecksumRow.agent_id == agent_id)
        if status is not None:
            stmt = stmt.where(AgentChecksumRow.status == status)
        if after is not None:
            last_agent, last_version = decode_cursor(after, (str, int))
            stmt = stmt.where(
                or_(
                    AgentChecksumRow.agent_id > last_agent,
                    and_(
                        AgentChecksumRow.agent_id == last_agent,
                        AgentChecksumRow.version > last_version,
                    ),
                )
            )
        stmt = stmt.order_by(AgentChecksumRow.agent_id, AgentChecksumRow.version).limit(limit + 1)
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).scalars().all()
            counts = dict(
                (
                    await session.execute(
                        select(AgentRow.checksum, func.count())
                        .where(
                            AgentRow.client_id == client_id,
                            AgentRow.revoked_at.is_(None),
                            AgentRow.expires_at > now,
                        )
                        .group_by(AgentRow.checksum)
                    )
                ).all()
            )
        items = [checksum_view(row, int(counts.get(row.checksum, 0))) for row in rows]
        return page_of(items, limit, ["agent_id", "version"])

    async def set_agent_policy(self, client_id: str, policy: str) -> dict[str, Any]:
        """Change a client's registration policy. The checksums already allowed stay
        allowed: switching an ``open`` client to ``pinned`` freezes the versions it has."""
        if policy not in AGENT_POLICIES:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, f"agent_policy must be one of {', '.join(AGENT_POLICIES)}"
            )
        async with self.db.transaction() as session:
            row = await session.get(ClientRow, client_id)
            if row is None:
                raise NotFound(Reason.NOT_FOUND, f"no client {client_id!r}")
            row.agent_policy = policy
            row.allow_runtime_registration = policy != "pinned"
        return {"client_id": client_id, "agent_policy": policy}

    async def client_row(self, client_id: str) -> ClientRow:
        """A client's record (``not_found`` if there is none)."""
        async with self.db.read() as session:
            row = await session.get(ClientRow, client_id)
        if row is None:
            raise NotFound(Reason.NOT_FOUND, f"no client {client_id!r}")
        return row

    @staticmethod
    async def _checksum(
        session: DbSession, client_id: str, agent_id: str, checksum: str
    ) -> AgentChecksumRow:
        row = await session.get(AgentChecksumRow, (client_id, agent_id, checksum))
        if row is None:
            raise NotFound(
                Reason.NOT_FOUND,
                f"client {client_id!r} has no agent {agent_id!r} with checksum {checksum}",
            )
        return row


def _refusal(client_id: str, refused: list[Admission]) -> UnauthorizedClient:
    """One error naming every refused checksum and what an administrator can do."""
    parts: list[str] = []
    for item in refused:
        named = f"agent {item.agent_id!r} with checksum {item.checksum}"
        if item.status == "pending":
            parts.append(
                f"{named} (version {item.version}) is waiting for an administrator's "
                f"approval: ajwt agents approve {client_id} {item.agent_id} {item.checksum}"
            )
        elif item.status == "revoked":
            parts.append(f"{named} (version {item.version}) has been revoked")
        else:
            parts.append(
                f"{named} is not pinned for client {client_id!r}, whose agents register only "
                "with checksums an administrator registered: ajwt agents register "
                f"{client_id} MANIFESTS"
            )
    reason = {
        "pending": Reason.AGENT_APPROVAL_PENDING,
        "revoked": Reason.AGENT_REVOKED,
        "not_pinned": Reason.AGENT_NOT_PINNED,
    }[refused[0].status]
    return UnauthorizedClient(reason, "; ".join(parts))
