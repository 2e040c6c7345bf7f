"""The shim's memory of revocations: bounded, newest kept, one lookup a check."""

from __future__ import annotations

import doctest

from ajwt_core.shim import known_revoked
from ajwt_core.shim.known_revoked import KnownRevoked


def test_module_doctests_pass() -> None:
    assert doctest.testmod(known_revoked).failed == 0


def test_each_kind_keeps_its_newest_ids_and_no_more() -> None:
    known = KnownRevoked(most=100)
    for index in range(1_000):
        known.add("run", f"run-{index}")
    known.add("agent", "reg-1")
    assert len(known) == 101
    assert known.has("run", "run-999") and known.has("run", "run-900")
    assert not known.has("run", "run-899")
    assert known.has("agent", "reg-1") and not known.has("intent", "reg-1")


def test_an_id_added_again_is_the_newest() -> None:
    known = KnownRevoked(most=2)
    known.add("intent", "a")
    known.add("intent", "b")
    known.add("intent", "a")
    known.add("intent", "c")
    assert known.has("intent", "a") and not known.has("intent", "b")


def test_an_unknown_kind_is_neither_kept_nor_known() -> None:
    known = KnownRevoked()
    known.add("client", "app")
    assert not known.has("client", "app") and len(known) == 0
