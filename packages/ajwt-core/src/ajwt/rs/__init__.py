"""Resource-server verification of A-JWT requests (extra ``rs``): DESIGN §7."""

from ajwt.rs.jwks import JWKSCache
from ajwt.rs.middleware import AJWTMiddleware, Route
from ajwt.rs.nonce import NonceManager
from ajwt.rs.policy import RoutePolicy
from ajwt.rs.stores import (
    IdPRevocationChecker,
    MemoryReplayStore,
    RedisReplayStore,
    RedisRevocationChecker,
)
from ajwt.rs.verifier import VerifiedRequest, Verifier

__all__ = [
    "AJWTMiddleware",
    "IdPRevocationChecker",
    "JWKSCache",
    "MemoryReplayStore",
    "NonceManager",
    "RedisReplayStore",
    "RedisRevocationChecker",
    "Route",
    "RoutePolicy",
    "VerifiedRequest",
    "Verifier",
]
