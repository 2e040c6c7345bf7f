"""Resource-server verification of one request, DESIGN §7 in order (first failure wins).

:class:`Verifier` is pure logic over its stores (keys, replay, revocation, nonces); the
ASGI middleware and the FastAPI dependency are thin layers over it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from ajwt_core import telemetry
from ajwt_core.dpop import (
    DEFAULT_FUTURE_LEEWAY,
    DEFAULT_MAX_AGE,
    VerifiedProof,
    access_token_hash,
    verify_proof,
)
from ajwt_core.errors import (
    AJWTError,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    Reason,
    UseDPoPNonce,
    oauth_text,
)
from ajwt_core.integrity import HEADER as SHIM_HEADER
from ajwt_core.keys import KeyResolver
from ajwt_core.logfields import message, without_query
from ajwt_core.rs.jwks import JWKSCache
from ajwt_core.rs.names import NameResolver
from ajwt_core.rs.nonce import NonceManager
from ajwt_core.rs.policy import RoutePolicy
from ajwt_core.rs.revocation_feed import DEFAULT_INTERVAL, DEFAULT_MAX_STALENESS
from ajwt_core.rs.stores import AsyncReplayStore, MemoryReplayStore, RevocationChecker
from ajwt_core.rs.token_cache import TokenCache, TokenFacts
from ajwt_core.tokens import (
    DEFAULT_LEEWAY,
    IntentTokenClaims,
    decode_intent_token,
    read_verified_intent_token,
)

audit = logging.getLogger("ajwt_core.rs.audit")
log = logging.getLogger("ajwt_core.rs")

BearerVerifier = Callable[[str], Awaitable[dict[str, Any]]]


class VerifiedRequest:
    """What the handler receives: the verified claims and the proof (or a legacy bearer).

    ``claims`` of a token the verifier remembered are parsed from the request's token
    when first read (the cache keeps only :class:`TokenFacts`); ``facts`` are there
    always."""

    __slots__ = ("_claims", "_token", "bearer_claims", "facts", "proof")

    def __init__(
        self,
        claims: IntentTokenClaims | None,
        proof: VerifiedProof | None,
        bearer_claims: dict[str, Any] | None = None,
        *,
        facts: TokenFacts | None = None,
        token: str | None = None,
    ) -> None:
        self._claims = claims
        self._token = token
        self.proof = proof
        self.bearer_claims = bearer_claims
        self.facts = facts if facts is not None or claims is None else TokenFacts.of(claims)

    @property
    def claims(self) -> IntentTokenClaims | None:
        if self._claims is None and self._token is not None:
            self._claims = _claims_of(self._token, self.facts)
        return self._claims

    @property
    def chain(self) -> list[str]:
        claims = self.claims
        return claims.chain if claims else []


def _claims_of(token: str, facts: TokenFacts | None) -> IntentTokenClaims:
    """The full claims of a token verified earlier (its facts are cached)."""
    if facts is not None and facts.revealed is not None:
        return facts.revealed
    return read_verified_intent_token(token)


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
    their SHA-256 (``ath``) until they expire, so a token is signature-checked once
    (:mod:`ajwt_core.rs.token_cache`); the proof is always verified. ``names`` reveals
    the opaque names of privacy-mode tokens (:mod:`ajwt_core.rs.names`) before the route
    policy sees them; once per token.
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
        names: NameResolver | None = None,
        leeway: int = DEFAULT_LEEWAY,
        proof_max_age: int = DEFAULT_MAX_AGE,
        token_cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._keys = keys
        self._jwks = keys if isinstance(keys, JWKSCache) else None
        self.replay = replay or MemoryReplayStore()
        self.revocation = revocation
        self.nonces = nonces
        self.accepted_shims = frozenset(accepted_shims)
        self._bearer = bearer_verifier
        self.names = names
        self._leeway = leeway
        self._proof_max_age = proof_max_age
        # How long a proof's (jkt, jti) is remembered: as long as the proof is accepted.
        self._replay_ttl = proof_max_age + DEFAULT_FUTURE_LEEWAY
        self._cache = TokenCache(token_cache_size)
        #: The kids of the key sets the cached tokens were verified under, and the key
        #: sets last looked at (a JWKS refresh replaces the set: an identity check).
        self._cached_kids: frozenset[str] = frozenset()
        self._merged: KeyResolver | None = None
        self._checked: KeyResolver | None = None
        self._clock = clock

    @property
    def replay(self) -> AsyncReplayStore:
        """The replay store (DESIGN §7 step 5)."""
        return self._replay

    @replay.setter
    def replay(self, store: AsyncReplayStore) -> None:
        self._replay = store
        # An in-process store answers at once: asked without a coroutine (unless a
        # subclass overrides first_use, which is then what must answer).
        self._first_use_now: Callable[[str, float], bool] | None = None
        if (
            isinstance(store, MemoryReplayStore)
            and type(store).first_use is MemoryReplayStore.first_use
        ):
            self._first_use_now = store.first_use_now

    @classmethod
    def for_idp(
        cls,
        idp_url: str,
        *,
        audience: str,
        redis_url: str | None = None,
        redis_prefix: str = "ajwt:",
        revocation_max_staleness: float = DEFAULT_MAX_STALENESS,
        revocation_interval: float = DEFAULT_INTERVAL,
        **options: Any,
    ) -> Verifier:
        """A verifier of the tokens the IdP at ``idp_url`` issues for ``audience``: its
        signing keys from its JWKS (cached, refreshed on an unknown ``kid``), revocations
        from the feed the IdP serves (``GET /revocations``, polled every
        ``revocation_interval`` seconds), and a replay cache in memory (one process).
        With ``redis_url`` (several workers), the replay cache is in Redis and the
        revocations come from what the IdP publishes there (pub/sub). Either way a
        request is refused with 503 once the feed has not been updated for
        ``revocation_max_staleness`` seconds. Nothing is fetched until the first
        request. ``options`` go to :class:`Verifier`.

        >>> verifier = Verifier.for_idp("http://127.0.0.1:8000", audience="http://127.0.0.1:8001")
        >>> verifier.issuer, verifier.audience
        ('http://127.0.0.1:8000', 'http://127.0.0.1:8001')
        """
        from ajwt_core.rs.revocation_feed import (
            FeedSource,
            IdPFeedSource,
            RedisFeedSource,
            RevocationFeed,
        )
        from ajwt_core.rs.stores import RedisReplayStore

        issuer = idp_url.rstrip("/")
        source: FeedSource = IdPFeedSource(issuer, interval=revocation_interval)
        defaults: dict[str, Any] = {"keys": JWKSCache(issuer + "/.well-known/jwks.json")}
        if redis_url:
            defaults["replay"] = RedisReplayStore.from_url(redis_url, prefix=redis_prefix)
            source = RedisFeedSource.from_url(
                redis_url, prefix=redis_prefix, interval=revocation_interval
            )
        defaults["revocation"] = RevocationFeed(source, max_staleness=revocation_max_staleness)
        return cls(issuer=issuer, audience=audience, **(defaults | options))

    async def aclose(self) -> None:
        """Close what the verifier holds open on this event loop: the JWKS client, the
        revocation feed or checker (its task and connections), a Redis replay store, a
        name resolver's client. Call it when the server stops, on the loop that served:
        the middlewares do (ASGI lifespan shutdown, ``install``, the WSGI middleware's
        ``close``). A request after it opens what it needs again."""
        for part in (self._jwks, self.revocation, self.replay, self.names):
            closer = getattr(part, "aclose", None)
            if closer is None:
                continue
            try:
                await closer()
            except Exception:  # stopping: say so, and close the rest
                log.warning("could not close %s cleanly", type(part).__name__, exc_info=True)

    # ----------------------------------------------------------------- tokens

    def _forget_retired_keys(self, keys: KeyResolver) -> None:
        """After a JWKS refresh that dropped a key (``ajwt idp retire-key``), forget the
        cached tokens: one signed by the retired key is verified again, and refused."""
        if keys is self._checked:
            return
        self._checked = keys
        if not self._cached_kids <= keys.kids():
            self._cache.clear()
            self._cached_kids = keys.kids()

    def _note_keys(self, keys: KeyResolver) -> None:
        """A token was cached under ``keys``: remember their kids (once per key set)."""
        if keys is not self._merged:
            self._merged = keys
            self._cached_kids |= keys.kids()

    def _resolver(self) -> KeyResolver:
        return self._keys.keys if isinstance(self._keys, JWKSCache) else self._keys

    async def _decode(
        self, token: str, ath: str, now: float
    ) -> tuple[TokenFacts, IntentTokenClaims]:
        """Verify a token not in the cache; its facts (now cached) and claims."""
        jwks = self._jwks
        if jwks is not None:
            await jwks.ensure_fresh()
        try:
            claims = self._decode_with(token, now)
        except InvalidToken as exc:
            if exc.reason != Reason.UNKNOWN_KID or jwks is None:
                raise
            # Key rotation: refresh (rate-limited) and try once more.
            if not await jwks.refresh():
                raise
            claims = self._decode_with(token, now)
        facts = TokenFacts.of(claims)
        self._cache.put(ath, facts)
        if jwks is not None:
            self._note_keys(jwks.keys)
        return facts, claims

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
        """Verify one request against ``policy``; raises an :class:`AJWTError` subclass.

        Each outcome is logged on ``ajwt_core.rs.audit`` with its fields in the message
        (acceptances at INFO, refusals at WARNING, nonce challenges at INFO) and, with
        OpenTelemetry, recorded as an ``ajwt.verify`` span."""
        if telemetry.enabled():
            with telemetry.span(telemetry.VERIFY) as span:
                return await self._verify_and_log(method, url, headers, body, policy, span)
        # No tracer: no span to open (a context manager per request is measurable glue).
        return await self._verify_and_log(method, url, headers, body, policy, None)

    async def _verify_and_log(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        policy: RoutePolicy,
        span: telemetry.SpanLike | None,
    ) -> VerifiedRequest:
        # What is known of the token when a later check refuses: for the log line.
        seen: list[tuple[TokenFacts, IntentTokenClaims | None, str]] = []
        try:
            verified = await self._verify(method, url, headers, body, policy, seen)
        except AJWTError as exc:
            decoded = None
            if seen:
                facts, claims, token = seen[0]
                decoded = VerifiedRequest(claims, None, facts=facts, token=token)
            if span is not None:
                _describe(span, decoded.facts if decoded else None)
            # Refusals are WARNING (nonce challenges INFO): log_refusal picks the level.
            if audit.isEnabledFor(logging.INFO if _is_challenge(exc) else logging.WARNING):
                log_refusal(exc, decoded.claims if decoded else None, method, url)
            raise
        if span is not None:
            _describe(span, verified.facts)
        if audit.isEnabledFor(logging.INFO) and verified.facts is not None:
            claims = verified.claims
            assert claims is not None
            self._audit(claims, method, url)
        return verified

    async def _verify(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        policy: RoutePolicy,
        seen: list[tuple[TokenFacts, IntentTokenClaims | None, str]],
    ) -> VerifiedRequest:
        found = _wanted_headers(headers)
        now = self._clock()
        # 1. Authorization: DPoP <token> and exactly one DPoP header.
        count, authorization = _single(found, "authorization")
        if count == 0 or not authorization:
            raise InvalidToken(Reason.MISSING_TOKEN, "an A-JWT intent token is required")
        # Two headers, or two joined into one by a WSGI server ("DPoP a, DPoP b": no
        # token has a comma): RFC 6750 §3.1, a malformed request, 400.
        if count > 1 or "," in authorization:
            raise InvalidRequest(Reason.MALFORMED_REQUEST, "more than one Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        scheme = scheme.lower()
        if scheme == "bearer":
            return await self._legacy_bearer(token, policy)
        if scheme != "dpop" or not token:
            # Another scheme (Basic…) or no token: no authentication information for
            # this server, so the challenge carries no error code (RFC 6750 §3.1).
            raise InvalidToken(
                Reason.MISSING_TOKEN,
                "an A-JWT intent token is required, in the DPoP authorization scheme",
            )
        proofs, proof = _single(found, "dpop")
        if proofs != 1 or proof is None or "," in proof:
            raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "exactly one DPoP header is required")
        # 2.–3. token header, signature, iss, aud, times, lifetime.
        # The cache key is the token's SHA-256; a non-ASCII token has none (it is refused
        # as malformed by the decode).
        ath = access_token_hash(token) if token.isascii() else ""
        if self._jwks is not None:
            self._forget_retired_keys(self._jwks.keys)
        facts = self._cache.get(ath, now - self._leeway)
        claims = None
        if facts is None:
            facts, claims = await self._decode(token, ath, now)
        # for the refusal's log line, from here on
        seen.append((facts, claims, token))
        if facts.tool is None:
            # A step token (DESIGN §6.3) proves a step to the IdP only; its audience is
            # the IdP, so this also stops one if an RS shares the IdP's identifier.
            raise InvalidToken(
                Reason.STEP_TOKEN_NOT_FOR_API,
                "a step token (no tool) is for the IdP only; call the API with a tool's token",
            )
        # 4. proof bound to this request, this token and the token's key.
        nonces = self.nonces
        verified = verify_proof(
            proof,
            method=method,
            url=url,
            token=token,
            body=body,
            body_binding=policy.body_binding,
            expected_jkt=facts.jkt,
            nonce=nonces.is_valid if nonces is not None else None,
            now=now,
            max_age=self._proof_max_age,
        )
        # 5. replay: each (jkt, jti) once within the window.
        replay_key = f"{verified.jkt}:{verified.jti}"
        first_use_now = self._first_use_now
        if not (
            first_use_now(replay_key, self._replay_ttl)
            if first_use_now is not None
            else await self._replay.first_use(replay_key, self._replay_ttl, issued_at=verified.iat)
        ):
            raise InvalidDPoPProof(Reason.REPLAYED, "the proof has been used before")
        if facts.opaque_names and facts.revealed is None and self.names is not None:
            # Privacy mode: names for the policy, asked for only once the proof shows
            # the caller holds the token's key; remembered with the token.
            opaque = claims or read_verified_intent_token(token)
            claims = await self.names.reveal(token, opaque)
            facts = TokenFacts.of(opaque, revealed=claims)
            self._cache.replace(ath, facts)
        # 6. revocation of run / intent / agent / client.
        if self.revocation is not None:
            await self.revocation.check(facts)
        # 7. route policy (the shim's checksum header is read only if the route asks).
        shim = _single(found, _SHIM)[1] if policy.require_shim_checksum else None
        policy.check(facts, shim, self.accepted_shims)
        # 8. the handler gets the verified claims (verify() writes the audit event).
        return VerifiedRequest(claims, verified, facts=facts, token=token)

    @staticmethod
    def _audit(claims: IntentTokenClaims, method: str, url: str) -> None:
        fields = {**_claim_fields(claims), "method": method, "url": without_query(url)}
        audit.info(
            message("ajwt request accepted", fields),
            extra={"ajwt": {**fields, "jti": claims.jti, "sub": claims.sub}},
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


def _claim_fields(claims: IntentTokenClaims) -> dict[str, Any]:
    return {
        "agent": claims.agent.id,
        "step": claims.intent.step,
        "tool": claims.intent.tool,
        "run_id": claims.intent.run_id,
        "chain": claims.chain,
    }


def _is_challenge(exc: AJWTError) -> bool:
    """A nonce challenge (RFC 9449 §9): the client retries; not a refusal to warn of."""
    return exc.reason in (Reason.NONCE_REQUIRED, Reason.NONCE_MISMATCH)


def log_refusal(exc: AJWTError, claims: IntentTokenClaims | None, method: str, url: str) -> None:
    """Log a refusal with what is known of the request: its claims once the token was
    decoded (a forged or expired token's claims are not trusted, so not logged)."""
    fields: dict[str, Any] = {"reason": exc.reason.value, "error": exc.error}
    if claims is not None:
        fields |= _claim_fields(claims)
    fields |= {"method": method, "url": without_query(url)}
    audit.log(
        logging.INFO if _is_challenge(exc) else logging.WARNING,
        message("ajwt request refused", fields),
        extra={"ajwt": fields},
    )


def _describe(span: telemetry.SpanLike, facts: TokenFacts | None) -> None:
    if facts is not None and span.is_recording():
        span.set_attribute(telemetry.AGENT, facts.agent_id)
        span.set_attribute(telemetry.RUN, facts.run_id)
        span.set_attribute(telemetry.STEP, facts.step)
        if facts.tool is not None:
            span.set_attribute(telemetry.TOOL, facts.tool)


def www_authenticate(exc: AJWTError, algs: str = "ES256 EdDSA") -> str:
    """The RFC 6750 / RFC 9449 challenge for an error."""
    description = oauth_text(exc.description)
    if exc.reason == Reason.MISSING_TOKEN:
        return f'DPoP algs="{algs}"'
    # ``ajwt_reason`` (an extension auth-param, RFC 9110 §11.2) lets a client that only
    # sees the headers (the shim's auth flow) name the refusal precisely.
    return (
        f'DPoP error="{exc.error}", error_description="{description}", '
        f'ajwt_reason="{exc.reason.value}", algs="{algs}"'
    )


def refusal_response(
    exc: AJWTError, nonce: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The status, headers and JSON body of a refusal, for every middleware alike: the
    challenge on 401 and 403 (RFC 6750 §3, RFC 9449 §7.1), ``Retry-After`` on 503 (a
    store or the revocation feed is down: worth a retry soon), a fresh ``DPoP-Nonce``
    when the verifier issues them."""
    status = 401 if isinstance(exc, UseDPoPNonce) else exc.status_code
    body = json.dumps(exc.to_oauth(), separators=(",", ":")).encode()
    headers = [("content-type", "application/json"), ("cache-control", "no-store")]
    if status in (401, 403):
        challenge = www_authenticate(exc).encode("latin-1", "replace").decode("latin-1")
        headers.append(("www-authenticate", challenge))
    if status == 503:
        headers.append(("retry-after", "1"))
    if nonce:
        headers.append(("dpop-nonce", nonce))
    headers.append(("content-length", str(len(body))))
    return status, headers, body
