"""RFC 3986 as A-JWT compares URLs: authority syntax, §5.2.4 and §6.2.2 normal form."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ajwt_core.dpop
import ajwt_core.uri
from ajwt_core.uri import (
    has_dot_segments,
    normalise_http_url,
    normalise_percent_encoding,
    parse_authority,
    remove_dot_segments,
)


@pytest.mark.parametrize(
    ("authority", "parsed"),
    [
        ("api.example", ("api.example", None)),
        ("API.Example:8443", ("api.example", 8443)),
        ("api.example:", ("api.example", None)),
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]", ("[::1]", None)),
        ("[2001:DB8::1]:443", ("[2001:db8::1]", 443)),
    ],
)
def test_plain_authorities_parse(authority: str, parsed: tuple[str, int | None]) -> None:
    assert parse_authority(authority) == parsed


@pytest.mark.parametrize(
    "authority",
    [
        "",
        ":80",
        "user@api.example",
        "api.example/x",
        "api.example?",
        "api.example#",
        "api.example x",
        " api.example",
        "api.example:80:80",
        "api.example:65536",
        "api.example:-1",
        "api.example:８０",  # non-ASCII digits
        "[::1",
        "[::1]x",
        "[fe80::1%25eth0]",
        "apí.example",
        "api%2Eexample",
    ],
)
def test_anything_else_is_not_an_authority(authority: str) -> None:
    with pytest.raises(ValueError, match="host"):
        parse_authority(authority)


@pytest.mark.parametrize(
    ("path", "result"),
    [
        # RFC 3986 §5.2.4's own examples, and the edges of each rule.
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("/..", "/"),
        ("/../a", "/a"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/a/.b/..c", "/a/.b/..c"),
        ("../a", "a"),
        ("./a", "a"),
        ("", ""),
    ],
)
def test_remove_dot_segments(path: str, result: str) -> None:
    assert remove_dot_segments(path) == result


def test_percent_encoding_is_normalised_not_decoded() -> None:
    assert normalise_percent_encoding("/%41%7a%2d%2E%5f%7E") == "/Az-._~"
    assert normalise_percent_encoding("/%2f%3a%c3%a9%25") == "/%2F%3A%C3%A9%25"


def test_dot_segments_are_found_when_encoded() -> None:
    assert has_dot_segments("/a/%2e/b")
    assert has_dot_segments("/a/.%2E")
    assert not has_dot_segments("/a/..b/.c/%2Ex%2E")


_PATH_CHARS = st.sampled_from([*"aZ09-._~!$&'()*+,;=:@/", "%2F", "%2e", "%7E", "%c3%a9"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PATH_CHARS, max_size=30).map("".join))
def test_normal_form_is_a_fixed_point(path: str) -> None:
    once = normalise_http_url("HTTPS://API.example:443/" + path)
    assert normalise_http_url(once) == once


def test_module_doctests_pass() -> None:
    for module in (ajwt_core.uri, ajwt_core.dpop):
        assert doctest.testmod(module).failed == 0, module.__name__
