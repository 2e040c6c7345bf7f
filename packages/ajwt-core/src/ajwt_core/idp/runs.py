"""Runs: started from the user's token, completed step by step, approved, reported."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select

from ajwt_core.dpop import VerifiedProof
from ajwt_core.errors import (
    AccessDenied,
    AJWTError,
    InvalidGrant,
    InvalidRequest,
    NotFound,
    Reason,
)
from ajwt_core.idp.base import IdPBase, insert_entries
from ajwt_core.idp.db import (
    AgentRow,
    ClientRow,
    RunRow,
    execute_core,
)
from ajwt_core.idp.models import (
    RunStart,
    RunStarted,
    RunStatus,
)
from ajwt_core.idp.upstream import UpstreamProvider, subject_prefix
from ajwt_core.keys import UPSTREAM_ALGORITHMS, KeyResolver
from ajwt_core.ledger import (
    GENESIS_HASH,
    Anchor,
    EntryKind,
    LedgerEntry,
    LedgerReport,
    chain_after,
    verify_chain,
)
from ajwt_core.tokens import (
    ACCESS_TOKEN_TYPE_URI,
    ID_TOKEN_TYPE_URI,
    MAX_CLAIM_LENGTH,
    decode_id_token,
    decode_subject_token,
    encode_user_token,
)
from ajwt_core.workflow import Workflow


@dataclass(frozen=True)
class ProvenCompletion:
    """A step completion whose token and proof have been checked
    (:meth:`Runs.prove_completion`); recorded once the run is locked."""

    agent: str
    step: str
    jti: str

    def data(self) -> dict[str, Any]:
        """The ``step_completed`` ledger entry's data."""
        return {"step": self.step, "agent": self.agent, "jti": self.jti}


def refused_outcome(step: str, refusal: AJWTError) -> dict[str, Any]:
    """A carried completion's refusal, as its outcome in the token response."""
    return {
        "step": step,
        "outcome": "refused",
        "error": refusal.error,
        "reason": refusal.reason.value,
        "error_description": refusal.description,
    }


_runs, _clients, _agents = (cast(Table, row.__table__) for row in (RunRow, ClientRow, AgentRow))
#: What a completion reads of the registration of the token's agent.
_COMPLETER = select(_agents.c.revoked_at).where(
    _agents.c.registration_id == bindparam("registration_id")
)
#: The run, its client and an agent registration of it, in one statement.
_STATUS = (
    select(
        _runs.c.run_id,
        _runs.c.intent_id,
        _runs.c.state,
        _runs.c.client_id,
        _runs.c.workflow_id,
        _runs.c.workflow_version,
        _runs.c.head_hash,
        _clients.c.client_id.label("client_found"),
        _clients.c.revoked_at.label("client_revoked_at"),
        _agents.c.client_id.label("agent_client"),
        _agents.c.revoked_at.label("agent_revoked_at"),
    )
    .select_from(
        _runs.outerjoin(_clients, _clients.c.client_id == _runs.c.client_id).outerjoin(
            _agents, _agents.c.registration_id == bindparam("registration")
        )
    )
    .where(_runs.c.run_id == bindparam("run"))
)

_INSERT_RUN = insert(_runs)


# Refusals of a subject token before its key is found: it may be the upstream's.
_NOT_SIGNED_HERE = frozenset(
    {
        Reason.TOKEN_TOO_LARGE,
        Reason.MALFORMED_TOKEN,
        Reason.WRONG_TYPE,
        Reason.ALG_NOT_ALLOWED,
        Reason.FORBIDDEN_HEADER,
        Reason.UNKNOWN_KID,
    }
)


@dataclass(frozen=True)
class User:
    """Who started a run: the ``sub`` recorded and put in its tokens (an upstream user's
    namespaced by its issuer), and the issuer that vouched for it."""

    subject: str
    issuer: str


class Runs(IdPBase):
    """Runs: start (rooted in the user's token), step completion, approval, status and
    ledger (DESIGN §6.4, §6.7, §8)."""

    def issue_user_token(self, subject: str, lifetime: int) -> str:
        """A local user access token (embedded mode: no upstream IdP needed)."""
        if not self.settings.accepts_local_users:
            raise AccessDenied(
                Reason.LOCAL_USERS_DISABLED, "this IdP takes user tokens from its upstream issuer"
            )
        self._check_local_subject(subject, InvalidRequest)
        return encode_user_token(
            subject,
            self.keys.active,
            issuer=self.settings.issuer,
            audience=self.settings.issuer,
            lifetime=lifetime,
            now=self.now(),
        )

    def _check_local_subject(self, subject: str, error: type[AJWTError]) -> None:
        # A local subject spelled like an upstream one would be that upstream user.
        if self.settings.upstream_issuer:
            prefix = subject_prefix(self.settings)
            if prefix and subject.startswith(prefix):
                raise error(
                    Reason.INVALID_CLAIM,
                    f"a local user's subject may not start with {prefix!r}, the upstream "
                    "issuer's namespace",
                )

    async def verify_subject_token(
        self, token: str, token_type: str = ACCESS_TOKEN_TYPE_URI
    ) -> User:
        """The user whose intent roots a run, from their access token (local or upstream
        issuer) or their upstream ID token (RFC 8693 ``subject_token_type``)."""
        if token_type not in (ACCESS_TOKEN_TYPE_URI, ID_TOKEN_TYPE_URI):
            raise InvalidRequest(
                Reason.WRONG_TYPE, f"subject_token_type {token_type!r} is not supported"
            )
        errors: list[InvalidGrant] = []
        if self.settings.accepts_local_users and token_type == ACCESS_TOKEN_TYPE_URI:
            try:
                claims = decode_subject_token(
                    token,
                    self.keys.verification_keys(),
                    issuer=self.settings.issuer,
                    audience=self.settings.issuer,
                    algorithms=("ES256", "EdDSA"),
                    now=self.clock(),
                )
            except InvalidGrant as exc:
                if exc.reason not in _NOT_SIGNED_HERE:
                    raise  # one of this IdP's keys signed it: it is a local token
                errors.append(exc)
            else:
                self._check_local_subject(claims.sub, InvalidGrant)
                return User(subject=claims.sub, issuer=self.settings.issuer)
        if self.upstream is not None:
            try:
                return await self._verify_upstream(self.upstream, token, token_type)
            except InvalidGrant as exc:
                errors.append(exc)
        if errors:
            # Report the most specific failure (the last issuer tried that knew the key).
            specific = [e for e in errors if e.reason != Reason.UNKNOWN_KID] or errors
            raise InvalidGrant(specific[-1].reason, f"subject token refused: {specific[-1]}")
        if token_type == ID_TOKEN_TYPE_URI:
            raise InvalidRequest(Reason.WRONG_TYPE, "this IdP has no upstream issuer of ID tokens")
        raise InvalidGrant(Reason.MALFORMED_REQUEST, "no subject-token issuer is configured")

    async def _verify_upstream(
        self, upstream: UpstreamProvider, token: str, token_type: str
    ) -> User:
        settings = self.settings
        issuer = upstream.issuer
        if token_type == ID_TOKEN_TYPE_URI:
            client_id = settings.upstream_client_id
            if client_id is None:
                raise InvalidRequest(
                    Reason.WRONG_TYPE,
                    "this IdP takes no ID tokens: no upstream client id is configured",
                )

            def decode(keys: KeyResolver) -> str:
                return decode_id_token(
                    token,
                    keys,
                    issuer=issuer,
                    client_id=client_id,
                    algorithms=UPSTREAM_ALGORITHMS,
                    now=self.clock(),
                ).sub
        else:

            def decode(keys: KeyResolver) -> str:
                return decode_subject_token(
                    token,
                    keys,
                    issuer=issuer,
                    audience=settings.upstream_audience or settings.issuer,
                    algorithms=UPSTREAM_ALGORITHMS,
                    now=self.clock(),
                ).sub

        try:
            sub = decode(await upstream.keys())
        except InvalidGrant as exc:
            if exc.reason != Reason.UNKNOWN_KID:
                raise
            # Keys not fetched yet, or rotated at the provider: fetch (rate-limited), retry.
            sub = decode(await upstream.refresh())
        subject = subject_prefix(settings) + sub
        if len(subject) > MAX_CLAIM_LENGTH:
            raise InvalidGrant(
                Reason.INVALID_CLAIM,
                f"the user's subject with its issuer is longer than {MAX_CLAIM_LENGTH} characters",
            )
        return User(subject=subject, issuer=issuer)

    async def start_run(self, client: ClientRow, body: RunStart) -> RunStarted:
        user = await self.verify_subject_token(body.subject_token, body.subject_token_type)
        subject = user.subject
        workflow = await self.workflow(body.workflow_id, body.workflow_version)
        now = self.now()
        run_id = "run-" + secrets.token_hex(12)
        intent_id = "intent-" + secrets.token_hex(12)
        entry = chain_after(
            -1,
            GENESIS_HASH,
            run_id,
            EntryKind.RUN_STARTED,
            now,
            {
                "intent_id": intent_id,
                "client_id": client.client_id,
                "initiated_by": subject,
                "initiated_by_issuer": user.issuer,
                "workflow_id": workflow.id,
                "workflow_version": workflow.version,
                "workflow_hash": workflow.workflow_hash,
                "intent": body.intent,
            },
        )
        # A new run: its row (with the head already at its first entry) and that entry,
        # two INSERTs in one transaction; no other request knows the run yet.
        async with self.db.transaction() as session:
            await execute_core(
                session,
                _INSERT_RUN,
                {
                    "run_id": run_id,
                    "intent_id": intent_id,
                    "client_id": client.client_id,
                    "workflow_id": workflow.id,
                    "workflow_version": workflow.version,
                    "subject": subject,
                    "subject_issuer": user.issuer,
                    "intent": body.intent,
                    "state": "open",
                    "created_at": now,
                    "closed_at": None,
                    "head_seq": entry.seq,
                    "head_hash": entry.entry_hash,
                },
            )
            await insert_entries(session, [entry])
        return RunStarted(
            run_id=run_id,
            intent_id=intent_id,
            initiated_by=subject,
            workflow=workflow.canonical(),
            workflow_hash=workflow.workflow_hash,
            ledger_head=entry.entry_hash,
            ledger_checkpoint=self.checkpoint(entry),
        )

    async def prove_completion(
        self, client: ClientRow, token: str, proof: VerifiedProof, run_id: str, step: str
    ) -> ProvenCompletion:
        """The checks of a step completion that need no transaction (DESIGN §6.7): the
        step's intent token is this IdP's, for ``run_id`` and ``step`` and this client,
        and ``proof`` (already verified for the completion URL) is by the token's key."""
        claims = await self.decode_own_token(token)
        if proof.jkt != claims.cnf.jkt:
            raise InvalidGrant(Reason.KEY_NOT_BOUND, "the proof is not by the token's agent key")
        if claims.intent.run_id != run_id or claims.intent.step != step:
            raise InvalidGrant(Reason.INVALID_CLAIM, "the token is for another run or step")
        if claims.client_id != client.client_id:
            raise InvalidGrant(Reason.RUN_NOT_FOUND, "no such run for this client")
        # A revoked registration completes nothing, as it mints nothing: its tokens
        # still verify until they expire, so the registration itself is read.
        found = await self.db.fetch_one(
            _COMPLETER, {"registration_id": claims.agent.registration_id}
        )
        if found is None:
            raise InvalidGrant(
                Reason.AGENT_NOT_REGISTERED, "the token's agent registration is not known here"
            )
        if found.revoked_at is not None:
            raise InvalidGrant(
                Reason.AGENT_REVOKED,
                f"agent {claims.agent.id!r}'s registration has been revoked: it completes no step",
            )
        return ProvenCompletion(agent=claims.agent.id, step=step, jti=claims.jti)

    async def complete_step(
        self, client: ClientRow, token: str, proof: VerifiedProof, run_id: str, step: str
    ) -> dict[str, Any]:
        """Record a step as completed, proven by its agent's key and token (DESIGN §6.7)."""
        proven = await self.prove_completion(client, token, proof, run_id, step)
        events: list[dict[str, Any]] = []
        async with self.db.transaction() as session:
            run, state = await self._open_run(session, client, run_id)
            # The step's agent only (a consulted agent answers, it does not complete), on
            # the run's path, with its predecessors completed (DESIGN §6.3).
            if not state.check_completion(proven.agent, step):
                return {"run_id": run_id, "step": step, "already_completed": True}
            entry = await self._record(
                session, run, state, events, EntryKind.STEP_COMPLETED, proven.data()
            )
        return {
            "run_id": run_id,
            "step": step,
            "ledger_head": entry.entry_hash,
            "ledger_checkpoint": self.checkpoint(entry),
            "ajwt_run_events": events,
            "finished": state.finished,
        }

    async def record_completions(
        self, client: ClientRow, run_id: str, proven: list[ProvenCompletion]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Record completions carried on a token request (DESIGN §6.7), in order, in one
        transaction of their own before the grant's: each checked as the completion
        endpoint checks it. Answers one outcome per completion (``completed``,
        ``already_completed`` or the refusal's error, reason and description) and the
        run events recorded. A refused completion does not stop the others, and a grant
        refused afterwards does not undo them (as if each had been sent on its own just
        before the token request)."""
        outcomes: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        async with self.db.transaction() as session:
            run, state = await self._open_run(session, client, run_id)
            for done in proven:
                try:
                    fresh = state.check_completion(done.agent, done.step)
                except AJWTError as refusal:
                    outcomes.append(refused_outcome(done.step, refusal))
                    continue
                if fresh:
                    await self._record(
                        session, run, state, events, EntryKind.STEP_COMPLETED, done.data()
                    )
                outcomes.append(
                    {"step": done.step, "outcome": "completed" if fresh else "already_completed"}
                )
        return outcomes, events

    async def approve(self, run_id: str, step: str, approved_by: str) -> dict[str, Any]:
        """Grant the approval a step requires; recorded in the run's ledger."""
        async with self.db.transaction() as session:
            run = await self.db.lock_run(session, run_id)
            workflow = await self.workflow(run.workflow_id, run.workflow_version)
            workflow.step(step)
            # Approvals count for the step's current visit (work sent back to a step that
            # needs one needs it again).
            if step not in (await self._state(session, run_id, workflow)).approved:
                await self._append(
                    session,
                    run,
                    EntryKind.STEP_APPROVED,
                    {"step": step, "approved_by": approved_by},
                    self.now(),
                )
        return {"run_id": run_id, "step": step, "approved_by": approved_by}

    async def status(self, run_id: str, registration_id: str | None) -> RunStatus:
        """What a resource server needs to honour revocation (DESIGN §6.9, §7.6): the run,
        its client and the agent registration in one Core query, then the ledger's
        state events."""
        workflow: Workflow | None = None
        async with self.db.read() as session:
            row = (
                await execute_core(
                    session, _STATUS, {"run": run_id, "registration": registration_id or ""}
                )
            ).one_or_none()
            if row is None:
                raise NotFound(Reason.RUN_NOT_FOUND, "no such run")
            if (row.workflow_id, row.workflow_version) in self._workflows:
                workflow = self._workflows[(row.workflow_id, row.workflow_version)]
                state = await self._state(session, run_id, workflow)
        if workflow is None:  # not in memory yet: read it, then the ledger
            workflow = await self.workflow(row.workflow_id, row.workflow_version)
            async with self.db.read() as session:
                state = await self._state(session, run_id, workflow)
        registration_active: bool | None = None
        if registration_id is not None:
            registration_active = bool(
                row.agent_client is not None
                and row.agent_revoked_at is None
                and row.agent_client == row.client_id
            )
        client_active = row.client_found is not None and row.client_revoked_at is None
        return RunStatus(
            run_id=row.run_id,
            intent_id=row.intent_id,
            state=row.state,
            active=row.state == "open" and client_active,
            registration_active=registration_active,
            client_active=client_active,
            completed_steps=sorted(state.completed),
            due_steps=state.due(),
            finished=state.finished,
            ledger_head=row.head_hash,
        )

    async def ledger(self, run_id: str, client: ClientRow | None) -> list[LedgerEntry]:
        async with self.db.read() as session:
            await self._readable_run(session, run_id, client)
            return await self._entries(session, run_id)

    async def verify_ledger(self, run_id: str, client: ClientRow | None) -> LedgerReport:
        """Recompute the run's chain and check that it ends at the head stored with the
        run (``runs.head_hash``/``head_seq``): entries cut from the end, or a ledger
        emptied, verify as a chain but not against the stored head. (A rewrite of the
        stored head too is caught only by a checkpoint kept outside the database.)"""
        async with self.db.read() as session:
            run = await self._readable_run(session, run_id, client)
            entries = await self._entries(session, run_id)
        if len(entries) > run.head_seq + 1:
            # Appended to after the run row was read (PostgreSQL reads each statement
            # afresh): the newer head must cover them, or they are not the IdP's.
            async with self.db.read() as session:
                run = await self._readable_run(session, run_id, client)
        if run.head_seq < 0:
            return verify_chain(entries, run_id=run_id, expected_head=GENESIS_HASH)
        stored = Anchor(
            source="head recorded for the run",
            seq=run.head_seq,
            entry_hash=run.head_hash,
            final=True,
        )
        return verify_chain(entries, run_id=run_id, anchors=[stored])
