"""What every IdP response passes through on its way out (pure ASGI).

:class:`ErrorBoundary` is the outermost layer: no exception leaves the application. A
backend outage is ``503 temporarily_unavailable`` with ``Retry-After`` (logged once per
outage by :class:`~ajwt_core.idp.outages.Outages`); anything else unexpected is logged
(with its traceback the first time that cause is seen) and answered 500 as a last
resort. Either way the response is complete, so the keep-alive connection serves the
client's next request; an exception re-raised to the server would close it.

:class:`NoStore` marks responses ``Cache-Control: no-store`` (RFC 6749 §5.1): tokens,
client secrets and per-caller state are never kept by a cache.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ajwt_core.idp.outages import RETRY_AFTER_SECONDS, Outages, backend_of, unavailable

log = logging.getLogger("ajwt_core.idp")

#: Distinct unexpected causes whose traceback has been logged (bounded).
_MAX_CAUSES_REMEMBERED: Final = 1000
_NO_STORE: Final = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


class ErrorBoundary:
    """Turn any exception that escaped the app into a complete JSON error response."""

    def __init__(self, app: ASGIApp, outages: Outages) -> None:
        self.app = app
        self.outages = outages
        self._causes_logged: set[tuple[str, str, int]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last resort: answered, never re-raised
            backend = backend_of(exc)
            if backend is not None:
                self.outages.down(backend, exc)
                body = unavailable(backend).to_oauth()
                status, headers = 503, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            else:
                self._log_unexpected(exc)
                body = {"error": "server_error", "error_description": "internal error"}
                status, headers = 500, []
            if started:
                return  # the response is under way; nothing more can be said on it
            await _send_json(send, status, body, headers)

    def _log_unexpected(self, exc: Exception) -> None:
        # A cause is the exception type and the line that raised it.
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("?", 0)
        cause = (type(exc).__name__, *where)
        if cause in self._causes_logged:
            log.error("unexpected IdP error again: %s at %s:%d", *cause)
            return
        if len(self._causes_logged) < _MAX_CAUSES_REMEMBERED:
            self._causes_logged.add(cause)
        log.error("unexpected IdP error", exc_info=exc)


class NoStore:
    """``Cache-Control: no-store`` and ``Pragma: no-cache`` on every response but the
    public discovery documents under ``/.well-known/``, unless a route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/.well-known/"):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    message = {**message, "headers": headers + _NO_STORE}
            await send(message)

        await self.app(scope, receive, send_no_store)


class HeadAsGet:
    """``HEAD`` answered as ``GET`` without the body (RFC 9110 §9.3.2: a server MUST
    support ``HEAD`` wherever it supports ``GET``): the routes see a ``GET``, the client
    gets its status and headers, ``Content-Length`` included, and no content."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body: nothing to send
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *_NO_STORE,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
