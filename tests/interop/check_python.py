"""Check every committed vector with :mod:`tests.interop.spec` (no ``ajwt_core``).

    .venv/bin/python -m tests.interop.check_python      # prints what it checked

Each ``check_*`` function takes the parsed vector file, raises ``AssertionError`` naming
the case that disagrees, and returns how many values it compared.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.interop import spec

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def check_checksums(v: dict[str, Any]) -> int:
    count = 0
    for case in v["cases"]:
        canonical = spec.canonical_manifest(case["manifest"])
        assert canonical == case["canonical"], case["name"]
        assert spec.jcs(canonical).decode() == case["canonical_json"], case["name"]
        assert spec.manifest_checksum(case["manifest"]) == case["checksum"], case["name"]
        count += 3
    return count


def check_prompt_normalisation(v: dict[str, Any]) -> int:
    listed = {int(cp.removeprefix("U+"), 16) for cp in v["prompt_whitespace"]}
    assert listed == spec.WHITE_SPACE, "the vector's whitespace set is not the spec's"
    for case in v["prompt_normalisation"]:
        assert spec.normalise(case["input"]) == case["normalised"], case["name"]
    return 1 + len(v["prompt_normalisation"])


def check_input_digest(v: dict[str, Any]) -> int:
    case = v["input_digest"]
    text, used = spec.render(case["template"], case["values"])
    assert text == case["rendered"]
    assert used == case["used"]
    assert spec.jcs(used).decode() == case["canonical_json"]
    assert spec.input_digest(case["template"], case["values"]) == case["input_digest"]
    return 4


def check_tool_source(v: dict[str, Any]) -> int:
    for case in v["tool_source"]["cases"]:
        dump, digest = spec.tool_source(case["source"])
        assert dump == case["dump"], case["name"]
        assert digest == case["digest"], case["name"]
    return 2 * len(v["tool_source"]["cases"])


def check_keys(v: dict[str, Any]) -> int:
    example = v["rfc7638_example"]
    assert spec.thumbprint(example["jwk"]) == example["thumbprint"]
    master = bytes.fromhex(v["master_secret_hex"])
    for case in v["derived"]:
        name = f"{case['alg']} {case['agent_id']} epoch {case['epoch']}"
        okm = spec.pop_okm(master, case["checksum"], case["agent_id"], case["epoch"], case["alg"])
        assert okm.hex() == case["okm_hex"], name
        if case["alg"] == "ES256":
            assert f"{spec.p256_scalar(okm):064x}" == case["private_scalar_hex"], name
        assert spec.pop_public_jwk(okm, case["alg"]) == case["public_jwk"], name
        assert spec.thumbprint(case["public_jwk"]) == case["jkt"], name
    assert int(v["p256_order_hex"], 16) == spec.P256_ORDER
    for case in v["p256_reduction"]:
        scalar = spec.p256_scalar(bytes.fromhex(case["okm_hex"]))
        assert f"{scalar:064x}" == case["private_scalar_hex"], case["okm_hex"]
    return 1 + 4 * len(v["derived"]) + len(v["p256_reduction"])


def check_tokens(v: dict[str, Any]) -> int:
    def verify(token: str) -> dict[str, Any]:
        return spec.verify_intent_token(
            token,
            v["jwks"],
            issuer=v["issuer"],
            audience=v["audience"],
            now=v["now"],
            leeway=v["leeway"],
            max_lifetime=v["max_lifetime"],
        )

    for case in v["cases"]:
        result = spec.outcome(lambda c=case: verify(c["token"]))
        assert result == case["expect"], f"{case['name']}: {result}"
    valid = verify(v["cases"][0]["token"])
    assert valid == v["valid_claims"]
    assert spec.act_chain(valid["act"]) == v["valid_chain"]
    for key in v["jwks"]["keys"]:
        assert spec.thumbprint(key) == key["kid"], "the IdP kid is its RFC 7638 thumbprint"
    return len(v["cases"]) + 2 + len(v["jwks"]["keys"])


def check_proofs(v: dict[str, Any]) -> int:
    token = v["access_token"]
    assert spec.b64url(spec.hashlib.sha256(token.encode()).digest()) == v["ath"]
    for case in v["cases"]:
        request = case["request"]
        body = base64.b64decode(request["body_b64"])
        assert not body or spec.b64url(spec.hashlib.sha256(body).digest()) == v["bh"]
        result = spec.outcome(
            lambda c=case, r=request, b=body: spec.verify_proof(
                c["proof"],
                method=r["method"],
                url=r["url"],
                token=token,
                body=b,
                expected_jkt=v["expected_jkt"],
                now=v["now"],
                max_age=v["max_age"],
                future_leeway=v["future_leeway"],
                body_binding=r.get("body_binding", "if_body"),
            )
        )
        assert result == case["expect"], f"{case['name']}: {result}"
    return 1 + len(v["cases"])


def check_delegation(v: dict[str, Any]) -> int:
    for case in v["cases"]:
        assert spec.token_hash(case["parent_token"]) == case["parent_hash"], case["name"]
        assert spec.token_hash(case["assertion"]) == case["assertion_hash"], case["name"]
        result = spec.outcome(
            lambda c=case: spec.check_delegation(
                c["parent_token"],
                c["assertion"],
                delegator_jwk=v["delegator_jwk"],
                jwks=v["jwks"],
                issuer=v["issuer"],
                now=v["now"],
                leeway=v["leeway"],
                max_lifetime=v["max_lifetime"],
            )
        )
        assert result == case["expect"], f"{case['name']}: {result}"
    return 3 * len(v["cases"])


def check_ledger(v: dict[str, Any]) -> int:
    assert v["genesis"] == spec.GENESIS
    entries = v["ledger"]["entries"]
    for step, entry in zip(v["steps"], entries, strict=True):
        body = {name: entry[name] for name in spec.BODY}
        assert spec.jcs(body).decode() == step["body_jcs"], entry["seq"]
        assert (entry["prev_hash"].encode() + spec.jcs(body)).hex() == step["hash_input_hex"]
        assert spec.entry_hash(entry["prev_hash"], body) == entry["entry_hash"], entry["seq"]
    assert spec.verify_ledger(entries) == (None, v["head"])
    for case in v["tampered"]:
        first_bad, _ = spec.verify_ledger(case["ledger"]["entries"])
        assert first_bad == case["first_bad_seq"], case["name"]
    return 3 * len(entries) + 1 + len(v["tampered"])


def check_workflow(v: dict[str, Any]) -> int:
    for case in v["cases"]:
        canonical = spec.canonical_workflow(case["definition"])
        assert canonical == case["canonical"], case["name"]
        assert spec.jcs(canonical).decode() == case["canonical_json"], case["name"]
        assert spec.workflow_hash(case["definition"]) == case["workflow_hash"], case["name"]
    return 3 * len(v["cases"])


CHECKS: dict[str, tuple[str, Callable[[dict[str, Any]], int]]] = {
    "checksums": ("checksums.json", check_checksums),
    "prompt_normalisation": ("checksums.json", check_prompt_normalisation),
    "input_digest": ("checksums.json", check_input_digest),
    "tool_source": ("checksums.json", check_tool_source),
    "keys": ("keys.json", check_keys),
    "tokens": ("tokens.json", check_tokens),
    "proofs": ("proofs.json", check_proofs),
    "delegation": ("delegation.json", check_delegation),
    "ledger": ("ledger.json", check_ledger),
    "workflow": ("workflow.json", check_workflow),
}


def main() -> int:
    total = 0
    for name, (file, check) in CHECKS.items():
        count = check(load(file))
        print(f"{name}: {count} values agree")
        total += count
    print(f"all vectors agree with the spec ({total} values)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
