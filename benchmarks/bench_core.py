"""Core verification cost as ratios against peers measured in the same process.

    .venv/bin/python -m benchmarks.bench_core [--json FILE] [--number N] [--repeat N] [--quick]

Peers: one raw ES256 signature verification (cryptography) and pyjwt decoding the very
same token as a plain ES256 bearer JWT, on stock pyjwt and *fair* (with the base64url
segment check ``ajwt_core._jws`` applies to itself, ``benchmarks.peers.fair_pyjwt``:
stock pyjwt 2.15 checks each segment byte in a Python loop that A-JWT's decoders skip).
Targets: ``decode_intent_token`` ≤ 1.2× the fair pyjwt decode of the same token (the
peer doing the same work; the stock row is shown beside it); ``verify_proof`` ≤ 1.3×
one raw ES256 verify.

Two more rows explain the proof ratio: pyjwt's own JWS decode of the same proof, stock
and fair (the floor for any verifier built on pyjwt), and ``verify_proof`` against the
fair one.

Every row is timed in interleaved rounds (``benchmarks._timing.measure_side_by_side``,
as ``bench_compare`` does): each round runs every candidate ``number`` times, and each
row is its median round, so drift in machine load hits every row alike.
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
from benchmarks._timing import Measurement, compare, measure_side_by_side, render, to_json
from benchmarks.peers import fair_pyjwt

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


NUMBER, REPEAT = 300, 15
QUICK = {"number": 20, "repeat": 3}
RAW = "raw ES256 verify (cryptography)"
BEARER = "pyjwt ES256 bearer decode"
FAIR_BEARER = "pyjwt ES256 bearer decode, fair (segment check as ajwt's)"
DECODE = "ajwt decode_intent_token"
PROOF = "ajwt verify_proof"
PROOF_JWS = "pyjwt PyJWS.decode of the same proof"
FAIR_PROOF_JWS = "pyjwt PyJWS.decode of the same proof, fair"


def run(number: int = NUMBER, repeat: int = REPEAT) -> list[Measurement]:
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
    fair = fair_pyjwt()

    def raw_verify() -> None:
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))

    def pyjwt_bearer() -> None:
        jwt.decode(token, public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

    def fair_bearer() -> None:
        fair.decode(token, public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

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

    def fair_proof_jws() -> None:
        fair._jws.decode(proof, proof_key, algorithms=["ES256"])

    measured = measure_side_by_side(
        {
            RAW: raw_verify,
            BEARER: pyjwt_bearer,
            FAIR_BEARER: fair_bearer,
            DECODE: ajwt_decode,
            PROOF: ajwt_proof,
            PROOF_JWS: pyjwt_proof_jws,
            FAIR_PROOF_JWS: fair_proof_jws,
        },
        number=number,
        repeat=repeat,
    )
    m = {row.name: row for row in measured}

    def again(name: str) -> Measurement:  # the same timing, beside another peer
        return Measurement(name, m[name].per_call_us)

    return [
        m[RAW],
        m[BEARER],
        compare(m[FAIR_BEARER], m[BEARER]),
        compare(m[DECODE], m[BEARER]),
        compare(again(DECODE), m[FAIR_BEARER], 1.2),
        compare(m[PROOF], m[RAW], 1.3),
        compare(m[PROOF_JWS], m[RAW]),
        compare(m[FAIR_PROOF_JWS], m[RAW]),
        compare(again(PROOF), m[FAIR_PROOF_JWS]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, help=f"calls per round (default {NUMBER})")
    parser.add_argument("--repeat", type=int, help=f"interleaved rounds (default {REPEAT})")
    parser.add_argument("--quick", action="store_true", help="tiny counts, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    number, repeat = (QUICK["number"], QUICK["repeat"]) if args.quick else (NUMBER, REPEAT)
    number, repeat = args.number or number, args.repeat or repeat
    rows = run(number, repeat)
    print(render(f"Core verification (median of {repeat} interleaved rounds of {number})", rows))
    if args.json:
        args.json.write_text(to_json(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
