"""Resource-server verification of one request, DESIGN §7 in order (first failure wins).

:class:`Verifier` is pure logic over its stores (keys, replay, revocation, nonces); the
ASGI middleware and the FastAPI dependency are thin layers over it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ajwt_core.dpop import DEFAULT_FUTURE_LEEWAY, DEFAULT_MAX_AGE, VerifiedProof, verify_proof
from ajwt_core.errors import AJWTError, InvalidDPoPProof, InvalidToken, Reason
from ajwt_core.integrity import HEADER as SHIM_HEADER
from ajwt_core.keys import KeyResolver
from ajwt_core.rs.jwks import JWKSCache
from ajwt_core.rs.nonce import NonceManager
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.stores import AsyncReplayStore, MemoryReplayStore, RevocationChecker
from ajwt_core.tokens import DEFAULT_LEEWAY, IntentTokenClaims, decode_intent_token

audit = logging.getLogger("ajwt_core.rs.audit")

BearerVerifier = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class VerifiedRequest:
    """What the handler receives: the verified claims and the proof (or a legacy bearer)."""

    claims: IntentTokenClaims | None
    proof: VerifiedProof | None
    bearer_claims: dict[str, Any] | None = None

    @property
    def chain(self) -> list[str]:
        return self.claims.chain if self.claims else []


_SHIM = SHIM_HEADER.lower()
_WANTED = frozenset({"authorization", "dpop", _SHIM})


def _wanted_headers(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The values of the headers the verifier reads, by lower-cased name, in one pass."""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _WANTED:
            found.setdefault(lowered, []).append(value)
    return found


def _single(found: dict[str, list[str]], name: str) -> tuple[int, str | None]:
    """How many ``name`` headers there are, and the first one's value without the
    surrounding whitespace (OWS is not part of a field value, RFC 9110 §5.5)."""
    values = found.get(name, ())
    return len(values), (values[0].strip(" \t") if values else None)


class Verifier:
    """Verifies A-JWT requests for one resource server (one ``audience``).

    ``keys`` is a fixed :class:`~ajwt_core.keys.KeyResolver` or a :class:`JWKSCache` (refreshed
    on an unknown ``kid``). ``token_cache_size`` > 0 remembers verified intent tokens by
    their exact text until they expire, so a token is signature-checked once; the proof
    is always verified.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeyResolver | JWKSCache,
        replay: AsyncReplayStore | None = None,
        revocation: RevocationChecker | None = None,
        nonces: NonceManager | None = None,
        accepted_shims: Collection[str] = (),
        bearer_verifier: BearerVerifier | None = None,
        leeway: int = DEFAULT_LEEWAY,
        proof_max_age: int = DEFAULT_MAX_AGE,
        token_cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._keys = keys
        self.replay = replay or MemoryReplayStore()
        self.revocation = revocation
        self.nonces = nonces
        self.accepted_shims = frozenset(accepted_shims)
        self._bearer = bearer_verifier
        self._leeway = leeway
        self._proof_max_age = proof_max_age
        self._cache_size = token_cache_size
        self._cache: OrderedDict[str, IntentTokenClaims] = OrderedDict()
        self._clock = clock

    @classmethod
    def for_idp(
        cls,
        idp_url: str,
        *,
        audience: str,
        redis_url: str | None = None,
        redis_prefix: str = "ajwt:",
        **options: Any,
    ) -> Verifier:
        """A verifier of the tokens the IdP at ``idp_url`` issues for ``audience``: its
        signing keys from its JWKS (cached, refreshed on an unknown ``kid``), revocation
        from its run-status endpoint, and a replay cache in memory (one process). With
        ``redis_url`` (several workers), the replay cache and the revocations the IdP
        publishes are in Redis, with the status endpoint as the fallback. Nothing is
        fetched until the first request. ``options`` go to :class:`Verifier`.

        >>> verifier = Verifier.for_idp("http://127.0.0.1:8000", audience="http://127.0.0.1:8001")
        >>> verifier.issuer, verifier.audience
        ('http://127.0.0.1:8000', 'http://127.0.0.1:8001')
        """
        from ajwt_core.rs.stores import (
            IdPRevocationChecker,
            RedisReplayStore,
            RedisRevocationChecker,
        )

        issuer = idp_url.rstrip("/")
        status = IdPRevocationChecker(issuer)
        defaults: dict[str, Any] = {
            "keys": JWKSCache(issuer + "/.well-known/jwks.json"),
            "revocation": status,
        }
        if redis_url:
            defaults["replay"] = RedisReplayStore.from_url(redis_url, prefix=redis_prefix)
            defaults["revocation"] = RedisRevocationChecker.from_url(
                redis_url, prefix=redis_prefix, fallback=status
            )
        return cls(issuer=issuer, audience=audience, **(defaults | options))

    # ----------------------------------------------------------------- tokens

    def _resolver(self) -> KeyResolver:
        return self._keys.keys if isinstance(self._keys, JWKSCache) else self._keys

    async def _decode(self, token: str, now: float) -> IntentTokenClaims:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp > now - self._leeway:
                return cached
            del self._cache[token]
        if isinstance(self._keys, JWKSCache):
            await self._keys.ensure_fresh()
        try:
            claims = self._decode_with(token, now)
        except InvalidToken as exc:
            if exc.reason != Reason.UNKNOWN_KID or not isinstance(self._keys, JWKSCache):
                raise
            # Key rotation: refresh (rate-limited) and try once more.
            if not await self._keys.refresh():
                raise
            claims = self._decode_with(token, now)
        if self._cache_size:
            self._cache[token] = claims
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _decode_with(self, token: str, now: float) -> IntentTokenClaims:
        return decode_intent_token(
            token,
            self._resolver(),
            issuer=self.issuer,
            audience=self.audience,
            leeway=self._leeway,
            now=now,
        )

    # ----------------------------------------------------------------- verify

    async def verify(
        self,
        *,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        policy: RoutePolicy,
    ) -> VerifiedRequest:
        """Verify one request against ``policy``; raises an :class:`AJWTError` subclass."""
        found = _wanted_headers(headers)
        now = self._clock()
        # 1. Authorization: DPoP <token> and exactly one DPoP header.
        count, authorization = _single(found, "authorization")
        if count == 0 or not authorization:
            raise InvalidToken(Reason.MISSING_TOKEN, "an A-JWT intent token is required")
        if count > 1:
            raise InvalidToken(Reason.MALFORMED_REQUEST, "more than one Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer":
            return await self._legacy_bearer(token, policy)
        if scheme.lower() != "dpop" or not token:
            raise InvalidToken(Reason.MALFORMED_TOKEN, "use the DPoP authorization scheme")
        proofs, proof = _single(found, "dpop")
        if proofs != 1 or proof is None:
            raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "exactly one DPoP header is required")
        # 2.–3. token header, signature, iss, aud, times, lifetime.
        claims = await self._decode(token, now)
        if claims.intent.tool is None:
            # A step token (DESIGN §6.3) proves a step to the IdP only; its audience is
            # the IdP, so this also stops one if an RS shares the IdP's identifier.
            raise InvalidToken(
                Reason.STEP_TOKEN_NOT_FOR_API,
                "a step token (no tool) is for the IdP only; call the API with a tool's token",
            )
        # 4. proof bound to this request, this token and the token's key.
        verified = verify_proof(
            proof,
            method=method,
            url=url,
            token=token,
            body=body,
            expected_jkt=claims.cnf.jkt,
            nonce=self.nonces.is_valid if self.nonces else None,
            now=now,
            max_age=self._proof_max_age,
        )
        # 5. replay: each (jkt, jti) once within the window.
        ttl = self._proof_max_age + DEFAULT_FUTURE_LEEWAY
        if not await self.replay.first_use(
            f"{verified.jkt}:{verified.jti}", ttl, issued_at=verified.iat
        ):
            raise InvalidDPoPProof(Reason.REPLAYED, "the proof has been used before")
        # 6. revocation of run / intent / agent / client.
        if self.revocation is not None:
            await self.revocation.check(claims)
        # 7. route policy.
        _, shim = _single(found, _SHIM)
        policy.check(claims, shim, self.accepted_shims)
        # 8. audit event; the handler gets the verified claims.
        if audit.isEnabledFor(logging.INFO):
            self._audit(claims, method, url)
        return VerifiedRequest(claims=claims, proof=verified)

    @staticmethod
    def _audit(claims: IntentTokenClaims, method: str, url: str) -> None:
        audit.info(
            "ajwt request accepted",
            extra={
                "ajwt": {
                    "jti": claims.jti,
                    "sub": claims.sub,
                    "agent": claims.agent.id,
                    "run_id": claims.intent.run_id,
                    "step": claims.intent.step,
                    "tool": claims.intent.tool,
                    "chain": claims.chain,
                    "method": method,
                    "url": url,
                }
            },
        )

    async def _legacy_bearer(self, token: str, policy: RoutePolicy) -> VerifiedRequest:
        if not policy.allow_bearer or self._bearer is None:
            raise InvalidToken(
                Reason.BEARER_NOT_ALLOWED, "bearer tokens are not accepted here; use A-JWT"
            )
        try:
            claims = await self._bearer(token)
        except AJWTError:
            raise
        except Exception:  # noqa: BLE001 - a legacy verifier's own error: refuse, never 500
            raise InvalidToken(Reason.BAD_SIGNATURE, "the bearer token is not valid") from None
        return VerifiedRequest(claims=None, proof=None, bearer_claims=claims)


def www_authenticate(exc: AJWTError, algs: str = "ES256 EdDSA") -> str:
    """The RFC 6750 / RFC 9449 challenge for an error."""
    description = exc.description.replace('"', "'")
    if exc.reason == Reason.MISSING_TOKEN:
        return f'DPoP algs="{algs}"'
    return f'DPoP error="{exc.error}", error_description="{description}", algs="{algs}"'
