"""Governance of agent versions over HTTP (DESIGN §12 Governance): each client's
registration policy (``open``, ``pinned``, ``approval``), checksum versions, revocation
of a checksum, and a resource-server route pinned to agent versions or checksums.

Each refusal is checked by its ``ajwt_reason``, and the legitimate request beside it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import (
    InvalidGrant,
    InvalidRequest,
    NotFound,
    Reason,
    UnauthorizedClient,
)
from ajwt_core.idp.admin import AdminClient
from ajwt_core.rs import IdPRevocationChecker, Verifier
from ajwt_core.rs.fastapi import install, require_intent
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_core.tokens import IntentTokenClaims
from ajwt_demo.agents import reference_manifest
from ajwt_demo.stack import Stack

PLANNER = reference_manifest("planner")
PLANNER_V2 = reference_manifest("planner", prompt="Plan the fix, then list the files to read.")
# The routes' dependencies (module level: FastAPI resolves the annotations by name).
anyone = require_intent()
v1_only = require_intent(scopes=["repo:read"], agent_versions={"planner": [1]})
reviewed = require_intent(agent_checksums=[PLANNER.checksum()])


@pytest.fixture(scope="module")
def workflow_id(stack: Stack) -> str:
    """A one-step workflow: the planner reads files."""
    name = "gov-" + secrets.token_hex(4)
    stack.admin.register_workflow(
        {
            "id": name,
            "version": 1,
            "steps": {
                "plan": {"agent": "planner", "tools": ["read_file"], "scopes": ["repo:read"]}
            },
        }
    )
    return name


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[str]:
    """A FastAPI resource server with routes pinned to planner versions and checksums."""
    server = BackgroundServer()
    verifier = Verifier.for_idp(
        stack.idp_url,
        audience=server.url,
        revocation=IdPRevocationChecker(stack.idp_url, ttl=0.0),
    )
    app = FastAPI()
    install(app, verifier)

    @app.get("/any")
    async def any_version(claims: Annotated[IntentTokenClaims, Security(anyone)]) -> Any:
        return {"agent": claims.agent.id, "version": claims.agent.version}

    @app.get("/v1")
    async def pinned_version(claims: Annotated[IntentTokenClaims, Security(v1_only)]) -> Any:
        return {"version": claims.agent.version}

    @app.get("/reviewed")
    async def pinned_checksum(claims: Annotated[IntentTokenClaims, Security(reviewed)]) -> Any:
        return {"checksum": claims.agent.checksum}

    server.start(app)
    yield server.url
    server.close()


SECRETS: dict[str, str] = {}


def new_client(stack: Stack, policy: str) -> tuple[str, Shim]:
    """A client with ``policy`` and a shim for it (another process of the same app is
    ``Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])``)."""
    client = stack.admin.register_client(
        "gov-" + secrets.token_hex(6), scopes=["repo:read"], agent_policy=policy
    )
    assert client["agent_policy"] == policy
    SECRETS[client["client_id"]] = client["client_secret"]
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    return client["client_id"], shim


def call(stack: Stack, shim: Shim, workflow_id: str, url: str) -> httpx.Response:
    """The planner calls ``url`` with a token of a fresh run."""
    run = shim.start_run(stack.admin.user_token("user:alice"), workflow_id)
    with (
        httpx.Client(auth=shim.auth(), timeout=10) as http,
        shim.run(run),
        shim.acting("planner", tool="read_file"),
    ):
        return http.get(url)


def versions(admin: AdminClient, client_id: str) -> list[tuple[int, str, str]]:
    return [(a["version"], a["checksum"], a["status"]) for a in admin.agents(client_id)["items"]]


# ------------------------------------------------------------------------- open


def test_open_policy_numbers_each_checksum_and_keeps_it_across_keys(
    stack: Stack, workflow_id: str, api: str
) -> None:
    client_id, shim = new_client(stack, "open")
    assert shim.register(PLANNER).version == 1
    # A restarted process (another master secret, so another key): the same version.
    again = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    assert again.register(PLANNER).version == 1
    # A changed prompt is another agent: the next version, recorded for the operator.
    changed = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    assert changed.register(PLANNER_V2).version == 2
    assert versions(stack.admin, client_id) == [
        (1, PLANNER.checksum(), "allowed"),
        (2, PLANNER_V2.checksum(), "allowed"),
    ]
    listed = stack.admin.agents(client_id)["items"]
    assert [a["live_registrations"] for a in listed] == [2, 1]
    first = stack.admin.agents(client_id, limit=1)
    second = stack.admin.agents(client_id, limit=1, after=first["next"])
    assert first["items"] + second["items"] == listed and second["next"] is None
    assert {a["source"] for a in listed} == {"runtime"}
    # Tokens carry the version.
    assert call(stack, shim, workflow_id, api + "/any").json() == {"agent": "planner", "version": 1}
    assert call(stack, changed, workflow_id, api + "/any").json()["version"] == 2


# ----------------------------------------------------------------------- pinned


def test_pinned_policy_registers_only_what_an_administrator_pinned(
    stack: Stack, workflow_id: str, api: str
) -> None:
    client_id, shim = new_client(stack, "pinned")
    with pytest.raises(UnauthorizedClient) as info:
        shim.register(PLANNER)
    assert info.value.reason == Reason.AGENT_NOT_PINNED
    assert PLANNER.checksum() in info.value.description
    assert "ajwt agents register" in info.value.description
    assert versions(stack.admin, client_id) == []  # nothing recorded for a refusal

    pinned = stack.admin.pin_agents(client_id, [PLANNER], decided_by="ci")
    assert [(p["version"], p["status"], p["source"], p["decided_by"]) for p in pinned] == [
        (1, "allowed", "admin", "ci")
    ]
    assert shim.register(PLANNER).version == 1
    assert call(stack, shim, workflow_id, api + "/any").status_code == 200

    # The app restarted with a changed prompt: refused, not silently version 2.
    changed = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    with pytest.raises(UnauthorizedClient) as info:
        changed.register(PLANNER_V2)
    assert info.value.reason == Reason.AGENT_NOT_PINNED
    assert PLANNER_V2.checksum() in info.value.description
    # A batch with one unpinned manifest registers nothing.
    with pytest.raises(UnauthorizedClient):
        changed.register_many([PLANNER, PLANNER_V2])
    assert [a["live_registrations"] for a in stack.admin.agents(client_id)["items"]] == [1]


# --------------------------------------------------------------------- approval


def test_approval_policy_holds_a_new_checksum_until_approved(
    stack: Stack, workflow_id: str, api: str
) -> None:
    client_id, shim = new_client(stack, "approval")
    with pytest.raises(UnauthorizedClient) as info:
        shim.register(PLANNER)
    assert info.value.reason == Reason.AGENT_APPROVAL_PENDING
    # The shim's error says so, names the checksum and the command that approves it.
    assert "waiting for an administrator's approval" in info.value.description
    assert f"ajwt agents approve {client_id} planner {PLANNER.checksum()}" in (
        info.value.description
    )
    assert versions(stack.admin, client_id) == [(1, PLANNER.checksum(), "pending")]
    pending = stack.admin.agents(client_id, status="pending")["items"]
    assert [p["agent_id"] for p in pending] == ["planner"]
    # Asking again changes nothing: still pending, still version 1.
    with pytest.raises(UnauthorizedClient):
        shim.register(PLANNER)
    assert versions(stack.admin, client_id) == [(1, PLANNER.checksum(), "pending")]

    approved = stack.admin.approve_agent(client_id, "planner", PLANNER.checksum(), decided_by="ops")
    assert (approved["status"], approved["decided_by"]) == ("allowed", "ops")
    assert shim.register(PLANNER).version == 1
    assert call(stack, shim, workflow_id, api + "/any").status_code == 200


def test_approving_an_unknown_checksum_is_not_found(stack: Stack) -> None:
    client_id, _ = new_client(stack, "approval")
    with pytest.raises(NotFound):
        stack.admin.approve_agent(client_id, "planner", "sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        stack.admin.agents("no-such-client")


# ------------------------------------------------------------------- revocation


def test_revoking_a_checksum_revokes_its_registrations_and_refuses_it_again(
    stack: Stack, workflow_id: str, api: str
) -> None:
    client_id, shim = new_client(stack, "open")
    registered = shim.register(PLANNER)
    run = shim.start_run(stack.admin.user_token("user:alice"), workflow_id)
    with (
        httpx.Client(auth=shim.auth(), timeout=10) as http,
        shim.run(run),
        shim.acting("planner", tool="read_file"),
    ):
        assert http.get(api + "/any").status_code == 200
        revoked = stack.admin.revoke_agent(client_id, "planner", PLANNER.checksum())
        assert revoked["status"] == "revoked"
        assert revoked["revoked_registrations"] == [registered.registration_id]
        # The token already minted is refused by the resource server...
        refused = http.get(api + "/any")
    assert refused.status_code == 401
    assert refused.json()["ajwt_reason"] == "agent_revoked"
    # ... no new token is minted ...
    with pytest.raises(InvalidGrant) as minted:
        call(stack, shim, workflow_id, api + "/any")
    assert minted.value.reason == Reason.AGENT_REVOKED
    # ... and the checksum no longer registers, even under the open policy.
    fresh = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    with pytest.raises(UnauthorizedClient) as info:
        fresh.register(PLANNER)
    assert info.value.reason == Reason.AGENT_REVOKED
    # An administrator may allow it again.
    stack.admin.approve_agent(client_id, "planner", PLANNER.checksum())
    assert fresh.register(PLANNER).version == 1


# ----------------------------------------------------------- the resource server


def test_route_pinned_to_a_version_refuses_another_version(
    stack: Stack, workflow_id: str, api: str
) -> None:
    client_id, shim = new_client(stack, "open")
    shim.register(PLANNER)
    assert call(stack, shim, workflow_id, api + "/v1").json() == {"version": 1}
    changed = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    changed.register(PLANNER_V2)
    refused = call(stack, changed, workflow_id, api + "/v1")
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.json()["ajwt_reason"] == "agent_version_not_allowed"


def test_route_pinned_to_a_checksum_refuses_a_changed_agent(
    stack: Stack, workflow_id: str, api: str
) -> None:
    client_id, shim = new_client(stack, "open")
    shim.register(PLANNER)
    assert call(stack, shim, workflow_id, api + "/reviewed").json() == {
        "checksum": PLANNER.checksum()
    }
    changed = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    changed.register(PLANNER_V2)
    refused = call(stack, changed, workflow_id, api + "/reviewed")
    assert refused.status_code == 403
    assert refused.json()["ajwt_reason"] == "agent_checksum_not_allowed"


# -------------------------------------------------------------------- the policy


def test_switching_an_open_client_to_pinned_freezes_its_versions(stack: Stack) -> None:
    client_id, shim = new_client(stack, "open")
    shim.register(PLANNER)
    assert stack.admin.set_agent_policy(client_id, "pinned")["agent_policy"] == "pinned"
    assert stack.admin.client(client_id)["agent_policy"] == "pinned"
    again = Shim(stack.idp_url, client_id, client_secret=SECRETS[client_id])
    assert again.register(PLANNER).version == 1  # allowed while open: still allowed
    with pytest.raises(UnauthorizedClient) as info:
        again.register(PLANNER_V2)
    assert info.value.reason == Reason.AGENT_NOT_PINNED


def test_pinning_a_malformed_manifest_is_a_typed_refusal(stack: Stack) -> None:
    client_id, _ = new_client(stack, "pinned")
    with pytest.raises(InvalidRequest) as info:
        stack.admin.pin_agents(client_id, [{"agent_id": "planner"}])  # no prompt
    assert info.value.reason == Reason.INVALID_MANIFEST
    bad: AgentManifest | dict[str, Any] = {"prompt": {"template": "x"}}  # no agent id
    with pytest.raises(InvalidRequest) as info:
        stack.admin.pin_agents(client_id, [bad])
    assert info.value.reason == Reason.INVALID_MANIFEST
