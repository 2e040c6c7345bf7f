"""The IdP as a FastAPI application (DESIGN §6): HTTP parsing, authentication, proofs.

Every error leaves as an OAuth error body (``error``, ``error_description``, and the
A-JWT ``ajwt_reason``) with the right status; no input produces a 500 or a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import Scope

from ajwt_core._tasks import stop
from ajwt_core.dpop import (
    DEFAULT_FUTURE_LEEWAY,
    DEFAULT_MAX_AGE,
    BodyBinding,
    VerifiedProof,
    verify_proof,
)
from ajwt_core.errors import (
    AJWTError,
    InvalidClient,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidTarget,
    InvalidToken,
    Reason,
    ServerError,
    SlowDown,
    UnsupportedGrantType,
    UseDPoPNonce,
    oauth_text,
)
from ajwt_core.idp.boundary import ErrorBoundary, HeadAsGet, NoStore
from ajwt_core.idp.db import ClientRow, Database
from ajwt_core.idp.grants import (
    ACTOR_TOKEN_TYPES,
    AGENT_CHECKSUM_GRANT,
    DELEGATION_TOKEN_TYPE_URI,
    INTENT_TOKEN_TYPE_URI,
    OLD_AGENT_CHECKSUM_GRANT,
    SUBJECT_TOKEN_TYPES,
    TOKEN_EXCHANGE_GRANT,
)
from ajwt_core.idp.inventory import DEFAULT_PAGE, MAX_PAGE, client_view
from ajwt_core.idp.keystore import ReloadingKeys
from ajwt_core.idp.metrics import IdPMetrics
from ajwt_core.idp.models import (
    IDENTIFIER_PATTERN,
    MAX_CARRIED_COMPLETIONS,
    MAX_IDENTIFIER_LENGTH,
    AgentBatch,
    AgentPins,
    AgentPolicyChange,
    AgentRegistered,
    AgentRegistration,
    Approval,
    CarriedCompletions,
    ChecksumDecision,
    ClientCreated,
    ClientRegistration,
    ExchangeRequest,
    KeyRotation,
    MintRequest,
    Revocation,
    RunStart,
    RunStarted,
    RunStatus,
    TokenResponse,
    UserTokenRequest,
)
from ajwt_core.idp.observer import FORM_SCOPE_KEY, Observer, loggable
from ajwt_core.idp.outages import RETRY_AFTER_SECONDS, Outages, backend_of, first_line
from ajwt_core.idp.runs import ProvenCompletion, refused_outcome
from ajwt_core.idp.service import (
    ClientCredential,
    ExchangeParams,
    IdP,
    MintParams,
)
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.idp.strict_body import StrictJSONRoute
from ajwt_core.idp.throttle import FailureThrottle
from ajwt_core.idp.upstream import UpstreamProvider, check_upstream_settings
from ajwt_core.integrity import shim_checksum
from ajwt_core.keys import SigningKeySet
from ajwt_core.ledger import export_json
from ajwt_core.request_limits import RequestLimits
from ajwt_core.rs.stores import (
    AsyncReplayStore,
    MemoryReplayStore,
    RedisReplayStore,
    RedisRevocationPublisher,
)
from ajwt_core.strict_json import DuplicateKey, loads_unique
from ajwt_core.tokens import CLIENT_ASSERTION_ALGORITHMS, CLIENT_ASSERTION_TYPE_URI
from ajwt_core.workflow import MAX_WORKFLOW_VERSION, Workflow

log = logging.getLogger("ajwt_core.idp")

# Path and query ids are identifiers, bounded like the columns they are looked up in (a
# NUL byte or a non-ASCII id never reaches the database).
Id = Annotated[
    str, Path(min_length=1, max_length=MAX_IDENTIFIER_LENGTH, pattern=IDENTIFIER_PATTERN)
]
OptionalId = Annotated[
    str | None, Query(max_length=MAX_IDENTIFIER_LENGTH, pattern=IDENTIFIER_PATTERN)
]
Version = Annotated[int, Path(ge=1, le=MAX_WORKFLOW_VERSION)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_-]+$")]
ChecksumStatus = Annotated[
    str | None,
    Query(pattern=r"^(allowed|pending|revoked)$", description="allowed, pending or revoked"),
]
RunStateFilter = Annotated[str | None, Query(pattern=r"^(open|closed|revoked|intent_revoked)$")]
MAX_FORM_FIELDS = 32
#: How often expired client-assertion ``jti`` values are purged (seconds).
PURGE_INTERVAL: Final = 60.0
#: How long ``/readyz`` waits for each backend before calling it down (seconds).
READY_TIMEOUT: Final = 2.0
FormModel = TypeVar("FormModel", bound=BaseModel)


#: Where a refused DPoP proof is a 400 (RFC 9449 §5, §8: the token endpoint answers as
#: RFC 6749 §5.2 says); elsewhere the IdP answers it as a resource server does, 401.
TOKEN_ENDPOINT: Final = "/token"


def error_response(exc: AJWTError, *, token_endpoint: bool = False) -> JSONResponse:
    headers: dict[str, str] = {}
    status = exc.status_code
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if token_endpoint and isinstance(exc, InvalidDPoPProof | UseDPoPNonce):
        status = 400
    if status == 401:
        if isinstance(exc, InvalidClient):
            if exc.challenge is not None:
                headers["WWW-Authenticate"] = exc.challenge
        else:
            headers["WWW-Authenticate"] = f'DPoP error="{exc.error}", algs="ES256 EdDSA"'
    if isinstance(exc, SlowDown):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(
        exc.to_oauth(), status_code=status, headers=headers | {"Cache-Control": "no-store"}
    )


class AdminCredentialRequired(InvalidClient):
    """The administrator's bearer token is missing or wrong: challenged as Bearer."""

    challenge = 'Bearer realm="ajwt-admin"'


def create_app(settings: IdPSettings, *, replay: AsyncReplayStore | None = None) -> FastAPI:
    """Build the IdP application. Schema and keys are prepared on startup."""
    outages = Outages()
    db = Database(settings.db_url, outages=outages)
    keys: SigningKeySet | ReloadingKeys = settings.signing_keys or (
        ReloadingKeys(settings.key_file) if settings.key_file else SigningKeySet.generate()
    )
    check_upstream_settings(settings)
    # Fetched when a run start first needs its keys: the IdP starts while it is down.
    upstream = UpstreamProvider.from_settings(settings, outages)
    idp = IdP(settings, db, keys, upstream=upstream)
    # One replay store for every proof the IdP accepts; shared (Redis) across workers.
    proofs: AsyncReplayStore = replay or (
        RedisReplayStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
        if settings.redis_url
        else MemoryReplayStore()
    )
    if settings.redis_url:
        idp.revocations = RedisRevocationPublisher.from_url(
            settings.redis_url, prefix=settings.redis_prefix
        )
    accepted_shims = sorted({*settings.accepted_shim_checksums, shim_checksum()})
    admin_failures = settings.admin_throttle or FailureThrottle()
    replay_backend = "redis" if settings.redis_url and replay is None else "replay cache"
    metrics = IdPMetrics()
    # A client of its own for /readyz: a ping, never a key the IdP uses.
    redis_probe = _redis_probe(settings.redis_url) if settings.redis_url else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.create_schema()
        announcer = (
            asyncio.create_task(_announce_revocations(idp, settings.revocation_sync_interval))
            if idp.revocations is not None
            else None
        )
        housekeeping = asyncio.create_task(_purge_used_assertions(idp))
        yield
        await stop(*(t for t in (announcer, housekeeping) if t is not None))
        if redis_probe is not None:
            with contextlib.suppress(Exception):
                await redis_probe.aclose()
        await db.dispose()

    app = FastAPI(
        title="A-JWT IdP",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # No redirect of /token/ to /token: Starlette builds its Location from the
        # request's Host header, which the IdP never trusts (an open redirect).
        redirect_slashes=False,
    )
    # Every route's JSON body: UTF-8, no key twice in one object (before any route).
    app.router.route_class = StrictJSONRoute
    app.state.idp = idp

    # ------------------------------------------------------------- error mapping

    @app.exception_handler(AJWTError)
    async def on_ajwt_error(request: Request, exc: AJWTError) -> JSONResponse:
        # The matched route's path: the request's own may carry a root path (a prefix).
        route = request.scope.get("route")
        path = getattr(route, "path", None) or request.scope["path"]
        return error_response(exc, token_endpoint=path == TOKEN_ENDPOINT)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error_response(
            InvalidRequest(
                Reason.MALFORMED_REQUEST, f"invalid request: {where}: {first.get('msg', 'invalid')}"
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        found = exc.status_code == 404
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Every method the path has (RFC 9110 §10.2.1): Starlette names only those
            # of the first route that matched the path.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return JSONResponse(
            {
                "error": "not_found" if found else "invalid_request",
                "error_description": oauth_text(str(exc.detail)),
                "ajwt_reason": (
                    Reason.NOT_FOUND
                    if found
                    else Reason.REQUEST_TOO_LARGE
                    if exc.status_code == 413
                    else Reason.MALFORMED_REQUEST
                ).value,
            },
            status_code=exc.status_code,
            headers=headers | {"Cache-Control": "no-store"},
        )

    @app.exception_handler(ClientDisconnect)
    async def on_disconnect(_request: Request, _exc: ClientDisconnect) -> Response:
        # The client left mid-body (or the server's body deadline cut it off): there is
        # no one to answer, and nothing went wrong here worth a traceback.
        return Response(status_code=400)

    # Anything else (an outage the database layer did not translate, a bug) is answered
    # by the ErrorBoundary around the whole app, which keeps the connection usable.

    # ---------------------------------------------------------------- helpers

    def require_admin(request: Request) -> None:
        client = request.client.host if request.client else None
        admin_failures.check(client)  # a blocked address is refused before comparing
        scheme, _, value = _one_authorization(request).partition(" ")
        expected = settings.admin_token
        # Compared as bytes: compare_digest refuses non-ASCII str (a 500 before).
        if (
            not expected
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(
                value.encode("utf-8", "surrogateescape"),
                expected.encode("utf-8", "surrogateescape"),
            )
        ):
            admin_failures.failed(client)
            raise AdminCredentialRequired(
                Reason.CLIENT_AUTHENTICATION_FAILED, "administrator credential required"
            )
        admin_failures.succeeded(client)

    async def client_from_headers(request: Request) -> ClientRow:
        header = _one_authorization(request)
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            return await idp.authenticate(ClientCredential.from_basic(value.strip()))
        if scheme.lower() == "client-assertion":
            return await idp.authenticate(
                ClientCredential(client_id=None, assertion=value.strip(), in_header=True)
            )
        raise InvalidClient(
            Reason.CLIENT_AUTHENTICATION_FAILED, "client authentication is required"
        )

    async def checked_proof(
        proof: str,
        path: str,
        *,
        body: bytes | None = None,
        token: str | None = None,
        body_binding: BodyBinding = BodyBinding.REQUIRED,
    ) -> VerifiedProof:
        """A DPoP proof for ``POST <issuer><path>``, not seen before (RFC 9449 §11.1)."""
        verified = verify_proof(
            proof,
            method="POST",
            url=settings.issuer + path,
            token=token,
            body=body,
            body_binding=body_binding,
        )
        ttl = DEFAULT_MAX_AGE + DEFAULT_FUTURE_LEEWAY
        try:
            first = await proofs.first_use(
                f"{verified.jkt}:{verified.jti}", ttl, issued_at=verified.iat
            )
        except ServerError as exc:
            outages.down(replay_backend, exc)
            raise
        outages.up(replay_backend)
        if not first:
            raise InvalidDPoPProof(Reason.REPLAYED, "the proof has been used before")
        return verified

    async def header_proof(
        request: Request,
        path: str,
        *,
        body: bytes,
        token: str | None = None,
        body_binding: BodyBinding = BodyBinding.REQUIRED,
    ) -> VerifiedProof:
        values = request.headers.getlist("dpop")
        if len(values) != 1:
            raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "exactly one DPoP header is required")
        return await checked_proof(
            values[0], path, body=body, token=token, body_binding=body_binding
        )

    # --------------------------------------------------------------- operations

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers. No backend is called (a database outage must
        not get a healthy IdP restarted: it answers 503 meanwhile and recovers)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the database (and Redis, when configured) answer within
        :data:`READY_TIMEOUT`; else 503 naming the failing backends."""
        probes = {"database": lambda: db.fetch_one(_PING, {})}
        if redis_probe is not None:
            probes["redis"] = redis_probe.ping
        checks = {name: await _probe(probe) for name, probe in probes.items()}
        failing = [name for name, state in checks.items() if state != "ok"]
        if not failing:
            return JSONResponse({"status": "ready", "checks": checks})
        down = ServerError(
            Reason.SERVICE_UNAVAILABLE, f"not ready: {', '.join(failing)} unavailable"
        )
        answer = error_response(down)
        return JSONResponse(
            down.to_oauth() | {"status": "unavailable", "failing": failing, "checks": checks},
            status_code=503,
            headers={"Retry-After": answer.headers["retry-after"]},
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition (:mod:`ajwt_core.idp.metrics`)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # ---------------------------------------------------------------- discovery

    @app.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(idp.keys.jwks(), headers={"Cache-Control": "max-age=60"})

    @app.get("/.well-known/oauth-authorization-server")
    async def metadata() -> dict[str, Any]:
        """RFC 8414 metadata (validated by authlib's ``AuthorizationServerMetadata``)."""
        base = settings.issuer
        client_auth = ["client_secret_basic", "private_key_jwt"]
        client_algs = list(CLIENT_ASSERTION_ALGORITHMS)
        return {
            "issuer": base,
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            # REQUIRED and non-empty (authlib checks it), though there is no authorization
            # endpoint: "none" issues nothing there (OAuth Multiple Response Types §4).
            "response_types_supported": ["none"],
            "grant_types_supported": [AGENT_CHECKSUM_GRANT, TOKEN_EXCHANGE_GRANT],
            "token_endpoint_auth_methods_supported": client_auth,
            "token_endpoint_auth_signing_alg_values_supported": client_algs,
            "revocation_endpoint": f"{base}/revoke",
            "revocation_endpoint_auth_methods_supported": client_auth,
            "revocation_endpoint_auth_signing_alg_values_supported": client_algs,
            "introspection_endpoint": f"{base}/introspect",
            "introspection_endpoint_auth_methods_supported": client_auth,
            "introspection_endpoint_auth_signing_alg_values_supported": client_algs,
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "token_types_supported": [INTENT_TOKEN_TYPE_URI, DELEGATION_TOKEN_TYPE_URI],
            "ajwt_agent_registration_endpoint": f"{base}/agents",
            "ajwt_run_endpoint": f"{base}/runs",
            "ajwt_revocations_endpoint": f"{base}/revocations",
            "ajwt_shims_uri": f"{base}/.well-known/ajwt-shims",
            "ajwt_max_token_lifetime": settings.token_lifetime,
        }

    @app.get("/.well-known/ajwt-shims")
    async def shims() -> dict[str, Any]:
        return {"accepted": [f"sha256={c}" for c in accepted_shims]}

    # -------------------------------------------------------------------- admin

    @app.post("/admin/clients", status_code=201)
    async def register_client(request: Request, body: ClientRegistration) -> ClientCreated:
        require_admin(request)
        return await idp.register_client(body)

    @app.post("/admin/workflows", status_code=201)
    async def register_workflow(request: Request) -> dict[str, Any]:
        require_admin(request)
        # Parsed here, not by FastAPI: a JSON object with a repeated key (two steps with
        # one id) must be refused, not read as "the last one wins" (DESIGN §6.3).
        workflow = Workflow.from_json(await request.body())
        return await idp.register_workflow(workflow)

    @app.post("/admin/users/token")
    async def user_token(request: Request, body: UserTokenRequest) -> dict[str, Any]:
        require_admin(request)
        token = idp.issue_user_token(body.subject, body.lifetime)
        return {"access_token": token, "token_type": "Bearer", "expires_in": body.lifetime}

    @app.post("/admin/runs/{run_id}/steps/{step}/approve")
    async def approve(request: Request, run_id: Id, step: Id, body: Approval) -> dict[str, Any]:
        require_admin(request)
        return await idp.approve(run_id, step, body.approved_by)

    # Lists are pages: {"items": [...], "next": cursor | null}, "after" the cursor.

    @app.get("/admin/clients")
    async def list_clients(
        request: Request, limit: PageSize = DEFAULT_PAGE, after: Cursor = None
    ) -> dict[str, Any]:
        require_admin(request)
        page: dict[str, Any] = await idp.list_clients(limit=limit, after=after)
        return page

    @app.get("/admin/clients/{client_id}")
    async def show_client(request: Request, client_id: Id) -> dict[str, Any]:
        require_admin(request)
        return client_view(await idp.client_row(client_id))

    @app.put("/admin/clients/{client_id}/agent-policy")
    async def set_agent_policy(
        request: Request, client_id: Id, body: AgentPolicyChange
    ) -> dict[str, Any]:
        require_admin(request)
        return await idp.set_agent_policy(client_id, body.agent_policy)

    @app.get("/admin/clients/{client_id}/agents")
    async def list_agents(
        request: Request,
        client_id: Id,
        agent_id: OptionalId = None,
        status: ChecksumStatus = None,
        limit: PageSize = DEFAULT_PAGE,
        after: Cursor = None,
    ) -> dict[str, Any]:
        require_admin(request)
        return await idp.list_checksums(
            client_id, agent_id=agent_id, status=status, limit=limit, after=after
        )

    @app.post("/admin/clients/{client_id}/agents", status_code=201)
    async def pin_agents(request: Request, client_id: Id, body: AgentPins) -> dict[str, Any]:
        require_admin(request)
        return {"items": await idp.pin_agents(client_id, body.manifests, body.decided_by)}

    @app.post("/admin/clients/{client_id}/agents/approve")
    async def approve_agent(
        request: Request, client_id: Id, body: ChecksumDecision
    ) -> dict[str, Any]:
        require_admin(request)
        return await idp.approve_checksum(client_id, body.agent_id, body.checksum, body.decided_by)

    @app.post("/admin/clients/{client_id}/agents/revoke")
    async def revoke_agent(
        request: Request, client_id: Id, body: ChecksumDecision
    ) -> dict[str, Any]:
        require_admin(request)
        return await idp.revoke_checksum(client_id, body.agent_id, body.checksum, body.decided_by)

    @app.get("/admin/workflows")
    async def list_workflows(
        request: Request,
        workflow_id: OptionalId = None,
        limit: PageSize = DEFAULT_PAGE,
        after: Cursor = None,
    ) -> dict[str, Any]:
        require_admin(request)
        page: dict[str, Any] = await idp.list_workflows(
            workflow_id=workflow_id, limit=limit, after=after
        )
        return page

    @app.get("/admin/workflows/{workflow_id}")
    async def show_latest_workflow(request: Request, workflow_id: Id) -> dict[str, Any]:
        require_admin(request)
        workflow = await idp.workflow(workflow_id)
        return {"workflow": workflow.canonical(), "hash": workflow.workflow_hash}

    @app.get("/admin/workflows/{workflow_id}/{version}")
    async def show_workflow(request: Request, workflow_id: Id, version: Version) -> dict[str, Any]:
        require_admin(request)
        workflow = await idp.workflow(workflow_id, version)
        return {"workflow": workflow.canonical(), "hash": workflow.workflow_hash}

    @app.get("/admin/runs")
    async def list_runs(
        request: Request,
        client_id: OptionalId = None,
        workflow_id: OptionalId = None,
        state: RunStateFilter = None,
        limit: PageSize = DEFAULT_PAGE,
        after: Cursor = None,
    ) -> dict[str, Any]:
        require_admin(request)
        page: dict[str, Any] = await idp.list_runs(
            client_id=client_id, workflow_id=workflow_id, state=state, limit=limit, after=after
        )
        return page

    @app.get("/admin/runs/{run_id}")
    async def show_run(request: Request, run_id: Id) -> dict[str, Any]:
        require_admin(request)
        return await idp.run_details(run_id)

    # ------------------------------------------------------------------- agents

    @app.post("/agents", status_code=201)
    async def register_agent(request: Request, body: AgentRegistration) -> AgentRegistered:
        client = await client_from_headers(request)
        proof = await checked_proof(body.proof, "/agents")
        return (await idp.register_agents(client, [(body.manifest, proof, body.expires_in)]))[0]

    @app.post("/agents/batch", status_code=201)
    async def register_batch(request: Request, body: AgentBatch) -> list[AgentRegistered]:
        client = await client_from_headers(request)
        items = [
            (item.manifest, await checked_proof(item.proof, "/agents/batch"), item.expires_in)
            for item in body.agents
        ]
        return await idp.register_agents(client, items)

    @app.post("/agents/{registration_id}/rotate", status_code=201)
    async def rotate(request: Request, registration_id: Id, body: KeyRotation) -> AgentRegistered:
        client = await client_from_headers(request)
        proof = await checked_proof(body.proof, f"/agents/{registration_id}/rotate")
        return await idp.rotate_agent_key(
            client, registration_id, proof, body.expires_in, body.retire_previous
        )

    @app.get("/workflows/{workflow_id}/{version}")
    async def get_workflow(request: Request, workflow_id: Id, version: Version) -> dict[str, Any]:
        await client_from_headers(request)
        workflow = await idp.workflow(workflow_id, version)
        answer = {"workflow": workflow.canonical(), "hash": workflow.workflow_hash}
        if workflow.opaque_names:
            # The map a resource server keeps to read this workflow's tokens (DESIGN §5.1).
            answer["opaque_names"] = await idp.opaque_names(workflow)
        return answer

    # --------------------------------------------------------------------- runs

    @app.post("/runs", status_code=201)
    async def start_run(request: Request, body: RunStart) -> RunStarted:
        client = await client_from_headers(request)
        return await idp.start_run(client, body)

    @app.post("/runs/{run_id}/steps/{step}/complete")
    async def complete(request: Request, run_id: Id, step: Id) -> dict[str, Any]:
        client = await client_from_headers(request)
        tokens = request.headers.getlist("x-ajwt-token")
        if len(tokens) > 1:
            raise InvalidRequest(Reason.MALFORMED_REQUEST, "more than one X-AJWT-Token header")
        scheme, _, token = (tokens[0] if tokens else "").partition(" ")
        if scheme.lower() != "dpop" or not token:
            raise InvalidToken(Reason.MISSING_TOKEN, "the step's intent token is required")
        if not token.isascii():
            raise InvalidToken(Reason.MALFORMED_TOKEN, "the step's intent token is not a JWS")
        body = await request.body()
        path = f"/runs/{run_id}/steps/{step}/complete"
        proof = await header_proof(request, path, body=body, token=token)
        return await idp.complete_step(client, token, proof, run_id, step)

    @app.get("/runs/{run_id}/status")
    async def status(run_id: Id, registration_id: OptionalId = None) -> RunStatus:
        return await idp.status(run_id, registration_id)

    @app.get("/runs/{run_id}/ledger")
    async def ledger(request: Request, run_id: Id) -> Response:
        client = await _client_or_admin(request)
        entries = await idp.ledger(run_id, client)
        return Response(export_json(entries), media_type="application/json")

    @app.get("/runs/{run_id}/ledger/verify")
    async def verify_ledger(request: Request, run_id: Id) -> dict[str, Any]:
        client = await _client_or_admin(request)
        report = await idp.verify_ledger(run_id, client)
        return report.model_dump()

    async def _client_or_admin(request: Request) -> ClientRow | None:
        scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
        if scheme == "bearer":
            require_admin(request)
            return None
        return await client_from_headers(request)

    @app.post("/revocations")
    async def revocations(request: Request, body: Revocation) -> dict[str, Any]:
        """Revoke a run, an intent, an agent registration (a client: its own) or a
        client (the administrator only); answers ``revoked`` (false: no such id), and
        ``published`` only when revocations are published to Redis."""
        client = await _client_or_admin(request)
        return await idp.revoke(body.kind, body.id, client)

    @app.get("/revocations")
    async def revocation_feed(
        since: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    ) -> JSONResponse:
        """The revocation feed resource servers follow (``IdPFeedSource``): every live
        revocation, or, with ``since``, those since that ``version``. Unauthenticated, as
        run status is: a revoked id grants nothing."""
        feed = await idp.revocation_feed(since)
        return JSONResponse(feed, headers={"Cache-Control": "no-store"})

    @app.post("/revoke")
    async def revoke(request: Request) -> JSONResponse:
        """RFC 7009 token revocation: ``token`` (and an ignored ``token_type_hint``),
        form-encoded, client-authenticated; 200 whether or not the token was valid."""
        form = _parse_form(request, await request.body())
        client = await idp.authenticate(
            _form_credential(request, form, settings.issuer + "/revoke")
        )
        await idp.revoke_token(client, _required(form, "token"))
        return JSONResponse({})

    @app.post("/introspect")
    async def introspect(request: Request) -> dict[str, Any]:
        """RFC 7662 token introspection, client-authenticated (DESIGN §12)."""
        form = _parse_form(request, await request.body())
        credential = _form_credential(request, form, settings.issuer + "/introspect")
        client = await idp.authenticate(credential)
        return await idp.introspect(client, _required(form, "token"))

    # -------------------------------------------------------------------- token

    async def carrying(
        form: dict[str, str],
        client: ClientRow,
        run_id: str,
        grant: Callable[[], Awaitable[TokenResponse]],
    ) -> TokenResponse:
        """The grant, after the step completions the request carries (DESIGN §6.7): each
        checked as the completion endpoint checks it and recorded in a transaction of its
        own first; their outcomes (and the run events they recorded) join the answer."""
        if "completions" not in form:
            return await grant()
        outcomes, events = await carried_completions(form["completions"], client, run_id)
        answer = await grant()
        return answer.model_copy(
            update={
                "ajwt_completions": outcomes,
                "ajwt_run_events": events + answer.ajwt_run_events,
            }
        )

    async def carried_completions(
        text: str, client: ClientRow, run_id: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        try:
            # Read as the JSON bodies are: no key twice in one object.
            items = CarriedCompletions.validate_python(loads_unique(text))
        except DuplicateKey as exc:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                f"parameter 'completions' repeats the key {exc.key!r} in one object",
            ) from None
        except (ValidationError, ValueError, RecursionError):
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                "parameter 'completions' must be a JSON array of 1 to "
                f"{MAX_CARRIED_COMPLETIONS} objects with 'step', 'token' and 'proof'",
            ) from None
        outcomes: list[dict[str, Any] | None] = []
        proven: list[ProvenCompletion] = []
        for item in items:
            try:
                if not item.token.isascii():
                    raise InvalidToken(
                        Reason.MALFORMED_TOKEN, "the step's intent token is not a JWS"
                    )
                path = f"/runs/{run_id}/steps/{item.step}/complete"
                verified = await checked_proof(item.proof, path, body=b"", token=item.token)
                proven.append(
                    await idp.prove_completion(client, item.token, verified, run_id, item.step)
                )
                outcomes.append(None)
            except ServerError:
                raise
            except AJWTError as refusal:
                outcomes.append(refused_outcome(item.step, refusal))
        recorded, events = (
            await idp.record_completions(client, run_id, proven) if proven else ([], [])
        )
        answers = iter(recorded)
        return [outcome or next(answers) for outcome in outcomes], events

    @app.post("/token")
    async def token(request: Request) -> TokenResponse:
        body = await request.body()
        form = _parse_form(request, body)
        credential = _form_credential(request, form, settings.token_endpoint)
        client = await idp.authenticate(credential)
        grant = form.get("grant_type")
        _check_grant_type(grant)  # before the proof: the right error for a wrong grant
        # A standard RFC 9449 proof has no 'bh'; the shim's has, and it is checked.
        proof = await header_proof(request, "/token", body=body, body_binding=BodyBinding.OPTIONAL)
        if grant == AGENT_CHECKSUM_GRANT:
            mint = _mint_params(_form_model(MintRequest, form))
            return await carrying(form, client, mint.run_id, lambda: idp.mint(client, proof, mint))
        _one_of(form, "subject_token_type", SUBJECT_TOKEN_TYPES, required=True)
        _one_of(form, "actor_token_type", ACTOR_TOKEN_TYPES, required=True)
        requested = _one_of(form, "requested_token_type", SUBJECT_TOKEN_TYPES)
        exchange = _form_model(ExchangeRequest, form)
        params = ExchangeParams(
            mint=_mint_params(exchange),
            subject_token=exchange.subject_token,
            actor_token=exchange.actor_token,
            requested_token_type=requested or INTENT_TOKEN_TYPE_URI,
        )
        return await carrying(
            form, client, exchange.run_id, lambda: idp.exchange(client, proof, params)
        )

    _hot_routes_first(app)
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(HeadAsGet)
    app.add_middleware(NoStore)
    app.add_middleware(ErrorBoundary, outages=outages)
    # Outermost: it sees every answer, the boundary's 503s and the size limits' 413s too.
    app.add_middleware(Observer, metrics=metrics)
    return app


_PING = text("SELECT 1")
#: The routes an agent run calls, in the order they are tried first: the router matches
#: a request against each route in turn (a regex each), and these were declared last.
#: None of them overlaps another route, so the order decides nothing else.
_HOT_PATHS: Final = (
    "/token",
    "/runs/{run_id}/steps/{step}/complete",
    "/runs",
    "/revocations",
    "/runs/{run_id}/status",
    "/agents/batch",
)


def _hot_routes_first(app: FastAPI) -> None:
    """Move the routes of :data:`_HOT_PATHS` to the front (stable: the others, and the
    methods of one path, keep their order). The OpenAPI document still lists the paths
    in the order they are declared."""
    routes = app.router.routes
    declared = list(routes)
    rank = {path: index for index, path in enumerate(_HOT_PATHS)}
    routes.sort(key=lambda route: rank.get(getattr(route, "path", ""), len(rank)))
    build_openapi = app.openapi

    def openapi_in_declared_order() -> dict[str, Any]:
        # Synchronous, on the event loop: no request is routed while the list is swapped.
        if app.openapi_schema is None:
            serving = list(routes)
            routes[:] = declared
            try:
                build_openapi()
            finally:
                routes[:] = serving
        return app.openapi_schema or build_openapi()

    app.openapi = openapi_in_declared_order  # type: ignore[method-assign]


def _redis_probe(url: str) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(
        url, socket_timeout=READY_TIMEOUT, socket_connect_timeout=READY_TIMEOUT
    )


async def _probe(check: Callable[[], Awaitable[Any]]) -> str:
    """``ok``, or why the backend is taken as down (no exception text: it may quote
    a connection URL)."""
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT)
    except TimeoutError:
        return "timeout"
    except Exception:  # noqa: BLE001 - any failure of the backend means "not ready"
        return "unavailable"
    return "ok"


async def _purge_used_assertions(idp: IdP) -> None:
    """Forget expired client-assertion ``jti`` values now and then, never per request."""
    while True:
        try:
            await idp.purge_used_assertions()
        except ServerError:
            pass  # the database is down: Outages has said so once
        except Exception:
            log.exception("purging expired client assertions failed")
        await asyncio.sleep(PURGE_INTERVAL)


def _parse_form(request: Request, body: bytes) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, "this endpoint takes application/x-www-form-urlencoded"
        )
    try:
        parsed = parse_qs(
            body.decode("utf-8"),
            keep_blank_values=False,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "the form body cannot be parsed") from None
    form: dict[str, str] = {}
    for name, values in parsed.items():
        if len(values) != 1:
            # RFC 6749 §3.2: request parameters MUST NOT be included more than once.
            raise InvalidRequest(Reason.MALFORMED_REQUEST, f"parameter {name!r} is repeated")
        form[name] = values[0]
    # For the audit line (idp.observer), which would otherwise parse the body again.
    request.scope[FORM_SCOPE_KEY] = loggable(form)
    return form


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequest(Reason.MISSING_PARAMETER, f"parameter {name!r} is required")
    return value


def _one_of(
    form: dict[str, str], name: str, accepted: tuple[str, ...], *, required: bool = False
) -> str | None:
    value = form.get(name)
    if value is None:
        if required:
            raise InvalidRequest(Reason.MISSING_PARAMETER, f"parameter {name!r} is required")
        return None
    if value not in accepted:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, f"{name} must be one of: {', '.join(accepted)}"
        )
    return value


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods of every route whose path matches ``scope``'s."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")  # HeadAsGet answers it
    return sorted(methods)


def _check_grant_type(grant: str | None) -> None:
    """The token endpoint's two grants; anything else refused, never echoed."""
    if grant in (AGENT_CHECKSUM_GRANT, TOKEN_EXCHANGE_GRANT):
        return
    if grant is None:
        raise InvalidRequest(Reason.MISSING_PARAMETER, "parameter 'grant_type' is required")
    if grant == OLD_AGENT_CHECKSUM_GRANT:
        raise UnsupportedGrantType(
            Reason.UNSUPPORTED_GRANT_TYPE,
            f"grant_type 'agent_checksum' is now {AGENT_CHECKSUM_GRANT!r} (an absolute "
            "URI, RFC 6749 section 4.5): upgrade the shim",
        )
    raise UnsupportedGrantType(
        Reason.UNSUPPORTED_GRANT_TYPE,
        "this grant_type is not supported; the supported ones are "
        f"{AGENT_CHECKSUM_GRANT} and {TOKEN_EXCHANGE_GRANT}",
    )


def _one_authorization(request: Request) -> str:
    """The request's ``Authorization`` header ("" if none); two are refused, since which
    one counts would depend on the server."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "more than one Authorization header")
    return values[0] if values else ""


def _form_credential(request: Request, form: dict[str, str], endpoint: str) -> ClientCredential:
    """Client authentication of a form-encoded endpoint (token, revocation,
    introspection): ``client_secret_basic`` or a ``private_key_jwt`` assertion, whose
    ``aud`` may be the issuer, the token endpoint or ``endpoint`` (RFC 7523 §3)."""
    header = _one_authorization(request)
    scheme, _, value = header.partition(" ")
    in_form = [
        n for n in ("client_secret", "client_assertion", "client_assertion_type") if n in form
    ]
    if scheme.lower() == "basic":
        if in_form:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                f"the client authenticated with Basic and with {in_form[0]}: use one method "
                "(RFC 6749 section 2.3)",
            )
        credential = ClientCredential.from_basic(value.strip(), endpoint)
        if form.get("client_id", credential.client_id) != credential.client_id:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, "client_id is not the client that authenticated"
            )
        return credential
    if form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE_URI:
        return ClientCredential(
            client_id=form.get("client_id"),
            assertion=_required(form, "client_assertion"),
            endpoint=endpoint,
        )
    raise InvalidClient(Reason.CLIENT_AUTHENTICATION_FAILED, "client authentication is required")


def _form_model(model: type[FormModel], form: dict[str, str]) -> FormModel:
    """The form validated by ``model`` (the boundary types of ``idp.models``)."""
    try:
        return model.model_validate(form)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "form"
        if first["type"] == "missing":
            raise InvalidRequest(
                Reason.MISSING_PARAMETER, f"parameter {name!r} is required"
            ) from None
        if name == "resource":
            raise InvalidTarget(
                Reason.MALFORMED_REQUEST,
                "resource must be an absolute http(s) URI with no fragment (RFC 8707 section 2)",
            ) from None
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, f"parameter {name!r} is invalid: {first['msg']}"
        ) from None


def _mint_params(form: MintRequest) -> MintParams:
    return MintParams(
        agent_id=form.agent_id,
        agent_checksum=form.agent_checksum,
        run_id=form.run_id,
        step=form.step,
        tool=form.tool,
        resource=form.resource,
        scope=form.scope,
        input_digest=form.input_digest,
    )


async def _announce_revocations(idp: IdP, interval: float) -> None:
    """Keep Redis in step with the revocations in the database (DESIGN §12): republish
    them all on start and whenever Redis lost them, and publish those still pending."""
    force = True  # on start: Redis may hold less than the database (a restart, a crash)
    failing = False
    while True:
        try:
            await idp.announce_revocations(force=force)
        except Exception as exc:  # Redis or the database is down: retry on the next pass
            if not failing:
                # An outage is the backend's state, said in one line; anything else is a
                # bug worth its traceback.
                outage = backend_of(exc)
                log.warning(
                    "cannot announce revocations to Redis (%s: %s); retrying",
                    type(exc).__name__,
                    first_line(exc),
                    exc_info=outage is None,
                )
            failing = True
        else:
            if failing:
                log.warning("revocations announced to Redis again")
            force = failing = False
        await asyncio.sleep(interval)
