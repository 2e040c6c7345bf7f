"""PostgreSQL storage and Redis replay/revocation stores, against the real servers.

Locally these skip when a server is absent; CI (AJWT_REQUIRE_SERVICES=1) fails instead.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.rs import JWKSCache, RedisReplayStore, RedisRevocationChecker, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_demo.api import create_api
from ajwt_demo.stack import Stack, start_stack
from tests.redis_support import seed_replay_epoch, shared_redis_prefix, wait_for
from tests.services import POSTGRES, POSTGRES_URL, REDIS, REDIS_URL, require


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh database for this module, dropped afterwards."""
    require("PostgreSQL", POSTGRES)
    import asyncpg

    name = "ajwt_test_" + secrets.token_hex(4)
    parts = urlsplit(POSTGRES_URL.replace("+asyncpg", ""))
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def pg_stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("pg") / "unused.db", db_url=postgres_url)
    yield stack
    stack.close()


@pytest.mark.postgres
def test_workflow_runs_on_postgresql(pg_stack: Stack) -> None:
    shim = pg_stack.shim()
    run = pg_stack.start_run(shim)
    with httpx.Client(base_url=pg_stack.rs_url, auth=shim.auth()) as http, shim.run(run):
        with shim.acting("supervisor", tool="list_repos"):
            assert http.get("/repos").status_code == 200
        shim.complete("supervisor")
        shim.handoff("supervisor", "planner", "plan")
        with shim.acting("planner", tool="read_file"):
            response = http.get("/repos/acme/storefront/files/package.json")
        assert response.json()["caller"]["chain"] == ["supervisor", "planner"]
    report = pg_stack.admin.verify_ledger(run.run_id)
    assert report["ok"]
    # run started, triage entered, token, triage completed, delegation, plan entered, the
    # planner's token
    assert report["entries"] == 7


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(4))  # a race: each attempt is a new chance to lose it
def test_concurrent_mints_keep_one_ledger_chain_on_postgresql(
    pg_stack: Stack, attempt: int
) -> None:
    # Each transaction reads the run's state after it holds the run's lock: read with the
    # lock in one statement, the state would come from a snapshot older than the
    # transaction it waited for, and the step would be entered twice.
    shim = pg_stack.shim()
    run = pg_stack.start_run(shim)

    async def mint(i: int) -> None:
        with shim.run(run):
            async with shim.aacting("supervisor", tool="list_repos") as context:
                await shim.atoken(context, f"https://api-{i}.example")

    async def main() -> None:
        await asyncio.gather(*(mint(i) for i in range(12)))

    asyncio.run(main())
    ledger = pg_stack.admin.ledger(run.run_id)["entries"]
    # run started, triage entered (once), twelve tokens
    assert [e["seq"] for e in ledger] == list(range(14))
    assert [e["kind"] for e in ledger].count("step_entered") == 1
    assert pg_stack.admin.verify_ledger(run.run_id)["ok"]


@pytest.fixture
def redis_url() -> str:
    require("Redis", REDIS)
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """Key names of this test's own on the shared Redis; the replay cache marked as one
    that has run for long (a fresh one refuses the proofs of its first seconds)."""
    import redis

    with shared_redis_prefix() as own:
        seed_replay_epoch(redis.Redis.from_url(redis_url), own)
        yield own


def _second_rs(stack: Stack, verifier: Verifier) -> BackgroundServer:
    """Another worker of the reference API: same audience and public URL as the stack's."""
    server = BackgroundServer()
    server.start(create_api(verifier, base_url=stack.rs_url).asgi)
    return server


def _own_rs(stack: Stack, **stores: object) -> BackgroundServer:
    """A resource server of its own (its own URL is its audience)."""
    server = BackgroundServer()
    verifier = Verifier(
        issuer=stack.idp_url,
        audience=server.url,
        keys=JWKSCache(stack.idp_url + "/.well-known/jwks.json"),
        **stores,  # type: ignore[arg-type]
    )
    server.start(create_api(verifier).asgi)
    return server


@pytest.mark.redis
def test_replay_is_caught_across_resource_servers_sharing_redis(
    stack: Stack, redis_url: str, prefix: str
) -> None:
    def verifier() -> Verifier:
        return Verifier(
            issuer=stack.idp_url,
            audience=stack.rs_url,
            keys=JWKSCache(stack.idp_url + "/.well-known/jwks.json"),
            replay=RedisReplayStore.from_url(redis_url, prefix=prefix),
        )

    # Two workers of the same API (same audience and public URL) sharing one Redis.
    first, second = _second_rs(stack, verifier()), _second_rs(stack, verifier())
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        with shim.acting("supervisor", tool="list_repos", run=run) as context:
            token = shim.token(context, stack.rs_url).token
        proof = create_proof(
            shim.agent("supervisor").key, "GET", stack.rs_url + "/repos", token=token, body=b""
        )
        # As a load balancer in front of both would: the public Host, to either worker.
        public_host = stack.rs_url.removeprefix("http://")
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof, "Host": public_host}
        with httpx.Client() as http:
            assert http.get(first.url + "/repos", headers=headers).status_code == 200
            replayed = http.get(second.url + "/repos", headers=headers)
        assert replayed.status_code == 401
        assert replayed.json()["ajwt_reason"] == Reason.REPLAYED.value
    finally:
        first.close()
        second.close()


@pytest.mark.redis
def test_revocation_published_in_redis_is_honoured(
    stack: Stack, redis_url: str, prefix: str
) -> None:
    import redis

    checker = RedisRevocationChecker.from_url(redis_url, prefix=prefix)
    server = _own_rs(stack, revocation=checker)
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        client = redis.Redis.from_url(redis_url)
        with (
            httpx.Client(base_url=server.url, auth=shim.auth()) as http,
            shim.acting("supervisor", tool="list_repos", run=run),
        ):
            # No ready marker: the IdP has not published (or Redis lost it): fail closed.
            assert http.get("/repos").status_code == 503
            client.set(f"{prefix}revocations:ready", b"1")
            assert http.get("/repos").status_code == 200
            client.set(f"{prefix}revoked:run:{run.run_id}", b"1", ex=60)
            refused = http.get("/repos")
        assert refused.status_code == 401
        assert refused.json()["ajwt_reason"] == Reason.RUN_REVOKED.value
    finally:
        server.close()


@pytest.mark.redis
def test_redis_down_fails_closed_with_503(stack: Stack) -> None:
    server = _own_rs(stack, replay=RedisReplayStore.from_url("redis://127.0.0.1:1/0"))
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        with (
            httpx.Client(base_url=server.url, auth=shim.auth()) as http,
            shim.acting("supervisor", tool="list_repos", run=run),
        ):
            response = http.get("/repos")
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
    finally:
        server.close()


@pytest.mark.redis
def test_idp_publishes_revocations_to_redis_for_resource_servers(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    import redis

    from ajwt_core.idp import IdPSettings, create_app
    from ajwt_core.idp.admin import AdminClient

    admin_token = "adm-" + secrets.token_hex(8)
    idp = BackgroundServer()
    settings = IdPSettings(
        issuer=idp.url,
        db_url=f"sqlite:///{tmp_path}/idp.db",
        admin_token=admin_token,
        redis_url=redis_url,
        redis_prefix=prefix,
    )
    idp.start(create_app(settings))
    try:
        admin = AdminClient(idp.url, admin_token)
        from ajwt_core.workflow import reference_workflow

        admin.register_workflow(reference_workflow().canonical())
        stack = Stack(idp_url=idp.url, rs_url="", admin=admin, api=None, idp_app=None)  # type: ignore[arg-type]
        server = _own_rs(
            stack, revocation=RedisRevocationChecker.from_url(redis_url, prefix=prefix)
        )
        try:
            shim = stack.shim()
            run = stack.start_run(shim)
            # On start the IdP republishes what it has revoked, then sets the ready marker.
            ready = f"{prefix}revocations:ready"
            wait_for(lambda: redis.Redis.from_url(redis_url).exists(ready) == 1)
            with (
                httpx.Client(base_url=server.url, auth=shim.auth()) as http,
                shim.acting("supervisor", tool="list_repos", run=run),
            ):
                assert http.get("/repos").status_code == 200
                assert admin.revoke("run", run.run_id) == {"revoked": True, "published": True}
                refused = http.get("/repos")
            assert refused.json()["ajwt_reason"] == Reason.RUN_REVOKED.value
        finally:
            server.close()
            admin.close()
    finally:
        idp.close()
