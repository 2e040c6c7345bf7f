"""The reference resource server as an ASGI app factory for uvicorn workers:
``uvicorn --factory ajwt_demo.asgi:api_from_env --workers N``.

``AJWT_RS_ISSUER`` (the IdP), ``AJWT_RS_AUDIENCE`` (this API's identifier and public base
URL), ``AJWT_RS_REDIS_URL`` (shared replay cache and revocations; without it, in-memory
replay and the IdP's status endpoint), ``AJWT_RS_NONCE_SECRET`` (hex; shared by the
workers to issue DPoP nonces; unset: no nonces).
"""

from __future__ import annotations

import os
from typing import Any

from ajwt_core.rs import (
    IdPRevocationChecker,
    JWKSCache,
    NonceManager,
    RedisReplayStore,
    RedisRevocationChecker,
    Verifier,
)
from ajwt_demo.api import create_api


def api_from_env() -> Any:
    issuer = os.environ["AJWT_RS_ISSUER"].rstrip("/")
    audience = os.environ["AJWT_RS_AUDIENCE"].rstrip("/")
    redis_url = os.environ.get("AJWT_RS_REDIS_URL")
    nonce_secret = os.environ.get("AJWT_RS_NONCE_SECRET")
    verifier = Verifier(
        issuer=issuer,
        audience=audience,
        keys=JWKSCache(f"{issuer}/.well-known/jwks.json", min_refresh=1.0, max_age=5.0),
        replay=RedisReplayStore.from_url(redis_url) if redis_url else None,
        # Redis holds what the IdP publishes; until it has (a fresh or wiped Redis, an
        # IdP without --redis) the status endpoint answers instead.
        revocation=(
            RedisRevocationChecker.from_url(
                redis_url, fallback=IdPRevocationChecker(issuer, ttl=2.0)
            )
            if redis_url
            else IdPRevocationChecker(issuer, ttl=2.0)
        ),
        nonces=NonceManager(bytes.fromhex(nonce_secret)) if nonce_secret else None,
    )
    return create_api(verifier, base_url=audience).asgi
