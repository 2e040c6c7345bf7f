"""Plain OAuth 2, for comparison: client-credentials bearer tokens (RFC 6749 §4.4).

The baseline the demo and the benchmarks measure A-JWT against, on the same stack: a
FastAPI token endpoint that authenticates the client and signs an ES256 JWT access token
(RFC 9068 shape) with pyjwt, and a pure-ASGI middleware that verifies ``Authorization:
Bearer`` tokens with pyjwt. It knows one principal per client application: every agent
in the process acts with the whole application's privileges.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ajwt_core.keys import SigningKey
from ajwt_core.request_limits import ASGIApp, Receive, Scope, Send


@dataclass
class BaselineClient:
    client_id: str
    secret_hash: str
    scopes: list[str]


@dataclass
class BaselineAuthServer:
    """The client-credentials authorisation server (in memory)."""

    issuer: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    clients: dict[str, BaselineClient] = field(default_factory=dict)
    lifetime: int = 300

    def register(self, client_id: str, scopes: list[str]) -> str:
        secret = secrets.token_urlsafe(32)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        self.clients[client_id] = BaselineClient(client_id, digest, scopes)
        return secret

    def app(self) -> FastAPI:
        app = FastAPI(title="Baseline OAuth (client credentials)", docs_url=None, redoc_url=None)

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            client: BaselineClient | None = None
            if scheme.lower() == "basic":
                try:
                    client_id, _, secret = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    client_id, secret = "", ""
                client = self.clients.get(client_id)
                digest = hashlib.sha256(secret.encode()).hexdigest()
                if client is not None and not hmac.compare_digest(digest, client.secret_hash):
                    client = None
            if client is None:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if form.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "sub": client.client_id,
                "client_id": client.client_id,
                "aud": form.get("resource", ""),
                "scope": " ".join(client.scopes),
                "iat": now,
                "exp": now + self.lifetime,
                "jti": secrets.token_urlsafe(16),
            }
            access_token = self.key.sign(claims, {"typ": "at+jwt"})
            return JSONResponse(
                {
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": self.lifetime,
                    "scope": claims["scope"],
                }
            )

        return app


class BearerMiddleware:
    """Pure ASGI: verify ``Authorization: Bearer <JWT>`` with pyjwt (signature, iss,
    aud, exp) and put the claims in ``scope["bearer"]``; scopes are checked per route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        issuer: str,
        audience: str,
        key: Any,
        route_scopes: Callable[[str, str], set[str] | None],
    ) -> None:
        self.app = app
        self.issuer = issuer
        self.audience = audience
        self.key = key
        self.route_scopes = route_scopes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        required = self.route_scopes(scope["method"], scope["path"])
        if required is None:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise jwt.InvalidTokenError("no bearer token")
            claims = jwt.decode(
                token, self.key, algorithms=["ES256"], audience=self.audience, issuer=self.issuer
            )
        except jwt.PyJWTError:
            await _refuse(send, 401, "invalid_token")
            return
        if not required <= set(str(claims.get("scope", "")).split()):
            await _refuse(send, 403, "insufficient_scope")
            return
        scope["bearer"] = claims
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", f'Bearer error="{error}"'.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ClientCredentialsAuth(httpx.Auth):
    """The baseline client: one client-credentials bearer token for the whole app,
    fetched from ``token_url`` and reused until shortly before it expires."""

    def __init__(self, token_url: str, client_id: str, secret: str, *, resource: str) -> None:
        self._token_url = token_url
        self._basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self._resource = resource
        self._token: str | None = None
        self._expires = 0.0
        self.sent = 0  # requests made with the token, and how many were refused
        self.refused = 0

    @property
    def token(self) -> str:
        if self._token is None or self._expires - 30 < time.time():
            response = httpx.post(
                self._token_url,
                data={"grant_type": "client_credentials", "resource": self._resource},
                headers={"Authorization": f"Basic {self._basic}"},
                timeout=10,
            )
            response.raise_for_status()
            body = response.json()
            self._token, self._expires = body["access_token"], time.time() + body["expires_in"]
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        self.sent += 1
        self.refused += response.status_code >= 400
