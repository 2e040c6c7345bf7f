"""Issue 12 §2: input that used to answer 500 now gets a 4xx OAuth error naming the field,
on SQLite and PostgreSQL; and every value the claims allow fits the column it is stored in
(the legitimate request at the limit still passes)."""

from __future__ import annotations

import secrets

import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.keys import PopKey
from ajwt_core.tokens import DelegationClaims, encode_delegation_assertion, token_hash
from tests.idp.support import ISSUER, IdPHarness, assert_refused


@pytest.fixture(scope="module")
def client(harness: IdPHarness) -> object:
    return harness.new_client()


# ------------------------------------------------------------------ credentials


@pytest.mark.parametrize(
    "path",
    ["/admin/clients", "/revocations", "/runs/run-1/ledger", "/runs/run-1/ledger/verify"],
)
def test_non_ascii_admin_bearer_is_refused_not_a_500(harness: IdPHarness, path: str) -> None:
    method = "GET" if "ledger" in path else "POST"
    body = {"kind": "run", "id": "run-1"} if path == "/revocations" else {}
    response = harness.request(
        method, path, headers=[(b"authorization", b"Bearer \xe9")], json=body
    )
    assert_refused(response, 401, Reason.CLIENT_AUTHENTICATION_FAILED)


def test_admin_bearer_still_accepted(harness: IdPHarness) -> None:
    response = harness.request("POST", "/admin/clients", headers=harness.admin, json={})
    assert response.status_code == 201


@pytest.mark.parametrize("client_id", ["a\x00b", "é" * 10, "x" * 129, "a b", "a\nb"], ids=repr)
def test_basic_client_id_outside_the_identifier_alphabet_fails_authentication(
    harness: IdPHarness, client_id: str
) -> None:
    import base64
    from urllib.parse import quote

    raw = f"{quote(client_id, safe='')}:secret".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    response = harness.request("GET", "/workflows/vuln-patch/1", headers=headers)
    assert_refused(response, 401, Reason.CLIENT_AUTHENTICATION_FAILED)


@pytest.mark.parametrize("issuer", ["a\x00b", "\u0085", "x" * 600], ids=repr)
def test_unverified_assertion_issuer_is_checked_before_any_lookup(
    harness: IdPHarness, issuer: str
) -> None:
    key = PopKey.generate()
    assertion = key.sign({"iss": issuer, "sub": issuer, "jti": "j"}, {"typ": "jwt"})
    headers = {"Authorization": f"Client-Assertion {assertion}"}
    response = harness.request("GET", "/workflows/vuln-patch/1", headers=headers)
    assert_refused(response, 401, Reason.CLIENT_AUTHENTICATION_FAILED)


def test_client_assertion_jti_as_long_as_the_claims_allow_is_stored(harness: IdPHarness) -> None:
    # Claims allow a 512-character jti; PostgreSQL's column was VARCHAR(256) (a 500).
    key = PopKey.generate()
    client_id = harness.new_key_client(key)
    for jti in ("j" * 300 + secrets.token_hex(4), "é" * 500):
        assertion = harness.client_assertion(client_id, key, jti)
        headers = {"Authorization": f"Client-Assertion {assertion}"}
        first = harness.request("GET", "/workflows/vuln-patch/1", headers=headers)
        again = harness.request("GET", "/workflows/vuln-patch/1", headers=headers)
        assert first.status_code == 200, first.text
        assert_refused(again, 401, Reason.REPLAYED)


@pytest.mark.parametrize("jti", ["a\x00b", "tab\there", "\x7f", "x" * 513], ids=repr)
def test_client_assertion_jti_with_control_characters_is_refused(
    harness: IdPHarness, jti: str
) -> None:
    key = PopKey.generate()
    client_id = harness.new_key_client(key)
    assertion = harness.client_assertion(client_id, key, jti)
    headers = {"Authorization": f"Client-Assertion {assertion}"}
    response = harness.request("GET", "/workflows/vuln-patch/1", headers=headers)
    assert_refused(response, 401, Reason.INVALID_CLAIM)


# ------------------------------------------------------------------ path and ids


@pytest.mark.parametrize(
    "path",
    [
        "/runs/a%00b/status",
        "/runs/a%01b/ledger",
        "/runs/%C3%A9/status",
        "/runs/run-1/status?registration_id=a%00b",
        "/workflows/a%00b/1",
        "/admin/runs/a%00b/steps/plan/approve",
        "/runs/run-1/steps/a%00b/complete",
        "/agents/a%00b/rotate",
    ],
)
def test_nul_and_non_ascii_ids_in_the_path_are_invalid_requests(
    harness: IdPHarness, client: object, path: str
) -> None:
    method = "POST" if path.endswith(("approve", "complete", "rotate")) else "GET"
    headers = harness.admin if path.startswith("/admin") else client.basic  # type: ignore[attr-defined]
    response = harness.request(method, path, headers=headers, json={"approved_by": "ops"})
    assert_refused(response, 400, Reason.MALFORMED_REQUEST)


def test_well_formed_unknown_ids_are_still_not_found(harness: IdPHarness) -> None:
    assert_refused(harness.request("GET", "/runs/run-unknown/status"), 404, Reason.RUN_NOT_FOUND)


@pytest.mark.parametrize("ident", ["a\x00b", "é", "a b"], ids=repr)
def test_revocation_ids_are_identifiers(harness: IdPHarness, client: object, ident: str) -> None:
    body = {"kind": "run", "id": ident}
    response = harness.request("POST", "/revocations", headers=client.basic, json=body)  # type: ignore[attr-defined]
    assert_refused(response, 400, Reason.MALFORMED_REQUEST)
    response = harness.request("POST", "/revocations", headers=harness.admin, json=body)
    assert_refused(response, 400, Reason.MALFORMED_REQUEST)


# ---------------------------------------------------------------- big integers


@pytest.mark.parametrize("version", [2**31, 2**63, 2**64 + 7, 10**400])
def test_workflow_versions_beyond_the_column_are_refused(harness: IdPHarness, version: int) -> None:
    definition = {
        "id": "big-" + secrets.token_hex(3),
        "version": version,
        "steps": {"a": {"agent": "x", "tools": ["t"]}},
    }
    response = harness.request("POST", "/admin/workflows", headers=harness.admin, json=definition)
    assert_refused(response, 400, Reason.INVALID_WORKFLOW)


def test_the_largest_workflow_version_is_accepted(harness: IdPHarness) -> None:
    definition = {
        "id": "max-" + secrets.token_hex(3),
        "version": 2**31 - 1,
        "steps": {"a": {"agent": "x", "tools": ["t"]}},
    }
    response = harness.request("POST", "/admin/workflows", headers=harness.admin, json=definition)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("version", [2**31, 2**63, 10**30])
def test_run_start_with_a_huge_workflow_version_is_refused(
    harness: IdPHarness, client: object, version: int
) -> None:
    user = harness.request(
        "POST", "/admin/users/token", headers=harness.admin, json={"subject": "user:alice"}
    ).json()["access_token"]
    body = {"workflow_id": "vuln-patch", "workflow_version": version, "subject_token": user}
    response = harness.request("POST", "/runs", headers=client.basic, json=body)  # type: ignore[attr-defined]
    assert_refused(response, 400, Reason.MALFORMED_REQUEST)


# --------------------------------------------------------------- JSON text fields


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/users/token", {"subject": "user:\x00alice"}),
        ("/admin/users/token", {"subject": "user:\ud800"}),
        ("/admin/clients", {"scopes": ["repo:read\x00"]}),
        ("/admin/clients", {"scopes": ["é"]}),
        ("/admin/clients", {"shim_checksums": ["\x00" * 10]}),
        ("/admin/clients", {"client_id": "é"}),
        ("/admin/runs/run-1/steps/plan/approve", {"approved_by": "ops\x00"}),
        ("/admin/runs/run-1/steps/plan/approve", {"approved_by": "\ud800"}),
    ],
    ids=repr,
)
def test_admin_text_fields_refuse_what_cannot_be_stored(
    harness: IdPHarness, path: str, body: dict[str, object]
) -> None:
    response = harness.request("POST", path, headers=harness.admin, json=body)
    assert_refused(response, 400, Reason.MALFORMED_REQUEST)


@pytest.mark.parametrize("intent", ["patch\x00CVEs", "\ud800", "bell\x07"], ids=repr)
def test_run_intent_refuses_nul_control_characters_and_lone_surrogates(
    harness: IdPHarness, client: object, intent: str
) -> None:
    user = harness.request(
        "POST", "/admin/users/token", headers=harness.admin, json={"subject": "user:alice"}
    ).json()["access_token"]
    body = {"workflow_id": "vuln-patch", "subject_token": user, "intent": intent}
    response = harness.request("POST", "/runs", headers=client.basic, json=body)  # type: ignore[attr-defined]
    assert_refused(response, 400, Reason.MALFORMED_REQUEST)


def test_run_intent_keeps_ordinary_text(harness: IdPHarness, client: object) -> None:
    user = harness.request(
        "POST", "/admin/users/token", headers=harness.admin, json={"subject": "user:élodie"}
    ).json()["access_token"]
    intent = "Patch the CVEs\n\tin every repo — ünïcödé welcome " + "x" * 1900
    body = {"workflow_id": "vuln-patch", "subject_token": user, "intent": intent}
    response = harness.request("POST", "/runs", headers=client.basic, json=body)  # type: ignore[attr-defined]
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("subject", ["user:\x00", "x" * 513], ids=repr)
def test_upstream_subject_that_cannot_be_stored_is_refused(
    harness: IdPHarness, client: object, subject: str
) -> None:
    # The IdP's own key signs the subject token here, as an upstream IdP would: the
    # signature is valid, the `sub` is not storable.
    token = harness.keys.active.sign(
        {"iss": ISSUER, "sub": subject, "aud": ISSUER, "iat": 0, "exp": 2**40},
        {"typ": "at+jwt"},
    )
    body = {"workflow_id": "vuln-patch", "subject_token": token}
    response = harness.request("POST", "/runs", headers=client.basic, json=body)  # type: ignore[attr-defined]
    assert_refused(response, 400, Reason.INVALID_CLAIM)


# ---------------------------------------------------------------- token endpoint


@pytest.fixture(scope="module")
def minting(harness: IdPHarness) -> tuple[object, object, str]:
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    return client, agent, harness.start_run(client)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("agent_checksum", "sha256:é"),
        ("agent_checksum", "sha256:" + "é" * 64),
        ("agent_checksum", "sha256:" + "A" * 64),
        ("agent_id", "a\x00b"),
        ("agent_id", "é"),
        ("run_id", "run\x00"),
        ("run_id", "r" * 200),
        ("step", "pl\x00an"),
        ("tool", "list\x00repos"),
        ("tool", "t" * 129),
        ("resource", "http://api.test/\x00"),
        ("resource", "http://api.test/é"),
        ("scope", "repo:read\x00"),
        ("input_digest", "sha256:" + "é" * 64),
    ],
    ids=repr,
)
def test_token_form_fields_are_validated_at_the_boundary(
    harness: IdPHarness, minting: tuple[object, object, str], name: str, value: str
) -> None:
    client, agent, run_id = minting
    form = harness.mint_form(agent, run_id) | {name: value}  # type: ignore[arg-type]
    response = harness.token_request(client, agent, form)  # type: ignore[arg-type]
    # A resource that is no absolute URI is RFC 8707's invalid_target.
    error = "invalid_target" if name == "resource" else "invalid_request"
    assert_refused(response, 400, Reason.MALFORMED_REQUEST, error=error)
    assert name in response.json()["error_description"]


def test_token_form_at_its_limits_still_mints(
    harness: IdPHarness, minting: tuple[object, object, str]
) -> None:
    client, agent, run_id = minting
    form = harness.mint_form(agent, run_id) | {
        "resource": "http://api.test/" + "p" * 400,
        "input_digest": "sha256:" + "0" * 64,
        "scope": "repo:read",
    }
    response = harness.token_request(client, agent, form)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text


def test_non_ascii_step_token_at_completion_is_an_invalid_token(
    harness: IdPHarness, minting: tuple[object, object, str]
) -> None:
    client, agent, run_id = minting
    path = f"/runs/{run_id}/steps/triage/complete"
    token = "é.é.é"
    proof = create_proof(agent.key, "POST", ISSUER + path, body=b"")  # type: ignore[attr-defined]
    headers = {**client.basic, "DPoP": proof, "X-AJWT-Token": f"DPoP {token}"}  # type: ignore[attr-defined]
    response = harness.request("POST", path, headers=headers)
    assert_refused(response, 401, Reason.MALFORMED_TOKEN)


# ------------------------------------------------------------------ registration


def test_a_long_jwk_alg_member_does_not_reach_the_alg_column(harness: IdPHarness) -> None:
    # The proof's JWK may carry any "alg" member; the stored algorithm is the key's own.
    client = harness.new_client()
    key = PopKey.generate()
    jwk = key.public_jwk | {"alg": "A" * 46}
    claims = {"jti": secrets.token_urlsafe(8), "htm": "POST", "htu": ISSUER + "/agents", "iat": 0}
    import time

    claims["iat"] = int(time.time())
    proof = key.sign(claims, {"typ": "dpop+jwt", "jwk": jwk})
    from ajwt_demo.agents import reference_manifest

    body = {"manifest": reference_manifest("planner").model_dump(mode="json"), "proof": proof}
    response = harness.request("POST", "/agents", headers=client.basic, json=body)
    assert response.status_code == 201, response.text


# -------------------------------------------------------------------- delegation


def test_delegation_jti_as_long_as_the_claims_allow_is_stored(harness: IdPHarness) -> None:
    # `jkt:jti` was stored in a 256-character column; the claims allow a 512-character jti.
    client = harness.new_client()
    supervisor = harness.register_agent(client, "supervisor")
    planner = harness.register_agent(client, "planner")
    run_id = harness.start_run(client)
    minted = harness.token_request(client, supervisor, harness.mint_form(supervisor, run_id))
    assert minted.status_code == 200, minted.text
    parent = minted.json()["access_token"]
    path = f"/runs/{run_id}/steps/triage/complete"
    proof = create_proof(supervisor.key, "POST", ISSUER + path, token=parent, body=b"")
    headers = {**client.basic, "DPoP": proof, "X-AJWT-Token": f"DPoP {parent}"}
    assert harness.request("POST", path, headers=headers).status_code == 200
    status = harness.request("GET", f"/runs/{run_id}/status").json()
    import time

    now = int(time.time())
    claims = DelegationClaims(
        iss="agent:supervisor",
        sub="agent:planner",
        aud=ISSUER,
        intent_id=status["intent_id"],
        run_id=run_id,
        from_step="triage",
        to_step="plan",
        scope="repo:read",
        parent=token_hash(parent),
        iat=now,
        exp=now + 30,
        jti="d" * 512,
    )
    assertion = encode_delegation_assertion(claims, supervisor.key)
    form = harness.mint_form(planner, run_id, tool="read_file") | {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": parent,
        "subject_token_type": "urn:ajwt:params:oauth:token-type:intent",
        "actor_token": assertion,
        "actor_token_type": "urn:ajwt:params:oauth:token-type:delegation",
    }
    exchanged = harness.token_request(client, planner, form)
    assert exchanged.status_code == 200, exchanged.text
    again = harness.token_request(client, planner, form)
    assert_refused(again, 400, Reason.REPLAYED)
