"""Core verification cost as ratios against peers measured in the same process.

    .venv/bin/python -m benchmarks.bench_core [--json FILE] [--number N]

Peers: one raw ES256 signature verification (cryptography) and pyjwt decoding the very
same token as a plain ES256 bearer JWT. Targets (issue 2): ``decode_intent_token`` ≤ 1.2×
the pyjwt bearer decode; ``verify_proof`` ≤ 1.3× one raw ES256 verify.

Two more rows explain the proof ratio: pyjwt's own JWS decode of the same proof (the
floor for any verifier built on pyjwt, which checks every base64url character in
Python), and ``verify_proof`` against that floor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ajwt_core.dpop import create_proof, verify_proof
from ajwt_core.keys import PopKey, SigningKeySet, load_public_jwk
from ajwt_core.tokens import (
    AgentClaim,
    Confirmation,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    decode_intent_token,
    encode_intent_token,
)
from benchmarks._timing import Measurement, compare, measure, render, to_json

ISSUER, AUDIENCE = "https://idp.example", "https://api.example"
URL = "https://api.example/repos/acme/pulls"
BODY = b'{"title": "Bump lodash to 4.17.21", "head": "fix/cve", "base": "main"}'


def intent_token(keys: SigningKeySet, agent: PopKey, now: int) -> str:
    claims = IntentTokenClaims(
        iss=ISSUER,
        aud=AUDIENCE,
        sub="user:alice",
        client_id="patcher-app",
        scope="repo:write",
        iat=now,
        nbf=now,
        exp=now + 300,
        jti="b1f0c3",
        cnf=Confirmation(jkt=agent.thumbprint),
        act=build_act_chain(["supervisor", "planner", "classifier", "patcher"]),
        agent=AgentClaim(
            id="patcher", checksum="sha256:" + "a" * 64, registration_id="r", version=1
        ),
        intent=IntentClaim(
            id="i",
            initiated_by="user:alice",
            workflow_id="vuln-patch",
            workflow_version=1,
            workflow_hash="sha256:" + "b" * 64,
            run_id="run",
            step="patch",
            tool="create_pull_request",
            step_sequence_hash="sha256:" + "c" * 64,
            delegation="sha256:" + "d" * 64,
        ),
    )
    return encode_intent_token(claims, keys.active)


def run(number: int) -> list[Measurement]:
    now = int(time.time())
    keys = SigningKeySet.generate()
    agent = PopKey.generate()
    token = intent_token(keys, agent, now)
    resolver = keys.verification_keys()
    public = keys.active.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)

    signing_input, _, sig_b64 = token.rpartition(".")
    raw_sig = jwt.utils.base64url_decode(sig_b64)
    der = utils.encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )
    data = signing_input.encode()

    def raw_verify() -> None:
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))

    def pyjwt_bearer() -> None:
        jwt.decode(token, public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

    def ajwt_decode() -> None:
        decode_intent_token(token, resolver, issuer=ISSUER, audience=AUDIENCE)

    proof = create_proof(agent, "POST", URL, token=token, body=BODY)

    def ajwt_proof() -> None:
        verify_proof(
            proof, method="POST", url=URL, token=token, body=BODY, expected_jkt=agent.thumbprint
        )

    proof_key = load_public_jwk(agent.public_jwk, "ES256").key
    jws = jwt.PyJWS()

    def pyjwt_proof_jws() -> None:
        jws.decode(proof, proof_key, algorithms=["ES256"])

    raw = measure("raw ES256 verify (cryptography)", raw_verify, number=number)
    bearer = measure("pyjwt ES256 bearer decode", pyjwt_bearer, number=number)
    decode = measure("ajwt decode_intent_token", ajwt_decode, number=number)
    dpop = measure("ajwt verify_proof", ajwt_proof, number=number)
    proof_jws = measure("pyjwt PyJWS.decode of the same proof", pyjwt_proof_jws, number=number)
    dpop_vs_jws = Measurement(dpop.name, dpop.per_call_us)
    return [
        raw,
        bearer,
        compare(decode, bearer, 1.2),
        compare(dpop, raw, 1.3),
        compare(proof_jws, raw),
        compare(dpop_vs_jws, proof_jws),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per timing run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows = run(args.number)
    print(render("Core verification (median of 7 runs)", rows))
    if args.json:
        args.json.write_text(to_json(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
