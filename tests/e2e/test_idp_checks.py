"""IdP checks beyond the T1–T12 tests, each with the attack it stops and the same request
passing without it: client-assertion and proof replay, proof binding at registration and
at the token endpoint, client and intent revocation, ownership of runs and ledgers, step
completion proofs, admin-only registration."""

from __future__ import annotations

import secrets
import time

import httpx
import jwt
import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.errors import AccessDenied, InvalidClient, Reason, UnauthorizedClient
from ajwt_core.keys import PopKey
from ajwt_core.shim import Shim
from ajwt_core.tokens import encode_client_assertion
from ajwt_demo.agents import reference_manifest
from ajwt_demo.stack import Stack


def reason_of(response: httpx.Response) -> str:
    return str(response.json().get("ajwt_reason"))


def test_client_assertion_cannot_be_replayed(stack: Stack) -> None:
    key = PopKey.generate()
    client = stack.new_client(
        auth_method="private_key_jwt", jwks={"keys": [key.public_jwk | {"kid": "k1"}]}
    )
    assertion = encode_client_assertion(
        client["client_id"],
        key,
        audience=stack.idp_url,
        jti=secrets.token_urlsafe(8),
        now=int(time.time()),
        kid="k1",
    )
    headers = {"Authorization": f"Client-Assertion {assertion}"}
    with httpx.Client(base_url=stack.idp_url) as http:
        first = http.get("/workflows/vuln-patch/1", headers=headers)
        again = http.get("/workflows/vuln-patch/1", headers=headers)
    assert first.status_code == 200
    assert again.status_code == 401
    assert reason_of(again) == Reason.REPLAYED


def test_registration_proof_must_be_for_the_registration_endpoint(stack: Stack) -> None:
    shim = stack.shim()
    key = PopKey.generate()
    manifest = reference_manifest("planner").model_dump(mode="json")
    wrong = create_proof(key, "POST", stack.idp_url + "/token")
    with httpx.Client() as http:
        refused = http.send(
            shim._json_request("POST", "/agents", {"manifest": manifest, "proof": wrong})
        )
        proof = create_proof(key, "POST", stack.idp_url + "/agents")
        ok = http.send(
            shim._json_request("POST", "/agents", {"manifest": manifest, "proof": proof})
        )
        replayed = http.send(
            shim._json_request("POST", "/agents", {"manifest": manifest, "proof": proof})
        )
    assert reason_of(refused) == Reason.URL_MISMATCH
    assert ok.status_code == 201
    assert ok.json()["jkt"] == key.thumbprint  # the key comes from the verified proof
    assert reason_of(replayed) == Reason.REPLAYED


def test_token_request_proof_cannot_be_replayed_or_doubled(stack: Stack) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    agent = shim.agent("supervisor")
    form = {
        "grant_type": "urn:ajwt:params:oauth:grant-type:agent-checksum",
        "agent_id": "supervisor",
        "agent_checksum": agent.checksum,
        "run_id": run.run_id,
        "step": "triage",
        "tool": "list_repos",
        "resource": stack.rs_url,
    }
    request = shim._token_request(form, agent.key)
    with httpx.Client() as http:
        assert http.send(request).status_code == 200
        assert reason_of(http.send(request)) == Reason.REPLAYED
        doubled = shim._token_request(form, agent.key)
        doubled.headers = httpx.Headers(
            [*doubled.headers.multi_items(), ("DPoP", doubled.headers["DPoP"])]
        )
        assert reason_of(http.send(doubled)) == Reason.MALFORMED_PROOF
        missing = shim._token_request(form, agent.key)
        del missing.headers["DPoP"]
        assert reason_of(http.send(missing)) == Reason.MALFORMED_PROOF


def _token(shim: Shim, stack: Stack) -> tuple[str, str]:
    run = stack.start_run(shim)
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        return shim.token(context, stack.rs_url).token, run.intent_id


def _call(stack: Stack, shim: Shim, token: str) -> httpx.Response:
    url = stack.rs_url + "/repos"
    proof = create_proof(shim.agent("supervisor").key, "GET", url, token=token, body=b"")
    return httpx.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})


def test_revoked_client_can_neither_mint_nor_use_its_tokens(stack: Stack) -> None:
    shim = stack.shim()
    token, _ = _token(shim, stack)
    assert _call(stack, shim, token).status_code == 200
    stack.admin.revoke("client", shim.client_id)
    refused = _call(stack, shim, token)
    assert refused.status_code == 401
    assert reason_of(refused) == Reason.CLIENT_REVOKED
    with pytest.raises(InvalidClient) as info:
        shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    assert info.value.reason == Reason.CLIENT_REVOKED


def test_revoked_intent_stops_its_tokens(stack: Stack) -> None:
    shim = stack.shim()
    token, intent_id = _token(shim, stack)
    assert shim.revoke("intent", intent_id) == {"revoked": True}
    refused = _call(stack, shim, token)
    assert reason_of(refused) == Reason.INTENT_REVOKED


def test_a_client_cannot_revoke_clients_or_other_clients_runs(stack: Stack) -> None:
    owner, other = stack.shim(), stack.shim()
    token, _ = _token(owner, stack)
    run_id = str(jwt.decode(token, options={"verify_signature": False})["intent"]["run_id"])
    with httpx.Client() as http:
        not_admin = http.send(
            other._json_request("POST", "/revocations", {"kind": "client", "id": owner.client_id})
        )
        not_owner = http.send(
            other._json_request("POST", "/revocations", {"kind": "run", "id": run_id})
        )
        ledger = http.send(other._json_request("GET", f"/runs/{run_id}/ledger"))
    assert not_admin.status_code == 403
    assert reason_of(not_admin) == Reason.MALFORMED_REQUEST
    assert not_admin.json()["error"] == AccessDenied.error
    assert not_owner.json() == {"revoked": False}
    assert ledger.status_code == 404
    assert _call(stack, owner, token).status_code == 200  # the owner's run is untouched


def test_step_completion_needs_the_steps_token_and_its_agents_key(stack: Stack) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        token = shim.token(context, stack.rs_url).token
    path = f"/runs/{run.run_id}/steps/triage/complete"

    def complete(key: PopKey, token: str | None, step_path: str = path) -> httpx.Response:
        request = shim._json_request("POST", step_path)
        if token is not None:
            request.headers["X-AJWT-Token"] = f"DPoP {token}"
        request.headers["DPoP"] = create_proof(
            key, "POST", stack.idp_url + step_path, token=token, body=b""
        )
        return httpx.Client().send(request)

    assert reason_of(complete(PopKey.generate(), token)) == Reason.KEY_NOT_BOUND
    assert reason_of(complete(shim.agent("supervisor").key, None)) == Reason.MISSING_TOKEN
    other_step = f"/runs/{run.run_id}/steps/plan/complete"
    assert (
        reason_of(complete(shim.agent("supervisor").key, token, other_step)) == Reason.INVALID_CLAIM
    )
    assert complete(shim.agent("supervisor").key, token).status_code == 200


def test_client_without_runtime_registration_is_pinned(stack: Stack) -> None:
    # ``allow_runtime_registration: false`` is the ``pinned`` policy: only checksums an
    # administrator registered (tests/e2e/test_agent_governance.py) may register.
    client = stack.new_client(allow_runtime_registration=False)
    assert client["agent_policy"] == "pinned"
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    with pytest.raises(UnauthorizedClient) as info:
        shim.register(reference_manifest("planner"))
    assert info.value.reason == Reason.AGENT_NOT_PINNED
    stack.admin.pin_agents(client["client_id"], [reference_manifest("planner")])
    assert shim.register(reference_manifest("planner")).version == 1
    allowed = stack.shim()
    assert allowed.agent("planner").version >= 1
