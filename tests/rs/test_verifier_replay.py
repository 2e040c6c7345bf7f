"""The verifier's replay check (DESIGN §7 step 5): the in-process store is asked without a
coroutine, any other store through ``first_use``, and a store set later is the one asked."""

from __future__ import annotations

import pytest

from ajwt_core.errors import InvalidDPoPProof, Reason
from ajwt_core.rs import RoutePolicy, Verifier
from ajwt_core.rs.stores import MemoryReplayStore
from tests.rs.conftest import Caller
from tests.support import AUDIENCE

URL = AUDIENCE + "/repos"


class RecordingStore:
    """An async store that remembers what it was asked and answers from a set."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def first_use(self, key: str, ttl: float, *, issued_at: float) -> bool:
        first = key not in self.asked
        self.asked.append(key)
        return first


async def _verify(verifier: Verifier, headers: dict[str, str]) -> None:
    await verifier.verify(
        method="GET", url=URL, headers=headers.items(), body=b"", policy=RoutePolicy()
    )


async def test_a_replayed_proof_is_refused_by_the_in_process_store(
    verifier: Verifier, caller: Caller
) -> None:
    assert isinstance(verifier.replay, MemoryReplayStore)
    headers = caller.headers("GET", URL)
    await _verify(verifier, headers)
    with pytest.raises(InvalidDPoPProof) as refused:
        await _verify(verifier, headers)
    assert refused.value.reason == Reason.REPLAYED
    await _verify(verifier, caller.headers("GET", URL))  # a fresh proof passes


async def test_a_store_set_after_construction_is_the_one_asked(
    verifier: Verifier, caller: Caller
) -> None:
    headers = caller.headers("GET", URL)
    await _verify(verifier, headers)  # remembered by the in-process store
    store = RecordingStore()
    verifier.replay = store
    await _verify(verifier, headers)  # the new store has not seen it
    assert store.asked == [f"{caller.key.thumbprint}:{store.asked[0].partition(':')[2]}"]
    with pytest.raises(InvalidDPoPProof) as refused:
        await _verify(verifier, headers)
    assert refused.value.reason == Reason.REPLAYED
    assert len(store.asked) == 2
    verifier.replay = MemoryReplayStore()
    await _verify(verifier, headers)  # a new in-process store: asked, not the old one
    with pytest.raises(InvalidDPoPProof):
        await _verify(verifier, headers)


async def test_a_subclass_that_overrides_first_use_is_asked_through_it(
    verifier: Verifier, caller: Caller
) -> None:
    class Counting(MemoryReplayStore):
        calls = 0

        async def first_use(self, key: str, ttl: float, *, issued_at: float) -> bool:
            Counting.calls += 1
            return await super().first_use(key, ttl, issued_at=issued_at)

    verifier.replay = Counting()
    headers = caller.headers("GET", URL)
    await _verify(verifier, headers)
    with pytest.raises(InvalidDPoPProof):
        await _verify(verifier, headers)
    assert Counting.calls == 2
