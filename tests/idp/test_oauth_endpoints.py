"""The IdP as a standard OAuth server (issue 16): the token endpoint with plain RFC 9449
proofs and the standard RFC 8693 token types, RFC 7009 revocation, RFC 7662
introspection, ``private_key_jwt`` with authlib's defaults, and the tokens that are not
intent tokens refused where one is expected. Each refusal with the request that passes.
"""

from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc.jwk import RSAKey

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.keys import SigningKeySet
from ajwt_core.tokens import DelegationClaims, encode_delegation_assertion, token_hash
from tests.idp.support import (
    ISSUER,
    RESOURCE,
    Agent,
    Client,
    IdPHarness,
    assert_refused,
)

GRANT = "urn:ajwt:params:oauth:grant-type:agent-checksum"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
INTENT = "urn:ajwt:params:oauth:token-type:intent"
DELEGATION = "urn:ajwt:params:oauth:token-type:delegation"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def token_post(
    harness: IdPHarness,
    form: dict[str, str],
    key: Any,
    *,
    auth: dict[str, str],
    proof_body: bytes | None = None,
) -> httpx.Response:
    """``POST /token``; ``proof_body=None``: a plain RFC 9449 proof (no ``bh``)."""
    body = urlencode(form).encode()
    headers = {
        **auth,
        "DPoP": create_proof(key, "POST", ISSUER + "/token", body=proof_body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return harness.request("POST", "/token", headers=headers, content=body)


class Party:
    """A client with the supervisor and planner registered, and a run."""

    def __init__(self, harness: IdPHarness) -> None:
        self.harness = harness
        self.client: Client = harness.new_client()
        self.supervisor: Agent = harness.register_agent(self.client, "supervisor")
        self.planner: Agent = harness.register_agent(self.client, "planner")
        self.run_id = harness.start_run(self.client)
        status = harness.request("GET", f"/runs/{self.run_id}/status").json()
        self.intent_id = str(status["intent_id"])

    def mint(self, **form: str) -> httpx.Response:
        fields = self.harness.mint_form(self.supervisor, self.run_id) | {"grant_type": GRANT}
        return token_post(self.harness, fields | form, self.supervisor.key, auth=self.client.basic)

    def token(self) -> str:
        minted = self.mint()
        assert minted.status_code == 200, minted.text
        return str(minted.json()["access_token"])

    def exchange_form(self, parent: str, **form: str) -> dict[str, str]:
        now = int(time.time())
        assertion = encode_delegation_assertion(
            DelegationClaims(
                iss="agent:supervisor",
                sub="agent:planner",
                aud=ISSUER,
                intent_id=self.intent_id,
                run_id=self.run_id,
                from_step="triage",
                to_step="plan",
                scope="repo:read",
                parent=token_hash(parent),
                iat=now,
                exp=now + 60,
                jti=secrets.token_urlsafe(8),
            ),
            self.supervisor.key,
        )
        fields = {
            "grant_type": EXCHANGE,
            "subject_token": parent,
            "subject_token_type": ACCESS_TOKEN,
            "actor_token": assertion,
            "actor_token_type": JWT,
            "agent_id": "planner",
            "agent_checksum": self.planner.checksum,
            "run_id": self.run_id,
            "step": "plan",
            "tool": "read_file",
            "resource": RESOURCE,
        }
        return fields | form

    def exchange(self, form: dict[str, str]) -> httpx.Response:
        return token_post(self.harness, form, self.planner.key, auth=self.client.basic)


@pytest.fixture
def party(harness: IdPHarness) -> Party:
    return Party(harness)


# ------------------------------------------------------------------- metadata


def test_metadata_advertises_standard_endpoints_and_absolute_grant_types(
    harness: IdPHarness,
) -> None:
    meta = harness.request("GET", "/.well-known/oauth-authorization-server").json()
    assert meta["response_types_supported"] == ["none"]
    assert meta["grant_types_supported"] == [GRANT, EXCHANGE]
    assert all(":" in grant for grant in meta["grant_types_supported"])  # RFC 6749 §4.5
    assert meta["revocation_endpoint"] == ISSUER + "/revoke"
    assert meta["introspection_endpoint"] == ISSUER + "/introspect"
    assert "RS256" in meta["token_endpoint_auth_signing_alg_values_supported"]


# ---------------------------------------------------------------- token endpoint


def test_token_endpoint_accepts_a_plain_rfc9449_proof(party: Party) -> None:
    minted = party.mint()
    assert minted.status_code == 200, minted.text
    answer = minted.json()
    assert (answer["token_type"], answer["issued_token_type"]) == ("DPoP", INTENT)
    header = jwt.get_unverified_header(answer["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims_of(answer["access_token"])["cnf"]["jkt"] == party.supervisor.key.thumbprint


def test_token_endpoint_checks_bh_when_the_proof_has_one(party: Party) -> None:
    fields = party.harness.mint_form(party.supervisor, party.run_id) | {"grant_type": GRANT}
    swapped = token_post(
        party.harness,
        fields,
        party.supervisor.key,
        auth=party.client.basic,
        proof_body=b"grant_type=other",
    )
    # RFC 9449 §5: the token endpoint answers a refused proof as RFC 6749 §5.2 says, 400.
    assert_refused(swapped, 400, Reason.BODY_HASH_MISMATCH, error="invalid_dpop_proof")
    assert "www-authenticate" not in swapped.headers
    bound = token_post(
        party.harness,
        fields,
        party.supervisor.key,
        auth=party.client.basic,
        proof_body=urlencode(fields).encode(),
    )
    assert bound.status_code == 200, bound.text


def test_the_bare_grant_name_is_refused_naming_the_urn(party: Party) -> None:
    refused = party.mint(grant_type="agent_checksum")
    assert_refused(refused, 400, Reason.UNSUPPORTED_GRANT_TYPE, error="unsupported_grant_type")
    assert GRANT in refused.json()["error_description"]


@pytest.mark.parametrize(
    ("subject_type", "actor_type", "requested"),
    [
        (ACCESS_TOKEN, JWT, ACCESS_TOKEN),
        (JWT, JWT, None),
        (INTENT, DELEGATION, INTENT),
    ],
)
def test_token_exchange_takes_the_standard_token_types(
    party: Party, subject_type: str, actor_type: str, requested: str | None
) -> None:
    form = party.exchange_form(
        party.token(), subject_token_type=subject_type, actor_token_type=actor_type
    )
    if requested:
        form["requested_token_type"] = requested
    exchanged = party.exchange(form)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["issued_token_type"] == (requested or INTENT)
    assert claims_of(exchanged.json()["access_token"])["act"]["sub"] == "agent:planner"


@pytest.mark.parametrize(
    "change",
    [
        {"subject_token_type": DELEGATION},
        {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
        {"actor_token_type": ACCESS_TOKEN},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
    ],
    ids=["subject-delegation", "subject-id-token", "actor-access-token", "requested-refresh"],
)
def test_token_exchange_refuses_token_types_that_mean_something_else(
    party: Party, change: dict[str, str]
) -> None:
    refused = party.exchange(party.exchange_form(party.token(), **change))
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")


# ------------------------------------------------------ other tokens as intent tokens


def foreign_tokens(harness: IdPHarness, party: Party) -> dict[str, tuple[str, Reason]]:
    """Tokens that are not intent tokens, each with the reason it is refused for."""
    user = harness.request(
        "POST", "/admin/users/token", headers=harness.admin, json={"subject": "user:alice"}
    ).json()["access_token"]
    minted = party.mint().json()
    now = int(time.time())
    upstream = SigningKeySet.generate().active.sign(
        {"iss": "https://login.example", "sub": "user:alice", "aud": ISSUER, "client_id": "web",
         "iat": now, "exp": now + 300, "jti": "u1"},
        {"typ": "at+jwt"},
    )  # fmt: skip
    assertion = party.exchange_form(minted["access_token"])["actor_token"]
    return {
        # at+jwt of this very issuer: only its claims tell it from an intent token
        "user token": (user, Reason.MISSING_CLAIM),
        "delegation assertion": (assertion, Reason.WRONG_TYPE),
        "ledger checkpoint": (minted["ledger_checkpoint"], Reason.WRONG_TYPE),
        "upstream access token": (upstream, Reason.UNKNOWN_KID),
    }


def test_the_idp_refuses_other_tokens_as_the_parent_intent_token(
    harness: IdPHarness, party: Party
) -> None:
    for token, reason in foreign_tokens(harness, party).values():
        refused = party.exchange(party.exchange_form(token))
        assert_refused(refused, 400, reason, error="invalid_grant")
    accepted = party.exchange(party.exchange_form(party.token()))
    assert accepted.status_code == 200, accepted.text


def test_an_intent_or_step_token_cannot_start_a_run(harness: IdPHarness, party: Party) -> None:
    # A step token's audience is the IdP, like a user token's: the claims refuse it.
    step = party.mint(tool="", resource="")
    assert step.status_code == 200, step.text
    for token in (step.json()["access_token"], party.token()):
        body = {"workflow_id": "vuln-patch", "subject_token": token}
        refused = harness.request("POST", "/runs", headers=party.client.basic, json=body)
        assert_refused(refused, 400, Reason.WRONG_TYPE, error="invalid_grant")


# -------------------------------------------------------------- RFC 7009 revocation


def revoke(harness: IdPHarness, client: Client, token: str, **extra: str) -> httpx.Response:
    form = {"token": token, "token_type_hint": "access_token"} | extra
    return harness.request("POST", "/revoke", headers=client.basic, form=form)


def run_state(harness: IdPHarness, run_id: str) -> str:
    return str(harness.request("GET", f"/runs/{run_id}/status").json()["state"])


def test_revoking_an_intent_token_revokes_its_run(harness: IdPHarness, party: Party) -> None:
    token = party.token()
    answer = revoke(harness, party.client, token)
    assert (answer.status_code, answer.json()) == (200, {})
    assert run_state(harness, party.run_id) == "revoked"
    assert_refused(party.mint(), 400, Reason.RUN_REVOKED)
    assert revoke(harness, party.client, token).status_code == 200  # again: no error


def test_revoking_what_is_not_a_valid_token_of_this_idp_is_no_error(
    harness: IdPHarness, party: Party
) -> None:
    for token in ("not-a-token", "a.b.c", party.token()[:-4] + "AAAA"):
        assert revoke(harness, party.client, token).status_code == 200
    assert run_state(harness, party.run_id) == "open"


def test_a_client_cannot_revoke_another_clients_token(harness: IdPHarness, party: Party) -> None:
    other = harness.new_client()
    refused = revoke(harness, other, party.token())
    assert_refused(refused, 400, Reason.TOKEN_OF_ANOTHER_CLIENT, error="invalid_grant")
    assert run_state(harness, party.run_id) == "open"


@pytest.mark.parametrize("path", ["/revoke", "/introspect"])
def test_revocation_and_introspection_need_client_authentication_and_a_form(
    harness: IdPHarness, party: Party, path: str
) -> None:
    form = {"token": party.token()}
    unauthenticated = harness.request("POST", path, form=form)
    assert_refused(unauthenticated, 401, Reason.CLIENT_AUTHENTICATION_FAILED)
    as_json = harness.request("POST", path, headers=party.client.basic, json=form)
    assert_refused(as_json, 400, Reason.MALFORMED_REQUEST)
    no_token = harness.request("POST", path, headers=party.client.basic, form={"x": "1"})
    assert_refused(no_token, 400, Reason.MISSING_PARAMETER)


def test_the_json_revocation_api_moved_to_revocations(harness: IdPHarness, party: Party) -> None:
    body = {"kind": "run", "id": party.run_id}
    answer = harness.request("POST", "/revocations", headers=party.client.basic, json=body)
    assert (answer.status_code, answer.json()["revoked"]) == (200, True)
    other = harness.new_client()
    as_admin = harness.request(
        "POST",
        "/revocations",
        headers=harness.admin,
        json={"kind": "client", "id": other.client_id},
    )
    assert as_admin.json()["revoked"] is True
    refused = harness.request(
        "POST", "/revocations", headers=party.client.basic,
        json={"kind": "client", "id": other.client_id},
    )  # fmt: skip
    assert_refused(refused, 403, Reason.MALFORMED_REQUEST)


# ------------------------------------------------------------ RFC 7662 introspection


def introspect(harness: IdPHarness, client: Client, token: str) -> dict[str, Any]:
    answer = harness.request("POST", "/introspect", headers=client.basic, form={"token": token})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return dict(answer.json())


def resource_client(harness: IdPHarness, resources: list[str]) -> Client:
    body = {"scopes": [], "resources": resources}
    created = harness.request("POST", "/admin/clients", headers=harness.admin, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["resources"] == resources
    return Client(created.json()["client_id"], created.json()["client_secret"])


def test_introspection_answers_the_tokens_client_and_its_resource_servers(
    harness: IdPHarness, party: Party
) -> None:
    token = party.token()
    own = introspect(harness, party.client, token)
    assert own["active"] is True and own["token_type"] == "DPoP"
    assert own["jti"] == claims_of(token)["jti"] and own["cnf"] == claims_of(token)["cnf"]
    assert own["intent"]["step"] == "triage" and own["client_id"] == party.client.client_id
    server = resource_client(harness, [RESOURCE])
    assert introspect(harness, server, token) == own
    # A client that is neither learns nothing, not even that the token exists.
    for stranger in (harness.new_client(), resource_client(harness, ["https://other.example"])):
        assert introspect(harness, stranger, token) == {"active": False}


def test_introspection_says_inactive_for_invalid_and_revoked_tokens(
    harness: IdPHarness, party: Party
) -> None:
    token = party.token()
    for garbage in ("x", party.exchange_form(token)["actor_token"], token[:-4] + "AAAA"):
        assert introspect(harness, party.client, garbage) == {"active": False}
    harness.request(
        "POST", "/revocations", headers=party.client.basic, json={"kind": "run", "id": party.run_id}
    )
    assert introspect(harness, party.client, token) == {"active": False}


# -------------------------------------------------- private_key_jwt, authlib defaults


def rsa_client(harness: IdPHarness) -> tuple[str, RSAKey]:
    key = RSAKey.generate_key(2048)
    body = {
        "scopes": ["repo:read"],
        "auth_method": "private_key_jwt",
        "jwks": {"keys": [key.as_dict(private=False) | {"kid": "rsa-1"}]},
    }
    created = harness.request("POST", "/admin/clients", headers=harness.admin, json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["client_id"]), key


def assertion_form(assertion: str, **form: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion} | form


def test_authlib_private_key_jwt_with_its_defaults_authenticates_once(
    harness: IdPHarness,
) -> None:
    client_id, key = rsa_client(harness)
    # authlib's defaults: RS256, aud the token endpoint, exp = iat + 3600, a random jti.
    assertion = private_key_jwt_sign(key, client_id, ISSUER + "/token")
    claims = claims_of(assertion)
    assert claims["exp"] - claims["iat"] == 3600
    form = assertion_form(assertion, token="x")
    first = harness.request("POST", "/introspect", form=form)
    assert (first.status_code, first.json()) == (200, {"active": False})
    # Its jti is kept until it expires, however often expired ones are purged.
    assert harness.run_call(harness.idp.purge_used_assertions()) >= 0
    again = harness.request("POST", "/introspect", form=form)
    assert_refused(again, 400, Reason.REPLAYED, error="invalid_client")


def test_a_client_assertion_may_name_the_endpoint_it_is_sent_to(harness: IdPHarness) -> None:
    client_id, key = rsa_client(harness)
    for path in ("/introspect", "/revoke"):
        assertion = private_key_jwt_sign(key, client_id, ISSUER + path)
        answer = harness.request("POST", path, form=assertion_form(assertion, token="x"))
        assert answer.status_code == 200, answer.text
    elsewhere = private_key_jwt_sign(key, client_id, ISSUER + "/revoke")
    refused = harness.request("POST", "/introspect", form=assertion_form(elsewhere, token="x"))
    assert_refused(refused, 400, Reason.WRONG_AUDIENCE)


def test_the_assertion_lifetime_bound_is_a_setting(tmp_path: Path) -> None:
    strict = IdPHarness(
        f"sqlite:///{tmp_path}/idp.db", settings_overrides={"client_assertion_max_lifetime": 300}
    )
    try:
        client_id, key = rsa_client(strict)
        hour = private_key_jwt_sign(key, client_id, ISSUER + "/token")
        refused = strict.request("POST", "/introspect", form=assertion_form(hour, token="x"))
        assert_refused(refused, 400, Reason.LIFETIME_TOO_LONG)
        short = private_key_jwt_sign(key, client_id, ISSUER + "/token", expires_in=300)
        accepted = strict.request("POST", "/introspect", form=assertion_form(short, token="x"))
        assert accepted.status_code == 200, accepted.text
    finally:
        strict.close()


def typed_assertion(key: RSAKey, client_id: str, typ: str | None) -> str:
    """A client assertion with this ``typ`` header (``None``: none at all, as RFC 7523
    and oauth4webapi's ``PrivateKeyJwt`` send it)."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER + "/token",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    pem = key.as_pem(private=True)
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "rsa-1", "typ": typ})


@pytest.mark.parametrize("typ", [None, "JWT", "client-authentication+jwt"])
def test_a_client_assertion_without_typ_or_typed_as_one_authenticates(
    harness: IdPHarness, typ: str | None
) -> None:
    client_id, key = rsa_client(harness)
    assertion = typed_assertion(key, client_id, typ)
    assert jwt.get_unverified_header(assertion).get("typ") == typ
    answer = harness.request("POST", "/introspect", form=assertion_form(assertion, token="x"))
    assert (answer.status_code, answer.json()) == (200, {"active": False})


@pytest.mark.parametrize("typ", ["at+jwt", "dpop+jwt", "delegation+jwt"])
def test_a_jwt_typed_as_another_kind_is_no_client_assertion(harness: IdPHarness, typ: str) -> None:
    # Signed by the client's own key, but typed as something else: not an assertion.
    client_id, key = rsa_client(harness)
    assertion = typed_assertion(key, client_id, typ)
    refused = harness.request("POST", "/introspect", form=assertion_form(assertion, token="x"))
    assert_refused(refused, 400, Reason.WRONG_TYPE, error="invalid_client")


def test_invalid_client_challenges_the_scheme_the_client_used(harness: IdPHarness) -> None:
    """RFC 6749 §5.2: a 401 and a challenge for the Authorization header's scheme; an
    assertion in the form body is answered 400 with no challenge, so a client library
    shows the error description instead of an unexpected ``Basic`` challenge."""
    client_id, key = rsa_client(harness)
    wrong = "Basic " + base64.b64encode(f"{client_id}:not-the-secret".encode()).decode()
    basic = harness.request(
        "POST", "/introspect", headers={"Authorization": wrong}, form={"token": "x"}
    )
    assert_refused(basic, 401, Reason.CLIENT_AUTHENTICATION_FAILED, error="invalid_client")
    assert basic.headers["www-authenticate"] == 'Basic realm="ajwt"'
    anonymous = harness.request("POST", "/introspect", form={"token": "x"})
    assert_refused(anonymous, 401, Reason.CLIENT_AUTHENTICATION_FAILED)
    assert anonymous.headers["www-authenticate"] == 'Basic realm="ajwt"'
    forged = typed_assertion(RSAKey.generate_key(2048), client_id, None)
    in_form = harness.request("POST", "/introspect", form=assertion_form(forged, token="x"))
    assert_refused(in_form, 400, Reason.BAD_SIGNATURE, error="invalid_client")
    assert "www-authenticate" not in in_form.headers
    in_header = harness.request(
        "POST",
        "/revocations",
        headers={"Authorization": f"Client-Assertion {forged}"},
        json={"kind": "run", "id": "run-1"},
    )
    assert_refused(in_header, 401, Reason.BAD_SIGNATURE, error="invalid_client")
    assert in_header.headers["www-authenticate"] == 'Client-Assertion realm="ajwt"'
    # The same client, authenticating properly, passes.
    good = typed_assertion(key, client_id, None)
    passed = harness.request("POST", "/introspect", form=assertion_form(good, token="x"))
    assert passed.status_code == 200, passed.text


# ---------------------------------------------------------- privacy mode's secret


def test_every_worker_and_restart_gets_the_same_opaque_names_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/idp.db"
    first = IdPHarness(url)
    try:
        secret = first.run_call(first.idp.opaque_secret())
        assert len(secret) == 32
    finally:
        first.close()
    second = IdPHarness(url)  # another worker, or the same one restarted
    try:
        found: list[str | None] = []
        real = second.idp._secret_row

        async def racing(name: str) -> str | None:
            # The first read misses, as if another worker were inserting meanwhile: the
            # insert then conflicts, and the row that won is read.
            found.append(None if not found else await real(name))
            return found[-1]

        second.idp._secret_row = racing
        assert second.run_call(second.idp.opaque_secret()) == secret
        assert found[0] is None and found[1] is not None
    finally:
        second.close()
