"""uvicorn settings that hold up against slow or greedy clients (issue 12 §5).

uvicorn has no deadline for reading a request: a connection that sends a header byte
every few seconds, or nothing at all, is held open for ever, and enough of them exhaust
the process's file descriptors. Its ``limit_concurrency`` does not help: it counts those
connections too and answers the *legitimate* requests with 503. Its httptools parser
(chosen whenever httptools is installed) has no bound on the size of a request head.

:class:`GuardedHttpProtocol` is uvicorn's httptools protocol with the missing parts:

* the request head (request line and headers) must arrive within ``head_timeout``
  seconds of the connection being ready for it (opened, or its previous response sent),
  and the body within ``body_timeout`` seconds of the head: both are total deadlines, so
  a byte now and then does not extend them. A connection that sent nothing is closed
  silently; one with a partial head gets ``408`` with an OAuth error body.
* a head larger than ``max_head_bytes`` is refused with ``431`` and an OAuth error body,
  before more of it is buffered (the IdP's own, smaller limit answers first).
* at most ``max_connections`` connections are open: a new connection beyond that closes
  the connection that has waited longest for a request head (an idle or slow one; a
  connection whose request is being served is never closed), and only when every open
  connection is being served is the new one refused with ``503``.

So a slow or idle connection holds a slot for at most ``head_timeout`` seconds, the slots
are bounded below the descriptor limit, each slot buffers at most ``max_head_bytes``, and
a legitimate client, which sends its head at once, is served.

>>> limits = ServerLimits(head_timeout=5)
>>> limits.head_timeout, limits.max_head_bytes
(5.0, 65536)
>>> sorted(uvicorn_options(limits))
['backlog', 'http', 'timeout_keep_alive']
"""

from __future__ import annotations

import asyncio
import functools
import json
import resource
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from ajwt_core.errors import AJWTError, InvalidRequest, Reason, ServerError

#: Connections kept open per process unless the descriptor limit is lower.
DEFAULT_MAX_CONNECTIONS = 1024
#: Descriptors left for everything else: database and Redis pools, the key file, logs.
RESERVED_DESCRIPTORS = 128


def default_max_connections() -> int:
    """``DEFAULT_MAX_CONNECTIONS``, lowered to stay ``RESERVED_DESCRIPTORS`` below the
    process's soft descriptor limit (``ulimit -n``), so ``accept()`` never fails."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, min(DEFAULT_MAX_CONNECTIONS, soft - RESERVED_DESCRIPTORS))


@dataclass(frozen=True)
class ServerLimits:
    """How long and how much a server waits for a request, and how many connections."""

    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_head_bytes: int = 64 * 1024
    #: ``None``: :func:`default_max_connections` when the server starts.
    max_connections: int | None = None
    #: Idle time allowed between requests on a kept-alive connection (uvicorn's own).
    keep_alive_timeout: int = 5
    backlog: int = 2048

    def __post_init__(self) -> None:
        object.__setattr__(self, "head_timeout", float(self.head_timeout))
        object.__setattr__(self, "body_timeout", float(self.body_timeout))


def uvicorn_options(limits: ServerLimits | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` applying ``limits``.

    The protocol is a :func:`functools.partial` of a module-level class, so it pickles
    into ``--workers`` processes.
    """
    limits = limits or ServerLimits()
    return {
        "http": functools.partial(GuardedHttpProtocol, limits=limits),
        "timeout_keep_alive": limits.keep_alive_timeout,
        "backlog": limits.backlog,
    }


# The connections of one server waiting for a request head, oldest first: the ones a new
# connection may displace. A dict keeps insertion order and removes in O(1).
_waiting_by_server: weakref.WeakKeyDictionary[ServerState, dict[GuardedHttpProtocol, None]] = (
    weakref.WeakKeyDictionary()
)


def _error_response(status: int, error: AJWTError, extra: tuple[bytes, ...] = ()) -> bytes:
    body = json.dumps(error.to_oauth()).encode()
    head = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"cache-control: no-store\r\n",
        *extra,
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body


_HEAD_TOO_LARGE = _error_response(
    431, InvalidRequest(Reason.REQUEST_TOO_LARGE, "request headers too large")
)
_HEAD_TIMEOUT = _error_response(
    408, InvalidRequest(Reason.REQUEST_TIMEOUT, "the request head did not arrive in time")
)
_BODY_TIMEOUT = _error_response(
    408, InvalidRequest(Reason.REQUEST_TIMEOUT, "the request body did not arrive in time")
)
_TOO_MANY_CONNECTIONS = _error_response(
    503,
    ServerError(Reason.SERVICE_UNAVAILABLE, "too many open connections; retry shortly"),
    (b"retry-after: 1\r\n",),
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines, a head-size bound and a
    connection cap (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits or ServerLimits()
        self._max_connections = self._limits.max_connections or default_max_connections()
        self._waiting = _waiting_by_server.setdefault(server_state, {})
        self._deadline: asyncio.TimerHandle | None = None
        # Bytes of the request head read so far; None while a head is not expected.
        self._head_bytes: int | None = 0

    # ------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections and not self._displace_oldest_waiting():
            self._refuse(_TOO_MANY_CONNECTIONS)
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        self._cancel_deadline()
        super().connection_lost(exc)

    def _displace_oldest_waiting(self) -> bool:
        for victim in self._waiting:
            if victim is not self:
                victim._waiting.pop(victim, None)
                victim._cancel_deadline()
                victim.transport.close()
                return True
        return False

    def _refuse(self, response: bytes) -> None:
        self._waiting.pop(self, None)
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    # ------------------------------------------------------------ deadlines

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, callback)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _await_head(self) -> None:
        """The connection is idle: the next request head is due within the deadline."""
        self._waiting.pop(self, None)
        self._waiting[self] = None  # newest last
        self._arm(self._limits.head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._deadline = None
        if not self._head_bytes:
            self._refuse(b"")  # an idle connection: close it, as a keep-alive timeout does
        else:
            self._refuse(_HEAD_TIMEOUT)

    def _body_timed_out(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        # The app sees a disconnect; it cannot answer any more, so the 408 is ours.
        cycle.disconnected = True
        cycle.message_event.set()
        self._refuse(b"" if cycle.response_started else _BODY_TIMEOUT)

    # --------------------------------------------------------------- reading

    def data_received(self, data: bytes) -> None:
        # While a head is expected, feed the parser at most max_head_bytes of it: the
        # parser buffers a partial header without limit.
        while data:
            if self._head_bytes is None:
                chunk, data = data, b""
            else:
                room = self._limits.max_head_bytes - self._head_bytes
                if room <= 0:
                    self._head_too_large()
                    return
                chunk, data = data[:room], data[room:]
                self._head_bytes += len(chunk)
            super().data_received(chunk)
            if self.transport.is_closing():
                return

    def _head_too_large(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._refuse(b"")  # a pipelined head while a response is being written
        else:
            self._refuse(_HEAD_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._waiting.pop(self, None)
        self._arm(self._limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        # What follows belongs to the next request's head; its deadline starts once this
        # request's response is sent (on_response_complete), not while the app works.
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: no pipelined request is pending.
        if self.timeout_keep_alive_task is not None and not self.transport.is_closing():
            self._await_head()
