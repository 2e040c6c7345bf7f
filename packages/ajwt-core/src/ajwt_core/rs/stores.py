"""Resource-server state that many workers share: replay cache and revocation status.

In memory for one process; Redis (``SET NX EX``) for many workers. Both fail closed: if
the store cannot answer, the request is refused with 503 rather than let through.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from ajwt_core._extras import needs_extra
from ajwt_core._http import AsyncClients
from ajwt_core.errors import InvalidToken, Reason, ServerError
from ajwt_core.replay import InMemoryReplayCache
from ajwt_core.tokens import IntentTokenClaims

REDIS_PREFIX = "ajwt:"


class AsyncReplayStore(Protocol):
    async def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; False if it was already recorded."""
        ...


class MemoryReplayStore:
    """The core in-memory cache behind the async interface (one process)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._cache = InMemoryReplayCache(max_entries)

    async def first_use(self, key: str, ttl: float) -> bool:
        return self._cache.first_use(key, ttl)


class RedisReplayStore:
    """``SET ajwt:replay:<jkt>:<jti> 1 NX EX <ttl>``: atomic across workers."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    @classmethod
    def from_url(cls, url: str) -> RedisReplayStore:
        with needs_extra("redis", "the Redis store"):
            import redis.asyncio

        return cls(redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    async def first_use(self, key: str, ttl: float) -> bool:
        try:
            created = await self._redis.set(
                f"{REDIS_PREFIX}replay:{key}", b"1", nx=True, ex=max(1, int(ttl + 0.999))
            )
        except Exception:  # noqa: BLE001 - any Redis failure: fail closed
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the replay cache is unavailable; try again later"
            ) from None
        return bool(created)


class RevocationChecker(Protocol):
    async def check(self, claims: IntentTokenClaims) -> None:
        """Raise :class:`InvalidToken` if the run, intent, agent or client is revoked."""
        ...


def _raise_for(status: dict[str, Any]) -> None:
    state = status.get("state")
    if state == "revoked":
        raise InvalidToken(Reason.RUN_REVOKED, "the run has been revoked")
    if state == "intent_revoked":
        raise InvalidToken(Reason.INTENT_REVOKED, "the intent has been revoked")
    if status.get("client_active") is False:
        raise InvalidToken(Reason.CLIENT_REVOKED, "the client has been revoked")
    if status.get("registration_active") is False:
        raise InvalidToken(Reason.AGENT_REVOKED, "the agent registration has been revoked")


class IdPRevocationChecker:
    """Asks the IdP's run-status endpoint, caching each answer for ``ttl`` seconds.

    A closed (completed) run stays usable until its tokens expire; a revoked one does
    not. If the IdP cannot be reached and no fresh answer is cached, the request is
    refused with 503 (fail closed).
    """

    def __init__(
        self,
        idp_url: str,
        *,
        ttl: float = 5.0,
        client: httpx.AsyncClient | None = None,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = idp_url.rstrip("/")
        self._ttl = ttl
        self._clients = AsyncClients(lambda: client or httpx.AsyncClient(timeout=3))
        self._cache: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def check(self, claims: IntentTokenClaims) -> None:
        key = (claims.intent.run_id, claims.agent.registration_id)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is None or cached[0] <= now:
            status = await self._fetch(*key)
            self._cache[key] = (now + self._ttl, status)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            status = cached[1]
        _raise_for(status)

    async def _fetch(self, run_id: str, registration_id: str) -> dict[str, Any]:
        try:
            response = await self._clients.get().get(
                f"{self._base}/runs/{run_id}/status",
                params={"registration_id": registration_id},
            )
        except httpx.HTTPError:
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the IdP's status endpoint is unreachable"
            ) from None
        if response.status_code == 404:
            raise InvalidToken(Reason.RUN_NOT_FOUND, "the token's run is unknown to the IdP")
        if not response.is_success:
            raise ServerError(Reason.SERVICE_UNAVAILABLE, "the IdP's status endpoint failed")
        body: dict[str, Any] = response.json()
        return body


class RedisRevocationChecker:
    """Revocations published by the IdP as Redis keys ``ajwt:revoked:<kind>:<id>``."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    @classmethod
    def from_url(cls, url: str) -> RedisRevocationChecker:
        with needs_extra("redis", "the Redis store"):
            import redis.asyncio

        return cls(redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    async def check(self, claims: IntentTokenClaims) -> None:
        keys = {
            Reason.RUN_REVOKED: f"{REDIS_PREFIX}revoked:run:{claims.intent.run_id}",
            Reason.INTENT_REVOKED: f"{REDIS_PREFIX}revoked:intent:{claims.intent.id}",
            Reason.AGENT_REVOKED: f"{REDIS_PREFIX}revoked:agent:{claims.agent.registration_id}",
            Reason.CLIENT_REVOKED: f"{REDIS_PREFIX}revoked:client:{claims.client_id}",
        }
        try:
            found = await self._redis.mget(list(keys.values()))
        except Exception:  # noqa: BLE001 - any Redis failure: fail closed
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE, "the revocation store is unavailable"
            ) from None
        for reason, value in zip(keys, found, strict=True):
            if value is not None:
                raise InvalidToken(reason, f"revoked ({reason.value.removesuffix('_revoked')})")


class RedisRevocationPublisher:
    """The IdP side of :class:`RedisRevocationChecker`: sets ``ajwt:revoked:<kind>:<id>``.

    Keys expire after ``ttl`` seconds, by which time every token of the revoked run,
    agent or client has expired too (intent tokens live at most 300 s).
    """

    def __init__(self, redis: Any, ttl: int = 3600) -> None:
        self._redis = redis
        self._ttl = ttl

    @classmethod
    def from_url(cls, url: str, ttl: int = 3600) -> RedisRevocationPublisher:
        with needs_extra("redis", "the Redis store"):
            import redis.asyncio

        client = redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, ttl)

    async def publish(self, kind: str, ident: str) -> None:
        await self._redis.set(f"{REDIS_PREFIX}revoked:{kind}:{ident}", b"1", ex=self._ttl)
