"""The revocation feed a resource server follows (``ajwt_core.rs.revocation_feed``):
a revoked run, intent, client or agent is refused from memory; a stale feed is a 503,
never an acceptance; the Redis variant follows what the IdP publishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ajwt_core.errors import InvalidToken, Reason, ServerError
from ajwt_core.rs import RevocationFeed, StaticSource
from ajwt_core.rs.revocation_feed import RedisFeedSource
from ajwt_core.rs.stores import RedisRevocationPublisher, Revoked
from ajwt_core.tokens import IntentTokenClaims
from tests.support import ClaimsFactory


class Silent:
    """A source that never answers (the IdP down since the worker started)."""

    async def follow(self, feed: RevocationFeed) -> None:
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        return None


class Once:
    """Answers once, then goes quiet (the IdP went down after the first update)."""

    def __init__(self, revoked: list[tuple[str, str]]) -> None:
        self.revoked = revoked

    async def follow(self, feed: RevocationFeed) -> None:
        feed.apply(self.revoked)
        feed.mark_fresh()
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        return None


@pytest.fixture
def claims(make_claims: ClaimsFactory) -> IntentTokenClaims:
    return make_claims()


@pytest.mark.parametrize(
    ("kind", "ident", "reason"),
    [
        ("run", "run-1", Reason.RUN_REVOKED),
        ("intent", "intent-1", Reason.INTENT_REVOKED),
        ("client", "patcher-app", Reason.CLIENT_REVOKED),
        ("agent", "reg-1", Reason.AGENT_REVOKED),
    ],
)
async def test_refuses_a_token_whose_run_intent_client_or_agent_is_revoked(
    claims: IntentTokenClaims, kind: str, ident: str, reason: Reason
) -> None:
    feed = RevocationFeed(StaticSource([(kind, ident)]))
    with pytest.raises(InvalidToken) as refused:
        await feed.check(claims)
    assert refused.value.reason == reason
    await feed.aclose()


async def test_accepts_a_token_nothing_of_which_is_revoked(claims: IntentTokenClaims) -> None:
    # The same ids under other kinds, and other ids under the same kinds, do not count.
    feed = RevocationFeed(StaticSource([("run", "reg-1"), ("agent", "run-1"), ("run", "run-2")]))
    await feed.check(claims)
    await feed.aclose()


async def test_a_feed_that_never_answered_is_a_503_not_an_acceptance(
    claims: IntentTokenClaims,
) -> None:
    feed = RevocationFeed(Silent(), max_staleness=5.0, first_wait=0.05)
    with pytest.raises(ServerError) as refused:
        await feed.check(claims)
    assert refused.value.reason == Reason.REVOCATION_FEED_STALE
    assert refused.value.status_code == 503
    await feed.aclose()


async def test_a_feed_not_updated_for_max_staleness_is_a_503(claims: IntentTokenClaims) -> None:
    now = [1000.0]
    feed = RevocationFeed(Once([]), max_staleness=2.0, clock=lambda: now[0])
    await feed.check(claims)  # fresh: accepted
    now[0] += 1.9
    await feed.check(claims)  # within the bound
    now[0] += 0.2
    with pytest.raises(ServerError) as refused:
        await feed.check(claims)
    assert refused.value.reason == Reason.REVOCATION_FEED_STALE
    await feed.aclose()


async def test_what_a_worker_learnt_is_kept_until_tokens_cannot_live(
    claims: IntentTokenClaims,
) -> None:
    now = [1000.0]
    feed = RevocationFeed(StaticSource(), retention=3600, clock=lambda: now[0])
    feed.apply([("run", "run-1")])
    feed.mark_fresh()
    now[0] += 3000  # well past any token's lifetime, short of the retention
    feed.mark_fresh()
    assert feed.is_revoked("run", "run-1")
    now[0] += 700
    feed.mark_fresh()  # prunes: tokens of that run expired long ago
    assert not feed.is_revoked("run", "run-1")


async def test_a_stale_feed_answers_503_with_an_oauth_body_at_the_api(
    caller: Any, idp_keys: Any
) -> None:
    from ajwt_core.rs import AJWTMiddleware, Verifier
    from tests.rs.asgi import call
    from tests.support import AUDIENCE, ISSUER, NOW

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def middleware(source: Any) -> AJWTMiddleware:
        verifier = Verifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            keys=idp_keys.verification_keys(),
            revocation=RevocationFeed(source, first_wait=0.05),
            clock=lambda: NOW + 1,
        )
        return AJWTMiddleware(app, verifier=verifier)

    url = AUDIENCE.rstrip("/") + "/repos"
    host = AUDIENCE.split("://")[1].rstrip("/")
    stale = await call(middleware(Silent()), host=host, headers=caller.headers("GET", url).items())
    assert stale.status == 503
    assert stale.reason == "revocation_feed_stale"
    assert stale.json()["error"] == "temporarily_unavailable"
    assert stale.headers[b"retry-after"] == b"1"
    fresh = await call(
        middleware(StaticSource()), host=host, headers=caller.headers("GET", url).items()
    )
    assert fresh.status == 200


# ------------------------------------------------------------------------ Redis feed


async def test_aclose_stops_a_source_that_swallows_a_cancellation() -> None:
    # redis-py can (Python 3.11's wait_for, CPython gh-86296): aclose once waited forever.
    class Stubborn(StaticSource):
        swallowed = 0
        closed = False

        async def follow(self, feed: RevocationFeed) -> None:
            while True:
                try:
                    await super().follow(feed)
                except asyncio.CancelledError:
                    if self.swallowed:
                        raise
                    self.swallowed += 1

        async def aclose(self) -> None:
            self.closed = True

    source = Stubborn()
    feed = RevocationFeed(source, max_staleness=1.0)
    await feed.start()
    assert feed.fresh
    await asyncio.wait_for(feed.aclose(), 5)
    assert (source.swallowed, source.closed) == (1, True)


@pytest.fixture
def prefix() -> Iterator[str]:
    from tests.redis_support import shared_redis_prefix

    with shared_redis_prefix() as own:
        yield own


async def _until(condition: Any, within: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@pytest.mark.redis
async def test_redis_feed_follows_what_the_idp_publishes(
    prefix: str, claims: IntentTokenClaims
) -> None:
    from redis.asyncio import Redis

    from tests.services import REDIS_URL

    # Clients with socket timeouts, as the library's own (RedisFeedSource.from_url): a
    # stalled command fails and is retried instead of waiting forever (once, in CI, this
    # test hung until pytest's timeout with bare clients).
    idp_side = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    publisher = RedisRevocationPublisher(idp_side, prefix=prefix)

    async def active() -> list[Revoked]:
        return [Revoked("agent", "reg-old", int(time.time()))]

    # Before the IdP has published its list (no ready marker) the feed is stale: 503.
    workers = [
        RevocationFeed(
            RedisFeedSource.from_url(REDIS_URL, prefix=prefix, interval=0.1),
            max_staleness=1.0,
            first_wait=0.2,
        )
        for _ in range(2)
    ]
    with pytest.raises(ServerError) as refused:
        await workers[0].check(claims)
    assert refused.value.reason == Reason.REVOCATION_FEED_STALE

    assert await publisher.republish_if_lost(active)
    for feed in workers:
        await feed.start()
        await feed.check(claims)  # nothing of this token is revoked
        assert feed.is_revoked("agent", "reg-old")  # read in full when subscribing

    await publisher.publish("run", "run-1")
    took = await _until(lambda: all(w.is_revoked("run", "run-1") for w in workers), 1.0)
    assert took < 1.0
    for feed in workers:
        with pytest.raises(InvalidToken) as revoked:
            await feed.check(claims)
        assert revoked.value.reason == Reason.RUN_REVOKED

    # Redis lost the published state (the marker is gone): stale until republished,
    # and what the workers learnt is not forgotten.
    await idp_side.delete(f"{prefix}revocations:ready", f"{prefix}revoked:run:run-1")
    await _until(lambda: not workers[0].fresh, 1.5)
    with pytest.raises(ServerError):
        await workers[0].check(claims)
    assert await publisher.republish_if_lost(active)
    await _until(lambda: workers[0].fresh, 2.0)
    with pytest.raises(InvalidToken) as still:
        await workers[0].check(claims)
    assert still.value.reason == Reason.RUN_REVOKED
    for feed in workers:
        await feed.aclose()
    await idp_side.aclose()


# --------------------------------------------------- the status endpoint, where still used


async def test_parallel_requests_for_one_run_make_one_status_fetch(
    claims: IntentTokenClaims,
) -> None:
    import httpx

    from ajwt_core.rs import IdPRevocationChecker

    calls: list[str] = []

    async def idp(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        await asyncio.sleep(0.05)  # every request arrives while the first is in flight
        return httpx.Response(200, json={"state": "revoked", "client_active": True})

    checker = IdPRevocationChecker(
        "http://idp.test", client=httpx.AsyncClient(transport=httpx.MockTransport(idp))
    )
    results = await asyncio.gather(
        *(checker.check(claims) for _ in range(10)), return_exceptions=True
    )
    assert len(calls) == 1
    assert all(isinstance(r, InvalidToken) and r.reason == Reason.RUN_REVOKED for r in results)
    # Another run is another fetch.
    other = claims.model_copy(
        update={"intent": claims.intent.model_copy(update={"run_id": "run-2"})}
    )
    with pytest.raises(InvalidToken):
        await checker.check(other)
    assert len(calls) == 2


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_a_stale_feed_is_503_with_retry_after_at_every_middleware(
    framework: str, caller: Any, idp_keys: Any
) -> None:
    # Found by a probe: FastAPI's install() and the WSGI middleware answered the 503
    # without the Retry-After the ASGI middleware sends (one refusal writer now).
    import httpx
    from fastapi import FastAPI, Security
    from flask import Flask

    from ajwt_core.rs import Verifier
    from ajwt_core.rs.fastapi import install, require_intent
    from ajwt_core.rs.wsgi import AJWTWSGIMiddleware
    from tests.support import AUDIENCE, ISSUER, NOW

    verifier = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=idp_keys.verification_keys(),
        revocation=RevocationFeed(Silent(), first_wait=0.05),
        clock=lambda: NOW + 1,
    )
    url = AUDIENCE.rstrip("/") + "/repos"
    if framework == "fastapi":
        api = FastAPI()
        install(api, verifier)

        @api.get("/repos", dependencies=[Security(require_intent())])
        async def repos() -> dict[str, bool]:
            return {"ok": True}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as http:
                return await http.get("/repos", headers=caller.headers("GET", url))

        stale = asyncio.run(go())
    else:
        flask_app = Flask(__name__)
        flask_app.add_url_rule("/repos", view_func=lambda: {"ok": True})
        guard = AJWTWSGIMiddleware(flask_app.wsgi_app, verifier=verifier)
        try:
            with httpx.Client(transport=httpx.WSGITransport(app=guard), base_url=AUDIENCE) as http:
                stale = http.get("/repos", headers=caller.headers("GET", url))
        finally:
            guard.close()
    assert stale.status_code == 503
    assert stale.json()["ajwt_reason"] == "revocation_feed_stale"
    assert stale.headers["retry-after"] == "1"


def test_a_refused_head_at_a_wsgi_app_has_no_content(caller: Any, idp_keys: Any) -> None:
    # RFC 9110 §9.3.2: the GET's status and headers, no content (Flask sent the body).
    import httpx
    from flask import Flask

    from ajwt_core.rs import Route, RoutePolicy, Verifier
    from ajwt_core.rs.wsgi import AJWTWSGIMiddleware
    from tests.support import AUDIENCE, ISSUER, NOW

    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, keys=idp_keys.verification_keys(), clock=lambda: NOW + 1
    )
    flask_app = Flask(__name__)
    flask_app.add_url_rule("/repos", view_func=lambda: {"ok": True})
    routes = [Route("GET", "/repos", RoutePolicy.of(scopes=["repo:admin"]))]
    guard = AJWTWSGIMiddleware(flask_app.wsgi_app, verifier=verifier, routes=routes)
    url = AUDIENCE.rstrip("/") + "/repos"
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=guard), base_url=AUDIENCE) as http:
            head = http.head("/repos", headers=caller.headers("HEAD", url))
            get = http.get("/repos", headers=caller.headers("GET", url))
    finally:
        guard.close()
    assert head.status_code == get.status_code == 403
    assert head.content == b"" and get.json()["ajwt_reason"] == "scope_exceeded"
    assert head.headers["www-authenticate"] == get.headers["www-authenticate"]


def test_a_retired_signing_key_is_not_served_from_the_token_cache(
    caller: Any, idp_keys: Any
) -> None:
    # Found by a probe: after `ajwt idp retire-key` and the RS's next JWKS refresh, a
    # token signed by the retired key that the RS had cached was still accepted.
    import httpx

    from ajwt_core.keys import SigningKeySet
    from ajwt_core.rs import JWKSCache, Verifier
    from tests.rs.asgi import call as asgi_call
    from tests.support import AUDIENCE, ISSUER, NOW

    served = [idp_keys.jwks()]
    replacement = SigningKeySet.generate()

    def jwks(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=served[0])

    keys = JWKSCache(
        ISSUER + "/.well-known/jwks.json",
        client=httpx.AsyncClient(transport=httpx.MockTransport(jwks)),
    )
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, clock=lambda: NOW + 1)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    from ajwt_core.rs import AJWTMiddleware

    guarded = AJWTMiddleware(app, verifier=verifier)
    url = AUDIENCE.rstrip("/") + "/repos"
    host = AUDIENCE.split("://")[1].rstrip("/")

    async def go() -> tuple[int, int, str]:
        first = await asgi_call(guarded, host=host, headers=caller.headers("GET", url).items())
        served[0] = replacement.jwks()  # the old key retired, another one active
        assert await keys.refresh(force=True)
        again = await asgi_call(guarded, host=host, headers=caller.headers("GET", url).items())
        return first.status, again.status, again.reason

    before, after, reason = asyncio.run(go())
    assert before == 200
    assert after == 401 and reason == "unknown_kid"
