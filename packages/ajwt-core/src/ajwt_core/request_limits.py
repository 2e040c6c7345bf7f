"""Pure ASGI limits on what a request may make the server hold before anything reads it.

uvicorn does not bound a request body, nor does FastAPI before its ``max_body_size``
(this package supports FastAPI from 0.115): an endpoint that reads the body, or a
dependency that does (``require_intent`` must, to check the proof's ``bh``), holds all of
it in memory. :class:`RequestLimits` refuses oversized headers
(431) and bodies (413) with an OAuth error body, before any of it is parsed: by the
declared ``Content-Length`` at once, and by counting what arrives otherwise (chunked
bodies). The IdP and ``ajwt_core.rs.fastapi.install`` put it in front of their apps.

>>> async def app(scope, receive, send): ...
>>> limited = RequestLimits(app, max_body_bytes=1 << 20)
>>> limited.max_body_bytes, limited.max_header_bytes
(1048576, 32768)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ajwt_core.errors import (
    AJWTError,
    HeadersTooLarge,
    InvalidRequest,
    Reason,
    RequestTooLarge,
)

# The ASGI types, spelled out: this module needs no web framework (the resource
# server's middleware uses its defaults without any extra installed).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The defaults of the resource server's limits (``AJWTMiddleware``'s too).
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_HEADER_BYTES = 32 * 1024


def content_length(value: bytes | str | None) -> int | None:
    """A ``Content-Length`` value as a number (``None`` if absent): ASCII digits, with the
    optional whitespace around a field value (RFC 9110 §5.5); anything else is
    :class:`InvalidRequest` (``str.isdigit`` would also admit "²", which ``int`` refuses).

    >>> content_length(b" 22 "), content_length(None)
    (22, None)
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(" \t")
    if not (text.isascii() and text.isdigit()):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, "Content-Length is not a number")
    return int(text)


class BodyTooLarge(Exception):
    """Raised by :class:`RequestLimits`'s ``receive`` once a body passes the bound: the
    limit answers 413 when it reaches it; a framework that reads the body itself may
    answer it (the IdP's JSON routes do)."""


class RequestLimits:
    """Pure ASGI: refuse oversized headers (431) and bodies (413) with an OAuth error body,
    before any of it is parsed."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(k) + len(v) for k, v in scope["headers"])
        if header_bytes > self.max_header_bytes:
            await _send_error(send, HeadersTooLarge(Reason.REQUEST_TOO_LARGE, _HEADERS))
            return
        try:
            declared = content_length(dict(scope["headers"]).get(b"content-length"))
        except InvalidRequest as malformed:
            await _send_error(send, malformed)
            return
        if declared is not None and declared > self.max_body_bytes:
            await _send_error(send, RequestTooLarge(Reason.REQUEST_TOO_LARGE, _BODY))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except BodyTooLarge:
            if started:  # the app answered before reading all of it: nothing to add
                return
            await _send_error(send, RequestTooLarge(Reason.REQUEST_TOO_LARGE, _BODY))


_HEADERS = "request headers too large"
_BODY = "request body too large"


async def _send_error(send: Send, exc: AJWTError) -> None:
    status = exc.status_code
    body = json.dumps(exc.to_oauth()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
