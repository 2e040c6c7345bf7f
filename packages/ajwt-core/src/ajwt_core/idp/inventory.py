"""What an operator lists and inspects (the admin endpoints behind ``ajwt client list``,
``ajwt workflow list|show``, ``ajwt runs list|show``): clients, workflows and runs, in
pages.

A page is ``{"items": [...], "next": cursor | null}``: ``next`` is an opaque cursor (the
sort key of the last item, base64url JSON) to pass as ``after`` for the following page.
Keyset pagination, so a page costs the same however deep it is and items added
meanwhile are neither skipped nor repeated.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import and_, or_, select

from ajwt_core.errors import InvalidRequest, NotFound, Reason
from ajwt_core.idp.base import IdPBase
from ajwt_core.idp.db import ClientRow, RunRow, WorkflowRow
from ajwt_core.idp.models import is_identifier

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000


def encode_cursor(key: Sequence[Any]) -> str:
    """The opaque ``next`` cursor for a sort key.

    >>> decode_cursor(encode_cursor([17, "run-1"]), (int, str))
    [17, 'run-1']
    """
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The sort key in a cursor this IdP issued; anything else is ``invalid_request``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(type(k) is t for k, t in zip(key, types, strict=True))
        # The values reach SQL: identifiers and column-sized integers only.
        or not all(is_identifier(k) if isinstance(k, str) else 0 <= k < 2**63 for k in key)
    ):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "'after' is not a cursor from this IdP")
    return key


def page_of(items: list[dict[str, Any]], limit: int, key: Sequence[str]) -> dict[str, Any]:
    """A page of at most ``limit`` of ``items`` (which hold one more if there are more)."""
    more = len(items) > limit
    items = items[:limit]
    cursor = encode_cursor([items[-1][k] for k in key]) if more and items else None
    return {"items": items, "next": cursor}


def client_view(row: ClientRow) -> dict[str, Any]:
    return {
        "client_id": row.client_id,
        "scopes": row.scopes.split() if row.scopes else [],
        "auth_method": "private_key_jwt" if row.jwks else "client_secret_basic",
        "agent_policy": row.agent_policy or "open",
        "shim_checksums": list(row.shim_checksums or []),
        "resources": list(row.resources or []),
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


def run_view(row: RunRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "intent_id": row.intent_id,
        "client_id": row.client_id,
        "workflow_id": row.workflow_id,
        "workflow_version": row.workflow_version,
        "subject": row.subject,
        "intent": row.intent,
        "state": row.state,
        "created_at": row.created_at,
        "closed_at": row.closed_at,
        "ledger_length": row.head_seq + 1,
        "ledger_head": row.head_hash,
    }


class Inventory(IdPBase):
    """Paginated lists of clients, workflows and runs for the administrator."""

    async def list_clients(self, *, limit: int = DEFAULT_PAGE, after: str | None = None) -> Any:
        stmt = select(ClientRow).order_by(ClientRow.client_id).limit(limit + 1)
        if after is not None:
            (last,) = decode_cursor(after, (str,))
            stmt = stmt.where(ClientRow.client_id > last)
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).scalars().all()
        return page_of([client_view(r) for r in rows], limit, ["client_id"])

    async def list_workflows(
        self,
        *,
        workflow_id: str | None = None,
        limit: int = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Any:
        stmt = (
            select(WorkflowRow.workflow_id, WorkflowRow.version, WorkflowRow.hash)
            .add_columns(WorkflowRow.created_at)
            .order_by(WorkflowRow.workflow_id, WorkflowRow.version)
            .limit(limit + 1)
        )
        if workflow_id is not None:
            stmt = stmt.where(WorkflowRow.workflow_id == workflow_id)
        if after is not None:
            last_id, last_version = decode_cursor(after, (str, int))
            stmt = stmt.where(
                or_(
                    WorkflowRow.workflow_id > last_id,
                    and_(
                        WorkflowRow.workflow_id == last_id,
                        WorkflowRow.version > last_version,
                    ),
                )
            )
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        items = [
            {"workflow_id": w, "version": v, "hash": h, "created_at": at} for w, v, h, at in rows
        ]
        return page_of(items, limit, ["workflow_id", "version"])

    async def list_runs(
        self,
        *,
        client_id: str | None = None,
        state: str | None = None,
        workflow_id: str | None = None,
        limit: int = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Any:
        """Runs, newest first."""
        stmt = (
            select(RunRow).order_by(RunRow.created_at.desc(), RunRow.run_id.desc()).limit(limit + 1)
        )
        if client_id is not None:
            stmt = stmt.where(RunRow.client_id == client_id)
        if state is not None:
            stmt = stmt.where(RunRow.state == state)
        if workflow_id is not None:
            stmt = stmt.where(RunRow.workflow_id == workflow_id)
        if after is not None:
            last_at, last_id = decode_cursor(after, (int, str))
            stmt = stmt.where(
                or_(
                    RunRow.created_at < last_at,
                    and_(RunRow.created_at == last_at, RunRow.run_id < last_id),
                )
            )
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).scalars().all()
        return page_of([run_view(r) for r in rows], limit, ["created_at", "run_id"])

    async def run_details(self, run_id: str) -> dict[str, Any]:
        """One run: its row, where it stands in its workflow, and its ledger's length."""
        async with self.db.read() as session:
            row = await session.get(RunRow, run_id)
            if row is None:
                raise NotFound(Reason.RUN_NOT_FOUND, "no such run")
            workflow = await self.workflow(row.workflow_id, row.workflow_version)
            state = await self._state(session, run_id, workflow)
        view = run_view(row)
        view |= {
            "workflow_hash": workflow.workflow_hash,
            "completed_steps": sorted(state.completed),
            "due_steps": state.due(),
            "finished": state.finished,
        }
        return view
