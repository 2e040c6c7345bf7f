"""RFC 9449 DPoP proofs with the A-JWT body hash (DESIGN §5.3, §7 steps 4–5).

Every negative test changes exactly one thing against ``GOOD`` and asserts the reason;
``test_untampered_proof_passes`` is the same request without the change.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core import _jws
from ajwt_core.dpop import (
    BodyBinding,
    access_token_hash,
    body_hash,
    create_proof,
    normalise_htu,
    verify_proof,
)
from ajwt_core.errors import AJWTError, InvalidDPoPProof, InvalidRequest, Reason, UseDPoPNonce
from ajwt_core.keys import PopKey
from ajwt_core.replay import InMemoryReplayCache
from tests.support import NOW

URL = "https://api.example/repos/acme/pulls"
TOKEN = "header.payload.signature"
BODY = b'{"title": "Bump lodash"}'


def good_request(key: PopKey) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": URL,
        "token": TOKEN,
        "body": BODY,
        "expected_jkt": key.thumbprint,
        "now": NOW + 1,
    }


def make(key: PopKey, **overrides: Any) -> str:
    args: dict[str, Any] = {"method": "POST", "url": URL, "token": TOKEN, "body": BODY}
    args.update(overrides)
    return create_proof(key, now=args.pop("now", NOW), **args)


def refused(reason: Reason, proof: object, key: PopKey, **overrides: Any) -> AJWTError:
    request = good_request(key) | overrides
    with pytest.raises((InvalidDPoPProof, UseDPoPNonce)) as info:
        verify_proof(proof, **request)
    assert info.value.reason == reason, info.value
    return info.value


def resign(key: PopKey, proof: str, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """Re-sign a proof's claims with edits (the attacker holds a key, not the agent's)."""
    raw = jwt.decode(proof, options={"verify_signature": False})
    raw.update(claims)
    for name, value in list(raw.items()):
        if value is None:
            del raw[name]
    return key.sign(raw, header or {"typ": "dpop+jwt", "jwk": key.public_jwk})


# ----------------------------------------------------------------------------- positive


def test_untampered_proof_passes(agent_key: PopKey) -> None:
    verified = verify_proof(make(agent_key), **good_request(agent_key))
    assert verified.jkt == agent_key.thumbprint
    assert (verified.htm, verified.htu) == ("POST", URL)
    assert "d" not in verified.jwk


def test_ed25519_proof_passes() -> None:
    key = PopKey.generate("EdDSA")
    assert verify_proof(make(key), **good_request(key)).jkt == key.thumbprint


def test_proof_claims_follow_rfc9449(agent_key: PopKey) -> None:
    proof = make(agent_key)
    header = jwt.get_unverified_header(proof)
    claims = jwt.decode(proof, options={"verify_signature": False})
    assert header["typ"] == "dpop+jwt"
    assert header["jwk"] == agent_key.public_jwk
    assert claims["htm"] == "POST"
    assert claims["htu"] == URL
    assert claims["ath"] == access_token_hash(TOKEN)
    assert claims["bh"] == body_hash(BODY)
    assert len(claims["jti"]) >= 16


def test_query_and_fragment_are_ignored(agent_key: PopKey) -> None:
    proof = make(agent_key, url=URL + "?draft=true#x")
    assert verify_proof(proof, **good_request(agent_key) | {"url": URL + "?page=2"})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HTTPS://API.EXAMPLE/repos", "https://api.example/repos"),
        ("https://api.example:443/repos", "https://api.example/repos"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1/x"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://api.example", "https://api.example/"),
    ],
)
def test_htu_normalisation(a: str, b: str) -> None:
    assert normalise_htu(a) == normalise_htu(b)


def test_htu_keeps_path_case_and_non_default_port() -> None:
    assert normalise_htu("https://a.example:8443/Repos") == "https://a.example:8443/Repos"
    assert normalise_htu("https://a.example/Repos") != normalise_htu("https://a.example/repos")


@pytest.mark.parametrize("url", ["ftp://x/y", "/relative", "https://", "not a url", "http://:80/"])
def test_htu_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        normalise_htu(url)


def test_get_without_body_binds_empty_body(agent_key: PopKey) -> None:
    proof = make(agent_key, method="GET", body=b"")
    assert verify_proof(proof, **good_request(agent_key) | {"method": "GET", "body": b""})


def test_fresh_nonce_passes(agent_key: PopKey) -> None:
    proof = make(agent_key, nonce="n-123")
    assert verify_proof(proof, **good_request(agent_key) | {"nonce": "n-123"}).nonce == "n-123"
    assert verify_proof(proof, **good_request(agent_key) | {"nonce": lambda n: n == "n-123"})


# ------------------------------------------------------------------------- binding


def test_rejects_proof_for_other_method(agent_key: PopKey) -> None:
    refused(Reason.METHOD_MISMATCH, make(agent_key), agent_key, method="DELETE")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example/repos/acme/files",
        "https://evil.example/repos/acme/pulls",
        "http://api.example/repos/acme/pulls",
        "https://api.example:8443/repos/acme/pulls",
    ],
)
def test_rejects_proof_for_other_url(url: str, agent_key: PopKey) -> None:
    refused(Reason.URL_MISMATCH, make(agent_key), agent_key, url=url)


def test_rejects_proof_for_other_token(agent_key: PopKey) -> None:
    refused(Reason.ACCESS_TOKEN_HASH_MISMATCH, make(agent_key), agent_key, token="other.token.x")


def test_rejects_proof_without_ath(agent_key: PopKey) -> None:
    refused(Reason.ACCESS_TOKEN_HASH_MISMATCH, make(agent_key, token=None), agent_key)


def test_rejects_proof_for_other_body(agent_key: PopKey) -> None:
    refused(Reason.BODY_HASH_MISMATCH, make(agent_key), agent_key, body=b'{"title": "evil"}')


def test_rejects_proof_without_bh(agent_key: PopKey) -> None:
    refused(Reason.BODY_HASH_MISSING, make(agent_key, body=None), agent_key)


# ------------------------------------------------------------------ body binding


@pytest.mark.parametrize("binding", list(BodyBinding))
def test_a_present_bh_is_checked_under_every_binding(
    agent_key: PopKey, binding: BodyBinding
) -> None:
    evil = b'{"title": "evil"}'
    refused(Reason.BODY_HASH_MISMATCH, make(agent_key), agent_key, body=evil, body_binding=binding)
    proof = make(agent_key)
    assert verify_proof(proof, **good_request(agent_key), body_binding=binding).jkt


def test_if_body_needs_bh_only_when_the_request_has_a_body(agent_key: PopKey) -> None:
    plain = make(agent_key, body=None)  # a plain RFC 9449 proof
    refused(Reason.BODY_HASH_MISSING, plain, agent_key, body_binding=BodyBinding.IF_BODY)
    get = make(agent_key, method="GET", body=None)
    request = good_request(agent_key) | {"method": "GET", "body": b""}
    assert verify_proof(get, **request, body_binding=BodyBinding.IF_BODY).htm == "GET"
    refused(Reason.BODY_HASH_MISSING, get, agent_key, method="GET", body=b"")


def test_optional_accepts_a_plain_rfc9449_proof_with_a_body(agent_key: PopKey) -> None:
    plain = make(agent_key, body=None)
    assert verify_proof(plain, **good_request(agent_key), body_binding=BodyBinding.OPTIONAL).jkt


def test_rejects_proof_by_other_key_than_bound(agent_key: PopKey) -> None:
    thief = PopKey.generate()
    refused(Reason.KEY_NOT_BOUND, make(thief), agent_key)


# -------------------------------------------------------------------------- timing


def test_rejects_old_proof(agent_key: PopKey) -> None:
    refused(Reason.PROOF_EXPIRED, make(agent_key), agent_key, now=NOW + 61)


def test_rejects_proof_from_the_future(agent_key: PopKey) -> None:
    refused(Reason.PROOF_FROM_FUTURE, make(agent_key), agent_key, now=NOW - 6)


# --------------------------------------------------------------------------- nonce


def test_requires_nonce_when_server_demands_one(agent_key: PopKey) -> None:
    err = refused(Reason.NONCE_REQUIRED, make(agent_key), agent_key, nonce="n-1")
    assert err.error == "use_dpop_nonce"


def test_rejects_stale_nonce(agent_key: PopKey) -> None:
    refused(Reason.NONCE_MISMATCH, make(agent_key, nonce="n-0"), agent_key, nonce="n-1")
    refused(Reason.NONCE_MISMATCH, make(agent_key, nonce="é"), agent_key, nonce="n-1")


# ---------------------------------------------------------------------------- replay


def test_rejects_replayed_proof(agent_key: PopKey) -> None:
    cache = InMemoryReplayCache()
    proof = make(agent_key)
    assert verify_proof(proof, **good_request(agent_key), replay_cache=cache)
    refused(Reason.REPLAYED, proof, agent_key, replay_cache=cache)


def test_replay_cache_does_not_confuse_keys(agent_key: PopKey) -> None:
    # The same jti under another key is another proof.
    cache = InMemoryReplayCache()
    other = PopKey.generate()
    proof_a = resign(agent_key, make(agent_key), jti="same")
    proof_b = resign(other, make(other), jti="same")
    assert verify_proof(proof_a, **good_request(agent_key), replay_cache=cache)
    assert verify_proof(proof_b, **good_request(other), replay_cache=cache)


# ------------------------------------------------------------------ header and key


def test_rejects_private_key_in_jwk(agent_key: PopKey) -> None:
    jwk = agent_key.public_jwk | {"d": "AAAA"}
    proof = resign(agent_key, make(agent_key), header={"typ": "dpop+jwt", "jwk": jwk})
    refused(Reason.PRIVATE_KEY_IN_PROOF, proof, agent_key)


def test_rejects_proof_without_jwk(agent_key: PopKey) -> None:
    proof = resign(agent_key, make(agent_key), header={"typ": "dpop+jwt"})
    refused(Reason.MALFORMED_PROOF, proof, agent_key)


def test_rejects_jwk_that_did_not_sign(agent_key: PopKey) -> None:
    # Attacker signs with its own key but claims the agent's public key in the header.
    attacker = PopKey.generate()
    proof = resign(
        attacker, make(agent_key), header={"typ": "dpop+jwt", "jwk": agent_key.public_jwk}
    )
    refused(Reason.BAD_SIGNATURE, proof, agent_key)


def test_a_known_proof_header_does_not_vouch_for_another_signer(agent_key: PopKey) -> None:
    # The header and its key are remembered by the header's segment; the signature is
    # still checked on every proof, so the agent's exact header signed by another key
    # is refused after the agent's own proofs were accepted.
    assert verify_proof(make(agent_key), **good_request(agent_key))
    attacker = PopKey.generate()
    proof = resign(
        attacker, make(agent_key), header={"typ": "dpop+jwt", "jwk": agent_key.public_jwk}
    )
    assert proof.partition(".")[0] == make(agent_key).partition(".")[0]
    refused(Reason.BAD_SIGNATURE, proof, agent_key)


def test_a_known_proof_header_is_checked_again_under_other_algorithms(agent_key: PopKey) -> None:
    assert verify_proof(make(agent_key), **good_request(agent_key))  # ES256 accepted
    refused(Reason.ALG_NOT_ALLOWED, make(agent_key), agent_key, algorithms=["EdDSA"])


def test_a_header_accepted_for_one_kind_of_token_is_refused_for_another(
    agent_key: PopKey,
) -> None:
    # The same header segment read as an access token (accepted, remembered) and then
    # as a proof or with other algorithms: each reading checks its own rules.
    token = agent_key.sign({"sub": "x"}, {"typ": "at+jwt", "jwk": agent_key.public_jwk})
    header = _jws.read_header(
        token,
        typ="at+jwt",
        algorithms=("ES256",),
        max_bytes=8192,
        error=InvalidDPoPProof,
        what="token",
        forbidden=frozenset(),
    )
    assert header["typ"] == "at+jwt"
    for rules, reason in (
        (
            {"typ": "dpop+jwt", "algorithms": ("ES256",), "forbidden": frozenset()},
            Reason.WRONG_TYPE,
        ),
        (
            {"typ": "at+jwt", "algorithms": ("EdDSA",), "forbidden": frozenset()},
            Reason.ALG_NOT_ALLOWED,
        ),
        (
            {"typ": "at+jwt", "algorithms": ("ES256",), "forbidden": {"jwk"}},
            Reason.FORBIDDEN_HEADER,
        ),
    ):
        with pytest.raises(InvalidDPoPProof) as info:
            _jws.read_header(token, max_bytes=8192, error=InvalidDPoPProof, what="x", **rules)
        assert info.value.reason == reason
    proof = resign(agent_key, token, header={"typ": "at+jwt", "jwk": agent_key.public_jwk})
    refused(Reason.WRONG_TYPE, proof, agent_key)


def test_rejects_jwk_of_wrong_type_for_alg(agent_key: PopKey) -> None:
    ed = PopKey.generate("EdDSA")
    proof = resign(agent_key, make(agent_key), header={"typ": "dpop+jwt", "jwk": ed.public_jwk})
    refused(Reason.INVALID_KEY, proof, agent_key)


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", None])
def test_rejects_wrong_typ(typ: str | None, agent_key: PopKey) -> None:
    header: dict[str, Any] = {"jwk": agent_key.public_jwk}
    if typ:
        header["typ"] = typ
    refused(Reason.WRONG_TYPE, resign(agent_key, make(agent_key), header=header), agent_key)


def test_rejects_alg_none(agent_key: PopKey) -> None:
    raw = jwt.decode(make(agent_key), options={"verify_signature": False})
    proof = jwt.encode(
        raw, None, algorithm="none", headers={"typ": "dpop+jwt", "jwk": agent_key.public_jwk}
    )
    refused(Reason.ALG_NOT_ALLOWED, proof, agent_key)


# A message filter: pyjwt before 2.11 has no InsecureKeyLengthWarning class to name.
@pytest.mark.filterwarnings("ignore:The HMAC key is")
def test_rejects_hmac_proof(agent_key: PopKey) -> None:
    raw = jwt.decode(make(agent_key), options={"verify_signature": False})
    proof = jwt.encode(
        raw, b"k" * 32, algorithm="HS256", headers={"typ": "dpop+jwt", "jwk": agent_key.public_jwk}
    )
    refused(Reason.ALG_NOT_ALLOWED, proof, agent_key)


@pytest.mark.parametrize("name", ["jku", "x5u", "x5c"])
def test_rejects_key_url_headers(name: str, agent_key: PopKey) -> None:
    header = {"typ": "dpop+jwt", "jwk": agent_key.public_jwk, name: "https://attacker.example"}
    refused(Reason.FORBIDDEN_HEADER, resign(agent_key, make(agent_key), header=header), agent_key)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("jti", None),
        ("jti", "x" * 129),
        ("jti", 7),
        ("htm", None),
        ("htu", None),
        ("iat", None),
        ("iat", "1750000000"),
        ("iat", True),
    ],
)
def test_rejects_missing_or_malformed_claims(claim: str, value: Any, agent_key: PopKey) -> None:
    refused(Reason.MALFORMED_PROOF, resign(agent_key, make(agent_key), **{claim: value}), agent_key)


def test_rejects_oversized_proof(agent_key: PopKey) -> None:
    refused(Reason.TOKEN_TOO_LARGE, resign(agent_key, make(agent_key), pad="x" * 4096), agent_key)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_verify_raises_only_ajwt_errors_on_arbitrary_strings(text: str) -> None:
    with pytest.raises(AJWTError):
        verify_proof(text, method="GET", url=URL, body=b"")


# ------------------------------------------------- htu in RFC 3986 normal form (issue 12)

EQUIVALENT = [
    ("https://api.example/repo%73", "https://api.example/repos"),  # unreserved: decoded
    ("https://api.example/%7Euser/%41-%5F", "https://api.example/~user/A-_"),
    ("https://api.example/caf%c3%a9", "https://api.example/caf%C3%A9"),  # hex case
    ("https://api.example/a/./b", "https://api.example/a/b"),
    ("https://api.example/a/x/../b", "https://api.example/a/b"),
    ("https://api.example/a/%2E%2E/b", "https://api.example/b"),
    ("https://api.example/..", "https://api.example/"),
    ("https://api.example:/x", "https://api.example/x"),  # empty port
]
DIFFERENT = [
    ("https://api.example/a%2Fb", "https://api.example/a/b"),  # %2F is data, not "/"
    ("https://api.example/a%2fb", "https://api.example/a/b"),
    ("https://api.example/a%20b", "https://api.example/a+b"),
    ("https://api.example/a%2541", "https://api.example/aA"),  # decoded once only
    ("https://api.example/a/", "https://api.example/a"),
]


def test_htu_is_compared_in_rfc_3986_normal_form() -> None:
    for a, b in EQUIVALENT:
        assert normalise_htu(a) == normalise_htu(b), (a, b)
    for a, b in DIFFERENT:
        assert normalise_htu(a) != normalise_htu(b), (a, b)


def test_htu_refuses_what_is_not_a_uri_instead_of_repairing_it() -> None:
    for url in [
        "https://api.example/READ ME.md",  # a literal space is not %20
        "https://api.example/café.md",
        "https://api.example/a%zzb",
        "https://api.example/a%2",
        'https://api.example/a"b',
        "https://api.example/a\\b",
        "https://api.example/a?q=x y",
        "https://user@api.example/a",
        "https://api.example:99999/a",
        "https://api example/a",
    ]:
        with pytest.raises(InvalidRequest):
            normalise_htu(url)


def test_proof_with_literal_space_is_refused_for_percent_20(agent_key: PopKey) -> None:
    url = "https://api.example/repos/READ%20ME"
    proof = resign(agent_key, make(agent_key), htu="https://api.example/repos/READ ME")
    refused(Reason.MALFORMED_PROOF, proof, agent_key, url=url)
    assert verify_proof(make(agent_key, url=url), **good_request(agent_key) | {"url": url})


def test_iat_is_a_numeric_date(agent_key: PopKey) -> None:
    # RFC 7519 §2: a NumericDate may be non-integer; JSON's NaN and Infinity are not dates.
    for iat in (NOW + 0.5, NOW - 30.25, float(NOW)):
        proof = resign(agent_key, make(agent_key), iat=iat)
        assert verify_proof(proof, **good_request(agent_key)).iat == iat
    for bad in (float("nan"), float("inf"), float("-inf"), [NOW], {"t": NOW}):
        refused(Reason.MALFORMED_PROOF, resign(agent_key, make(agent_key), iat=bad), agent_key)
    huge = resign(agent_key, make(agent_key), iat=10**400)
    refused(Reason.PROOF_FROM_FUTURE, huge, agent_key)
