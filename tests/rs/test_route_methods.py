"""A route's policy holds whatever the method (found by a wire-level probe): with routes
declared for GET only, a POST with any valid token used to fall to the middleware's
``default`` policy (any token of this audience) and Django ran the view; Starlette and
Flask answer HEAD with the GET handler. Now HEAD takes GET's policy, and a method no route
declares on a known path is refused once the token is verified (``method_not_allowed``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from ajwt_core.errors import Reason
from ajwt_core.rs import AJWTMiddleware, Route, RoutePolicy, Verifier
from ajwt_core.rs.wsgi import AJWTWSGIMiddleware
from tests.rs.conftest import Caller
from tests.support import AUDIENCE

READ = RoutePolicy.of(scopes=["repo:read"])
ROUTES = [Route("GET", "/repos", READ), Route("POST", "/pulls", RoutePolicy.of(scopes=["x:y"]))]
ran: list[str] = []


def starlette_app(verifier: Verifier) -> Any:
    async def repos(request: Request) -> JSONResponse:
        ran.append(request.method)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[StarletteRoute("/repos", repos, methods=["GET", "POST", "PUT"])])
    return AJWTMiddleware(app, verifier=verifier, routes=ROUTES)


def flask_app(verifier: Verifier) -> Any:
    app = Flask(__name__)

    @app.route("/repos", methods=["GET", "POST", "PUT", "DELETE"])
    def repos() -> dict[str, bool]:
        from flask import request

        ran.append(request.method)
        return {"ok": True}

    return AJWTWSGIMiddleware(app.wsgi_app, verifier=verifier, routes=ROUTES)


def call(app: Any, wsgi: bool, caller: Caller | None, method: str, path: str) -> httpx.Response:
    headers = caller.headers(method, AUDIENCE + path) if caller else {}
    if wsgi:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=AUDIENCE) as http:
            return http.request(method, path, headers=headers)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
            return await http.request(method, path, headers=headers)

    import asyncio

    return asyncio.run(go())


@pytest.fixture(params=["starlette", "flask"])
def protected(request: pytest.FixtureRequest, verifier: Verifier) -> tuple[Any, bool]:
    ran.clear()
    if request.param == "flask":
        return flask_app(verifier), True
    return starlette_app(verifier), False


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_method_no_route_declares_is_refused_with_a_valid_token(
    protected: tuple[Any, bool], caller: Caller, method: str
) -> None:
    app, wsgi = protected
    refused = call(app, wsgi, caller, method, "/repos")
    assert refused.status_code == 403
    assert refused.json()["ajwt_reason"] == Reason.METHOD_NOT_ALLOWED.value
    assert "no policy for " + method in refused.json()["error_description"]
    assert ran == []  # the view never ran
    # Without a token it is a 401, as for any protected route.
    assert call(app, wsgi, None, method, "/repos").status_code == 401
    # The declared method still passes.
    assert call(app, wsgi, caller, "GET", "/repos").status_code == 200
    assert ran == ["GET"]


def test_head_takes_the_get_routes_policy(
    protected: tuple[Any, bool], caller: Caller, verifier: Verifier
) -> None:
    app, wsgi = protected
    assert call(app, wsgi, caller, "HEAD", "/repos").status_code == 200
    # A GET route needing a scope the token lacks refuses HEAD alike.
    strict = [Route("GET", "/repos", RoutePolicy.of(scopes=["repo:admin"]))]
    inner = app.app
    guarded = (
        AJWTWSGIMiddleware(inner, verifier=verifier, routes=strict)
        if wsgi
        else AJWTMiddleware(inner, verifier=verifier, routes=strict)
    )
    refused = call(guarded, wsgi, caller, "HEAD", "/repos")
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"].startswith('DPoP error="insufficient_scope"')


def test_a_path_no_route_names_still_gets_the_default(
    protected: tuple[Any, bool], caller: Caller
) -> None:
    app, wsgi = protected
    answer = call(app, wsgi, caller, "POST", "/elsewhere")
    assert answer.status_code == 404  # verified by the default policy, then the app's 404
