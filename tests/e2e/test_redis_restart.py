"""Revocation and replay protection survive Redis losing its data (issue 12 §3).

Each test starts a redis-server of its own (no persistence, as deploy.md's Redis) and
kills, restarts or pauses it; the shared Redis is never touched. Before this fix, a
restart re-opened a revoked run at the resource server and let a captured request be
replayed with 200, and a revoke while Redis was down answered 500 and never reached the
resource servers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.rs import (
    IdPRevocationChecker,
    JWKSCache,
    RedisReplayStore,
    RedisRevocationChecker,
    Verifier,
)
from ajwt_core.rs.stores import RevocationChecker
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Run, Shim
from ajwt_core.workflow import reference_workflow
from ajwt_demo.api import create_api
from ajwt_demo.stack import Stack
from tests.redis_support import OwnRedis, own_redis, seed_replay_epoch, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis(tmp_path) as server:
        yield server


def resource_server(
    stack: Stack,
    *,
    replay: RedisReplayStore | None = None,
    revocation: RevocationChecker | None = None,
) -> BackgroundServer:
    server = BackgroundServer()
    verifier = Verifier(
        issuer=stack.idp_url,
        audience=server.url,
        keys=JWKSCache(stack.idp_url + "/.well-known/jwks.json"),
        replay=replay,
        revocation=revocation,
    )
    server.start(create_api(verifier).asgi)
    return server


@dataclass
class RedisIdP:
    """An IdP that publishes revocations to the test's own Redis."""

    stack: Stack
    admin: AdminClient
    server: BackgroundServer


@pytest.fixture
def redis_idp(redis_server: OwnRedis, tmp_path: Path) -> Iterator[RedisIdP]:
    admin_token = "adm-" + secrets.token_hex(8)
    server = BackgroundServer()
    settings = IdPSettings(
        issuer=server.url,
        db_url=f"sqlite:///{tmp_path}/idp.db",
        admin_token=admin_token,
        redis_url=redis_server.url,
        revocation_sync_interval=0.1,
    )
    seed_replay_epoch(redis_server.client())  # the IdP's own proofs: a long-running cache
    server.start(create_app(settings))
    admin = AdminClient(server.url, admin_token)
    admin.register_workflow(reference_workflow().canonical())
    stack = Stack(idp_url=server.url, rs_url="", admin=admin, api=None, idp_app=None)  # type: ignore[arg-type]
    # The IdP's first pass republishes (nothing yet) and sets the ready marker.
    wait_for(lambda: redis_server.client().exists("ajwt:revocations:ready") == 1)
    yield RedisIdP(stack=stack, admin=admin, server=server)
    admin.close()
    server.close()


def get_repos(http: httpx.Client) -> httpx.Response:
    return http.get("/repos")


def reason_of(response: httpx.Response) -> str | None:
    try:
        reason = response.json().get("ajwt_reason")
    except ValueError:
        return None
    return reason if isinstance(reason, str) else None


def refused_until(
    http: httpx.Client, expected: Reason, interim: set[int], timeout: float = 10.0
) -> None:
    """Every answer is a refusal: ``interim`` statuses (503 while Redis is empty or down)
    until the ``expected`` refusal; never a 200."""
    seen: list[tuple[int, str | None]] = []

    def refused_as_expected() -> bool:
        response = get_repos(http)
        seen.append((response.status_code, reason_of(response)))
        assert response.status_code != 200, seen
        if reason_of(response) == expected.value:
            return True
        assert response.status_code in interim, seen
        return False

    wait_for(refused_as_expected, timeout=timeout, interval=0.05)


# ---------------------------------------------------------------------------- replay


def test_captured_proof_is_refused_after_redis_restarts_empty(
    stack: Stack, redis_server: OwnRedis
) -> None:
    seed_replay_epoch(redis_server.client())  # a cache that has run for long
    server = resource_server(stack, replay=RedisReplayStore.from_url(redis_server.url))
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        with shim.acting("supervisor", tool="list_repos", run=run) as context:
            token = shim.token(context, server.url).token
        proof = create_proof(
            shim.agent("supervisor").key, "GET", server.url + "/repos", token=token, body=b""
        )
        captured = {"Authorization": f"DPoP {token}", "DPoP": proof}
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/repos", headers=captured).status_code == 200
            replayed = http.get("/repos", headers=captured)
            assert reason_of(replayed) == Reason.REPLAYED.value

            redis_server.kill()
            down = http.get("/repos", headers=captured)
            assert down.status_code == 503  # fail closed while it is down
            assert down.json()["error"] == "temporarily_unavailable"

            redis_server.restart_empty()
            replayed = http.get("/repos", headers=captured)
            assert replayed.status_code == 401
            assert reason_of(replayed) == Reason.REPLAY_STATE_RESET.value

            # Fresh proofs pass again once they postdate the reset (plus 5 s of clock
            # leeway); the captured one never does.
            with shim.acting("supervisor", tool="list_repos", run=run):
                fresh = httpx.Client(base_url=server.url, auth=shim.auth())
                wait_for(lambda: get_repos(fresh).status_code == 200, timeout=15, interval=0.5)
                fresh.close()
            assert reason_of(http.get("/repos", headers=captured)) in {
                Reason.REPLAY_STATE_RESET.value,
                Reason.PROOF_EXPIRED.value,
            }
    finally:
        server.close()


# ------------------------------------------------------------------------ revocation


def signed_client(shim: Shim, run: Run, worker: BackgroundServer) -> httpx.Client:
    """A client for ``worker`` sending the supervisor's token with a fresh proof on
    every request, past the shim: these tests are of the resource server, and a shim
    told of the revocation refuses the run's requests itself (test_threats)."""
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        token = shim.token(context, worker.url).token
    key = shim.agent("supervisor").key

    def sign(request: httpx.Request) -> None:
        request.headers["Authorization"] = f"DPoP {token}"
        request.headers["DPoP"] = create_proof(
            key, request.method, str(request.url), token=token, body=request.read()
        )

    return httpx.Client(base_url=worker.url, event_hooks={"request": [sign]})


def revoked_run(idp: RedisIdP, server: BackgroundServer) -> tuple[Shim, Run, httpx.Client]:
    """A run whose token worked at ``server``, then revoked; the client keeps the token."""
    shim = idp.stack.shim()
    run = idp.stack.start_run(shim)
    http = signed_client(shim, run, server)
    assert get_repos(http).status_code == 200
    assert idp.admin.revoke("run", run.run_id) == {"revoked": True, "published": True}
    return shim, run, http


def test_revoked_run_stays_refused_after_redis_restarts_empty(
    redis_idp: RedisIdP, redis_server: OwnRedis
) -> None:
    server = resource_server(
        redis_idp.stack, revocation=RedisRevocationChecker.from_url(redis_server.url)
    )
    try:
        _, _, http = revoked_run(redis_idp, server)
        assert reason_of(get_repos(http)) == Reason.RUN_REVOKED.value
        redis_server.restart_empty()
        # Until the IdP has republished: 503 (the ready marker is missing); then the
        # revocation is back. Never a 200.
        refused_until(http, Reason.RUN_REVOKED, interim={503})
        http.close()
    finally:
        server.close()


def test_status_endpoint_answers_for_a_redis_that_lost_the_revocations(
    stack: Stack, redis_server: OwnRedis
) -> None:
    # The stack's IdP publishes nothing to this Redis: its ready marker never appears,
    # as after a restart the IdP has not caught up with yet.
    fallback = IdPRevocationChecker(stack.idp_url, ttl=0.0)
    server = resource_server(
        stack, revocation=RedisRevocationChecker.from_url(redis_server.url, fallback=fallback)
    )
    alone = resource_server(stack, revocation=RedisRevocationChecker.from_url(redis_server.url))
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        with (
            shim.acting("supervisor", tool="list_repos", run=run),
            httpx.Client(auth=shim.auth()) as http,
        ):
            assert http.get(server.url + "/repos").status_code == 200  # asked the IdP
            assert http.get(alone.url + "/repos").status_code == 503  # nobody to ask
            stack.admin.revoke("run", run.run_id)
            refused = http.get(server.url + "/repos")
        assert reason_of(refused) == Reason.RUN_REVOKED.value
    finally:
        server.close()
        alone.close()


def test_revocation_while_redis_is_down_is_refused_once_it_returns(
    redis_idp: RedisIdP, redis_server: OwnRedis
) -> None:
    server = resource_server(
        redis_idp.stack, revocation=RedisRevocationChecker.from_url(redis_server.url)
    )
    try:
        shim = redis_idp.stack.shim()
        run = redis_idp.stack.start_run(shim)
        with (
            httpx.Client(base_url=server.url, auth=shim.auth()) as http,
            shim.acting("supervisor", tool="list_repos", run=run),
        ):
            assert get_repos(http).status_code == 200
            redis_server.kill()
            # Committed at the IdP, announced later: not a 500.
            assert redis_idp.admin.revoke("run", run.run_id) == {
                "revoked": True,
                "published": False,
            }
            assert get_repos(http).status_code == 503  # the RS fails closed meanwhile
            redis_server.start()  # empty
            refused_until(http, Reason.RUN_REVOKED, interim={503})
    finally:
        server.close()


def test_revocation_while_redis_is_unreachable_is_published_when_it_answers(
    redis_idp: RedisIdP, redis_server: OwnRedis
) -> None:
    # A partition: Redis keeps its data (and its ready marker) but does not answer the
    # IdP while the revocation is made. The IdP's outbox publishes it afterwards.
    server = resource_server(
        redis_idp.stack, revocation=RedisRevocationChecker.from_url(redis_server.url)
    )
    try:
        shim = redis_idp.stack.shim()
        run = redis_idp.stack.start_run(shim)
        with (
            httpx.Client(base_url=server.url, auth=shim.auth()) as http,
            shim.acting("supervisor", tool="list_repos", run=run),
        ):
            assert get_repos(http).status_code == 200
            redis_server.pause()
            try:
                answer = redis_idp.admin.revoke("run", run.run_id)
            finally:
                redis_server.resume()
            assert answer == {"revoked": True, "published": False}
            # Redis answers the resource server again at once; the IdP's next pass (every
            # 0.1 s here) publishes the pending revocation.
            wait_for(lambda: reason_of(get_repos(http)) == Reason.RUN_REVOKED.value, timeout=5)
    finally:
        server.close()
