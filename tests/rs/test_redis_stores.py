"""The Redis stores and what they do when Redis has lost its data (issue 12 §3).

Against the shared Redis (db 15), each test under a key prefix of its own; the tests that
restart a Redis start their own (``tests/e2e/test_redis_restart.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ajwt_core.errors import InvalidDPoPProof, InvalidToken, Reason, ServerError
from ajwt_core.rs.stores import (
    RedisReplayStore,
    RedisRevocationChecker,
    RedisRevocationPublisher,
    Revoked,
)
from ajwt_core.tokens import IntentTokenClaims
from tests.redis_support import shared_redis_prefix
from tests.services import REDIS_URL
from tests.support import NOW, ClaimsFactory

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> Iterator[str]:
    with shared_redis_prefix() as own:
        yield own


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def replay_store(redis: Any, prefix: str, now: float = NOW) -> RedisReplayStore:
    return RedisReplayStore(redis, prefix=prefix, clock=lambda: now)


# ----------------------------------------------------------------------- replay cache


async def test_first_use_then_replay(redis: Any, prefix: str) -> None:
    await redis.set(f"{prefix}replay:since", 0)
    store = replay_store(redis, prefix)
    assert await store.first_use("jkt:a", 65, issued_at=NOW)
    assert not await store.first_use("jkt:a", 65, issued_at=NOW)
    assert await store.first_use("jkt:b", 65, issued_at=NOW)


async def test_an_empty_cache_refuses_proofs_it_cannot_vouch_for(redis: Any, prefix: str) -> None:
    # No marker: this Redis is new or lost its data. The first worker to notice sets the
    # epoch to now + the proof clock leeway (5 s); no older proof is accepted.
    store = replay_store(redis, prefix)
    for issued_at in (NOW - 30, NOW, NOW + 5):
        with pytest.raises(InvalidDPoPProof) as info:
            await store.first_use(f"jkt:{issued_at}", 65, issued_at=issued_at)
        assert info.value.reason == Reason.REPLAY_STATE_RESET
    assert int(await redis.get(f"{prefix}replay:since")) == NOW + 5
    assert await store.first_use("jkt:fresh", 65, issued_at=NOW + 6)


async def test_every_worker_keeps_the_epoch_the_first_one_set(redis: Any, prefix: str) -> None:
    first, later = replay_store(redis, prefix, NOW), replay_store(redis, prefix, NOW + 30)
    with pytest.raises(InvalidDPoPProof):
        await first.first_use("jkt:a", 65, issued_at=NOW)
    # The later worker does not move the epoch: a proof of NOW + 6 is fine for both.
    assert await later.first_use("jkt:b", 65, issued_at=NOW + 6)
    assert int(await redis.get(f"{prefix}replay:since")) == NOW + 5


async def test_replay_cache_unreachable_fails_closed() -> None:
    store = RedisReplayStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(ServerError) as info:
        await store.first_use("jkt:a", 65, issued_at=NOW)
    assert info.value.status_code == 503


# ------------------------------------------------------------------- revocation check


@pytest.fixture
def claims(make_claims: ClaimsFactory) -> IntentTokenClaims:
    return make_claims()


async def test_published_revocation_is_refused(
    redis: Any, prefix: str, claims: IntentTokenClaims
) -> None:
    checker = RedisRevocationChecker(redis, prefix=prefix)
    publisher = RedisRevocationPublisher(redis, prefix=prefix)
    await publisher.republish_if_lost(_nothing)  # the IdP on start: marker set
    await checker.check(claims)  # not revoked: passes
    await publisher.publish("agent", claims.agent.registration_id)
    with pytest.raises(InvalidToken) as info:
        await checker.check(claims)
    assert info.value.reason == Reason.AGENT_REVOKED


async def test_lost_revocations_fail_closed(
    redis: Any, prefix: str, claims: IntentTokenClaims
) -> None:
    # No ready marker: Redis lost what the IdP published, and "no key" proves nothing.
    with pytest.raises(ServerError) as info:
        await RedisRevocationChecker(redis, prefix=prefix).check(claims)
    assert info.value.status_code == 503
    assert info.value.reason == Reason.SERVICE_UNAVAILABLE


async def test_a_revocation_found_is_refused_even_without_the_marker(
    redis: Any, prefix: str, claims: IntentTokenClaims
) -> None:
    await redis.set(f"{prefix}revoked:run:{claims.intent.run_id}", b"1", ex=60)
    with pytest.raises(InvalidToken) as info:
        await RedisRevocationChecker(redis, prefix=prefix).check(claims)
    assert info.value.reason == Reason.RUN_REVOKED


class _Fallback:
    def __init__(self, revoked: bool) -> None:
        self.revoked = revoked
        self.asked = 0

    async def check(self, claims: IntentTokenClaims) -> None:
        self.asked += 1
        if self.revoked:
            raise InvalidToken(Reason.RUN_REVOKED, "the run has been revoked")


async def test_lost_revocations_are_asked_of_the_fallback(
    redis: Any, prefix: str, claims: IntentTokenClaims
) -> None:
    revoked, live = _Fallback(revoked=True), _Fallback(revoked=False)
    with pytest.raises(InvalidToken) as info:
        await RedisRevocationChecker(redis, prefix=prefix, fallback=revoked).check(claims)
    assert info.value.reason == Reason.RUN_REVOKED
    await RedisRevocationChecker(redis, prefix=prefix, fallback=live).check(claims)
    # With the marker back, Redis answers and the fallback is not asked.
    await redis.set(f"{prefix}revocations:ready", b"1")
    await RedisRevocationChecker(redis, prefix=prefix, fallback=revoked).check(claims)
    assert (revoked.asked, live.asked) == (1, 1)


async def test_revocation_store_unreachable_fails_closed(claims: IntentTokenClaims) -> None:
    checker = RedisRevocationChecker.from_url("redis://127.0.0.1:1/0", fallback=_Fallback(False))
    with pytest.raises(ServerError) as info:
        await checker.check(claims)
    assert info.value.status_code == 503


# ------------------------------------------------------------------------ publisher


async def _nothing() -> list[Revoked]:
    return []


async def test_republish_restores_recent_revocations_and_then_the_marker(
    redis: Any, prefix: str
) -> None:
    publisher = RedisRevocationPublisher(redis, 3600, prefix=prefix, clock=lambda: NOW)

    async def active() -> list[Revoked]:
        return [Revoked("run", "run-1", NOW - 100), Revoked("client", "app", NOW - 4000)]

    assert await publisher.republish_if_lost(active)
    assert await redis.get(f"{prefix}revocations:ready") is not None
    assert 0 < await redis.ttl(f"{prefix}revoked:run:run-1") <= 3500  # an hour after revoking
    assert await redis.exists(f"{prefix}revoked:client:app") == 0  # its tokens are long gone
    # The marker stands: nothing to do, unless forced (the IdP starting).
    assert not await publisher.republish_if_lost(active)
    assert await publisher.republish_if_lost(active, force=True)


async def test_republish_writes_nothing_if_the_marker_changes_meanwhile(
    redis: Any, prefix: str
) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import WatchError

    publisher = RedisRevocationPublisher(redis, prefix=prefix, clock=lambda: NOW)
    other = Redis.from_url(REDIS_URL)

    async def active() -> list[Revoked]:
        # While the database is read, Redis changes under us (another IdP worker
        # republished, or it was flushed): the write must not go through.
        await other.set(f"{prefix}revocations:ready", b"other")
        return [Revoked("run", "run-1", NOW)]

    with pytest.raises(WatchError):
        await publisher.republish_if_lost(active)
    await other.aclose()
    assert await redis.exists(f"{prefix}revoked:run:run-1") == 0
    assert await redis.get(f"{prefix}revocations:ready") == b"other"
