"""The committed interoperability vectors are what the library produces and accepts.

``tests/interop`` checks the same files against the spec text with other libraries;
this module checks them against ``ajwt_core`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from ajwt_core.canonical import jcs, json_digest
from ajwt_core.checksum import (
    PROMPT_WHITESPACE,
    AgentManifest,
    compute_checksum,
    normalise_prompt,
    render_prompt,
    tool_source_digest,
)
from ajwt_core.dpop import BodyBinding, access_token_hash, body_hash, verify_proof
from ajwt_core.errors import AJWTError, InvalidGrant, Reason
from ajwt_core.keys import KeyResolver, derive_pop_key, jwk_thumbprint, load_public_jwk
from ajwt_core.ledger import GENESIS_HASH, verify_chain
from ajwt_core.tokens import decode_delegation_assertion, decode_intent_token, token_hash
from ajwt_core.workflow import Workflow, reference_workflow
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
        assert AgentManifest.model_validate(case["manifest"]).canonical() == case["canonical"]
        assert jcs(case["canonical"]).decode() == case["canonical_json"]
        digest = hashlib.sha256(case["canonical_json"].encode()).hexdigest()
        assert "sha256:" + digest == case["checksum"]


def test_prompt_normalisation_vectors() -> None:
    vectors = load("checksums.json")
    assert vectors["prompt_whitespace"] == [f"U+{ord(c):04X}" for c in PROMPT_WHITESPACE]
    for case in vectors["prompt_normalisation"]:
        assert normalise_prompt(case["input"]) == case["normalised"], case["name"]


def test_input_digest_vector() -> None:
    vector = load("checksums.json")["input_digest"]
    rendered = render_prompt(vector["template"], vector["variables"], vector["values"])
    assert rendered.text == vector["rendered"]
    assert rendered.input_digest == vector["input_digest"] == json_digest(vector["used"])


def test_tool_source_vectors() -> None:
    for case in load("checksums.json")["tool_source"]["cases"]:
        assert tool_source_digest(case["source"]) == case["digest"], case["name"]
        assert "sha256:" + hashlib.sha256(case["dump"].encode()).hexdigest() == case["digest"]


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

    def decode(token: str) -> Any:
        return decode_intent_token(
            token,
            keys,
            issuer=vectors["issuer"],
            audience=vectors["audience"],
            leeway=vectors["leeway"],
            max_lifetime=vectors["max_lifetime"],
            now=vectors["now"],
        )

    results = {
        case["name"]: outcome(lambda c=case: decode(c["token"])) for case in vectors["cases"]
    }
    assert results == {case["name"]: case["expect"] for case in vectors["cases"]}
    valid = decode(vectors["cases"][0]["token"])
    assert valid.model_dump(exclude_none=True) == vectors["valid_claims"]
    assert valid.chain == vectors["valid_chain"]


def test_proof_vectors() -> None:
    vectors = load("proofs.json")
    assert vectors["ath"] == access_token_hash(vectors["access_token"])
    for case in vectors["cases"]:
        request = case["request"]
        body = base64.b64decode(request["body_b64"])
        assert not body or body_hash(body) == vectors["bh"]
        result = outcome(
            lambda c=case, r=request, b=body: verify_proof(
                c["proof"],
                method=r["method"],
                url=r["url"],
                token=vectors["access_token"],
                body=b,
                body_binding=BodyBinding(r.get("body_binding", "if_body")),
                expected_jkt=vectors["expected_jkt"],
                now=vectors["now"],
                max_age=vectors["max_age"],
                future_leeway=vectors["future_leeway"],
            )
        )
        assert result == case["expect"], case["name"]


def test_query_ignored_proof_is_checked_against_a_url_with_a_query() -> None:
    case = next(c for c in load("proofs.json")["cases"] if c["name"].startswith("query"))
    assert "?" in case["request"]["url"]


def check_delegation(vectors: dict[str, Any], case: dict[str, Any]) -> None:
    """The IdP's token-exchange checks on a parent token and an assertion (DESIGN §5.2),
    in its order; the key is the delegator's registered key."""
    parent = decode_intent_token(
        case["parent_token"],
        KeyResolver.from_jwks(vectors["jwks"]),
        issuer=vectors["issuer"],
        audience=None,
        now=vectors["now"],
    )
    key = load_public_jwk(vectors["delegator_jwk"], "EdDSA")
    if parent.cnf.jkt != key.jkt:
        raise InvalidGrant(Reason.PARENT_TOKEN_MISMATCH, "parent not bound to the delegator key")
    assertion = decode_delegation_assertion(
        case["assertion"],
        key,
        audience=vectors["issuer"],
        leeway=vectors["leeway"],
        max_lifetime=vectors["max_lifetime"],
        now=vectors["now"],
    )
    if assertion.parent != token_hash(case["parent_token"]):
        raise InvalidGrant(Reason.PARENT_TOKEN_MISMATCH, "signed for another parent token")
    if (
        assertion.run_id != parent.intent.run_id
        or assertion.intent_id != parent.intent.id
        or assertion.from_step != parent.intent.step
        or assertion.iss != f"agent:{parent.agent.id}"
    ):
        raise InvalidGrant(Reason.INVALID_DELEGATION, "does not match the delegator's token")


def test_delegation_vectors() -> None:
    vectors = load("delegation.json")
    for case in vectors["cases"]:
        assert token_hash(case["parent_token"]) == case["parent_hash"]
        assert token_hash(case["assertion"]) == case["assertion_hash"]
        assert outcome(lambda c=case: check_delegation(vectors, c)) == case["expect"], case["name"]


def test_valid_delegation_parent_is_bound_to_the_delegator_key() -> None:
    vectors = load("delegation.json")
    valid = vectors["cases"][0]
    claims = json.loads(base64.urlsafe_b64decode(valid["parent_token"].split(".")[1] + "=="))
    assert valid["expect"] == "valid"
    assert claims["cnf"]["jkt"] == jwk_thumbprint(vectors["delegator_jwk"])


def test_ledger_vectors() -> None:
    vectors = load("ledger.json")
    assert vectors["genesis"] == GENESIS_HASH
    report = verify_chain(vectors["ledger"]["entries"], run_id=vectors["ledger"]["run_id"])
    assert report.ok
    assert report.head == vectors["head"]
    for step, entry in zip(vectors["steps"], vectors["ledger"]["entries"], strict=True):
        assert bytes.fromhex(step["hash_input_hex"]) == (
            entry["prev_hash"].encode() + step["body_jcs"].encode()
        )
        digest = hashlib.sha256(bytes.fromhex(step["hash_input_hex"])).hexdigest()
        assert "sha256:" + digest == step["entry_hash"] == entry["entry_hash"]
    for case in vectors["tampered"]:
        tampered = verify_chain(case["ledger"]["entries"])
        assert not tampered.ok, case["name"]
        assert tampered.first_bad_seq == case["first_bad_seq"], case["name"]


def test_workflow_vectors() -> None:
    vectors = load("workflow.json")
    for case in vectors["cases"]:
        workflow = Workflow.from_mapping(case["definition"])
        assert workflow.canonical() == case["canonical"], case["name"]
        assert jcs(case["canonical"]).decode() == case["canonical_json"]
        assert workflow.workflow_hash == case["workflow_hash"], case["name"]
    assert vectors["cases"][0]["workflow_hash"] == vectors["cases"][1]["workflow_hash"]


def test_reference_workflow_hash_does_not_change_when_the_format_grows() -> None:
    # DESIGN §6.3: members added to the format later are hashed only when they differ
    # from their default, so this hash must survive every extension of the format.
    assert reference_workflow().workflow_hash == (
        "sha256:e366af0163e4c3d6810854eaa38afba658da0e6887d92b96dca03e17d31332a6"
    )
    assert load("workflow.json")["cases"][0]["workflow_hash"] == reference_workflow().workflow_hash
