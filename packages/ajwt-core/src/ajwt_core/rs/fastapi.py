"""FastAPI integration, shaped like ``fastapi.security``: a dependency per route.

>>> from fastapi import FastAPI, Security
>>> from ajwt_core.keys import SigningKeySet
>>> app = FastAPI()
>>> verifier = Verifier(issuer="https://idp.example", audience="https://api.example",
...                     keys=SigningKeySet.generate().verification_keys())
>>> install(app, verifier)
>>> @app.get("/repos")
... async def repos(claims=Security(require_intent(scopes=["repo:read"]))):
...     return {"agent": claims.agent.id}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence

from ajwt_core._extras import needs_extra

with needs_extra("rs", "ajwt_core.rs.fastapi"):
    from fastapi import FastAPI, Request, Response
    from starlette.requests import ClientDisconnect

from ajwt_core.dpop import BodyBinding
from ajwt_core.errors import AJWTError, InvalidRequest, Reason
from ajwt_core.request_limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, RequestLimits
from ajwt_core.rs.middleware import CloseVerifierOnShutdown
from ajwt_core.rs.origins import AllowedOrigins
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.verifier import VerifiedRequest, Verifier, refusal_response
from ajwt_core.tokens import IntentTokenClaims

STATE_KEY = "ajwt_verifier"
ORIGINS_KEY = "ajwt_origins"


def install(
    app: FastAPI,
    verifier: Verifier,
    *,
    base_url: str | Sequence[str] | None = None,
    trusted_proxies: Collection[str] = (),
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    redirect_slashes: bool = False,
) -> None:
    """Attach the verifier to ``app`` and map A-JWT errors to RFC 6750/9449 responses.

    ``base_url`` and ``trusted_proxies`` are :class:`~ajwt_core.rs.AJWTMiddleware`'s: the
    public origin(s) checked against ``Host`` and the proof's ``htu`` (default: the
    verifier's ``audience``; a ``ValueError`` if that is not an http(s) origin).

    ``max_body_bytes`` and ``max_header_bytes`` bound every request of the app (413 and
    431 with an OAuth error body, before anything reads it:
    :class:`~ajwt_core.request_limits.RequestLimits`): ``require_intent`` reads the body
    to check the proof's ``bh``, and without a bound one request could make the server
    hold any amount of memory. Raise them for an app that takes large uploads;
    ``max_body_bytes=None`` leaves both to the app (FastAPI's own ``max_body_size``, a
    proxy in front). Call ``install`` when the app is built, before it starts. The
    verifier is closed (:meth:`Verifier.aclose`) when the server shuts the app down.

    ``redirect_slashes``: Starlette answers ``/repos/`` with a redirect to ``/repos``
    whose ``Location`` it builds from the request's ``Host`` header, before any route or
    check runs (a foreign host in the answer, and in caches in front of it); ``install``
    turns that off (a 404) unless this is ``True``.
    """
    origins = AllowedOrigins.of(verifier.audience, base_url, trusted_proxies)
    setattr(app.state, STATE_KEY, verifier)
    setattr(app.state, ORIGINS_KEY, origins)
    app.router.redirect_slashes = redirect_slashes
    # Closed when the server stops the app (lifespan), whatever lifespan the app has.
    app.add_middleware(CloseVerifierOnShutdown, verifier=verifier)
    if max_body_bytes is not None:
        app.add_middleware(
            RequestLimits, max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes
        )

    @app.exception_handler(AJWTError)
    async def _refuse(_request: Request, exc: AJWTError) -> Response:
        nonce = verifier.nonces.issue() if verifier.nonces else None
        status, headers, body = refusal_response(exc, nonce)
        return Response(body, status_code=status, headers=dict(headers))


def require_intent(
    *,
    scopes: Iterable[str] = (),
    steps: Iterable[str] | None = None,
    tools: Iterable[str] | None = None,
    agents: Iterable[str] | None = None,
    agent_checksums: Iterable[str] | None = None,
    agent_versions: Mapping[str, Iterable[int]] | None = None,
    workflows: Iterable[str] | None = None,
    max_delegation_depth: int | None = None,
    require_shim_checksum: bool = False,
    body_binding: BodyBinding | str = BodyBinding.IF_BODY,
) -> Callable[[Request], Awaitable[IntentTokenClaims]]:
    """A dependency returning the verified intent-token claims of the request (the
    arguments are :class:`~ajwt_core.rs.RoutePolicy`'s, e.g. ``body_binding``: when the
    proof must carry ``bh``; ``install(app, verifier)`` first)."""
    policy = RoutePolicy.of(
        agent_checksums=agent_checksums,
        agent_versions=agent_versions,
        scopes=scopes,
        steps=steps,
        tools=tools,
        agents=agents,
        workflows=workflows,
        max_delegation_depth=max_delegation_depth,
        require_shim_checksum=require_shim_checksum,
        body_binding=body_binding,
    )

    async def dependency(request: Request) -> IntentTokenClaims:
        verifier: Verifier | None = getattr(request.app.state, STATE_KEY, None)
        origins: AllowedOrigins | None = getattr(request.app.state, ORIGINS_KEY, None)
        if verifier is None or origins is None:
            # A programming error, not a client's: fail loudly (a 500 and a traceback).
            raise RuntimeError(
                "require_intent() needs ajwt_core.rs.fastapi.install(app, verifier) when the "
                "app is built"
            )
        verified: VerifiedRequest | None = request.scope.get("ajwt")
        if verified is None or verified.facts is None:
            try:
                body = await request.body()
            except ClientDisconnect:
                # The client left mid-body: refused, without a traceback in the log.
                raise InvalidRequest(
                    Reason.MALFORMED_REQUEST, "the client left before its request body arrived"
                ) from None
            verified = await verifier.verify(
                method=request.method,
                url=origins.request_url(request.scope),
                headers=[(k, v) for k, v in request.headers.items()],
                body=body,
                policy=policy,
            )
        else:
            policy.check(
                verified.facts, request.headers.get("x-shim-checksum"), verifier.accepted_shims
            )
        assert verified.claims is not None
        return verified.claims

    return dependency
