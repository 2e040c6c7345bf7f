"""``AJWTWSGIMiddleware``: the resource-server check for WSGI apps (Flask, Django's WSGI
handler, Bottle, Pyramid...), over the same :class:`~ajwt_core.rs.Verifier` as the ASGI
middleware (DESIGN §7).

The verifier is asynchronous (its JWKS, replay and revocation stores may do I/O); a WSGI
worker thread waits for it on one event loop the middleware runs in a thread of its
own, so the stores' caches and connections live on a single loop whichever thread
serves the request. The verified request is put in ``environ["ajwt"]``
(:class:`~ajwt_core.rs.VerifiedRequest`); the app reads the body as usual (the
middleware read it to check the proof's ``bh`` and hands it on). A refusal is the
RFC 6750 / RFC 9449 response with the OAuth error body, never a 500.

>>> from ajwt_core.keys import SigningKeySet
>>> from ajwt_core.rs import Route, RoutePolicy, Verifier
>>> verifier = Verifier(issuer="https://idp.example", audience="https://api.example",
...                     keys=SigningKeySet.generate().verification_keys())
>>> def app(environ, start_response):
...     start_response("200 OK", [("Content-Type", "text/plain")])
...     return [b"hello"]
>>> protected = AJWTWSGIMiddleware(app, verifier=verifier)
>>> status = []
>>> environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/repos", "SERVER_NAME": "api.example",
...            "SERVER_PORT": "443", "wsgi.url_scheme": "https", "HTTP_HOST": "api.example"}
>>> body = protected(environ, lambda s, h: status.append(s))
>>> status, json.loads(b"".join(body))["ajwt_reason"]
(['401 Unauthorized'], 'missing_token')
>>> protected.close()
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import quote

from ajwt_core.errors import (
    AJWTError,
    HeadersTooLarge,
    InvalidRequest,
    Reason,
    RequestTooLarge,
)
from ajwt_core.request_limits import content_length
from ajwt_core.rs.middleware import PolicyResolver, Route, RouteTable, resolve_policy
from ajwt_core.rs.origins import AllowedOrigins
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.verifier import VerifiedRequest, Verifier, refusal_response

log = logging.getLogger("ajwt_core.rs")

# The WSGI types, spelled out so the middleware needs no web framework installed.
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
T = TypeVar("T")

_REQUIRE_TOKEN = RoutePolicy()
#: How long a request waits for the verifier (JWKS, Redis, the IdP's status endpoint).
VERIFY_TIMEOUT = 30.0
_PATH_SAFE = "/!$&'()*+,;=:@"


class _LoopThread:
    """One event loop in a daemon thread; coroutines from any thread run on it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        loop = self._started()
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="ajwt-wsgi-verifier", daemon=True
                ).start()
                self._loop = loop
            return self._loop

    def started(self) -> bool:
        with self._lock:
            return self._loop is not None and not self._loop.is_closed()

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


class AJWTWSGIMiddleware:
    """Verify A-JWT on each request whose route has a policy, before the WSGI app runs.

    The arguments are :class:`~ajwt_core.rs.AJWTMiddleware`'s: ``routes`` (a list of
    :class:`~ajwt_core.rs.Route` or ``(method, path) -> policy``), ``default`` (the
    policy of unmatched requests; ``None`` lets them through), ``base_url`` (this
    server's public origin(s); default: the verifier's ``audience``) and
    ``trusted_proxies``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        verifier: Verifier,
        routes: Sequence[Route] | PolicyResolver = (),
        default: RoutePolicy | None = _REQUIRE_TOKEN,
        base_url: str | Sequence[str] | None = None,
        trusted_proxies: Collection[str] = (),
        max_body_bytes: int = 1 << 20,
        max_header_bytes: int = 32 * 1024,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.policy_for: PolicyResolver = (
            routes if callable(routes) else RouteTable(list(routes), default)
        )
        self.origins = AllowedOrigins.of(verifier.audience, base_url, trusted_proxies)
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self._loop = _LoopThread()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        # The app routes on PATH_INFO, below its mount point (SCRIPT_NAME).
        below = str(environ.get("PATH_INFO", "")) or "/"
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        policy = resolve_policy(self.policy_for, method, below, path)
        if policy is None or policy.public:
            return self.app(environ, start_response)
        nonce = self.verifier.nonces.issue() if self.verifier.nonces else None
        try:
            headers = _headers(environ)
            scope = {
                "type": "http",
                "scheme": environ.get("wsgi.url_scheme", "http"),
                "path": path,
                "root_path": "",
                "headers": headers,
                "client": (environ.get("REMOTE_ADDR", ""), 0),
            }
            # The path as sent (gunicorn: RAW_URI, uWSGI and Werkzeug: REQUEST_URI); else
            # PATH_INFO (decoded, as latin-1 text of its bytes) encoded again.
            raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
            if isinstance(raw, str) and raw.startswith("/"):
                scope["raw_path"] = raw.encode("latin-1", "replace")
            else:
                scope["raw_path"] = _encoded(path).encode("ascii")
            # Sizes first: nothing of an oversized request is looked at further.
            if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
                raise HeadersTooLarge(Reason.REQUEST_TOO_LARGE, "the request headers are too large")
            url = self.origins.request_url(scope)  # then the Host check
            body = self._read_body(environ)
            verified: VerifiedRequest = self._loop.run(
                self.verifier.verify(
                    method=method,
                    url=url,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                    body=body,
                    policy=policy,
                ),
                VERIFY_TIMEOUT,
            )
        except AJWTError as exc:
            return _refusal(start_response, exc, nonce, method)
        except Exception:
            log.exception("unexpected error while verifying a request")
            error = InvalidRequest(Reason.MALFORMED_REQUEST, "the request cannot be verified")
            return _refusal(start_response, error, nonce, method)
        environ["ajwt"] = verified
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _read_body(self, environ: Environ) -> bytes:
        """The whole body (bounded). Without ``CONTENT_LENGTH`` there is none, unless the
        server says the input ends by itself (``wsgi.input_terminated``, chunked)."""
        stream = environ.get("wsgi.input")
        declared = str(environ.get("CONTENT_LENGTH") or "").strip()
        if stream is None:
            return b""
        if declared:
            length = content_length(declared)
            assert length is not None
            if length > self.max_body_bytes:
                raise RequestTooLarge(Reason.REQUEST_TOO_LARGE, "the request body is too large")
            return bytes(stream.read(length))
        if environ.get("wsgi.input_terminated"):
            body = bytes(stream.read(self.max_body_bytes + 1))
            if len(body) > self.max_body_bytes:
                raise RequestTooLarge(Reason.REQUEST_TOO_LARGE, "the request body is too large")
            return body
        return b""

    def close(self) -> None:
        """Close the verifier on the loop it ran on (:meth:`Verifier.aclose`: the
        revocation feed, the JWKS client…), then stop the verifier's event loop (a new
        request starts both again)."""
        if self._loop.started():
            try:
                self._loop.run(self.verifier.aclose(), timeout=5.0)
            except Exception:  # shutting down: say so, and stop the loop anyway
                log.warning("the verifier did not close cleanly", exc_info=True)
        self._loop.close()


def verified_request(environ: Environ) -> VerifiedRequest:
    """The verified request the middleware put in ``environ`` (a ``KeyError`` if the
    route was not verified: a programming error, not a client's).

    In Flask: ``verified_request(flask.request.environ).claims``.
    """
    verified: VerifiedRequest = environ["ajwt"]
    return verified


def _headers(environ: Environ) -> list[tuple[bytes, bytes]]:
    """The request headers as ASGI has them (lower-case names, latin-1 bytes)."""
    found: list[tuple[bytes, bytes]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.replace("_", "-").lower()
        else:
            continue
        if value:
            found.append((name.encode("latin-1"), str(value).encode("latin-1", "replace")))
    return found


def _refusal(
    start_response: StartResponse, exc: AJWTError, nonce: str | None, method: str
) -> Iterable[bytes]:
    status, headers, body = refusal_response(exc, nonce)
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    # A HEAD answer has no content (RFC 9110 §9.3.2); its headers are the GET's.
    return [] if method == "HEAD" else [body]


def _encoded(path: str) -> str:
    """A decoded WSGI path (latin-1 text of its bytes) percent-encoded again."""
    return quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE)
