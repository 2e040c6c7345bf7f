"""``install`` + ``require_intent`` without the middleware: the same origin and path
rules (issue 12 §1), and a clear error for a dependency used without ``install``."""

from __future__ import annotations

import doctest
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security

import ajwt_core.rs.fastapi
import ajwt_core.rs.middleware
import ajwt_core.rs.origins
from ajwt_core.errors import Reason
from ajwt_core.rs import Verifier
from ajwt_core.rs.fastapi import install, require_intent
from ajwt_core.tokens import IntentTokenClaims
from tests.rs.conftest import Caller
from tests.support import AUDIENCE, ISSUER

READER = Security(require_intent(scopes=["repo:read"]))


def _app(verifier: Verifier | None, **install_kw: Any) -> FastAPI:
    app = FastAPI()
    if verifier is not None:
        install(app, verifier, **install_kw)

    @app.get("/repos/{owner}/{name}/files/{path}")
    async def read_file(
        owner: str, name: str, path: str, claims: IntentTokenClaims = READER
    ) -> dict[str, str]:
        return {"path": path, "agent": claims.agent.id}

    return app


async def get(
    app: FastAPI, caller: Caller, signed: str, sent: str, headers: dict[str, str] | None = None
) -> Any:
    transport = httpx.ASGITransport(app=app)  # the peer is 127.0.0.1
    async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
        signed_headers = caller.headers("GET", AUDIENCE + signed)
        return await http.get(sent, headers=signed_headers | (headers or {}))


FILE = "/repos/acme/storefront/files/READ%20ME.md"


async def test_dependency_accepts_the_path_the_shim_signed(
    verifier: Verifier, caller: Caller
) -> None:
    response = await get(_app(verifier), caller, FILE, FILE)
    assert response.status_code == 200, response.text
    assert response.json() == {"path": "READ ME.md", "agent": "planner"}


async def test_dependency_refuses_a_forged_host(verifier: Verifier, caller: Caller) -> None:
    other = "/repos/acme/billing/files/READ%20ME.md"
    forged = "api.example" + FILE + "?"
    response = await get(_app(verifier), caller, FILE, other, {"host": forged})
    assert response.status_code == 400
    assert response.json()["ajwt_reason"] == Reason.HOST_NOT_ALLOWED.value
    response = await get(_app(verifier), caller, FILE, other)
    assert response.status_code == 401
    assert response.json()["ajwt_reason"] == Reason.URL_MISMATCH.value


async def test_dependency_reads_a_trusted_proxys_host(verifier: Verifier, caller: Caller) -> None:
    proxied = {"host": "backend", "x-forwarded-host": "api.example"}
    app = _app(verifier, trusted_proxies=["127.0.0.1"])
    response = await get(app, caller, FILE, FILE, proxied)
    assert response.status_code == 200, response.text
    response = await get(_app(verifier), caller, FILE, FILE, proxied)
    assert response.json()["ajwt_reason"] == Reason.HOST_NOT_ALLOWED.value


async def test_require_intent_without_install_fails_loudly(caller: Caller) -> None:
    with pytest.raises(RuntimeError, match=r"install\(app, verifier\)"):
        await get(_app(None), caller, FILE, FILE)


def test_install_needs_an_origin(verifier: Verifier) -> None:
    named = Verifier(issuer=ISSUER, audience="urn:api:code-host", keys=verifier._resolver())
    with pytest.raises(ValueError, match="base_url"):
        install(FastAPI(), named)
    install(FastAPI(), named, base_url="https://api.example")


def test_module_doctests_pass() -> None:
    for module in (ajwt_core.rs.fastapi, ajwt_core.rs.middleware, ajwt_core.rs.origins):
        assert doctest.testmod(module).failed == 0, module.__name__
