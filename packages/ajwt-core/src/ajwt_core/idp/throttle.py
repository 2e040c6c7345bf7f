"""Throttling failed authentication, per client address, in bounded memory.

After ``max_failures`` failures within ``window`` seconds an address is refused, before
its credential is even compared, until that window ends: ``429`` with ``Retry-After``
and an OAuth error body. Refusing a blocked address's *correct* credential too is what
makes the block real (otherwise a guesser learns which guess was right from the status).

IPv6 clients are counted per /64, the block a single host usually holds. The table keeps
the ``max_clients`` most recently failing addresses; the oldest entry is forgotten first.
Each worker process counts on its own.

>>> now = [0.0]
>>> throttle = FailureThrottle(max_failures=2, window=60, clock=lambda: now[0])
>>> throttle.check("192.0.2.1")
>>> throttle.failed("192.0.2.1"); throttle.failed("192.0.2.1")
>>> throttle.check("192.0.2.1")
Traceback (most recent call last):
...
ajwt_core.errors.SlowDown: too many failed authentication attempts; retry in 60 s
>>> now[0] = 61.0
>>> throttle.check("192.0.2.1")
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ajwt_core.errors import Reason, SlowDown


def client_key(host: str | None) -> str:
    """The unit counted: an IPv4 address, an IPv6 /64, or the raw host string.

    >>> client_key("2001:db8::1"), client_key("::ffff:198.51.100.7"), client_key(None)
    ('2001:db8::/64', '198.51.100.7', '')
    """
    if not host:
        return ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Failures:
    since: float
    count: int


class FailureThrottle:
    """Counts failed attempts per client; refuses a client that failed too often."""

    def __init__(
        self,
        *,
        max_failures: int = 10,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window = window
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def check(self, host: str | None) -> None:
        """Raise :class:`SlowDown` while ``host`` is blocked."""
        key = client_key(host)
        record = self._failures.get(key)
        if record is None or record.count < self._max_failures:
            return
        wait = record.since + self._window - self._clock()
        if wait <= 0:
            del self._failures[key]
            return
        seconds = math.ceil(wait)
        raise SlowDown(
            Reason.TOO_MANY_FAILED_ATTEMPTS,
            f"too many failed authentication attempts; retry in {seconds} s",
            retry_after=seconds,
        )

    def failed(self, host: str | None) -> None:
        """Count one failed attempt by ``host``."""
        key = client_key(host)
        now = self._clock()
        record = self._failures.pop(key, None)
        if record is None or now - record.since >= self._window:
            record = _Failures(since=now, count=0)
        record.count += 1
        self._failures[key] = record  # most recent last
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, host: str | None) -> None:
        """A correct credential: forget the address's earlier failures."""
        self._failures.pop(client_key(host), None)
