"""A-JWT against its peers, each measured side by side in the same run.

    .venv/bin/python -m benchmarks.bench_compare [--quick] [--json FILE]

1. Verification of one request: one raw ES256 verify (cryptography), pyjwt decoding a
   plain ES256 Bearer access token, an RFC 9449 resource-server check written on pyjwt
   (``benchmarks.peers.DPoPPeer``: the same token and proofs as A-JWT's, remembering
   what A-JWT's verifier remembers), each on stock pyjwt and *fair* (with the base64url
   segment check ``ajwt_core._jws`` applies to itself), and ``Verifier.verify`` on an
   A-JWT request (intent token + a fresh DPoP proof per call): cold
   (``token_cache_size=0``; the proof-header, JWK, ``ath`` and ``htu`` caches stay hot,
   for A-JWT and the peer alike, since the agent and token are the same), warm (token
   cached), and *first contact* (a new agent key, token and URL on every request, so
   every cache is cold) beside the fair peer on the very same requests. Targets
   (issue 17): cold ≤ 1.05× the fair RFC 9449 peer, first contact ≤ 1.25× the fair peer
   on the same requests, warm ≤ 1.1× the fair Bearer decode.
2. Delegation: a 3-hop A-JWT (``act`` chain of 4 agents, plus its proof) against a
   4-block Biscuit (authority + 3 attenuation blocks; parse with the root key, then an
   authorizer with facts and a policy) and a 3-caveat macaroon. Target: A-JWT faster than
   Biscuit, warm and cold.
3. Client cost per tool call: the shim's ``httpx.Auth`` flow with a cached token against
   one raw ES256 signature (target ≤ 1.5×); a cold mint over loopback against the real
   IdP on SQLite, p50 / p99 (target p50 ≤ 3 ms), beside a client-credentials mint.
4. IdP mint throughput with 1 and 2 uvicorn workers (SQLite; PostgreSQL for several
   workers), driven by concurrent async shims for a fixed number of mints.
5. Verification cost against delegation depth 1, 2, 4, 8, with token sizes.

``Verifier.verify`` is a coroutine; with the in-memory replay store and no revocation
checker it never suspends, so it is driven to completion with ``send(None)`` (no event
loop in the timing: only the verifier's own work is measured). Proofs are single use,
so each verification gets a fresh one, signed before the timing starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
from biscuit_auth import AuthorizerBuilder, Biscuit, BiscuitBuilder, BlockBuilder, KeyPair
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from pymacaroons import Macaroon  # type: ignore[import-untyped]
from pymacaroons import Verifier as MacaroonVerifier

from ajwt_core.dpop import access_token_hash, body_hash, create_proof, verify_proof
from ajwt_core.errors import AJWTError
from ajwt_core.idp.admin import AdminClient
from ajwt_core.idp.keystore import load_signing_keys
from ajwt_core.keys import PopKey, SigningKey, SigningKeySet, b64url
from ajwt_core.rs import RoutePolicy, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_core.shim.context import Run
from ajwt_core.tokens import (
    AgentClaim,
    Confirmation,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    encode_intent_token,
)
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifest
from ajwt_demo.baseline import BaselineAuthServer
from ajwt_demo.stack import Stack, start_stack
from benchmarks._timing import (
    Measurement,
    as_dicts,
    compare,
    machine,
    machine_line,
    measure_side_by_side,
    render,
)
from benchmarks.peers import DPoPPeer, fair_pyjwt, htu_of

T = TypeVar("T")

ISSUER, AUDIENCE = "https://idp.example", "https://api.example"
REFERENCE_CHAIN = ["supervisor", "planner", "classifier", "patcher"]
MINT_TARGET_P50_MS = 3.0
# Default counts (about 2–3 minutes on a busy 2-core machine) and --quick ones.
NUMBER, REPEAT, MINTS, MINT_COUNT, CONCURRENCY = 150, 21, 300, 800, 16
DEFAULT = {
    "number": NUMBER,
    "repeat": REPEAT,
    "mints": MINTS,
    "count": MINT_COUNT,
    "concurrency": CONCURRENCY,
}
QUICK = {"number": 20, "repeat": 3, "mints": 30, "count": 64, "concurrency": 4}
POSTGRES_URL = os.environ.get(
    "AJWT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Call:
    """One resource-server request: what the proof is bound to and the route's policy."""

    method: str
    url: str
    body: bytes
    policy: RoutePolicy


LIST_REPOS = Call(
    "GET", AUDIENCE + "/repos", b"", RoutePolicy.of(scopes=["repo:read"], tools=["list_repos"])
)
CREATE_PULL = Call(
    "POST",
    AUDIENCE + "/repos/acme/storefront/pulls",
    b'{"title": "Bump lodash to 4.17.21", "head": "fix/cve-2021-23337", "base": "main"}',
    RoutePolicy.of(scopes=["repo:write"], tools=["create_pull_request"]),
)


# ---------------------------------------------------------------------------- results


@dataclass
class Latency:
    """A latency distribution over ``count`` round trips, in milliseconds."""

    name: str
    count: int
    p50_ms: float
    p99_ms: float
    peer: str | None = None
    ratio: float | None = None
    target_p50_ms: float | None = None

    @property
    def meets_target(self) -> bool | None:
        return None if self.target_p50_ms is None else self.p50_ms <= self.target_p50_ms

    @classmethod
    def of(cls, name: str, samples: list[float], **kw: Any) -> Latency:
        ordered = sorted(samples)
        p99 = ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]
        return cls(name, len(samples), statistics.median(samples) * 1e3, p99 * 1e3, **kw)


@dataclass
class Throughput:
    """IdP mints per second for one deployment (``skipped`` says why it did not run)."""

    label: str
    workers: int
    database: str
    mints: int = 0
    errors: int = 0
    seconds: float = 0.0
    per_second: float = 0.0
    p50_ms: float = 0.0
    #: CPU cores busy during the timed window: this (driver) process, the IdP processes.
    driver_cpu: float = 0.0
    idp_cpu: float | None = None
    skipped: str | None = None

    @property
    def idp_cpu_ms_per_mint(self) -> float | None:
        """IdP CPU time per mint: what a mint costs whatever else runs on the machine."""
        if self.idp_cpu is None or not self.mints:
            return None
        return self.idp_cpu * self.seconds / self.mints * 1e3


@dataclass
class DepthRow:
    """Verification cost of a token whose ``act`` chain has ``depth`` + 1 agents."""

    depth: int
    agents: int
    token_bytes: int
    cold_us: float
    warm_us: float


@dataclass
class DelegationResult:
    rows: list[Measurement]
    sizes: dict[str, int]


@dataclass
class ClientResult:
    rows: list[Measurement]
    mints: list[Latency]


@dataclass
class Report:
    machine: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    verification: list[Measurement] = field(default_factory=list)
    delegation: DelegationResult | None = None
    client: ClientResult | None = None
    throughput: list[Throughput] = field(default_factory=list)
    scaling: list[DepthRow] = field(default_factory=list)


# ---------------------------------------------------------------------------- helpers


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (in-memory stores) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("the coroutine suspended: it needs an event loop")


def intent_token(keys: SigningKeySet, agent: PopKey, chain: list[str], call: Call, now: int) -> str:
    """An intent token for the last agent of ``chain`` (RFC 8693 ``act`` from ``chain``)."""
    tool = next(iter(call.policy.tools or {"list_repos"}))
    return encode_intent_token(
        IntentTokenClaims(
            iss=ISSUER,
            aud=AUDIENCE,
            sub="user:alice",
            client_id="patcher-app",
            scope=" ".join(sorted(call.policy.scopes)),
            iat=now,
            nbf=now,
            exp=now + 300,
            jti=secrets.token_urlsafe(16),
            cnf=Confirmation(jkt=agent.thumbprint),
            act=build_act_chain(chain),
            agent=AgentClaim(
                id=chain[-1],
                checksum="sha256:" + secrets.token_hex(32),
                registration_id=secrets.token_urlsafe(16),
                version=1,
            ),
            intent=IntentClaim(
                id=secrets.token_urlsafe(16),
                initiated_by="user:alice",
                workflow_id="vuln-patch",
                workflow_version=1,
                workflow_hash="sha256:" + secrets.token_hex(32),
                run_id=secrets.token_urlsafe(16),
                step="patch" if len(chain) > 1 else "triage",
                tool=tool,
                step_sequence_hash="sha256:" + secrets.token_hex(32),
                delegation=("sha256:" + secrets.token_hex(32)) if len(chain) > 1 else None,
            ),
        ),
        keys.active,
    )


@dataclass(frozen=True)
class Request:
    """What one verification gets: the URL, the Authorization value and the proof."""

    url: str
    authorization: str
    proof: str


def same_token_requests(agent: PopKey, token: str, call: Call, count: int) -> list[Request]:
    """``count`` requests with one token, each with its own fresh proof."""
    authorization = f"DPoP {token}"
    return [
        Request(
            call.url,
            authorization,
            create_proof(agent, call.method, call.url, token=token, body=call.body),
        )
        for _ in range(count)
    ]


def first_contact_requests(keys: SigningKeySet, call: Call, count: int) -> list[Request]:
    """``count`` requests each from a new agent (new PoP key, new token bound to it) to a
    new URL (``?page=N``). The proofs are signed here without ``create_proof``, whose
    ``ath`` and ``htu`` helpers share their memo with the verifier: generating the
    requests must not warm the caches the row is meant to find cold."""
    now = int(time.time())
    requests = []
    for page in range(count):
        agent = PopKey.generate()
        token = intent_token(keys, agent, ["supervisor"], call, now)
        url = f"{call.url}?page={page}"
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": call.method,
            "htu": htu_of(url),
            "iat": now,
            "ath": b64url(hashlib.sha256(token.encode()).digest()),
            "bh": b64url(hashlib.sha256(call.body).digest()),
        }
        proof = agent.sign(claims, {"typ": "dpop+jwt", "jwk": agent.public_jwk})
        requests.append(Request(url, f"DPoP {token}", proof))
    return requests


def verify_each(verifier: Verifier, requests: list[Request], call: Call) -> Callable[[], None]:
    """One ``Verifier.verify`` per call, on the next of ``requests``."""
    pending = iter(requests)

    def verify_once() -> None:
        request = next(pending)
        run_now(
            verifier.verify(
                method=call.method,
                url=request.url,
                headers=[("authorization", request.authorization), ("dpop", request.proof)],
                body=call.body,
                policy=call.policy,
            )
        )

    return verify_once


def peer_each(peer: DPoPPeer, requests: list[Request], call: Call) -> Callable[[], None]:
    """One RFC 9449 peer check per call, on the next of ``requests``."""
    pending = iter(requests)
    scope = sorted(call.policy.scopes)[0]

    def verify_once() -> None:
        request = next(pending)
        peer.verify(
            method=call.method,
            url=request.url,
            authorization=request.authorization,
            proof=request.proof,
            scope=scope,
        )

    return verify_once


def ajwt_verifier(keys: SigningKeySet, *, cached: bool) -> Verifier:
    return Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=keys.verification_keys(),
        token_cache_size=10_000 if cached else 0,
    )


def verify_request(
    keys: SigningKeySet, agent: PopKey, token: str, call: Call, *, cached: bool, calls: int
) -> Callable[[], None]:
    """One ``Verifier.verify`` per call, each with its own fresh proof (``calls`` + 1 of
    them are signed now, outside any timing)."""
    requests = same_token_requests(agent, token, call, calls + 1)  # + the warm-up call
    return verify_each(ajwt_verifier(keys, cached=cached), requests, call)


def raw_es256_verifier(token: str, public: ec.EllipticCurvePublicKey) -> Callable[[], None]:
    """One ES256 signature check of ``token`` with cryptography, nothing else."""
    signing_input, _, signature = token.rpartition(".")
    raw = jwt.utils.base64url_decode(signature)
    der = utils.encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    data = signing_input.encode()

    def verify() -> None:
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))

    return verify


def bearer_token(key: SigningKey, now: int) -> str:
    """A client-credentials access token as ``ajwt_demo.baseline`` issues it (RFC 9068)."""
    claims = {
        "iss": ISSUER,
        "sub": "patcher-app",
        "client_id": "patcher-app",
        "aud": AUDIENCE,
        "scope": "repo:read repo:write advisories:read",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
    }
    return key.sign(claims, {"typ": "at+jwt"})


# ------------------------------------------------------------------ 1. verification


RAW_VERIFY = "raw ES256 verify (cryptography)"
BEARER = "pyjwt ES256 Bearer decode"
FAIR_BEARER = "pyjwt ES256 Bearer decode, fair (segment check as ajwt's)"
PEER = "RFC 9449 peer on pyjwt (token + proof)"
FAIR_PEER = "RFC 9449 peer on pyjwt, fair (segment check as ajwt's)"
COLD = "A-JWT Verifier.verify, cold (token + proof)"
WARM = "A-JWT Verifier.verify, warm (token cached, proof checked)"
FIRST_PEER = "RFC 9449 peer, fair, first contact (new key, token, URL per request)"
FIRST = "A-JWT Verifier.verify, first contact (new key, token, URL per request)"
#: Issue 17: A-JWT against peers that do the same work.
COLD_TARGET, FIRST_CONTACT_TARGET, WARM_TARGET = 1.05, 1.25, 1.1


def run_verification(number: int = NUMBER, repeat: int = REPEAT) -> list[Measurement]:
    """Raw ES256 verify; pyjwt Bearer decode and the RFC 9449 peer, stock and fair; A-JWT
    ``Verifier.verify`` cold, warm and at first contact, each beside its peer."""
    now = int(time.time())
    keys = SigningKeySet.generate()
    agent = PopKey.generate()
    token = intent_token(keys, agent, ["supervisor"], LIST_REPOS, now)

    bearer_key = SigningKey.generate()
    bearer = bearer_token(bearer_key, now)
    public = bearer_key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    fair = fair_pyjwt()

    def pyjwt_decode() -> None:
        jwt.decode(bearer, public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

    def fair_decode() -> None:
        fair.decode(bearer, public, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)

    def peer(fair: bool) -> DPoPPeer:
        return DPoPPeer(issuer=ISSUER, audience=AUDIENCE, key=keys.active.public_key, fair=fair)

    calls = number * repeat + 1  # + the warm-up call
    first_contact = first_contact_requests(keys, LIST_REPOS, calls)
    measured = measure_side_by_side(
        {
            RAW_VERIFY: raw_es256_verifier(bearer, public),
            BEARER: pyjwt_decode,
            FAIR_BEARER: fair_decode,
            PEER: peer_each(
                peer(False), same_token_requests(agent, token, LIST_REPOS, calls), LIST_REPOS
            ),
            FAIR_PEER: peer_each(
                peer(True), same_token_requests(agent, token, LIST_REPOS, calls), LIST_REPOS
            ),
            COLD: verify_request(keys, agent, token, LIST_REPOS, cached=False, calls=calls),
            WARM: verify_request(keys, agent, token, LIST_REPOS, cached=True, calls=calls),
            FIRST_PEER: peer_each(peer(True), first_contact, LIST_REPOS),
            FIRST: verify_each(ajwt_verifier(keys, cached=False), first_contact, LIST_REPOS),
        },
        number=number,
        repeat=repeat,
    )
    m = {row.name: row for row in measured}

    def again(name: str) -> Measurement:  # the same timing, beside another peer
        return Measurement(name, m[name].per_call_us)

    return [
        m[RAW_VERIFY],
        compare(m[BEARER], m[RAW_VERIFY]),
        compare(m[FAIR_BEARER], m[RAW_VERIFY]),
        compare(m[PEER], m[BEARER]),
        compare(m[FAIR_PEER], m[FAIR_BEARER]),
        compare(m[COLD], m[BEARER]),
        compare(again(COLD), m[FAIR_PEER], COLD_TARGET),
        compare(m[WARM], m[BEARER]),
        compare(again(WARM), m[FAIR_BEARER], WARM_TARGET),
        compare(m[FIRST_PEER], m[FAIR_PEER]),
        compare(m[FIRST], m[BEARER]),
        compare(again(FIRST), m[FIRST_PEER], FIRST_CONTACT_TARGET),
    ]


# -------------------------------------------------------------------- 2. delegation


def biscuit_peer(hops: int) -> tuple[str, Callable[[], None]]:
    """A Biscuit with an authority block and ``hops`` attenuation blocks, and its check.

    The verifier parses the token with the root public key (every block's signature)
    and authorizes it with request facts, the current time and an allow policy.
    """
    root = KeyPair()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=300)
    builder = BiscuitBuilder(
        """
        user({user});
        right("repo:read");
        right("repo:write");
        workflow("vuln-patch");
        agent({agent});
        check if time($time), $time < {expires};
        """,
        {"user": "user:alice", "agent": REFERENCE_CHAIN[0], "expires": expires},
    )
    token = builder.build(root.private_key)
    for delegator, delegate in itertools.pairwise(REFERENCE_CHAIN[: hops + 1]):
        token = token.append(
            BlockBuilder(
                """
                delegated({from}, {to});
                check if operation($op), ["create_pull_request", "read_file",
                    "query_advisories"].contains($op);
                """,
                {"from": delegator, "to": delegate},
            )
        )
    encoded = token.to_base64()
    public = root.public_key

    def verify() -> None:
        parsed = Biscuit.from_base64(encoded, public)
        authorizer = AuthorizerBuilder(
            """
            operation("create_pull_request");
            resource("acme/storefront");
            allow if right("repo:write"), workflow("vuln-patch");
            """
        )
        # set_time / limits / set_limits exist in biscuit-python 0.4 but not in its stub.
        authorizer.set_time()  # type: ignore[attr-defined]
        # The default 1 ms Datalog time limit trips now and then on a loaded 2-core
        # machine; the limit guards against hostile tokens, not this one.
        limits = authorizer.limits()  # type: ignore[attr-defined]
        limits.max_time = dt.timedelta(milliseconds=100)
        authorizer.set_limits(limits)  # type: ignore[attr-defined]
        authorizer.build(parsed).authorize()

    return encoded, verify


def macaroon_peer(caveats: int) -> tuple[str, Callable[[], None]]:
    """A macaroon with first-party caveats, and its HMAC-chain verification."""
    root_key = secrets.token_bytes(32)
    expires = int(time.time()) + 300
    predicates = [
        "operation = create_pull_request",
        "resource = acme/storefront",
        f"time < {expires}",
    ][:caveats]
    macaroon = Macaroon(location=AUDIENCE, identifier="run:" + secrets.token_hex(8), key=root_key)
    for predicate in predicates:
        macaroon.add_first_party_caveat(predicate)
    encoded: str = macaroon.serialize()

    def before_expiry(predicate: str) -> bool:
        name, _, value = predicate.partition(" < ")
        return name == "time" and value.isdigit() and time.time() < int(value)

    def verify() -> None:
        verifier = MacaroonVerifier()
        verifier.satisfy_exact("operation = create_pull_request")
        verifier.satisfy_exact("resource = acme/storefront")
        verifier.satisfy_general(before_expiry)
        verifier.verify(Macaroon.deserialize(encoded), root_key)

    return encoded, verify


def raw_ed25519_verify() -> Callable[[], None]:
    key = ed25519.Ed25519PrivateKey.generate()
    data = secrets.token_bytes(200)
    signature, public = key.sign(data), key.public_key()
    return lambda: public.verify(signature, data)


def run_delegation(number: int = NUMBER, repeat: int = REPEAT) -> DelegationResult:
    """A 3-hop A-JWT (cold and warm) against a 4-block Biscuit and a 3-caveat macaroon.

    The A-JWT rows that carry the target use the default ES256 keys; two more rows show
    the same token and proof with EdDSA (Ed25519) keys, which DESIGN §4 also allows.
    """
    now = int(time.time())
    keys, agent = SigningKeySet.generate(), PopKey.generate()
    token = intent_token(keys, agent, REFERENCE_CHAIN, CREATE_PULL, now)
    ed_keys, ed_agent = SigningKeySet.generate("EdDSA"), PopKey.generate("EdDSA")
    ed_token = intent_token(ed_keys, ed_agent, REFERENCE_CHAIN, CREATE_PULL, now)
    sample_proof = create_proof(
        agent, CREATE_PULL.method, CREATE_PULL.url, token=token, body=CREATE_PULL.body
    )
    public = keys.active.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    biscuit, biscuit_verify = biscuit_peer(hops=3)
    macaroon, macaroon_verify = macaroon_peer(caveats=3)

    calls = number * repeat
    measured = measure_side_by_side(
        {
            "raw ES256 verify (cryptography), for scale": raw_es256_verifier(token, public),
            "raw Ed25519 verify (cryptography), for scale": raw_ed25519_verify(),
            "Biscuit, 4 blocks: parse + authorize": biscuit_verify,
            "macaroon, 3 caveats: deserialize + verify": macaroon_verify,
            "A-JWT 3-hop Verifier.verify, cold (token + proof)": verify_request(
                keys, agent, token, CREATE_PULL, cached=False, calls=calls
            ),
            "A-JWT 3-hop Verifier.verify, warm (token cached)": verify_request(
                keys, agent, token, CREATE_PULL, cached=True, calls=calls
            ),
            "A-JWT 3-hop, EdDSA keys, cold": verify_request(
                ed_keys, ed_agent, ed_token, CREATE_PULL, cached=False, calls=calls
            ),
            "A-JWT 3-hop, EdDSA keys, warm": verify_request(
                ed_keys, ed_agent, ed_token, CREATE_PULL, cached=True, calls=calls
            ),
        },
        number=number,
        repeat=repeat,
    )
    es256, ed25519_row, biscuit_row, macaroon_row, cold, warm, ed_cold, ed_warm = measured
    rows = [
        es256,
        ed25519_row,
        biscuit_row,
        compare(macaroon_row, biscuit_row),
        compare(cold, biscuit_row, 1.0),
        compare(warm, biscuit_row, 1.0),
        compare(ed_cold, biscuit_row),
        compare(ed_warm, biscuit_row),
    ]
    sizes = {
        "ajwt_token": len(token),
        "ajwt_proof": len(sample_proof),
        "ajwt_token_eddsa": len(ed_token),
        "biscuit": len(biscuit),
        "macaroon": len(macaroon),
    }
    return DelegationResult(rows, sizes)


# ------------------------------------------------------------------------ 3. client


def _interleaved(
    first: Callable[[], None], second: Callable[[], None], count: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Alternate the two so drift in machine load hits both alike; seconds per call."""
    for _ in range(warmup):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        first()
        a.append(time.perf_counter() - start)
        start = time.perf_counter()
        second()
        b.append(time.perf_counter() - start)
    return a, b


def run_client(number: int = NUMBER, repeat: int = REPEAT, mints: int = MINTS) -> ClientResult:
    """Per-call client cost with a cached token, and cold mints over loopback."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp) / "idp.db")
        baseline = BaselineAuthServer(issuer="http://baseline")
        secret = baseline.register("bench-app", ["repo:read"])
        cc_server = BackgroundServer()
        cc_server.start(baseline.app())
        try:
            rows = _per_call_rows(stack, stack.rs_url + "/repos", number, repeat)
            shim = stack.shim()
            run = stack.start_run(shim)
            basic = httpx.BasicAuth("bench-app", secret)
            form = {"grant_type": "client_credentials", "resource": AUDIENCE}
            with (
                httpx.Client(timeout=10) as http,
                shim.acting("supervisor", tool="list_repos", run=run) as context,
            ):

                def ajwt_mint() -> None:
                    shim._tokens.clear()  # force a real mint every time
                    shim.token(context, AUDIENCE)

                def cc_mint() -> None:
                    http.post(cc_server.url + "/token", data=form, auth=basic).raise_for_status()

                ajwt_s, cc_s = _interleaved(ajwt_mint, cc_mint, mints, warmup=min(20, mints))
            shim.close()
        finally:
            cc_server.close()
            stack.close()

    cc = Latency.of("client-credentials mint (HTTP, FastAPI, in memory)", cc_s)
    ajwt = Latency.of(
        "A-JWT agent_checksum mint (HTTP, IdP on SQLite)",
        ajwt_s,
        peer=cc.name,
        target_p50_ms=MINT_TARGET_P50_MS,
    )
    ajwt.ratio = ajwt.p50_ms / cc.p50_ms
    return ClientResult(rows, [cc, ajwt])


def _signed_request(auth: httpx.Auth, request: httpx.Request) -> Callable[[], None]:
    """Drive the shim's auth flow up to the request it would send (no network)."""

    def sign() -> None:
        flow = auth.sync_auth_flow(request)
        next(flow)  # the request, with Authorization, DPoP and X-Shim-Checksum set
        flow.close()

    return sign


FLOOR_ROW = "floor: minimal proof on cryptography directly + the 3 headers (reference)"


def _floor_proof(key: PopKey, url: str, token: str) -> Callable[[], None]:
    """The least a client can do per tool call, as a reference row (not library code):
    a proof built straight on ``cryptography`` (header segment precomputed, no pyjwt, no
    shim, no context or token lookup) and the same three headers set on the request.
    It is checked once against ``verify_proof`` so it is a real, valid proof."""
    private = key._private
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    header = json.dumps({"alg": "ES256", "typ": "dpop+jwt", "jwk": key.public_jwk})
    segment = b64url(header.encode())
    ath, bh = access_token_hash(token), body_hash(b"")
    request = httpx.Request("GET", url)
    algorithm = ec.ECDSA(hashes.SHA256())

    def proof() -> str:
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": "GET",
            "htu": url,
            "iat": int(time.time()),
            "ath": ath,
            "bh": bh,
        }
        signing_input = segment + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
        r, s = utils.decode_dss_signature(private.sign(signing_input.encode(), algorithm))
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    verify_proof(proof(), method="GET", url=url, token=token, body=b"", expected_jkt=key.thumbprint)

    def call() -> None:
        request.headers["Authorization"] = "DPoP " + token
        request.headers["DPoP"] = proof()
        request.headers["X-Shim-Checksum"] = "sha256:" + "0" * 64

    return call


def _per_call_rows(stack: Stack, url: str, number: int, repeat: int) -> list[Measurement]:
    """The auth flow with a cached token beside one raw ES256 signature, for an agent
    registered as a fixed manifest and as a live (callable) one: the framework adapters
    register the latter, and the shim then recomputes the checksum on every token reuse
    (T4), so each request also pays for a manifest extraction + JCS + SHA-256."""
    private = ec.generate_private_key(ec.SECP256R1())
    data = create_proof(PopKey.generate(), "GET", url).rpartition(".")[0].encode()
    raw_name = "raw ES256 sign (cryptography)"

    def raw_sign() -> None:
        private.sign(data, ec.ECDSA(hashes.SHA256()))

    rows: list[Measurement] = []
    for live in (False, True):
        client = stack.new_client()
        shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
        manifest = reference_manifest("supervisor")
        shim.register((lambda: reference_manifest("supervisor")) if live else manifest)
        run = stack.start_run(shim)
        with shim.acting("supervisor", tool="list_repos", run=run) as context:
            token = shim.token(context, shim.audience_for(url)).token  # cached from here on
            key = shim.agent("supervisor").key
            fns: dict[str, Callable[[], object]] = {raw_name: raw_sign}
            if live:
                name = "same, agent registered as a live manifest (checksum recomputed)"
                fns[name] = _signed_request(shim.auth(), httpx.Request("GET", url))
            else:
                name = "shim auth flow per request, token cached (bind + proof + headers)"
                fns[name] = _signed_request(shim.auth(), httpx.Request("GET", url))
                fns["ajwt_core.dpop.create_proof alone"] = functools.partial(
                    create_proof, key, "GET", url, token=token, body=b""
                )
                fns[FLOOR_ROW] = _floor_proof(key, url, token)
            raw, flow, *proof = measure_side_by_side(fns, number=number, repeat=repeat)
        shim.close()
        if live:
            raw.name = raw_name + ", measured alongside this row"
            rows.append(compare(flow, raw))
        else:
            rows += [raw, compare(flow, raw, 1.5), compare(proof[0], raw), compare(proof[1], raw)]
    return rows


# -------------------------------------------------------------------- 4. throughput


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def idp_workers(
    db_url: str, key_file: Path, admin_token: str, *, workers: int
) -> Iterator[tuple[str, int]]:
    """``uvicorn --factory ajwt_core.idp.asgi:app_from_env --workers N`` in its own process
    group; yields its URL and the group id."""
    load_signing_keys(key_file)  # one key file, created before the workers race for it
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "AJWT_IDP_ISSUER": url,
        "AJWT_IDP_DB": db_url,
        "AJWT_IDP_KEY_FILE": str(key_file),
        "AJWT_ADMIN_TOKEN": admin_token,
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "ajwt_core.idp.asgi:app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the IdP exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/.well-known/jwks.json", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the IdP did not become ready")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A throwaway database on the PostgreSQL server, dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    name = "ajwt_bench_" + secrets.token_hex(4)
    parts = urlsplit(server_url.replace("+asyncpg", ""))
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        asyncio.run(execute(f'DROP DATABASE "{name}" WITH (FORCE)'))


def group_cpu_seconds(group: int) -> float | None:
    """User + system CPU seconds of the live processes in a process group (Linux)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    try:
        entries = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in entries:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class _Drive:
    ok: int
    errors: int
    seconds: float
    latencies: list[float]
    driver_cpu: float
    idp_cpu: float | None


async def _drive_mints(shim: Shim, runs: list[Run], count: int, warmup: int, group: int) -> _Drive:
    """``count`` mints spread over one client task per run; each mint a fresh audience
    (so the shim's cache never answers), as many in flight as there are runs."""
    serial = itertools.count()

    async def worker(run: Run, share: int, latencies: list[float]) -> int:
        context = shim.context("supervisor", tool="list_repos", run=run)
        errors = 0
        for _ in range(share):
            start = time.perf_counter()
            try:
                await shim.atoken(context, f"https://api-{next(serial)}.example")
            except (AJWTError, httpx.HTTPError):
                errors += 1
            else:
                latencies.append(time.perf_counter() - start)
        return errors

    def spread(total: int) -> list[int]:
        return [total // len(runs) + (i < total % len(runs)) for i in range(len(runs))]

    await asyncio.gather(*(worker(r, n, []) for r, n in zip(runs, spread(warmup), strict=True)))
    latencies: list[float] = []
    idp_before = group_cpu_seconds(group)
    cpu, start = time.process_time(), time.perf_counter()
    errors = await asyncio.gather(
        *(worker(r, n, latencies) for r, n in zip(runs, spread(count), strict=True))
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    idp_after = group_cpu_seconds(group)
    await shim.aclose()
    idp_cpu = None
    if idp_before is not None and idp_after is not None:
        idp_cpu = (idp_after - idp_before) / seconds
    return _Drive(len(latencies), sum(errors), seconds, latencies, cpu / seconds, idp_cpu)


def measure_throughput(
    label: str, db_url: str, *, workers: int, count: int, concurrency: int
) -> Throughput:
    """Mints/s of one IdP deployment under ``concurrency`` client tasks (one run each)."""
    admin_token = "bench-admin-" + secrets.token_hex(16)
    database = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite"
    with (
        tempfile.TemporaryDirectory() as tmp,
        idp_workers(
            db_url.format(tmp=tmp), Path(tmp) / "keys.json", admin_token, workers=workers
        ) as (url, group),
    ):
        admin = AdminClient(url, admin_token)
        admin.register_workflow(reference_workflow().canonical())
        client = admin.register_client(scopes=["repo:read", "repo:write", "advisories:read"])
        shim = Shim(url, client["client_id"], client_secret=client["client_secret"])
        shim.register(reference_manifest("supervisor"))
        runs = [
            shim.start_run(admin.user_token(f"user:{i}"), "vuln-patch") for i in range(concurrency)
        ]
        admin.close()
        # The warm-up also lets every worker start and open its database connections.
        drive = asyncio.run(_drive_mints(shim, runs, count, 4 * concurrency, group))
        shim.close()
    return Throughput(
        label=label,
        workers=workers,
        database=database,
        mints=drive.ok,
        errors=drive.errors,
        seconds=drive.seconds,
        per_second=drive.ok / drive.seconds,
        p50_ms=statistics.median(drive.latencies) * 1e3 if drive.latencies else 0.0,
        driver_cpu=drive.driver_cpu,
        idp_cpu=drive.idp_cpu,
    )


def run_throughput(
    count: int = MINT_COUNT, concurrency: int = CONCURRENCY, postgres_url: str = POSTGRES_URL
) -> list[Throughput]:
    """Mints/s with 1 worker on SQLite, and 1 and 2 workers on PostgreSQL."""
    rows = [
        measure_throughput(
            "1 worker, SQLite",
            "sqlite+aiosqlite:///{tmp}/idp.db",
            workers=1,
            count=count,
            concurrency=concurrency,
        )
    ]
    server = urlsplit(postgres_url)
    if not _reachable(server.hostname or "127.0.0.1", server.port or 5432):
        reason = f"PostgreSQL unreachable at {server.hostname}:{server.port or 5432}"
        for workers in (1, 2):
            rows.append(
                Throughput(
                    f"{workers} worker(s), PostgreSQL", workers, "PostgreSQL", skipped=reason
                )
            )
        return rows
    for workers in (1, 2):
        with postgres_database(postgres_url) as db_url:
            rows.append(
                measure_throughput(
                    f"{workers} worker{'s' if workers > 1 else ''}, PostgreSQL",
                    db_url,
                    workers=workers,
                    count=count,
                    concurrency=concurrency,
                )
            )
    return rows


# ----------------------------------------------------------------------- 5. scaling


def run_scaling(
    number: int = NUMBER, repeat: int = REPEAT, depths: tuple[int, ...] = (1, 2, 4, 8)
) -> list[DepthRow]:
    """Cold and warm ``Verifier.verify`` for tokens of growing delegation depth."""
    now = int(time.time())
    keys = SigningKeySet.generate()
    agent = PopKey.generate()
    tokens = {
        depth: intent_token(
            keys, agent, [f"agent-{i}" for i in range(depth)] + ["patcher"], CREATE_PULL, now
        )
        for depth in depths
    }
    calls = number * repeat
    fns = {
        f"{depth} {cached}": verify_request(
            keys, agent, token, CREATE_PULL, cached=cached, calls=calls
        )
        for depth, token in tokens.items()
        for cached in (False, True)
    }
    times = {m.name: m.per_call_us for m in measure_side_by_side(fns, number=number, repeat=repeat)}
    return [
        DepthRow(
            depth,
            depth + 1,
            len(token),
            cold_us=times[f"{depth} False"],
            warm_us=times[f"{depth} True"],
        )
        for depth, token in tokens.items()
    ]


# ------------------------------------------------------------------------ rendering


def render_latency(title: str, rows: list[Latency]) -> str:
    lines = [
        f"### {title}",
        "",
        "| measurement | count | p50 ms | p99 ms | peer | p50 ratio | target | met |",
        "|---|---:|---:|---:|---|---:|---:|:-:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
        target = f"p50 ≤ {r.target_p50_ms:g} ms" if r.target_p50_ms is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r.meets_target]
        lines.append(
            f"| {r.name} | {r.count} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.peer or ''} "
            f"| {ratio} | {target} | {met} |"
        )
    return "\n".join(lines)


def render_throughput(title: str, rows: list[Throughput]) -> str:
    lines = [
        f"### {title}",
        "",
        "| IdP | mints | errors | seconds | mints/s | p50 ms | driver CPU | IdP CPU "
        "| IdP CPU ms/mint |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.label} | skipped: {r.skipped} | | | | | | | |")
            continue
        idp = f"{r.idp_cpu:.2f} cores" if r.idp_cpu is not None else "n/a"
        per_mint = r.idp_cpu_ms_per_mint
        lines.append(
            f"| {r.label} | {r.mints} | {r.errors} | {r.seconds:.2f} | {r.per_second:.0f} "
            f"| {r.p50_ms:.1f} | {r.driver_cpu:.2f} cores | {idp} "
            f"| {'n/a' if per_mint is None else f'{per_mint:.1f}'} |"
        )
    return "\n".join(lines)


def render_scaling(title: str, rows: list[DepthRow]) -> str:
    lines = [
        f"### {title}",
        "",
        "| depth | agents in act | token bytes | cold µs | warm µs | cold vs depth 1 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows[0].cold_us if rows else 1.0
    for r in rows:
        lines.append(
            f"| {r.depth} | {r.agents} | {r.token_bytes} | {r.cold_us:.1f} | {r.warm_us:.1f} "
            f"| {r.cold_us / base:.2f}× |"
        )
    return "\n".join(lines)


def targets(report: Report) -> list[tuple[str, bool | None]]:
    """Every target of this benchmark and whether it was met."""
    found: list[tuple[str, bool | None]] = []
    for row in report.verification:
        if row.target is not None:
            found.append((f"{row.name} ≤ {row.target:g}× {row.peer}", row.meets_target))
    if report.delegation is not None:
        for row in report.delegation.rows:
            if row.target is not None:
                found.append((f"{row.name} faster than Biscuit", row.meets_target))
    if report.client is not None:
        for row in report.client.rows:
            if row.target is not None:
                found.append((f"{row.name} ≤ {row.target:g}× raw sign", row.meets_target))
        for latency in report.client.mints:
            if latency.target_p50_ms is not None:
                found.append(
                    (f"{latency.name} p50 ≤ {latency.target_p50_ms:g} ms", latency.meets_target)
                )
    return found


def render_report(report: Report) -> str:
    parts = [machine_line(report.machine)]
    if report.counts:
        c = report.counts
        parts.append(
            f"Per-call rows: median of {c['repeat']} interleaved rounds of {c['number']} calls "
            f"each. Mints: {c['mints']} sequential; throughput: {c['count']} mints from "
            f"{c['concurrency']} concurrent client tasks."
        )
    if report.verification:
        parts.append(render("1. Verification of one request", report.verification))
    if report.delegation is not None:
        sizes = report.delegation.sizes
        parts.append(
            render("2. Three-hop delegation vs Biscuit and macaroon", report.delegation.rows)
            + f"\n\nSizes: A-JWT intent token {sizes['ajwt_token']} B "
            f"({sizes['ajwt_token_eddsa']} B with EdDSA) + DPoP proof {sizes['ajwt_proof']} B; "
            f"Biscuit {sizes['biscuit']} B (base64); macaroon {sizes['macaroon']} B."
        )
    if report.client is not None:
        parts.append(render("3a. Client cost per tool call, token cached", report.client.rows))
        parts.append(render_latency("3b. Cold mint over loopback", report.client.mints))
    if report.throughput:
        parts.append(render_throughput("4. IdP mint throughput", report.throughput))
    if report.scaling:
        parts.append(
            render_scaling("5. Verification cost against delegation depth", report.scaling)
        )
    found = targets(report)
    if found:
        lines = ["### Targets", ""]
        for name, met in found:
            lines.append(f"- {name}: {'met' if met else 'NOT met'}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def report_json(report: Report) -> str:
    document: dict[str, Any] = {"machine": report.machine, "counts": report.counts}
    document["verification"] = as_dicts(report.verification)
    if report.delegation is not None:
        document["delegation"] = {
            "rows": as_dicts(report.delegation.rows),
            "sizes": report.delegation.sizes,
        }
    if report.client is not None:
        document["client"] = {
            "rows": as_dicts(report.client.rows),
            "mints": [asdict(r) | {"meets_target": r.meets_target} for r in report.client.mints],
        }
    document["throughput"] = [
        asdict(r) | {"idp_cpu_ms_per_mint": r.idp_cpu_ms_per_mint} for r in report.throughput
    ]
    document["scaling"] = [asdict(r) for r in report.scaling]
    document["targets"] = [{"target": name, "met": met} for name, met in targets(report)]
    return json.dumps(document, indent=2, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="PostgreSQL server URL")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else DEFAULT
    number, repeat = counts["number"], counts["repeat"]
    report = Report(machine=machine(), counts=dict(counts))
    started = time.perf_counter()
    report.verification = run_verification(number, repeat)
    report.delegation = run_delegation(number, repeat)
    report.scaling = run_scaling(number, repeat)
    report.client = run_client(number, repeat, counts["mints"])
    report.throughput = run_throughput(counts["count"], counts["concurrency"], args.postgres)
    report.machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report.machine["seconds"] = round(time.perf_counter() - started, 1)
    print(render_report(report))
    skipped = [r for r in report.throughput if r.skipped]
    for row in skipped:
        print(f"\n{row.label} row skipped: {row.skipped}")
    if args.json:
        args.json.write_text(report_json(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
