"""The IdP's signing keys as the resource server sees them: fetched, cached, refreshed.

Refreshed when a token names an unknown ``kid`` (key rotation), at most once per
``min_refresh`` seconds so unknown-kid floods cannot hammer the IdP, and in any case
once the keys are ``max_age`` seconds old, so a key the IdP pre-publishes before using it
is known before its first token arrives. A failed refresh keeps the keys already known.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from ajwt_core._http import AsyncClients
from ajwt_core.keys import KeyResolver

log = logging.getLogger("ajwt_core.rs")


class JWKSCache:
    def __init__(
        self,
        jwks_url: str,
        *,
        min_refresh: float = 30.0,
        max_age: float = 300.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._fetched_at: float | None = None
        self._clients = AsyncClients(lambda: client or httpx.AsyncClient(timeout=3))
        self._clock = clock
        self._keys = KeyResolver()
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()

    @property
    def keys(self) -> KeyResolver:
        return self._keys

    async def aclose(self) -> None:
        """Close the HTTP client this loop fetched the JWKS with (a later fetch opens
        another)."""
        await self._clients.aclose()

    async def ensure_fresh(self) -> None:
        """Refresh if the keys were never fetched or are older than ``max_age``."""
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age:
            await self.refresh()

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the JWKS unless one was fetched recently; True if keys changed."""
        async with self._lock:
            now = self._clock()
            if (
                not force
                and self._last_attempt is not None
                and now - self._last_attempt < self._min_refresh
            ):
                return False
            self._last_attempt = now
            try:
                response = await self._clients.get().get(self.jwks_url)
                response.raise_for_status()
                fresh = KeyResolver.from_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning(
                    "JWKS refresh from %s failed (%s); keeping old keys", self.jwks_url, exc
                )
                return False
            if not len(fresh):
                return False
            changed = fresh.kids() != self._keys.kids()
            self._keys = fresh
            self._fetched_at = self._clock()
            return changed
