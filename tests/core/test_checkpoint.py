"""Ledger checkpoints (``typ: ledger-checkpoint+jwt``): the IdP's signed word on a run's
ledger length and head, checked with its JWKS (DESIGN §8, §12)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from ajwt_core.errors import InvalidToken, Reason
from ajwt_core.keys import SigningKey, SigningKeySet
from ajwt_core.tokens import (
    CHECKPOINT_TYPE,
    CheckpointClaims,
    checkpoint_seq_unverified,
    decode_checkpoint,
    decode_intent_token,
    encode_checkpoint,
    encode_intent_token,
)
from tests.support import ISSUER, NOW, ClaimsFactory

HEAD = "sha256:" + "ab" * 32


def checkpoint_claims(**overrides: Any) -> CheckpointClaims:
    fields: dict[str, Any] = {"iss": ISSUER, "run_id": "run-1", "seq": 4, "head": HEAD, "iat": NOW}
    return CheckpointClaims(**(fields | overrides))


def decode(token: object, keys: SigningKeySet, **kw: Any) -> CheckpointClaims:
    options: dict[str, Any] = {"issuer": ISSUER, "run_id": "run-1", "now": NOW} | kw
    return decode_checkpoint(token, keys.verification_keys(), **options)


def refused(reason: Reason, token: object, keys: SigningKeySet, **kw: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        decode(token, keys, **kw)
    assert info.value.reason == reason, info.value
    return info.value


def test_genuine_checkpoint_verifies(idp_keys: SigningKeySet) -> None:
    token = encode_checkpoint(checkpoint_claims(), idp_keys.active)
    claims = decode(token, idp_keys)
    assert (claims.run_id, claims.seq, claims.head, claims.iat) == ("run-1", 4, HEAD, NOW)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == CHECKPOINT_TYPE and header["kid"] == idp_keys.active.kid


def test_checkpoint_does_not_expire(idp_keys: SigningKeySet) -> None:
    token = encode_checkpoint(checkpoint_claims(), idp_keys.active)
    assert decode(token, idp_keys, now=NOW + 10 * 365 * 24 * 3600).seq == 4


def test_rejects_checkpoint_of_another_run(idp_keys: SigningKeySet) -> None:
    token = encode_checkpoint(checkpoint_claims(run_id="run-2"), idp_keys.active)
    error = refused(Reason.WRONG_RUN, token, idp_keys)
    assert "run-2" in error.description


def test_rejects_checkpoint_signed_by_another_key(idp_keys: SigningKeySet) -> None:
    other = SigningKeySet.generate()
    token = encode_checkpoint(checkpoint_claims(), other.active)
    refused(Reason.UNKNOWN_KID, token, idp_keys)


def test_rejects_other_key_under_the_idps_kid(idp_keys: SigningKeySet) -> None:
    impostor = SigningKey.generate()
    forged = jwt.encode(
        checkpoint_claims().model_dump(),
        impostor._private,  # a forger's own key
        algorithm=impostor.alg,
        headers={"typ": CHECKPOINT_TYPE, "kid": idp_keys.active.kid},
    )
    refused(Reason.BAD_SIGNATURE, forged, idp_keys)


def test_rejects_an_intent_token_as_checkpoint_and_the_reverse(
    idp_keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    intent = encode_intent_token(make_claims(), idp_keys.active)
    refused(Reason.WRONG_TYPE, intent, idp_keys)
    checkpoint = encode_checkpoint(checkpoint_claims(), idp_keys.active)
    with pytest.raises(InvalidToken) as info:
        decode_intent_token(
            checkpoint, idp_keys.verification_keys(), issuer=ISSUER, audience=None, now=NOW
        )
    assert info.value.reason == Reason.WRONG_TYPE


def test_rejects_wrong_issuer(idp_keys: SigningKeySet) -> None:
    token = encode_checkpoint(checkpoint_claims(iss="https://evil.example"), idp_keys.active)
    refused(Reason.WRONG_ISSUER, token, idp_keys)


def test_rejects_checkpoint_from_the_future(idp_keys: SigningKeySet) -> None:
    token = encode_checkpoint(checkpoint_claims(iat=NOW + 3600), idp_keys.active)
    refused(Reason.ISSUED_IN_FUTURE, token, idp_keys)


def test_rejects_alg_none(idp_keys: SigningKeySet) -> None:
    unsigned = jwt.encode(
        checkpoint_claims().model_dump(),
        None,
        algorithm="none",
        headers={"typ": CHECKPOINT_TYPE, "kid": idp_keys.active.kid},
    )
    refused(Reason.ALG_NOT_ALLOWED, unsigned, idp_keys)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("seq", -1, Reason.INVALID_CLAIM),
        ("seq", "4", Reason.INVALID_CLAIM),
        ("head", "sha256:00", Reason.INVALID_CLAIM),
        ("run_id", None, Reason.MISSING_CLAIM),
    ],
)
def test_rejects_malformed_claims(
    idp_keys: SigningKeySet, field: str, value: Any, reason: Reason
) -> None:
    claims = checkpoint_claims().model_dump()
    if value is None:
        del claims[field]
    else:
        claims[field] = value
    token = idp_keys.active.sign(claims, {"typ": CHECKPOINT_TYPE})
    refused(reason, token, idp_keys)


@pytest.mark.parametrize("garbage", [None, "", "a.b", "x" * 9000, 42])
def test_rejects_what_is_not_a_token(idp_keys: SigningKeySet, garbage: object) -> None:
    with pytest.raises(InvalidToken) as info:
        decode(garbage, idp_keys)
    assert info.value.reason in {Reason.MALFORMED_TOKEN, Reason.TOKEN_TOO_LARGE}


def test_unverified_seq_is_for_ordering_only(idp_keys: SigningKeySet) -> None:
    token = encode_checkpoint(checkpoint_claims(seq=9), idp_keys.active)
    assert checkpoint_seq_unverified(token) == 9
    assert checkpoint_seq_unverified("a.e30.b") is None  # {} has no seq
    assert checkpoint_seq_unverified("a.!!.b") is None
