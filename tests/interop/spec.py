"""A second implementation of every A-JWT hash, derivation and check, written from
``docs/design.md`` alone, to check ``tests/vectors/*.json`` independently.

It must not import ``ajwt_core`` (``test_spec_python.py`` runs it in a process where that
import fails). JOSE is joserfc's (JWK import, RFC 7638 thumbprints, JWS signatures); JCS
is the ``rfc8785`` package; HKDF is written out from RFC 5869 with ``hmac``; the P-256
and Ed25519 public keys come from ``cryptography``. Each function names the section of
the design it follows.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import re
import textwrap
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwk, jws
from joserfc.errors import BadSignatureError, JoseError

# --------------------------------------------------------------------- §3 encodings


def jcs(value: Any) -> bytes:
    return rfc8785.dumps(value)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def code_point_sorted(items: list[str]) -> list[str]:
    # §3: sorted by code point = by UTF-8 bytes (spelled that way on purpose).
    return sorted(items, key=lambda s: s.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------ §3 normalise

# §3: "exactly these 25 code points: U+0009–U+000D, U+0020, U+0085, U+00A0, U+1680,
# U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000".
WHITE_SPACE = frozenset(
    (*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029)
).union((0x202F, 0x205F, 0x3000))


def _strip(line: str) -> str:
    start, end = 0, len(line)
    while start < end and ord(line[start]) in WHITE_SPACE:
        start += 1
    while end > start and ord(line[end - 1]) in WHITE_SPACE:
        end -= 1
    return line[start:end]


def normalise(template: str) -> str:
    text = template.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(s for s in (_strip(line) for line in text.split("\n")) if s)


def canonical_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """§3: the five members, defaults filled in, lists sorted."""
    prompt = manifest["prompt"]
    tools = [
        {
            "name": tool["name"],
            "description": tool.get("description", ""),
            "parameters": tool.get("parameters", {}),
            "source": tool.get("source"),
        }
        for tool in manifest.get("tools", [])
    ]
    names = code_point_sorted([tool["name"] for tool in tools])
    by_name = {tool["name"]: tool for tool in tools}
    return {
        "v": manifest.get("v", 1),
        "agent_id": manifest["agent_id"],
        "prompt": {
            "template": normalise(prompt["template"]),
            "variables": code_point_sorted(list(set(prompt.get("variables", [])))),
        },
        "tools": [by_name[name] for name in names],
        "config": manifest.get("config", {}),
    }


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    return digest(jcs(canonical_manifest(manifest)))


_TEMPLATE_PIECE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[^{}]+")


def render(template: str, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """§3 templates: ``{name}`` is a placeholder, ``{{`` and ``}}`` literal braces;
    the rendered text and the values of the placeholders used (for input_digest)."""
    out: list[str] = []
    used: dict[str, str] = {}
    for match in _TEMPLATE_PIECE.finditer(template):
        piece = match.group(0)
        if piece in ("{{", "}}"):
            out.append(piece[0])
        elif match.group(1) is not None:
            name = match.group(1)
            used[name] = values[name]
            out.append(values[name])
        else:
            out.append(piece)
    return "".join(out), used


def input_digest(template: str, values: Mapping[str, str]) -> str:
    return digest(jcs(render(template, values)[1]))


# --------------------------------------------------------- §3 deep mode (Python only)


def _parse_tool(source: str) -> ast.Module:
    try:
        return ast.parse(textwrap.dedent(source))
    except SyntaxError:
        block = ast.parse("if 1:\n" + source).body[0]
        assert isinstance(block, ast.If)
        return ast.Module(body=block.body, type_ignores=[])


def _drop_docstrings(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            node.values = [
                v for v in node.values if not (isinstance(v, ast.Constant) and v.value == "")
            ]
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:]
                if not node.body and not isinstance(node, ast.Module):
                    node.body = [ast.Pass()]


def tool_dump(value: Any) -> str:
    if isinstance(value, ast.AST):
        parts = []
        for name in value._fields:
            field = getattr(value, name, None)
            if name in ("kind", "type_comment") or field is None or field == []:
                continue
            parts.append(f"{name}={tool_dump(field)}")
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, list):
        return "[" + ", ".join(tool_dump(item) for item in value) + "]"
    return repr(value)


def tool_source(source: str) -> tuple[str, str]:
    """§3 deep mode: (dump, digest)."""
    tree = _parse_tool(source)
    _drop_docstrings(tree)
    dump = tool_dump(tree)
    return dump, digest(dump.encode("utf-8", "surrogatepass"))


# ---------------------------------------------------------------------------- §4 keys

P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 §2.2 and §2.3."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def pop_okm(master: bytes, checksum: str, agent_id: str, epoch: int, alg: str) -> bytes:
    salt = bytes.fromhex(checksum.removeprefix("sha256:"))
    info = f"ajwt/pop/v1|{agent_id}|{epoch}".encode()
    return hkdf_sha256(master, salt, info, 48 if alg == "ES256" else 32)


def p256_scalar(okm: bytes) -> int:
    return int.from_bytes(okm, "big") % (P256_ORDER - 1) + 1


def pop_public_jwk(okm: bytes, alg: str) -> dict[str, str]:
    if alg == "ES256":
        point = ec.derive_private_key(p256_scalar(okm), ec.SECP256R1()).public_key()
        raw = point.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return {"crv": "P-256", "kty": "EC", "x": b64url(raw[1:33]), "y": b64url(raw[33:])}
    public = ed25519.Ed25519PrivateKey.from_private_bytes(okm).public_key()
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url(public.public_bytes_raw())}


def thumbprint(key: Mapping[str, Any]) -> str:
    return str(jwk.import_key(dict(key)).thumbprint())


# ---------------------------------------------------------- §5, §7, §12: JWS checks

ALGORITHMS = ("ES256", "EdDSA")
# §12 Tokens: a token header may not carry these (a proof may carry only its own jwk).
KEY_CARRYING = ("jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
KEY_TYPE = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}


class Refused(Exception):
    """A check failed; ``args[0]`` is the ``ajwt_reason`` the spec gives it."""


def outcome(check: Callable[[], object]) -> str:
    try:
        check()
    except Refused as refused:
        return str(refused.args[0])
    return "valid"


def _media_type(value: object) -> str | None:
    return value.lower().removeprefix("application/") if isinstance(value, str) else None


def read_header(token: str, typ: str, max_bytes: int, forbidden: tuple[str, ...]) -> dict[str, Any]:
    if len(token) > max_bytes:
        raise Refused("token_too_large")
    if not token.isascii() or token.count(".") != 2:
        raise Refused("malformed_token")
    try:
        header = json.loads(b64url_decode(token.split(".")[0]))
    except ValueError:
        raise Refused("malformed_token") from None
    if not isinstance(header, dict):
        raise Refused("malformed_token")
    if _media_type(header.get("typ")) != typ:
        raise Refused("wrong_type")
    if header.get("alg") not in ALGORITHMS:
        raise Refused("alg_not_allowed")
    if any(name in header for name in forbidden):
        raise Refused("forbidden_header")
    return header


def verify_signature(token: str, key: Mapping[str, Any], alg: str) -> dict[str, Any]:
    """The signature with exactly this key and algorithm (joserfc); the claims."""
    try:
        with warnings.catch_warnings():
            # joserfc flags "EdDSA" as deprecated by RFC 9864 (fully specified algorithms).
            warnings.filterwarnings("ignore", message="EdDSA is deprecated")
            payload = jws.deserialize_compact(token, jwk.import_key(dict(key)), algorithms=[alg])
    except BadSignatureError:
        raise Refused("bad_signature") from None
    except (JoseError, ValueError):
        raise Refused("malformed_token") from None
    claims = json.loads(payload.payload)
    if not isinstance(claims, dict):
        raise Refused("malformed_token")
    return claims


def check_times(claims: Mapping[str, Any], now: int, leeway: int, max_lifetime: int) -> None:
    exp, iat = claims["exp"], claims["iat"]
    nbf = claims.get("nbf", iat)
    if exp <= now - leeway:
        raise Refused("token_expired")
    if nbf > now + leeway:
        raise Refused("token_not_yet_valid")
    if iat > now + leeway:
        raise Refused("issued_in_future")
    if exp - min(iat, nbf) > max_lifetime:
        raise Refused("lifetime_too_long")


INTENT_CLAIMS = ("iss", "aud", "sub", "client_id", "scope", "iat", "nbf", "exp", "jti")
INTENT_OBJECTS = ("cnf", "act", "agent", "intent")


def act_chain(act: Mapping[str, Any] | None) -> list[str]:
    chain = []
    while act is not None:
        chain.append(str(act["sub"]).removeprefix("agent:"))
        act = act.get("act")
    return chain[::-1]


def verify_intent_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str | None,
    now: int,
    leeway: int = 60,
    max_lifetime: int = 300,
) -> dict[str, Any]:
    """§7 steps 2-3 and §12 Tokens, in order; the required claims are what tell an
    intent token from the other ``at+jwt`` tokens of its issuer (§5.1)."""
    header = read_header(token, "at+jwt", 8192, KEY_CARRYING)
    keys = {k.get("kid"): k for k in jwks["keys"]}
    key = keys.get(header.get("kid"))
    if key is None:
        raise Refused("unknown_kid")
    if key.get("alg") != header["alg"]:
        raise Refused("alg_not_allowed")
    claims = verify_signature(token, key, header["alg"])
    for name in (*INTENT_CLAIMS, *INTENT_OBJECTS):
        if name not in claims:
            raise Refused("missing_claim")
    if claims["iss"] != issuer:
        raise Refused("wrong_issuer")
    if audience is not None and claims["aud"] != audience:
        raise Refused("wrong_audience")
    check_times(claims, now, leeway, max_lifetime)
    chain = act_chain(claims["act"])
    if len(chain) > 16:
        raise Refused("chain_too_deep")
    if chain[-1] != claims["agent"]["id"]:
        raise Refused("invalid_claim")
    return claims


# --------------------------------------------------------------------- §5.3 proofs


def htu(url: str) -> str:
    """§5.3: scheme and host lower-cased, default port dropped, no query or fragment."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}[scheme]
    netloc = host if parts.port in (None, default) else f"{host}:{parts.port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    token: str,
    body: bytes,
    expected_jkt: str,
    now: int,
    max_age: int,
    future_leeway: int,
    body_binding: str = "if_body",
) -> None:
    """§7 step 4, in order; ``body_binding`` as in §5.3."""
    forbidden = tuple(h for h in KEY_CARRYING if h != "jwk")
    header = read_header(proof, "dpop+jwt", 4096, forbidden)
    key = header.get("jwk")
    if not isinstance(key, dict):
        raise Refused("malformed_proof")
    if any(member in key for member in PRIVATE_MEMBERS):
        raise Refused("private_key_in_proof")
    if (key.get("kty"), key.get("crv")) != KEY_TYPE[header["alg"]]:
        raise Refused("invalid_key")
    claims = verify_signature(proof, key, header["alg"])
    if not all(isinstance(claims.get(c), str) for c in ("jti", "htm", "htu")):
        raise Refused("malformed_proof")
    if claims["htm"] != method:
        raise Refused("method_mismatch")
    if htu(claims["htu"]) != htu(url):
        raise Refused("url_mismatch")
    if claims["iat"] < now - max_age:
        raise Refused("proof_expired")
    if claims["iat"] > now + future_leeway:
        raise Refused("proof_from_future")
    if claims.get("ath") != b64url(hashlib.sha256(token.encode("ascii")).digest()):
        raise Refused("ath_mismatch")
    if "bh" not in claims:
        # §5.3: a missing bh is refused when the binding is "required", or "if_body"
        # and the request has a body.
        if body_binding == "required" or (body_binding == "if_body" and body):
            raise Refused("bh_missing")
    elif claims["bh"] != b64url(hashlib.sha256(body).digest()):
        raise Refused("bh_mismatch")
    if thumbprint(key) != expected_jkt:
        raise Refused("jkt_mismatch")


# ----------------------------------------------------------------- §5.2 delegation


def token_hash(token: str) -> str:
    """§5.1 / §5.2: ``parent`` and ``intent.delegation``."""
    return digest(token.encode("ascii"))


def check_delegation(
    parent_token: str,
    assertion: str,
    *,
    delegator_jwk: Mapping[str, Any],
    jwks: Mapping[str, Any],
    issuer: str,
    now: int,
    leeway: int,
    max_lifetime: int,
) -> None:
    """§5.2, the IdP's checks in order (the ones a vector can carry)."""
    parent = verify_intent_token(parent_token, jwks, issuer=issuer, audience=None, now=now)
    if parent["cnf"]["jkt"] != thumbprint(delegator_jwk):
        raise Refused("parent_token_mismatch")
    header = read_header(assertion, "delegation+jwt", 8192, KEY_CARRYING)
    if header["alg"] != {"EC": "ES256", "OKP": "EdDSA"}[delegator_jwk["kty"]]:
        raise Refused("alg_not_allowed")
    claims = verify_signature(assertion, delegator_jwk, header["alg"])
    if claims["aud"] != issuer:
        raise Refused("wrong_audience")
    check_times(claims, now, leeway, max_lifetime)
    if claims["parent"] != token_hash(parent_token):
        raise Refused("parent_token_mismatch")
    intent = parent["intent"]
    if (
        claims["run_id"] != intent["run_id"]
        or claims["intent_id"] != intent["id"]
        or claims["from_step"] != intent["step"]
        or claims["iss"] != "agent:" + parent["agent"]["id"]
    ):
        raise Refused("invalid_delegation")


# ------------------------------------------------------------------------ §8 ledger

GENESIS = "sha256:" + "0" * 64
BODY = ("run_id", "seq", "kind", "at", "data")


def entry_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return digest(prev_hash.encode("ascii") + jcs(dict(body)))


def verify_ledger(entries: list[dict[str, Any]]) -> tuple[int | None, str]:
    """§8: (the first seq where the chain breaks or None, the head it reached)."""
    head, run_id = GENESIS, entries[0]["run_id"] if entries else None
    for position, entry in enumerate(entries):
        body = {name: entry[name] for name in BODY}
        if (
            entry["run_id"] != run_id
            or entry["seq"] != position
            or entry["prev_hash"] != head
            or entry_hash(head, body) != entry["entry_hash"]
        ):
            return position, head
        head = entry["entry_hash"]
    return None, head


# ---------------------------------------------------------------------- §6.3 workflow

STEP_DEFAULTS: dict[str, Any] = {"scopes": [], "after": [], "required": True, "approval": False}


def canonical_workflow(definition: Mapping[str, Any]) -> dict[str, Any]:
    steps = definition["steps"]
    if isinstance(steps, list):
        steps = {step["id"]: {k: v for k, v in step.items() if k != "id"} for step in steps}
    canonical_steps = {}
    for step_id, step in steps.items():
        full = STEP_DEFAULTS | dict(step)
        canonical_steps[step_id] = {
            "agent": full["agent"],
            "tools": code_point_sorted(full["tools"]),
            "scopes": code_point_sorted(full["scopes"]),
            "after": code_point_sorted(full["after"]),
            "required": full["required"],
            "approval": full["approval"],
        }
    return {"id": definition["id"], "version": definition["version"], "steps": canonical_steps}


def workflow_hash(definition: Mapping[str, Any]) -> str:
    return digest(jcs(canonical_workflow(definition)))
