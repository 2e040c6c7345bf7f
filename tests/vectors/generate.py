"""Interoperability vectors: fixed keys, manifests, tokens, proofs and ledgers with their
expected checksums, thumbprints and verification results.

    .venv/bin/python -m tests.vectors.generate     # rewrite tests/vectors/*.json

Everything is deterministic: keys come from fixed seeds or the DESIGN §4 derivation, and
signatures are Ed25519 (RFC 8032 signatures are deterministic), so regenerating gives the
same bytes; ``test_vectors.py`` regenerates and compares, then checks every expected
result against the library. The format is described in ``docs/vectors.md``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from ajwt_core.canonical import jcs
from ajwt_core.checksum import normalise_prompt, tool_source_digest
from ajwt_core.demo.agents import reference_manifests
from ajwt_core.dpop import create_proof
from ajwt_core.errors import AJWTError
from ajwt_core.keys import SigningKey, derive_pop_key, jwk_thumbprint
from ajwt_core.ledger import EntryKind, Ledger, export_json
from ajwt_core.tokens import (
    AgentClaim,
    Confirmation,
    DelegationClaims,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    encode_delegation_assertion,
    encode_intent_token,
    token_hash,
)

HERE = Path(__file__).parent
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
ISSUER = "https://idp.example"
AUDIENCE = "https://api.example"
MASTER_SECRET = bytes(range(32))
IDP_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
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
TOOL_SOURCE = '''
def read_file(repo: str, path: str) -> str:
    """Read one file."""  # docstrings and comments do not count
    return fetch(f"/repos/{repo}/files/{path}")
'''


def idp_key() -> SigningKey:
    return SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(IDP_SEED))


def checksum_vectors() -> dict[str, Any]:
    cases = []
    for manifest in reference_manifests():
        canonical = manifest.canonical()
        cases.append(
            {
                "name": f"reference agent {manifest.agent_id}",
                "manifest": manifest.model_dump(mode="json"),
                "canonical_json": jcs(canonical).decode("utf-8"),
                "checksum": manifest.checksum(),
            }
        )
    return {
        "description": "DESIGN §3: checksum = 'sha256:' + hex(SHA-256(JCS(canonical manifest)))",
        "cases": cases,
        "prompt_normalisation": [
            {"input": raw, "normalised": normalise_prompt(raw)}
            for raw in ["  Plan the fix.\r\n\r\n   Read files.  \r\n", "a\rb\n\n\tc\t"]
        ],
        "tool_source": {"source": TOOL_SOURCE, "digest": tool_source_digest(TOOL_SOURCE)},
    }


def key_vectors() -> dict[str, Any]:
    derived = []
    for alg in ("ES256", "EdDSA"):
        for agent_id, epoch in (("planner", 0), ("planner", 1), ("patcher", 0)):
            checksum = "sha256:" + "ab" * 32
            key = derive_pop_key(MASTER_SECRET, checksum, agent_id, epoch, alg)  # type: ignore[arg-type]
            derived.append(
                {
                    "alg": alg,
                    "checksum": checksum,
                    "agent_id": agent_id,
                    "epoch": epoch,
                    "public_jwk": key.public_jwk,
                    "jkt": key.thumbprint,
                }
            )
    return {
        "description": "DESIGN §4 HKDF derivation and RFC 7638 thumbprints",
        "master_secret_hex": MASTER_SECRET.hex(),
        "rfc7638_example": {"jwk": RFC7638_JWK, "thumbprint": jwk_thumbprint(RFC7638_JWK)},
        "derived": derived,
    }


def _claims(agent_jkt: str, **overrides: Any) -> IntentTokenClaims:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user:alice",
        "client_id": "patcher-app",
        "scope": "repo:write",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 300,
        "jti": "vector-token-1",
        "cnf": Confirmation(jkt=agent_jkt),
        "act": build_act_chain(["supervisor", "planner", "classifier", "patcher"]),
        "agent": AgentClaim(
            id="patcher", checksum="sha256:" + "ab" * 32, registration_id="reg-1", version=1
        ),
        "intent": IntentClaim(
            id="intent-1",
            initiated_by="user:alice",
            workflow_id="vuln-patch",
            workflow_version=1,
            workflow_hash="sha256:" + "cd" * 32,
            run_id="run-1",
            step="patch",
            tool="create_pull_request",
            step_sequence_hash="sha256:" + "ef" * 32,
            delegation="sha256:" + "01" * 32,
        ),
    }
    base.update(overrides)
    return IntentTokenClaims(**base)


def _patcher_key() -> Any:
    return derive_pop_key(MASTER_SECRET, "sha256:" + "ab" * 32, "patcher", 0, "EdDSA")


def token_vectors() -> dict[str, Any]:
    key = idp_key()
    agent = _patcher_key()
    valid = encode_intent_token(_claims(agent.thumbprint), key)
    raw = _claims(agent.thumbprint).model_dump(exclude_none=True)
    other = SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)))
    header = valid.split(".")[0]
    forged_payload = encode_intent_token(_claims(agent.thumbprint, scope="repo:admin"), key)
    cases = [
        ("valid", valid, "valid"),
        ("wrong typ", key.sign(raw, {"typ": "JWT"}), "wrong_type"),
        (
            "alg none",
            jwt.encode(raw, None, algorithm="none", headers={"typ": "intent+jwt", "kid": key.kid}),
            "alg_not_allowed",
        ),
        ("unknown kid", other.sign(raw, {"typ": "intent+jwt"}), "unknown_kid"),
        (
            "payload swapped",
            ".".join([header, forged_payload.split(".")[1], valid.split(".")[2]]),
            "bad_signature",
        ),
        (
            "wrong audience",
            encode_intent_token(_claims(agent.thumbprint, aud="https://other.example"), key),
            "wrong_audience",
        ),
        (
            "expired",
            encode_intent_token(
                _claims(agent.thumbprint, iat=NOW - 1000, nbf=NOW - 1000, exp=NOW - 700), key
            ),
            "token_expired",
        ),
        (
            "lifetime over cap",
            key.sign(raw | {"exp": NOW + 301}, {"typ": "intent+jwt"}),
            "lifetime_too_long",
        ),
        (
            "jku header",
            key.sign(raw, {"typ": "intent+jwt", "jku": "https://evil.example/jwks"}),
            "forbidden_header",
        ),
    ]
    return {
        "description": "DESIGN §5.1 intent tokens, verified at 'now' with leeway 60 s",
        "now": NOW,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": {"keys": [key.public_jwk]},
        "cases": [{"name": n, "token": t, "expect": e} for n, t, e in cases],
        "valid_claims": jwt.decode(valid, options={"verify_signature": False}),
        "valid_chain": ["supervisor", "planner", "classifier", "patcher"],
    }


def proof_vectors(token: str) -> dict[str, Any]:
    agent = _patcher_key()
    url = "https://api.example/repos/acme/storefront/pulls"
    body = b'{"title":"Bump lodash to 4.17.21","head":"fix/lodash"}'

    def proof(**kw: Any) -> str:
        args: dict[str, Any] = {"method": "POST", "url": url, "token": token, "body": body}
        args.update(kw)
        return create_proof(agent, now=NOW, jti="vector-proof-1", **args)

    request = {"method": "POST", "url": url, "body_b64": base64.b64encode(body).decode()}
    cases = [
        ("valid", proof(), request, "valid"),
        ("query ignored", proof(url=url + "?draft=1"), request, "valid"),
        ("other method", proof(method="PUT"), request, "method_mismatch"),
        (
            "other url",
            proof(url="https://api.example/repos/acme/billing/pulls"),
            request,
            "url_mismatch",
        ),
        ("other body", proof(body=b"{}"), request, "bh_mismatch"),
        ("other token", proof(token="x.y.z"), request, "ath_mismatch"),
    ]
    return {
        "description": "RFC 9449 proofs with the A-JWT 'bh' claim, verified at 'now'",
        "now": NOW + 5,
        "access_token": token,
        "expected_jkt": agent.thumbprint,
        "cases": [{"name": n, "proof": p, "request": r, "expect": e} for n, p, r, e in cases],
    }


def delegation_vectors(token: str) -> dict[str, Any]:
    planner = derive_pop_key(MASTER_SECRET, "sha256:" + "ab" * 32, "planner", 0, "EdDSA")
    claims = DelegationClaims(
        iss="agent:planner",
        sub="agent:classifier",
        aud=ISSUER,
        intent_id="intent-1",
        run_id="run-1",
        from_step="plan",
        to_step="classify",
        scope="advisories:read",
        parent=token_hash(token),
        iat=NOW,
        exp=NOW + 60,
        jti="vector-delegation-1",
    )
    return {
        "description": "DESIGN §5.2 delegation assertion signed by the delegator's PoP key",
        "now": NOW + 5,
        "audience": ISSUER,
        "delegator_jwk": planner.public_jwk,
        "parent_token": token,
        "assertion": encode_delegation_assertion(claims, planner),
        "expect": "valid",
    }


def ledger_vectors() -> dict[str, Any]:
    ledger = Ledger("run-1")
    ledger.append(
        EntryKind.RUN_STARTED, {"initiated_by": "user:alice", "workflow_id": "vuln-patch"}, at=NOW
    )
    ledger.append(
        EntryKind.TOKEN_MINTED, {"jti": "t1", "agent": "supervisor", "step": "triage"}, at=NOW + 1
    )
    ledger.append(EntryKind.STEP_COMPLETED, {"step": "triage", "agent": "supervisor"}, at=NOW + 2)
    ledger.append(
        EntryKind.DELEGATION, {"from": "supervisor", "to": "planner", "to_step": "plan"}, at=NOW + 3
    )
    export = json.loads(export_json(ledger.entries))
    tampered = json.loads(export_json(ledger.entries))
    tampered["entries"][2]["data"]["step"] = "patch"
    return {
        "description": "DESIGN §8: entry_hash = SHA-256(prev_hash || JCS(entry body))",
        "ledger": export,
        "head": ledger.head,
        "tampered": {"ledger": tampered, "first_bad_seq": 2},
    }


def build() -> dict[str, dict[str, Any]]:
    tokens = token_vectors()
    valid_token = tokens["cases"][0]["token"]
    return {
        "checksums.json": checksum_vectors(),
        "keys.json": key_vectors(),
        "tokens.json": tokens,
        "proofs.json": proof_vectors(valid_token),
        "delegation.json": delegation_vectors(valid_token),
        "ledger.json": ledger_vectors(),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    for name, document in build().items():
        (HERE / name).write_text(render(document))
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    try:
        main()
    except AJWTError as exc:
        raise SystemExit(f"error: {exc}") from None
