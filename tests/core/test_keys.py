"""Keys: RFC 7638 thumbprints, HKDF-derived PoP keys (DESIGN §4), IdP key sets, JWK loading."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core.canonical import jcs
from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.keys import (
    _THUMBPRINT_MEMBERS,
    KeyResolver,
    PopKey,
    SigningKey,
    SigningKeySet,
    b64url,
    derive_pop_key,
    jwk_thumbprint,
    key_epoch,
    load_public_jwk,
)

SECRET = bytes(range(32))
CHECKSUM = "sha256:" + "ab" * 32

# RFC 7638 §3.1: the example RSA key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YG"
        "jQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk"
        "t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnq"
        "DKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_thumbprint_matches_rfc7638_example() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_matches_rfc8037_ed25519_example() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_ignores_optional_members_and_order() -> None:
    key = PopKey.generate()
    jwk = key.public_jwk
    reordered = dict(reversed(list(jwk.items()))) | {"kid": "x", "use": "sig", "alg": "ES256"}
    assert jwk_thumbprint(reordered) == jwk_thumbprint(jwk) == key.thumbprint


def test_thumbprint_members_are_listed_in_jcs_order() -> None:
    # The direct spelling of the JCS text relies on the table's order.
    for members in _THUMBPRINT_MEMBERS.values():
        assert list(members) == sorted(members)


@settings(max_examples=300)
@given(
    st.lists(
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), min_size=1)
        | st.text(min_size=1, max_size=12),
        min_size=3,
        max_size=3,
    )
)
def test_thumbprint_is_the_hash_of_the_jcs_text_whatever_the_characters(
    values: list[str],
) -> None:
    jwk = dict(zip(("crv", "x", "y"), values, strict=True)) | {"kty": "EC"}
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    expected = b64url(hashlib.sha256(jcs(required)).digest()) if _jcs_ok(required) else None
    if expected is None:
        with pytest.raises(InvalidRequest):
            jwk_thumbprint(jwk)
    else:
        assert jwk_thumbprint(jwk) == expected


def _jcs_ok(value: dict[str, str]) -> bool:
    try:
        jcs(value)
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize(
    "jwk", [{}, {"kty": "XYZ"}, {"kty": "EC", "crv": "P-256", "x": "a"}, {"kty": "OKP", "x": 1}]
)
def test_thumbprint_refuses_incomplete_keys(jwk: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest) as info:
        jwk_thumbprint(jwk)
    assert info.value.reason == Reason.INVALID_KEY


# ------------------------------------------------------------------------ derivation


def test_derived_key_is_deterministic() -> None:
    a = derive_pop_key(SECRET, CHECKSUM, "planner", 7)
    b = derive_pop_key(SECRET, CHECKSUM, "planner", 7)
    assert a.thumbprint == b.thumbprint
    assert a.public_jwk == b.public_jwk


@pytest.mark.parametrize(
    ("secret", "checksum", "agent", "epoch"),
    [
        (bytes(32), CHECKSUM, "planner", 7),
        (SECRET, "sha256:" + "cd" * 32, "planner", 7),
        (SECRET, CHECKSUM, "patcher", 7),
        (SECRET, CHECKSUM, "planner", 8),
    ],
)
def test_derived_key_changes_with_every_input(
    secret: bytes, checksum: str, agent: str, epoch: int
) -> None:
    base = derive_pop_key(SECRET, CHECKSUM, "planner", 7).thumbprint
    assert derive_pop_key(secret, checksum, agent, epoch).thumbprint != base


def test_derived_ed25519_key() -> None:
    key = derive_pop_key(SECRET, CHECKSUM, "planner", 7, alg="EdDSA")
    assert key.alg == "EdDSA"
    assert key.thumbprint == derive_pop_key(SECRET, CHECKSUM, "planner", 7, "EdDSA").thumbprint


def test_derivation_refuses_short_secret() -> None:
    with pytest.raises(InvalidRequest) as info:
        derive_pop_key(b"short", CHECKSUM, "planner", 0)
    assert info.value.reason == Reason.INVALID_KEY


@pytest.mark.parametrize("checksum", ["ab" * 32, "sha256:xyz", "sha256:abcd", "md5:" + "ab" * 16])
def test_derivation_refuses_malformed_checksum(checksum: str) -> None:
    with pytest.raises(InvalidRequest):
        derive_pop_key(SECRET, checksum, "planner", 0)


def test_key_epoch_advances_with_lifetime() -> None:
    assert key_epoch(0) == key_epoch(86399) == 0
    assert key_epoch(86400) == 1
    assert key_epoch(3600, lifetime=3600) == 1


# -------------------------------------------------------------- private key hygiene


def test_private_key_cannot_be_pickled_or_copied() -> None:
    key = derive_pop_key(SECRET, CHECKSUM, "planner", 0)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_repr_and_public_jwk_hold_no_secret() -> None:
    key = PopKey.generate()
    assert "d" not in key.public_jwk
    assert repr(key) == f"PopKey(alg='ES256', jkt='{key.thumbprint}')"
    key.public_jwk["d"] = "mutated"
    assert "d" not in key.public_jwk  # the property returns a copy


# ------------------------------------------------------------------------- key sets


def test_signing_key_kid_is_its_thumbprint() -> None:
    key = SigningKey.generate()
    assert key.kid == jwk_thumbprint(key.public_jwk)
    assert key.public_jwk["use"] == "sig"
    assert key.public_jwk["alg"] == "ES256"


def test_rotation_keeps_old_key_published() -> None:
    keys = SigningKeySet.generate()
    old = keys.active
    new = keys.rotate()
    assert keys.active is new
    assert [k["kid"] for k in keys.jwks()["keys"]] == [old.kid, new.kid]
    resolver = keys.verification_keys()
    assert resolver.get(old.kid) is not None
    assert resolver.get(new.kid) is not None


def test_retire_drops_old_key_but_never_the_active_one() -> None:
    keys = SigningKeySet.generate()
    old = keys.active
    keys.rotate()
    keys.retire(old.kid)
    assert old.kid not in keys.verification_keys().kids()
    with pytest.raises(InvalidRequest):
        keys.retire(keys.active.kid)


def test_key_set_round_trips_through_json() -> None:
    keys = SigningKeySet.generate()
    keys.rotate("EdDSA")
    restored = SigningKeySet.from_json(keys.to_json())
    assert restored.jwks() == keys.jwks()


@pytest.mark.parametrize("text", ["", "{}", '{"keys": [1]}', '{"keys": ["not pem"]}', "[]"])
def test_malformed_key_file_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        SigningKeySet.from_json(text)
    assert info.value.reason == Reason.INVALID_KEY


def test_jwks_document_has_no_private_members() -> None:
    keys = SigningKeySet.generate()
    keys.rotate("EdDSA")
    text = json.dumps(keys.jwks())
    assert '"d"' not in text


def test_resolver_skips_unusable_jwks_entries() -> None:
    good = SigningKey.generate()
    doc = {
        "keys": [
            good.public_jwk,
            {"kid": "priv", **PopKey.generate().public_jwk, "d": "AAAA"},
            {"kid": "hmac", "kty": "oct", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "EC"},
            "garbage",
        ]
    }
    resolver = KeyResolver.from_jwks(doc)
    assert resolver.kids() == {good.kid}
    assert len(KeyResolver.from_jwks({"keys": "nope"})) == 0


# --------------------------------------------------------------------- JWK loading


def test_load_public_jwk_refuses_mismatched_key_type() -> None:
    with pytest.raises(InvalidRequest) as info:
        load_public_jwk(PopKey.generate("EdDSA").public_jwk, "ES256")
    assert info.value.reason == Reason.INVALID_KEY


def test_load_public_jwk_refuses_disallowed_alg() -> None:
    with pytest.raises(InvalidRequest) as info:
        load_public_jwk(PopKey.generate().public_jwk, "RS256")
    assert info.value.reason == Reason.ALG_NOT_ALLOWED


def test_load_public_jwk_refuses_point_not_on_curve() -> None:
    jwk = PopKey.generate().public_jwk
    other = PopKey.generate().public_jwk
    with pytest.raises(InvalidRequest) as info:
        load_public_jwk(jwk | {"y": other["y"]}, "ES256")
    assert info.value.reason == Reason.INVALID_KEY


# ------------------------------------------------------------ signing with cached headers


@pytest.mark.parametrize(
    "headers",
    [{"typ": "at+jwt"}, {"typ": "dpop+jwt", "jwk": "own"}, {"typ": "x+jwt", "kid": "own"}],
)
def test_eddsa_signing_is_byte_for_byte_pyjwt(headers: dict[str, Any]) -> None:
    # Ed25519 signatures are deterministic, so the reused header segment and the
    # serialised claims must give exactly jwt.encode's token, on the first and later calls.
    key = PopKey.generate("EdDSA")
    resolved = {
        name: key.public_jwk if value == "own" and name == "jwk" else value
        for name, value in headers.items()
    }
    if resolved.get("kid") == "own":
        resolved["kid"] = key.thumbprint
    claims = {"iss": "https://idp.example", "iat": 1700000000, "nested": {"a": [1, "é"]}}
    expected = jwt.encode(claims, key._private, algorithm="EdDSA", headers=resolved)
    assert key.sign(claims, resolved) == expected
    assert key.sign(claims, resolved) == expected  # served from the cached header


def test_es256_signing_verifies_with_stock_pyjwt() -> None:
    key = PopKey.generate()
    token = key.sign({"sub": "x", "n": 1}, {"typ": "dpop+jwt", "jwk": key.public_jwk})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "dpop+jwt", "jwk": key.public_jwk}
    assert jwt.decode(token, key.public_key, algorithms=["ES256"]) == {"sub": "x", "n": 1}


def test_a_foreign_jwk_or_kid_is_never_replaced_by_the_cached_header() -> None:
    key, other = PopKey.generate(), PopKey.generate()
    key.sign({"a": 1}, {"typ": "dpop+jwt", "jwk": key.public_jwk})  # fills the cache
    token = key.sign({"a": 1}, {"typ": "dpop+jwt", "jwk": other.public_jwk})
    assert jwt.get_unverified_header(token)["jwk"] == other.public_jwk
    token = key.sign({"a": 1}, {"typ": "dpop+jwt", "kid": "someone-else"})
    assert jwt.get_unverified_header(token)["kid"] == "someone-else"
    token = key.sign({"a": 1}, {"typ": "dpop+jwt", "jku": "https://x.example/jwks"})
    assert jwt.get_unverified_header(token)["jku"] == "https://x.example/jwks"
    assert jwt.get_unverified_header(key.sign({"a": 1}, {"typ": "other+jwt"}))["typ"] == (
        "other+jwt"
    )


def test_an_accepted_jwk_is_remembered_but_every_refusal_still_happens() -> None:
    key = PopKey.generate()
    jwk = key.public_jwk
    first = load_public_jwk(jwk, "ES256")
    assert load_public_jwk(dict(jwk), "ES256") is first  # same content: same key object
    # The cache never bypasses a check: a wrong algorithm, a private member or a
    # mismatched key type is refused even for a JWK whose public part was accepted.
    with pytest.raises(InvalidRequest) as caught:
        load_public_jwk(jwk, "ES256", allowed=("EdDSA",))
    assert caught.value.reason is Reason.ALG_NOT_ALLOWED
    with pytest.raises(InvalidRequest) as caught:
        load_public_jwk({**jwk, "d": "AAAA"}, "ES256")
    assert caught.value.reason is Reason.PRIVATE_KEY_IN_PROOF
    with pytest.raises(InvalidRequest) as caught:
        load_public_jwk(jwk, "EdDSA")
    assert caught.value.reason is Reason.INVALID_KEY
    # A member holding a list cannot be a cache key: the JWK is checked afresh.
    assert load_public_jwk({**jwk, "key_ops": ["verify"]}, "ES256").jkt == first.jkt
