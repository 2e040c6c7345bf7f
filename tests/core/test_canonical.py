"""``ajwt_core.canonical.jcs``: the standard library's C encoder writes what ``rfc8785``
writes wherever the fast path takes a value, and every value either way is refused alike.

Every agent checksum, workflow hash, ledger entry and token hash depends on these bytes:
a difference would change identities that are already registered.
"""

from __future__ import annotations

import doctest
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

import ajwt_core.canonical
from ajwt_core.canonical import _fast_jcs, jcs
from ajwt_core.errors import InvalidRequest, Reason

# Every code point, lone surrogates included (hypothesis leaves them out by default).
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=12)
NUMBERS = (
    st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e22, max_value=1e22).map(round)  # integral floats, as floats
    | st.sampled_from([0.0, -0.0, 1.0, 1e-4, 9.99e-5, 1e-7, 1e16, 1e21, 2.0**53, 0.1, 1e15 + 0.5])
)
SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT | st.sampled_from(["", "\x7f", "\u2028"])
KEYS = ANY_TEXT | st.sampled_from(["\U0001f600", "\ue000", "a\U00010000", "a\uffff"])
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


def reference(value: Any) -> bytes | str:
    """What ``rfc8785`` writes, or the name of what it raises."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        return type(exc).__name__


@settings(max_examples=3000, deadline=None)
@given(JSON)
def test_jcs_writes_what_rfc8785_writes(value: Any) -> None:
    expected = reference(value)
    if isinstance(expected, bytes):
        assert jcs(value) == expected
    else:
        assert _fast_jcs(value) is None  # refused by rfc8785: never written fast
        with pytest.raises(InvalidRequest) as refused:
            jcs(value)
        assert refused.value.reason == Reason.MALFORMED_REQUEST


@pytest.mark.parametrize(
    ("value", "fast"),
    [
        ({"model": "m", "temperature": 0.0, "top_p": 0.95, "seed": 7}, True),
        ({"b": [1, True, None], "a": ("x", "\n\u0001")}, True),
        ({"\U0001f600": 1, "\ue000": 2}, False),  # UTF-16 order differs from code points
        ({1: "a"}, False),  # json would write the key as "1": RFC 8785 refuses it
        ({"n": 2**53}, False),  # beyond I-JSON: refused by rfc8785
        ({"x": 1e-7}, False),  # repr writes 1e-07, ECMAScript 1e-7
        ({"x": 1e16}, False),  # repr writes 1e+16, ECMAScript the digits
        ({"x": math.nan}, False),
        ("\ud800", False),  # a lone surrogate
    ],
)
def test_what_takes_the_fast_path(value: Any, fast: bool) -> None:
    assert (_fast_jcs(value) is not None) is fast
    expected = reference(value)
    if isinstance(expected, bytes):
        assert jcs(value) == expected


def test_a_cycle_and_deep_nesting_are_refused_not_looped_over() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    for value in (cycle, deep):
        assert _fast_jcs(value) is None
        with pytest.raises(InvalidRequest):
            jcs(value)


def test_module_doctests_pass() -> None:
    assert doctest.testmod(ajwt_core.canonical).failed == 0
