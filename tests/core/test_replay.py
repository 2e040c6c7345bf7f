"""The in-memory replay cache (DESIGN §7 step 5)."""

from __future__ import annotations

import threading

import pytest

from ajwt_core.errors import Reason, ServerError
from ajwt_core.replay import InMemoryReplayCache, ReplayCache


def test_first_use_then_replay() -> None:
    cache = InMemoryReplayCache()
    assert cache.first_use("k", ttl=60, now=100)
    assert not cache.first_use("k", ttl=60, now=159)


def test_entries_expire() -> None:
    cache = InMemoryReplayCache()
    cache.first_use("k", ttl=60, now=100)
    assert cache.first_use("k", ttl=60, now=160)
    cache.first_use("other", ttl=60, now=300)
    assert len(cache) == 1  # "k" (expired at 220) was evicted


def test_full_cache_fails_closed_instead_of_forgetting() -> None:
    cache = InMemoryReplayCache(max_entries=2)
    cache.first_use("a", ttl=60, now=0)
    cache.first_use("b", ttl=60, now=0)
    with pytest.raises(ServerError) as info:
        cache.first_use("c", ttl=60, now=1)
    assert info.value.reason == Reason.SERVICE_UNAVAILABLE
    assert info.value.status_code == 503
    assert not cache.first_use("a", ttl=60, now=1)  # "a" was not forgotten
    assert cache.first_use("c", ttl=60, now=61)  # room again once entries expire


def test_concurrent_first_use_admits_exactly_one() -> None:
    cache = InMemoryReplayCache()
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results.append(cache.first_use("same", ttl=60))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_implements_protocol() -> None:
    assert isinstance(InMemoryReplayCache(), ReplayCache)


def test_an_expired_entry_is_evicted_or_reused_but_a_live_one_never_forgotten() -> None:
    cache = InMemoryReplayCache()
    assert cache.first_use("a", ttl=10, now=0)  # until 10
    assert cache.first_use("b", ttl=10, now=5)  # until 15
    assert not cache.first_use("a", ttl=10, now=9.9)
    assert cache.first_use("a", ttl=10, now=10)  # expired: a first use again, until 20
    assert not cache.first_use("b", ttl=10, now=14)  # live behind the evicted front
    assert not cache.first_use("a", ttl=10, now=14.5)
    assert cache.first_use("c", ttl=10, now=16)  # "b" (15) expired and is evicted
    assert len(cache) == 2
    assert not cache.first_use("a", ttl=10, now=19)
    assert not cache.first_use("c", ttl=10, now=25)
    assert cache.first_use("b", ttl=10, now=26)
    assert cache.first_use("d", ttl=10, now=40)  # every earlier entry expired
    assert len(cache) == 1
