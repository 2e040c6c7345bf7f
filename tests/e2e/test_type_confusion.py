"""Intent tokens are RFC 9068 access tokens (``typ: at+jwt``) since issue 16, like the
IdP's local user tokens: every other token presented as an intent token is still
refused, by ``typ``, by the required claims, by issuer (key) or by audience (DESIGN §5.1).
At the resource server here; at the IdP (parent token, run start) in
``tests/idp/test_oauth_endpoints.py``.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import httpx

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.keys import SigningKeySet
from ajwt_core.shim import Shim
from ajwt_core.tokens import DelegationClaims, encode_delegation_assertion
from ajwt_demo.agents import reference_manifests
from ajwt_demo.stack import Stack
from tests.e2e.test_threats import raw_call, refusal, token_for

GRANT = "urn:ajwt:params:oauth:grant-type:agent-checksum"


def test_the_resource_server_refuses_every_other_token_as_an_intent_token(stack: Stack) -> None:
    client = stack.new_client()
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    shim.register_many(reference_manifests())
    run = stack.start_run(shim)
    supervisor = shim.agent("supervisor")
    key = supervisor.key
    tool_token = token_for(shim, run, "supervisor", "list_repos", stack.rs_url)

    # A step token: the same grant without a tool; its audience is the IdP.
    form = {
        "grant_type": GRANT,
        "agent_id": "supervisor",
        "agent_checksum": supervisor.checksum,
        "run_id": run.run_id,
    }
    body = urlencode(form).encode()
    minted = httpx.post(
        stack.idp_url + "/token",
        content=body,
        auth=(client["client_id"], client["client_secret"]),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "DPoP": create_proof(key, "POST", stack.idp_url + "/token", body=body),
        },
    ).json()
    now = int(time.time())
    others = {
        "step token": (minted["access_token"], Reason.WRONG_AUDIENCE),
        "local user token (at+jwt of this issuer)": (
            stack.admin.user_token("user:alice"),
            Reason.MISSING_CLAIM,
        ),
        "upstream access token": (
            SigningKeySet.generate().active.sign(
                {
                    "iss": "https://login.example",
                    "sub": "user:alice",
                    "aud": stack.rs_url,
                    "client_id": "web",
                    "iat": now,
                    "exp": now + 300,
                    "jti": "u1",
                },
                {"typ": "at+jwt"},
            ),
            Reason.UNKNOWN_KID,
        ),
        "ledger checkpoint": (minted["ledger_checkpoint"], Reason.WRONG_TYPE),
        "delegation assertion": (
            encode_delegation_assertion(
                DelegationClaims(
                    iss="agent:supervisor",
                    sub="agent:planner",
                    aud=stack.rs_url,
                    intent_id=run.intent_id,
                    run_id=run.run_id,
                    from_step="triage",
                    to_step="plan",
                    scope="repo:read",
                    parent="sha256:" + "0" * 64,
                    iat=now,
                    exp=now + 60,
                    jti="d1",
                ),
                key,
            ),
            Reason.WRONG_TYPE,
        ),
    }
    for name, (token, reason) in others.items():
        response = raw_call(stack.rs_url + "/repos", token, key)
        assert response.json().get("ajwt_reason") == reason.value, (name, response.text)
        refusal(response, 401, reason)
    assert raw_call(stack.rs_url + "/repos", tool_token.token, key).status_code == 200
