"""RFC 9449 DPoP proofs, with the A-JWT body hash ``bh`` (DESIGN §5.3).

A proof is a JWS signed by the agent's PoP key, carrying that key's public JWK in its
header, bound to one HTTP method and URL, to the access token (``ath``), to the request
body (``bh``) and optionally to a server nonce. ``bh`` is an extension: how strictly a
verifier asks for it is a :class:`BodyBinding` (a plain RFC 9449 proof has none).

>>> from ajwt_core.keys import PopKey
>>> key = PopKey.generate()
>>> proof = create_proof(key, "POST", "https://API.example:443/repos/x/pulls?draft=1",
...                      token="tok", body=b'{"title": "fix"}', now=1000)
>>> verified = verify_proof(proof, method="POST", url="https://api.example/repos/x/pulls",
...                         token="tok", body=b'{"title": "fix"}', expected_jkt=key.thumbprint,
...                         now=1010)
>>> verified.htu
'https://api.example/repos/x/pulls'
>>> verify_proof(proof, method="POST", url="https://api.example/repos/x/pulls",
...              token="tok", body=b'{"title": "evil"}', now=1010)
Traceback (most recent call last):
ajwt_core.errors.InvalidDPoPProof: the proof is not bound to this request body
>>> plain = create_proof(key, "GET", "https://api.example/repos", token="tok", now=1000)
>>> verify_proof(plain, method="GET", url="https://api.example/repos", token="tok", body=b"",
...              body_binding=BodyBinding.IF_BODY, now=1010).htm   # no body: no bh needed
'GET'
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from ajwt_core import _jws
from ajwt_core.errors import InvalidDPoPProof, InvalidRequest, Reason, UseDPoPNonce
from ajwt_core.keys import (
    ALLOWED_ALGORITHMS,
    PopKey,
    VerificationKey,
    b64url,
    read_public_jwk,
)
from ajwt_core.replay import ReplayCache
from ajwt_core.uri import normalise_http_url

DPOP_TYPE: Final = "dpop+jwt"
#: How old a proof may be (seconds); also the replay-cache retention.
DEFAULT_MAX_AGE: Final = 60
#: How far in the future a proof's ``iat`` may lie (clock skew).
DEFAULT_FUTURE_LEEWAY: Final = 5
MAX_PROOF_BYTES: Final = 4096
MAX_JTI_LENGTH: Final = 128


@lru_cache(maxsize=4096)
def normalise_htu(url: str) -> str:
    """The ``htu`` form of a URL: RFC 3986 §6.2.2 syntax-based normalisation (case of
    scheme, host and percent-encoding; unreserved characters decoded; dot segments
    removed), default port dropped, empty path as ``/``, no query or fragment (RFC 9449
    §4.2, §4.3). A URL that is not an absolute ``http(s)`` URI is refused, not repaired.

    >>> normalise_htu("HTTPS://Api.Example:443/a/./b/%7euser?q=1#f")
    'https://api.example/a/b/~user'
    >>> normalise_htu("http://127.0.0.1:8000")
    'http://127.0.0.1:8000/'
    >>> normalise_htu("https://api.example/a%2fb") == normalise_htu("https://api.example/a/b")
    False
    """
    try:
        return normalise_http_url(url)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, f"the URL is not an absolute http(s) URI: {exc}"
        ) from None


@lru_cache(maxsize=1024)  # a token is reused for many requests, by the shim and the RS
def access_token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII access token)) (RFC 9449 §4.2)."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def body_hash(body: bytes) -> str:
    """``bh``: base64url(SHA-256(request body)), the A-JWT extension of DESIGN §5.3."""
    return b64url(hashlib.sha256(body).digest())


class BodyBinding(StrEnum):
    """How strictly a verifier asks for ``bh`` (DESIGN §5.3, §7 step 4).

    A ``bh`` that is present is always checked; the policies differ only on a proof
    without one: refused always (``REQUIRED``), refused when the request has a body
    (``IF_BODY``, the resource servers' default), or accepted (``OPTIONAL``: a plain
    RFC 9449 client, e.g. at the IdP's token endpoint).
    """

    REQUIRED = "required"
    IF_BODY = "if_body"
    OPTIONAL = "optional"


def create_proof(
    key: PopKey,
    method: str,
    url: str,
    token: str | None = None,
    body: bytes | None = None,
    nonce: str | None = None,
    *,
    now: float | None = None,
    jti: str | None = None,
) -> str:
    """Sign a DPoP proof for one request with the agent's PoP key (a fresh random ``jti``
    unless one is given, as the interoperability vectors do)."""
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": normalise_htu(url),
        "iat": int(time.time() if now is None else now),
    }
    if token is not None:
        claims["ath"] = access_token_hash(token)
    if body is not None:
        claims["bh"] = body_hash(body)
    if nonce is not None:
        claims["nonce"] = nonce
    return key.sign(claims, {"typ": DPOP_TYPE, "jwk": key.public_jwk})


_EMPTY_BODY_HASH: Final = body_hash(b"")


def _check_body_hash(bh: object, body: bytes, binding: BodyBinding) -> None:
    if bh is None:
        if binding is BodyBinding.REQUIRED or (binding is BodyBinding.IF_BODY and body):
            raise InvalidDPoPProof(
                Reason.BODY_HASH_MISSING, "the proof must carry 'bh', the hash of the body"
            )
        return
    if bh != (body_hash(body) if body else _EMPTY_BODY_HASH):
        raise InvalidDPoPProof(
            Reason.BODY_HASH_MISMATCH, "the proof is not bound to this request body"
        )


# A proof carries its own key in ``jwk`` (RFC 9449); every other key-carrying header is out.
_PROOF_FORBIDDEN_HEADERS = _jws.KEY_CARRYING_HEADERS - {"jwk"}


class VerifiedProof(NamedTuple):
    """What a verified proof establishes: the key (``jkt``) and the request it covers.

    A named tuple: immutable like the frozen dataclass it was, built in a third of the
    time (one per request)."""

    jkt: str
    jti: str
    iat: float
    htm: str
    htu: str
    nonce: str | None
    jwk: dict[str, Any]


_PROOF: Final = "DPoP proof"


@lru_cache(maxsize=4096)
def _proof_key(
    segment: str, algorithms: tuple[str, ...]
) -> tuple[Mapping[str, Any], VerificationKey]:
    """The checked header's ``jwk`` and its key, for a proof's header ``segment``.

    An agent signs every proof with one key, so its proofs share this segment: the
    header and the key are checked once per segment and algorithm list, like a peer
    remembering a known key (the signature is verified on every proof). A refusal
    raises, so it is never cached."""
    header = _jws.check_header(
        segment,
        typ=(DPOP_TYPE,),
        algorithms=algorithms,
        error=InvalidDPoPProof,
        what=_PROOF,
        forbidden=_PROOF_FORBIDDEN_HEADERS,
    )
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "the proof header has no 'jwk'")
    try:
        key = read_public_jwk(jwk, header["alg"], algorithms)
    except InvalidRequest as exc:
        raise InvalidDPoPProof(exc.reason, f"the proof key is not acceptable: {exc}") from None
    return MappingProxyType(jwk), key


def verify_proof(
    proof: object,
    *,
    method: str,
    url: str,
    token: str | None = None,
    body: bytes | None = None,
    body_binding: BodyBinding = BodyBinding.REQUIRED,
    expected_jkt: str | None = None,
    nonce: str | Callable[[str], bool] | None = None,
    replay_cache: ReplayCache | None = None,
    now: float | None = None,
    max_age: int = DEFAULT_MAX_AGE,
    future_leeway: int = DEFAULT_FUTURE_LEEWAY,
    algorithms: Iterable[str] = ALLOWED_ALGORITHMS,
) -> VerifiedProof:
    """Verify a DPoP proof for a request (RFC 9449 §4.3, DESIGN §7 steps 4–5).

    ``token`` given → ``ath`` must match it; ``body`` given (``b""`` for a request
    without a body) → ``bh``, when present, must match it, and ``body_binding`` says
    whether it must be present; ``nonce`` given → the proof must carry it
    (a string, or a predicate for rotating nonces); ``expected_jkt`` given → the proof key
    must be that key (``cnf.jkt``); ``replay_cache`` given → ``(jkt, jti)`` must be new.
    Failures are :class:`InvalidDPoPProof` (or :class:`UseDPoPNonce`) with a reason.
    """
    algorithms = algorithms if isinstance(algorithms, tuple) else tuple(algorithms)
    if (
        not isinstance(proof, str)
        or len(proof) > MAX_PROOF_BYTES
        or not proof.isascii()
        or proof.count(".") != 2
    ):  # refused, with the reason of the first rule it breaks
        _jws.check_compact(proof, max_bytes=MAX_PROOF_BYTES, error=InvalidDPoPProof, what=_PROOF)
    assert isinstance(proof, str)
    jwk, key = _proof_key(proof.partition(".")[0], algorithms)
    claims = _jws.verify_signature(proof, key, key.alg, error=InvalidDPoPProof, what=_PROOF)

    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "the proof 'jti' is missing or invalid")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "the proof has no 'htm' or 'htu'")
    # A NumericDate may be non-integer (RFC 7519 §2); JSON's NaN and Infinity are not dates.
    if type(iat) is not int and not (type(iat) is float and math.isfinite(iat)):
        raise InvalidDPoPProof(Reason.MALFORMED_PROOF, "the proof 'iat' is missing or invalid")
    if htm != method:
        raise InvalidDPoPProof(Reason.METHOD_MISMATCH, "the proof is for another HTTP method")
    request_htu = normalise_htu(url)
    # A client signs the normal form (create_proof does): equal text needs no second
    # normalisation (the form is a fixed point of normalise_htu).
    if htu != request_htu:
        try:
            proof_htu = normalise_htu(htu)
        except InvalidRequest:
            raise InvalidDPoPProof(
                Reason.MALFORMED_PROOF, "the proof 'htu' is not an absolute http(s) URI"
            ) from None
        if proof_htu != request_htu:
            raise InvalidDPoPProof(Reason.URL_MISMATCH, "the proof is for another URL")
    proof_htu = request_htu
    current = time.time() if now is None else now
    if iat < current - max_age:
        raise InvalidDPoPProof(Reason.PROOF_EXPIRED, "the proof is too old")
    if iat > current + future_leeway:
        raise InvalidDPoPProof(Reason.PROOF_FROM_FUTURE, "the proof was issued in the future")
    if token is not None and claims.get("ath") != access_token_hash(token):
        raise InvalidDPoPProof(
            Reason.ACCESS_TOKEN_HASH_MISMATCH, "the proof is not bound to this access token"
        )
    if body is not None:
        _check_body_hash(claims.get("bh"), body, body_binding)
    proof_nonce = claims.get("nonce")
    if nonce is not None:
        if not isinstance(proof_nonce, str):
            raise UseDPoPNonce(Reason.NONCE_REQUIRED, "the server requires a DPoP nonce")
        if callable(nonce):
            valid = nonce(proof_nonce)
        else:
            valid = secrets.compare_digest(proof_nonce.encode(), nonce.encode())
        if not valid:
            raise UseDPoPNonce(Reason.NONCE_MISMATCH, "the DPoP nonce is not current")
    if expected_jkt is not None and key.jkt != expected_jkt:
        raise InvalidDPoPProof(Reason.KEY_NOT_BOUND, "the proof key is not the token's key")
    if replay_cache is not None and not replay_cache.first_use(
        f"{key.jkt}:{jti}", ttl=max_age + future_leeway, now=current
    ):
        raise InvalidDPoPProof(Reason.REPLAYED, "the proof has been used before")
    return VerifiedProof(
        key.jkt,
        jti,
        iat,
        htm,
        proof_htu,
        proof_nonce if isinstance(proof_nonce, str) else None,
        dict(jwk),
    )
