"""The committed interoperability vectors are what the library produces and accepts."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from ajwt_core.checksum import compute_checksum, normalise_prompt, tool_source_digest
from ajwt_core.dpop import verify_proof
from ajwt_core.errors import AJWTError
from ajwt_core.keys import KeyResolver, derive_pop_key, jwk_thumbprint, load_public_jwk
from ajwt_core.ledger import verify_chain
from ajwt_core.tokens import decode_delegation_assertion, decode_intent_token
from tests.vectors.generate import HERE, build, render


def load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


@pytest.mark.parametrize("name", sorted(build()))
def test_committed_vectors_match_a_fresh_generation(name: str) -> None:
    assert (HERE / name).read_text() == render(build()[name]), (
        f"{name} is stale: run `.venv/bin/python -m tests.vectors.generate`"
    )


def outcome(call: Any) -> str:
    try:
        call()
    except AJWTError as exc:
        return exc.reason.value
    return "valid"


def test_checksum_vectors() -> None:
    vectors = load("checksums.json")
    for case in vectors["cases"]:
        assert compute_checksum(case["manifest"]) == case["checksum"]
        digest = hashlib.sha256(case["canonical_json"].encode()).hexdigest()
        assert "sha256:" + digest == case["checksum"]
    for case in vectors["prompt_normalisation"]:
        assert normalise_prompt(case["input"]) == case["normalised"]
    tool = vectors["tool_source"]
    assert tool_source_digest(tool["source"]) == tool["digest"]


def test_key_vectors() -> None:
    vectors = load("keys.json")
    example = vectors["rfc7638_example"]
    assert jwk_thumbprint(example["jwk"]) == example["thumbprint"]
    assert example["thumbprint"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    secret = bytes.fromhex(vectors["master_secret_hex"])
    for case in vectors["derived"]:
        key = derive_pop_key(secret, case["checksum"], case["agent_id"], case["epoch"], case["alg"])
        assert key.public_jwk == case["public_jwk"]
        assert key.thumbprint == case["jkt"] == jwk_thumbprint(case["public_jwk"])


def test_token_vectors() -> None:
    vectors = load("tokens.json")
    keys = KeyResolver.from_jwks(vectors["jwks"])
    results = {
        case["name"]: outcome(
            lambda c=case: decode_intent_token(
                c["token"],
                keys,
                issuer=vectors["issuer"],
                audience=vectors["audience"],
                now=vectors["now"],
            )
        )
        for case in vectors["cases"]
    }
    assert results == {case["name"]: case["expect"] for case in vectors["cases"]}
    valid = decode_intent_token(
        vectors["cases"][0]["token"],
        keys,
        issuer=vectors["issuer"],
        audience=vectors["audience"],
        now=vectors["now"],
    )
    assert valid.model_dump(exclude_none=True) == vectors["valid_claims"]
    assert valid.chain == vectors["valid_chain"]


def test_proof_vectors() -> None:
    vectors = load("proofs.json")
    for case in vectors["cases"]:
        request = case["request"]
        result = outcome(
            lambda c=case, r=request: verify_proof(
                c["proof"],
                method=r["method"],
                url=r["url"],
                token=vectors["access_token"],
                body=base64.b64decode(r["body_b64"]),
                expected_jkt=vectors["expected_jkt"],
                now=vectors["now"],
            )
        )
        assert result == case["expect"], case["name"]


def test_delegation_vector() -> None:
    vectors = load("delegation.json")
    key = load_public_jwk(vectors["delegator_jwk"], "EdDSA")
    claims = decode_delegation_assertion(
        vectors["assertion"], key, audience=vectors["audience"], now=vectors["now"]
    )
    assert claims.to_step == "classify"
    assert vectors["expect"] == "valid"


def test_ledger_vectors() -> None:
    vectors = load("ledger.json")
    report = verify_chain(vectors["ledger"]["entries"], run_id=vectors["ledger"]["run_id"])
    assert report.ok
    assert report.head == vectors["head"]
    tampered = verify_chain(vectors["tampered"]["ledger"]["entries"])
    assert not tampered.ok
    assert tampered.first_bad_seq == vectors["tampered"]["first_bad_seq"]
