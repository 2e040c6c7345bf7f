"""The administrator's lists over HTTP: authenticated, paginated by cursor, and every bad
parameter a typed ``invalid_request`` (never a 500)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ajwt_core.errors import InvalidClient, Reason
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.idp.throttle import FailureThrottle
from ajwt_core.server import BackgroundServer
from ajwt_demo.agents import reference_manifest
from ajwt_demo.stack import ADMIN_TOKEN, Stack


@pytest.fixture(scope="module")
def own_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An IdP of its own for the failed-authentication tests: they would otherwise get
    127.0.0.1 throttled (429) at the IdP the other tests share."""
    server = BackgroundServer()
    db = tmp_path_factory.mktemp("own") / "idp.db"
    settings = IdPSettings(
        issuer=server.url,
        db_url=f"sqlite:///{db}",
        admin_token=ADMIN_TOKEN,
        admin_throttle=FailureThrottle(max_failures=10_000),
    )
    server.start(create_app(settings))
    yield server.url
    server.close()


LISTS = [
    "/admin/clients",
    "/admin/clients/any-client",
    "/admin/clients/any-client/agents",
    "/admin/workflows",
    "/admin/workflows/vuln-patch",
    "/admin/workflows/vuln-patch/1",
    "/admin/runs",
    "/admin/runs/run-x",
]


@pytest.mark.parametrize("path", LISTS)
def test_every_list_needs_the_administrator(own_idp: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer " + "g" * 43}):
        response = httpx.get(own_idp + path, headers=headers)
        assert response.status_code == 401
        assert response.json()["ajwt_reason"] == "client_authentication_failed"


@pytest.mark.parametrize(
    "query",
    [
        "/admin/runs?limit=0",
        "/admin/runs?limit=5000",
        "/admin/runs?after=%00",
        "/admin/runs?after=bm90LWEtY3Vyc29y",  # base64 of "not-a-cursor"
        "/admin/runs?after=WyJ4IiwgMV0",  # ["x", 1]: the wrong types for runs
        "/admin/runs?state=bogus",
        "/admin/clients?after=WyJceDAwIl0",  # ["\x00"]: not an identifier
        "/admin/workflows?after=WzEsIDFd",  # [1, 1]
        "/admin/clients/app/agents?status=maybe",
        "/admin/runs/run%20x",
    ],
)
def test_bad_parameters_are_invalid_request(stack: Stack, query: str) -> None:
    response = httpx.get(stack.idp_url + query, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_runs_page_newest_first_without_repeats(stack: Stack) -> None:
    shim = stack.shim()
    started = [stack.start_run(shim).run_id for _ in range(3)]
    client_id = shim.client_id
    seen: list[str] = []
    after: str | None = None
    while True:
        page = stack.admin.runs(client_id=client_id, limit=2, after=after)
        seen += [r["run_id"] for r in page["items"]]
        after = page["next"]
        if not after:
            break
    assert sorted(seen) == sorted(started) and len(seen) == 3
    created = [stack.admin.run(run)["created_at"] for run in seen]
    assert created == sorted(created, reverse=True)
    assert list(stack.admin.all(stack.admin.runs, client_id=client_id)) == [
        stack.admin.runs(client_id=client_id)["items"][i] for i in range(3)
    ]


def test_workflow_versions_are_listed_and_shown(stack: Stack) -> None:
    name = "listed-" + secrets.token_hex(4)
    for version in (1, 2):
        stack.admin.register_workflow(
            {"id": name, "version": version, "steps": {"a": {"agent": "x", "tools": ["t"]}}}
        )
    page = stack.admin.workflows(workflow_id=name)
    assert [w["version"] for w in page["items"]] == [1, 2] and page["next"] is None
    assert stack.admin.workflow(name)["workflow"]["version"] == 2  # the latest
    assert stack.admin.workflow(name, 1)["hash"] == page["items"][0]["hash"]


def test_governance_endpoints_need_the_administrator(own_idp: str, tmp_path: Path) -> None:
    admin = AdminClient(own_idp, ADMIN_TOKEN)
    client_id = admin.register_client(scopes=[], agent_policy="approval")["client_id"]
    outsider = AdminClient(own_idp, "x" * 43)
    planner = reference_manifest("planner")
    attempts = [
        lambda: outsider.agents(client_id),
        lambda: outsider.pin_agents(client_id, [planner]),
        lambda: outsider.approve_agent(client_id, "planner", planner.checksum()),
        lambda: outsider.revoke_agent(client_id, "planner", planner.checksum()),
        lambda: outsider.set_agent_policy(client_id, "open"),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidClient) as info:
            attempt()
        assert info.value.reason == Reason.CLIENT_AUTHENTICATION_FAILED
    assert admin.client(client_id)["agent_policy"] == "approval"
    assert admin.agents(client_id)["items"] == []
    outsider.close()
    admin.close()
