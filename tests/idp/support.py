"""An in-process IdP on SQLite or PostgreSQL, driven over ASGI on one event loop.

Requests are sent exactly as given (raw header bytes, percent-encoded paths), so a test
can hand the IdP what an attacker would: non-ASCII, NUL, control characters. The
helpers walk the protocol (client, agents, run, token) so a test can reach the deep
checks with one field wrong.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.tokens import encode_client_assertion
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifest
from tests.services import POSTGRES, POSTGRES_URL, require

ISSUER = "http://idp.test"
ADMIN = "admin-" + secrets.token_hex(12)
RESOURCE = "http://api.test"

Headers = Mapping[str, str] | list[tuple[bytes, bytes]]


def raw_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Header pairs as bytes; ``str`` values are sent as UTF-8, as an attacker may."""
    if isinstance(headers, list):
        return headers
    return [(k.encode(), v.encode("utf-8", "surrogatepass")) for k, v in headers.items()]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the shared server, dropped afterwards."""
    require("PostgreSQL", POSTGRES)
    import asyncpg

    name = "ajwt_h12_" + secrets.token_hex(4)
    parts = urlsplit(POSTGRES_URL.replace("+asyncpg", ""))
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def database_url(backend: str, tmp_path: Any) -> Iterator[str]:
    if backend == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path}/idp.db"


@dataclass
class Client:
    client_id: str
    secret: str

    @property
    def basic(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class Agent:
    agent_id: str
    key: PopKey
    checksum: str
    registration_id: str


@dataclass
class IdPHarness:
    """The IdP app, its lifespan entered, and one event loop for every call."""

    db_url: str
    settings_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = SigningKeySet.generate()
        self.settings = IdPSettings(
            issuer=ISSUER,
            db_url=self.db_url,
            admin_token=ADMIN,
            signing_keys=self.keys,
            **self.settings_overrides,
        )
        self.app = create_app(self.settings)
        self.idp = self.app.state.idp
        self.loop = asyncio.new_event_loop()
        self._stack = contextlib.AsyncExitStack()
        self.loop.run_until_complete(self._stack.enter_async_context(self._lifespan()))
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url=ISSUER)
        self.admin = {"Authorization": f"Bearer {ADMIN}"}
        self.run_call(self.idp.register_workflow(reference_workflow().canonical()))

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> Any:
        async with self.app.router.lifespan_context(self.app):
            yield

    def run_call(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.run_call(self.http.aclose())
        self.run_call(self._stack.aclose())
        self.loop.close()

    # ----------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Headers = (),  # type: ignore[assignment]
        content: bytes = b"",
        json: Any = None,
        form: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        pairs = raw_headers(headers or {})
        if json is not None:
            import json as json_module

            content = json_module.dumps(json).encode()
            pairs = [*pairs, (b"content-type", b"application/json")]
        if form is not None:
            content = urlencode(form).encode()
            pairs = [*pairs, (b"content-type", b"application/x-www-form-urlencoded")]
        return self.run_call(self.http.request(method, path, headers=pairs, content=content))

    # ------------------------------------------------------------------ protocol

    def new_client(self, scopes: list[str] | None = None) -> Client:
        body = {"scopes": scopes or ["repo:read", "repo:write", "advisories:read"]}
        created = self.request("POST", "/admin/clients", headers=self.admin, json=body)
        assert created.status_code == 201, created.text
        return Client(created.json()["client_id"], created.json()["client_secret"])

    def new_key_client(self, key: PopKey) -> str:
        body = {
            "scopes": ["repo:read"],
            "auth_method": "private_key_jwt",
            "jwks": {"keys": [key.public_jwk | {"kid": "k1"}]},
        }
        created = self.request("POST", "/admin/clients", headers=self.admin, json=body)
        assert created.status_code == 201, created.text
        return str(created.json()["client_id"])

    def client_assertion(self, client_id: str, key: PopKey, jti: str) -> str:
        return encode_client_assertion(
            client_id, key, audience=ISSUER, jti=jti, now=int(time.time()), kid="k1"
        )

    def proof(
        self, key: PopKey, path: str, *, token: str | None = None, body: bytes | None = None
    ) -> str:
        return create_proof(key, "POST", ISSUER + path, token=token, body=body)

    def register_agent(self, client: Client, name: str, key: PopKey | None = None) -> Agent:
        key = key or PopKey.generate()
        manifest = reference_manifest(name).model_dump(mode="json")
        body = {"manifest": manifest, "proof": self.proof(key, "/agents")}
        registered = self.request("POST", "/agents", headers=client.basic, json=body)
        assert registered.status_code == 201, registered.text
        data = registered.json()
        return Agent(name, key, data["checksum"], data["registration_id"])

    def start_run(self, client: Client) -> str:
        user = self.request(
            "POST", "/admin/users/token", headers=self.admin, json={"subject": "user:alice"}
        )
        body = {"workflow_id": "vuln-patch", "subject_token": user.json()["access_token"]}
        started = self.request("POST", "/runs", headers=client.basic, json=body)
        assert started.status_code == 201, started.text
        return str(started.json()["run_id"])

    def mint_form(self, agent: Agent, run_id: str, tool: str = "list_repos") -> dict[str, str]:
        return {
            "grant_type": "urn:ajwt:params:oauth:grant-type:agent-checksum",
            "agent_id": agent.agent_id,
            "agent_checksum": agent.checksum,
            "run_id": run_id,
            "tool": tool,
            "resource": RESOURCE,
        }

    def token_request(
        self, client: Client, agent: Agent, form: Mapping[str, str]
    ) -> httpx.Response:
        body = urlencode(form).encode()
        headers = {
            **client.basic,
            "DPoP": self.proof(agent.key, "/token", body=body),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return self.request("POST", "/token", headers=headers, content=body)


def assert_refused(
    response: httpx.Response, status: int, reason: str | None = None, *, error: str | None = None
) -> None:
    """A 4xx OAuth error body with the expected status and reason; no traceback."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert isinstance(body.get("error"), str) and body.get("error_description"), body
    if reason is not None:
        assert body.get("ajwt_reason") == reason, body
    if error is not None:
        assert body["error"] == error, body
    assert "Traceback" not in response.text


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
