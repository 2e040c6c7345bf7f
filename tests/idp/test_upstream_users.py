"""Runs started by users of an upstream OpenID provider (issue 16): ID tokens and RFC 9068
access tokens as subject tokens, one ``sub`` per user across issuers, keys rotated at the
provider, the provider down. Each check with the attack it stops and the request it
still passes; the provider is ``tests.idp.fake_provider`` (the real one:
``tests/interop/test_upstream_oidc.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.db import RunRow
from ajwt_core.keys import SigningKeySet
from ajwt_core.tokens import ACCESS_TOKEN_TYPE_URI, ID_TOKEN_TYPE_URI, MAX_CLAIM_LENGTH
from tests.idp.fake_provider import CLIENT_ID, OP, FakeProvider
from tests.idp.support import BACKENDS, ISSUER, Client, IdPHarness, assert_refused, database_url

UPSTREAM = {"upstream_issuer": OP, "upstream_client_id": CLIENT_ID}


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdPHarness]:
    """An IdP with an upstream provider and, explicitly, local users too."""
    with database_url(request.param, tmp_path_factory.mktemp("up")) as url:
        running = IdPHarness(url, {**UPSTREAM, "local_users": True})
        try:
            yield running
        finally:
            running.close()


@pytest.fixture(scope="module")
def client(harness: IdPHarness) -> Client:
    return harness.new_client()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(harness: IdPHarness, clock: Clock) -> FakeProvider:
    """A fresh provider for each test, as the IdP's upstream (nothing fetched yet)."""
    fake = FakeProvider()
    harness.idp.upstream = fake.upstream(clock=clock, min_refresh=30, retry_interval=2)
    return fake


def start(harness: IdPHarness, client: Client, token: str, token_type: str | None = None) -> Any:
    body: dict[str, Any] = {"workflow_id": "vuln-patch", "subject_token": token}
    if token_type is not None:
        body["subject_token_type"] = token_type
    return harness.request("POST", "/runs", headers=client.basic, json=body)


def local_token(harness: IdPHarness, subject: str) -> str:
    answer = harness.request(
        "POST", "/admin/users/token", headers=harness.admin, json={"subject": subject}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def recorded_issuer(harness: IdPHarness, run_id: str) -> str | None:
    async def read() -> str | None:
        async with harness.idp.db.read() as session:
            row = (await session.execute(select(RunRow).where(RunRow.run_id == run_id))).scalar()
            assert row is not None
            return row.subject_issuer

    result: str | None = harness.run_call(read())
    return result


# ----------------------------------------------------------------- the two token kinds


def test_run_starts_from_an_upstream_id_token(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    started = start(harness, client, provider.id_token("alice"), ID_TOKEN_TYPE_URI)
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    assert started.json()["initiated_by"] == f"{OP}#alice"
    assert recorded_issuer(harness, run_id) == OP
    ledger = harness.request("GET", f"/runs/{run_id}/ledger", headers=client.basic).json()
    first = ledger["entries"][0]["data"]
    assert (first["initiated_by"], first["initiated_by_issuer"]) == (f"{OP}#alice", OP)


def test_the_runs_tokens_carry_the_namespaced_subject(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    started = start(harness, client, provider.id_token("alice"), ID_TOKEN_TYPE_URI)
    agent = harness.register_agent(client, "supervisor")
    form = harness.mint_form(agent, started.json()["run_id"])
    minted = harness.token_request(client, agent, form)
    assert minted.status_code == 200, minted.text
    claims = jwt.decode(minted.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == claims["intent"]["initiated_by"] == f"{OP}#alice"


def test_run_starts_from_an_upstream_access_token(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    # RFC 9068, for this IdP (the default audience is its issuer); the type may be sent
    # explicitly or left out.
    for token_type in (None, ACCESS_TOKEN_TYPE_URI):
        started = start(harness, client, provider.access_token(ISSUER, "bob"), token_type)
        assert started.status_code == 201, started.text
        assert started.json()["initiated_by"] == f"{OP}#bob"
        assert recorded_issuer(harness, started.json()["run_id"]) == OP


def test_local_alice_and_upstream_alice_are_two_users(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    local = start(harness, client, local_token(harness, "alice"))
    upstream = start(harness, client, provider.id_token("alice"), ID_TOKEN_TYPE_URI)
    assert local.status_code == upstream.status_code == 201
    assert local.json()["initiated_by"] == "alice"
    assert upstream.json()["initiated_by"] == f"{OP}#alice"
    assert recorded_issuer(harness, local.json()["run_id"]) == ISSUER


def test_a_local_user_cannot_take_an_upstream_users_subject(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    impostor = {"subject": f"{OP}#alice"}
    issued = harness.request("POST", "/admin/users/token", headers=harness.admin, json=impostor)
    assert_refused(issued, 400, Reason.INVALID_CLAIM, error="invalid_request")
    # A local token that has it anyway (issued before the upstream was configured).
    now = int(time.time())
    forged = harness.keys.active.sign(
        {"iss": ISSUER, "sub": f"{OP}#alice", "aud": ISSUER, "iat": now, "exp": now + 60},
        {"typ": "at+jwt"},
    )
    assert_refused(start(harness, client, forged), 400, Reason.INVALID_CLAIM)
    assert provider.requests == []  # one of the IdP's own keys signed it: a local token


@pytest.mark.parametrize(
    ("make", "token_type", "reason"),
    [
        # An ID token is for its client, not an access token for this IdP.
        (lambda p: p.id_token(), None, Reason.WRONG_TYPE),
        (lambda p: p.id_token(typ="JWT"), None, Reason.WRONG_AUDIENCE),
        # An access token is not an ID token (RFC 9068 §2.1).
        (lambda p: p.access_token(ISSUER), ID_TOKEN_TYPE_URI, Reason.WRONG_TYPE),
        # Another client's ID token, or an access token for another resource.
        (lambda p: p.id_token(aud="other-app"), ID_TOKEN_TYPE_URI, Reason.WRONG_AUDIENCE),
        (lambda p: p.id_token(azp="other-app"), ID_TOKEN_TYPE_URI, Reason.WRONG_AUDIENCE),
        (lambda p: p.access_token("https://api.other"), None, Reason.WRONG_AUDIENCE),
        (lambda p: p.id_token(iss="http://evil.test"), ID_TOKEN_TYPE_URI, Reason.WRONG_ISSUER),
        (lambda p: p.id_token(exp=int(time.time()) - 3600), ID_TOKEN_TYPE_URI, "token_expired"),
        (lambda p: p.id_token(kid="k-never"), ID_TOKEN_TYPE_URI, Reason.UNKNOWN_KID),
        # A local user token is an access token: not an upstream ID token.
        (lambda p: "local", ID_TOKEN_TYPE_URI, Reason.WRONG_TYPE),
        # The namespaced subject must fit the claim.
        (lambda p: p.id_token("x" * (MAX_CLAIM_LENGTH - 5)), ID_TOKEN_TYPE_URI, "invalid_claim"),
    ],
    ids=[
        "id-token-as-access-token",
        "typed-id-token-as-access-token",
        "access-token-as-id-token",
        "other-client",
        "other-azp",
        "other-resource",
        "other-issuer",
        "expired",
        "unpublished-key",
        "local-token-as-id-token",
        "subject-too-long",
    ],
)
def test_upstream_tokens_that_are_refused(
    harness: IdPHarness,
    client: Client,
    provider: FakeProvider,
    make: Any,
    token_type: str | None,
    reason: str,
) -> None:
    token = make(provider)
    if token == "local":
        token = local_token(harness, "alice")
    assert_refused(start(harness, client, token, token_type), 400, reason)


def test_an_unsupported_subject_token_type_is_refused(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    saml = "urn:ietf:params:oauth:token-type:saml2"
    refused = start(harness, client, provider.id_token(), saml)
    assert_refused(refused, 400, Reason.MALFORMED_REQUEST, error="invalid_request")
    assert "subject_token_type" in refused.json()["error_description"]


def test_a_malformed_token_never_reaches_the_provider(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    for token_type in (None, ID_TOKEN_TYPE_URI):
        assert_refused(start(harness, client, "a.b", token_type), 400, Reason.MALFORMED_TOKEN)
    assert provider.requests == []


# ----------------------------------------------------------- keys, rotation, outages


def test_a_key_rotated_at_the_provider_is_used_without_a_restart(
    harness: IdPHarness, client: Client, provider: FakeProvider, clock: Clock
) -> None:
    assert start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI).status_code == 201
    provider.rotate()
    # Within min_refresh of the last fetch the new kid is not looked up yet...
    assert_refused(
        start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI), 400, Reason.UNKNOWN_KID
    )
    clock.now += 30
    # ...then it is, once, and tokens of the old key still verify.
    assert start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI).status_code == 201
    old = provider.keys[1][0]
    assert start(harness, client, provider.id_token(kid=old), ID_TOKEN_TYPE_URI).status_code == 201
    assert provider.fetches() == 2


def test_made_up_kids_do_not_hammer_the_provider(
    harness: IdPHarness, client: Client, provider: FakeProvider
) -> None:
    for i in range(20):
        token = provider.id_token(kid=f"made-up-{i}")
        assert_refused(start(harness, client, token, ID_TOKEN_TYPE_URI), 400, Reason.UNKNOWN_KID)
    assert provider.fetches() == 1


def test_provider_down_is_503_until_it_answers(
    harness: IdPHarness, client: Client, provider: FakeProvider, clock: Clock
) -> None:
    provider.down = True
    down = start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI)
    assert_refused(down, 503, Reason.SERVICE_UNAVAILABLE, error="temporarily_unavailable")
    assert down.headers["Retry-After"] == "2"
    # Local users do not need the provider.
    assert start(harness, client, local_token(harness, "carol")).status_code == 201
    provider.down = False
    clock.now += 2
    assert start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI).status_code == 201
    # Down again: the keys already known still verify; a new key cannot be checked (503).
    provider.down = True
    assert start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI).status_code == 201
    provider.rotate()
    clock.now += 30
    again = start(harness, client, provider.id_token(), ID_TOKEN_TYPE_URI)
    assert_refused(again, 503, Reason.SERVICE_UNAVAILABLE)


# ------------------------------------------------------------------ configurations


@pytest.fixture(scope="module")
def upstream_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdPHarness]:
    """Defaults with an upstream: no local users, no ID tokens (no client id)."""
    with database_url("sqlite", tmp_path_factory.mktemp("only")) as url:
        running = IdPHarness(url, {"upstream_issuer": OP})
        try:
            yield running
        finally:
            running.close()


def test_local_users_are_off_by_default_with_an_upstream(upstream_only: IdPHarness) -> None:
    fake = FakeProvider()
    upstream_only.idp.upstream = fake.upstream()
    client = upstream_only.new_client()
    denied = upstream_only.request(
        "POST", "/admin/users/token", headers=upstream_only.admin, json={"subject": "alice"}
    )
    assert_refused(denied, 403, Reason.LOCAL_USERS_DISABLED)
    # A token signed by the IdP's own key is no user's token here.
    now = int(time.time())
    local = upstream_only.keys.active.sign(
        {"iss": ISSUER, "sub": "alice", "aud": ISSUER, "iat": now, "exp": now + 60},
        {"typ": "at+jwt"},
    )
    assert_refused(start(upstream_only, client, local), 400, Reason.UNKNOWN_KID)
    # The upstream's access tokens are accepted.
    assert start(upstream_only, client, fake.access_token(ISSUER)).status_code == 201


def test_id_tokens_need_a_configured_client_id(upstream_only: IdPHarness) -> None:
    fake = FakeProvider()
    upstream_only.idp.upstream = fake.upstream()
    client = upstream_only.new_client()
    refused = start(upstream_only, client, fake.id_token(), ID_TOKEN_TYPE_URI)
    assert_refused(refused, 400, Reason.WRONG_TYPE, error="invalid_request")
    assert "client id" in refused.json()["error_description"]


def test_bare_upstream_subjects_with_local_users_do_not_start(tmp_path: Any) -> None:
    settings = IdPSettings(
        issuer=ISSUER,
        db_url=f"sqlite:///{tmp_path}/idp.db",
        signing_keys=SigningKeySet.generate(),
        upstream_issuer=OP,
        upstream_subject_prefix="",
        local_users=True,
    )
    with pytest.raises(InvalidRequest) as info:
        create_app(settings)
    assert info.value.reason == Reason.MALFORMED_REQUEST


def test_bare_upstream_subjects_without_local_users(tmp_path: Any) -> None:
    harness = IdPHarness(
        f"sqlite:///{tmp_path}/idp.db", {**UPSTREAM, "upstream_subject_prefix": ""}
    )
    try:
        fake = FakeProvider()
        harness.idp.upstream = fake.upstream()
        client = harness.new_client()
        started = start(harness, client, fake.id_token("alice"), ID_TOKEN_TYPE_URI)
        assert started.status_code == 201, started.text
        assert started.json()["initiated_by"] == "alice"
        assert recorded_issuer(harness, started.json()["run_id"]) == OP
    finally:
        harness.close()


def test_the_idp_starts_and_serves_while_the_provider_is_down(tmp_path: Any) -> None:
    # create_app builds the real UpstreamProvider: nothing is fetched at start, and a
    # provider that refuses connections (nothing listens on port 9 here) is a 503.
    harness = IdPHarness(
        f"sqlite:///{tmp_path}/idp.db",
        {**UPSTREAM, "upstream_issuer": "http://127.0.0.1:9"},
    )
    try:
        client = harness.new_client()
        assert harness.request("GET", "/.well-known/jwks.json").status_code == 200
        token = FakeProvider("http://127.0.0.1:9").id_token()
        refused = start(harness, client, token, ID_TOKEN_TYPE_URI)
        assert_refused(refused, 503, Reason.SERVICE_UNAVAILABLE)
    finally:
        harness.close()
