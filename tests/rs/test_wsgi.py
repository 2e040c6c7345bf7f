"""``AJWTWSGIMiddleware``: the DESIGN §7 check for WSGI apps, request by request (the
same refusals as the ASGI middleware, with the OAuth body), through Werkzeug's test
client; ``tests/rs/test_resource_servers.py`` serves a Flask app over HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from ajwt_core.keys import SigningKeySet
from ajwt_core.rs import Route, RoutePolicy, Verifier
from ajwt_core.rs.revocation_feed import RevocationFeed, StaticSource
from ajwt_core.rs.wsgi import AJWTWSGIMiddleware, verified_request
from tests.rs.conftest import Caller
from tests.support import AUDIENCE, ISSUER, NOW

seen_by_app: list[dict[str, Any]] = []


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    verified = environ.get("ajwt")
    seen_by_app.append({"body": body, "agent": verified.claims.agent.id if verified else None})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"ok": True}).encode()]


@pytest.fixture
def middleware(verifier: Verifier) -> Iterator[AJWTWSGIMiddleware]:
    seen_by_app.clear()
    routes = [
        Route("GET", "/health", RoutePolicy.of(public=True)),
        Route("*", "/repos/{repo}/pulls", RoutePolicy.of(scopes=["repo:write"])),
    ]
    protected = AJWTWSGIMiddleware(app, verifier=verifier, routes=routes)
    yield protected
    protected.close()


def send(
    middleware: AJWTWSGIMiddleware, caller: Caller | None, method: str, path: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    body: bytes = kw.pop("data", b"")
    headers = kw.pop("headers", {})
    if caller is not None:
        headers = caller.headers(method, AUDIENCE + path, kw.pop("signed_body", body)) | headers
    response = Client(middleware).open(
        path, method=method, data=body, headers=headers, base_url=AUDIENCE, **kw
    )
    return response.status_code, json.loads(response.data) if response.data else {}


def test_a_legitimate_request_reaches_the_app_with_its_body(
    middleware: AJWTWSGIMiddleware, caller: Caller
) -> None:
    status, _ = send(middleware, caller, "POST", "/repos/acme/pulls", data=b'{"title": "x"}')
    assert status == 200
    assert seen_by_app == [{"body": b'{"title": "x"}', "agent": "planner"}]


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"caller": None}, 401, "missing_token"),
        ({"signed_body": b"other"}, 401, "bh_mismatch"),
        ({"headers": {"Host": "evil.example"}}, 400, "host_not_allowed"),
        ({"path": "/repos/acme/pulls/../pulls"}, 400, "malformed_request"),
        ({"data": b"x" * ((1 << 20) + 1)}, 413, "request_too_large"),
    ],
)
def test_each_refusal_is_the_oauth_body_and_the_app_never_runs(
    middleware: AJWTWSGIMiddleware,
    caller: Caller,
    kwargs: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    who = kwargs.pop("caller", caller)
    path = kwargs.pop("path", "/repos/acme/pulls")
    got, body = send(middleware, who, "POST", path, **kwargs)
    assert (got, body["ajwt_reason"]) == (status, reason)
    assert set(body) == {"error", "error_description", "ajwt_reason"}
    assert seen_by_app == []


def test_a_replayed_request_is_refused(middleware: AJWTWSGIMiddleware, caller: Caller) -> None:
    headers = caller.headers("GET", AUDIENCE + "/repos/acme/pulls")
    assert send(middleware, None, "GET", "/repos/acme/pulls", headers=headers)[0] == 200
    status, body = send(middleware, None, "GET", "/repos/acme/pulls", headers=headers)
    assert (status, body["ajwt_reason"]) == (401, "replayed")


def test_route_policy_refuses_with_403(verifier: Verifier, caller: Caller) -> None:
    strict = AJWTWSGIMiddleware(
        app, verifier=verifier, routes=[Route("GET", "/x", RoutePolicy.of(scopes=["admin"]))]
    )
    status, body = send(strict, caller, "GET", "/x")
    assert (status, body["error"], body["ajwt_reason"]) == (
        403,
        "insufficient_scope",
        "scope_exceeded",
    )
    strict.close()


def test_public_routes_pass_without_a_token(middleware: AJWTWSGIMiddleware) -> None:
    assert send(middleware, None, "GET", "/health")[0] == 200
    assert seen_by_app[0]["agent"] is None


def test_a_chunked_body_is_read_when_the_server_ends_the_input(
    middleware: AJWTWSGIMiddleware, caller: Caller
) -> None:
    body = b'{"chunked": true}'
    headers = caller.headers("POST", AUDIENCE + "/repos/acme/pulls", body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/repos/acme/pulls",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "api.example",
        "HTTP_AUTHORIZATION": headers["authorization"],
        "HTTP_DPOP": headers["dpop"],
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
    }
    statuses: list[str] = []
    middleware(environ, lambda status, _headers: statuses.append(status))
    assert statuses == ["200 OK"]
    assert seen_by_app == [{"body": body, "agent": "planner"}]


def test_a_decoded_path_without_a_raw_uri_is_encoded_again(
    verifier: Verifier, caller: Caller
) -> None:
    # PEP 3333: PATH_INFO is the decoded path, as latin-1 text of its bytes.
    protected = AJWTWSGIMiddleware(app, verifier=verifier)
    headers = caller.headers("GET", AUDIENCE + "/files/READ%20ME%C3%A9")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/files/READ MEé".encode().decode("latin-1"),
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "api.example",
        "HTTP_AUTHORIZATION": headers["authorization"],
        "HTTP_DPOP": headers["dpop"],
    }
    statuses: list[str] = []
    protected(environ, lambda status, _headers: statuses.append(status))
    assert statuses == ["200 OK"]
    protected.close()


def test_verified_request_reads_the_environ(middleware: AJWTWSGIMiddleware, caller: Caller) -> None:
    captured: dict[str, Any] = {}

    def view(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        captured["claims"] = verified_request(environ).claims
        start_response("204 No Content", [])
        return []

    middleware.app = view
    assert send(middleware, caller, "GET", "/repos/acme/pulls")[0] == 204
    assert captured["claims"].chain == ["supervisor", "planner"]


class _CountedSource:
    """A static feed that records whether it was closed."""

    def __init__(self) -> None:
        self.inner = StaticSource()
        self.closed = False

    async def follow(self, feed: RevocationFeed) -> None:
        await self.inner.follow(feed)

    async def aclose(self) -> None:
        self.closed = True


def test_close_stops_following_the_revocation_feed(idp_keys: SigningKeySet, caller: Caller) -> None:
    # close() used to stop the loop under the feed's task: the interpreter then logged
    # "Task was destroyed but it is pending" and the feed's source stayed open.
    source = _CountedSource()
    feed = RevocationFeed(source, max_staleness=5.0)
    verifier = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=idp_keys.verification_keys(),
        clock=lambda: NOW + 1,
        revocation=feed,
    )
    guard = AJWTWSGIMiddleware(app, verifier=verifier)
    status, _ = send(guard, caller, "GET", "/repos")
    assert status == 200  # the feed is followed from the first request
    guard.close()
    assert source.closed
    assert feed._task is None  # the following task was stopped, not dropped
    # A later request starts following again, on a new loop.
    assert send(guard, caller, "GET", "/repos")[0] == 200
    guard.close()
