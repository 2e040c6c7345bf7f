"""The reference resource server as an ASGI app factory for uvicorn workers:
``uvicorn --factory ajwt_demo.asgi:api_from_env --workers N``.

``AJWT_RS_ISSUER`` (the IdP), ``AJWT_RS_AUDIENCE`` (this API's identifier and public base
URL), ``AJWT_RS_REDIS_URL`` (shared replay cache; without it, in-memory replay),
``AJWT_RS_REVOCATIONS`` (``idp``, the default: follow the IdP's revocation feed
``GET /revocations``; ``redis``: follow what an IdP started with ``--redis`` publishes
in ``AJWT_RS_REDIS_URL``),
``AJWT_RS_NONCE_SECRET`` (hex; shared by the workers to issue DPoP nonces; unset: no
nonces), ``AJWT_RS_REVOCATION_MAX_STALENESS`` (seconds without a feed update before
requests get 503; default 5).
"""

from __future__ import annotations

import os
from typing import Any

from ajwt_core.rs import (
    IdPFeedSource,
    JWKSCache,
    NonceManager,
    RedisFeedSource,
    RedisReplayStore,
    RevocationFeed,
    Verifier,
)
from ajwt_core.rs.revocation_feed import DEFAULT_MAX_STALENESS, FeedSource
from ajwt_demo.api import create_api


def api_from_env() -> Any:
    issuer = os.environ["AJWT_RS_ISSUER"].rstrip("/")
    audience = os.environ["AJWT_RS_AUDIENCE"].rstrip("/")
    redis_url = os.environ.get("AJWT_RS_REDIS_URL")
    nonce_secret = os.environ.get("AJWT_RS_NONCE_SECRET")
    max_staleness = float(os.environ.get("AJWT_RS_REVOCATION_MAX_STALENESS", DEFAULT_MAX_STALENESS))
    follow_redis = os.environ.get("AJWT_RS_REVOCATIONS", "idp") == "redis"
    if follow_redis and not redis_url:
        raise ValueError("AJWT_RS_REVOCATIONS=redis needs AJWT_RS_REDIS_URL")
    source: FeedSource = (
        RedisFeedSource.from_url(redis_url) if follow_redis and redis_url else IdPFeedSource(issuer)
    )
    verifier = Verifier(
        issuer=issuer,
        audience=audience,
        keys=JWKSCache(f"{issuer}/.well-known/jwks.json", min_refresh=1.0, max_age=5.0),
        replay=RedisReplayStore.from_url(redis_url) if redis_url else None,
        # Every worker keeps the revocations in memory, following the IdP's feed or
        # Redis; a feed not updated for max_staleness seconds → 503.
        revocation=RevocationFeed(source, max_staleness=max_staleness),
        nonces=NonceManager(bytes.fromhex(nonce_secret)) if nonce_secret else None,
    )
    return create_api(verifier, base_url=audience).asgi
