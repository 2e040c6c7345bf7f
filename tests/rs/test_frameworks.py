"""Issue 12 §7: the middleware must not break the apps it protects.

Each app is served by uvicorn on 127.0.0.1 behind :class:`AJWTMiddleware` and answers a
legitimate A-JWT request in full. After the body, the app's ``receive`` is the server's
own, which waits for the client to leave: answering ``http.disconnect`` at once made
Django cancel every view (a 500) and cut Starlette's streaming responses short.
"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Security
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ajwt_core.rs import AJWTMiddleware, Verifier
from ajwt_core.rs.fastapi import install, require_intent
from ajwt_core.server import BackgroundServer
from ajwt_core.tokens import IntentTokenClaims
from tests.rs.conftest import Caller

BODY = json.dumps({"title": "Bump lodash", "head": "fix/lodash"}).encode()


@pytest.fixture
def serve(verifier: Verifier) -> Iterator[Callable[[Any], str]]:
    """Serve an app behind the middleware on 127.0.0.1; returns its URL."""
    servers: list[BackgroundServer] = []

    def start(app: Any) -> str:
        server = BackgroundServer()
        servers.append(server)
        server.start(AJWTMiddleware(app, verifier=verifier, base_url=server.url))
        return server.url

    yield start
    for server in servers:
        server.close()


def send(caller: Caller, method: str, url: str, body: bytes = b"") -> httpx.Response:
    headers = caller.headers(method, url, body) | {"content-type": "application/json"}
    with httpx.Client(timeout=10) as http:
        return http.request(method, url, content=body, headers=headers)


# ------------------------------------------------------------------------- Django


def _django_app() -> tuple[Any, types.ModuleType]:
    """The Django app and its URL module. Settings are configured once per process: a
    page of the docs run before this test (resource-servers.md) may have configured
    them with its own URLs, so the test serves its URLs with ``override_settings``."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only-not-a-secret",
            ALLOWED_HOSTS=["127.0.0.1"],
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    async def open_pull(request: HttpRequest, owner: str, name: str) -> JsonResponse:
        await asyncio.sleep(0.05)  # a view that takes a moment, as real ones do
        verified = request.scope["ajwt"]  # type: ignore[attr-defined]
        payload = json.loads(request.body)
        return JsonResponse(
            {"repo": f"{owner}/{name}", "title": payload["title"], "agent": verified.chain},
            status=201,
        )

    urls = types.ModuleType("ajwt_test_django_urls")
    urls.urlpatterns = [path("repos/<str:owner>/<str:name>/pulls", open_pull)]  # type: ignore[attr-defined]
    from django.core.asgi import get_asgi_application

    django = get_asgi_application()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # Django answers HTTP only; uvicorn asks lifespan
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await django(scope, receive, send)

    return app, urls


def test_django_view_is_served_in_full(serve: Callable[[Any], str], caller: Caller) -> None:
    from django.test.utils import override_settings

    app, urls = _django_app()
    with override_settings(ROOT_URLCONF=urls, ALLOWED_HOSTS=["127.0.0.1"], MIDDLEWARE=[]):
        url = serve(app)
        response = send(caller, "POST", url + "/repos/acme/storefront/pulls", BODY)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "repo": "acme/storefront",
        "title": "Bump lodash",
        "agent": ["supervisor", "planner"],
    }


# ---------------------------------------------------------------------- Starlette

CHUNKS = [f"line {i}\n".encode() for i in range(20)]


async def _lines() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        await asyncio.sleep(0.005)
        yield chunk


async def _export(_request: Any) -> StreamingResponse:
    return StreamingResponse(_lines(), media_type="text/plain")


def test_starlette_streaming_response_is_not_cut_off(
    serve: Callable[[Any], str], caller: Caller
) -> None:
    url = serve(Starlette(routes=[Route("/repos/acme/storefront/export", _export)]))
    response = send(caller, "GET", url + "/repos/acme/storefront/export")
    assert response.status_code == 200, response.text
    assert response.content == b"".join(CHUNKS)


async def _events(request: Any) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        for number in range(5):
            if await request.is_disconnected():  # the usual SSE loop: stop when they leave
                return
            await asyncio.sleep(0.005)
            yield f"id: {number}\nevent: advisory\ndata: {json.dumps({'n': number})}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


def test_server_sent_events_are_all_delivered(serve: Callable[[Any], str], caller: Caller) -> None:
    url = serve(Starlette(routes=[Route("/advisories/stream", _events)]))
    response = send(caller, "GET", url + "/advisories/stream")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    assert [json.loads(e.rsplit("data: ", 1)[1])["n"] for e in events] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------ FastAPI


class PullRequest(BaseModel):
    title: str
    head: str


def _fastapi_app(verifier: Verifier, base_url: str) -> FastAPI:
    app = FastAPI()
    install(app, verifier, base_url=base_url)
    writer = Security(require_intent(scopes=["repo:write"], agents=["planner"]))

    @app.post("/repos/{owner}/{name}/pulls", status_code=201)
    async def open_pull(
        owner: str, name: str, pull: PullRequest, claims: IntentTokenClaims = writer
    ) -> dict[str, Any]:
        return {"repo": f"{owner}/{name}", "title": pull.title, "agent": claims.agent.id}

    @app.get("/runs/{run}/status")
    async def wait_for_status(request: Request, run: str) -> JSONResponse:
        # A long poll: wait for news while the client is still there.
        for _ in range(5):
            if await request.is_disconnected():
                return JSONResponse({"status": "client left"}, status_code=499)
            await asyncio.sleep(0.01)
        return JSONResponse({"run": run, "status": "open"})

    return app


def test_fastapi_app_is_served_in_full(verifier: Verifier, caller: Caller) -> None:
    server = BackgroundServer()
    try:
        app = _fastapi_app(verifier, server.url)
        server.start(AJWTMiddleware(app, verifier=verifier, base_url=server.url))
        created = send(caller, "POST", server.url + "/repos/acme/storefront/pulls", BODY)
        assert created.status_code == 201, created.text
        assert created.json() == {
            "repo": "acme/storefront",
            "title": "Bump lodash",
            "agent": "planner",
        }
        status = send(caller, "GET", server.url + "/runs/run-1/status")
        assert status.status_code == 200, status.text
        assert status.json() == {"run": "run-1", "status": "open"}
    finally:
        server.close()
