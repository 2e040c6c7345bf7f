"""The revocation feed a resource server follows (DESIGN §7.6, §12).

A worker keeps every live revocation (run, intent, agent registration, client) in memory
and checks a request against it without any I/O. A background task keeps that memory in
step with the IdP, from one of two sources:

* :class:`IdPFeedSource`: polls the IdP's versioned revocation list,
  ``GET /revocations?since=<version>`` (the first call without ``since``: the full list);
* :class:`RedisFeedSource`: the keys the IdP's announcer keeps in Redis, read in full
  when the subscription starts, then the ``<prefix>revocations`` pub/sub channel.

It fails closed: until the first full list has arrived, and whenever the last successful
update is more than ``max_staleness`` seconds old, :meth:`RevocationFeed.check` refuses
with 503 (``revocation_feed_stale``). What the worker learnt is never dropped before
:data:`~ajwt_core.rs.stores.REVOCATION_TTL` (far longer than any token lives), so a
source that lost its state cannot un-revoke anything.

>>> feed = RevocationFeed(StaticSource([("run", "run-1")]))
>>> feed.apply([("run", "run-1")], at=0.0)
>>> feed.is_revoked("run", "run-1"), feed.is_revoked("run", "run-2")
(True, False)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import httpx

from ajwt_core._http import AsyncClients
from ajwt_core._tasks import stop
from ajwt_core.errors import InvalidToken, Reason, ServerError
from ajwt_core.rs.stores import (
    REDIS_PREFIX,
    REVOCATION_TTL,
    _redis_from_url,
    ready_key,
    revocation_channel,
    revocation_ids,
)
from ajwt_core.rs.token_cache import TokenFacts
from ajwt_core.tokens import IntentTokenClaims

log = logging.getLogger("ajwt_core.rs.revocation_feed")

#: The kinds of revocation, in the order a token is checked against them.
KINDS = ("run", "intent", "client", "agent")
#: Default bound on the age of the last successful update before requests get 503.
DEFAULT_MAX_STALENESS = 5.0
#: Default seconds between updates (polls, or Redis liveness probes).
DEFAULT_INTERVAL = 0.5

_REASONS = {
    "run": (Reason.RUN_REVOKED, "the run has been revoked"),
    "intent": (Reason.INTENT_REVOKED, "the intent has been revoked"),
    "client": (Reason.CLIENT_REVOKED, "the client has been revoked"),
    "agent": (Reason.AGENT_REVOKED, "the agent registration has been revoked"),
}


class FeedSource(Protocol):
    """Where a :class:`RevocationFeed` learns revocations."""

    async def follow(self, feed: RevocationFeed) -> None:
        """Keep ``feed`` up to date for ever: :meth:`RevocationFeed.apply` what is
        revoked and :meth:`RevocationFeed.mark_fresh` after each successful update
        (the first one only once a full list was applied). Returns only if cancelled."""
        ...

    async def aclose(self) -> None: ...


class RevocationFeed:
    """The revocations a worker knows, kept fresh by ``source`` in a background task
    (started by the first :meth:`check` on each event loop)."""

    def __init__(
        self,
        source: FeedSource,
        *,
        max_staleness: float = DEFAULT_MAX_STALENESS,
        first_wait: float | None = None,
        retention: float = REVOCATION_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.max_staleness = max_staleness
        self._first_wait = max_staleness if first_wait is None else first_wait
        self._retention = retention
        self._clock = clock
        self._revoked: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
        self._fresh_at: float | None = None
        self._pruned_at = clock()
        self._task: asyncio.Task[None] | None = None
        self._task_loop: asyncio.AbstractEventLoop | None = None
        self._updated: asyncio.Event | None = None

    # ------------------------------------------------------------ the source's side

    def apply(self, revoked: Iterable[tuple[str, str]], *, at: float | None = None) -> None:
        """Remember ``(kind, ident)`` revocations (unknown kinds are ignored)."""
        when = self._clock() if at is None else at
        for kind, ident in revoked:
            known = self._revoked.get(kind)
            if known is not None:
                known.setdefault(ident, when)

    def mark_fresh(self) -> None:
        """The source is in step with the IdP as of now."""
        now = self._clock()
        self._fresh_at = now
        if self._updated is not None:
            self._updated.set()
        if now - self._pruned_at > 60:
            self._prune(now)

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        horizon = now - self._retention
        for known in self._revoked.values():
            for ident in [i for i, at in known.items() if at < horizon]:
                del known[ident]

    # ------------------------------------------------------------ the verifier's side

    def is_revoked(self, kind: str, ident: str) -> bool:
        return ident in self._revoked[kind]

    @property
    def fresh(self) -> bool:
        return self._fresh_at is not None and self._clock() - self._fresh_at <= self.max_staleness

    async def check(self, claims: IntentTokenClaims | TokenFacts) -> None:
        """Raise :class:`InvalidToken` if the token's run, intent, client or agent
        registration is revoked; :class:`ServerError` (503) if the feed is stale."""
        self._ensure_following()
        if not self.fresh:
            await self._wait_fresh()
        revoked = self._revoked
        for kind, ident in zip(KINDS, revocation_ids(claims), strict=True):
            if ident in revoked[kind]:
                reason, text = _REASONS[kind]
                raise InvalidToken(reason, text)

    async def _wait_fresh(self) -> None:
        # The first request of a worker waits for the first full list; later, a stale
        # feed is refused at once (its source is retrying in the background).
        if self._fresh_at is None and self._updated is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updated.wait(), self._first_wait)
        if not self.fresh:
            raise ServerError(
                Reason.REVOCATION_FEED_STALE,
                "the resource server cannot tell which tokens are revoked (its "
                "revocation feed is not up to date); try again shortly",
            )

    def _ensure_following(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task_loop is loop and not self._task.done():
            return
        self._updated = asyncio.Event()
        self._task_loop = loop
        self._task = loop.create_task(self._follow(), name="ajwt-revocation-feed")

    async def _follow(self) -> None:
        while True:
            try:
                await self.source.follow(self)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a source must not stop the feed
                log.exception("the revocation feed's source failed; restarting it")
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        """Start following now (e.g. in an app's lifespan) rather than on the first
        request, and wait up to ``first_wait`` seconds for the full list."""
        self._ensure_following()
        if self._fresh_at is None and self._updated is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updated.wait(), self._first_wait)

    async def aclose(self) -> None:
        """Stop following (on this event loop) and close the source's connections."""
        task, self._task = self._task, None
        if task is not None:
            await stop(task)
        await self.source.aclose()


class StaticSource:
    """A fixed list, always fresh: for tests and for resource servers without an IdP."""

    def __init__(self, revoked: Iterable[tuple[str, str]] = ()) -> None:
        self.revoked = list(revoked)

    async def follow(self, feed: RevocationFeed) -> None:
        feed.apply(self.revoked)
        while True:
            feed.mark_fresh()
            await asyncio.sleep(min(1.0, feed.max_staleness / 2))

    async def aclose(self) -> None:
        return None


class IdPFeedSource:
    """Polls ``GET <idp>/revocations?since=<version>`` every ``interval`` seconds.

    The IdP answers ``{"version": v, "full": bool, "revoked": [{"kind", "id",
    "revoked_at"}, ...]}``: everything revoked since ``since`` (with a safety margin, so
    the same revocation may come twice), or, without ``since``, every revocation whose
    tokens may still be live. A failed poll is retried on the next one; the feed turns
    stale by itself once polls have failed for ``max_staleness`` seconds.
    """

    def __init__(
        self,
        idp_url: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = idp_url.rstrip("/") + "/revocations"
        self.interval = interval
        self._clients = AsyncClients(lambda: client or httpx.AsyncClient(timeout=3))
        self.version: int | None = None

    async def follow(self, feed: RevocationFeed) -> None:
        failing = False
        while True:
            try:
                await self.poll(feed)
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                if not failing:
                    log.warning("cannot read the IdP's revocation feed (%s); retrying", exc)
                failing = True
            else:
                if failing:
                    log.warning("the IdP's revocation feed answers again")
                failing = False
            await asyncio.sleep(self.interval)

    async def poll(self, feed: RevocationFeed) -> None:
        """One update: fetch what changed since the last version and apply it."""
        params = {} if self.version is None else {"since": str(self.version)}
        response = await self._clients.get().get(self._url, params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        version = int(body["version"])
        feed.apply((str(item["kind"]), str(item["id"])) for item in body["revoked"])
        self.version = version
        feed.mark_fresh()

    async def aclose(self) -> None:
        await self._clients.aclose()


class RedisFeedSource:
    """Follows what the IdP publishes in Redis (``RedisRevocationPublisher``).

    Subscribes to ``<prefix>revocations`` first, then reads every ``<prefix>revoked:*``
    key (so nothing published in between is missed), then applies each message as it
    comes. Every ``interval`` seconds it checks that the IdP's ``revocations:ready``
    marker is still there: a Redis that lost its data (restart, flush) makes the feed
    stale until the IdP has republished, after which everything is read again. A lost
    connection is re-established the same way.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = REDIS_PREFIX,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.channel = revocation_channel(prefix)
        self._ready_key = ready_key(prefix)
        self.interval = interval

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisFeedSource:
        return cls(_redis_from_url(url), **options)

    async def follow(self, feed: RevocationFeed) -> None:
        failing = False
        while True:
            try:
                await self._subscribed(feed)
            except Exception as exc:  # noqa: BLE001 - Redis down: stale until it is back
                if not failing:
                    log.warning("cannot follow revocations in Redis (%s); retrying", exc)
                failing = True
            await asyncio.sleep(self.interval)

    async def _subscribed(self, feed: RevocationFeed) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            if not await self._read_all(feed):
                return  # not republished yet: try again on the next pass
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.interval
                )
                if message is not None:
                    kind, _, ident = _text(message.get("data")).partition(":")
                    feed.apply([(kind, ident)])
                if not await self._redis.exists(self._ready_key):
                    return  # Redis lost what was published: read all again once it is back
                feed.mark_fresh()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read_all(self, feed: RevocationFeed) -> bool:
        if not await self._redis.exists(self._ready_key):
            return False
        pattern = f"{self._prefix}revoked:*"
        skip = len(self._prefix) + len("revoked:")
        found = []
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            kind, _, ident = _text(key)[skip:].partition(":")
            found.append((kind, ident))
        feed.apply(found)
        feed.mark_fresh()
        return True

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._redis.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
