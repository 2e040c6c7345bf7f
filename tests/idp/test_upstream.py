"""The upstream provider's keys (``ajwt_core.idp.upstream``): fetched lazily through
discovery, refreshed on an unknown ``kid`` at a bounded rate, 503 while unreachable, and
the settings that would make a ``sub`` ambiguous refused."""

from __future__ import annotations

import asyncio
import doctest
import logging
from typing import Any

import pytest

import ajwt_core.idp.upstream
from ajwt_core.errors import InvalidRequest, Reason, ServerError
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.idp.upstream import (
    UpstreamProvider,
    check_upstream_settings,
    subject_prefix,
)
from tests.idp.fake_provider import OP, FakeProvider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def upstream(provider: FakeProvider, clock: Clock, **options: Any) -> UpstreamProvider:
    return provider.upstream(clock=clock, min_refresh=30, retry_interval=2, **options)


def kids(resolver: Any) -> set[str]:
    return set(resolver.kids())


def test_nothing_is_fetched_until_a_token_needs_the_keys(
    provider: FakeProvider, clock: Clock
) -> None:
    keys = upstream(provider, clock)
    assert len(asyncio.run(keys.keys())) == 0
    assert provider.requests == []


def test_keys_are_found_by_discovery(provider: FakeProvider, clock: Clock) -> None:
    resolver = asyncio.run(upstream(provider, clock).refresh())
    assert kids(resolver) == {provider.keys[0][0]}
    assert provider.requests == ["/.well-known/openid-configuration", "/jwks"]


def test_a_configured_jwks_url_skips_discovery(provider: FakeProvider, clock: Clock) -> None:
    resolver = asyncio.run(upstream(provider, clock, jwks_url=OP + "/jwks").refresh())
    assert kids(resolver) == {provider.keys[0][0]}
    assert provider.requests == ["/jwks"]


def test_configured_keys_are_never_fetched(provider: FakeProvider, clock: Clock) -> None:
    fixed = upstream(provider, clock, jwks=provider.jwks())

    async def use() -> tuple[Any, Any]:
        return await fixed.keys(), await fixed.refresh()

    before, after = asyncio.run(use())
    assert kids(before) == kids(after) == {provider.keys[0][0]}
    assert provider.requests == []


def test_a_rotated_key_is_fetched_but_not_more_often_than_min_refresh(
    provider: FakeProvider, clock: Clock
) -> None:
    keys = upstream(provider, clock)

    async def scenario() -> None:
        await keys.refresh()
        new = provider.rotate()
        clock.now += 10  # within min_refresh: unknown kids do not reach the provider
        assert new not in (await keys.refresh()).kids()
        assert provider.fetches() == 1
        clock.now += 21
        assert new in (await keys.refresh()).kids()
        assert provider.fetches() == 2

    asyncio.run(scenario())


def test_a_flood_of_unknown_kids_costs_one_fetch(provider: FakeProvider, clock: Clock) -> None:
    keys = upstream(provider, clock)

    async def flood() -> None:
        await asyncio.gather(*(keys.refresh() for _ in range(50)))

    asyncio.run(flood())
    assert provider.fetches() == 1


def test_provider_down_is_503_and_retried_after_the_retry_interval(
    provider: FakeProvider, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = upstream(provider, clock)
    provider.down = True

    async def scenario() -> None:
        with pytest.raises(ServerError) as info:
            await keys.refresh()
        assert info.value.reason == Reason.SERVICE_UNAVAILABLE
        assert info.value.status_code == 503
        assert OP in str(info.value)
        provider.down = False
        clock.now += 1  # within the retry interval: answered 503 without asking
        with pytest.raises(ServerError):
            await keys.refresh()
        assert provider.requests == ["/.well-known/openid-configuration"]
        clock.now += 1
        assert len(await keys.refresh()) == 1

    with caplog.at_level(logging.WARNING, logger="ajwt_core.idp"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    assert any("upstream identity provider unavailable (ConnectError" in line for line in lines)
    assert any("upstream identity provider available again" in line for line in lines)


def test_known_keys_outlive_an_outage_and_stale_keys_are_fetched_again(
    provider: FakeProvider, clock: Clock
) -> None:
    keys = upstream(provider, clock, max_age=3600)

    async def scenario() -> None:
        first = provider.keys[0][0]
        await keys.refresh()
        provider.down = True
        clock.now += 3600  # stale, and the provider is down: the known keys are kept
        assert first in (await keys.keys()).kids()
        provider.down = False
        provider.keys = [(provider.new_kid(), provider.keys[0][1])]  # the old kid withdrawn
        clock.now += 2
        assert first not in (await keys.keys()).kids()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "discovery",
    [
        {"issuer": "http://evil.test", "jwks_uri": "http://evil.test/jwks"},
        {"issuer": OP + "/", "jwks_uri": OP + "/jwks"},  # §4.3: identical, not similar
        {"issuer": OP},
        {"issuer": OP, "jwks_uri": "file:///etc/passwd"},
        {"issuer": OP, "jwks_uri": 5},
    ],
    ids=repr,
)
def test_a_discovery_document_that_cannot_be_trusted_is_503(
    provider: FakeProvider, clock: Clock, discovery: dict[str, Any]
) -> None:
    provider.discovery = discovery
    with pytest.raises(ServerError) as info:
        asyncio.run(upstream(provider, clock).refresh())
    assert info.value.reason == Reason.SERVICE_UNAVAILABLE
    assert provider.fetches() == 0


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]},  # no symmetric keys
        ["not", "an", "object"],
        {"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB" * 200_000, "e": "AQAB"}]},  # too big
    ],
    ids=["empty", "symmetric", "list", "oversized"],
)
def test_a_jwks_without_usable_keys_is_503(provider: FakeProvider, clock: Clock, jwks: Any) -> None:
    provider.jwks_override = jwks
    with pytest.raises(ServerError) as info:
        asyncio.run(upstream(provider, clock).refresh())
    assert info.value.reason == Reason.SERVICE_UNAVAILABLE


# ------------------------------------------------------------------------ settings


def test_subjects_are_namespaced_by_the_issuer_by_default() -> None:
    settings = IdPSettings(issuer="http://idp", upstream_issuer=OP)
    assert subject_prefix(settings) == OP + "#"
    assert not settings.accepts_local_users  # off by default once an upstream is set
    assert IdPSettings(issuer="http://idp").accepts_local_users


def test_bare_upstream_subjects_need_local_users_off() -> None:
    bare = {"issuer": "http://idp", "upstream_issuer": OP, "upstream_subject_prefix": ""}
    check_upstream_settings(IdPSettings(**bare))  # local users off by default: unambiguous
    with pytest.raises(InvalidRequest) as info:
        check_upstream_settings(IdPSettings(**bare, local_users=True))
    assert info.value.reason == Reason.MALFORMED_REQUEST
    assert "same 'sub'" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"upstream_client_id": "app"}, "upstream_client_id is set without an upstream issuer"),
        ({"upstream_audience": "a", "upstream_jwks_url": "http://op/jwks"}, "are set without"),
        ({"upstream_issuer": "op.example"}, "must be an http(s) URL"),
    ],
)
def test_upstream_settings_that_cannot_work_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_upstream_settings(IdPSettings(issuer="http://idp", **settings))
    assert message in str(info.value)


def test_module_doctests_pass() -> None:
    assert doctest.testmod(ajwt_core.idp.upstream).failed == 0
