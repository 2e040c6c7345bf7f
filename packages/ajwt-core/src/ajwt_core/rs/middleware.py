"""``AJWTMiddleware``: pure ASGI; verifies every matching request before the app sees it.

The verified request is put in ``scope["state"]["ajwt"]`` (Starlette's
``request.state.ajwt``). Refusals are RFC 6750 / RFC 9449 responses with a JSON OAuth
error body; no input, however malformed or large, reaches the app or yields a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from ajwt_core.errors import (
    AJWTError,
    HeadersTooLarge,
    InvalidRequest,
    Reason,
    RequestTooLarge,
)
from ajwt_core.integrity import HEADER as SHIM_HEADER

# The ASGI types, spelled out there so the middleware needs no web framework installed.
from ajwt_core.request_limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    content_length,
)
from ajwt_core.rs.origins import AllowedOrigins
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.verifier import Verifier, log_refusal, refusal_response

log = logging.getLogger("ajwt_core.rs")

PolicyResolver = Callable[[str, str], RoutePolicy | None]


# A path parameter as Starlette writes it (``{repo}``, ``{file:path}``) or as Flask,
# Werkzeug and Django write it (``<repo>``, ``<path:file>``, ``<any(a, b):kind>``).
_PARAMETER = re.compile(
    r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<convertor>[A-Za-z_]+))?\}"
    r"|<(?:(?P<kind>[A-Za-z_]+(?:\([^()<>]*\))?):)?(?P<arg>[A-Za-z_][A-Za-z0-9_]*)>"
)
# What a parameter of each convertor matches here: one segment, or (``path``) the rest.
# Never narrower than the framework's own match: a request the framework routes to the
# handler must meet the route's policy, so ``int`` or ``uuid`` match any one segment.
_ONE_SEGMENT = "[^/]+"
_CONVERTORS = {
    "str": _ONE_SEGMENT,
    "string": _ONE_SEGMENT,
    "int": _ONE_SEGMENT,
    "float": _ONE_SEGMENT,
    "uuid": _ONE_SEGMENT,
    "slug": _ONE_SEGMENT,
    "any": _ONE_SEGMENT,
    "path": ".*",
}


def path_pattern(path: str) -> re.Pattern[str]:
    """The regular expression a route's path template compiles to; a template this
    cannot read exactly is refused (``ValueError``), never matched against nothing,
    which would hand its requests to ``default``.

    >>> path_pattern("/repos/{repo}/pulls").pattern
    '^/repos/[^/]+/pulls$'
    >>> bool(path_pattern("/files/<path:name>").match("/files/a/b.txt"))
    True
    >>> try:
    ...     path_pattern("/orders/:order")
    ... except ValueError as refused:
    ...     print(str(refused)[-12:])
    not ':order'
    """
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r}: a path template starts with '/'")
    regex, end = [], 0
    for found in _PARAMETER.finditer(path):
        regex.append(_literal(path, path[end : found.start()]))
        convertor = found["convertor"] or (found["kind"] or "str").partition("(")[0]
        if convertor not in _CONVERTORS:
            raise ValueError(
                f"route path {path!r}: unknown convertor {convertor!r} (known: "
                f"{', '.join(sorted(_CONVERTORS))}; a parameter of another convertor can be "
                "declared as str, or as path if it matches several segments)"
            )
        regex.append(_CONVERTORS[convertor])
        end = found.end()
    regex.append(_literal(path, path[end:]))
    return re.compile("^" + "".join(regex) + "$")


def _literal(path: str, text: str) -> str:
    for mark in "{}<>":
        if mark in text:
            raise ValueError(
                f"route path {path!r}: {mark!r} outside a parameter; write a parameter "
                "as {name} or {name:path} (Starlette) or as <name> or <path:name> (Flask, "
                "Django)"
            )
    for segment in text.split("/"):
        if segment.startswith(":") and len(segment) > 1:
            raise ValueError(
                f"route path {path!r}: write a parameter as {{name}} (Starlette) or <name> "
                f"(Flask, Django), not {segment!r}"
            )
    return re.escape(text)


@dataclass(frozen=True)
class Route:
    """``method`` ("*" for any) and a path template: ``/repos/{repo}/pulls`` as Starlette
    writes it, or ``/repos/<repo>/pulls`` as Flask and Django do. A parameter matches
    one path segment whatever its convertor (``int``, ``uuid``...), except ``path``,
    which matches the rest of the path. A template with anything else in braces or angle
    brackets, or an Express-style ``:name`` segment, is refused when the route is built.

    >>> Route("POST", "/orders/<int:order>/refund", RoutePolicy()).pattern().pattern
    '^/orders/[^/]+/refund$'
    """

    method: str
    path: str
    policy: RoutePolicy

    def __post_init__(self) -> None:
        self.pattern()  # refuses a template it cannot read, when the route is declared

    def pattern(self) -> re.Pattern[str]:
        return path_pattern(self.path)


def _specificity(route: Route) -> tuple[int, int, int]:
    """Sort key: a route with fewer ``path`` parameters, then fewer one-segment ones,
    then more literal text, comes first."""
    found = list(_PARAMETER.finditer(route.path))
    rest = sum(
        1 for m in found if (m["convertor"] or (m["kind"] or "").partition("(")[0]) == "path"
    )
    literal = len(_PARAMETER.sub("", route.path))
    return (rest, len(found) - rest, -literal)


class RouteTable:
    """The most specific matching route wins, whatever the order the routes are listed in
    (fewer parameters first, a ``path`` parameter last, then the longer literal text), as
    Flask picks its rule: ``/files/secret`` keeps its policy beside ``/files/<path:name>``.
    ``HEAD`` takes a ``GET`` route's policy (RFC 9110 §9.3.2); a path with routes but none
    for the request's method is refused once the token is verified
    (``method_not_allowed``), never given ``default``: a framework that runs the view for
    any method (Django) or ``GET``'s handler for ``HEAD`` (Starlette, Flask) would
    otherwise serve it with no route policy. A path no route names gets ``default``
    (None: pass through).

    >>> table = RouteTable([Route("GET", "/repos", RoutePolicy.of(scopes=["repo:read"]))],
    ...                    default=RoutePolicy())
    >>> sorted(table("HEAD", "/repos").scopes)
    ['repo:read']
    >>> table("POST", "/repos").refuse
    'this route declares no policy for POST (it has: GET)'
    >>> table("POST", "/other") == RoutePolicy()
    True
    """

    def __init__(self, routes: Sequence[Route], default: RoutePolicy | None) -> None:
        ordered = sorted(routes, key=_specificity)  # stable: equal ones keep their order
        self._routes = [(r.method.upper(), r.pattern(), r.policy) for r in ordered]
        self.default = default

    def match(self, method: str, path: str) -> RoutePolicy | None:
        """The policy of the route that matches, or None if no route names ``path``."""
        declared: list[str] = []
        for route_method, pattern, policy in self._routes:
            if pattern.match(path):
                if route_method in ("*", method) or (method == "HEAD" and route_method == "GET"):
                    return policy
                declared.append(route_method)
        if declared:
            methods = ", ".join(sorted(set(declared)))
            return RoutePolicy(
                refuse=f"this route declares no policy for {method} (it has: {methods})"
            )
        return None

    def __call__(self, method: str, path: str) -> RoutePolicy | None:
        found = self.match(method, path)
        return found if found is not None else self.default


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` below the ``root_path`` it is mounted at (a
    Starlette ``Mount``, ``uvicorn --root-path``), as the framework reads it."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"
    return rest if rest.startswith("/") else path


def resolve_policy(
    policy_for: PolicyResolver, method: str, path: str, full_path: str
) -> RoutePolicy | None:
    """The policy of a request the app routes on ``path`` (below its mount point), whose
    path from the server's root is ``full_path``: a route written either way applies
    (the framework's own spelling first); ``default`` only if neither names it."""
    if isinstance(policy_for, RouteTable):
        found = policy_for.match(method, path)
        if found is None and full_path != path:
            found = policy_for.match(method, full_path)
        return found if found is not None else policy_for.default
    policy = policy_for(method, path)
    if policy is None and full_path != path:
        policy = policy_for(method, full_path)
    return policy


async def send_refusal(send: Send, exc: AJWTError, nonce: str | None = None) -> None:
    status, headers, body = refusal_response(exc, nonce)
    encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": encoded})
    await send({"type": "http.response.body", "body": body})


_REQUIRE_TOKEN = RoutePolicy()


def closing_on_shutdown(send: Send, verifier: Verifier) -> Send:
    """``send`` for an ASGI lifespan scope: the verifier is closed
    (:meth:`Verifier.aclose`) before the app's shutdown is reported to the server."""

    async def send_closing(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await verifier.aclose()
        await send(message)

    return send_closing


class CloseVerifierOnShutdown:
    """ASGI middleware that closes ``verifier`` when the server shuts the app down
    (lifespan); what :func:`~ajwt_core.rs.fastapi.install` adds."""

    def __init__(self, app: ASGIApp, *, verifier: Verifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            send = closing_on_shutdown(send, self.verifier)
        await self.app(scope, receive, send)


class AJWTMiddleware:
    """Verify A-JWT on each HTTP request whose route has a policy (DESIGN §7).

    ``routes`` is a list of :class:`Route` or a callable ``(method, path) -> policy``;
    ``default`` applies to requests no route matches (``None``: let them through
    unverified, e.g. health checks). ``base_url`` is this server's public origin (or a
    list of them), against which the proof's ``htu`` is checked; it defaults to the
    verifier's ``audience`` when that is an ``http(s)`` origin, and construction fails
    otherwise. A verified request whose ``Host`` is not one of them is refused
    (``host_not_allowed``). ``trusted_proxies`` (addresses or networks) are the peers whose
    ``Forwarded`` / ``X-Forwarded-*`` headers may name the origin instead of ``Host``.

    >>> from ajwt_core.keys import SigningKeySet
    >>> verifier = Verifier(issuer="https://idp.example", audience="https://api.example",
    ...                     keys=SigningKeySet.generate().verification_keys())
    >>> async def app(scope, receive, send): ...
    >>> [o.url for o in AJWTMiddleware(app, verifier=verifier).origins.origins]
    ['https://api.example']
    >>> middleware = AJWTMiddleware(app, verifier=verifier, trusted_proxies=["10.0.0.0/8"],
    ...                             base_url=["https://api.example", "http://api.internal:8000"])
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        routes: Sequence[Route] | PolicyResolver = (),
        default: RoutePolicy | None = _REQUIRE_TOKEN,
        base_url: str | Sequence[str] | None = None,
        trusted_proxies: Collection[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.verifier = verifier
        self.policy_for: PolicyResolver = (
            routes if callable(routes) else RouteTable(list(routes), default)
        )
        self.origins = AllowedOrigins.of(verifier.audience, base_url, trusted_proxies)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = closing_on_shutdown(send, self.verifier)
            await self.app(scope, receive, send)
            return
        full_path = str(scope["path"])
        policy = resolve_policy(self.policy_for, scope["method"], route_path(scope), full_path)
        if policy is None or policy.public:
            await self.app(scope, receive, send)
            return
        nonce = self.verifier.nonces.issue() if self.verifier.nonces else None
        try:
            # Sizes first: nothing of an oversized request is looked at further.
            size, declared, headers = _scan_headers(scope["headers"])
            if size > self.max_header_bytes:
                raise HeadersTooLarge(Reason.REQUEST_TOO_LARGE, "the request headers are too large")
            url = self.origins.request_url(scope)  # then the Host check
            body, disconnected = await self._read_body(declared, receive)
        except AJWTError as exc:
            # Refused before the verifier saw it (which logs its own refusals).
            log_refusal(exc, None, scope["method"], scope.get("path", ""))
            await send_refusal(send, exc, nonce)
            return
        try:
            verified = await self.verifier.verify(
                method=scope["method"], url=url, headers=headers, body=body, policy=policy
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
        await self.app(scope, _replay(body, receive, disconnected), send)

    async def _read_body(self, declared: bytes | None, receive: Receive) -> tuple[bytes, bool]:
        """The whole body (bounded), and whether the client disconnected meanwhile."""
        length = content_length(declared)
        if length is not None and length > self.max_body_bytes:
            raise RequestTooLarge(Reason.REQUEST_TOO_LARGE, "the request body is too large")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestTooLarge(Reason.REQUEST_TOO_LARGE, "the request body is too large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


#: The headers the verifier reads; the others are neither decoded nor passed on.
_VERIFIED_HEADERS = frozenset({b"authorization", b"dpop", SHIM_HEADER.lower().encode()})


def _scan_headers(
    raw: Iterable[tuple[bytes, bytes]],
) -> tuple[int, bytes | None, list[tuple[str, str]]]:
    """In one pass: the headers' total size, the (last) ``Content-Length``, and the
    headers the verifier reads, decoded."""
    size = 0
    declared: bytes | None = None
    wanted: list[tuple[str, str]] = []
    for name, value in raw:
        size += len(name) + len(value)
        lowered = name.lower()
        if lowered in _VERIFIED_HEADERS:
            wanted.append((lowered.decode("latin-1"), value.decode("latin-1")))
        elif lowered == b"content-length":
            declared = value
    return size, declared, wanted


def _replay(body: bytes, receive: Receive, disconnected: bool) -> Receive:
    """The app's ``receive``: the body read for verification, then the server's own
    ``receive``, which waits for the client to go away. Answering ``http.disconnect``
    at once would make Django cancel the view and Starlette cut a streaming response."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if disconnected:
            return {"type": "http.disconnect"}
        return await receive()

    return replay
