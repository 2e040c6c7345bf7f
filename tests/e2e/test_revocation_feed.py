"""Revocation reaches every resource-server worker within 1 s through the IdP's feed
(``GET /revocations``), with no call to the IdP on the request path; a worker whose
feed is stale refuses with 503; a restarted worker starts from the full list."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ajwt_core.errors import Reason
from ajwt_core.rs import IdPFeedSource, JWKSCache, RevocationFeed, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_demo.api import create_api
from ajwt_demo.stack import Stack, start_stack
from tests.e2e.test_threats import raw_call, refusal, token_for


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An IdP of this module's own: a test stops it."""
    running = start_stack(tmp_path_factory.mktemp("feed") / "idp.db")
    yield running
    running.close()


#: The API's identifier, shared by its workers (each serves it at its own origin).
AUDIENCE = "http://api.feed.test"


class Worker:
    """One resource-server worker: its own verifier and feed, its own uvicorn server."""

    def __init__(self, idp_url: str, *, max_staleness: float = 5.0) -> None:
        self.server = BackgroundServer()
        self.feed = RevocationFeed(IdPFeedSource(idp_url), max_staleness=max_staleness)
        verifier = Verifier(
            issuer=idp_url,
            audience=AUDIENCE,
            keys=JWKSCache(idp_url + "/.well-known/jwks.json"),
            revocation=self.feed,
        )
        self.server.start(create_api(verifier, base_url=self.server.url).asgi)
        self.url = self.server.url

    def call(self, token: str, shim: Shim) -> httpx.Response:
        return raw_call(self.url + "/repos", token, shim.agent("supervisor").key)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def workers(own_stack: Stack) -> Iterator[list[Worker]]:
    started = [Worker(own_stack.idp_url, max_staleness=1.0) for _ in range(2)]
    yield started
    for worker in started:
        worker.close()


def test_a_revoked_run_is_refused_at_two_workers_within_one_second(
    own_stack: Stack, workers: list[Worker]
) -> None:
    shim = own_stack.shim()
    run = own_stack.start_run(shim)
    token = token_for(shim, run, "supervisor", "list_repos", AUDIENCE).token
    for worker in workers:
        assert worker.call(token, shim).status_code == 200

    own_stack.admin.revoke("run", run.run_id)
    revoked_at = time.monotonic()
    pending = set(range(len(workers)))
    while pending:
        for index in sorted(pending):
            answer = workers[index].call(token, shim)
            if answer.status_code == 401:
                refusal(answer, 401, Reason.RUN_REVOKED)
                pending.discard(index)
            else:
                assert answer.status_code == 200, answer.text
        assert time.monotonic() - revoked_at < 1.0, "not refused at every worker within 1 s"
        time.sleep(0.02)


def test_a_restarted_worker_starts_from_the_full_list(own_stack: Stack) -> None:
    shim = own_stack.shim()
    run = own_stack.start_run(shim)
    token = token_for(shim, run, "supervisor", "list_repos", AUDIENCE).token
    before = Worker(own_stack.idp_url)
    try:
        assert before.call(token, shim).status_code == 200
        own_stack.admin.revoke("agent", shim.agent("supervisor").registration_id)
    finally:
        before.close()
    # A new worker (a restart: nothing in memory) refuses on its very first request.
    after = Worker(own_stack.idp_url)
    try:
        refusal(after.call(token, shim), 401, Reason.AGENT_REVOKED)
    finally:
        after.close()


def test_a_worker_whose_idp_is_gone_refuses_with_503(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "idp.db")
    worker = Worker(stack.idp_url, max_staleness=0.5)
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        token = token_for(shim, run, "supervisor", "list_repos", AUDIENCE).token
        assert worker.call(token, shim).status_code == 200
        stack.servers[0].close()  # the IdP
        time.sleep(0.8)
        answer = worker.call(token, shim)
        refusal(answer, 503, Reason.REVOCATION_FEED_STALE)
        assert answer.headers["retry-after"] == "1"
    finally:
        worker.close()
        stack.close()


def test_the_idp_feed_is_a_versioned_list(own_stack: Stack) -> None:
    shim = own_stack.shim()
    run = own_stack.start_run(shim)
    feed = own_stack.idp_url + "/revocations"
    first = httpx.get(feed, timeout=10).json()
    assert first["full"] is True and isinstance(first["version"], int)
    own_stack.admin.revoke("run", run.run_id)
    since = httpx.get(feed, params={"since": first["version"]}, timeout=10).json()
    assert since["full"] is False and since["version"] >= first["version"]
    assert {"kind": "run", "id": run.run_id} in [
        {"kind": r["kind"], "id": r["id"]} for r in since["revoked"]
    ]
    full = httpx.get(feed, timeout=10).json()
    assert run.run_id in {r["id"] for r in full["revoked"] if r["kind"] == "run"}
    for bad in ("-1", "x", "1e3", str(2**60)):
        answer = httpx.get(feed, params={"since": bad}, timeout=10)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"


def test_a_request_with_a_cached_token_makes_no_call_to_the_idp(own_stack: Stack) -> None:
    sent: list[str] = []

    async def note(request: httpx.Request) -> None:
        sent.append(request.url.path)

    client = httpx.AsyncClient(timeout=3, event_hooks={"request": [note]})
    server = BackgroundServer()
    verifier = Verifier(
        issuer=own_stack.idp_url,
        audience=AUDIENCE,
        keys=JWKSCache(own_stack.idp_url + "/.well-known/jwks.json", client=client),
        # No poll due during the calls below: what the requests themselves cause.
        revocation=RevocationFeed(IdPFeedSource(own_stack.idp_url, interval=30, client=client)),
    )
    server.start(create_api(verifier, base_url=server.url).asgi)
    try:
        shim = own_stack.shim()
        run = own_stack.start_run(shim)
        token = token_for(shim, run, "supervisor", "list_repos", AUDIENCE).token
        key = shim.agent("supervisor").key
        assert raw_call(server.url + "/repos", token, key).status_code == 200
        assert sorted(set(sent)) == ["/.well-known/jwks.json", "/revocations"]
        before = len(sent)
        for _ in range(10):
            assert raw_call(server.url + "/repos", token, key).status_code == 200
        assert sent[before:] == []
    finally:
        server.close()
