"""Fuzzing at the HTTP boundary (issues 8 and 12 §2): hypothesis drives every IdP endpoint,
on SQLite and on PostgreSQL, and the resource server, with non-ASCII text, NUL and other
control characters, lone surrogates, huge integers and over-long strings in every field:
JSON fields, form fields, path ids and headers (``Authorization``, ``DPoP``,
``X-AJWT-Token``). Most cases start from a valid request (real credentials, a proof
signed over the mutated body) and spoil one or more fields, so they reach the checks
behind authentication. No response is ≥ 500, none carries a traceback or a secret;
schemathesis also drives the IdP from its OpenAPI document.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ajwt_core.dpop import create_proof
from ajwt_core.keys import PopKey
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifest
from tests.fuzz.conftest import RS_AUDIENCE, IdPTarget, RsTarget, basic
from tests.idp.support import ADMIN, ISSUER, RESOURCE

pytestmark = pytest.mark.heavy
CASES: Counter[str] = Counter()


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------- strategies

SPECIALS = [
    "\x00", "\x01", "\x1f", "\x7f", "\x85", "\t", "\n", "\r", " ", "\ud800", "\udfff",
    "é", "\u202e", "\ufeff", "²", "١", "😀", "%00", "'", '"', "\\",
]  # fmt: skip
specials = st.sampled_from(SPECIALS)
ascii_id = st.from_regex(r"[A-Za-z0-9._:@-]{1,12}", fullmatch=True)
HUGE_INTS = [0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 + 1, -(2**63) - 1, 10**40]
evil_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=24),
    st.builds(lambda a, s, b: a + s + b, ascii_id, specials, ascii_id),
    st.sampled_from([129, 257, 300, 513, 2001, 2049, 4097, 8193]).map(lambda n: "a" * n),
    st.sampled_from(HUGE_INTS).map(str),
    specials,
)
huge_ints = st.sampled_from(HUGE_INTS) | st.integers()
evil_value = st.one_of(
    evil_text,
    huge_ints,
    st.none(),
    st.booleans(),
    st.floats(),
    st.lists(evil_text, max_size=3),
    st.dictionaries(evil_text, evil_text, max_size=2),
)


def dumps(value: Any) -> bytes:
    # Lone surrogates leave json.dumps as \\udXXX escapes, as an attacker would send them.
    return json.dumps(value).encode()


def form_body(fields: list[tuple[str, str]]) -> bytes:
    def encode(text: str) -> str:
        return quote_plus(text.encode("utf-8", "surrogatepass"))

    return "&".join(f"{encode(k)}={encode(v)}" for k, v in fields).encode()


def header_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def path_id(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def check(response: httpx.Response, secret_values: list[str]) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    text = response.text
    assert "Traceback" not in text and 'File "/' not in text
    if not response.is_success:
        assert isinstance(response.json().get("error"), str), text[:300]
    for secret in secret_values:
        assert secret not in text


def mutate(data: st.DataObject, body: dict[str, Any], paths: list[tuple[str, ...]]) -> Any:
    """Replace, delete or add one to three fields of ``body`` (nested by ``paths``)."""
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent: Any = body
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(evil_value)
        elif action == "delete":
            parent.pop(path[-1], None)
        else:
            parent[data.draw(evil_text)] = data.draw(evil_value)
    return body


# ------------------------------------------------------------------------ IdP


def proof_for(
    data: st.DataObject, key: PopKey, path: str, *, body: bytes, token: str | None = None
) -> str:
    """Usually a valid proof; sometimes one with spoilt claims or JWK members."""
    if data.draw(st.integers(0, 4)):
        return create_proof(key, "POST", ISSUER + path, token=token, body=body)
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(8),
        "htm": "POST",
        "htu": ISSUER + path,
        "iat": int(time.time()),
    }
    jwk = dict(key.public_jwk)
    target = data.draw(st.sampled_from(["jti", "htm", "htu", "iat", "nonce", "jwk.alg", "jwk.kid"]))
    if target.startswith("jwk."):
        jwk[target[4:]] = data.draw(evil_value)
    else:
        claims[target] = data.draw(evil_value)
    return key.sign(claims, {"typ": "dpop+jwt", "jwk": jwk})


def json_request(target: IdPTarget, data: st.DataObject) -> tuple[str, list[Any], bytes]:
    """A valid request to one of the JSON endpoints, then spoilt."""
    t = target
    agent = t.agents["supervisor"]
    endpoint = data.draw(
        st.sampled_from(
            ["clients", "workflows", "users", "admin-revoke", "approve", "agents", "batch",
             "rotate", "runs", "revoke"]
        )
    )  # fmt: skip
    admin = [(b"authorization", f"Bearer {ADMIN}".encode())]
    client = [(b"authorization", t.client.basic["Authorization"].encode())]
    manifest = reference_manifest("planner").model_dump(mode="json")
    step = ("manifest",)
    if endpoint == "clients":
        body: dict[str, Any] = {
            "client_id": "c-" + secrets.token_hex(4),
            "scopes": ["repo:read"],
            "auth_method": "client_secret_basic",
            "shim_checksums": ["a" * 64],
            "allow_runtime_registration": True,
        }
        fields = [("client_id",), ("scopes",), ("auth_method",), ("shim_checksums",), ("jwks",)]
        return "/admin/clients", admin, dumps(mutate(data, body, fields))
    if endpoint == "workflows":
        body = reference_workflow().canonical() | {"id": "w-" + secrets.token_hex(3)}
        fields = [("id",), ("version",), ("steps",), ("steps", "triage", "agent"),
                  ("steps", "triage", "tools"), ("steps", "plan", "scopes"),
                  ("steps", "plan", "after")]  # fmt: skip
        return "/admin/workflows", admin, dumps(mutate(data, body, fields))
    if endpoint == "users":
        body = {"subject": "user:alice", "lifetime": 600}
        return "/admin/users/token", admin, dumps(mutate(data, body, [("subject",), ("lifetime",)]))
    if endpoint in ("admin-revoke", "revoke"):
        body = {"kind": "run", "id": "run-" + secrets.token_hex(4)}
        return (
            "/revocations",
            admin if endpoint == "admin-revoke" else client,
            dumps(mutate(data, body, [("kind",), ("id",)])),
        )
    if endpoint == "approve":
        body = {"approved_by": "ops"}
        path = f"/admin/runs/{t.run_id}/steps/plan/approve"
        return path, admin, dumps(mutate(data, body, [("approved_by",)]))
    if endpoint == "runs":
        body = {"workflow_id": "vuln-patch", "workflow_version": 1,
                "subject_token": t.user_token, "intent": "patch"}  # fmt: skip
        fields = [("workflow_id",), ("workflow_version",), ("subject_token",), ("intent",)]
        return "/runs", client, dumps(mutate(data, body, fields))
    key = PopKey.generate()
    if endpoint == "rotate":
        path = f"/agents/{agent.registration_id}/rotate"
        body = {"proof": proof_for(data, key, path, body=b""), "expires_in": 3600}
        return (
            path,
            client,
            dumps(mutate(data, body, [("expires_in",), ("retire_previous",), ("proof",)])),
        )
    path = "/agents" if endpoint == "agents" else "/agents/batch"
    item = {"manifest": manifest, "proof": proof_for(data, key, path, body=b""), "expires_in": 3600}
    fields = [(*step, name) for name in ("agent_id", "prompt", "tools", "config", "v")]
    fields += [("expires_in",), ("proof",), ("manifest",)]
    mutate(data, item, fields)
    body = item if endpoint == "agents" else {"agents": [item]}
    return path, client, dumps(body)


@fuzz(300)
@given(data=st.data())
def test_idp_json_endpoints_survive_spoilt_fields(target: IdPTarget, data: st.DataObject) -> None:
    path, headers, body = json_request(target, data)
    headers = [*headers, (b"content-type", b"application/json")]
    response = target.harness.request("POST", path, headers=headers, content=body)
    CASES[f"idp-json-{target.backend}"] += 1
    check(response, target.secrets)


def token_form(target: IdPTarget, data: st.DataObject) -> tuple[list[tuple[str, str]], Any]:
    """A valid mint or exchange form, then spoilt field by field."""
    agent = target.agents["supervisor"]
    fields = {
        "grant_type": "urn:ajwt:params:oauth:grant-type:agent-checksum",
        "agent_id": agent.agent_id,
        "agent_checksum": agent.checksum,
        "run_id": target.run_id,
        "step": "triage",
        "tool": "list_repos",
        "resource": RESOURCE,
        "scope": "repo:read",
        "input_digest": "sha256:" + "0" * 64,
    }
    if data.draw(st.integers(0, 2)) == 0:
        planner = target.agents["planner"]
        assertion = planner.key.sign(
            {
                "iss": data.draw(st.just("agent:supervisor") | evil_text),
                "sub": "agent:planner",
                "aud": ISSUER,
                "intent_id": data.draw(st.just("intent-x") | evil_text),
                "run_id": target.run_id,
                "from_step": "triage",
                "to_step": "plan",
                "scope": data.draw(st.just("repo:read") | evil_text),
                "parent": "sha256:" + "0" * 64,
                "iat": int(time.time()),
                "exp": int(time.time()) + 30,
                "jti": data.draw(evil_text),
            },
            {"typ": "delegation+jwt"},
        )
        fields |= {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "agent_id": "planner",
            "agent_checksum": planner.checksum,
            "step": "plan",
            "tool": "read_file",
            "subject_token": target.parent_token,
            "subject_token_type": "urn:ajwt:params:oauth:token-type:intent",
            "actor_token": assertion,
            "actor_token_type": "urn:ajwt:params:oauth:token-type:delegation",
        }
        agent = planner
    pairs = list(fields.items())
    # Mostly one spoilt field among valid ones, so the request reaches that field's use.
    for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 3, 0]))):
        index = data.draw(st.integers(0, len(pairs) - 1))
        action = data.draw(st.sampled_from(["replace"] * 4 + ["drop", "repeat", "add"]))
        name, _value = pairs[index]
        if action == "replace":
            pairs[index] = (name, data.draw(evil_text))
        elif action == "drop":
            del pairs[index]
        elif action == "repeat":
            pairs.append((name, data.draw(evil_text)))
        else:
            pairs.append((data.draw(evil_text), data.draw(evil_text)))
    return pairs, agent


def client_authorization(target: IdPTarget, data: st.DataObject) -> bytes:
    choice = data.draw(st.integers(0, 8))
    if choice <= 5:
        return target.client.basic["Authorization"].encode()
    if choice == 6:
        jti = data.draw(evil_text)
        assertion = target.harness.client_assertion(target.key_client, target.client_key, jti)
        return f"Client-Assertion {assertion}".encode()
    if choice == 7:
        claims = {k: data.draw(evil_value) for k in ("iss", "sub", "jti")}
        # No kid: the client's one registered key is used, so the claims are checked.
        header = {"typ": "client-authentication+jwt"}
        assertion = target.client_key.sign(claims, header)
        return f"Client-Assertion {assertion}".encode()
    user, secret = data.draw(evil_text), data.draw(evil_text)
    return header_bytes(basic(quote(user.encode("utf-8", "surrogatepass")), secret[:20]))


@fuzz(400)
@given(data=st.data())
def test_token_endpoint_survives_spoilt_form_fields(target: IdPTarget, data: st.DataObject) -> None:
    pairs, agent = token_form(target, data)
    body = form_body(pairs)
    headers = [
        (b"authorization", client_authorization(target, data)),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"dpop", header_bytes(proof_for(data, agent.key, "/token", body=body))),
    ]
    response = target.harness.request("POST", "/token", headers=headers, content=body)
    CASES[f"idp-token-{target.backend}"] += 1
    check(response, target.secrets)


PATHS = [
    ("GET", "/runs/{}/status", None),
    ("GET", "/runs/{}/status?registration_id={}", None),
    ("GET", "/runs/{}/ledger", "client"),
    ("GET", "/runs/{}/ledger", "admin"),
    ("GET", "/runs/{}/ledger/verify", "client"),
    ("GET", "/workflows/{}/1", "client"),
    ("GET", "/workflows/vuln-patch/{}", "client"),
    ("POST", "/agents/{}/rotate", "client"),
    ("POST", "/runs/{}/steps/{}/complete", "client"),
    ("POST", "/admin/runs/{}/steps/{}/approve", "admin"),
]


@fuzz(200)
@given(data=st.data())
def test_idp_path_ids_and_headers_survive_anything(target: IdPTarget, data: st.DataObject) -> None:
    method, template, auth = data.draw(st.sampled_from(PATHS))
    ids = [path_id(data.draw(evil_text | st.just(target.run_id))) for _ in range(2)]
    path = template.format(*ids[: template.count("{}")])
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if auth == "admin":
        headers.append((b"authorization", data.draw(st.sampled_from(
            [f"Bearer {ADMIN}".encode(), b"Bearer \xe9", "Bearer é".encode(), b"Bearer \x00"]
        ))))  # fmt: skip
    elif auth == "client":
        headers.append((b"authorization", client_authorization(target, data)))
    agent = target.agents["supervisor"]
    token = data.draw(st.just(target.parent_token) | evil_text)
    headers.append((b"x-ajwt-token", header_bytes("DPoP " + token)))
    ath = token if token.isascii() else None
    headers.append(
        (b"dpop", header_bytes(proof_for(data, agent.key, path.split("?")[0], body=b"", token=ath)))
    )
    body = dumps({"approved_by": data.draw(evil_text), "proof": data.draw(evil_text)})
    response = target.harness.request(method, path, headers=headers, content=body)
    CASES[f"idp-path-{target.backend}"] += 1
    check(response, target.secrets)


texts = st.text(st.characters(codec="latin-1"), max_size=300)
jwt_like = st.builds(
    lambda a, b, c: f"{a}.{b}.{c}",
    st.from_regex(r"[A-Za-z0-9_-]{0,80}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{0,200}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{0,90}", fullmatch=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)
bodies = (
    st.binary(max_size=500)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(["grant_type", "agent_id", "run_id", "subject_token", "resource", "x"]),
        texts | jwt_like,
    ).map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8", "replace"))
)
IDP_PATHS = [
    "/token", "/agents", "/agents/batch", "/agents/reg-1/rotate", "/runs", "/runs/run-1/status",
    "/runs/run-1/ledger", "/runs/run-1/ledger/verify", "/runs/run-1/steps/plan/complete",
    "/revoke", "/introspect", "/revocations", "/workflows/vuln-patch/1", "/admin/clients",
    "/admin/workflows", "/admin/users/token", "/admin/runs/run-1/steps/plan/approve",
    "/.well-known/jwks.json", "/.well-known/oauth-authorization-server",
]  # fmt: skip


def _raw_headers(
    auth: str | None, dpop: str | None, content_type: str
) -> list[tuple[bytes, bytes]]:
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    if dpop is not None:
        headers["DPoP"] = dpop
    # Raw bytes: the client must not clean up what an attacker would send as is.
    return [(k.encode(), v.encode("latin-1", "replace")) for k, v in headers.items()]


@fuzz(300)
@given(data=st.data())
def test_idp_endpoints_survive_malformed_input(target: IdPTarget, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    path = data.draw(st.sampled_from(IDP_PATHS) | texts.map(lambda t: "/" + t.lstrip("/")))
    auth = data.draw(
        st.one_of(
            st.none(),
            st.just(f"Bearer {ADMIN}"),
            st.just(target.client.basic["Authorization"]),
            st.builds(lambda t: f"DPoP {t}", jwt_like),
            st.builds(lambda t: f"Client-Assertion {t}", jwt_like),
            texts,
        )
    )
    headers = _raw_headers(
        auth,
        data.draw(st.none() | jwt_like | texts),
        data.draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        ),
    )
    try:
        response = target.harness.request(method, path, headers=headers, content=data.draw(bodies))
    except httpx.InvalidURL:
        return  # the client refused to build the request; nothing reached the server
    CASES[f"idp-raw-{target.backend}"] += 1
    check(response, target.secrets)


# --------------------------------------------------------------- resource server

RS_PATHS = [
    "/repos",
    "/repos/acme/storefront/files/package.json",
    "/advisories",
    "/repos/a/b/pulls",
]


@fuzz(300)
@given(data=st.data())
def test_resource_server_survives_malformed_input(rs_target: RsTarget, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["GET", "POST"]))
    path = data.draw(st.sampled_from(RS_PATHS))
    auth = data.draw(
        st.one_of(st.none(), st.builds(lambda t: f"DPoP {t}", jwt_like), st.just("Bearer x"), texts)
    )
    headers = _raw_headers(auth, data.draw(st.none() | jwt_like | texts), "application/json")
    response = rs_target.send(method, path, headers, data.draw(bodies))
    CASES["rs-raw"] += 1
    check(response, [])
    assert response.status_code in (400, 401, 403, 413)


@fuzz(300)
@given(data=st.data())
def test_resource_server_survives_spoilt_tokens_and_proofs(
    rs_target: RsTarget, data: st.DataObject
) -> None:
    """A token the IdP's key signed and a proof the agent's key signed, with spoilt
    claims: reached by anyone holding a token (a non-ASCII nonce was a 500)."""
    method, path = "GET", data.draw(st.sampled_from(RS_PATHS[:3]))
    overrides = {}
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from(["run_id", "step", "tool", "workflow_id", "id"]))
        overrides[name] = data.draw(evil_text.filter(lambda s: 0 < len(s) <= 512))
    try:
        token = rs_target.token(**overrides)
    except ValueError:
        token = rs_target.token()
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(8),
        "htm": method,
        "htu": RS_AUDIENCE + path,
        "iat": int(time.time()),
        "nonce": rs_target.nonces.issue(),
        "ath": None,
        "bh": None,
    }
    from ajwt_core.dpop import access_token_hash, body_hash

    claims["ath"], claims["bh"] = access_token_hash(token), body_hash(b"")
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(claims)))
        if name == "nonce" and data.draw(st.booleans()):
            window = rs_target.nonces.issue().partition(".")[0]
            claims[name] = window + "." + data.draw(evil_text)
        else:
            claims[name] = data.draw(evil_value)
    key = rs_target.agent_key
    proof = key.sign(claims, {"typ": "dpop+jwt", "jwk": key.public_jwk})
    headers = [
        (b"authorization", f"DPoP {token}".encode()),
        (b"dpop", proof.encode()),
        (b"x-shim-checksum", header_bytes(data.draw(evil_text))),
    ]
    response = rs_target.send(method, path, headers, b"")
    CASES["rs-signed"] += 1
    check(response, [])


# ------------------------------------------------------------------- schemathesis


def _run_operation(op: Any, target: IdPTarget) -> int:
    """Drive one OpenAPI operation with schemathesis' generated cases; returns how many."""
    ran = 0
    auth = (
        f"Bearer {ADMIN}" if op.path.startswith("/admin") else target.client.basic["Authorization"]
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        nonlocal ran
        case.headers = {**(case.headers or {}), "Authorization": auth}
        response = case.call()
        ran += 1
        assert response.status_code < 500, (op.path, response.status_code, response.text)
        assert "Traceback" not in response.text
        for secret in target.secrets:
            assert secret not in response.text

    run()
    return ran


def test_schemathesis_drives_the_idp_openapi_document(target: IdPTarget) -> None:
    if target.backend != "sqlite":
        # schemathesis calls the app from event loops of its own; asyncpg's pool belongs
        # to the harness loop. The hypothesis tests above cover PostgreSQL.
        pytest.skip("schemathesis runs against the SQLite IdP")
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.idp)
    count = 0
    for operation in schema.get_all_operations():
        count += _run_operation(operation.ok(), target)
    CASES["schemathesis"] += count
    assert count > 100
    print(f"\nfuzz cases run: {dict(CASES)}")
