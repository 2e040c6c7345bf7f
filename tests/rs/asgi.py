"""Call an ASGI app with a hand-made scope (exact ``raw_path``, ``Host``, peer address),
as a server would: after the body, ``receive`` waits until the response is complete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        return self.json().get("ajwt_reason") if self.status >= 400 else None


async def call(
    app: Any,
    *,
    method: str = "GET",
    raw_path: bytes = b"/repos",
    path: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    scheme: str = "https",
    client: tuple[str, int] | None = ("203.0.113.7", 50123),
    root_path: str = "",
    host: str | None = "api.example",
) -> Reply:
    """One request; ``path`` defaults to ``raw_path`` as the server would decode it."""
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if host is not None:
        raw_headers.insert(0, (b"host", host.encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path if path is not None else unquote(raw_path.decode("ascii").split("?")[0]),
        "raw_path": raw_path,
        "root_path": root_path,
        "query_string": b"",
        "headers": raw_headers,
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    done = asyncio.Event()
    sent = False
    reply = Reply(0, {}, b"")

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = dict(message.get("headers", []))
        elif message["type"] == "http.response.body":
            reply.body += message.get("body", b"")
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    done.set()
    return reply


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers with the path it saw and the verified agent."""
    message = await receive()
    verified = scope.get("ajwt")
    payload = {
        "path": scope["path"],
        "body": message.get("body", b"").decode(),
        "agent": verified.claims.agent.id if verified and verified.claims else None,
    }
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})
