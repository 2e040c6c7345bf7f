"""Shared JWS plumbing for the per-kind decoders (private).

Each token kind has its own public decode function with its own ``typ``, algorithms and
claim rules (RFC 8725 §3.11–3.12); this module only holds the two steps they share:
reading the protected header safely, and verifying the signature through pyjwt. Both
turn every failure into the caller's error class with a specific :class:`Reason`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import jwt
from jwt.utils import base64url_decode

from ajwt_core.errors import AJWTError, Reason
from ajwt_core.keys import VerificationKey

_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Unused low bits of the last character, by the length of the unpadded segment mod 4.
_UNUSED_BITS = (0, 0, 0b1111, 0b11)


class _PyJWS(jwt.PyJWS):
    """pyjwt's JWS with its strict segment check done at C speed.

    pyjwt 2.15 rejects any segment byte outside the base64url alphabet
    (GHSA-hxm8-2xgr-2p9m) with a per-byte Python loop, about 60 ns a byte: more than
    the signature check for an intent token with a delegation chain. This override
    accepts and rejects exactly the same segments (``tests/core/test_jws_segment.py``
    compares the two on generated input) and leaves the decoding to pyjwt's own
    ``base64url_decode``. If a later pyjwt renames the hook, pyjwt's check runs instead
    (and that test fails, so the change is noticed).
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        body = segment.rstrip(b"=")
        padding = len(segment) - len(body)
        if (
            padding > 2
            or (padding and len(segment) % 4)
            or len(body) % 4 == 1
            or body.translate(None, _BASE64URL)
        ):
            raise jwt.DecodeError(f"Invalid {name} padding")
        # The last character of a 2- or 3-character final group carries 4 or 2 unused
        # bits; they must be zero, or the segment is a second spelling of the same bytes
        # (pyjwt finds this by re-encoding; a table lookup gives the same answer).
        if body and _UNUSED_BITS[len(body) % 4] & _BASE64URL.index(body[-1]):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            return base64url_decode(body)
        except ValueError as error:  # binascii.Error is a ValueError
            raise jwt.DecodeError(f"Invalid {name} padding") from error


_JWS = _PyJWS()
# Header parameters that would let a token choose its own verification key or demand
# extensions we do not implement (RFC 8725 §3.10; the key comes from the caller).
KEY_CARRYING_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit"})

ErrorClass = type[AJWTError]


def _media_type(value: object) -> str | None:
    # RFC 7515 §4.1.9: "application/" may be omitted; compare case-insensitively.
    if not isinstance(value, str):
        return None
    lowered = value.lower()
    return lowered.removeprefix("application/")


def _parse_header(segment: str) -> Mapping[str, Any] | None:
    try:
        header = _JWS.get_unverified_header(segment + "..")
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return None
    return MappingProxyType(header) if isinstance(header, dict) else None


def check_compact(token: object, *, max_bytes: int, error: ErrorClass, what: str) -> str:
    """``token`` as a compact JWS of at most ``max_bytes`` ASCII characters, or refused."""
    if not isinstance(token, str) or not token:
        raise error(Reason.MALFORMED_TOKEN, f"the {what} is missing or not a string")
    if len(token) > max_bytes:
        raise error(Reason.TOKEN_TOO_LARGE, f"the {what} is larger than {max_bytes} bytes")
    if not token.isascii() or token.count(".") != 2:
        raise error(Reason.MALFORMED_TOKEN, f"the {what} is not a compact JWS")
    return token


def check_header(
    segment: str,
    *,
    typ: tuple[str | None, ...],
    algorithms: Collection[str],
    error: ErrorClass,
    what: str,
    forbidden: Collection[str],
) -> Mapping[str, Any]:
    """Parse the protected header ``segment`` and check ``typ``, ``alg`` and forbidden
    parameters (read-only: callers never mutate it). Not cached: see :func:`read_header`."""
    header = _parse_header(segment)
    if header is None:
        raise error(Reason.MALFORMED_TOKEN, f"the {what} header cannot be decoded")
    declared = header.get("typ")
    media = _media_type(declared)
    if media not in typ or (media is None and declared is not None):  # typ: 5 is no "none"
        named = [t for t in typ if t is not None]
        expected = f"typ {named[0]!r}" if named else ""
        if None in typ:
            expected = f"no typ or {expected}" if named else "no typ"
        raise error(Reason.WRONG_TYPE, f"the {what} must have {expected}")
    if header.get("alg") not in algorithms:
        raise error(Reason.ALG_NOT_ALLOWED, f"the {what} algorithm is not allowed")
    found = sorted(set(header).intersection(forbidden))
    if found:
        raise error(Reason.FORBIDDEN_HEADER, f"the {what} header may not carry {found[0]!r}")
    return header


# Every token an IdP key signs, and every proof one agent key signs, shares its header
# segment; pyjwt's strict base64url check costs more than the signature, so an accepted
# header is remembered by its exact segment and the rules it passed. A refusal raises,
# so it is never cached.
_checked_header = lru_cache(maxsize=4096)(check_header)


def read_header(
    token: object,
    *,
    typ: str | Collection[str | None],
    algorithms: Collection[str],
    max_bytes: int,
    error: ErrorClass,
    what: str,
    forbidden: Collection[str] = KEY_CARRYING_HEADERS,
) -> Mapping[str, Any]:
    """Parse and check the unverified protected header: size, ``typ``, ``alg``, forbidden.

    ``typ`` lists the accepted media types (lower case, no ``application/``); ``None``
    among them accepts a header without ``typ`` (an OpenID Connect ID token).
    """
    compact = check_compact(token, max_bytes=max_bytes, error=error, what=what)
    return _checked_header(
        compact.partition(".")[0],
        typ=(typ,) if isinstance(typ, str) else tuple(typ),
        algorithms=algorithms if isinstance(algorithms, tuple) else tuple(algorithms),
        # A class is hashable; mypy reads ``__hash__`` on it as the instances' method.
        error=error,  # type: ignore[arg-type]
        what=what,
        forbidden=forbidden if isinstance(forbidden, frozenset) else frozenset(forbidden),
    )


def verify_payload(
    token: str, key: VerificationKey, header_alg: str, *, error: ErrorClass, what: str
) -> bytes:
    """Verify the signature with exactly ``key`` (its own algorithm); the payload bytes."""
    if header_alg != key.alg:
        # The key decides the algorithm, never the token (no alg confusion).
        raise error(Reason.ALG_NOT_ALLOWED, f"the {what} algorithm does not match its key")
    try:
        payload: bytes = _JWS.decode(token, key.key, algorithms=[key.alg])
    except jwt.InvalidSignatureError:
        raise error(Reason.BAD_SIGNATURE, f"the {what} signature is not valid") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise error(Reason.MALFORMED_TOKEN, f"the {what} cannot be decoded") from None
    return payload


def verify_signature(
    token: str, key: VerificationKey, header_alg: str, *, error: ErrorClass, what: str
) -> dict[str, Any]:
    """Verify the signature with exactly ``key`` (its own algorithm) and parse the claims."""
    payload = verify_payload(token, key, header_alg, error=error, what=what)
    try:
        # RFC 8259 §8.1: JSON between systems is UTF-8 (json.loads of bytes would also
        # sniff UTF-16 and UTF-32).
        claims = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        raise error(Reason.MALFORMED_TOKEN, f"the {what} payload is not JSON") from None
    if not isinstance(claims, dict):
        raise error(Reason.MALFORMED_TOKEN, f"the {what} payload is not a JSON object")
    return claims


def check_times(
    claims: Mapping[str, Any],
    *,
    now: float,
    leeway: float,
    max_lifetime: int,
    error: ErrorClass,
    what: str,
) -> None:
    """``exp`` / ``nbf`` / ``iat`` with leeway, and the lifetime cap (RFC 7519 §4.1)."""
    times: dict[str, int] = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name, claims.get("iat")) if name == "nbf" else claims.get(name)
        if value is None:
            raise error(Reason.MISSING_CLAIM, f"the {what} has no {name!r} claim")
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(Reason.INVALID_CLAIM, f"the {what} claim {name!r} is not an integer")
        times[name] = value
    check_time_window(
        times["exp"],
        times["iat"],
        times["nbf"],
        now=now,
        leeway=leeway,
        max_lifetime=max_lifetime,
        error=error,
        what=what,
    )


def check_time_window(
    exp: int,
    iat: int,
    nbf: int,
    *,
    now: float,
    leeway: float,
    max_lifetime: int,
    error: ErrorClass,
    what: str,
) -> None:
    """:func:`check_times` for claims already known to be integers (a validated model)."""
    if exp <= now - leeway:
        raise error(Reason.TOKEN_EXPIRED, f"the {what} has expired")
    if nbf > now + leeway:
        raise error(Reason.TOKEN_NOT_YET_VALID, f"the {what} is not valid yet")
    if iat > now + leeway:
        raise error(Reason.ISSUED_IN_FUTURE, f"the {what} was issued in the future")
    if exp - min(iat, nbf) > max_lifetime:
        raise error(Reason.LIFETIME_TOO_LONG, f"the {what} lifetime exceeds {max_lifetime} seconds")
