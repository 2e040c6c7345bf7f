"""Interoperability vectors: fixed keys, manifests, workflows, tokens, proofs and ledgers
with their expected checksums, hashes, thumbprints and verification results.

    .venv/bin/python -m tests.vectors.generate     # rewrite tests/vectors/*.json

Everything is deterministic: keys come from fixed seeds or the DESIGN §4 derivation, and
signatures are Ed25519 (RFC 8032 signatures are deterministic), so regenerating gives the
same bytes; ``test_vectors.py`` regenerates and compares, then checks every expected
result against the library, and ``tests/interop`` recomputes every value from the spec
text with other libraries. The format is described in ``docs/vectors.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ajwt_core.canonical import jcs, json_digest
from ajwt_core.checksum import (
    PROMPT_WHITESPACE,
    AgentManifest,
    compute_checksum,
    normalise_prompt,
    render_prompt,
    tool_source_digest,
)
from ajwt_core.dpop import access_token_hash, body_hash, create_proof
from ajwt_core.errors import AJWTError
from ajwt_core.keys import POP_INFO_PREFIX, SigningKey, derive_pop_key, jwk_thumbprint
from ajwt_core.ledger import GENESIS_HASH, EntryKind, Ledger, export_json
from ajwt_core.opaque import NameKind, hide_names, opaque_ref
from ajwt_core.tokens import (
    AgentClaim,
    CheckpointClaims,
    Confirmation,
    DelegationClaims,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    encode_checkpoint,
    encode_delegation_assertion,
    encode_intent_token,
    token_hash,
)
from ajwt_core.workflow import Workflow
from ajwt_demo.agents import reference_manifests

HERE = Path(__file__).parent
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
ISSUER = "https://idp.example"
AUDIENCE = "https://api.example"
MASTER_SECRET = bytes(range(32))
AGENT_CHECKSUM = "sha256:" + "ab" * 32
IDP_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
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

# --------------------------------------------------------------------------- checksums

# A manifest as a client may send it: defaults left out, tools unsorted, a variable
# declared twice, CRLF line ends, names whose code-point order differs from their
# UTF-16 order (U+FF46 sorts before U+1F4E6 by code point, after it by UTF-16 unit).
EDGE_MANIFEST: dict[str, Any] = {
    "agent_id": "edge-agent",
    "prompt": {
        "template": "\r\n  Fix {repo} for {\u00e4rger}.  \r\n\r\n\u3000Then report.\u2003\r",
        "variables": ["repo", "\u00e4rger", "repo", "unused"],
    },
    "tools": [
        {"name": "zeta", "parameters": {"type": "object", "b": 1.0, "a": [1e21, 0.5, -0.0]}},
        {"name": "\U0001f4e6 pack", "description": "Pack.", "source": "sha256:" + "12" * 32},
        {"name": "\uff46etch"},
        {"name": "Alpha", "description": "caf\u00e9 \u2713"},
    ],
    "config": {"model": "m", "temperature": 0.7, "nested": {"z": True, "a": None}},
}

NORMALISATION_CASES: list[tuple[str, str]] = [
    ("CRLF, blank lines and indentation", "  Plan the fix.\r\n\r\n   Read files.  \r\n"),
    ("lone CR is a line break", "a\rb\n\n\tc\t"),
    ("CR CR LF is two line breaks", "x\r\r\ny\n\rz"),
    ("whitespace-only lines are dropped", "a\n \u3000\t\nb"),
    ("empty template", ""),
    ("only whitespace", " \r\n\t\u00a0\n"),
    ("inner whitespace is kept", "one  two\tthree\u2028four\x85five"),
    ("no final line break", "last line\n"),
]
# Characters a language's own "strip"/"trim" may treat as whitespace that A-JWT does not.
NOT_WHITESPACE = ["\x1c", "\x1d", "\x1e", "\x1f", "\ufeff", "\u200b", "\u180e", "\u00ad"]

TOOL_SOURCES: list[tuple[str, str]] = [
    (
        "function with docstring and comment",
        '''
def read_file(repo: str, path: str) -> str:
    """Read one file."""  # docstrings and comments do not count
    return fetch(f"/repos/{repo}/files/{path}")
''',
    ),
    (
        "the same function reformatted",
        'def read_file(repo:str,path:str)->str: return fetch(f"/repos/{repo}/files/{path}")\n',
    ),
    (
        "indented method with a column-0 string (parsed inside 'if 1:')",
        '    def run(self, query: str) -> str:\n        sql = """\nSELECT 1\n"""\n'
        "        return self.db.execute(sql, query)\n",
    ),
    ("class whose body is only a docstring", 'class Empty:\n    """Nothing."""\n'),
    ("class whose body is pass", "class Empty:\n    pass\n"),
    (
        "decorated async function with an f-string format spec",
        "@tool(name='x')\nasync def pad(x: int, width: int = 8) -> str:\n"
        "    return f'{x:>{width}}|{x!r}'\n",
    ),
    (
        "constants: bytes, float, None, unicode",
        "def k():\n    return (b'\\x00', 1.5, None, 'caf\u00e9')\n",
    ),
]


def _tool_dump(source: str) -> str:
    # The text the digest hashes (the private helper, shown so an implementer can diff).
    from ajwt_core import checksum

    tree = checksum._parse_source(source)
    checksum._drop_non_code(tree)
    return checksum._dump(tree)


def checksum_vectors() -> dict[str, Any]:
    manifests: list[tuple[str, dict[str, Any]]] = [
        (f"reference agent {m.agent_id}", m.model_dump(mode="json")) for m in reference_manifests()
    ]
    manifests.append(("defaults omitted, unsorted tools, CRLF, non-ASCII names", EDGE_MANIFEST))
    cases = []
    for name, raw in manifests:
        canonical = AgentManifest.model_validate(raw).canonical()
        cases.append(
            {
                "name": name,
                "manifest": raw,
                "canonical": canonical,
                "canonical_json": jcs(canonical).decode("utf-8"),
                "checksum": compute_checksum(raw),
            }
        )
    normalisation = [
        {"name": name, "input": raw, "normalised": normalise_prompt(raw)}
        for name, raw in NORMALISATION_CASES
    ]
    normalisation += [
        {
            "name": f"U+{ord(ch):04X} is stripped",
            "input": f"{ch}{ch}x{ch}y{ch}",
            "normalised": normalise_prompt(f"{ch}{ch}x{ch}y{ch}"),
        }
        for ch in PROMPT_WHITESPACE
        if ch not in "\r\n"
    ]
    normalisation += [
        {
            "name": f"U+{ord(ch):04X} is not whitespace",
            "input": f"{ch}x{ch}",
            "normalised": normalise_prompt(f"{ch}x{ch}"),
        }
        for ch in NOT_WHITESPACE
    ]
    template = "Patch {repo} for {org}; reply as {{json}}."
    variables = ["org", "repo", "unused"]
    values = {"repo": "acme/{api}", "org": "\u00e4cme \u2713", "unused": "ignored"}
    used = {"repo": values["repo"], "org": values["org"]}
    return {
        "description": (
            "DESIGN §3: checksum = 'sha256:' + hex(SHA-256(JCS(canonical manifest))); "
            "prompt normalisation; intent.input_digest; deep-mode tool digests (Python only)"
        ),
        "cases": cases,
        "prompt_whitespace": [f"U+{ord(ch):04X}" for ch in PROMPT_WHITESPACE],
        "prompt_normalisation": normalisation,
        "input_digest": {
            "template": template,
            "variables": variables,
            "values": values,
            "used": used,
            "canonical_json": jcs(used).decode("utf-8"),
            "rendered": render_prompt(template, variables, values).text,
            "input_digest": render_prompt(template, variables, values).input_digest,
        },
        "tool_source": {
            "python_only": True,
            "cases": [
                {
                    "name": name,
                    "source": source,
                    "dump": _tool_dump(source),
                    "digest": tool_source_digest(source),
                }
                for name, source in TOOL_SOURCES
            ],
        },
    }


# -------------------------------------------------------------------------------- keys


def _okm(checksum: str, agent_id: str, epoch: int, length: int) -> bytes:
    info = f"{POP_INFO_PREFIX}{agent_id}|{epoch}".encode()
    salt = bytes.fromhex(checksum.removeprefix("sha256:"))
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(
        MASTER_SECRET
    )


def key_vectors() -> dict[str, Any]:
    derived = []
    for alg in ("ES256", "EdDSA"):
        for agent_id, epoch in (("planner", 0), ("planner", 1), ("patcher", 0), ("classifier", 0)):
            key = derive_pop_key(MASTER_SECRET, AGENT_CHECKSUM, agent_id, epoch, alg)  # type: ignore[arg-type]
            okm = _okm(AGENT_CHECKSUM, agent_id, epoch, 48 if alg == "ES256" else 32)
            case: dict[str, Any] = {
                "alg": alg,
                "checksum": AGENT_CHECKSUM,
                "agent_id": agent_id,
                "epoch": epoch,
                "hkdf_salt_hex": AGENT_CHECKSUM.removeprefix("sha256:"),
                "hkdf_info": f"{POP_INFO_PREFIX}{agent_id}|{epoch}",
                "okm_hex": okm.hex(),
                "public_jwk": key.public_jwk,
                "jkt": key.thumbprint,
            }
            if alg == "ES256":
                scalar = int.from_bytes(okm, "big") % (P256_ORDER - 1) + 1
                case["private_scalar_hex"] = f"{scalar:064x}"
            derived.append(case)
    # The reduction at its edges: OKM values chosen by hand, not HKDF outputs.
    edges = [0, 1, P256_ORDER - 2, P256_ORDER - 1, P256_ORDER, 2**384 - 1]
    reduction = [
        {
            "okm_hex": f"{value:096x}",
            "private_scalar_hex": f"{value % (P256_ORDER - 1) + 1:064x}",
        }
        for value in edges
    ]
    return {
        "description": "DESIGN §4 HKDF derivation of PoP keys and RFC 7638 thumbprints",
        "master_secret_hex": MASTER_SECRET.hex(),
        "rfc7638_example": {"jwk": RFC7638_JWK, "thumbprint": jwk_thumbprint(RFC7638_JWK)},
        "derived": derived,
        "p256_order_hex": f"{P256_ORDER:064x}",
        "p256_reduction": reduction,
    }


# ------------------------------------------------------------------------------ tokens


def idp_key() -> SigningKey:
    return SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(IDP_SEED))


def agent_key(agent_id: str) -> Any:
    return derive_pop_key(MASTER_SECRET, AGENT_CHECKSUM, agent_id, 0, "EdDSA")


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
            id="patcher", checksum=AGENT_CHECKSUM, registration_id="reg-1", version=1
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


def _step_intent() -> IntentClaim:
    return IntentClaim(
        id="intent-1",
        initiated_by="user:alice",
        workflow_id="vuln-patch",
        workflow_version=1,
        workflow_hash="sha256:" + "cd" * 32,
        run_id="run-1",
        step="patch",
        step_sequence_hash="sha256:" + "ef" * 32,
    )


def _opaque_claims(agent_jkt: str) -> IntentTokenClaims:
    """A privacy-mode token: the names are references made with a secret key."""
    secret = bytes(range(32))

    def ref(kind: NameKind, name: str) -> str:
        return opaque_ref(secret, "vuln-patch", kind, name)

    return hide_names(_claims(agent_jkt, jti="vector-token-opaque"), ref)


def token_vectors() -> dict[str, Any]:
    key = idp_key()
    agent = agent_key("patcher")
    jkt = agent.thumbprint
    valid = encode_intent_token(_claims(jkt), key)
    raw = _claims(jkt).model_dump(exclude_none=True)
    other = SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)))
    header = valid.split(".")[0]
    forged_payload = encode_intent_token(_claims(jkt, scope="repo:admin"), key)
    cases = [
        ("valid", valid, "valid"),
        ("typ with application/ prefix", key.sign(raw, {"typ": "application/AT+JWT"}), "valid"),
        ("wrong typ", key.sign(raw, {"typ": "JWT"}), "wrong_type"),
        (
            "alg none",
            jwt.encode(raw, None, algorithm="none", headers={"typ": "at+jwt", "kid": key.kid}),
            "alg_not_allowed",
        ),
        (
            "jku header",
            key.sign(raw, {"typ": "at+jwt", "jku": "https://evil.example/jwks"}),
            "forbidden_header",
        ),
        ("unknown kid", other.sign(raw, {"typ": "at+jwt"}), "unknown_kid"),
        (
            "payload swapped",
            ".".join([header, forged_payload.split(".")[1], valid.split(".")[2]]),
            "bad_signature",
        ),
        (
            "wrong issuer",
            encode_intent_token(_claims(jkt, iss="https://other-idp.example"), key),
            "wrong_issuer",
        ),
        (
            "wrong audience",
            encode_intent_token(_claims(jkt, aud="https://other.example"), key),
            "wrong_audience",
        ),
        (
            "expired",
            encode_intent_token(_claims(jkt, iat=NOW - 1000, nbf=NOW - 1000, exp=NOW - 700), key),
            "token_expired",
        ),
        (
            "expired within leeway",
            encode_intent_token(_claims(jkt, iat=NOW - 330, nbf=NOW - 330, exp=NOW - 30), key),
            "valid",
        ),
        (
            "not yet valid",
            encode_intent_token(_claims(jkt, nbf=NOW + 100, exp=NOW + 300), key),
            "token_not_yet_valid",
        ),
        (
            "issued in the future",
            encode_intent_token(_claims(jkt, iat=NOW + 100, exp=NOW + 300), key),
            "issued_in_future",
        ),
        (
            "lifetime over cap",
            key.sign(raw | {"exp": NOW + 301}, {"typ": "at+jwt"}),
            "lifetime_too_long",
        ),
        (
            "acting agent is not the top of act",
            key.sign(
                raw | {"act": build_act_chain(["supervisor", "planner"]).model_dump()},
                {"typ": "at+jwt"},
            ),
            "invalid_claim",
        ),
        # Other at+jwt tokens are told from intent tokens by their claims and audience.
        (
            "a user token of the same issuer (no client_id, cnf, act, agent, intent)",
            key.sign(
                {
                    "iss": ISSUER,
                    "sub": "user:alice",
                    "aud": AUDIENCE,
                    "iat": NOW,
                    "exp": NOW + 300,
                    "jti": "vector-user-token",
                },
                {"typ": "at+jwt"},
            ),
            "missing_claim",
        ),
        (
            "a step token (audience the IdP, no tool)",
            encode_intent_token(_claims(jkt, aud=ISSUER, scope="", intent=_step_intent()), key),
            "wrong_audience",
        ),
        (
            "another issuer's access token",
            other.sign(
                {
                    "iss": "https://login.example",
                    "sub": "user:alice",
                    "aud": AUDIENCE,
                    "client_id": "web",
                    "iat": NOW,
                    "exp": NOW + 300,
                    "jti": "upstream-1",
                },
                {"typ": "at+jwt", "kid": "upstream-key"},
            ),
            "unknown_kid",
        ),
        (
            "a ledger checkpoint",
            encode_checkpoint(
                CheckpointClaims(
                    iss=ISSUER, run_id="run-1", seq=3, head="sha256:" + "ef" * 32, iat=NOW
                ),
                key,
            ),
            "wrong_type",
        ),
        (
            "privacy mode: opaque names",
            encode_intent_token(_opaque_claims(jkt), key),
            "valid",
        ),
    ]
    return {
        "description": (
            "DESIGN §5.1 intent tokens, verified as in DESIGN §7 steps 2-3 at 'now' with "
            "'leeway' and 'max_lifetime'"
        ),
        "now": NOW,
        "leeway": 60,
        "max_lifetime": 300,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": {"keys": [key.public_jwk]},
        "cases": [{"name": n, "token": t, "expect": e} for n, t, e in cases],
        "valid_claims": jwt.decode(valid, options={"verify_signature": False}),
        "valid_chain": ["supervisor", "planner", "classifier", "patcher"],
    }


# ------------------------------------------------------------------------------ proofs


def proof_vectors(token: str) -> dict[str, Any]:
    agent = agent_key("patcher")
    url = "https://api.example/repos/acme/storefront/pulls"
    body = b'{"title":"Bump lodash to 4.17.21","head":"fix/lodash"}'

    def proof(key: Any = agent, now: int = NOW, **kw: Any) -> str:
        args: dict[str, Any] = {"method": "POST", "url": url, "token": token, "body": body}
        args.update(kw)
        return create_proof(key, now=now, jti="vector-proof-1", **args)

    def request(at: str = url, **kw: Any) -> dict[str, Any]:
        return {"method": "POST", "url": at, "body_b64": base64.b64encode(body).decode()} | kw

    cases = [
        ("valid", proof(), request(), "valid"),
        (
            "query and fragment of the request are ignored",
            proof(),
            request(url + "?draft=1#top"),
            "valid",
        ),
        (
            "scheme and host case, default port",
            proof(),
            request("HTTPS://API.Example:443/repos/acme/storefront/pulls"),
            "valid",
        ),
        ("other method", proof(method="PUT"), request(), "method_mismatch"),
        (
            "other url",
            proof(url="https://api.example/repos/acme/billing/pulls"),
            request(),
            "url_mismatch",
        ),
        ("path case matters", proof(), request(url.replace("acme", "ACME")), "url_mismatch"),
        ("too old", proof(now=NOW - 100), request(), "proof_expired"),
        ("from the future", proof(now=NOW + 60), request(), "proof_from_future"),
        ("other token", proof(token="x.y.z"), request(), "ath_mismatch"),
        ("other body", proof(body=b"{}"), request(), "bh_mismatch"),
        ("no bh, with a body", proof(body=None), request(), "bh_missing"),
        (
            "no bh, with a body, binding optional (a plain RFC 9449 proof)",
            proof(body=None),
            request(body_binding="optional"),
            "valid",
        ),
        (
            "other body, binding optional",
            proof(body=b"{}"),
            request(body_binding="optional"),
            "bh_mismatch",
        ),
        (
            "no bh, no body",
            proof(method="GET", body=None),
            request(method="GET", body_b64=""),
            "valid",
        ),
        (
            "no bh, no body, binding required",
            proof(method="GET", body=None),
            request(method="GET", body_b64="", body_binding="required"),
            "bh_missing",
        ),
        ("other key than cnf.jkt", proof(key=agent_key("planner")), request(), "jkt_mismatch"),
    ]
    return {
        "description": (
            "RFC 9449 proofs with the A-JWT 'bh' claim, verified at 'now' (DESIGN §7 step 4); "
            "a request's 'body_binding' is 'if_body' unless given (DESIGN §5.3)"
        ),
        "now": NOW + 5,
        "max_age": 60,
        "future_leeway": 5,
        "access_token": token,
        "ath": access_token_hash(token),
        "bh": body_hash(body),
        "expected_jkt": agent.thumbprint,
        "cases": [{"name": n, "proof": p, "request": r, "expect": e} for n, p, r, e in cases],
    }


# -------------------------------------------------------------------------- delegation


def _planner_token(key: SigningKey) -> str:
    """The delegator's own intent token: step 'plan', bound to the planner's PoP key."""
    planner = agent_key("planner")
    claims = _claims(
        planner.thumbprint,
        scope="repo:read",
        jti="vector-token-planner",
        act=build_act_chain(["supervisor", "planner"]),
        agent=AgentClaim(id="planner", checksum=AGENT_CHECKSUM, registration_id="reg-p", version=1),
        intent=IntentClaim(
            id="intent-1",
            initiated_by="user:alice",
            workflow_id="vuln-patch",
            workflow_version=1,
            workflow_hash="sha256:" + "cd" * 32,
            run_id="run-1",
            step="plan",
            tool="read_file",
            step_sequence_hash="sha256:" + "ef" * 32,
            delegation="sha256:" + "02" * 32,
        ),
    )
    return encode_intent_token(claims, key)


def delegation_vectors(patcher_token: str) -> dict[str, Any]:
    idp = idp_key()
    planner, classifier = agent_key("planner"), agent_key("classifier")
    parent = _planner_token(idp)

    def assertion(signer: Any = planner, token: str = parent, **overrides: Any) -> str:
        claims: dict[str, Any] = {
            "iss": "agent:planner",
            "sub": "agent:classifier",
            "aud": ISSUER,
            "intent_id": "intent-1",
            "run_id": "run-1",
            "from_step": "plan",
            "to_step": "classify",
            "scope": "advisories:read",
            "parent": token_hash(token),
            "iat": NOW,
            "exp": NOW + 60,
            "jti": "vector-delegation-1",
        }
        claims.update(overrides)
        return encode_delegation_assertion(DelegationClaims(**claims), signer)

    cases = [
        ("valid", parent, assertion(), "valid"),
        # The parent token is the patcher's (cnf.jkt = patcher's key) while the planner
        # signs: the parent is not bound to the assertion's key (DESIGN §5.2).
        (
            "parent token bound to another agent's key",
            patcher_token,
            assertion(token=patcher_token),
            "parent_token_mismatch",
        ),
        ("signed by another key", parent, assertion(signer=classifier), "bad_signature"),
        ("for another IdP", parent, assertion(aud="https://other-idp.example"), "wrong_audience"),
        (
            "expired",
            parent,
            assertion(iat=NOW - 200, exp=NOW - 140),
            "token_expired",
        ),
        (
            "signed for another parent token",
            parent,
            assertion(parent=token_hash(patcher_token)),
            "parent_token_mismatch",
        ),
        ("another run", parent, assertion(run_id="run-2"), "invalid_delegation"),
        ("another intent", parent, assertion(intent_id="intent-2"), "invalid_delegation"),
        ("from another step", parent, assertion(from_step="triage"), "invalid_delegation"),
        (
            "issued by another agent",
            parent,
            assertion(iss="agent:supervisor"),
            "invalid_delegation",
        ),
    ]
    return {
        "description": (
            "DESIGN §5.2 delegation assertions signed by the delegator's PoP key, with the "
            "delegator's intent token as parent; 'parent_hash' is the assertion's 'parent' "
            "and 'assertion_hash' the delegate's 'intent.delegation'"
        ),
        "now": NOW + 5,
        "leeway": 60,
        "max_lifetime": 60,
        "issuer": ISSUER,
        "jwks": {"keys": [idp.public_jwk]},
        "delegator_jwk": planner.public_jwk,
        "cases": [
            {
                "name": name,
                "parent_token": token,
                "parent_hash": token_hash(token),
                "assertion": signed,
                "assertion_hash": token_hash(signed),
                "expect": expect,
            }
            for name, token, signed, expect in cases
        ],
    }


# ------------------------------------------------------------------------------ ledger


def _ledger() -> Ledger:
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
    ledger.append(
        EntryKind.MINT_REFUSED,
        {
            "reason": "scope_exceeded",
            "requested": ["repo:admin", "repo:read"],
            "note": "refus\u00e9 \u2713 \U0001f512",
            "ratio": 0.5,
            "big": 1e21,
            "whole": 2.0,
        },
        at=NOW + 4,
    )
    return ledger


def ledger_vectors() -> dict[str, Any]:
    ledger = _ledger()
    export = json.loads(export_json(ledger.entries))
    steps = []
    for entry in ledger.entries:
        body_jcs = jcs(entry.body())
        steps.append(
            {
                "seq": entry.seq,
                "prev_hash": entry.prev_hash,
                "body_jcs": body_jcs.decode("utf-8"),
                "hash_input_hex": (entry.prev_hash.encode("ascii") + body_jcs).hex(),
                "entry_hash": entry.entry_hash,
            }
        )

    def tampered(edit: Any) -> dict[str, Any]:
        copy = json.loads(export_json(ledger.entries))
        edit(copy["entries"])
        return copy

    def edit_data(entries: list[dict[str, Any]]) -> None:
        entries[2]["data"]["step"] = "patch"

    def delete_one(entries: list[dict[str, Any]]) -> None:
        del entries[1]

    def swap(entries: list[dict[str, Any]]) -> None:
        entries[1], entries[2] = entries[2], entries[1]

    def rehash_with_raw_bytes(entries: list[dict[str, Any]]) -> None:
        # A chain computed with the 32 raw digest bytes of prev_hash instead of its
        # "sha256:<hex>" text: the first entry already differs.
        prev = bytes(32)
        for entry in entries:
            body = {k: entry[k] for k in ("run_id", "seq", "kind", "at", "data")}
            digest = hashlib.sha256(prev + jcs(body)).digest()
            entry["entry_hash"] = "sha256:" + digest.hex()
            prev = digest

    return {
        "description": (
            "DESIGN §8: entry_hash = 'sha256:' + hex(SHA-256(ASCII(prev_hash) || "
            "JCS({run_id, seq, kind, at, data}))), first prev_hash = genesis"
        ),
        "genesis": GENESIS_HASH,
        "ledger": export,
        "head": ledger.head,
        "steps": steps,
        "tampered": [
            {"name": "data edited", "ledger": tampered(edit_data), "first_bad_seq": 2},
            {"name": "entry deleted", "ledger": tampered(delete_one), "first_bad_seq": 1},
            {"name": "entries swapped", "ledger": tampered(swap), "first_bad_seq": 1},
            {
                "name": "hashed with raw prev_hash bytes",
                "ledger": tampered(rehash_with_raw_bytes),
                "first_bad_seq": 0,
            },
        ],
    }


# ---------------------------------------------------------------------------- workflow

REFERENCE_WORKFLOW: dict[str, Any] = {
    "id": "vuln-patch",
    "version": 1,
    "steps": {
        "triage": {"agent": "supervisor", "tools": ["list_repos"], "scopes": ["repo:read"]},
        "plan": {
            "agent": "planner",
            "tools": ["read_file"],
            "scopes": ["repo:read"],
            "after": ["triage"],
        },
        "classify": {
            "agent": "classifier",
            "tools": ["query_advisories"],
            "scopes": ["advisories:read"],
            "after": ["plan"],
        },
        "patch": {
            "agent": "patcher",
            "tools": ["create_pull_request"],
            "scopes": ["repo:write"],
            "after": ["classify"],
            "approval": False,
        },
    },
}

# The same workflow as a list of steps, every default spelled out, lists reordered.
REFERENCE_WORKFLOW_AS_LIST: dict[str, Any] = {
    "version": 1,
    "id": "vuln-patch",
    "steps": [
        {
            "id": "patch",
            "agent": "patcher",
            "tools": ["create_pull_request"],
            "scopes": ["repo:write"],
            "after": ["classify"],
            "required": True,
            "approval": False,
        },
        {
            "id": "triage",
            "agent": "supervisor",
            "tools": ["list_repos"],
            "scopes": ["repo:read"],
            "after": [],
            "required": True,
            "approval": False,
        },
        {
            "id": "classify",
            "agent": "classifier",
            "tools": ["query_advisories"],
            "scopes": ["advisories:read"],
            "after": ["plan"],
        },
        {
            "id": "plan",
            "agent": "planner",
            "tools": ["read_file"],
            "scopes": ["repo:read"],
            "after": ["triage"],
        },
    ],
}

# Non-default flags, several tools, scopes and dependencies, a step without scopes.
FLAGGED_WORKFLOW: dict[str, Any] = {
    "id": "release",
    "version": 3,
    "steps": {
        "build": {"agent": "builder", "tools": ["run_tests", "compile"]},
        "docs": {"agent": "writer", "tools": ["write_docs"], "required": False},
        "sign": {
            "agent": "signer",
            "tools": ["sign", "\uff46etch key", "\U0001f4e6 pack"],
            "scopes": ["release:sign", "keys:read"],
            "after": ["docs", "build"],
            "approval": True,
        },
    },
}


def workflow_vectors() -> dict[str, Any]:
    cases = []
    for name, definition in (
        ("reference workflow (DESIGN §11), defaults omitted", REFERENCE_WORKFLOW),
        ("the same as a step list, defaults spelled out, reordered", REFERENCE_WORKFLOW_AS_LIST),
        ("non-default flags, unsorted lists, non-ASCII tool names", FLAGGED_WORKFLOW),
    ):
        workflow = Workflow.from_mapping(definition)
        canonical = workflow.canonical()
        cases.append(
            {
                "name": name,
                "definition": definition,
                "canonical": canonical,
                "canonical_json": jcs(canonical).decode("utf-8"),
                "workflow_hash": workflow.workflow_hash,
            }
        )
    assert cases[0]["workflow_hash"] == json_digest(cases[0]["canonical"])
    return {
        "description": (
            "workflow_hash = 'sha256:' + hex(SHA-256(JCS(canonical workflow))) "
            "(DESIGN §6.3): steps as a mapping, set-like lists sorted, defaults filled in"
        ),
        "step_defaults": {"scopes": [], "after": [], "required": True, "approval": False},
        "cases": cases,
    }


# ------------------------------------------------------------------------------- files


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
        "workflow.json": workflow_vectors(),
    }


def render(document: dict[str, Any]) -> str:
    # ASCII only: invisible characters (U+2028, U+FEFF…) are escaped, never raw.
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main() -> None:
    for name, document in build().items():
        (HERE / name).write_text(render(document))
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    try:
        main()
    except AJWTError as exc:
        raise SystemExit(f"error: {exc}") from None
