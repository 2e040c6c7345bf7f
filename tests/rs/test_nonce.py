"""Server nonces (RFC 9449 §8): a proof's nonce is anyone's text. Issue 12 §2: a nonce of
``<window>.é`` raised TypeError in ``hmac.compare_digest`` (a 500 through
``require_intent`` for anyone holding a token); it is now refused as ``use_dpop_nonce``,
and the nonce the server issued still passes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI, Security

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.rs import NonceManager, Verifier
from ajwt_core.rs.fastapi import install, require_intent
from ajwt_core.tokens import encode_intent_token
from tests.support import AUDIENCE, ISSUER, ClaimsFactory

CLOCK = 1_000_000.0


@pytest.fixture
def nonces() -> NonceManager:
    return NonceManager(b"n" * 32, lifetime=60, clock=lambda: CLOCK)


def _window() -> str:
    return str(int(CLOCK // 60))


@pytest.mark.parametrize(
    "nonce",
    [
        _window() + ".é",
        _window() + ".\x00",
        _window() + ".\ud800",
        "².abc",
        "١٢.abc",
        _window() + "." + "A" * 10_000,
        "",
        ".",
    ],
    ids=repr,
)
def test_foreign_nonces_are_invalid_not_errors(nonces: NonceManager, nonce: str) -> None:
    assert nonces.is_valid(nonce) is False


def test_the_issued_nonce_is_valid(nonces: NonceManager) -> None:
    assert nonces.is_valid(nonces.issue())


def _app(keys: SigningKeySet, nonces: NonceManager) -> FastAPI:
    app = FastAPI()
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, keys=keys.verification_keys(), nonces=nonces
    )
    install(app, verifier, base_url=AUDIENCE)

    @app.get("/repos")
    async def repos(claims: object = Security(require_intent())) -> dict[str, str]:
        return {"ok": "yes"}

    return app


def _call(app: FastAPI, token: str, proof: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=AUDIENCE) as client:
            return await client.get(
                "/repos", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
            )

    return asyncio.run(go())


@pytest.mark.parametrize("forged", [".é", ".\x00"], ids=repr)
def test_require_intent_refuses_a_non_ascii_nonce_with_use_dpop_nonce(
    make_claims: ClaimsFactory, agent_key: PopKey, idp_keys: SigningKeySet, forged: str
) -> None:
    now = int(time.time())
    token = encode_intent_token(make_claims(iat=now, nbf=now, exp=now + 300), idp_keys.active)
    nonces = NonceManager(b"n" * 32, lifetime=60)
    app = _app(idp_keys, nonces)
    window = nonces.issue().partition(".")[0]
    proof = create_proof(
        agent_key, "GET", AUDIENCE + "/repos", token=token, body=b"", nonce=window + forged
    )
    refused = _call(app, token, proof)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "use_dpop_nonce"
    assert refused.json()["ajwt_reason"] == Reason.NONCE_MISMATCH
    # The same request with the nonce the server handed out passes.
    fresh = refused.headers["DPoP-Nonce"]
    proof = create_proof(agent_key, "GET", AUDIENCE + "/repos", token=token, body=b"", nonce=fresh)
    assert _call(app, token, proof).status_code == 200
