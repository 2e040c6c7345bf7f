"""``install`` + ``require_intent`` without the middleware: the same origin and path
rules (issue 12 §1), and a clear error for a dependency used without ``install``."""

from __future__ import annotations

import doctest
import json
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


# ------------------------------------------------ what a request may make the app hold

WRITER = Security(require_intent(scopes=["repo:write"]))


def _upload_app(verifier: Verifier, **install_kw: Any) -> FastAPI:
    app = FastAPI()
    install(app, verifier, **install_kw)

    @app.post("/uploads")
    async def upload(claims: IntentTokenClaims = WRITER) -> dict[str, str]:
        return {"agent": claims.agent.id}

    return app


def upload_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a ``POST /uploads`` to the API, with these headers besides Host."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "https", "path": "/uploads", "raw_path": b"/uploads", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"api.example"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("api.example", 443),
    }  # fmt: skip


async def call_asgi(
    app: FastAPI, headers: list[tuple[bytes, bytes]], chunks: Any
) -> tuple[int, dict[str, Any], int]:
    """One raw ASGI ``POST /uploads``; the status, the JSON answer and how many body
    bytes the app pulled from ``chunks`` (an iterator of bytes)."""
    pulled = 0
    answer: dict[str, Any] = {"status": None, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(upload_scope(headers), receive, send)
    return answer["status"], json.loads(answer["body"]), pulled


def endless(size: int = 64 * 1024) -> Any:
    while True:
        yield b"\0" * size


async def test_a_declared_oversized_body_is_refused_before_a_byte_is_read(
    verifier: Verifier,
) -> None:
    # No token at all: the limit answers before the verifier (or FastAPI) reads anything.
    status, body, pulled = await call_asgi(
        _upload_app(verifier), [(b"content-length", b"419430400")], endless()
    )
    assert (status, body["ajwt_reason"], pulled) == (413, "request_too_large", 0)
    assert body["error"] == "invalid_request"


async def test_a_chunked_body_is_cut_off_at_the_limit(verifier: Verifier) -> None:
    app = _upload_app(verifier, max_body_bytes=256 * 1024)
    status, body, pulled = await call_asgi(app, [], endless())
    assert (status, body["ajwt_reason"]) == (413, "request_too_large")
    assert pulled <= 256 * 1024 + 64 * 1024  # the limit, and the chunk that crossed it


async def test_oversized_headers_are_refused(verifier: Verifier) -> None:
    status, body, _ = await call_asgi(
        _upload_app(verifier), [(b"x-padding", b"a" * 40_000)], iter([])
    )
    assert (status, body["ajwt_reason"]) == (431, "request_too_large")


async def test_a_signed_body_within_the_limit_passes(verifier: Verifier, caller: Caller) -> None:
    payload = b"x" * 200_000
    headers = caller.headers("POST", AUDIENCE + "/uploads", body=payload)
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(payload)).encode()))
    status, body, pulled = await call_asgi(_upload_app(verifier), raw, iter([payload]))
    assert (status, body, pulled) == (200, {"agent": "planner"}, len(payload))


async def test_limits_can_be_left_to_the_app(verifier: Verifier, caller: Caller) -> None:
    payload = b"x" * (2 << 20)
    headers = caller.headers("POST", AUDIENCE + "/uploads", body=payload)
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(payload)).encode()))
    status, body, _ = await call_asgi(
        _upload_app(verifier, max_body_bytes=None), raw, iter([payload])
    )
    assert (status, body) == (200, {"agent": "planner"})


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


# ------------------------------------------------- RFC 6750 §3.1 challenges at the RS


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "DPoP", "DPoP   ", "Negotiate x"])
async def test_no_token_of_this_scheme_is_challenged_without_an_error_code(
    verifier: Verifier, caller: Caller, authorization: str
) -> None:
    response = await get(_app(verifier), caller, FILE, FILE, {"authorization": authorization})
    assert response.status_code == 401
    assert response.json()["ajwt_reason"] == Reason.MISSING_TOKEN.value
    assert response.headers["www-authenticate"] == 'DPoP algs="ES256 EdDSA"'


async def test_two_authorization_headers_are_a_malformed_request(
    verifier: Verifier, caller: Caller
) -> None:
    app = _app(verifier)
    transport = httpx.ASGITransport(app=app)
    signed = caller.headers("GET", AUDIENCE + FILE)
    headers = [(k, v) for k, v in signed.items()] + [("authorization", "DPoP other")]
    async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
        response = await http.get(FILE, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "www-authenticate" not in response.headers
    # One of them, alone, passes.
    assert (await get(app, caller, FILE, FILE)).status_code == 200


async def test_install_turns_off_slash_redirects_built_from_the_host_header(
    verifier: Verifier, caller: Caller
) -> None:
    transport = httpx.ASGITransport(app=_app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
        answer = await http.get(FILE + "/", headers={"host": "evil.example"})
    assert answer.status_code == 404 and "location" not in answer.headers
    kept = _app(verifier, redirect_slashes=True)
    transport = httpx.ASGITransport(app=kept)
    async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
        answer = await http.get(FILE + "/", headers={"host": "evil.example"})
    assert answer.status_code == 307


async def test_a_client_that_leaves_mid_body_is_refused_without_a_traceback(
    verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    messages = iter(
        [
            {"type": "http.request", "body": b"abc", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await _upload_app(verifier)(upload_scope([(b"content-length", b"10")]), receive, send)
    assert answer["status"] == 400
    assert json.loads(answer["body"])["ajwt_reason"] == "malformed_request"
    assert not [r for r in caplog.records if r.exc_info]
