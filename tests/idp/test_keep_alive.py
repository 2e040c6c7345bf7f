"""Issue 12 §2: after any error the keep-alive connection stays usable. An exception that
reached uvicorn after the 500 was sent made it close the connection (and log a
traceback); every error is now a complete response and the same connection serves the
client's next request."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import exc as sa_exc

from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.server import BackgroundServer
from tests.idp.test_outages import ADMIN, ADMIN_HEADERS, captured_logs, client_addr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    server = BackgroundServer()
    db = tmp_path_factory.mktemp("keepalive") / "idp.db"
    app = create_app(IdPSettings(issuer=server.url, db_url=f"sqlite:///{db}", admin_token=ADMIN))
    server.start(app)
    yield server.url, app
    server.close()


def _fail_with(exc: Exception) -> Any:
    async def status(*_args: Any) -> Any:
        raise exc

    return status


ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "no credential": (401, {"method": "POST", "url": "/admin/clients", "json": {}}),
    "malformed json": (
        400,
        {
            "method": "POST",
            "url": "/admin/clients",
            "headers": ADMIN_HEADERS | {"Content-Type": "application/json"},
            "content": b"{",
        },
    ),
    "unknown path": (404, {"method": "GET", "url": "/nowhere"}),
    "wrong method": (405, {"method": "GET", "url": "/token"}),
    "nul in an id": (400, {"method": "GET", "url": "/runs/a%00b/status"}),
    "non-ascii bearer": (
        401,
        {
            "method": "GET",
            "url": "/runs/run-1/ledger",
            "headers": [(b"authorization", "Bearer é".encode())],
        },
    ),
    "headers too large": (
        431,
        {"method": "GET", "url": "/runs/run-1/status", "headers": {"X-Pad": "x" * 40_000}},
    ),
    "unexpected exception": (500, {"method": "GET", "url": "/runs/run-1/status"}),
    "database outage": (503, {"method": "GET", "url": "/runs/run-1/status"}),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_the_connection_serves_the_next_request_after_an_error(
    served: tuple[str, Any], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    url, app = served
    if case == "unexpected exception":
        monkeypatch.setattr(app.state.idp, "status", _fail_with(RuntimeError("a bug")))
    if case == "database outage":
        locked = sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))
        monkeypatch.setattr(app.state.idp, "status", _fail_with(locked))
    status, request = ERRORS[case]
    with captured_logs() as logs, httpx.Client(base_url=url, timeout=10) as http:
        connections = [client_addr(http.get("/.well-known/jwks.json"))]
        failed = http.request(**request)
        connections.append(client_addr(failed))
        after = http.get("/.well-known/oauth-authorization-server")
        connections.append(client_addr(after))
    assert failed.status_code == status, failed.text
    assert isinstance(failed.json()["error"], str)
    assert "Traceback" not in failed.text and "a bug" not in failed.text
    assert after.status_code == 200
    assert connections[0] == connections[1] == connections[2]
    # Nothing reached uvicorn: it logs no "Exception in ASGI application".
    assert not [r for r in logs.records if r.name.startswith("uvicorn")]
