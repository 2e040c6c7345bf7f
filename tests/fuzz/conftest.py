"""The fuzz targets: an in-process IdP on SQLite and on PostgreSQL (one event loop each,
requests sent over ASGI exactly as drawn), walked up to a live run so the fuzz can
reach the deep checks; and a resource server that requires DPoP nonces."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.rs import NonceManager, Verifier
from ajwt_core.tokens import IntentClaim, IntentTokenClaims, encode_intent_token
from ajwt_demo.api import create_api
from tests.idp.support import (
    ADMIN,
    BACKENDS,
    Agent,
    Client,
    IdPHarness,
    database_url,
)
from tests.services import require_heavy

RS_AUDIENCE = "http://api.fuzz"


@dataclass
class IdPTarget:
    """The IdP with a client, a private_key_jwt client, two agents and an open run."""

    harness: IdPHarness
    backend: str
    client: Client
    key_client: str
    client_key: PopKey
    agents: dict[str, Agent]
    run_id: str
    user_token: str
    parent_token: str
    secrets: list[str]

    @property
    def idp(self) -> Any:
        return self.harness.app


@pytest.fixture(scope="module", params=BACKENDS)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdPTarget]:
    require_heavy()
    with database_url(request.param, tmp_path_factory.mktemp("fuzz")) as url:
        harness = IdPHarness(url)
        try:
            client = harness.new_client()
            client_key = PopKey.generate()
            key_client = harness.new_key_client(client_key)
            agents = {
                name: harness.register_agent(client, name) for name in ("supervisor", "planner")
            }
            run_id = harness.start_run(client)
            minted = harness.token_request(
                client, agents["supervisor"], harness.mint_form(agents["supervisor"], run_id)
            )
            assert minted.status_code == 200, minted.text
            user = harness.request(
                "POST", "/admin/users/token", headers=harness.admin, json={"subject": "user:alice"}
            ).json()["access_token"]
            yield IdPTarget(
                harness=harness,
                backend=request.param,
                client=client,
                key_client=key_client,
                client_key=client_key,
                agents=agents,
                run_id=run_id,
                user_token=user,
                parent_token=minted.json()["access_token"],
                secrets=[ADMIN, client.secret],
            )
        finally:
            harness.close()


@dataclass
class RsTarget:
    """The reference API behind a verifier that requires nonces, and a valid token."""

    app: Any
    keys: SigningKeySet
    agent_key: PopKey
    nonces: NonceManager

    def token(self, **intent_overrides: Any) -> str:
        now = int(time.time())
        intent = {
            "id": "intent-1",
            "initiated_by": "user:alice",
            "workflow_id": "vuln-patch",
            "workflow_version": 1,
            "workflow_hash": "sha256:" + "b" * 64,
            "run_id": "run-1",
            "step": "triage",
            "tool": "list_repos",
            "step_sequence_hash": "sha256:" + "c" * 64,
        }
        from ajwt_core.tokens import AgentClaim, Confirmation, build_act_chain

        claims = IntentTokenClaims(
            iss="http://idp.fuzz",
            aud=RS_AUDIENCE,
            sub="user:alice",
            client_id="app",
            scope="repo:read",
            iat=now,
            nbf=now,
            exp=now + 300,
            jti="jti-" + str(now),
            cnf=Confirmation(jkt=self.agent_key.thumbprint),
            act=build_act_chain(["supervisor"]),
            agent=AgentClaim(
                id="supervisor", checksum="sha256:" + "a" * 64, registration_id="reg-1", version=1
            ),
            intent=IntentClaim(**(intent | intent_overrides)),
        )
        return encode_intent_token(claims, self.keys.active)

    def send(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=RS_AUDIENCE) as client:
                return await client.request(method, path, headers=headers, content=body)

        return asyncio.run(call())


@pytest.fixture(scope="module")
def rs_target() -> RsTarget:
    require_heavy()
    keys = SigningKeySet.generate()
    nonces = NonceManager(b"f" * 32, lifetime=300)
    verifier = Verifier(
        issuer="http://idp.fuzz", audience=RS_AUDIENCE, keys=keys.verification_keys(), nonces=nonces
    )
    api = create_api(verifier, base_url=RS_AUDIENCE)
    return RsTarget(app=api.asgi, keys=keys, agent_key=PopKey.generate(), nonces=nonces)


def basic(client_id: str, secret: str) -> str:
    raw = f"{client_id}:{secret}".encode("utf-8", "surrogatepass")
    return "Basic " + base64.b64encode(raw).decode()
