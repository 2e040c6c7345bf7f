"""Resource-server state that many workers share: replay cache and revocation status.

In memory for one process; Redis for many workers. Both fail closed: if the store cannot
answer, the request is refused with 503 rather than let through.

Redis holds no state of record (DESIGN §12): the IdP's database is the source of truth
for revocations, and a replay cache only has to remember proofs for a minute. What Redis
can do is lose its data (a restart without persistence, a flush), so each kind of state
carries a marker key that an empty Redis lacks:

* ``<prefix>replay:since`` holds the first proof ``iat`` the replay cache can vouch for.
  The first worker to find it missing sets it (``SET NX``) to now plus the proof clock
  leeway, and every worker then refuses older proofs (``replay_state_reset``): a wiped
  cache cannot tell whether they were used before.
* ``<prefix>revocations:ready`` is set by the IdP only after it has (re)published every
  revocation whose tokens may still be live. Without it, the revocation checker fails
  closed (503), or asks the IdP's status endpoint if given one as ``fallback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ajwt_core._extras import needs_extra
from ajwt_core._http import AsyncClients
from ajwt_core.dpop import DEFAULT_FUTURE_LEEWAY
from ajwt_core.errors import InvalidDPoPProof, InvalidToken, Reason, ServerError
from ajwt_core.replay import InMemoryReplayCache
from ajwt_core.rs.token_cache import TokenFacts
from ajwt_core.tokens import IntentTokenClaims

REDIS_PREFIX = "ajwt:"
#: How long a published revocation is kept; far longer than any token lives (300 s).
REVOCATION_TTL = 3600


def ready_key(prefix: str) -> str:
    """The marker the IdP sets once every live revocation is published under ``prefix``."""
    return f"{prefix}revocations:ready"


def revocation_channel(prefix: str) -> str:
    """The pub/sub channel the IdP announces each revocation on."""
    return f"{prefix}revocations"


def _redis_from_url(url: str) -> Any:
    with needs_extra("redis", "the Redis store"):
        import redis.asyncio

    return redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _unavailable(what: str) -> ServerError:
    return ServerError(Reason.SERVICE_UNAVAILABLE, f"the {what} is unavailable; try again later")


class AsyncReplayStore(Protocol):
    async def first_use(self, key: str, ttl: float, *, issued_at: float) -> bool:
        """Record ``key`` (a proof's ``jkt:jti``) for ``ttl`` seconds; False if it was
        already recorded. ``issued_at`` is the proof's ``iat``: a store that may have
        lost its memory refuses proofs older than that loss (``replay_state_reset``)."""
        ...


class MemoryReplayStore:
    """The core in-memory cache behind the async interface (one process).

    It lives and dies with its process, so ``issued_at`` is not needed here.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._cache = InMemoryReplayCache(max_entries)
        #: :meth:`first_use` without a coroutine, ``(key, ttl) -> bool``: the answer never
        #: waits for I/O here, so the verifier asks the cache directly.
        self.first_use_now: Callable[[str, float], bool] = self._cache.first_use

    async def first_use(self, key: str, ttl: float, *, issued_at: float) -> bool:
        return self._cache.first_use(key, ttl)


class RedisReplayStore:
    """``SET <prefix>replay:<jkt>:<jti> 1 NX EX <ttl>``: atomic across workers.

    The same round trip reads the ``replay:since`` marker (creating it with ``NX`` when
    Redis lost it), and a proof whose ``iat`` is not after it is refused: the cache was
    empty when that proof may have been used. ``future_leeway`` is the verifier's
    tolerance for proofs from the future: a proof accepted just before the loss may
    carry an ``iat`` that far ahead.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = REDIS_PREFIX,
        future_leeway: int = DEFAULT_FUTURE_LEEWAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._since_key = f"{prefix}replay:since"
        self._leeway = future_leeway
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisReplayStore:
        return cls(_redis_from_url(url), **options)

    async def aclose(self) -> None:
        """Close the Redis client."""
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    async def first_use(self, key: str, ttl: float, *, issued_at: float) -> bool:
        # Record first, then read the marker: a wipe between the two recreates the
        # marker after this proof's iat, so the proof is refused rather than trusted.
        since_if_new = int(self._clock()) + self._leeway
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(f"{self._prefix}replay:{key}", b"1", nx=True, ex=max(1, int(ttl + 0.999)))
                pipe.set(self._since_key, since_if_new, nx=True)
                pipe.get(self._since_key)
                created, _, since = await pipe.execute()
        except Exception:  # noqa: BLE001 - any Redis failure: fail closed
            raise _unavailable("replay cache") from None
        try:
            epoch = int(since)
        except (TypeError, ValueError):  # missing (flushed meanwhile) or not ours: no memory
            epoch = None
        if epoch is None or issued_at <= epoch:
            raise InvalidDPoPProof(
                Reason.REPLAY_STATE_RESET,
                "the proof is older than the replay cache's memory (it was reset); "
                "sign a new proof",
            )
        return bool(created)


class RevocationChecker(Protocol):
    async def check(self, claims: IntentTokenClaims | TokenFacts) -> None:
        """Raise :class:`InvalidToken` if the run, intent, agent or client is revoked."""
        ...


def revocation_ids(claims: IntentTokenClaims | TokenFacts) -> tuple[str, str, str, str]:
    """The token's run, intent, client and agent registration ids."""
    if isinstance(claims, TokenFacts):
        return claims.run_id, claims.intent_id, claims.client_id, claims.registration_id
    intent = claims.intent
    return intent.run_id, intent.id, claims.client_id, claims.agent.registration_id


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
    refused with 503 (fail closed). Requests that need the same answer at the same time
    share one fetch (single flight). :class:`~ajwt_core.rs.RevocationFeed` needs no
    request to the IdP at all; this checker is for IdPs without the feed.
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
        self._inflight: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}

    async def aclose(self) -> None:
        """Close the HTTP client this loop asks the IdP with."""
        await self._clients.aclose()

    async def check(self, claims: IntentTokenClaims | TokenFacts) -> None:
        run_id, _, _, registration_id = revocation_ids(claims)
        key = (run_id, registration_id)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is None or cached[0] <= now:
            status = await self._single_flight(key)
            self._cache[key] = (now + self._ttl, status)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            status = cached[1]
        _raise_for(status)

    async def _single_flight(self, key: tuple[str, str]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(key)
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(self._fetch(*key))
            self._inflight[key] = pending

            def forget(done: asyncio.Future[dict[str, Any]]) -> None:
                if self._inflight.get(key) is done:
                    del self._inflight[key]

            pending.add_done_callback(forget)
        # shield: one waiter cancelled (its client went away) does not cancel the others'
        return await asyncio.shield(pending)

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
    """Revocations published by the IdP as Redis keys ``<prefix>revoked:<kind>:<id>``.

    One ``MGET`` reads the four keys and the IdP's ``revocations:ready`` marker. A key
    found is a refusal. A missing marker means Redis lost what the IdP published and the
    IdP has not republished it yet: the answer then comes from ``fallback`` (for example
    an :class:`IdPRevocationChecker`) or, without one, is a 503 (fail closed).
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = REDIS_PREFIX,
        fallback: RevocationChecker | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ready_key = ready_key(prefix)
        self.fallback = fallback

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisRevocationChecker:
        return cls(_redis_from_url(url), **options)

    async def aclose(self) -> None:
        """Close the Redis client, and the fallback's clients."""
        with contextlib.suppress(Exception):
            await self._redis.aclose()
        closer = getattr(self.fallback, "aclose", None)
        if closer is not None:
            await closer()

    async def check(self, claims: IntentTokenClaims | TokenFacts) -> None:
        prefix = f"{self._prefix}revoked:"
        run_id, intent_id, client_id, registration_id = revocation_ids(claims)
        keys = {
            Reason.RUN_REVOKED: f"{prefix}run:{run_id}",
            Reason.INTENT_REVOKED: f"{prefix}intent:{intent_id}",
            Reason.AGENT_REVOKED: f"{prefix}agent:{registration_id}",
            Reason.CLIENT_REVOKED: f"{prefix}client:{client_id}",
        }
        try:
            ready, *found = await self._redis.mget([self._ready_key, *keys.values()])
        except Exception:  # noqa: BLE001 - any Redis failure: fail closed
            raise _unavailable("revocation store") from None
        for reason, value in zip(keys, found, strict=True):
            if value is not None:
                raise InvalidToken(reason, f"revoked ({reason.value.removesuffix('_revoked')})")
        if ready is None:
            if self.fallback is not None:
                await self.fallback.check(claims)
                return
            raise ServerError(
                Reason.SERVICE_UNAVAILABLE,
                "the revocation store lost its state and the IdP has not republished it yet; "
                "try again shortly",
            )


@dataclass(frozen=True)
class Revoked:
    """One revocation as the IdP's database records it."""

    kind: str
    ident: str
    revoked_at: int


class RedisRevocationPublisher:
    """The IdP side of :class:`RedisRevocationChecker`: sets ``<prefix>revoked:<kind>:<id>``.

    Keys expire ``ttl`` seconds after the revocation, by which time every token of the
    revoked run, agent or client has expired too (intent tokens live at most 300 s).
    :meth:`republish_if_lost` restores them all, and the ``revocations:ready`` marker,
    when Redis lost them.
    """

    def __init__(
        self,
        redis: Any,
        ttl: int = REVOCATION_TTL,
        *,
        prefix: str = REDIS_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.ttl = ttl
        self._prefix = prefix
        self._ready_key = ready_key(prefix)
        self.channel = revocation_channel(prefix)
        self._clock = clock

    @classmethod
    def from_url(
        cls, url: str, ttl: int = REVOCATION_TTL, **options: Any
    ) -> RedisRevocationPublisher:
        return cls(_redis_from_url(url), ttl, **options)

    def _key(self, kind: str, ident: str) -> str:
        return f"{self._prefix}revoked:{kind}:{ident}"

    async def publish(self, kind: str, ident: str) -> None:
        """Announce one revocation: its key, and a message on ``<prefix>revocations``
        for the resource servers that follow the channel (``RedisFeedSource``). Raises
        whatever Redis raises when it cannot."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key(kind, ident), b"1", ex=self.ttl)
            pipe.publish(self.channel, f"{kind}:{ident}")
            await pipe.execute()

    async def is_ready(self) -> bool:
        """Whether the marker is there (Redis still holds what was published)."""
        return bool(await self._redis.exists(self._ready_key))

    async def republish_if_lost(
        self,
        active: Callable[[], Awaitable[Iterable[Revoked]]],
        *,
        force: bool = False,
    ) -> bool:
        """Republish ``active()`` and set the marker, if the marker is missing (or
        ``force``); True if it republished.

        The marker is watched (``WATCH``) before ``active()`` reads the database, and the
        keys and the marker are written in one ``MULTI``/``EXEC``: if Redis restarts or is
        flushed in between, nothing is written (and the next pass retries), so the marker
        never stands in a Redis that lacks a revocation committed before it was set. A
        revocation committed after the read is published by its own request, into this
        same Redis.
        """
        if not force and await self.is_ready():
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self._ready_key)
            if not force and await pipe.exists(self._ready_key):
                return False
            now = int(self._clock())
            revoked = list(await active())
            pipe.multi()
            for item in revoked:
                remaining = item.revoked_at + self.ttl - now
                if remaining > 0:
                    pipe.set(self._key(item.kind, item.ident), b"1", ex=remaining)
            pipe.set(self._ready_key, str(now))
            await pipe.execute()
        return True
