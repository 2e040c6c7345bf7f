"""Peers that do the same work as A-JWT's resource server, written directly on pyjwt.

- :func:`fair_pyjwt`: pyjwt's ``PyJWT`` with the base64url segment check that
  ``ajwt_core._jws`` applies to itself. pyjwt 2.15 checks every byte of every segment
  against the base64url alphabet in a Python loop (about 60 ns a byte); A-JWT's
  decoders run the same check at C speed, so a peer on stock pyjwt pays a cost A-JWT
  skips. The fair peers swap in the very same ``PyJWS`` subclass and nothing else.
- :class:`DPoPPeer`: what a resource server does for a DPoP-bound JWT access token
  (RFC 9449 §4.3 and §7.1, RFC 9068 claims): decode and validate the access token
  (signature, ``iss``, ``aud``, ``exp``), read the proof's header, load its ``jwk``,
  verify the proof's signature, then ``htm``, ``htu``, ``iat``, ``ath``, the key's
  RFC 7638 thumbprint against ``cnf.jkt``, ``jti`` replay (in A-JWT's own in-process
  replay store: expiring, bounded, atomic) and the route's scope.
  ``fair=False`` runs it on stock pyjwt, ``fair=True`` with the segment fix. It
  remembers what A-JWT's verifier remembers and nothing more: the parsed proof header
  with its key and thumbprint (by the header's exact segment), ``ath`` by token, the
  normalised URL. So a known agent's requests find these warm for both, and a first
  contact (new key, token and URL) finds them cold for both; the access token itself
  is decoded on every request (the cold rows).

Benchmark code only: the peers refuse what they must (tested), but A-JWT's own checks
live in ``ajwt_core.dpop`` and ``ajwt_core.rs``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import jwt

from ajwt_core._jws import _PyJWS
from ajwt_core.keys import b64url
from ajwt_core.replay import InMemoryReplayCache

# RFC 7638 §3.2: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class PeerRefused(Exception):
    """The peer refused the request (the reason is the message)."""


def fair_pyjwt() -> jwt.PyJWT:
    """A ``PyJWT`` whose JWS layer is ajwt's ``_PyJWS``: pyjwt's own decode with the
    segment check at C speed (``jwt.api_jwt`` wires its global object the same way)."""
    decoder = jwt.PyJWT()
    decoder._jws = _PyJWS(options=decoder._get_sig_options())
    return decoder


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public EC or OKP JWK."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise PeerRefused("unsupported proof key type")
    required = {name: jwk[name] for name in members}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def htu_of(url: str) -> str:
    """The request URL as RFC 9449 §4.3 compares it: no query, no fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"


class DPoPPeer:
    """An RFC 9449 resource-server check on pyjwt (see the module)."""

    _MEMO = 4096  # entries per memo; each is cleared when full

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        key: Any,
        fair: bool,
        algorithms: tuple[str, ...] = ("ES256",),
        max_age: int = 60,
        leeway: int = 5,
    ) -> None:
        self._jwt = fair_pyjwt() if fair else jwt.PyJWT()
        self._jws = _PyJWS() if fair else jwt.PyJWS()
        self._issuer = issuer
        self._audience = audience
        self._key = key
        self._algorithms = list(algorithms)
        self._max_age = max_age
        self._leeway = leeway
        # RFC 9449 §11.1: a proof's jti is remembered while the proof is acceptable, in
        # bounded memory, first use decided atomically: the very store A-JWT's verifier
        # uses in one process (a set never forgets and its check-then-add is not atomic).
        self._seen = InMemoryReplayCache()
        self._replay_ttl = max_age + leeway
        self._proof_keys: dict[str, tuple[str, Any, str]] = {}
        self._aths: dict[str, str] = {}
        self._htus: dict[str, str] = {}

    def _remember(self, memo: dict[str, Any], key: str, value: Any) -> None:
        if len(memo) >= self._MEMO:
            memo.clear()
        memo[key] = value

    def _proof_key(self, proof: str) -> tuple[str, Any, str]:
        """(alg, public key, thumbprint) of the proof's header ``jwk``, checked once per
        header segment (the signature is verified on every request)."""
        segment = proof.partition(".")[0]
        known = self._proof_keys.get(segment)
        if known is None:
            header = self._jws.get_unverified_header(proof)
            jwk = header.get("jwk")
            if header.get("typ") != "dpop+jwt" or header.get("alg") not in self._algorithms:
                raise PeerRefused("the proof must be a dpop+jwt with an allowed algorithm")
            if not isinstance(jwk, dict) or _PRIVATE_MEMBERS.intersection(jwk):
                raise PeerRefused("the proof must carry a public jwk")
            alg = header["alg"]
            known = (alg, jwt.PyJWK(jwk, algorithm=alg).key, thumbprint(jwk))
            self._remember(self._proof_keys, segment, known)
        return known

    def verify(
        self, *, method: str, url: str, authorization: str, proof: str, scope: str
    ) -> dict[str, Any]:
        """Check one request; the access token's claims, or :class:`PeerRefused`."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "dpop" or not token:
            raise PeerRefused("use the DPoP authorization scheme")
        try:
            claims = self._jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat"]},
            )
            alg, public, jkt = self._proof_key(proof)
            payload = json.loads(self._jws.decode(proof, public, algorithms=[alg]))
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise PeerRefused(str(exc)) from None
        now = time.time()
        iat = payload.get("iat")
        htu = self._htus.get(url)
        if htu is None:
            htu = htu_of(url)
            self._remember(self._htus, url, htu)
        if payload.get("htm") != method or payload.get("htu") != htu:
            raise PeerRefused("the proof is for another request")
        if not isinstance(iat, int) or not now - self._max_age <= iat <= now + self._leeway:
            raise PeerRefused("the proof is too old or from the future")
        ath = self._aths.get(token)
        if ath is None:
            ath = b64url(hashlib.sha256(token.encode("ascii")).digest())
            self._remember(self._aths, token, ath)
        if payload.get("ath") != ath:
            raise PeerRefused("the proof is not bound to this access token")
        if (claims.get("cnf") or {}).get("jkt") != jkt:
            raise PeerRefused("the proof key is not the token's key")
        jti = payload.get("jti")
        if not isinstance(jti, str) or not self._seen.first_use(f"{jkt}:{jti}", self._replay_ttl):
            raise PeerRefused("the proof has been used before")
        if scope not in str(claims.get("scope", "")).split():
            raise PeerRefused("insufficient scope")
        return claims
