"""HTTP and OAuth answers a standard client relies on (found by a wire-level probe): a
refused proof at the token endpoint is a 400 (RFC 9449 §5), a 405 names what is allowed
(RFC 9110 §15.5.6), metadata answers HEAD (§9.1), a trailing slash is not redirected to a
Host the client chose, and each 401 challenges the scheme it is about."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ajwt_core.errors import Reason
from ajwt_core.keys import PopKey
from tests.idp.support import Client, IdPHarness, assert_refused


@pytest.fixture(scope="module")
def minting(harness: IdPHarness) -> tuple[Client, dict[str, str], PopKey]:
    client = harness.new_client()
    agent = harness.register_agent(client, "supervisor")
    return client, harness.mint_form(agent, harness.start_run(client)), agent.key


@pytest.mark.parametrize(
    ("proof", "reason"),
    [
        (None, Reason.MALFORMED_PROOF),
        ("eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.e30.", Reason.ALG_NOT_ALLOWED),
    ],
    ids=["no proof", "alg none"],
)
def test_a_refused_proof_at_the_token_endpoint_is_a_400_with_no_challenge(
    harness: IdPHarness, minting: tuple[Client, dict[str, str], PopKey], proof: str | None,
    reason: Reason,
) -> None:  # fmt: skip
    client, form, key = minting
    headers = client.basic | ({"DPoP": proof} if proof else {})
    refused = harness.request("POST", "/token", headers=headers, form=form)
    assert_refused(refused, 400, reason, error="invalid_dpop_proof")
    assert "www-authenticate" not in refused.headers
    # The same client and form with a proof by the agent's key is minted.
    signed = client.basic | {"DPoP": harness.proof(key, "/token")}
    assert harness.request("POST", "/token", headers=signed, form=form).status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_wrong_method_is_a_405_that_names_the_allowed_one(
    harness: IdPHarness, method: str
) -> None:
    answer = harness.request(method, "/token")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
        "/.well-known/ajwt-shims",
    ],
)
def test_metadata_answers_head_as_get(harness: IdPHarness, path: str) -> None:
    got = harness.request("GET", path)
    head = harness.request("HEAD", path)
    assert (got.status_code, head.status_code) == (200, 200)
    assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize("path", ["/healthz", "/runs/run-nope/status", "/admin/clients"])
def test_every_get_route_answers_head_with_its_status_and_headers_only(
    harness: IdPHarness, path: str
) -> None:
    got = harness.request("GET", path, headers=harness.admin)
    head = harness.request("HEAD", path, headers=harness.admin)
    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_trailing_slash_is_not_redirected_to_the_clients_host(harness: IdPHarness) -> None:
    answer = harness.request("POST", "/token/", headers={"Host": "evil.example"}, form={})
    assert answer.status_code == 404
    assert "location" not in answer.headers


def test_the_administrators_api_challenges_bearer(harness: IdPHarness) -> None:
    refused = harness.request(
        "GET", "/admin/clients", headers={"Authorization": "Bearer not-the-token"}
    )
    assert_refused(refused, 401, Reason.CLIENT_AUTHENTICATION_FAILED)
    assert refused.headers["www-authenticate"] == 'Bearer realm="ajwt-admin"'
    assert harness.request("GET", "/admin/clients", headers=harness.admin).status_code == 200


# ------------------------------------------------- one client, one method (RFC 6749 §2.3)


@pytest.mark.parametrize(
    "extra",
    [
        {"client_secret": "wrong"},
        {"client_assertion": "x.y.z"},
        {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
        {"client_id": "other-client"},
    ],
    ids=["form secret", "assertion", "assertion type", "other client_id"],
)
def test_a_second_client_authentication_is_refused_beside_a_valid_basic(
    harness: IdPHarness, extra: dict[str, str]
) -> None:
    client = harness.new_client()
    refused = harness.request(
        "POST", "/introspect", headers=client.basic, form={"token": "x"} | extra
    )
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")
    # Basic alone, or with the client's own client_id, passes.
    for form in ({"token": "x"}, {"token": "x", "client_id": client.client_id}):
        answer = harness.request("POST", "/introspect", headers=client.basic, form=form)
        assert (answer.status_code, answer.json()) == (200, {"active": False})


def test_two_authorization_headers_are_refused(harness: IdPHarness) -> None:
    client = harness.new_client()
    [(name, good)] = client.basic.items()
    headers = [(name.encode(), good.encode()), (b"authorization", b"Basic bm9ib2R5Om5vcGU=")]
    refused = harness.request("POST", "/introspect", headers=headers, form={"token": "x"})
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")
    json_api = harness.request(
        "POST", "/revocations", headers=headers, json={"kind": "run", "id": "run-1"}
    )
    assert_refused(json_api, 400, Reason.MALFORMED_REQUEST, error="invalid_request")


# ------------------------------------------------------------ what a refusal may quote


def test_a_missing_grant_type_is_an_invalid_request(harness: IdPHarness) -> None:
    client = harness.new_client()
    refused = harness.request("POST", "/token", headers=client.basic, form={"scope": "x"})
    assert_refused(refused, 400, Reason.MISSING_PARAMETER, error="invalid_request")
    assert refused.json()["error_description"] == "parameter 'grant_type' is required"


def test_an_unknown_grant_type_is_not_echoed(harness: IdPHarness) -> None:
    client = harness.new_client()
    hostile = 'é"\\\u202e<script>\r\n' + "x" * 100_000
    refused = harness.request("POST", "/token", headers=client.basic, form={"grant_type": hostile})
    assert_refused(refused, 400, Reason.UNSUPPORTED_GRANT_TYPE, error="unsupported_grant_type")
    description = refused.json()["error_description"]
    assert "script" not in description and len(refused.content) < 1000
    assert "urn:ajwt:params:oauth:grant-type:agent-checksum" in description


def test_error_descriptions_keep_to_the_rfc_6749_characters() -> None:
    from ajwt_core.errors import MAX_DESCRIPTION, InvalidRequest

    quoted = InvalidRequest(Reason.MALFORMED_REQUEST, 'field "é\\\x00" ' + "y" * 5000)
    description = quoted.to_oauth()["error_description"]
    allowed = {chr(c) for c in (0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F))}
    assert set(description) <= allowed
    assert description.startswith("field '?/?' ") and len(description) == MAX_DESCRIPTION


@pytest.mark.parametrize(
    "resource", ["http://127.0.0.1:8001#f", "urn:example:api", "/relative", "https://"]
)
def test_a_resource_that_is_no_absolute_uri_without_fragment_is_an_invalid_target(
    harness: IdPHarness, minting: tuple[Client, dict[str, str], PopKey], resource: str
) -> None:
    client, form, key = minting
    headers = client.basic | {"DPoP": harness.proof(key, "/token")}
    refused = harness.request("POST", "/token", headers=headers, form=form | {"resource": resource})
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_target")


def test_a_step_token_for_an_api_is_an_invalid_target(
    harness: IdPHarness, minting: tuple[Client, dict[str, str], PopKey]
) -> None:
    # A step token (no tool) is for the IdP only (RFC 8707 §2: a resource the token
    # cannot be issued for); a probe found it answered invalid_request.
    client, form, key = minting
    step_token = {k: v for k, v in form.items() if k != "tool"}
    headers = client.basic | {"DPoP": harness.proof(key, "/token")}
    refused = harness.request("POST", "/token", headers=headers, form=step_token)
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_target")
    assert "for the IdP only" in refused.json()["error_description"]
    # Without the API's resource, the same request is a step token.
    headers = client.basic | {"DPoP": harness.proof(key, "/token")}
    without = {k: v for k, v in step_token.items() if k != "resource"}
    assert harness.request("POST", "/token", headers=headers, form=without).status_code == 200


def test_a_405_names_every_method_of_the_path(harness: IdPHarness) -> None:
    answer = harness.request("PUT", "/admin/clients", headers=harness.admin)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"
    assert answer.json()["ajwt_reason"] == "malformed_request"


@pytest.mark.parametrize(
    ("path", "content", "status", "reason"),
    [
        ("/no-such-endpoint", b"", 404, "not_found"),
        ("/runs", b'{"workflow_id": "\xff"}', 400, "malformed_request"),
        ("/runs", b"[" * 5000 + b"]" * 5000, 400, "malformed_request"),
    ],
    ids=["unknown path", "invalid UTF-8", "deep nesting"],
)
def test_framework_errors_are_oauth_errors_with_a_reason(
    harness: IdPHarness, path: str, content: bytes, status: int, reason: str
) -> None:
    client = harness.new_client()
    headers = client.basic | {"content-type": "application/json"}
    answer = harness.request("POST", path, headers=headers, content=content)
    assert_refused(answer, status, reason)


def test_a_json_body_with_a_key_twice_is_refused_not_read_last_one_wins(
    harness: IdPHarness,
) -> None:
    client = harness.new_client()
    key = PopKey.generate()
    proof = harness.proof(key, "/agents")
    manifest = '{"agent_id": "supervisor", "agent_id": "other", "prompt": {"template": "x"}}'
    body = ('{"manifest": ' + manifest + ', "proof": "' + proof + '"}').encode()
    headers = client.basic | {"content-type": "application/json"}
    refused = harness.request("POST", "/agents", headers=headers, content=body)
    assert_refused(refused, 400, "malformed_request", error="invalid_request")
    assert "repeats the key 'agent_id'" in refused.json()["error_description"]
    # The same registration without the repeated key is accepted.
    assert harness.register_agent(client, "supervisor", key).agent_id == "supervisor"


def test_a_json_body_that_is_not_utf8_is_refused(harness: IdPHarness) -> None:
    client = harness.new_client()
    body = '{"workflow_id": "vuln-patch", "subject_token": "x.y.z"}'.encode("utf-16")
    headers = client.basic | {"content-type": "application/json"}
    refused = harness.request("POST", "/runs", headers=headers, content=body)
    assert_refused(refused, 400, "malformed_request")
    assert "UTF-8" in refused.json()["error_description"]


def test_a_completion_with_two_step_tokens_is_refused(
    harness: IdPHarness, minting: tuple[Client, dict[str, str], PopKey]
) -> None:
    client, _form, _key = minting
    headers = [
        *[(k.encode(), v.encode()) for k, v in client.basic.items()],
        (b"x-ajwt-token", b"DPoP a.b.c"),
        (b"x-ajwt-token", b"DPoP d.e.f"),
    ]
    refused = harness.request("POST", "/runs/run-1/steps/triage/complete", headers=headers)
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")
    assert refused.json()["error_description"] == "more than one X-AJWT-Token header"


def test_the_administrators_api_refuses_two_authorization_headers(harness: IdPHarness) -> None:
    [(name, admin)] = harness.admin.items()
    headers = [(name.encode(), admin.encode()), (b"authorization", b"Bearer junk")]
    refused = harness.request("GET", "/admin/clients", headers=headers)
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")


def test_a_chunked_json_body_past_the_bound_is_a_413(harness: IdPHarness) -> None:
    client = harness.new_client()

    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 65536  # 2.5 MiB, no Content-Length

    async def send() -> httpx.Response:
        headers = client.basic | {"content-type": "application/json"}
        return await harness.http.post("/runs", headers=headers, content=chunks())

    refused = harness.run_call(send())
    assert_refused(refused, 413, Reason.REQUEST_TOO_LARGE)


def test_a_repeated_key_in_carried_completions_is_named(
    harness: IdPHarness, minting: tuple[Client, dict[str, str], PopKey]
) -> None:
    client, form, key = minting
    repeated = '[{"step": "triage", "step": "plan", "token": "x.y.z", "proof": "a.b.c"}]'
    headers = client.basic | {"DPoP": harness.proof(key, "/token")}
    refused = harness.request(
        "POST", "/token", headers=headers, form=form | {"completions": repeated}
    )
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")
    assert refused.json()["error_description"] == (
        "parameter 'completions' repeats the key 'step' in one object"
    )
