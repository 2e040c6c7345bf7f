"""The Redis variant of the revocation feed (``RedisFeedSource``): resource-server workers
follow what an IdP started with Redis publishes (keys, then pub/sub messages), refuse a
revoked run within 1 s, fail closed (503) while Redis is gone, and never accept a
revoked token again after Redis restarts empty. Each test runs a redis-server of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ajwt_core.errors import Reason
from ajwt_core.rs import JWKSCache, RedisFeedSource, RevocationFeed, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_demo.api import create_api
from tests.e2e.test_redis_restart import (  # noqa: F401 - fixtures
    RedisIdP,
    get_repos,
    reason_of,
    redis_idp,
    redis_server,
    refused_until,
    signed_client,
)
from tests.redis_support import OwnRedis, wait_for

pytestmark = pytest.mark.redis

MAX_STALENESS = 1.0


def feed_worker(idp: RedisIdP, redis_url: str) -> BackgroundServer:
    """A resource-server worker following Redis, stale after ``MAX_STALENESS`` seconds."""
    server = BackgroundServer()
    verifier = Verifier(
        issuer=idp.stack.idp_url,
        audience=server.url,
        keys=JWKSCache(idp.stack.idp_url + "/.well-known/jwks.json"),
        revocation=RevocationFeed(
            RedisFeedSource.from_url(redis_url, interval=0.1), max_staleness=MAX_STALENESS
        ),
    )
    server.start(create_api(verifier).asgi)
    return server


@pytest.fixture
def workers(redis_idp: RedisIdP, redis_server: OwnRedis) -> Iterator[list[BackgroundServer]]:  # noqa: F811
    started = [feed_worker(redis_idp, redis_server.url) for _ in range(2)]
    yield started
    for server in started:
        server.close()


def test_a_revoked_run_is_refused_at_two_workers_within_one_second(
    redis_idp: RedisIdP,  # noqa: F811
    workers: list[BackgroundServer],
) -> None:
    shim = redis_idp.stack.shim()
    run = redis_idp.stack.start_run(shim)
    clients = [signed_client(shim, run, w) for w in workers]
    try:
        for http in clients:
            assert get_repos(http).status_code == 200
        assert redis_idp.admin.revoke("run", run.run_id) == {
            "revoked": True,
            "published": True,
        }
        revoked_at = time.monotonic()
        pending = set(range(len(clients)))
        while pending:
            for index in sorted(pending):
                answer = get_repos(clients[index])
                if answer.status_code == 401:
                    assert reason_of(answer) == Reason.RUN_REVOKED.value
                    pending.discard(index)
                else:
                    assert answer.status_code == 200, answer.text
            assert time.monotonic() - revoked_at < 1.0, "not refused everywhere within 1 s"
            time.sleep(0.02)
    finally:
        for http in clients:
            http.close()


def test_a_revoked_run_stays_refused_after_redis_restarts_empty(
    redis_idp: RedisIdP,  # noqa: F811
    redis_server: OwnRedis,  # noqa: F811
    workers: list[BackgroundServer],
) -> None:
    shim = redis_idp.stack.shim()
    run = redis_idp.stack.start_run(shim)
    with signed_client(shim, run, workers[0]) as http:
        assert get_repos(http).status_code == 200
        redis_idp.admin.revoke("run", run.run_id)
        wait_for(lambda: reason_of(get_repos(http)) == Reason.RUN_REVOKED.value, timeout=2)
        redis_server.restart_empty()
        # The worker remembers; while the feed is stale it answers 503. Never a 200.
        refused_until(http, Reason.RUN_REVOKED, interim={503})
        wait_for(lambda: get_repos(http).status_code == 401, timeout=5)
        assert reason_of(get_repos(http)) == Reason.RUN_REVOKED.value


def test_with_redis_down_a_worker_fails_closed_then_learns_what_was_revoked(
    redis_idp: RedisIdP,  # noqa: F811
    redis_server: OwnRedis,  # noqa: F811
    workers: list[BackgroundServer],
) -> None:
    shim = redis_idp.stack.shim()
    run = redis_idp.stack.start_run(shim)
    with (
        httpx.Client(base_url=workers[0].url, auth=shim.auth()) as http,
        shim.acting("supervisor", tool="list_repos", run=run),
    ):
        assert get_repos(http).status_code == 200
        redis_server.kill()
        assert redis_idp.admin.revoke("run", run.run_id) == {
            "revoked": True,
            "published": False,
        }
        # Within MAX_STALENESS of the last update the worker may still answer; after it,
        # every request is a 503 with the feed's reason.
        time.sleep(MAX_STALENESS + 0.3)
        stale = get_repos(http)
        assert stale.status_code == 503, stale.text
        assert reason_of(stale) == Reason.REVOCATION_FEED_STALE.value
        redis_server.start()  # empty: the IdP republishes, with the pending revocation
        refused_until(http, Reason.RUN_REVOKED, interim={503})
