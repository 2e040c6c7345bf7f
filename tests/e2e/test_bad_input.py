"""Bad input to every IdP endpoint and to the resource server: a 4xx with an OAuth error
body, never a 500, a stack trace or a secret."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from ajwt_demo.stack import ADMIN_TOKEN, Stack

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

ENDPOINTS: list[tuple[str, str, str]] = [
    # method, path, credential kind
    ("POST", "/admin/clients", "admin"),
    ("POST", "/admin/workflows", "admin"),
    ("POST", "/admin/users/token", "admin"),
    ("POST", "/revocations", "admin"),
    ("POST", "/admin/runs/run-x/steps/plan/approve", "admin"),
    ("POST", "/agents", "client"),
    ("POST", "/agents/batch", "client"),
    ("POST", "/agents/reg-x/rotate", "client"),
    ("POST", "/runs", "client"),
    ("POST", "/runs/run-x/steps/plan/complete", "client"),
    ("POST", "/revocations", "client"),
    ("POST", "/revoke", "client"),
    ("POST", "/introspect", "client"),
    ("POST", "/token", "client"),
    ("GET", "/runs/run-x/status", "none"),
    ("GET", "/runs/run-x/ledger", "client"),
    ("GET", "/runs/run-x/ledger/verify", "client"),
    ("GET", "/workflows/vuln-patch/1", "client"),
    ("GET", "/workflows/vuln-patch/not-a-number", "client"),
    ("GET", "/no/such/endpoint", "none"),
]

BODIES: dict[str, tuple[bytes, str]] = {
    "malformed json": (b'{"scopes": [', "application/json"),
    "json array": (b"[1, 2, 3]", "application/json"),
    "missing fields": (b"{}", "application/json"),
    "wrong types": (b'{"scopes": 7, "manifest": "x", "proof": 1, "kind": 3}', "application/json"),
    "not utf-8": (b"\xff\xfe\xfa", "application/json"),
    "deeply nested": (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json"),
    "form instead of json": (b"a=1&b=2", "application/x-www-form-urlencoded"),
    "xml": (b"<xml/>", "application/xml"),
    "empty": (b"", "application/json"),
    "repeated form field": (
        b"grant_type=agent_checksum&grant_type=x",
        "application/x-www-form-urlencoded",
    ),
}


VALID_AS_IS = {("/admin/clients", "missing fields")}


@pytest.fixture(scope="module")
def client_auth(stack: Stack) -> dict[str, str]:
    client = stack.new_client()
    raw = f"{client['client_id']}:{client['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assert_oauth_error(response: httpx.Response, secrets_: list[str]) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body: Any = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), response.text
    text = response.text
    assert "Traceback" not in text and 'File "' not in text
    for secret in secrets_:
        assert secret not in text


def headers_for(kind: str, client_auth: dict[str, str]) -> dict[str, str]:
    return {"admin": ADMIN, "client": client_auth, "none": {}}[kind]


@pytest.mark.parametrize(("method", "path", "kind"), ENDPOINTS)
@pytest.mark.parametrize("body_name", list(BODIES))
def test_idp_endpoints_refuse_bad_bodies_with_oauth_errors(
    stack: Stack,
    client_auth: dict[str, str],
    method: str,
    path: str,
    kind: str,
    body_name: str,
) -> None:
    body, content_type = BODIES[body_name]
    headers = headers_for(kind, client_auth) | {"Content-Type": content_type}
    with httpx.Client(base_url=stack.idp_url) as http:
        response = http.request(
            method, path, content=body if method == "POST" else None, headers=headers
        )
    if response.is_success:
        # A GET ignores its body, and an empty object is a valid client registration.
        assert method == "GET" or (path, body_name) in VALID_AS_IS, response.text
        return
    assert_oauth_error(response, [ADMIN_TOKEN, client_auth["Authorization"].split()[1]])


@pytest.mark.parametrize(("method", "path", "kind"), ENDPOINTS)
def test_idp_endpoints_refuse_huge_headers(
    stack: Stack, client_auth: dict[str, str], method: str, path: str, kind: str
) -> None:
    headers = headers_for(kind, client_auth) | {"X-Padding": "x" * (64 * 1024)}
    with httpx.Client(base_url=stack.idp_url) as http:
        response = http.request(method, path, headers=headers)
    assert_oauth_error(response, [ADMIN_TOKEN])
    assert response.status_code == 431


@pytest.mark.parametrize(("method", "path", "kind"), [e for e in ENDPOINTS if e[0] == "POST"])
def test_idp_endpoints_refuse_huge_bodies(
    stack: Stack, client_auth: dict[str, str], method: str, path: str, kind: str
) -> None:
    headers = headers_for(kind, client_auth) | {"Content-Type": "application/json"}
    with httpx.Client(base_url=stack.idp_url) as http:
        response = http.request(
            method, path, content=b"[" + b"1," * (1 << 20) + b"1]", headers=headers
        )
    assert_oauth_error(response, [ADMIN_TOKEN])
    assert response.status_code == 413


def test_idp_refuses_wrong_credentials_everywhere(stack: Stack) -> None:
    bad_basic = {"Authorization": "Basic " + base64.b64encode(b"nobody:nothing").decode()}
    for method, path, kind in ENDPOINTS:
        if kind == "none":
            continue
        headers = ADMIN if kind == "client" else bad_basic  # the wrong kind of credential
        with httpx.Client(base_url=stack.idp_url) as http:
            response = http.request(method, path, headers=headers, json={})
        assert_oauth_error(response, [ADMIN_TOKEN])


RS_CASES: dict[str, dict[str, str]] = {
    "no credentials": {},
    "empty authorization": {"Authorization": ""},
    "unknown scheme": {"Authorization": "Negotiate abc"},
    "dpop without proof": {"Authorization": "DPoP a.b.c"},
    "garbage token": {"Authorization": "DPoP not-a-token", "DPoP": "not-a-proof"},
    "huge token": {"Authorization": "DPoP " + "a" * 20000, "DPoP": "x"},
    "huge header": {"X-Padding": "x" * (64 * 1024)},
    "non-ascii": {"Authorization": "DPoP é.é.é", "DPoP": "é"},
}


@pytest.mark.parametrize("case", list(RS_CASES))
@pytest.mark.parametrize(("method", "path"), [("GET", "/repos"), ("POST", "/repos/a/b/pulls")])
def test_resource_server_refuses_bad_requests_with_oauth_errors(
    stack: Stack, case: str, method: str, path: str
) -> None:
    headers = [(k.encode(), v.encode("utf-8")) for k, v in RS_CASES[case].items()]
    with httpx.Client(base_url=stack.rs_url) as http:
        response = http.request(method, path, headers=headers, content=b"{]")
    assert_oauth_error(response, [])
    # A head over 64 KiB is refused by the server itself, typed too (issue 12 §5).
    assert response.status_code in (400, 401, 413, 431)


def test_resource_server_refuses_two_authorization_headers(stack: Stack) -> None:
    request = httpx.Request(
        "GET",
        stack.rs_url + "/repos",
        headers=[("Authorization", "DPoP a.b.c"), ("Authorization", "DPoP d.e.f"), ("DPoP", "x")],
    )
    with httpx.Client() as http:
        response = http.send(request)
    assert_oauth_error(response, [])
    assert response.json()["ajwt_reason"] == "malformed_request"


# Issue 12 §2: each of these answered 500 and logged a ~20 KB traceback, unauthenticated.
ISSUE_12_CASES: dict[str, tuple[str, str, list[tuple[bytes, bytes]], int]] = {
    "non-ascii admin bearer": (
        "POST", "/admin/clients", [(b"authorization", b"Bearer \xe9")], 401,
    ),
    "non-ascii admin bearer on a ledger": (
        "GET", "/runs/run-x/ledger", [(b"authorization", "Bearer é".encode())], 401,
    ),
    "nul in a path id": ("GET", "/runs/a%00b/status", [], 400),
    "control character in a path id": ("GET", "/runs/a%1bb/status", [], 400),
    "nul in a query id": ("GET", "/runs/run-x/status?registration_id=%00", [], 400),
    "huge workflow version": ("GET", f"/workflows/vuln-patch/{2**63}", [], 400),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ISSUE_12_CASES))
def test_issue_12_inputs_are_refused_with_oauth_errors(stack: Stack, case: str) -> None:
    method, path, headers, status = ISSUE_12_CASES[case]
    with httpx.Client(base_url=stack.idp_url) as http:
        response = http.request(
            method, path, headers=[(b"content-type", b"application/json"), *headers], content=b"{}"
        )
        # The connection that carried the refusal serves the next request.
        assert http.get("/.well-known/jwks.json").status_code == 200
    assert response.status_code == status, response.text
    assert_oauth_error(response, [ADMIN_TOKEN])
    assert response.headers["cache-control"] == "no-store"
