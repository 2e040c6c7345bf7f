"""Issue 12 §6: responses that carry tokens or credentials are never cached (RFC 6749
§5.1), and used client-assertion ``jti`` values are kept exactly as long as the
assertion could be replayed, then purged in the background (no per-request cost)."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from ajwt_core.idp.db import UsedAssertionRow
from ajwt_core.keys import PopKey
from ajwt_core.tokens import DEFAULT_LEEWAY
from tests.idp.support import IdPHarness, assert_refused

# ------------------------------------------------------------------ no-store


def _no_store(response: object) -> bool:
    headers = response.headers  # type: ignore[attr-defined]
    return headers.get("cache-control") == "no-store" and headers.get("pragma") == "no-cache"


def test_token_responses_are_not_stored(harness: IdPHarness) -> None:
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    run_id = harness.start_run(client)
    minted = harness.token_request(client, agent, harness.mint_form(agent, run_id))
    assert minted.status_code == 200, minted.text
    assert _no_store(minted)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/clients", {}),  # carries the client secret
        ("/admin/users/token", {"subject": "user:alice"}),  # carries a user token
        (
            "/admin/workflows",
            {"id": "w-ns", "version": 1, "steps": {"a": {"agent": "x", "tools": ["t"]}}},
        ),
        ("/revocations", {"kind": "run", "id": "run-none"}),
    ],
)
def test_admin_responses_are_not_stored(
    harness: IdPHarness, path: str, body: dict[str, object]
) -> None:
    response = harness.request("POST", path, headers=harness.admin, json=body)
    assert response.is_success, response.text
    assert _no_store(response)


def test_errors_are_not_stored(harness: IdPHarness) -> None:
    refused = harness.request("POST", "/admin/clients", json={})
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"


def test_public_discovery_documents_keep_their_caching(harness: IdPHarness) -> None:
    jwks = harness.request("GET", "/.well-known/jwks.json")
    assert jwks.headers["cache-control"] == "max-age=60"
    metadata = harness.request("GET", "/.well-known/oauth-authorization-server")
    assert "no-store" not in metadata.headers.get("cache-control", "")


# --------------------------------------------------------------------- purge


def _count(harness: IdPHarness, jti_prefix: str) -> int:
    async def count() -> int:
        async with harness.idp.db.read() as session:
            result = await session.execute(
                select(func.count()).where(UsedAssertionRow.jti.startswith(jti_prefix))
            )
            return int(result.scalar_one())

    return int(harness.run_call(count()))


def _insert(harness: IdPHarness, jti: str, expires_at: int) -> None:
    async def insert() -> None:
        async with harness.idp.db.transaction() as session:
            session.add(UsedAssertionRow(jti=jti, client_id="c", expires_at=expires_at))

    harness.run_call(insert())


def test_used_assertions_are_kept_while_replayable_and_purged_after(harness: IdPHarness) -> None:
    now = int(time.time())
    prefix = f"purge-{now}-"
    _insert(harness, prefix + "expired", now - DEFAULT_LEEWAY - 5)
    _insert(harness, prefix + "within-leeway", now - DEFAULT_LEEWAY + 20)
    _insert(harness, prefix + "live", now + 100)
    deleted = harness.run_call(harness.idp.purge_used_assertions())
    assert deleted >= 1
    assert _count(harness, prefix + "expired") == 0
    # An assertion past `exp` but within the clock leeway still verifies: its jti stays.
    assert _count(harness, prefix + "within-leeway") == 1
    assert _count(harness, prefix + "live") == 1


def test_a_purge_does_not_reopen_replay_of_a_live_assertion(harness: IdPHarness) -> None:
    key = PopKey.generate()
    client_id = harness.new_key_client(key)
    assertion = harness.client_assertion(client_id, key, "purge-live-" + str(time.time()))
    headers = {"Authorization": f"Client-Assertion {assertion}"}
    assert harness.request("GET", "/workflows/vuln-patch/1", headers=headers).status_code == 200
    harness.run_call(harness.idp.purge_used_assertions())
    replayed = harness.request("GET", "/workflows/vuln-patch/1", headers=headers)
    assert_refused(replayed, 401, "replayed")


def test_the_app_purges_in_the_background_from_start(harness: IdPHarness) -> None:
    now = int(time.time())
    _insert(harness, f"bg-{now}", now - 3600)
    # A second IdP on the same database: its lifespan starts the periodic purge.
    other = IdPHarness(harness.db_url)
    try:
        other.run_call(asyncio.sleep(0.2))
        assert _count(other, f"bg-{now}") == 0
    finally:
        other.close()


def test_an_agent_runs_routes_are_tried_first_and_the_openapi_order_is_kept(
    harness: IdPHarness,
) -> None:
    """The router tries the routes of an agent run first (they were declared last); the
    OpenAPI document still lists every path in the order it is declared, and a known
    path with another method is still 405."""
    paths = [getattr(route, "path", "") for route in harness.app.router.routes]
    assert paths[:2] == ["/token", "/runs/{run_id}/steps/{step}/complete"]
    document = harness.run_call(harness.http.get("/openapi.json")).json()
    listed = list(document["paths"])
    assert listed[0] == "/healthz" and listed[-1] == "/token"
    assert harness.run_call(harness.http.get("/token")).status_code == 405
