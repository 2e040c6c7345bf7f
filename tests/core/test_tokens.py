"""Intent tokens and delegation assertions (DESIGN §5.1, §5.2; RFC 8725 attacks).

Each negative test tampers exactly one thing in an otherwise valid token and asserts the
specific reason; ``test_untampered_token_passes`` shows the same token without it passes.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core.errors import AJWTError, InvalidGrant, InvalidScope, InvalidToken, Reason
from ajwt_core.keys import KeyResolver, PopKey, SigningKey, SigningKeySet
from ajwt_core.tokens import (
    MAX_CHAIN_DEPTH,
    MAX_TOKEN_BYTES,
    ActorClaim,
    DelegationClaims,
    act_chain_list,
    build_act_chain,
    decode_delegation_assertion,
    decode_intent_token,
    encode_delegation_assertion,
    encode_intent_token,
    extend_act_chain,
    format_scope,
    narrow_scope,
    parse_scope,
    token_hash,
)
from tests.support import AUDIENCE, ISSUER, NOW, ClaimsFactory


def decode(token: object, keys: SigningKeySet, **kw: Any) -> Any:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW + 10}
    options.update(kw)
    return decode_intent_token(token, keys.verification_keys(), **options)


def sign_raw(keys: SigningKeySet, claims: dict[str, Any], **header: Any) -> str:
    """Sign arbitrary claims/header with the real IdP key (bypassing encode's checks)."""
    return keys.active.sign(claims, {"typ": "at+jwt", **header})


def refused(reason: Reason, token: object, keys: SigningKeySet, **kw: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        decode(token, keys, **kw)
    assert info.value.reason == reason, info.value
    return info.value


# ----------------------------------------------------------------------------- positive


def test_untampered_token_passes(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    claims = make_claims()
    decoded = decode(encode_intent_token(claims, idp_keys.active), idp_keys)
    assert decoded == claims
    assert decoded.chain == ["supervisor", "planner"]
    assert decoded.delegation_depth == 1
    assert decoded.scopes == {"repo:read"}


def test_token_header_names_type_and_key(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    header = jwt.get_unverified_header(encode_intent_token(make_claims(), idp_keys.active))
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": idp_keys.active.kid}


def test_ed25519_signed_token_passes(make_claims: ClaimsFactory) -> None:
    keys = SigningKeySet.generate("EdDSA")
    assert decode(encode_intent_token(make_claims(), keys.active), keys).agent.id == "planner"


def test_token_within_clock_skew_passes(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = encode_intent_token(make_claims(), idp_keys.active)
    assert decode(token, idp_keys, now=NOW + 300 + 59).jti == "jti-1"
    assert decode(token, idp_keys, now=NOW - 59).jti == "jti-1"


def test_token_signed_by_rotated_out_but_published_key_passes(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = encode_intent_token(make_claims(), idp_keys.active)
    idp_keys.rotate()
    assert decode(token, idp_keys).jti == "jti-1"


def test_unknown_claims_are_ignored(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims().model_dump(exclude_none=True) | {"x-extension": [1, 2]}
    assert decode(sign_raw(idp_keys, raw), idp_keys).jti == "jti-1"


# ------------------------------------------------------------------- RFC 8725 attacks


def test_rejects_alg_none(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims().model_dump(exclude_none=True)
    token = jwt.encode(
        raw, None, algorithm="none", headers={"typ": "at+jwt", "kid": idp_keys.active.kid}
    )
    refused(Reason.ALG_NOT_ALLOWED, token, idp_keys)


# A message filter: pyjwt before 2.11 has no InsecureKeyLengthWarning class to name.
@pytest.mark.filterwarnings("ignore:The HMAC key is")
def test_rejects_hs256_signed_with_the_public_key(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    # pyjwt itself refuses PEM, DER and JWK text as HMAC secrets; the raw public point is
    # what a confused verifier that "uses the published key as the secret" could hold.
    public_point = idp_keys.active.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    token = jwt.encode(
        make_claims().model_dump(exclude_none=True),
        public_point,
        algorithm="HS256",
        headers={"typ": "at+jwt", "kid": idp_keys.active.kid},
    )
    refused(Reason.ALG_NOT_ALLOWED, token, idp_keys)


def test_rejects_alg_that_does_not_match_the_kid_key(make_claims: ClaimsFactory) -> None:
    # Header says ES256 but the kid names an Ed25519 key: the key fixes the algorithm.
    ed_keys = SigningKeySet.generate("EdDSA")
    es_key = SigningKey.generate("ES256")
    raw = make_claims().model_dump(exclude_none=True)
    token = jwt.encode(
        raw,
        serialization.load_pem_private_key(es_key.to_pem(), None),  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"typ": "at+jwt", "kid": ed_keys.active.kid},
    )
    refused(Reason.ALG_NOT_ALLOWED, token, ed_keys)


def test_rejects_unknown_kid(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    other = SigningKeySet.generate()
    refused(Reason.UNKNOWN_KID, encode_intent_token(make_claims(), other.active), idp_keys)


def test_rejects_missing_kid(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims().model_dump(exclude_none=True)
    pem = serialization.load_pem_private_key(idp_keys.active.to_pem(), None)
    token = jwt.encode(raw, pem, algorithm="ES256", headers={"typ": "at+jwt"})  # type: ignore[arg-type]
    refused(Reason.UNKNOWN_KID, token, idp_keys)


def test_rejects_key_signed_with_other_key_under_known_kid(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    attacker = SigningKey.generate()
    raw = make_claims().model_dump(exclude_none=True)
    pem = serialization.load_pem_private_key(attacker.to_pem(), None)
    token = jwt.encode(
        raw,
        pem,  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"typ": "at+jwt", "kid": idp_keys.active.kid},
    )
    refused(Reason.BAD_SIGNATURE, token, idp_keys)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("jwk", {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        ("x5c", ["MIIB"]),
    ],
)
def test_rejects_key_carrying_header(
    name: str, value: Any, idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = sign_raw(idp_keys, make_claims().model_dump(exclude_none=True), **{name: value})
    refused(Reason.FORBIDDEN_HEADER, token, idp_keys)


@pytest.mark.parametrize(
    "typ", ["JWT", "intent+jwt", "dpop+jwt", "delegation+jwt", "ledger-checkpoint+jwt", None]
)
def test_rejects_wrong_typ(
    typ: str | None, idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    raw = make_claims().model_dump(exclude_none=True)
    token = idp_keys.active.sign(raw, {} if typ is None else {"typ": typ})
    if typ is None:  # pyjwt adds typ: JWT by default
        assert jwt.get_unverified_header(token)["typ"] == "JWT"
    refused(Reason.WRONG_TYPE, token, idp_keys)


def test_accepts_typ_with_media_type_prefix(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    raw = make_claims().model_dump(exclude_none=True)
    token = idp_keys.active.sign(raw, {"typ": "application/AT+JWT"})
    assert decode(token, idp_keys).jti == "jti-1"


def test_rejects_delegation_assertion_as_intent_token(
    idp_keys: SigningKeySet, agent_key: PopKey
) -> None:
    refused(Reason.WRONG_TYPE, _assertion(agent_key), idp_keys)


def test_rejects_tampered_payload(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    honest = encode_intent_token(make_claims(), idp_keys.active)
    forged = encode_intent_token(make_claims(scope="repo:write"), idp_keys.active)
    header, _, signature = honest.split(".")
    spliced = ".".join([header, forged.split(".")[1], signature])
    refused(Reason.BAD_SIGNATURE, spliced, idp_keys)


# --------------------------------------------------------------------------- claims


def test_rejects_expired(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    token = encode_intent_token(make_claims(), idp_keys.active)
    refused(Reason.TOKEN_EXPIRED, token, idp_keys, now=NOW + 300 + 60)


def test_rejects_not_yet_valid(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    token = encode_intent_token(make_claims(nbf=NOW + 200, iat=NOW, exp=NOW + 300), idp_keys.active)
    refused(Reason.TOKEN_NOT_YET_VALID, token, idp_keys, now=NOW + 100)


def test_rejects_issued_in_future(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    token = encode_intent_token(make_claims(iat=NOW + 200), idp_keys.active)
    refused(Reason.ISSUED_IN_FUTURE, token, idp_keys)


def test_rejects_lifetime_over_cap(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims(exp=NOW + 301).model_dump(exclude_none=True)
    refused(Reason.LIFETIME_TOO_LONG, sign_raw(idp_keys, raw), idp_keys)


def test_lifetime_cap_is_configurable_down(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = encode_intent_token(make_claims(), idp_keys.active)
    refused(Reason.LIFETIME_TOO_LONG, token, idp_keys, max_lifetime=120)


def test_lifetime_cap_cannot_be_raised(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims(exp=NOW + 3600).model_dump(exclude_none=True)
    refused(Reason.LIFETIME_TOO_LONG, sign_raw(idp_keys, raw), idp_keys, max_lifetime=7200)


def test_encode_refuses_lifetime_over_cap(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    with pytest.raises(InvalidGrant) as info:
        encode_intent_token(make_claims(exp=NOW + 301), idp_keys.active)
    assert info.value.reason == Reason.LIFETIME_TOO_LONG


def test_rejects_wrong_issuer(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    token = encode_intent_token(make_claims(iss="https://evil.example"), idp_keys.active)
    refused(Reason.WRONG_ISSUER, token, idp_keys)


def test_rejects_other_audience(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    token = encode_intent_token(make_claims(aud="https://other-api.example"), idp_keys.active)
    refused(Reason.WRONG_AUDIENCE, token, idp_keys)


@pytest.mark.parametrize("claim", ["cnf", "act", "agent", "intent", "jti", "sub", "client_id"])
def test_rejects_missing_claim(
    claim: str, idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    raw = make_claims().model_dump(exclude_none=True)
    del raw[claim]
    refused(Reason.MISSING_CLAIM, sign_raw(idp_keys, raw), idp_keys)


def test_rejects_missing_exp(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims().model_dump(exclude_none=True)
    del raw["exp"]
    refused(Reason.MISSING_CLAIM, sign_raw(idp_keys, raw), idp_keys)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", str(NOW + 300)), ("iat", 1.5), ("scope", ["repo:read"]), ("aud", [AUDIENCE])],
)
def test_rejects_claim_of_wrong_type(
    claim: str, value: Any, idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    raw = make_claims().model_dump(exclude_none=True) | {claim: value}
    refused(Reason.INVALID_CLAIM, sign_raw(idp_keys, raw), idp_keys)


def test_rejects_acting_agent_not_on_top_of_chain(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = encode_intent_token(
        make_claims(act=build_act_chain(["planner", "supervisor"])), idp_keys.active
    )
    refused(Reason.INVALID_CLAIM, token, idp_keys)


def test_rejects_chain_longer_than_limit(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    chain = [f"a{i}" for i in range(MAX_CHAIN_DEPTH)] + ["planner"]
    token = encode_intent_token(make_claims(act=build_act_chain(chain)), idp_keys.active)
    refused(Reason.CHAIN_TOO_DEEP, token, idp_keys)


def test_rejects_deeply_nested_chain(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    act: dict[str, Any] = {"sub": "agent:planner"}
    for i in range(100):
        act = {"sub": f"agent:a{i}", "act": act}
    raw = make_claims().model_dump(exclude_none=True) | {"act": act}
    refused(Reason.CHAIN_TOO_DEEP, sign_raw(idp_keys, raw), idp_keys)


def test_rejects_json_nested_beyond_the_parser(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    raw = make_claims().model_dump(exclude_none=True) | {"ext": "NESTED"}
    token = sign_raw(idp_keys, raw)
    # Replace the payload with one that nests 2000 arrays (re-signed by the real key).
    import base64

    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==").replace(
        b'"NESTED"', b"[" * 2000 + b"]" * 2000
    )
    header = jwt.get_unverified_header(token)
    forged = jwt.api_jws.encode(
        payload,
        serialization.load_pem_private_key(idp_keys.active.to_pem(), None),  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"typ": header["typ"], "kid": header["kid"]},
    )
    refused(Reason.MALFORMED_TOKEN, forged, idp_keys)


def test_rejects_oversized_token(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> None:
    raw = make_claims().model_dump(exclude_none=True) | {"pad": "x" * MAX_TOKEN_BYTES}
    refused(Reason.TOKEN_TOO_LARGE, sign_raw(idp_keys, raw), idp_keys)


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c", "....", "é.é.é", "eyJ.eyJ.sig", None, 42, b"a.b.c"],
)
def test_rejects_malformed(garbage: object, idp_keys: SigningKeySet) -> None:
    with pytest.raises(InvalidToken) as info:
        decode(garbage, idp_keys)
    assert info.value.reason in {Reason.MALFORMED_TOKEN, Reason.WRONG_TYPE}


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=300)
    | st.from_regex(r"[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,60}")
)
def test_decoders_raise_only_ajwt_errors_on_arbitrary_strings(text: str) -> None:
    keys = KeyResolver()
    signer = PopKey.generate()
    with pytest.raises(AJWTError):
        decode_intent_token(text, keys, issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(AJWTError):
        decode_delegation_assertion(text, _vk(signer), audience=ISSUER)


# ---------------------------------------------------------------------- chains, scope


def test_act_chain_round_trip() -> None:
    act = build_act_chain(["supervisor", "planner", "patcher"])
    assert act.sub == "agent:patcher"
    assert act_chain_list(act) == ["supervisor", "planner", "patcher"]
    assert act_chain_list(extend_act_chain(act, "reviewer"))[-1] == "reviewer"
    assert act.model_dump(exclude_none=True) == {
        "sub": "agent:patcher",
        "act": {"sub": "agent:planner", "act": {"sub": "agent:supervisor"}},
    }


def test_empty_chain_is_refused() -> None:
    with pytest.raises(InvalidGrant):
        build_act_chain([])


def test_actor_claim_is_typed() -> None:
    assert ActorClaim(sub="agent:x").act is None


def test_scope_narrowing_grants_the_intersection() -> None:
    step, grant, delegator = {"repo:read", "repo:write"}, {"repo:read", "advisories:read"}, None
    assert narrow_scope(None, step, grant) == {"repo:read"}
    assert narrow_scope("repo:read", step, grant) == {"repo:read"}
    assert delegator is None


def test_scope_narrowing_refuses_inflation() -> None:
    with pytest.raises(InvalidScope) as info:
        narrow_scope("repo:read repo:admin", {"repo:read"}, {"repo:read", "repo:admin"})
    assert info.value.reason == Reason.SCOPE_EXCEEDED
    assert "repo:admin" in info.value.description


def test_scope_narrowing_respects_the_delegator() -> None:
    with pytest.raises(InvalidScope):
        narrow_scope("repo:write", {"repo:write"}, {"repo:write"}, "repo:read")


def test_scope_format_is_canonical() -> None:
    assert format_scope(parse_scope("b a  b")) == "a b"
    assert parse_scope(None) == frozenset()


# ------------------------------------------------------------------ delegation assertion


def _vk(key: PopKey) -> Any:
    from ajwt_core.keys import load_public_jwk

    return load_public_jwk(key.public_jwk, key.alg)


def _assertion(key: PopKey, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": "agent:planner",
        "sub": "agent:patcher",
        "aud": ISSUER,
        "intent_id": "intent-1",
        "run_id": "run-1",
        "from_step": "plan",
        "to_step": "patch",
        "scope": "repo:write",
        "parent": token_hash("parent.token.value"),
        "iat": NOW,
        "exp": NOW + 60,
        "jti": "d-1",
    }
    claims.update(overrides)
    return encode_delegation_assertion(DelegationClaims(**claims), key)


def refused_assertion(reason: Reason, token: str, key: PopKey, **kw: Any) -> None:
    options: dict[str, Any] = {"audience": ISSUER, "now": NOW + 5} | kw
    with pytest.raises(InvalidGrant) as info:
        decode_delegation_assertion(token, _vk(key), **options)
    assert info.value.reason == reason, info.value


def test_untampered_delegation_assertion_passes(agent_key: PopKey) -> None:
    claims = decode_delegation_assertion(
        _assertion(agent_key), _vk(agent_key), audience=ISSUER, now=NOW + 5
    )
    assert (claims.iss, claims.sub, claims.to_step) == ("agent:planner", "agent:patcher", "patch")
    header = jwt.get_unverified_header(_assertion(agent_key))
    assert header["typ"] == "delegation+jwt"
    assert "jwk" not in header  # the IdP uses the delegator's registered key, never one sent


def test_delegation_signed_by_another_agent_key_is_refused(agent_key: PopKey) -> None:
    refused_assertion(Reason.BAD_SIGNATURE, _assertion(PopKey.generate()), agent_key)


def test_delegation_for_another_idp_is_refused(agent_key: PopKey) -> None:
    refused_assertion(Reason.WRONG_AUDIENCE, _assertion(agent_key, aud="https://x"), agent_key)


def test_expired_delegation_is_refused(agent_key: PopKey) -> None:
    refused_assertion(Reason.TOKEN_EXPIRED, _assertion(agent_key), agent_key, now=NOW + 121)


def test_long_lived_delegation_is_refused(agent_key: PopKey) -> None:
    with pytest.raises(InvalidGrant) as info:
        _assertion(agent_key, exp=NOW + 3600)
    assert info.value.reason == Reason.LIFETIME_TOO_LONG
    token = agent_key.sign(
        {
            **jwt.decode(_assertion(agent_key), options={"verify_signature": False}),
            "exp": NOW + 3600,
        },
        {"typ": "delegation+jwt"},
    )
    refused_assertion(Reason.LIFETIME_TOO_LONG, token, agent_key)


def test_intent_token_is_refused_as_delegation(
    agent_key: PopKey, idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = encode_intent_token(make_claims(), idp_keys.active)
    refused_assertion(Reason.WRONG_TYPE, token, agent_key)


def test_delegation_missing_claim_is_refused(agent_key: PopKey) -> None:
    raw = jwt.decode(_assertion(agent_key), options={"verify_signature": False})
    del raw["parent"]
    token = agent_key.sign(raw, {"typ": "delegation+jwt"})
    refused_assertion(Reason.MISSING_CLAIM, token, agent_key)


def test_token_hash_is_prefixed_sha256() -> None:
    assert token_hash("a.b.c").startswith("sha256:")
    assert token_hash("a.b.c") != token_hash("a.b.d")


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",  # JSON, but not an object
        b"not json",
        "{}".encode("utf-16"),  # JSON only if the encoding were sniffed
    ],
)
def test_rejects_a_payload_that_is_not_a_utf8_json_object(
    idp_keys: SigningKeySet, payload: bytes
) -> None:
    forged = jwt.api_jws.encode(
        payload,
        serialization.load_pem_private_key(idp_keys.active.to_pem(), None),  # type: ignore[arg-type]
        algorithm="ES256",
        headers={"typ": "at+jwt", "kid": idp_keys.active.kid},
    )
    refused(Reason.MALFORMED_TOKEN, forged, idp_keys)
