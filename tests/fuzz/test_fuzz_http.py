"""Issue 8 fuzzing: hypothesis drives every IdP endpoint and the resource-server
middleware with malformed input; schemathesis drives the IdP from its OpenAPI document.
No response is ≥ 500, none carries a stack trace or a secret."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import ADMIN, FuzzTargets

pytestmark = pytest.mark.heavy
CASES: Counter[str] = Counter()

IDP_PATHS = [
    "/token",
    "/agents",
    "/agents/batch",
    "/agents/reg-1/rotate",
    "/runs",
    "/runs/run-1/status",
    "/runs/run-1/ledger",
    "/runs/run-1/ledger/verify",
    "/runs/run-1/steps/plan/complete",
    "/revoke",
    "/workflows/vuln-patch/1",
    "/admin/clients",
    "/admin/workflows",
    "/admin/users/token",
    "/admin/revoke",
    "/admin/runs/run-1/steps/plan/approve",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
]
RS_PATHS = [
    "/repos",
    "/repos/acme/storefront/files/package.json",
    "/advisories",
    "/repos/a/b/pulls",
]

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


def authorization(targets: FuzzTargets) -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.just(f"Bearer {ADMIN}"),
        st.just(f"Basic {targets.client_basic}"),
        st.builds(lambda t: f"DPoP {t}", jwt_like),
        st.builds(lambda t: f"Client-Assertion {t}", jwt_like),
        texts,
    )


def send(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as client:
            return await client.request(method, path, headers=headers, content=body)

    return asyncio.run(call())


def check(response: httpx.Response, secrets: list[str]) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    text = response.text
    assert "Traceback" not in text and 'File "/' not in text
    if not response.is_success:
        assert isinstance(response.json().get("error"), str), text[:300]
    for secret in secrets:
        assert secret not in text


def _headers(auth: str | None, dpop: str | None, content_type: str) -> list[tuple[bytes, bytes]]:
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    if dpop is not None:
        headers["DPoP"] = dpop
    # Raw bytes: the client must not clean up what an attacker would send as is.
    return [(k.encode(), v.encode("latin-1", "replace")) for k, v in headers.items()]


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_idp_endpoints_survive_malformed_input(targets: FuzzTargets, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    path = data.draw(st.sampled_from(IDP_PATHS) | texts.map(lambda t: "/" + t.lstrip("/")))
    headers = _headers(
        data.draw(authorization(targets)),
        data.draw(st.none() | jwt_like | texts),
        data.draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        ),
    )
    try:
        response = send(targets.idp, method, path, headers, data.draw(bodies))
    except httpx.InvalidURL:
        return  # the client refused to build the request; nothing reached the server
    CASES["idp"] += 1
    check(response, targets.secrets)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_resource_server_survives_malformed_input(
    targets: FuzzTargets, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(["GET", "POST"]))
    path = data.draw(st.sampled_from(RS_PATHS))
    headers = _headers(
        data.draw(authorization(targets)),
        data.draw(st.none() | jwt_like | texts),
        "application/json",
    )
    response = send(targets.rs, method, path, headers, data.draw(bodies))
    CASES["rs"] += 1
    check(response, targets.secrets)
    assert response.status_code in (400, 401, 403, 413)


def _run_operation(op: Any, targets: FuzzTargets) -> int:
    """Drive one OpenAPI operation with schemathesis' generated cases; returns how many."""
    ran = 0
    auth = f"Bearer {ADMIN}" if op.path.startswith("/admin") else f"Basic {targets.client_basic}"

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        nonlocal ran
        case.headers = {**(case.headers or {}), "Authorization": auth}
        response = case.call()
        ran += 1
        assert response.status_code < 500, (op.path, response.status_code, response.text)
        assert "Traceback" not in response.text
        for secret in targets.secrets:
            assert secret not in response.text

    run()
    return ran


def test_schemathesis_drives_the_idp_openapi_document(targets: FuzzTargets) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", targets.idp)
    count = 0
    for operation in schema.get_all_operations():
        count += _run_operation(operation.ok(), targets)
    CASES["schemathesis"] += count
    assert count > 100
    print(f"\nfuzz cases run: {dict(CASES)}")
