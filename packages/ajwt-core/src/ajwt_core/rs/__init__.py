"""Resource-server verification of A-JWT requests (extra ``rs``): DESIGN §7.

ASGI apps (FastAPI, Starlette, Django) use :class:`AJWTMiddleware` (FastAPI also
``ajwt_core.rs.fastapi``); WSGI apps (Flask) use ``ajwt_core.rs.wsgi.AJWTWSGIMiddleware``.
:meth:`Verifier.for_idp` builds the verifier from the IdP's URL.
"""

from ajwt_core.rs.jwks import JWKSCache
from ajwt_core.rs.middleware import AJWTMiddleware, Route
from ajwt_core.rs.names import IntrospectionNames, NameMap, NameResolver
from ajwt_core.rs.nonce import NonceManager
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.revocation_feed import (
    IdPFeedSource,
    RedisFeedSource,
    RevocationFeed,
    StaticSource,
)
from ajwt_core.rs.stores import (
    IdPRevocationChecker,
    MemoryReplayStore,
    RedisReplayStore,
    RedisRevocationChecker,
)
from ajwt_core.rs.verifier import VerifiedRequest, Verifier

__all__ = [
    "AJWTMiddleware",
    "IdPFeedSource",
    "IdPRevocationChecker",
    "IntrospectionNames",
    "JWKSCache",
    "MemoryReplayStore",
    "NameMap",
    "NameResolver",
    "NonceManager",
    "RedisFeedSource",
    "RedisReplayStore",
    "RedisRevocationChecker",
    "RevocationFeed",
    "Route",
    "RoutePolicy",
    "StaticSource",
    "VerifiedRequest",
    "Verifier",
]
