"""Replay detection for DPoP proofs (DESIGN §7 step 5, RFC 9449 §11.1).

A proof is identified by ``(jkt, jti)``; a verifier accepts each identifier once within
the proof acceptance window. :class:`ReplayCache` is the pluggable interface;
:class:`InMemoryReplayCache` is the single-process implementation (the resource server
adds a Redis one for many workers).

>>> cache = InMemoryReplayCache(max_entries=2)
>>> cache.first_use("jkt:a", ttl=60, now=0), cache.first_use("jkt:a", ttl=60, now=1)
(True, False)
>>> cache.first_use("jkt:a", ttl=60, now=61)  # expired: the proof's iat check refuses it anyway
True
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from ajwt_core.errors import Reason, ServerError


@runtime_checkable
class ReplayCache(Protocol):
    """Remembers proof identifiers for a while; atomically answers "first use?"."""

    def first_use(self, key: str, ttl: float, now: float | None = None) -> bool:
        """Record ``key`` for ``ttl`` seconds; False if it was already recorded and live."""
        ...


class InMemoryReplayCache:
    """A bounded, thread-safe, expiring set of seen proof identifiers.

    When every slot holds a still-live identifier the cache refuses new proofs with a
    503 rather than forgetting one early: evicting a live entry would reopen a replay
    window, so it fails closed.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._max = max_entries
        # key -> expiry; insertion order equals expiry order when ttl is constant.
        self._seen: OrderedDict[str, float] = OrderedDict()
        # The first entry's expiry (or earlier): nothing expires before it.
        self._front_expiry = math.inf
        self._lock = threading.Lock()

    def first_use(self, key: str, ttl: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            seen = self._seen
            if now >= self._front_expiry:
                self._evict_expired(now)
            expiry = seen.get(key)
            if expiry is not None:
                if expiry > now:
                    return False
                del seen[key]  # expired: recorded again below, at the end
            if len(seen) >= self._max:
                raise ServerError(
                    Reason.SERVICE_UNAVAILABLE, "the replay cache is full; try again shortly"
                )
            seen[key] = now + ttl
            if len(seen) == 1:
                self._front_expiry = now + ttl
            return True

    def _evict_expired(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, expiry = next(iter(seen.items()))
            if expiry > now:
                self._front_expiry = expiry
                return
            del seen[key]
        self._front_expiry = math.inf

    def __len__(self) -> int:
        return len(self._seen)
