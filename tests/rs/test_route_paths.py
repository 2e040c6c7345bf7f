"""A route's path template is read exactly or refused when it is declared (found by a
newcomer trial): a Flask route written ``/orders/<order>/refund`` used to compile to a
pattern that matched nothing, so its requests fell to the middleware's ``default`` policy
(any valid token of this audience) and a token of another tool, without the route's
scope, had the refund view run. Flask and Django's ``<name>`` and Starlette's ``{name}``
(with their convertors) now match what the framework routes; anything else is a
``ValueError`` at construction."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ajwt_core.errors import Reason
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.rs import AJWTMiddleware, Route, RoutePolicy, Verifier
from ajwt_core.rs.middleware import RouteTable, resolve_policy
from ajwt_core.rs.wsgi import AJWTWSGIMiddleware
from ajwt_core.tokens import encode_intent_token
from tests.rs.conftest import Caller
from tests.rs.test_route_methods import call
from tests.support import AUDIENCE, ClaimsFactory

# The caller's token has repo:read and repo:write (tests/rs/conftest.py): not refunds.
REFUND = RoutePolicy.of(scopes=["refunds:write"])
ran: list[str] = []


def flask_refunds(verifier: Verifier, path: str) -> Any:
    app = Flask(__name__)

    @app.post("/orders/<int:order>/refund")
    def refund(order: int) -> dict[str, int]:
        ran.append(f"refund {order}")
        return {"refunded": order}

    @app.get("/files/<path:name>")
    def files(name: str) -> dict[str, str]:
        ran.append(f"file {name}")
        return {"file": name}

    routes = [Route("POST", path, REFUND), Route("GET", "/files/<path:name>", REFUND)]
    return AJWTWSGIMiddleware(app.wsgi_app, verifier=verifier, routes=routes)


def starlette_refunds(verifier: Verifier, path: str) -> Any:
    async def refund(request: Request) -> JSONResponse:
        ran.append(f"refund {request.path_params['order']}")
        return JSONResponse({"refunded": request.path_params["order"]})

    async def files(request: Request) -> JSONResponse:
        ran.append(f"file {request.path_params['name']}")
        return JSONResponse({"file": request.path_params["name"]})

    app = Starlette(
        routes=[
            StarletteRoute("/orders/{order:int}/refund", refund, methods=["POST"]),
            StarletteRoute("/files/{name:path}", files),
        ]
    )
    routes = [Route("POST", path, REFUND), Route("GET", "/files/{name:path}", REFUND)]
    return AJWTMiddleware(app, verifier=verifier, routes=routes)


CASES = [
    ("flask", "/orders/<int:order>/refund"),
    ("flask", "/orders/<order>/refund"),
    ("starlette", "/orders/{order:int}/refund"),
    ("starlette", "/orders/{order}/refund"),
]


@pytest.mark.parametrize(("framework", "path"), CASES)
def test_a_parameterised_route_holds_its_policy(
    framework: str, path: str, caller: Caller, verifier: Verifier
) -> None:
    ran.clear()
    wsgi = framework == "flask"
    app = (flask_refunds if wsgi else starlette_refunds)(verifier, path)
    # The attack: a valid token without the route's scope, at the refund view.
    refused = call(app, wsgi, caller, "POST", "/orders/7/refund")
    assert refused.status_code == 403
    assert refused.json()["ajwt_reason"] == Reason.SCOPE_EXCEEDED.value
    assert ran == []
    # A path parameter matching several segments is covered as well.
    deep = call(app, wsgi, caller, "GET", "/files/a/b/c.txt")
    assert deep.status_code == 403
    assert ran == []


@pytest.mark.parametrize("framework", ["flask", "starlette"])
def test_a_token_with_the_routes_scope_passes(
    framework: str,
    verifier: Verifier,
    idp_keys: SigningKeySet,
    agent_key: PopKey,
    make_claims: ClaimsFactory,
) -> None:
    ran.clear()
    wsgi = framework == "flask"
    path = "/orders/<int:order>/refund" if wsgi else "/orders/{order:int}/refund"
    app = (flask_refunds if wsgi else starlette_refunds)(verifier, path)
    token = encode_intent_token(make_claims(scope="refunds:write"), idp_keys.active)
    refunder = Caller(token=token, key=agent_key)
    assert call(app, wsgi, refunder, "POST", "/orders/7/refund").json() == {"refunded": 7}
    assert call(app, wsgi, refunder, "GET", "/files/a/b.txt").json() == {"file": "a/b.txt"}
    assert ran == ["refund 7", "file a/b.txt"]


def test_a_parameter_matches_any_segment_whatever_its_convertor() -> None:
    # Never narrower than the framework: a segment Flask's int convertor would also
    # refuse still gets the route's policy here (the framework then answers 404).
    table = RouteTable([Route("POST", "/orders/<int:order>/refund", REFUND)], default=None)
    assert table("POST", "/orders/seven/refund") is REFUND
    assert table("POST", "/orders/7/refund/extra") is None
    assert table("POST", "/orders//refund") is None  # an empty segment is no parameter


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/orders/:order/refund", "not ':order'"),
        ("/orders/{order/refund", "'{' outside a parameter"),
        ("/orders/<order/refund", "'<' outside a parameter"),
        ("/orders/{}/refund", "'{' outside a parameter"),
        ("/orders/{order:money}/refund", "unknown convertor 'money'"),
        ("/orders/<money:order>/refund", "unknown convertor 'money'"),
        ("orders", "starts with '/'"),
    ],
)
def test_a_template_it_cannot_read_is_refused_when_declared(path: str, says: str) -> None:
    with pytest.raises(ValueError, match="route path") as refused:
        Route("POST", path, REFUND)
    assert says in str(refused.value)


# ---------------------------------------------------- mounted apps, route order


def test_a_mounted_asgi_app_keeps_its_route_policies(caller: Caller, verifier: Verifier) -> None:
    # Found by a probe (high): under a Mount (or uvicorn --root-path), the table was
    # matched against the full path, so the app's own templates matched nothing and
    # the refund fell to default, which any token of the audience met.
    ran.clear()
    inner = starlette_refunds(verifier, "/orders/{order:int}/refund")
    outer = Starlette(routes=[Mount("/api", app=inner)])
    refused = call(outer, False, caller, "POST", "/api/orders/7/refund")
    assert refused.status_code == 403
    assert refused.json()["ajwt_reason"] == Reason.SCOPE_EXCEEDED.value
    assert ran == []


def test_an_app_behind_a_root_path_keeps_its_route_policies(
    caller: Caller, verifier: Verifier
) -> None:
    ran.clear()
    app = starlette_refunds(verifier, "/orders/{order:int}/refund")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path="/prefix")
        async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
            path = "/prefix/orders/7/refund"
            return await http.post(path, headers=caller.headers("POST", AUDIENCE + path))

    refused = asyncio.run(go())
    assert refused.status_code == 403
    assert refused.json()["ajwt_reason"] == Reason.SCOPE_EXCEEDED.value
    assert ran == []


def test_a_wsgi_app_mounted_below_a_script_name_keeps_its_route_policies(
    caller: Caller, verifier: Verifier
) -> None:
    ran.clear()
    guarded = flask_refunds(verifier, "/orders/<int:order>/refund")
    mounted = DispatcherMiddleware(lambda e, s: [], {"/api": guarded})
    refused = call(mounted, True, caller, "POST", "/api/orders/7/refund")
    assert refused.status_code == 403
    assert refused.json()["ajwt_reason"] == Reason.SCOPE_EXCEEDED.value
    assert ran == []


def test_routes_written_from_the_server_root_still_apply_under_a_mount() -> None:
    # A table written with the full paths keeps working: either spelling matches.
    table = RouteTable([Route("POST", "/api/orders/{order}/refund", REFUND)], default=None)
    assert resolve_policy(table, "POST", "/orders/7/refund", "/api/orders/7/refund") is REFUND
    assert resolve_policy(table, "POST", "/health", "/api/health") is None


@pytest.mark.parametrize("reverse", [False, True], ids=["general first", "specific first"])
def test_the_most_specific_route_wins_whatever_the_order(reverse: bool) -> None:
    # Found by a probe (medium): with /files/<path:name> listed first, a read_file token
    # reached /files/secret, which Flask routes to its own, more specific view.
    reading = RoutePolicy.of(scopes=["repo:read"])
    routes = [Route("GET", "/files/<path:name>", reading), Route("GET", "/files/secret", REFUND)]
    table = RouteTable(routes[::-1] if reverse else routes, default=None)
    assert table("GET", "/files/secret") is REFUND
    assert table("GET", "/files/notes.txt") is reading
    assert table("GET", "/files/a/secret") is reading
    one = RouteTable(
        [Route("GET", "/repos/{repo}", reading), Route("GET", "/repos/acme", REFUND)], None
    )
    assert one("GET", "/repos/acme") is REFUND and one("GET", "/repos/other") is reading
