"""IdP features beyond the happy path: upstream subject tokens, approvals, agent key
rotation, DPoP nonces at the resource server, discovery documents."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ajwt_core.dpop import create_proof
from ajwt_core.errors import AccessDenied, InvalidGrant, Reason
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.rs import JWKSCache, NonceManager, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifest
from ajwt_demo.api import create_api
from ajwt_demo.stack import ADMIN_TOKEN, Stack


def test_discovery_documents(stack: Stack) -> None:
    with httpx.Client(base_url=stack.idp_url) as http:
        meta = http.get("/.well-known/oauth-authorization-server").json()
        jwks = http.get("/.well-known/jwks.json").json()
        shims = http.get("/.well-known/ajwt-shims").json()
    assert meta["issuer"] == stack.idp_url
    assert meta["token_endpoint"] == stack.idp_url + "/token"
    assert "urn:ajwt:params:oauth:grant-type:agent-checksum" in meta["grant_types_supported"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in meta["grant_types_supported"]
    assert "urn:ajwt:params:oauth:token-type:intent" in meta["token_types_supported"]
    assert meta["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert all("d" not in key for key in jwks["keys"])
    assert shims["accepted"] and shims["accepted"][0].startswith("sha256=")


@pytest.fixture(scope="module")
def upstream_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, AdminClient, rsa.RSAPrivateKey]]:
    """An IdP that trusts an upstream OIDC provider (RSA keys, given as a JWKS)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    server = BackgroundServer()
    settings = IdPSettings(
        issuer=server.url,
        db_url=f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('up')}/idp.db",
        admin_token=ADMIN_TOKEN,
        local_users=False,
        upstream_issuer="https://login.example.com/",
        upstream_audience="ajwt-idp",
        upstream_jwks={"keys": [jwk | {"kid": "up-1", "alg": "RS256"}]},
    )
    server.start(create_app(settings))
    admin = AdminClient(server.url, ADMIN_TOKEN)
    admin.register_workflow(reference_workflow().canonical())
    yield server.url, admin, private
    admin.close()
    server.close()


def _upstream_token(private: rsa.RSAPrivateKey, **claims: object) -> str:
    now = int(time.time())
    body = {
        "iss": "https://login.example.com/",
        "sub": "auth0|alice",
        "aud": ["ajwt-idp", "other"],
        "iat": now,
        "exp": now + 600,
    } | claims
    return jwt.encode(body, private, algorithm="RS256", headers={"kid": "up-1"})


def test_run_rooted_in_an_upstream_oidc_token(
    upstream_stack: tuple[str, AdminClient, rsa.RSAPrivateKey],
) -> None:
    url, admin, private = upstream_stack
    client = admin.register_client(scopes=["repo:read"])
    shim = Shim(url, client["client_id"], client_secret=client["client_secret"])
    shim.register(reference_manifest("supervisor"))
    run = shim.start_run(_upstream_token(private), "vuln-patch")
    # Namespaced by its issuer: no local or other issuer's user can have this subject.
    assert run.initiated_by == "https://login.example.com/#auth0|alice"
    with pytest.raises(InvalidGrant) as info:
        shim.start_run(_upstream_token(private, aud="someone-else"), "vuln-patch")
    assert info.value.reason == Reason.WRONG_AUDIENCE
    with pytest.raises(InvalidGrant) as info:
        shim.start_run(_upstream_token(private, exp=int(time.time()) - 3600), "vuln-patch")
    assert info.value.reason == Reason.TOKEN_EXPIRED
    # Local user tokens are off on this IdP.
    with pytest.raises(AccessDenied) as denied:
        admin.user_token("user:alice")
    assert denied.value.reason == Reason.LOCAL_USERS_DISABLED


def test_step_requiring_approval_waits_for_it(stack: Stack) -> None:
    definition = reference_workflow().canonical()
    definition["id"] = "vuln-patch-approved"
    definition["steps"]["patch"]["approval"] = True
    stack.admin.register_workflow(definition)
    shim = stack.shim()
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch-approved")
    for step, agent in (("triage", "supervisor"), ("plan", "planner"), ("classify", "classifier")):
        if step != "triage":
            shim.handoff("supervisor", agent, step, run=run, audience=stack.rs_url)
        shim.complete(agent, step, run=run, audience=stack.rs_url)
    with pytest.raises(AccessDenied) as info:
        shim.handoff("supervisor", "patcher", "patch", run=run, audience=stack.rs_url)
    assert info.value.reason == Reason.APPROVAL_REQUIRED
    stack.admin.approve(run.run_id, "patch", "user:alice")
    issued = shim.handoff("supervisor", "patcher", "patch", run=run, audience=stack.rs_url)
    assert issued.step == "patch"


def test_agent_key_rotation_endpoint(stack: Stack) -> None:
    from ajwt_core.keys import PopKey

    shim = stack.shim()
    old = shim.agent("supervisor")
    new_key = PopKey.generate()
    url = f"{stack.idp_url}/agents/{old.registration_id}/rotate"
    request = shim._json_request(
        "POST",
        f"/agents/{old.registration_id}/rotate",
        {"proof": create_proof(new_key, "POST", url), "retire_previous": True},
    )
    with httpx.Client() as http:
        response = http.send(request)
    assert response.status_code == 201, response.text
    rotated = response.json()
    # A new key for the same checksum: the same agent version (DESIGN §12 Governance).
    assert rotated["version"] == old.version
    assert rotated["registration_id"] != old.registration_id
    assert rotated["checksum"] == old.checksum
    assert rotated["jkt"] == new_key.thumbprint
    # The old key is retired: minting with it is refused as an expired registration's key.
    run = stack.start_run(shim)
    with (
        pytest.raises(InvalidGrant) as info,
        shim.acting("supervisor", tool="list_repos", run=run) as context,
    ):
        shim.token(context, stack.rs_url)
    assert info.value.reason == Reason.POP_KEY_MISMATCH


def test_resource_server_nonce_challenge_is_answered_once(stack: Stack) -> None:
    server = BackgroundServer()
    verifier = Verifier(
        issuer=stack.idp_url,
        audience=server.url,
        keys=JWKSCache(stack.idp_url + "/.well-known/jwks.json"),
        nonces=NonceManager(),
    )
    server.start(create_api(verifier).asgi)
    try:
        shim = stack.shim()
        run = stack.start_run(shim)
        sent: list[str] = []  # the DPoP header of each request as it went out

        def record(request: httpx.Request) -> None:
            sent.append(request.headers["DPoP"])

        with (
            httpx.Client(
                base_url=server.url, auth=shim.auth(), event_hooks={"request": [record]}
            ) as http,
            shim.acting("supervisor", tool="list_repos", run=run),
        ):
            first = http.get("/repos")
            second = http.get("/repos")
        assert first.status_code == 200 and second.status_code == 200
        # First request: challenged (no nonce), retried once with the nonce; the second
        # request already carries the latest nonce.
        assert len(sent) == 3
        nonces = [jwt.decode(p, options={"verify_signature": False}).get("nonce") for p in sent]
        assert nonces[0] is None and nonces[1] and nonces[2]
    finally:
        server.close()


def test_admin_workflow_registration_refuses_repeated_keys(stack: Stack) -> None:
    # Two steps with one id: FastAPI's JSON parsing would keep the last; the IdP refuses.
    body = (
        '{"id": "dup", "version": 1, "steps": {'
        '"a": {"agent": "x", "tools": ["t"]}, "a": {"agent": "mallory", "tools": ["rm"]}}}'
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    response = httpx.post(stack.idp_url + "/admin/workflows", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["ajwt_reason"] == "invalid_workflow"
    assert "repeats the key 'a'" in response.json()["error_description"]
    fine = body.replace('"a": {"agent": "mallory"', '"b": {"agent": "mallory"')
    assert (
        httpx.post(stack.idp_url + "/admin/workflows", content=fine, headers=headers).status_code
        == 201
    )
