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
