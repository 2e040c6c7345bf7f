"""The IdP's behaviour (DESIGN §6), independent of HTTP: the FastAPI layer parses requests,
authenticates the client and verifies the DPoP proof, then calls one method here.

Every refusal is an :class:`~ajwt_core.errors.AJWTError`; mint refusals for a run the client
owns are also appended to that run's ledger (``mint_refused``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import jwt
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm.attributes import set_committed_value

from ajwt_core.checksum import compute_checksum
from ajwt_core.dpop import VerifiedProof
from ajwt_core.errors import (
    AccessDenied,
    AJWTError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    LedgerError,
    NotFound,
    Reason,
    ServerError,
    UnauthorizedClient,
)
from ajwt_core.idp.db import (
    AgentRow,
    ClientRow,
    Database,
    DbSession,
    DelegationRow,
    LedgerRow,
    RevocationRow,
    RunRow,
    UsedAssertionRow,
    WorkflowRow,
    detached,
    execute_core,
)
from ajwt_core.idp.models import (
    AgentRegistered,
    ClientCreated,
    ClientRegistration,
    RunStart,
    RunStarted,
    RunStatus,
    TokenResponse,
    is_identifier,
)
from ajwt_core.idp.outages import backend_of
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import UPSTREAM_ALGORITHMS, KeyResolver, SigningKeySet, load_public_jwk
from ajwt_core.ledger import (
    GENESIS_HASH,
    Anchor,
    EntryKind,
    LedgerEntry,
    LedgerReport,
    chain_after,
    verify_chain,
)
from ajwt_core.rs.stores import Revoked
from ajwt_core.tokens import (
    DEFAULT_LEEWAY,
    AgentClaim,
    CheckpointClaims,
    Confirmation,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    decode_client_assertion,
    decode_delegation_assertion,
    decode_intent_token,
    decode_subject_token,
    encode_checkpoint,
    encode_intent_token,
    encode_user_token,
    format_scope,
    narrow_scope,
    parse_scope,
    token_hash,
)
from ajwt_core.tokens import (
    IntentTokenClaims as _Intent,
)
from ajwt_core.workflow import Workflow

INTENT_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:intent"
DELEGATION_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:delegation"
AGENT_CHECKSUM_GRANT = "agent_checksum"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE_URI = "urn:ietf:params:oauth:token-type:access_token"

log = logging.getLogger("ajwt_core.idp")


def _hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random values issued here, so a fast hash is enough
    # (there is nothing to brute-force); compared in constant time.
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


class RevocationPublisher(Protocol):
    """Where revocations are announced to resource servers (Redis: ``RedisRevocationPublisher``)."""

    #: How long an announcement lasts: revocations older than this need none.
    ttl: int

    async def publish(self, kind: str, ident: str) -> None: ...

    async def republish_if_lost(
        self, active: Callable[[], Awaitable[Iterable[Revoked]]], *, force: bool = False
    ) -> bool: ...


@dataclass(frozen=True)
class ClientCredential:
    """What the HTTP layer extracted: Basic credentials or an RFC 7523 assertion."""

    client_id: str | None
    secret: str | None = None
    assertion: str | None = None

    @classmethod
    def from_basic(cls, header_value: str) -> ClientCredential:
        from urllib.parse import unquote

        try:
            decoded = base64.b64decode(header_value, validate=True).decode()
            client_id, _, secret = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidClient(
                Reason.CLIENT_AUTHENTICATION_FAILED, "malformed Basic credentials"
            ) from None
        # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
        return cls(client_id=unquote(client_id), secret=unquote(secret))


@dataclass(frozen=True)
class MintParams:
    agent_id: str
    agent_checksum: str
    run_id: str
    step: str | None
    tool: str
    resource: str
    scope: str | None = None
    input_digest: str | None = None


@dataclass(frozen=True)
class ExchangeParams:
    mint: MintParams
    subject_token: str
    actor_token: str


@dataclass(frozen=True)
class _Delegated:
    chain: list[str]
    scope: str
    assertion_hash: str


@dataclass(frozen=True)
class _RunFacts:
    """What the mint checks need from a run's ledger, read in one query."""

    completed: set[str]
    approved: set[str]
    delegations: list[dict[str, Any]]

    def delegation_to(self, agent: str, step: str) -> _Delegated | None:
        for data in reversed(self.delegations):
            if data.get("to") == agent and data.get("to_step") == step:
                return _Delegated(
                    chain=list(data["chain"]),
                    scope=str(data["scope"]),
                    assertion_hash=str(data["assertion"]),
                )
        return None


class IdP:
    """The A-JWT authorisation server (DESIGN §6)."""

    def __init__(
        self,
        settings: IdPSettings,
        db: Database,
        keys: SigningKeySet | Callable[[], SigningKeySet],
        *,
        clock: Callable[[], float] = time.time,
        upstream_keys: KeyResolver | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._keys = keys
        self.clock = clock
        self.upstream_keys = upstream_keys or KeyResolver()
        self._workflows: dict[tuple[str, int], Workflow] = {}
        #: Where revocations are announced to resource servers (Redis), if anywhere.
        self.revocations: RevocationPublisher | None = None

    def now(self) -> int:
        return int(self.clock())

    @property
    def keys(self) -> SigningKeySet:
        """The signing keys (re-read from the key file when it changes)."""
        return self._keys if isinstance(self._keys, SigningKeySet) else self._keys()

    # ------------------------------------------------------------------ clients

    async def register_client(self, body: ClientRegistration) -> ClientCreated:
        client_id = body.client_id or "client-" + secrets.token_hex(8)
        secret: str | None = None
        if body.auth_method == "private_key_jwt":
            if not body.jwks or not KeyResolver.from_jwks(body.jwks).kids():
                raise InvalidRequest(
                    Reason.INVALID_KEY, "private_key_jwt needs a JWKS with a usable key and kid"
                )
        else:
            secret = secrets.token_urlsafe(32)
        for scope in body.scopes:
            if not scope or " " in scope:
                raise InvalidRequest(Reason.MALFORMED_REQUEST, "scopes must be non-empty tokens")
        row = ClientRow(
            client_id=client_id,
            secret_hash=_hash_secret(secret) if secret else None,
            jwks=body.jwks if body.auth_method == "private_key_jwt" else None,
            scopes=format_scope(body.scopes),
            shim_checksums=list(body.shim_checksums),
            allow_runtime_registration=body.allow_runtime_registration,
            created_at=self.now(),
        )
        try:
            async with self.db.transaction() as session:
                session.add(row)
        except IntegrityError:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, f"client {client_id!r} already exists"
            ) from None
        return ClientCreated(
            client_id=client_id,
            client_secret=secret,
            scopes=sorted(body.scopes),
            auth_method=body.auth_method,
        )

    async def authenticate(self, credential: ClientCredential | None) -> ClientRow:
        """Client authentication: ``client_secret_basic`` or ``private_key_jwt``."""
        failed = InvalidClient(Reason.CLIENT_AUTHENTICATION_FAILED, "client authentication failed")
        if credential is None:
            raise InvalidClient(
                Reason.CLIENT_AUTHENTICATION_FAILED, "client authentication is required"
            )
        client_id = credential.client_id
        if credential.assertion is not None and client_id is None:
            try:
                unverified = jwt.decode(credential.assertion, options={"verify_signature": False})
            except (jwt.PyJWTError, ValueError, RecursionError):
                raise failed from None
            issuer = unverified.get("iss") if isinstance(unverified, dict) else None
            client_id = issuer if isinstance(issuer, str) else None
        # Checked before the lookup: a client id is an identifier, and a NUL byte or an
        # unencodable character must not reach the database.
        if not client_id or not is_identifier(client_id):
            raise failed
        row = await self.db.fetch_one(_CLIENT, {"client_id": client_id})
        if row is None:
            raise failed
        client = detached(ClientRow, row)
        if credential.secret is not None:
            expected = client.secret_hash or ""
            if not hmac.compare_digest(_hash_secret(credential.secret), expected):
                raise failed
        elif credential.assertion is not None and client.jwks:
            await self._check_client_assertion(client, credential.assertion)
        else:
            raise failed
        if client.revoked_at is not None:
            raise InvalidClient(Reason.CLIENT_REVOKED, "the client has been revoked")
        return client

    async def _check_client_assertion(self, client: ClientRow, assertion: str) -> None:
        resolver = KeyResolver.from_jwks(client.jwks or {})
        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
        except (jwt.PyJWTError, ValueError, RecursionError):
            kid = None
        if kid is None and len(resolver) == 1:
            kid = next(iter(resolver.kids()))  # one registered key: no kid needed
        key = resolver.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidClient(Reason.UNKNOWN_KID, "the client assertion key is not registered")
        last_error: InvalidClient | None = None
        for audience in (self.settings.issuer, self.settings.token_endpoint):
            try:
                claims = decode_client_assertion(
                    assertion, key, client_id=client.client_id, audience=audience, now=self.clock()
                )
                break
            except InvalidClient as exc:
                last_error = exc
                if exc.reason != Reason.WRONG_AUDIENCE:
                    raise
        else:
            assert last_error is not None
            raise last_error
        try:
            async with self.db.transaction() as session:
                session.add(
                    UsedAssertionRow(
                        jti=claims.jti, client_id=client.client_id, expires_at=claims.exp
                    )
                )
        except IntegrityError:
            raise InvalidClient(
                Reason.REPLAYED, "the client assertion has been used before"
            ) from None

    # ---------------------------------------------------------------- workflows

    async def register_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        workflow = Workflow.from_mapping(definition)
        row = WorkflowRow(
            workflow_id=workflow.id,
            version=workflow.version,
            hash=workflow.workflow_hash,
            definition=workflow.canonical(),
            created_at=self.now(),
        )
        async with self.db.transaction() as session:
            existing = await session.get(WorkflowRow, (workflow.id, workflow.version))
            if existing is not None:
                if existing.hash != row.hash:
                    raise InvalidRequest(
                        Reason.INVALID_WORKFLOW,
                        f"workflow {workflow.id!r} version {workflow.version} is already "
                        "registered with other content; register a new version",
                    )
            else:
                session.add(row)
        return {"workflow_id": workflow.id, "version": workflow.version, "hash": row.hash}

    async def workflow(self, workflow_id: str, version: int | None = None) -> Workflow:
        """A registered workflow version (the latest without ``version``); immutable,
        so a version once read is served from memory."""
        if version is not None and (workflow_id, version) in self._workflows:
            return self._workflows[(workflow_id, version)]
        async with self.db.read() as session:
            stmt = select(WorkflowRow).where(WorkflowRow.workflow_id == workflow_id)
            if version is not None:
                stmt = stmt.where(WorkflowRow.version == version)
            row = (
                await session.execute(stmt.order_by(WorkflowRow.version.desc()).limit(1))
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(Reason.NOT_FOUND, f"no workflow {workflow_id!r} (version {version})")
        key = (row.workflow_id, row.version)
        if key not in self._workflows:
            self._workflows[key] = Workflow.from_mapping(row.definition)
        return self._workflows[key]

    # ------------------------------------------------------------------- agents

    async def register_agents(
        self,
        client: ClientRow,
        items: Sequence[tuple[dict[str, Any], VerifiedProof, int | None]],
        *,
        admin: bool = False,
    ) -> list[AgentRegistered]:
        """Register agents: the IdP recomputes each checksum from its manifest."""
        if not client.allow_runtime_registration and not admin:
            raise UnauthorizedClient(
                Reason.AGENT_NOT_REGISTERED,
                "this client's agents are registered by an administrator only",
            )
        now = self.now()
        results: list[AgentRegistered] = []
        async with self.db.transaction() as session:
            for manifest, proof, expires_in in items:
                checksum = compute_checksum(manifest)
                agent_id = str(manifest["agent_id"])
                version = await self._next_version(session, client.client_id, agent_id)
                lifetime = min(expires_in or self.settings.registration_lifetime, 30 * 24 * 3600)
                row = AgentRow(
                    registration_id="reg-" + secrets.token_hex(12),
                    client_id=client.client_id,
                    agent_id=agent_id,
                    version=version,
                    checksum=checksum,
                    manifest=manifest,
                    jwk=proof.jwk,
                    # The key's own algorithm: a JWK's optional "alg" member is the
                    # sender's text, of any length, and never what verifies anything.
                    alg=_alg_for_jwk(proof.jwk),
                    jkt=proof.jkt,
                    created_at=now,
                    expires_at=now + lifetime,
                )
                session.add(row)
                await session.flush()
                results.append(_registered(row))
        return results

    async def rotate_agent_key(
        self,
        client: ClientRow,
        registration_id: str,
        proof: VerifiedProof,
        expires_in: int | None,
        retire_previous: bool,
    ) -> AgentRegistered:
        """Register the agent's next key (same manifest, next version)."""
        now = self.now()
        async with self.db.transaction() as session:
            old = await session.get(AgentRow, registration_id)
            if old is None or old.client_id != client.client_id:
                raise NotFound(Reason.AGENT_NOT_REGISTERED, "no such agent registration")
            if old.revoked_at is not None:
                raise InvalidGrant(Reason.AGENT_REVOKED, "a revoked registration cannot rotate")
            version = await self._next_version(session, client.client_id, old.agent_id)
            row = AgentRow(
                registration_id="reg-" + secrets.token_hex(12),
                client_id=client.client_id,
                agent_id=old.agent_id,
                version=version,
                checksum=old.checksum,
                manifest=old.manifest,
                jwk=proof.jwk,
                alg=_alg_for_jwk(proof.jwk),
                jkt=proof.jkt,
                created_at=now,
                expires_at=now + (expires_in or self.settings.registration_lifetime),
            )
            session.add(row)
            if retire_previous:
                old.expires_at = min(old.expires_at, now)
            await session.flush()
            return _registered(row)

    async def _next_version(self, session: DbSession, client_id: str, agent_id: str) -> int:
        current = (
            await session.execute(
                select(func.max(AgentRow.version)).where(
                    AgentRow.client_id == client_id, AgentRow.agent_id == agent_id
                )
            )
        ).scalar_one_or_none()
        return (current or 0) + 1

    # --------------------------------------------------------------------- runs

    def issue_user_token(self, subject: str, lifetime: int) -> str:
        """A local user access token (embedded mode: no upstream IdP needed)."""
        if not self.settings.local_users:
            raise AccessDenied(
                Reason.LOCAL_USERS_DISABLED, "this IdP takes user tokens from its upstream issuer"
            )
        return encode_user_token(
            subject,
            self.keys.active,
            issuer=self.settings.issuer,
            audience=self.settings.issuer,
            lifetime=lifetime,
            now=self.now(),
        )

    def verify_subject_token(self, token: str) -> str:
        """The user (``sub``) whose intent roots a run: local or upstream issuer."""
        errors: list[AJWTError] = []
        if self.settings.local_users:
            try:
                return decode_subject_token(
                    token,
                    self.keys.verification_keys(),
                    issuer=self.settings.issuer,
                    audience=self.settings.issuer,
                    algorithms=("ES256", "EdDSA"),
                    now=self.clock(),
                ).sub
            except AJWTError as exc:
                errors.append(exc)
        if self.settings.upstream_issuer:
            try:
                return decode_subject_token(
                    token,
                    self.upstream_keys,
                    issuer=self.settings.upstream_issuer,
                    audience=self.settings.upstream_audience or self.settings.issuer,
                    algorithms=UPSTREAM_ALGORITHMS,
                    now=self.clock(),
                ).sub
            except AJWTError as exc:
                errors.append(exc)
        if errors:
            # Report the most specific failure (the last issuer tried that knew the key).
            specific = [e for e in errors if e.reason != Reason.UNKNOWN_KID] or errors
            raise InvalidGrant(specific[-1].reason, f"subject token refused: {specific[-1]}")
        raise InvalidGrant(Reason.MALFORMED_REQUEST, "no subject-token issuer is configured")

    async def start_run(self, client: ClientRow, body: RunStart) -> RunStarted:
        subject = self.verify_subject_token(body.subject_token)
        workflow = await self.workflow(body.workflow_id, body.workflow_version)
        now = self.now()
        run = RunRow(
            run_id="run-" + secrets.token_hex(12),
            intent_id="intent-" + secrets.token_hex(12),
            client_id=client.client_id,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            subject=subject,
            intent=body.intent,
            state="open",
            created_at=now,
            head_seq=-1,
            head_hash=GENESIS_HASH,
        )
        async with self.db.transaction() as session:
            session.add(run)
            await session.flush()
            entry = await self._append(
                session,
                run,
                EntryKind.RUN_STARTED,
                {
                    "intent_id": run.intent_id,
                    "client_id": client.client_id,
                    "initiated_by": subject,
                    "workflow_id": workflow.id,
                    "workflow_version": workflow.version,
                    "workflow_hash": workflow.workflow_hash,
                    "intent": body.intent,
                },
                now,
            )
        return RunStarted(
            run_id=run.run_id,
            intent_id=run.intent_id,
            initiated_by=subject,
            workflow=workflow.canonical(),
            workflow_hash=workflow.workflow_hash,
            ledger_head=entry.entry_hash,
            ledger_checkpoint=self.checkpoint(entry),
        )

    # --------------------------------------------------------------------- mint

    async def mint(self, client: ClientRow, proof: VerifiedProof, p: MintParams) -> TokenResponse:
        """``grant_type=agent_checksum``: the checks of DESIGN §6.5, in order."""
        return await self._recording_refusals(client, p.run_id, p, self._mint(client, proof, p))

    async def exchange(
        self, client: ClientRow, proof: VerifiedProof, p: ExchangeParams
    ) -> TokenResponse:
        """RFC 8693 token exchange: a delegator-signed hand-off to the calling agent."""
        return await self._recording_refusals(
            client, p.mint.run_id, p.mint, self._exchange(client, proof, p)
        )

    async def _recording_refusals(
        self, client: ClientRow, run_id: str, p: MintParams, work: Any
    ) -> TokenResponse:
        try:
            result: TokenResponse = await work
            return result
        except ServerError:
            raise  # an outage is not a refusal, and the ledger is out of reach anyway
        except AJWTError as exc:
            await self._record_refusal(client, run_id, p, exc)
            raise

    async def _record_refusal(
        self, client: ClientRow, run_id: str, p: MintParams, exc: AJWTError
    ) -> None:
        # Only runs of the authenticated client are written to: an outsider cannot
        # fill someone else's ledger with refusals.
        async with self.db.transaction() as session:
            try:
                run = await self.db.lock_run(session, run_id)
            except NotFound:
                return
            if run.client_id != client.client_id:
                return
            await self._append(
                session,
                run,
                EntryKind.MINT_REFUSED,
                {
                    "agent": p.agent_id,
                    "step": p.step,
                    "tool": p.tool,
                    "error": exc.error,
                    "reason": exc.reason.value,
                },
                self.now(),
            )

    async def _mint(
        self,
        client: ClientRow,
        proof: VerifiedProof,
        p: MintParams,
        delegation: Callable[[DbSession, RunRow, Workflow, str], Any] | None = None,
    ) -> TokenResponse:
        now = self.now()
        async with self.db.transaction() as session:
            # 1. client: authenticated by the caller, revocation checked there.
            # 2.–4. agent registered and unexpired, checksum, PoP key.
            agent = await self._registration(session, client, p, proof, now)
            # 5. run open, not revoked.
            run = await self._open_run(session, client, p.run_id)
            workflow = await self.workflow(run.workflow_id, run.workflow_version)
            facts = await self._facts(session, run.run_id)
            step = p.step or workflow.step_for(p.agent_id, p.tool, facts.completed)
            # The hand-off (token exchange) is checked here, after the run and before
            # the step checks, and fixes the chain and the delegated scope bound.
            delegated: _Delegated | None
            if delegation is not None:
                delegated = await delegation(session, run, workflow, step)
            else:
                delegated = facts.delegation_to(p.agent_id, step)
            # 6.–9. step exists, caller is its agent, tool allowed, deps, approval.
            step_def = workflow.check_step_call(
                step, p.agent_id, p.tool, facts.completed, facts.approved
            )
            # 10. scope narrowing: step ∩ client grant ∩ delegator (T9).
            bounds: list[Any] = [step_def.scopes, parse_scope(client.scopes)]
            if delegated is not None:
                bounds.append(parse_scope(delegated.scope))
            granted = narrow_scope(p.scope, *bounds)
            if step_def.scopes and not granted:
                raise InvalidScope(
                    Reason.SCOPE_EXCEEDED,
                    f"the client's grant covers none of step {step!r}'s scopes",
                )
            # 11. mint, append to ledger, one transaction.
            chain = delegated.chain if delegated else [p.agent_id]
            jti = secrets.token_urlsafe(16)
            exp = now + self.settings.token_lifetime
            entry = await self._append(
                session,
                run,
                EntryKind.TOKEN_MINTED,
                {
                    "jti": jti,
                    "agent": p.agent_id,
                    "registration_id": agent.registration_id,
                    "step": step,
                    "tool": p.tool,
                    "chain": chain,
                    "scope": format_scope(granted),
                    "aud": p.resource,
                    "exp": exp,
                },
                now,
            )
            claims = IntentTokenClaims(
                iss=self.settings.issuer,
                aud=p.resource,
                sub=run.subject,
                client_id=client.client_id,
                scope=format_scope(granted),
                iat=now,
                nbf=now,
                exp=exp,
                jti=jti,
                cnf=Confirmation(jkt=agent.jkt),
                act=build_act_chain(chain),
                agent=AgentClaim(
                    id=agent.agent_id,
                    checksum=agent.checksum,
                    registration_id=agent.registration_id,
                    version=agent.version,
                ),
                intent=IntentClaim(
                    id=run.intent_id,
                    initiated_by=run.subject,
                    workflow_id=workflow.id,
                    workflow_version=workflow.version,
                    workflow_hash=workflow.workflow_hash,
                    run_id=run.run_id,
                    step=step,
                    tool=p.tool,
                    step_sequence_hash=entry.entry_hash,
                    delegation=delegated.assertion_hash if delegated else None,
                    input_digest=p.input_digest,
                ),
            )
            token = encode_intent_token(claims, self.keys.active)
        return TokenResponse(
            access_token=token,
            expires_in=exp - now,
            scope=claims.scope,
            issued_token_type=INTENT_TOKEN_TYPE_URI if delegation else None,
            ledger_checkpoint=self.checkpoint(entry),
        )

    async def _registration(
        self,
        session: DbSession,
        client: ClientRow,
        p: MintParams,
        proof: VerifiedProof,
        now: int,
    ) -> AgentRow:
        result = await execute_core(
            session, _REGISTRATIONS, {"client_id": client.client_id, "agent_id": p.agent_id}
        )
        rows = [detached(AgentRow, row) for row in result]
        if not rows:
            raise InvalidGrant(
                Reason.AGENT_NOT_REGISTERED, f"agent {p.agent_id!r} is not registered"
            )
        live = [r for r in rows if r.revoked_at is None]
        if not live:
            raise InvalidGrant(Reason.AGENT_REVOKED, f"agent {p.agent_id!r} has been revoked")
        live = [r for r in live if r.expires_at > now]
        if not live:
            raise InvalidGrant(
                Reason.AGENT_REGISTRATION_EXPIRED, f"agent {p.agent_id!r}'s registration expired"
            )
        wanted = p.agent_checksum.encode()
        matching = [r for r in live if hmac.compare_digest(r.checksum.encode(), wanted)]
        if not matching:
            raise InvalidGrant(
                Reason.CHECKSUM_MISMATCH,
                f"agent {p.agent_id!r}'s runtime checksum differs from its registration",
            )
        keyed = [r for r in matching if r.jkt == proof.jkt]
        if not keyed:
            raise InvalidGrant(
                Reason.POP_KEY_MISMATCH,
                "the DPoP proof is not signed by the agent's registered key",
            )
        return keyed[0]

    async def _open_run(self, session: DbSession, client: ClientRow, run_id: str) -> RunRow:
        try:
            run = await self.db.lock_run(session, run_id)
        except NotFound:
            run = None
        if run is None or run.client_id != client.client_id:
            raise InvalidGrant(Reason.RUN_NOT_FOUND, "no such run for this client")
        if run.state == "revoked":
            raise InvalidGrant(Reason.RUN_REVOKED, "the run has been revoked")
        if run.state == "intent_revoked":
            raise InvalidGrant(Reason.INTENT_REVOKED, "the run's intent has been revoked")
        if run.state != "open":
            raise InvalidGrant(Reason.RUN_CLOSED, "the run is closed")
        return run

    async def _facts(self, session: DbSession, run_id: str) -> _RunFacts:
        rows = sorted((await execute_core(session, _RUN_FACTS, {"run_id": run_id})).all())
        completed: set[str] = set()
        approved: set[str] = set()
        delegations: list[dict[str, Any]] = []
        for _, kind, data in rows:
            if kind == EntryKind.STEP_COMPLETED:
                completed.add(str(data["step"]))
            elif kind == EntryKind.STEP_APPROVED:
                approved.add(str(data["step"]))
            else:
                delegations.append(data)
        return _RunFacts(completed=completed, approved=approved, delegations=delegations)

    # ------------------------------------------------------------------ exchange

    async def _exchange(
        self, client: ClientRow, proof: VerifiedProof, p: ExchangeParams
    ) -> TokenResponse:
        try:
            parent = decode_intent_token(
                p.subject_token,
                self.keys.verification_keys(),
                issuer=self.settings.issuer,
                audience=None,
                now=self.clock(),
            )
        except AJWTError as exc:
            raise InvalidGrant(exc.reason, f"subject token refused: {exc}") from None
        if parent.intent.run_id != p.mint.run_id or parent.client_id != client.client_id:
            raise InvalidGrant(
                Reason.PARENT_TOKEN_MISMATCH, "the subject token belongs to another run or client"
            )

        async def delegation(
            session: DbSession, run: RunRow, workflow: Workflow, step: str
        ) -> _Delegated:
            return await self._check_delegation(session, run, workflow, step, parent, p)

        return await self._mint(client, proof, p.mint, delegation)

    async def _check_delegation(
        self,
        session: DbSession,
        run: RunRow,
        workflow: Workflow,
        step: str,
        parent: _Intent,
        p: ExchangeParams,
    ) -> _Delegated:
        delegator = await session.get(AgentRow, parent.agent.registration_id)
        if delegator is None or delegator.jkt != parent.cnf.jkt:
            raise InvalidGrant(
                Reason.PARENT_TOKEN_MISMATCH, "the delegator's registration does not match"
            )
        if delegator.revoked_at is not None:
            raise InvalidGrant(Reason.AGENT_REVOKED, "the delegator has been revoked")
        key = load_public_jwk(delegator.jwk, delegator.alg)
        assertion = decode_delegation_assertion(
            p.actor_token, key, audience=self.settings.issuer, now=self.clock()
        )
        if assertion.parent != token_hash(p.subject_token):
            raise InvalidGrant(
                Reason.PARENT_TOKEN_MISMATCH, "the assertion was signed for another parent token"
            )
        if (
            assertion.run_id != run.run_id
            or assertion.intent_id != run.intent_id
            or assertion.from_step != parent.intent.step
            or assertion.iss != f"agent:{parent.agent.id}"
        ):
            raise InvalidGrant(
                Reason.INVALID_DELEGATION, "the assertion does not match the delegator's token"
            )
        if assertion.sub != f"agent:{p.mint.agent_id}":
            raise InvalidGrant(Reason.DELEGATE_MISMATCH, "the assertion delegates to another agent")
        if assertion.to_step != step:
            raise InvalidGrant(Reason.INVALID_DELEGATION, "the assertion delegates another step")
        workflow.check_delegation_edge(assertion.from_step, assertion.to_step, p.mint.agent_id)
        # The delegator cannot hand on more than the step allows (T9).
        narrow_scope(assertion.scope, workflow.step(step).scopes)
        chain = [*parent.chain, p.mint.agent_id]
        assertion_hash = token_hash(p.actor_token)
        entry = await self._append(
            session,
            run,
            EntryKind.DELEGATION,
            {
                "from": parent.agent.id,
                "to": p.mint.agent_id,
                "from_step": assertion.from_step,
                "to_step": assertion.to_step,
                "scope": assertion.scope,
                "chain": chain,
                "assertion": assertion_hash,
                "parent": assertion.parent,
            },
            self.now(),
        )
        session.add(
            DelegationRow(
                jti=f"{delegator.jkt}:{assertion.jti}",
                run_id=run.run_id,
                assertion_hash=assertion_hash,
                seq=entry.seq,
                created_at=self.now(),
            )
        )
        try:
            await session.flush()
        except IntegrityError:
            raise InvalidGrant(
                Reason.REPLAYED, "the delegation assertion has been used before"
            ) from None
        return _Delegated(chain=chain, scope=assertion.scope, assertion_hash=assertion_hash)

    # ------------------------------------------------------------- completion

    async def complete_step(
        self, client: ClientRow, token: str, proof: VerifiedProof, run_id: str, step: str
    ) -> dict[str, Any]:
        """Record a step as completed, proven by its agent's key and token (DESIGN §6.7)."""
        claims = decode_intent_token(
            token,
            self.keys.verification_keys(),
            issuer=self.settings.issuer,
            audience=None,
            now=self.clock(),
        )
        if proof.jkt != claims.cnf.jkt:
            raise InvalidGrant(Reason.KEY_NOT_BOUND, "the proof is not by the token's agent key")
        if claims.intent.run_id != run_id or claims.intent.step != step:
            raise InvalidGrant(Reason.INVALID_CLAIM, "the token is for another run or step")
        if claims.client_id != client.client_id:
            raise InvalidGrant(Reason.RUN_NOT_FOUND, "no such run for this client")
        async with self.db.transaction() as session:
            run = await self._open_run(session, client, run_id)
            if step in (await self._facts(session, run.run_id)).completed:
                return {"run_id": run_id, "step": step, "already_completed": True}
            entry = await self._append(
                session,
                run,
                EntryKind.STEP_COMPLETED,
                {"step": step, "agent": claims.agent.id, "jti": claims.jti},
                self.now(),
            )
        return {
            "run_id": run_id,
            "step": step,
            "ledger_head": entry.entry_hash,
            "ledger_checkpoint": self.checkpoint(entry),
        }

    async def approve(self, run_id: str, step: str, approved_by: str) -> dict[str, Any]:
        """Grant the approval a step requires; recorded in the run's ledger."""
        async with self.db.transaction() as session:
            run = await self.db.lock_run(session, run_id)
            workflow = await self.workflow(run.workflow_id, run.workflow_version)
            workflow.step(step)
            if step not in (await self._facts(session, run_id)).approved:
                await self._append(
                    session,
                    run,
                    EntryKind.STEP_APPROVED,
                    {"step": step, "approved_by": approved_by},
                    self.now(),
                )
        return {"run_id": run_id, "step": step, "approved_by": approved_by}

    # ---------------------------------------------------------------- revocation

    async def revoke(self, kind: str, ident: str, client: ClientRow | None) -> dict[str, Any]:
        """Revoke a run, an intent, an agent registration or (admin only) a client.

        ``client`` is None for the administrator; a client may revoke only its own
        runs, intents and registrations. Unknown ids answer as success (RFC 7009 §2.2).
        Committed first (with a ``revocations`` row), then announced (Redis), so a
        resource server never learns of a revocation the IdP could still lose. If the
        announcement fails, the answer still says ``revoked`` (it is, at the IdP: no
        token is minted for it any more) with ``published: false``, and
        :meth:`announce_revocations` publishes it as soon as Redis answers.
        """
        result = await self._revoke(kind, ident, client)
        if result["revoked"] and self.revocations is not None:
            result["published"] = await self._publish(self.revocations, kind, ident)
        return result

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
                await _record_revocation(session, kind, ident, now)
                return {"revoked": True}
            if kind == "agent":
                agent = await session.get(AgentRow, ident)
                if agent is None or (client and agent.client_id != client.client_id):
                    return {"revoked": False}
                agent.revoked_at = agent.revoked_at or now
                await _record_revocation(session, kind, ident, now)
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
                await _record_revocation(session, kind, ident, now)
                return {"revoked": True}
        raise InvalidRequest(Reason.MALFORMED_REQUEST, f"cannot revoke a {kind!r}")

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

    async def purge_used_assertions(self) -> int:
        """Forget client-assertion ``jti`` values that can no longer be replayed.

        An assertion is accepted until ``exp`` plus the clock leeway, so its ``jti`` is
        kept that long and deleted after; run periodically (not per request) by the app.
        Returns how many were deleted.
        """
        cutoff = self.now() - DEFAULT_LEEWAY - 1
        async with self.db.transaction() as session:
            result = await execute_core(session, _PURGE_ASSERTIONS, {"cutoff": cutoff})
        return int(result.rowcount or 0)

    async def status(self, run_id: str, registration_id: str | None) -> RunStatus:
        """What a resource server needs to honour revocation (DESIGN §6.9, §7.6)."""
        async with self.db.read() as session:
            run = await session.get(RunRow, run_id)
            if run is None:
                raise NotFound(Reason.RUN_NOT_FOUND, "no such run")
            client = await session.get(ClientRow, run.client_id)
            registration_active: bool | None = None
            if registration_id is not None:
                agent = await session.get(AgentRow, registration_id)
                registration_active = bool(
                    agent and agent.revoked_at is None and agent.client_id == run.client_id
                )
            completed = (await self._facts(session, run_id)).completed
            head = run.head_hash
        client_active = client is not None and client.revoked_at is None
        return RunStatus(
            run_id=run.run_id,
            intent_id=run.intent_id,
            state=run.state,
            active=run.state == "open" and client_active,
            registration_active=registration_active,
            client_active=client_active,
            completed_steps=sorted(completed),
            ledger_head=head,
        )

    # ------------------------------------------------------------------- ledger

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
        """Append to the run's ledger; ``run`` must be locked (or flushed new) in this session.

        Two Core statements, not the ORM unit of work (which cost most of a mint's commit):
        an UPDATE of the run's head that only matches the head this entry was chained
        onto, so an append that raced another one is refused instead of forking the
        chain, then the entry's INSERT.
        """
        entry = chain_after(run.head_seq, run.head_hash, run.run_id, kind, at, data)
        moved = await execute_core(
            session,
            _MOVE_HEAD,
            {
                "run": run.run_id,
                "old_seq": run.head_seq,
                "old_hash": run.head_hash,
                "new_seq": entry.seq,
                "new_hash": entry.entry_hash,
            },
        )
        if moved.rowcount != 1:
            raise LedgerError(Reason.LEDGER_BROKEN, "the run's ledger head moved during the append")
        await execute_core(
            session,
            _INSERT_ENTRY,
            {
                "run_id": entry.run_id,
                "seq": entry.seq,
                "kind": entry.kind.value,
                "at": entry.at,
                "data": entry.data,
                "prev_hash": entry.prev_hash,
                "entry_hash": entry.entry_hash,
            },
        )
        # The row now holds the new head; record it on the object without making it dirty.
        set_committed_value(run, "head_seq", entry.seq)
        set_committed_value(run, "head_hash", entry.entry_hash)
        return entry


# Statements of the mint path, built once (SQLAlchemy then reuses their compiled form).
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
_PURGE_ASSERTIONS = delete(cast(Table, UsedAssertionRow.__table__)).where(
    UsedAssertionRow.expires_at < bindparam("cutoff")
)
# Core selects whose rows become detached objects: no identity map, no unit of work.
_CLIENT = select(cast(Table, ClientRow.__table__)).where(
    ClientRow.client_id == bindparam("client_id")
)
_REGISTRATIONS = (
    select(
        AgentRow.registration_id,
        AgentRow.agent_id,
        AgentRow.version,
        AgentRow.checksum,
        AgentRow.jkt,
        AgentRow.expires_at,
        AgentRow.revoked_at,
    )
    .where(AgentRow.client_id == bindparam("client_id"), AgentRow.agent_id == bindparam("agent_id"))
    .order_by(AgentRow.version.desc())
)
# No ORDER BY: sorting by seq in SQL makes the planner walk the primary key, i.e. the
# run's whole ledger, instead of the (run_id, kind) index; the few rows sort in Python.
_RUN_FACTS = select(LedgerRow.seq, LedgerRow.kind, LedgerRow.data).where(
    LedgerRow.run_id == bindparam("run_id"),
    LedgerRow.kind.in_(
        [
            EntryKind.STEP_COMPLETED.value,
            EntryKind.STEP_APPROVED.value,
            EntryKind.DELEGATION.value,
        ]
    ),
)


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


@dataclass(frozen=True)
class _Revocation(Revoked):
    pending: bool = False


async def _record_revocation(session: DbSession, kind: str, ident: str, now: int) -> None:
    """The revocation's row, in the revoking transaction; pending until announced."""
    row = await session.get(RevocationRow, (kind, ident))
    if row is None:
        session.add(RevocationRow(kind=kind, ident=ident, revoked_at=now, published_at=None))
    else:
        row.published_at = None  # revoked again: announce it again


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


def _registered(row: AgentRow) -> AgentRegistered:
    return AgentRegistered(
        registration_id=row.registration_id,
        agent_id=row.agent_id,
        checksum=row.checksum,
        version=row.version,
        jkt=row.jkt,
        expires_at=row.expires_at,
    )


def _alg_for_jwk(jwk: dict[str, Any]) -> str:
    return "EdDSA" if jwk.get("kty") == "OKP" else "ES256"
