"""The same malformed request gets the same answer from the ASGI and the WSGI middleware
(found by a wire-level probe): oversized headers are a 431 (RFC 6585 §5) before the Host
is looked at, a Content-Length that is no number a 400, and two Authorization or DPoP
headers (joined into one by a WSGI server) a 400 / malformed proof."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.rs import Verifier
from tests.rs.conftest import Caller
from tests.rs.test_route_methods import call, flask_app, starlette_app
from tests.support import AUDIENCE


@pytest.fixture(params=["starlette", "flask"])
def protected(request: pytest.FixtureRequest, verifier: Verifier) -> tuple[Any, bool]:
    if request.param == "flask":
        return flask_app(verifier), True
    return starlette_app(verifier), False


def raw(app: Any, wsgi: bool, headers: dict[str, str]) -> httpx.Response:
    if wsgi:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=AUDIENCE) as http:
            return http.get("/repos", headers=headers)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
            return await http.get("/repos", headers=headers)

    import asyncio

    return asyncio.run(go())


def test_oversized_headers_are_a_431_even_with_a_foreign_host(
    protected: tuple[Any, bool],
) -> None:
    app, wsgi = protected
    answer = raw(app, wsgi, {"x-padding": "a" * 40_000, "host": "evil.example"})
    assert answer.status_code == 431
    assert answer.json()["ajwt_reason"] == Reason.REQUEST_TOO_LARGE.value


def test_a_content_length_that_is_no_number_is_malformed(verifier: Verifier) -> None:
    # WSGI only: an ASGI server (h11, httptools) refuses it before any app sees it.
    answer = raw(flask_app(verifier), True, {"content-length": "+5"})
    assert answer.status_code == 400
    assert answer.json()["ajwt_reason"] == Reason.MALFORMED_REQUEST.value


def test_joined_authorization_or_proof_headers_are_refused_alike(
    protected: tuple[Any, bool], caller: Caller
) -> None:
    app, wsgi = protected
    signed = caller.headers("GET", AUDIENCE + "/repos")
    joined = signed | {"authorization": signed["authorization"] + ", DPoP other"}
    answer = raw(app, wsgi, joined)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    two_proofs = signed | {"dpop": signed["dpop"] + ", " + signed["dpop"]}
    answer = raw(app, wsgi, two_proofs)
    assert answer.status_code == 401
    assert answer.json()["ajwt_reason"] == Reason.MALFORMED_PROOF.value
    # The same request with one of each passes.
    assert call(app, wsgi, caller, "GET", "/repos").status_code == 200


@pytest.mark.parametrize(("value", "status"), [(" 0 ", 200), ("\u00b2", 400), ("0x1", 400)])
def test_content_length_is_ascii_digits_with_optional_whitespace(
    verifier: Verifier, caller: Caller, value: str, status: int
) -> None:
    # Straight to the WSGI middleware: an HTTP client would not send "²" in a header.
    import io
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    signed = caller.headers("GET", AUDIENCE + "/repos")
    environ.update(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/repos",
            "HTTP_HOST": "api.example",
            "wsgi.url_scheme": "https",
            "SERVER_PORT": "443",
            "CONTENT_LENGTH": value,
            "wsgi.input": io.BytesIO(b""),
            "HTTP_AUTHORIZATION": signed["authorization"],
            "HTTP_DPOP": signed["dpop"],
        }
    )
    answered: list[str] = []
    flask_app(verifier)(environ, lambda status, headers, *_: answered.append(status))
    assert int(answered[0].split()[0]) == status, answered


def test_the_asgi_limits_read_content_length_as_the_wsgi_one_does() -> None:
    from ajwt_core.request_limits import content_length

    assert content_length(b" 22\t") == 22
    for bad in (b"+5", b"-1", b"\xb2", b"2 2", b""):
        with pytest.raises(InvalidRequest):
            content_length(bad)
