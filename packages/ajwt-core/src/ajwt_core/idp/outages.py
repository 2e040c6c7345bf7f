"""Backend outages: which failures mean "the database or Redis is unavailable", and one
log line when a backend goes down and one when it answers again (never one per request).

A request that meets an outage is answered ``503 temporarily_unavailable`` with
``Retry-After`` (see :mod:`ajwt_core.idp.boundary`); it is the backend's state, not the
request, that is worth logging.

>>> import logging
>>> quiet = logging.getLogger("ajwt_core.doctest")
>>> quiet.addHandler(logging.NullHandler()); quiet.propagate = False
>>> outages = Outages(quiet)
>>> outages.down("database", ConnectionRefusedError(111, "Connection refused"))
True
>>> outages.down("database", ConnectionRefusedError(111, "Connection refused"))  # no new line
False
>>> outages.is_down("database"), outages.up("database"), outages.is_down("database")
(True, True, False)
>>> database_outage(ConnectionRefusedError()), backend_of(ValueError())
(True, None)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from sqlalchemy import exc as sa_exc

from ajwt_core.errors import Reason, ServerError

log = logging.getLogger("ajwt_core.idp")

#: What ``Retry-After`` says on a 503: long enough not to hammer a recovering backend.
RETRY_AFTER_SECONDS: Final = 2

# SQLSTATE classes that mean the server or the connection, not the statement, failed:
# 08 connection exception, 53 insufficient resources (disk full, too many connections),
# 57P0x operator intervention (shutdown, cannot connect now), 58 system error (I/O).
_OUTAGE_SQLSTATES: Final = ("08", "53", "57P", "58")


def _sqlstate(error: BaseException | None) -> str:
    for candidate in (error, getattr(error, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def database_outage(exc: BaseException) -> bool:
    """Whether an exception raised by a database call means the database is unavailable
    (rather than that the statement was wrong)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        # OperationalError: SQLite "database is locked", "disk I/O error", "database or
        # disk is full"; a PostgreSQL connection lost mid-statement. InterfaceError: the
        # driver's connection is closed.
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        return _sqlstate(exc.orig).startswith(_OUTAGE_SQLSTATES)
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # the pool timed out or found its connection gone
    # asyncpg raises connect-time failures unwrapped: refused, reset, timed out, or the
    # server is starting up or shutting down.
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        name = type(exc).__name__
        return name in ("InterfaceError", "ConnectionDoesNotExistError") or _sqlstate(
            exc
        ).startswith(_OUTAGE_SQLSTATES)
    return False


def _is_redis_outage(exc: BaseException) -> bool:
    # Every redis-py error on the IdP's two commands (SET NX EX, SET EX) is the server's
    # state: unreachable, timed out, loading, read-only replica, out of memory.
    return type(exc).__module__.startswith("redis") and any(
        cls.__name__ == "RedisError" for cls in type(exc).__mro__
    )


def backend_of(exc: BaseException) -> str | None:
    """Which backend ``exc`` says is unavailable (``"database"``, ``"redis"``, or
    ``"backend"`` for a bare network error), or None if it is no outage at all."""
    if _is_redis_outage(exc):
        return "redis"
    if isinstance(exc, OSError | TimeoutError):
        return "backend"
    if database_outage(exc):
        return "database"
    return None


def unavailable(backend: str) -> ServerError:
    """The typed error a request gets while ``backend`` is down."""
    return ServerError(
        Reason.SERVICE_UNAVAILABLE, f"the IdP's {backend} is unavailable; try again shortly"
    )


class Outages:
    """The up/down state of each backend; a log line only when a state changes."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._down: dict[str, float] = {}
        # Database calls on SQLite run inline, PostgreSQL's on the loop; the uvicorn
        # server of the tests runs in a thread: a lock keeps the one-line promise.
        self._lock = threading.Lock()

    def is_down(self, backend: str) -> bool:
        return backend in self._down

    def down(self, backend: str, cause: BaseException) -> bool:
        """Record a failure; True (and one ERROR line, no traceback) if it was up."""
        if backend in self._down:
            return False
        with self._lock:
            if backend in self._down:
                return False
            self._down[backend] = time.monotonic()
        self._log.error(
            "%s unavailable (%s: %s); answering 503 until it recovers",
            backend,
            type(cause).__name__,
            first_line(cause),
        )
        return True

    def up(self, backend: str) -> bool:
        """Record a success; True (and one WARNING line) if it was down."""
        if backend not in self._down:
            return False
        with self._lock:
            since = self._down.pop(backend, None)
        if since is None:
            return False
        self._log.warning("%s available again after %.1f s", backend, time.monotonic() - since)
        return True


def first_line(exc: BaseException) -> str:
    """The first line of what ``exc`` says (the driver's message, not SQLAlchemy's SQL)."""
    # SQLAlchemy appends the statement and its parameters: keep the driver's message only.
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:200]
