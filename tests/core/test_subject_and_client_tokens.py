"""User (subject) tokens and RFC 7523 client assertions: each check with its attack."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ajwt_core.errors import InvalidClient, InvalidGrant, Reason
from ajwt_core.keys import UPSTREAM_ALGORITHMS, KeyResolver, PopKey, SigningKeySet, load_public_jwk
from ajwt_core.tokens import (
    decode_client_assertion,
    decode_id_token,
    decode_subject_token,
    encode_client_assertion,
    encode_intent_token,
    encode_user_token,
)
from tests.support import ISSUER, NOW, ClaimsFactory


def user_token(keys: SigningKeySet, **kw: Any) -> str:
    args: dict[str, Any] = {"issuer": ISSUER, "audience": ISSUER, "lifetime": 3600, "now": NOW}
    return encode_user_token("user:alice", keys.active, **(args | kw))


def decode_user(token: object, keys: SigningKeySet | KeyResolver, **kw: Any) -> Any:
    resolver = keys if isinstance(keys, KeyResolver) else keys.verification_keys()
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": ISSUER,
        "algorithms": UPSTREAM_ALGORITHMS,
        "now": NOW + 5,
    }
    return decode_subject_token(token, resolver, **(args | kw))


def test_local_user_token_passes(idp_keys: SigningKeySet) -> None:
    claims = decode_user(user_token(idp_keys), idp_keys)
    assert claims.sub == "user:alice"
    assert jwt.get_unverified_header(user_token(idp_keys))["typ"] == "at+jwt"


def test_upstream_rs256_token_passes() -> None:
    # An upstream OIDC provider signing with RSA (as most do), published in its JWKS.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    resolver = KeyResolver.from_jwks({"keys": [jwk | {"kid": "up-1"}]}, UPSTREAM_ALGORITHMS)
    token = jwt.encode(
        {"iss": ISSUER, "sub": "auth0|alice", "aud": [ISSUER, "x"], "iat": NOW, "exp": NOW + 60},
        private,
        algorithm="RS256",
        headers={"kid": "up-1"},  # typ: JWT, as upstream IdPs send
    )
    assert decode_user(token, resolver).sub == "auth0|alice"


def test_small_rsa_keys_are_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    resolver = KeyResolver.from_jwks({"keys": [jwk | {"kid": "weak"}]}, UPSTREAM_ALGORITHMS)
    assert len(resolver) == 0


def test_subject_token_from_other_issuer_is_refused(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_user(user_token(idp_keys, issuer="https://evil.example"), idp_keys)
    assert info.value.reason == Reason.WRONG_ISSUER


def test_subject_token_for_other_audience_is_refused(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_user(user_token(idp_keys, audience="https://other"), idp_keys)
    assert info.value.reason == Reason.WRONG_AUDIENCE


def test_expired_subject_token_is_refused(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_user(user_token(idp_keys), idp_keys, now=NOW + 3600 + 61)
    assert info.value.reason == Reason.TOKEN_EXPIRED


def test_subject_token_signed_by_unknown_key_is_refused(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_user(user_token(SigningKeySet.generate()), idp_keys)
    assert info.value.reason == Reason.UNKNOWN_KID


def test_other_token_types_are_not_subject_tokens(idp_keys: SigningKeySet) -> None:
    claims = {"iss": ISSUER, "sub": "u", "aud": ISSUER, "iat": NOW, "exp": NOW + 60}
    for typ in ("intent+jwt", "delegation+jwt", "ledger-checkpoint+jwt", "dpop+jwt"):
        with pytest.raises(InvalidGrant) as info:
            decode_user(idp_keys.active.sign(claims, {"typ": typ}), idp_keys)
        assert info.value.reason == Reason.WRONG_TYPE, typ


def test_an_intent_or_step_token_is_not_a_subject_token(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    # Both are at+jwt from this issuer, and a step token's audience is the IdP itself:
    # only its claims tell it from a user's token, and an agent never stands for the user.
    step_token = encode_intent_token(
        make_claims(aud=ISSUER, iat=NOW, nbf=NOW, exp=NOW + 60), idp_keys.active
    )
    with pytest.raises(InvalidGrant) as info:
        decode_user(step_token, idp_keys)
    assert info.value.reason == Reason.WRONG_TYPE


# ------------------------------------------------------------------------ ID tokens

OP = "https://op.example"


def id_token(keys: SigningKeySet, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    body = {"iss": OP, "sub": "alice", "aud": "app", "iat": NOW, "exp": NOW + 600} | claims
    # {"typ": None}: pyjwt then writes no typ at all (it adds "JWT" by default).
    header = {"typ": None} | (headers or {})
    return keys.active.sign({k: v for k, v in body.items() if v is not None}, header)


def decode_id(token: str, keys: SigningKeySet, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "issuer": OP,
        "client_id": "app",
        "algorithms": UPSTREAM_ALGORITHMS,
        "now": NOW + 5,
    }
    return decode_id_token(token, keys.verification_keys(), **(args | kw))


@pytest.mark.parametrize("typ", [None, "JWT", "application/jwt"])
def test_id_token_passes_without_typ_or_with_typ_jwt(idp_keys: SigningKeySet, typ: Any) -> None:
    # oidc-provider 9 sends no typ, 8 sends "JWT"; both are ID tokens (OIDC Core §2).
    token = id_token(idp_keys, {"typ": typ}, azp="app", nonce="n-1")
    assert jwt.get_unverified_header(token).get("typ") == typ
    assert decode_id(token, idp_keys).sub == "alice"


def test_id_token_for_several_audiences_passes_with_azp_naming_the_client(
    idp_keys: SigningKeySet,
) -> None:
    token = id_token(idp_keys, aud=["app", "https://api.example"], azp="app")
    assert decode_id(token, idp_keys).sub == "alice"


@pytest.mark.parametrize(
    ("headers", "claims", "reason"),
    [
        # An access token is not an ID token (RFC 9068 §2.1 types it apart).
        ({"typ": "at+jwt"}, {}, Reason.WRONG_TYPE),
        ({"typ": "intent+jwt"}, {}, Reason.WRONG_TYPE),
        ({"typ": 5}, {}, Reason.WRONG_TYPE),  # a typ that is no string is not "no typ"
        # Issued to another client of the same provider (its ID token replayed here).
        ({}, {"aud": "other-app"}, Reason.WRONG_AUDIENCE),
        ({}, {"azp": "other-app"}, Reason.WRONG_AUDIENCE),
        ({}, {"aud": ["app", "other-app"]}, Reason.MISSING_CLAIM),
        ({}, {"iss": "https://evil.example"}, Reason.WRONG_ISSUER),
        ({}, {"exp": NOW - 3600}, Reason.TOKEN_EXPIRED),
        ({}, {"iat": NOW + 3600, "exp": NOW + 4000}, Reason.TOKEN_NOT_YET_VALID),
        ({}, {"exp": NOW + 2 * 24 * 3600}, Reason.LIFETIME_TOO_LONG),
        ({}, {"sub": None}, Reason.MISSING_CLAIM),
        ({}, {"sub": "alice\x00"}, Reason.INVALID_CLAIM),
        ({"jwk": {"kty": "EC"}}, {}, Reason.FORBIDDEN_HEADER),
    ],
    ids=repr,
)
def test_id_token_refusals(
    idp_keys: SigningKeySet, headers: dict[str, Any], claims: dict[str, Any], reason: Reason
) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_id(id_token(idp_keys, headers, **claims), idp_keys)
    assert info.value.reason == reason


def test_an_access_token_is_refused_as_an_id_token_by_name(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_id(id_token(idp_keys, {"typ": "at+jwt"}), idp_keys)
    assert str(info.value) == "the ID token must have no typ or typ 'jwt'"


def test_id_token_signed_by_another_key_is_refused(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_id(id_token(SigningKeySet.generate()), idp_keys)
    assert info.value.reason == Reason.UNKNOWN_KID


def test_an_id_token_without_typ_is_not_an_access_token(idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidGrant) as info:
        decode_user(id_token(idp_keys, iss=ISSUER, aud=ISSUER), idp_keys)
    assert info.value.reason == Reason.WRONG_TYPE
    assert str(info.value) == "the subject token must have typ 'at+jwt'"


def test_id_token_doctests_pass() -> None:
    import doctest

    import ajwt_core.tokens

    finder = doctest.DocTestFinder()
    [test] = [t for t in finder.find(ajwt_core.tokens) if t.name.endswith(".decode_id_token")]
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.failures == 0 and test.examples


# ----------------------------------------------------------------- client assertions


def assertion(key: PopKey, **kw: Any) -> str:
    args: dict[str, Any] = {"audience": ISSUER + "/token", "jti": "ca-1", "now": NOW}
    return encode_client_assertion("patcher-app", key, **(args | kw))


def decode_assertion(token: str, key: PopKey, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "client_id": "patcher-app",
        "audience": ISSUER + "/token",
        "now": NOW + 1,
    }
    return decode_client_assertion(token, load_public_jwk(key.public_jwk, key.alg), **(args | kw))


def test_client_assertion_passes(agent_key: PopKey) -> None:
    assert decode_assertion(assertion(agent_key), agent_key).jti == "ca-1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"client_id": "other-app"}, Reason.INVALID_CLAIM),
        ({"audience": ISSUER + "/other"}, Reason.WRONG_AUDIENCE),
        ({"now": NOW + 200}, Reason.TOKEN_EXPIRED),
    ],
)
def test_client_assertion_checks(change: dict[str, Any], reason: Reason, agent_key: PopKey) -> None:
    with pytest.raises(InvalidClient) as info:
        decode_assertion(assertion(agent_key), agent_key, **change)
    assert info.value.reason == reason


def test_client_assertion_by_other_key_is_refused(agent_key: PopKey) -> None:
    with pytest.raises(InvalidClient) as info:
        decode_assertion(assertion(PopKey.generate()), agent_key)
    assert info.value.reason == Reason.BAD_SIGNATURE


def test_an_hour_long_client_assertion_passes_by_default(agent_key: PopKey) -> None:
    # authlib's private_key_jwt default (and most clients'): exp = iat + 3600.
    assert decode_assertion(assertion(agent_key, lifetime=3600), agent_key).jti == "ca-1"


def test_client_assertion_longer_than_the_bound_is_refused(agent_key: PopKey) -> None:
    with pytest.raises(InvalidClient) as info:
        decode_assertion(assertion(agent_key, lifetime=3601), agent_key)
    assert info.value.reason == Reason.LIFETIME_TOO_LONG
    with pytest.raises(InvalidClient) as info:
        decode_assertion(assertion(agent_key, lifetime=301), agent_key, max_lifetime=300)
    assert info.value.reason == Reason.LIFETIME_TOO_LONG
    assert decode_assertion(assertion(agent_key, lifetime=300), agent_key, max_lifetime=300)


def test_client_assertion_for_any_of_the_accepted_audiences_passes(agent_key: PopKey) -> None:
    token = assertion(agent_key, audience=ISSUER + "/introspect")
    accepted = [ISSUER, ISSUER + "/token", ISSUER + "/introspect"]
    assert decode_assertion(token, agent_key, audience=accepted).jti == "ca-1"
    with pytest.raises(InvalidClient) as info:
        decode_assertion(token, agent_key, audience=accepted[:2])
    assert info.value.reason == Reason.WRONG_AUDIENCE


def test_a_client_assertion_naming_other_servers_too_is_refused(agent_key: PopKey) -> None:
    claims = {"iss": "patcher-app", "sub": "patcher-app", "iat": NOW, "exp": NOW + 60}
    header = {"typ": "client-authentication+jwt"}
    for aud, passes in (
        ([ISSUER + "/token"], True),
        (["https://evil.example/token", ISSUER + "/token"], False),
        ([], False),
    ):
        token = agent_key.sign(claims | {"aud": aud, "jti": f"ca-{len(aud)}"}, header)
        if passes:
            assert decode_assertion(token, agent_key).jti == "ca-1"
            continue
        with pytest.raises(InvalidClient) as info:
            decode_assertion(token, agent_key)
        assert info.value.reason == Reason.WRONG_AUDIENCE


def test_rsa_private_key_pem_is_not_accepted_as_signing_key() -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    from ajwt_core.errors import InvalidRequest
    from ajwt_core.keys import SigningKey

    with pytest.raises(InvalidRequest):
        SigningKey.from_pem(pem)
