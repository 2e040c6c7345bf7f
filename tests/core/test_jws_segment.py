"""The fast base64url segment check in ``ajwt_core._jws`` behaves exactly like pyjwt's own.

``ajwt_core._jws`` overrides ``PyJWS._decode_base64url_segment`` only for speed; every
segment pyjwt accepts must decode to the same bytes, and every segment it rejects must
be rejected with the same message. The strategies below aim at the edges: padding,
lengths ≡ 1 (mod 4), non-canonical trailing bits and bytes outside the alphabet.
"""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core import _jws
from ajwt_core.errors import InvalidToken, Reason
from ajwt_core.keys import SigningKeySet

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _outcome(check: object, segment: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", check(segment, "payload")  # type: ignore[operator]
    except jwt.DecodeError as error:
        return "error", str(error)


def _same_as_pyjwt(segment: bytes) -> None:
    ours = _outcome(_jws._PyJWS._decode_base64url_segment, segment)
    theirs = _outcome(jwt.PyJWS._decode_base64url_segment, segment)
    assert ours == theirs, segment


near_alphabet = st.sampled_from(list(ALPHABET) + list(b"=+/. !\x00\xff"))


@settings(max_examples=3000, deadline=None)
@given(st.lists(near_alphabet, max_size=24).map(bytes))
def test_agrees_with_pyjwt_near_the_alphabet(segment: bytes) -> None:
    _same_as_pyjwt(segment)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40), st.integers(min_value=0, max_value=3))
def test_agrees_with_pyjwt_on_encodings_and_their_padding(data: bytes, pad: int) -> None:
    encoded = base64.urlsafe_b64encode(data).rstrip(b"=")
    _same_as_pyjwt(encoded)
    _same_as_pyjwt(encoded + b"=" * pad)
    _same_as_pyjwt(base64.urlsafe_b64encode(data))
    if encoded:
        # Flip the last character: often a non-canonical encoding of the same bytes.
        last = ALPHABET[(ALPHABET.index(encoded[-1]) + 1) % 64]
        _same_as_pyjwt(encoded[:-1] + bytes([last]))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_agrees_with_pyjwt_on_arbitrary_bytes(segment: bytes) -> None:
    _same_as_pyjwt(segment)


@pytest.mark.parametrize(
    ("segment", "accepted"),
    [
        (b"", True),
        (b"QQ", True),  # "A"
        (b"QQ==", True),  # padded form some issuers send
        (b"QR", False),  # non-zero trailing bits: a second spelling of "A"
        (b"QQ===", False),  # too much padding
        (b"QQ=", False),  # padded but not a multiple of 4
        (b"Q", False),  # length 1 (mod 4) is never base64
        (b"!!!!", False),  # GHSA-hxm8-2xgr-2p9m: junk that lax decoders drop
        (b"QQ+/", False),  # standard alphabet, not base64url
        (b"Q\nQ=", False),  # whitespace that lax decoders skip
    ],
)
def test_known_segments(segment: bytes, accepted: bool) -> None:
    outcome, _ = _outcome(_jws._PyJWS._decode_base64url_segment, segment)
    assert (outcome == "ok") is accepted
    _same_as_pyjwt(segment)


def test_the_override_is_the_hook_pyjwt_calls() -> None:
    # If pyjwt renamed its hook, the override would silently stop being used (safe,
    # since pyjwt's own check then runs, but slow): fail here so someone looks.
    assert "_decode_base64url_segment" in vars(jwt.PyJWS)
    assert isinstance(_jws._JWS, _jws._PyJWS)


def test_a_token_with_junk_in_its_payload_is_refused() -> None:
    key = SigningKeySet.generate().active
    token = key.sign({"sub": "x"}, {"typ": "JWT"})
    header, payload, signature = token.split(".")
    for junk in ("!", "*", "~", " "):
        tampered = f"{header}.{payload[:5]}{junk}{payload[5:]}.{signature}"
        with pytest.raises(InvalidToken) as caught:
            _jws.verify_signature(
                tampered, key.verification_key(), key.alg, error=InvalidToken, what="token"
            )
        assert caught.value.reason is Reason.MALFORMED_TOKEN


def test_a_payload_that_is_not_utf8_json_is_refused() -> None:
    # json.loads would sniff and accept UTF-16/32; RFC 8259 §8.1 JSON is UTF-8, and the
    # intent-token path (pydantic's parser) agrees with the generic one.
    key = SigningKeySet.generate().active
    utf16 = json.dumps({"sub": "x"}).encode("utf-16")
    token = jwt.api_jws.encode(utf16, key._private, algorithm=key.alg, headers={"kid": key.kid})
    with pytest.raises(InvalidToken) as caught:
        _jws.verify_signature(token, key.verification_key(), key.alg, error=InvalidToken, what="t")
    assert caught.value.reason is Reason.MALFORMED_TOKEN
    utf8 = jwt.api_jws.encode(
        json.dumps({"sub": "x"}).encode(), key._private, algorithm=key.alg, headers={}
    )
    claims = _jws.verify_signature(
        utf8, key.verification_key(), key.alg, error=InvalidToken, what="t"
    )
    assert claims == {"sub": "x"}
