"""The reference resource server (DESIGN §11): a code host and an advisory database.

``GET /repos``, ``GET /repos/{repo}/files/{path}``, ``GET /advisories?package=…`` and
``POST /repos/{repo}/pulls``, each requiring its workflow step's scope and tool, verified
by :class:`~ajwt_core.rs.AJWTMiddleware`. Every accepted call is recorded (``app.state.calls``)
with who made it: agent, step, tool, delegation chain and user.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ajwt_core.rs import AJWTMiddleware, Route, RoutePolicy, VerifiedRequest, Verifier
from ajwt_demo.data import ADVISORIES, FILES, REPOS

ROUTES = [
    Route("GET", "/repos", RoutePolicy.of(scopes=["repo:read"], tools=["list_repos"])),
    Route(
        "GET",
        "/repos/{owner}/{name}/files/{path}",
        RoutePolicy.of(scopes=["repo:read"], tools=["read_file"]),
    ),
    Route(
        "GET", "/advisories", RoutePolicy.of(scopes=["advisories:read"], tools=["query_advisories"])
    ),
    Route(
        "POST",
        "/repos/{owner}/{name}/pulls",
        RoutePolicy.of(scopes=["repo:write"], tools=["create_pull_request"]),
    ),
    Route("GET", "/health", RoutePolicy.of(public=True)),
]


def strict_routes() -> list[Route]:
    """The same routes, each also requiring an accepted shim checksum (DESIGN §5.4)."""
    return [
        r
        if r.policy.public
        else Route(r.method, r.path, replace(r.policy, require_shim_checksum=True))
        for r in ROUTES
    ]


@dataclass
class CallRecord:
    method: str
    path: str
    agent: str | None
    step: str | None
    tool: str | None
    chain: list[str]
    subject: str | None
    run_id: str | None
    scope: str
    jti: str | None


@dataclass
class ApiState:
    calls: list[CallRecord] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class PullRequestBody(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    head: str = Field(min_length=1, max_length=200)
    base: str = Field(default="main", max_length=200)
    body: str = Field(default="", max_length=10_000)


def _record(request: Request, state: ApiState) -> CallRecord:
    verified: VerifiedRequest | None = request.scope.get("ajwt")
    claims = verified.claims if verified else None
    bearer = verified.bearer_claims if verified else request.scope.get("bearer")
    record = CallRecord(
        method=request.method,
        path=request.url.path,
        agent=claims.agent.id if claims else None,
        step=claims.intent.step if claims else None,
        tool=claims.intent.tool if claims else None,
        chain=claims.chain if claims else [],
        subject=claims.sub if claims else (bearer or {}).get("sub"),
        run_id=claims.intent.run_id if claims else None,
        scope=claims.scope if claims else str((bearer or {}).get("scope", "")),
        jti=claims.jti if claims else None,
    )
    state.calls.append(record)
    return record


def _caller(record: CallRecord) -> dict[str, Any]:
    return {
        "agent": record.agent,
        "step": record.step,
        "tool": record.tool,
        "chain": record.chain,
        "user": record.subject,
    }


@dataclass
class ReferenceApi:
    """The FastAPI app, the same app behind the A-JWT middleware, and its recorded state."""

    app: FastAPI
    asgi: AJWTMiddleware
    state: ApiState


def create_api(
    verifier: Verifier,
    *,
    base_url: str | Sequence[str] | None = None,
    trusted_proxies: Collection[str] = (),
    routes: list[Route] | None = None,
) -> ReferenceApi:
    """The reference API behind ``verifier`` (its audience is this server's identifier
    and, unless ``base_url`` says otherwise, its public origin)."""
    app, state = _build_app()
    asgi = AJWTMiddleware(
        app,
        verifier=verifier,
        routes=routes or ROUTES,
        base_url=base_url,
        trusted_proxies=trusted_proxies,
    )
    return ReferenceApi(app=app, asgi=asgi, state=state)


def create_bearer_api(*, issuer: str, audience: str, key: Any) -> BaselineApi:
    """The same API with plain OAuth: pyjwt Bearer verification and scopes only (the
    baseline the demo compares A-JWT with)."""
    from ajwt_demo.baseline import BearerMiddleware

    app, state = _build_app()
    scopes = {(r.method, r.pattern()): set(r.policy.scopes) for r in ROUTES if not r.policy.public}

    def route_scopes(method: str, path: str) -> set[str] | None:
        for (route_method, pattern), needed in scopes.items():
            if route_method == method and pattern.match(path):
                return needed
        return None

    asgi = BearerMiddleware(
        app, issuer=issuer, audience=audience, key=key, route_scopes=route_scopes
    )
    return BaselineApi(app=app, asgi=asgi, state=state)


@dataclass
class BaselineApi:
    app: FastAPI
    asgi: Any
    state: ApiState


def _build_app() -> tuple[FastAPI, ApiState]:
    state = ApiState()
    app = FastAPI(title="Reference code host and advisory API", docs_url=None, redoc_url=None)
    app.state.api = state

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/repos")
    async def list_repos(request: Request) -> dict[str, Any]:
        record = _record(request, state)
        return {"repos": REPOS, "caller": _caller(record)}

    @app.get("/repos/{owner}/{name}/files/{path}")
    async def read_file(request: Request, owner: str, name: str, path: str) -> JSONResponse:
        record = _record(request, state)
        content = FILES.get((f"{owner}/{name}", path))
        if content is None:
            return JSONResponse({"error": "not_found", "caller": _caller(record)}, status_code=404)
        return JSONResponse(
            {"repo": f"{owner}/{name}", "path": path, "content": content, "caller": _caller(record)}
        )

    @app.get("/advisories")
    async def advisories(request: Request, package: str = "") -> dict[str, Any]:
        record = _record(request, state)
        found = [a for a in ADVISORIES if not package or a["package"] == package]
        return {"advisories": found, "caller": _caller(record)}

    @app.post("/repos/{owner}/{name}/pulls", status_code=201)
    async def open_pull(
        request: Request, owner: str, name: str, body: PullRequestBody
    ) -> dict[str, Any]:
        record = _record(request, state)
        pull = {
            "number": next(state.counter),
            "repo": f"{owner}/{name}",
            "title": body.title,
            "head": body.head,
            "base": body.base,
            "opened_by": record.agent,
            "on_behalf_of": record.subject,
        }
        state.pulls.append(pull)
        return {"pull_request": pull, "caller": _caller(record)}

    return app, state
