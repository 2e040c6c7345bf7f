"""``AJWTMiddleware``: pure ASGI; verifies every matching request before the app sees it.

The verified request is put in ``scope["state"]["ajwt"]`` (Starlette's
``request.state.ajwt``). Refusals are RFC 6750 / RFC 9449 responses with a JSON OAuth
error body; no input, however malformed or large, reaches the app or yields a 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from ajwt_core.errors import AJWTError, InvalidRequest, Reason, UseDPoPNonce
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.verifier import Verifier, www_authenticate

log = logging.getLogger("ajwt_core.rs")

# The ASGI types, spelled out so the middleware needs no web framework installed.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PolicyResolver = Callable[[str, str], RoutePolicy | None]


@dataclass(frozen=True)
class Route:
    """``method`` ("*" for any) and a path template like ``/repos/{repo}/pulls``."""

    method: str
    path: str
    policy: RoutePolicy

    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"(\{[^/{}]+\})", self.path)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{regex}$")


class RouteTable:
    """First matching route wins; unmatched requests get ``default`` (None: pass through)."""

    def __init__(self, routes: Sequence[Route], default: RoutePolicy | None) -> None:
        self._routes = [(r.method.upper(), r.pattern(), r.policy) for r in routes]
        self._default = default

    def __call__(self, method: str, path: str) -> RoutePolicy | None:
        for route_method, pattern, policy in self._routes:
            if route_method in ("*", method) and pattern.match(path):
                return policy
        return self._default


async def send_refusal(send: Send, exc: AJWTError, nonce: str | None = None) -> None:
    status = 401 if isinstance(exc, UseDPoPNonce) else exc.status_code
    if exc.reason == Reason.REQUEST_TOO_LARGE:
        status = 413
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
    ]
    if status in (401, 403):
        headers.append((b"www-authenticate", www_authenticate(exc).encode("latin-1", "replace")))
    if nonce:
        headers.append((b"dpop-nonce", nonce.encode("ascii")))
    body = json.dumps(exc.to_oauth()).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def request_url(scope: Scope, base_url: str | None) -> str:
    """The URL the client called (for ``htu``): ``base_url`` + path when configured."""
    path = str(scope.get("root_path", "")) + str(scope["path"])
    if base_url:
        return base_url.rstrip("/") + path
    headers = dict(scope["headers"])
    host = headers.get(b"host", b"").decode("latin-1")
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}{path}"


_REQUIRE_TOKEN = RoutePolicy()


class AJWTMiddleware:
    """Verify A-JWT on each HTTP request whose route has a policy (DESIGN §7).

    ``routes`` is a list of :class:`Route` or a callable ``(method, path) -> policy``;
    ``default`` applies to requests no route matches (``None``: let them through
    unverified, e.g. health checks). ``base_url`` pins the public URL used for ``htu``
    instead of trusting the ``Host`` header.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        routes: Sequence[Route] | PolicyResolver = (),
        default: RoutePolicy | None = _REQUIRE_TOKEN,
        base_url: str | None = None,
        max_body_bytes: int = 1 << 20,
        max_header_bytes: int = 32 * 1024,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.verifier = verifier
        self.policy_for: PolicyResolver = (
            routes if callable(routes) else RouteTable(list(routes), default)
        )
        self.base_url = base_url
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy_for(scope["method"], scope["path"])
        if policy is None or policy.public:
            await self.app(scope, receive, send)
            return
        nonce = self.verifier.nonces.issue() if self.verifier.nonces else None
        try:
            if sum(len(k) + len(v) for k, v in scope["headers"]) > self.max_header_bytes:
                raise InvalidRequest(Reason.REQUEST_TOO_LARGE, "the request headers are too large")
            body = await self._read_body(scope, receive)
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            verified = await self.verifier.verify(
                method=scope["method"],
                url=request_url(scope, self.base_url),
                headers=headers,
                body=body,
                policy=policy,
            )
        except AJWTError as exc:
            await send_refusal(send, exc, nonce)
            return
        except Exception:
            log.exception("unexpected error while verifying a request")
            await send_refusal(
                send, InvalidRequest(Reason.MALFORMED_REQUEST, "the request cannot be verified")
            )
            return
        scope.setdefault("state", {})["ajwt"] = verified
        scope["ajwt"] = verified
        await self.app(scope, _replay(body), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise InvalidRequest(Reason.REQUEST_TOO_LARGE, "the request body is too large")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise InvalidRequest(Reason.REQUEST_TOO_LARGE, "the request body is too large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
