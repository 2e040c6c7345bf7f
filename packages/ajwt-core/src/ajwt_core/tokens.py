"""Intent tokens and delegation assertions (DESIGN §5.1, §5.2).

Each token kind has its own typed claims, its own ``typ``, allowed algorithms, required
claims, lifetime cap and leeway, and its own ``encode_*`` / ``decode_*`` pair, so a token
of one kind is refused wherever another is expected (RFC 8725 §3.11–3.12). Intent tokens
are RFC 9068 access tokens (``typ: at+jwt``), as the IdP's local user tokens are: those
two are told apart by their required claims (a user token has no ``client_id``, ``cnf``,
``act``, ``agent`` or ``intent``) and by audience, never by ``typ`` alone.

>>> from ajwt_core.keys import SigningKeySet
>>> keys = SigningKeySet.generate()
>>> claims = IntentTokenClaims(
...     iss="https://idp.example", aud="https://api.example", sub="user:alice",
...     client_id="patcher-app", scope="repo:read", iat=1000, nbf=1000, exp=1300, jti="j1",
...     cnf=Confirmation(jkt="thumbprint"), act=build_act_chain(["supervisor", "planner"]),
...     agent=AgentClaim(id="planner", checksum="sha256:00", registration_id="r1", version=1),
...     intent=IntentClaim(id="i1", initiated_by="user:alice", workflow_id="vuln-patch",
...         workflow_version=1, workflow_hash="sha256:11", run_id="run1", step="plan",
...         tool="read_file", step_sequence_hash="sha256:22"))
>>> token = encode_intent_token(claims, keys.active)
>>> decoded = decode_intent_token(token, keys.verification_keys(), issuer="https://idp.example",
...                               audience="https://api.example", now=1100)
>>> decoded.chain, decoded.intent.step, sorted(decoded.scopes)
(['supervisor', 'planner'], 'plan', ['repo:read'])
>>> decode_delegation_assertion(token, keys.active.verification_key(), audience="x", now=1100)
Traceback (most recent call last):
ajwt_core.errors.InvalidGrant: the delegation assertion must have typ 'delegation+jwt'
>>> user = encode_user_token("user:alice", keys.active, issuer="https://idp.example",
...                          audience="https://idp.example", lifetime=300, now=1000)
>>> decode_intent_token(user, keys.verification_keys(), issuer="https://idp.example",
...                     audience=None, now=1100)
Traceback (most recent call last):
ajwt_core.errors.InvalidToken: the intent token claim 'client_id' is missing or invalid
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ajwt_core import _jws
from ajwt_core.canonical import sha256_digest
from ajwt_core.errors import (
    AJWTError,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    Reason,
)
from ajwt_core.keys import ALLOWED_ALGORITHMS, KeyResolver, PopKey, SigningKey, VerificationKey

#: RFC 9068 §2.1: an intent token is a JWT access token; its A-JWT claims are extensions.
INTENT_TOKEN_TYPE: Final = "at+jwt"
DELEGATION_TYPE: Final = "delegation+jwt"
#: IdP maximum intent-token lifetime (DESIGN §5.1); configurable down, never up.
MAX_INTENT_LIFETIME: Final = 300
#: Delegation assertions are short-lived one-shot grants (DESIGN §5.2).
MAX_DELEGATION_LIFETIME: Final = 60
#: Clock skew tolerated on every time claim (DESIGN §7.3).
DEFAULT_LEEWAY: Final = 60
#: No legitimate intent token comes near this; larger input is refused before parsing.
MAX_TOKEN_BYTES: Final = 8192
#: Longest delegation chain (``act`` nesting) a token may carry.
MAX_CHAIN_DEPTH: Final = 16
AGENT_PREFIX: Final = "agent:"

#: Longest text claim; the IdP's columns for stored claims are at least this wide.
MAX_CLAIM_LENGTH: Final = 512
#: Length of an RFC 7638 SHA-256 thumbprint (``cnf.jkt``), base64url without padding.
JKT_LENGTH: Final = 43
#: Characters a stored claim may not contain: C0 and C1 controls and DEL (PostgreSQL
#: text cannot hold NUL; the others have no place in an identifier and forge log lines).
CONTROL_CHARACTERS: Final = r"\x00-\x1f\x7f-\x9f"

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CLAIM_LENGTH)]
#: A text claim the IdP stores (a ``jti`` it remembers, the user's ``sub``): no control
#: characters, and (checked by pydantic) no lone surrogates, which no database encodes.
StoredText = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_CLAIM_LENGTH, pattern=f"^[^{CONTROL_CHARACTERS}]+$"
    ),
]
Scope = Annotated[str, StringConstraints(max_length=2048)]


class _Claims(BaseModel):
    # Unknown claims are ignored (RFC 7519 §4), known ones are strictly typed.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class ActorClaim(_Claims):
    """RFC 8693 §4.1 ``act``: the current actor, with its delegator nested inside."""

    sub: Text
    act: ActorClaim | None = None


class Confirmation(_Claims):
    """RFC 7800 ``cnf`` with the RFC 9449 ``jkt`` member."""

    jkt: Text


class AgentClaim(_Claims):
    id: Text
    checksum: Text
    registration_id: Text
    version: int = Field(ge=1)


class IntentClaim(_Claims):
    id: Text
    initiated_by: Text
    workflow_id: Text
    workflow_version: int = Field(ge=1)
    workflow_hash: Text
    run_id: Text
    step: Text
    #: The tool the token is for; absent on a step token (DESIGN §6.3), which only the
    #: IdP accepts (its audience is the IdP).
    tool: Text | None = None
    step_sequence_hash: Text
    delegation: str | None = None
    input_digest: str | None = None
    #: The agent that consulted this token's agent inside its own step (DESIGN §6.3).
    consulted_by: Text | None = None
    #: ``True``: the workflow, step, tool and agent names (``workflow_id``, ``step``,
    #: ``tool``, ``consulted_by``, ``agent.id``, ``act``) are opaque references, which
    #: the IdP reveals by introspection (DESIGN §5.1, privacy mode).
    opaque_names: bool | None = None


class IntentTokenClaims(_Claims):
    """The claims of an intent token (DESIGN §5.1): an RFC 9068 access token whose
    ``cnf``, ``act``, ``agent`` and ``intent`` are extensions; all are required."""

    iss: Text
    aud: Text
    sub: Text
    client_id: Text
    scope: Scope
    iat: int
    nbf: int
    exp: int
    jti: Text
    cnf: Confirmation
    act: ActorClaim
    agent: AgentClaim
    intent: IntentClaim

    @property
    def chain(self) -> list[str]:
        """The delegation chain as agent ids, first delegator first, acting agent last."""
        return act_chain_list(self.act)

    @property
    def scopes(self) -> frozenset[str]:
        return parse_scope(self.scope)

    @property
    def delegation_depth(self) -> int:
        """Number of delegation hops (0 for an agent acting on the user's intent directly)."""
        return len(self.chain) - 1


class DelegationClaims(_Claims):
    """A delegator-signed hand-off of one workflow step to another agent (DESIGN §5.2)."""

    iss: Text
    sub: Text
    aud: Text
    intent_id: Text
    run_id: Text
    from_step: Text
    to_step: Text
    scope: Scope
    parent: Text
    iat: int
    exp: int
    jti: StoredText
    #: The delegator reports ``from_step`` done with this hand-off: the IdP completes it
    #: in the same transaction as the delegation (DESIGN §6.7); absent when false.
    complete: bool = False


# ---------------------------------------------------------------------------- helpers


def token_hash(token: str) -> str:
    """``sha256:<hex>`` of a compact token: how assertions and tokens reference each other."""
    return sha256_digest(token.encode("ascii"))


def build_act_chain(agents: Sequence[str]) -> ActorClaim:
    """An ``act`` claim from agent ids, first delegator first, acting agent last.

    >>> build_act_chain(["supervisor", "patcher"]).model_dump(exclude_none=True)
    {'sub': 'agent:patcher', 'act': {'sub': 'agent:supervisor'}}
    """
    if not agents:
        raise InvalidGrant(Reason.INVALID_CLAIM, "a delegation chain needs at least one agent")
    act: ActorClaim | None = None
    for agent in agents:
        act = extend_act_chain(act, agent)
    assert act is not None
    return act


def extend_act_chain(act: ActorClaim | None, agent: str) -> ActorClaim:
    """Put ``agent`` on top of an existing chain (RFC 8693: the current actor outermost)."""
    return ActorClaim(sub=AGENT_PREFIX + agent, act=act)


def act_chain_list(act: ActorClaim | None) -> list[str]:
    """The agent ids of an ``act`` chain, first delegator first.

    >>> act_chain_list(build_act_chain(["a", "b", "c"]))
    ['a', 'b', 'c']
    """
    chain: list[str] = []
    while act is not None:
        chain.append(act.sub.removeprefix(AGENT_PREFIX))
        act = act.act
    chain.reverse()
    return chain


def parse_scope(scope: str | Iterable[str] | None) -> frozenset[str]:
    """An OAuth scope string (RFC 6749 §3.3) or iterable as a set of scope tokens."""
    if scope is None:
        return frozenset()
    items = scope.split() if isinstance(scope, str) else scope
    return frozenset(s for s in items if s)


def format_scope(scopes: Iterable[str]) -> str:
    """Space-separated, sorted: one canonical spelling per set of scopes."""
    return " ".join(sorted(set(scopes)))


def narrow_scope(requested: str | Iterable[str] | None, *bounds: Iterable[str]) -> frozenset[str]:
    """The granted scope: ``requested`` if it lies within every bound, else refused.

    ``bounds`` are the step's scopes, the client's grant and (when delegated) the
    delegator's scope (DESIGN §5.1, T9). With no request, the intersection is granted.

    >>> sorted(narrow_scope(None, {"repo:read", "repo:write"}, {"repo:read"}))
    ['repo:read']
    >>> narrow_scope("repo:write", {"repo:read"})
    Traceback (most recent call last):
    ajwt_core.errors.InvalidScope: requested scope exceeds what is allowed: repo:write
    """
    allowed: set[str] | None = None
    for bound in bounds:
        bound_set = set(parse_scope(bound)) if isinstance(bound, str) else set(bound)
        allowed = bound_set if allowed is None else allowed & bound_set
    allowed = allowed or set()
    if requested is None:
        return frozenset(allowed)
    wanted = parse_scope(requested)
    extra = wanted - allowed
    if extra:
        raise InvalidScope(
            Reason.SCOPE_EXCEEDED, f"requested scope exceeds what is allowed: {format_scope(extra)}"
        )
    return wanted


def _validate(
    model: type[_Claims], claims: Mapping[str, Any], error: type[AJWTError], what: str
) -> Any:
    try:
        return model.model_validate(claims)
    except ValidationError as exc:
        raise _claim_error(exc, error, what) from None


def _validate_json(model: type[_Claims], payload: bytes, error: type[AJWTError], what: str) -> Any:
    """Parse and validate a JWS payload in one pass; the same reasons as :func:`_validate`,
    and ``malformed_token`` for a payload that is not a JSON object (or nests too deep)."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid" or (not first["loc"] and first["type"] == "model_type"):
            raise error(
                Reason.MALFORMED_TOKEN, f"the {what} payload is not a JSON object"
            ) from None
        raise _claim_error(exc, error, what) from None


def _claim_error(exc: ValidationError, error: type[AJWTError], what: str) -> AJWTError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "claims"
    reason = Reason.MISSING_CLAIM if first["type"] == "missing" else Reason.INVALID_CLAIM
    return error(reason, f"the {what} claim {where!r} is missing or invalid")


# ------------------------------------------------------------------------ intent token


def encode_intent_token(
    claims: IntentTokenClaims, key: SigningKey, *, max_lifetime: int = MAX_INTENT_LIFETIME
) -> str:
    """Sign an intent token with the IdP key (``typ: at+jwt``, ``kid`` set)."""
    if claims.exp - claims.iat > min(max_lifetime, MAX_INTENT_LIFETIME):
        raise InvalidGrant(Reason.LIFETIME_TOO_LONG, "intent-token lifetime exceeds the cap")
    return key.sign(claims.model_dump(exclude_none=True), {"typ": INTENT_TOKEN_TYPE})


def decode_intent_token(
    token: object,
    keys: KeyResolver,
    *,
    issuer: str,
    audience: str | None,
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: int = MAX_INTENT_LIFETIME,
    now: float | None = None,
    algorithms: Iterable[str] = ALLOWED_ALGORITHMS,
) -> IntentTokenClaims:
    """Verify an intent token (DESIGN §7 steps 2–3) and return its typed claims.

    Checks in order: size, compact form, ``typ`` (``at+jwt``), ``alg`` allow-list, no
    key-carrying header (``jku``, ``x5u``, ``jwk``…), known ``kid`` whose key fixes the
    algorithm, signature, required claims and types (what tells an intent token from
    the other ``at+jwt`` tokens: a user token has no ``client_id``, ``cnf``, ``act``,
    ``agent``, ``intent``), ``iss``, ``aud``, ``exp`` / ``nbf`` / ``iat`` with leeway,
    lifetime cap, chain depth. Every failure is :class:`InvalidToken` with a specific
    reason; nothing else escapes. ``audience=None`` (explicit) skips the audience check:
    only for the IdP reading its own token (an RFC 8693 subject token, introspection).
    """
    what = "intent token"
    header = _jws.read_header(
        token,
        typ=INTENT_TOKEN_TYPE,
        algorithms=tuple(algorithms),
        max_bytes=MAX_TOKEN_BYTES,
        error=InvalidToken,
        what=what,
    )
    assert isinstance(token, str)
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken(Reason.UNKNOWN_KID, "the intent token's signing key is not known")
    payload = _jws.verify_payload(token, key, header["alg"], error=InvalidToken, what=what)
    # One pass in pydantic's JSON parser (Rust, depth-limited) instead of json.loads and a
    # second pass over the dict: the intent token is on every cold request's path.
    claims: IntentTokenClaims = _validate_json(IntentTokenClaims, payload, InvalidToken, what)
    if claims.iss != issuer:
        raise InvalidToken(Reason.WRONG_ISSUER, "the intent token is from another issuer")
    if audience is not None and claims.aud != audience:
        raise InvalidToken(Reason.WRONG_AUDIENCE, "the intent token is for another audience")
    _jws.check_time_window(
        claims.exp,
        claims.iat,
        claims.nbf,
        now=time.time() if now is None else now,
        leeway=leeway,
        max_lifetime=min(max_lifetime, MAX_INTENT_LIFETIME),
        error=InvalidToken,
        what=what,
    )
    chain = claims.chain
    if len(chain) > MAX_CHAIN_DEPTH:
        raise InvalidToken(Reason.CHAIN_TOO_DEEP, "the delegation chain is too long")
    if chain[-1] != claims.agent.id:
        raise InvalidToken(Reason.INVALID_CLAIM, "the acting agent is not the top of 'act'")
    return claims


# ------------------------------------------------------------------ delegation assertion


def read_verified_intent_token(token: str) -> IntentTokenClaims:
    """The claims of an intent token that :func:`decode_intent_token` has already
    accepted in this process (a cache remembers that by the token's SHA-256): parsing
    only, no signature or claim check. Never call it on a token not verified so.

    >>> read_verified_intent_token("e30.e30.sig")
    Traceback (most recent call last):
    ajwt_core.errors.InvalidToken: the intent token claim 'iss' is missing or invalid
    """
    segment = token.split(".", 2)[1]
    payload = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    claims: IntentTokenClaims = _validate_json(
        IntentTokenClaims, payload, InvalidToken, "intent token"
    )
    return claims


def encode_delegation_assertion(
    claims: DelegationClaims, key: PopKey, *, max_lifetime: int = MAX_DELEGATION_LIFETIME
) -> str:
    """Sign a delegation assertion with the delegator's PoP key (``typ: delegation+jwt``)."""
    if claims.exp - claims.iat > min(max_lifetime, MAX_DELEGATION_LIFETIME):
        raise InvalidGrant(Reason.LIFETIME_TOO_LONG, "delegation lifetime exceeds the cap")
    payload = claims.model_dump()
    if not claims.complete:
        del payload["complete"]  # assertions without it read as before
    return key.sign(payload, {"typ": DELEGATION_TYPE})


def decode_delegation_assertion(
    token: object,
    key: VerificationKey,
    *,
    audience: str,
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: int = MAX_DELEGATION_LIFETIME,
    now: float | None = None,
    algorithms: Iterable[str] = ALLOWED_ALGORITHMS,
) -> DelegationClaims:
    """Verify a delegation assertion against the delegator's registered PoP key.

    The caller (the IdP) supplies the key from the delegator's registration; the
    assertion cannot name its own key. Every failure is :class:`InvalidGrant`.
    """
    what = "delegation assertion"
    header = _jws.read_header(
        token,
        typ=DELEGATION_TYPE,
        algorithms=tuple(algorithms),
        max_bytes=MAX_TOKEN_BYTES,
        error=InvalidGrant,
        what=what,
    )
    assert isinstance(token, str)
    raw = _jws.verify_signature(token, key, header["alg"], error=InvalidGrant, what=what)
    claims: DelegationClaims = _validate(DelegationClaims, raw, InvalidGrant, what)
    if claims.aud != audience:
        raise InvalidGrant(Reason.WRONG_AUDIENCE, "the delegation assertion is for another IdP")
    _jws.check_times(
        raw,
        now=time.time() if now is None else now,
        leeway=leeway,
        max_lifetime=min(max_lifetime, MAX_DELEGATION_LIFETIME),
        error=InvalidGrant,
        what=what,
    )
    return claims


# ------------------------------------------------------------ user (subject) tokens

#: RFC 9068 access-token type, used by the embedded IdP's local user tokens.
USER_TOKEN_TYPE: Final = "at+jwt"
#: Upstream IdPs label access tokens ``at+jwt`` (RFC 9068) or plain ``JWT``.
SUBJECT_TOKEN_TYPES: Final = (USER_TOKEN_TYPE, "jwt")
#: OpenID Connect ID tokens carry ``typ: JWT`` or no ``typ`` at all; never ``at+jwt``,
#: which marks an access token (RFC 9068 §2.1).
ID_TOKEN_TYPES: Final = ("jwt", None)
#: The RFC 8693 §3 identifiers of the two kinds of user token that may root a run.
ACCESS_TOKEN_TYPE_URI: Final = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE_URI: Final = "urn:ietf:params:oauth:token-type:id_token"
MAX_SUBJECT_LIFETIME: Final = 24 * 3600


class SubjectTokenClaims(_Claims):
    """The user's access token that roots a run (DESIGN §6.4): who stated the intent."""

    iss: Text
    sub: StoredText
    aud: Text | list[Text]
    iat: int
    exp: int
    scope: Scope | None = None


class IdTokenClaims(_Claims):
    """An OpenID Connect ID token (OIDC Core §2) that roots a run: the user as the
    upstream provider authenticated them for one of its clients."""

    iss: Text
    sub: StoredText
    aud: Text | list[Text]
    iat: int
    exp: int
    azp: Text | None = None


def encode_user_token(
    subject: str, key: SigningKey, *, issuer: str, audience: str, lifetime: int, now: int
) -> str:
    """A plain RFC 9068 user access token from the embedded IdP (no upstream IdP needed)."""
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    return key.sign(claims, {"typ": USER_TOKEN_TYPE})


def _decode_user_jwt(
    token: object,
    keys: KeyResolver,
    model: type[_Claims],
    *,
    typ: tuple[str | None, ...],
    what: str,
    issuer: str,
    audience: str,
    algorithms: Iterable[str],
    leeway: int,
    max_lifetime: int,
    now: float | None,
) -> tuple[Any, list[str]]:
    """The steps both kinds of user token share: header, key, signature, claims,
    issuer, audience and times. Returns the claims and the token's audiences."""
    header = _jws.read_header(
        token,
        typ=typ,
        algorithms=tuple(algorithms),
        max_bytes=MAX_TOKEN_BYTES,
        error=InvalidGrant,
        what=what,
    )
    assert isinstance(token, str)
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidGrant(Reason.UNKNOWN_KID, f"the {what}'s signing key is not known")
    raw = _jws.verify_signature(token, key, header["alg"], error=InvalidGrant, what=what)
    if "intent" in raw:
        # An intent or step token is an ``at+jwt`` of this issuer too (a step token's
        # audience is the IdP): an agent's token never stands for the user.
        raise InvalidGrant(Reason.WRONG_TYPE, "an A-JWT intent token is not a user's token")
    claims = _validate(model, raw, InvalidGrant, what)
    if claims.iss != issuer:
        raise InvalidGrant(Reason.WRONG_ISSUER, f"the {what} is from another issuer")
    audiences = [claims.aud] if isinstance(claims.aud, str) else list(claims.aud)
    if audience not in audiences:
        raise InvalidGrant(Reason.WRONG_AUDIENCE, f"the {what} is not for this IdP")
    _jws.check_times(
        raw,
        now=time.time() if now is None else now,
        leeway=leeway,
        max_lifetime=max_lifetime,
        error=InvalidGrant,
        what=what,
    )
    return claims, audiences


def decode_subject_token(
    token: object,
    keys: KeyResolver,
    *,
    issuer: str,
    audience: str,
    algorithms: Iterable[str],
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: int = MAX_SUBJECT_LIFETIME,
    now: float | None = None,
) -> SubjectTokenClaims:
    """Verify the user's access token from the configured (upstream or local) issuer."""
    claims, _ = _decode_user_jwt(
        token,
        keys,
        SubjectTokenClaims,
        typ=SUBJECT_TOKEN_TYPES,
        what="subject token",
        issuer=issuer,
        audience=audience,
        algorithms=algorithms,
        leeway=leeway,
        max_lifetime=max_lifetime,
        now=now,
    )
    result: SubjectTokenClaims = claims
    return result


def decode_id_token(
    token: object,
    keys: KeyResolver,
    *,
    issuer: str,
    client_id: str,
    algorithms: Iterable[str],
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: int = MAX_SUBJECT_LIFETIME,
    now: float | None = None,
) -> IdTokenClaims:
    """Verify an OpenID Connect ID token issued to ``client_id`` (OIDC Core §3.1.3.7).

    The ``aud`` must contain ``client_id``; an ``azp`` must be ``client_id``, and a token
    for several audiences must name it in ``azp``. An access token (``typ: at+jwt``)
    is refused here, as an ID token is where an access token is expected. The ``nonce``
    is the client's to check: it is not known here.

    >>> from ajwt_core.keys import SigningKeySet
    >>> keys = SigningKeySet.generate()
    >>> token = keys.active.sign({"iss": "https://op.example", "sub": "alice",
    ...     "aud": "app", "iat": 1000, "exp": 1600}, {})
    >>> decode_id_token(token, keys.verification_keys(), issuer="https://op.example",
    ...     client_id="app", algorithms=["ES256"], now=1100).sub
    'alice'
    >>> decode_id_token(token, keys.verification_keys(), issuer="https://op.example",
    ...     client_id="other-app", algorithms=["ES256"], now=1100)
    Traceback (most recent call last):
    ajwt_core.errors.InvalidGrant: the ID token is not for this IdP
    """
    what = "ID token"
    claims, audiences = _decode_user_jwt(
        token,
        keys,
        IdTokenClaims,
        typ=ID_TOKEN_TYPES,
        what=what,
        issuer=issuer,
        audience=client_id,
        algorithms=algorithms,
        leeway=leeway,
        max_lifetime=max_lifetime,
        now=now,
    )
    result: IdTokenClaims = claims
    if result.azp is not None and result.azp != client_id:
        raise InvalidGrant(Reason.WRONG_AUDIENCE, f"the {what} was issued to another client")
    if result.azp is None and len(audiences) > 1:
        raise InvalidGrant(
            Reason.MISSING_CLAIM, f"the {what} has several audiences and no 'azp' claim"
        )
    return result


# --------------------------------------------------------- client assertions (RFC 7523)

CLIENT_ASSERTION_TYPES: Final = ("client-authentication+jwt", "jwt")
CLIENT_ASSERTION_TYPE_URI: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Default bound on ``exp - iat`` of a client assertion (``IdPSettings``
#: ``client_assertion_max_lifetime``): authlib's and most clients' default is 3600 s.
MAX_CLIENT_ASSERTION_LIFETIME: Final = 3600
#: Client keys may be RSA (RS256, PS256; 2048 bits or more) as well as ES256 / EdDSA:
#: RS256 is what RFC 8414 says servers should support and what clients default to.
CLIENT_ASSERTION_ALGORITHMS: Final = ("ES256", "EdDSA", "RS256", "PS256")


class ClientAssertionClaims(_Claims):
    iss: Text
    sub: Text
    aud: Text | list[Text]
    iat: int
    exp: int
    jti: StoredText


def encode_client_assertion(
    client_id: str,
    key: PopKey,
    *,
    audience: str,
    jti: str,
    now: int,
    lifetime: int = 60,
    kid: str | None = None,
) -> str:
    """``private_key_jwt`` client authentication (RFC 7523 §2.2, RFC 7521 §4.2)."""
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti,
    }
    header = {"typ": CLIENT_ASSERTION_TYPES[0]} | ({"kid": kid} if kid else {})
    return key.sign(claims, header)


def decode_client_assertion(
    token: object,
    key: VerificationKey,
    *,
    client_id: str,
    audience: str | Collection[str],
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: int = MAX_CLIENT_ASSERTION_LIFETIME,
    now: float | None = None,
) -> ClientAssertionClaims:
    """Verify a client assertion with the client's registered key (RFC 7523 §3); its
    ``aud`` must name one of ``audience``, and ``exp - iat`` be at most ``max_lifetime``.
    Failures are :class:`~ajwt_core.errors.InvalidClient`. Single use of ``jti`` is the
    caller's check (kept until the assertion expires)."""
    what = "client assertion"
    header = _jws.read_header(
        token,
        # No typ: RFC 7523 asks for none and most client libraries send none; a typed
        # JWT of another kind (an access token, a DPoP proof…) is still refused.
        typ=(*CLIENT_ASSERTION_TYPES, None),
        algorithms=CLIENT_ASSERTION_ALGORITHMS,
        max_bytes=MAX_TOKEN_BYTES,
        error=InvalidClient,
        what=what,
    )
    assert isinstance(token, str)
    raw = _jws.verify_signature(token, key, header["alg"], error=InvalidClient, what=what)
    claims: ClientAssertionClaims = _validate(ClientAssertionClaims, raw, InvalidClient, what)
    if claims.iss != client_id or claims.sub != client_id:
        raise InvalidClient(Reason.INVALID_CLAIM, "the client assertion is for another client")
    audiences = [claims.aud] if isinstance(claims.aud, str) else claims.aud
    accepted = {audience} if isinstance(audience, str) else set(audience)
    if len(audiences) != 1:
        # An assertion naming this server among others could have been made for one of
        # them and replayed here (the audience injection of draft-ietf-oauth-rfc7523bis).
        raise InvalidClient(
            Reason.WRONG_AUDIENCE, "the client assertion's aud must name this server alone"
        )
    if accepted.isdisjoint(audiences):
        raise InvalidClient(Reason.WRONG_AUDIENCE, "the client assertion is for another server")
    _jws.check_times(
        raw,
        now=time.time() if now is None else now,
        leeway=leeway,
        max_lifetime=max_lifetime,
        error=InvalidClient,
        what=what,
    )
    return claims


# ------------------------------------------------------------------ ledger checkpoints

CHECKPOINT_TYPE: Final = "ledger-checkpoint+jwt"
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


class CheckpointClaims(_Claims):
    """The IdP's signed word that run ``run_id``'s ledger had entries ``0..seq``, the
    last one hashing to ``head``, at time ``iat`` (DESIGN §8, §12).

    A client keeps the latest one it received; the ledger can later be checked against
    it without trusting the database the ledger lives in.
    """

    iss: Text
    run_id: Text
    seq: int = Field(ge=0)
    head: Digest
    iat: int


def encode_checkpoint(claims: CheckpointClaims, key: SigningKey) -> str:
    """Sign a ledger checkpoint with the IdP key (``typ: ledger-checkpoint+jwt``, ``kid``)."""
    return key.sign(claims.model_dump(), {"typ": CHECKPOINT_TYPE})


def decode_checkpoint(
    token: object,
    keys: KeyResolver,
    *,
    issuer: str,
    run_id: str | None = None,
    leeway: int = DEFAULT_LEEWAY,
    now: float | None = None,
    algorithms: Iterable[str] = ALLOWED_ALGORITHMS,
) -> CheckpointClaims:
    """Verify a ledger checkpoint against the IdP's keys (its JWKS) and return its claims.

    Checks: size, compact form, ``typ``, ``alg``, no key-carrying header, known ``kid``,
    signature, claims, ``iss``, ``run_id`` (when given: ``wrong_run`` for another run's
    checkpoint) and ``iat`` not in the future. A checkpoint does not expire: it records a
    fact. Every failure is :class:`InvalidToken` with a specific reason.

    >>> from ajwt_core.keys import SigningKeySet
    >>> keys = SigningKeySet.generate()
    >>> token = encode_checkpoint(CheckpointClaims(iss="https://idp.example", run_id="run-1",
    ...     seq=3, head="sha256:" + "ab" * 32, iat=1000), keys.active)
    >>> decode_checkpoint(token, keys.verification_keys(), issuer="https://idp.example",
    ...                   run_id="run-1", now=2000).seq
    3
    >>> decode_checkpoint(token, keys.verification_keys(), issuer="https://idp.example",
    ...                   run_id="run-2", now=2000)
    Traceback (most recent call last):
    ajwt_core.errors.InvalidToken: the checkpoint is for run 'run-1', not 'run-2'
    """
    what = "checkpoint"
    header = _jws.read_header(
        token,
        typ=CHECKPOINT_TYPE,
        algorithms=tuple(algorithms),
        max_bytes=MAX_TOKEN_BYTES,
        error=InvalidToken,
        what=what,
    )
    assert isinstance(token, str)
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken(Reason.UNKNOWN_KID, "the checkpoint's signing key is not known")
    payload = _jws.verify_payload(token, key, header["alg"], error=InvalidToken, what=what)
    claims: CheckpointClaims = _validate_json(CheckpointClaims, payload, InvalidToken, what)
    if claims.iss != issuer:
        raise InvalidToken(Reason.WRONG_ISSUER, "the checkpoint is from another issuer")
    if run_id is not None and claims.run_id != run_id:
        raise InvalidToken(
            Reason.WRONG_RUN, f"the checkpoint is for run {claims.run_id!r}, not {run_id!r}"
        )
    if claims.iat > (time.time() if now is None else now) + leeway:
        raise InvalidToken(Reason.ISSUED_IN_FUTURE, "the checkpoint was issued in the future")
    return claims


def checkpoint_seq_unverified(token: str) -> int | None:
    """The ``seq`` a checkpoint states, read WITHOUT verifying it (``None`` if unreadable).

    Only for a client ordering the checkpoints its own IdP sent it over an authenticated
    connection (keep the latest); anything that relies on a checkpoint verifies it with
    :func:`decode_checkpoint`.

    >>> checkpoint_seq_unverified("not a token") is None
    True
    """
    try:
        segment = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, RecursionError):
        return None
    seq = payload.get("seq") if isinstance(payload, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
