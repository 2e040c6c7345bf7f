"""Keys: agent proof-of-possession keys, IdP signing keys, JWKs and RFC 7638 thumbprints.

DESIGN §4. Every JWS operation goes through pyjwt + cryptography; this module only
holds keys, derives them, exports their public halves and computes thumbprints.

Agent PoP keys are *derived*, not stored (DESIGN §4)::

    d = HKDF-SHA256(ikm=master secret, salt=checksum digest bytes,
                    info="ajwt/pop/v1|" + agent_id + "|" + epoch)

so the same agent (same checksum) in the same process and key epoch always gets the same
key, and a changed agent gets a new one. The private half never leaves a
:class:`PopKey`: it has no accessor, no ``repr`` of the secret, and refuses pickling.

>>> secret = bytes(32)
>>> key = derive_pop_key(secret, "sha256:" + "ab" * 32, "planner", epoch=0)
>>> key.alg, key.public_jwk["kty"], key.public_jwk["crv"]
('ES256', 'EC', 'P-256')
>>> key.thumbprint == derive_pop_key(secret, "sha256:" + "ab" * 32, "planner", 0).thumbprint
True
>>> "d" in key.public_jwk
False
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NoReturn, TypeAlias

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.utils import base64url_encode

from ajwt_core.canonical import DIGEST_PREFIX, jcs
from ajwt_core.errors import InvalidRequest, Reason

Alg: TypeAlias = Literal["ES256", "EdDSA"]
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
VerifyingKey: TypeAlias = PublicKey | rsa.RSAPublicKey

#: Asymmetric algorithms A-JWT signs and accepts (RFC 8725 §3.1: an explicit allow-list).
ALLOWED_ALGORITHMS: tuple[Alg, ...] = ("ES256", "EdDSA")
DEFAULT_ALG: Alg = "ES256"
#: What an upstream OAuth/OIDC IdP may sign the user's subject token with.
UPSTREAM_ALGORITHMS: tuple[str, ...] = ("ES256", "EdDSA", "RS256", "PS256")
MIN_RSA_BITS = 2048
#: Default PoP key lifetime; the derivation epoch advances with it (DESIGN §4).
DEFAULT_KEY_LIFETIME = 24 * 3600
POP_INFO_PREFIX = "ajwt/pop/v1|"
MIN_MASTER_SECRET_BYTES = 32

# RFC 7638 §3.2: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
    "oct": ("k", "kty"),
}
# A string that JSON (and so JCS) writes as itself between quotes: printable ASCII
# without '"' (0x22) or '\\' (0x5c).
_PLAIN_JSON_STRING = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")

# RFC 7517 / 7518 private members: a public JWK carrying any of these is refused.
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as JOSE spells hashes and thumbprints."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url without padding.

    Only the required members of the key type are hashed, in lexicographic order with no
    whitespace (for these string-valued members that is exactly their JCS form).

    >>> # RFC 8037 appendix A.3
    >>> jwk_thumbprint({"kty": "OKP", "crv": "Ed25519",
    ...                 "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ignored"})
    'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k'
    """
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise InvalidRequest(Reason.INVALID_KEY, f"unsupported JWK key type {kty!r}")
    required: dict[str, str] = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidRequest(Reason.INVALID_KEY, f"JWK member {name!r} is missing")
        required[name] = value
    if all(_PLAIN_JSON_STRING.fullmatch(value) for value in required.values()):
        # Printable ASCII without '"' or '\\' is its own JSON text between quotes, so
        # the JCS form is written directly (the names are sorted in the table): what
        # every real key's base64url members are, at a quarter of the general cost.
        text = ",".join(f'"{name}":"{value}"' for name, value in required.items())
        return b64url(hashlib.sha256(b"{" + text.encode("ascii") + b"}").digest())
    return b64url(hashlib.sha256(jcs(required)).digest())


def key_epoch(now: float | None = None, lifetime: int = DEFAULT_KEY_LIFETIME) -> int:
    """The PoP key epoch for a time: it advances once per key lifetime."""
    return int((time.time() if now is None else now) // lifetime)


def _public_jwk_of(public: PublicKey) -> dict[str, Any]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(public, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(public, as_dict=True))


def _alg_of(private: PrivateKey) -> Alg:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        return "ES256"
    raise InvalidRequest(Reason.INVALID_KEY, "only P-256 (ES256) and Ed25519 keys are supported")


def _generate_private(alg: Alg) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise InvalidRequest(Reason.ALG_NOT_ALLOWED, f"algorithm {alg!r} is not allowed")


_PYJWS = jwt.PyJWS()
_USUAL_HEADERS = frozenset({"typ", "jwk", "kid"})


class _PrivateKeyHolder:
    """Holds a private key; signs with pyjwt; never reveals or serialises the secret."""

    __slots__ = ("_algorithm", "_header_segments", "_jkt", "_private", "_public_jwk", "alg")

    def __init__(self, private: PrivateKey) -> None:
        self._private = private
        self.alg: Alg = _alg_of(private)
        self._public_jwk = _public_jwk_of(private.public_key())
        self._jkt = jwk_thumbprint(self._public_jwk)
        self._algorithm = _PYJWS.get_algorithm_by_name(self.alg)
        self._header_segments: dict[tuple[str, bool, bool], bytes] = {}

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (a fresh copy; never contains ``d``)."""
        return dict(self._public_jwk)

    @property
    def thumbprint(self) -> str:
        """RFC 7638 thumbprint of the public key (the ``jkt`` of DESIGN §5)."""
        return self._jkt

    @property
    def public_key(self) -> PublicKey:
        return self._private.public_key()

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any]) -> str:
        """Sign ``claims`` as a compact JWS with this key's algorithm (via pyjwt).

        The usual headers (``typ``, plus this key's own ``jwk`` or ``kid``) are the same
        for every token a key signs, so pyjwt writes that header segment once and later
        calls reuse it; the claims are serialised as pyjwt does and signed with pyjwt's
        algorithm object (``tests/core/test_keys.py`` checks the output is byte-for-byte
        ``jwt.encode``'s for EdDSA). Any other header goes through ``jwt.encode``.
        """
        shape = self._header_shape(headers)
        if shape is None:
            return jwt.encode(
                dict(claims), self._private, algorithm=self.alg, headers=dict(headers)
            )
        segment = self._header_segments.get(shape)
        if segment is None:
            empty = jwt.encode({}, self._private, algorithm=self.alg, headers=dict(headers))
            segment = self._header_segments[shape] = empty.encode("ascii").partition(b".")[0]
        payload = json.dumps(dict(claims), separators=(",", ":")).encode("utf-8")
        signing_input = segment + b"." + base64url_encode(payload)
        signature = base64url_encode(self._algorithm.sign(signing_input, self._private))
        return (signing_input + b"." + signature).decode("ascii")

    def _header_shape(self, headers: Mapping[str, Any]) -> tuple[str, bool, bool] | None:
        """``(typ, has own jwk, has own kid)`` when the header is one of the usual ones."""
        typ = headers.get("typ")
        if not isinstance(typ, str) or not _USUAL_HEADERS.issuperset(headers):
            return None
        jwk, kid = headers.get("jwk"), headers.get("kid")
        if (jwk is not None and jwk != self._public_jwk) or (kid is not None and kid != self._jkt):
            return None
        return typ, jwk is not None, kid is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alg={self.alg!r}, jkt={self._jkt!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds a private key and cannot be serialised")


class PopKey(_PrivateKeyHolder):
    """An agent's proof-of-possession key pair (DESIGN §4). Private half stays inside."""

    __slots__ = ()

    @classmethod
    def generate(cls, alg: Alg = DEFAULT_ALG) -> PopKey:
        """A fresh random key (for tests, and clients that do not derive)."""
        return cls(_generate_private(alg))


def derive_pop_key(
    master_secret: bytes,
    checksum: str,
    agent_id: str,
    epoch: int,
    alg: Alg = DEFAULT_ALG,
) -> PopKey:
    """Derive an agent's PoP key from the shim master secret (DESIGN §4).

    ``salt`` is the 32 raw bytes of the agent checksum digest; ``info`` is
    ``"ajwt/pop/v1|<agent_id>|<epoch>"``. For P-256 the HKDF output is 48 bytes reduced
    into ``[1, n-1]`` (the extra 128 bits make the modular bias negligible, as in
    FIPS 186-5 A.2.1); for Ed25519 the 32-byte output is the private seed.
    """
    if len(master_secret) < MIN_MASTER_SECRET_BYTES:
        raise InvalidRequest(
            Reason.INVALID_KEY,
            f"the shim master secret must be at least {MIN_MASTER_SECRET_BYTES} bytes",
        )
    if not checksum.startswith(DIGEST_PREFIX):
        raise InvalidRequest(Reason.INVALID_KEY, "checksum must be 'sha256:<hex>'")
    try:
        salt = bytes.fromhex(checksum.removeprefix(DIGEST_PREFIX))
    except ValueError:
        raise InvalidRequest(Reason.INVALID_KEY, "checksum must be 'sha256:<hex>'") from None
    if len(salt) != 32:
        raise InvalidRequest(Reason.INVALID_KEY, "checksum must be 'sha256:<64 hex digits>'")
    info = f"{POP_INFO_PREFIX}{agent_id}|{epoch}".encode()
    length = 48 if alg == "ES256" else 32
    okm = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(master_secret)
    if alg == "ES256":
        scalar = int.from_bytes(okm, "big") % (_P256_ORDER - 1) + 1
        return PopKey(ec.derive_private_key(scalar, ec.SECP256R1()))
    if alg == "EdDSA":
        return PopKey(ed25519.Ed25519PrivateKey.from_private_bytes(okm))
    raise InvalidRequest(Reason.ALG_NOT_ALLOWED, f"algorithm {alg!r} is not allowed")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key ready for pyjwt: its algorithm, key object and thumbprint."""

    alg: str
    key: VerifyingKey
    jkt: str
    kid: str | None = None


_KTY_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}


def load_public_jwk(
    jwk: Mapping[str, Any], alg: str, allowed: Iterable[str] = ALLOWED_ALGORITHMS
) -> VerificationKey:
    """Validate a public JWK for ``alg`` and build its key (cached by content).

    Refuses private members (RFC 9449 §4.3: the proof's ``jwk`` MUST NOT contain a
    private key), algorithms outside ``allowed``, and a key type that does not match
    the algorithm (no "HS256 with the public key" confusion).
    """
    _check_jwk_alg(jwk, alg, allowed)
    try:
        content = frozenset(jwk.items())
    except TypeError:  # a member holding a list or object: checked, never cached
        return _checked_public_jwk(jwk, alg)
    return _accepted_public_jwk(alg, content)


def read_public_jwk(
    jwk: Mapping[str, Any], alg: str, allowed: Iterable[str] = ALLOWED_ALGORITHMS
) -> VerificationKey:
    """:func:`load_public_jwk` without its cache, for a caller that remembers the key
    itself (the DPoP proof check, by the proof's header segment)."""
    _check_jwk_alg(jwk, alg, allowed)
    return _checked_public_jwk(jwk, alg)


def _check_jwk_alg(jwk: Mapping[str, Any], alg: str, allowed: Iterable[str]) -> None:
    if alg not in allowed:
        raise InvalidRequest(Reason.ALG_NOT_ALLOWED, f"algorithm {alg!r} is not allowed")
    if not isinstance(jwk, Mapping):
        raise InvalidRequest(Reason.INVALID_KEY, "the JWK is not a JSON object")


@lru_cache(maxsize=4096)
def _accepted_public_jwk(alg: str, content: frozenset[tuple[str, Any]]) -> VerificationKey:
    # Agents send the same JWK in every proof, and parsing a point (checking it is on the
    # curve) costs more than a signature check: an accepted JWK is remembered by exactly
    # its content. A refusal raises, so it is never cached.
    return _checked_public_jwk(dict(content), alg)


def _checked_public_jwk(jwk: Mapping[str, Any], alg: str) -> VerificationKey:
    if PRIVATE_JWK_MEMBERS.intersection(jwk):
        raise InvalidRequest(Reason.PRIVATE_KEY_IN_PROOF, "the JWK contains private key material")
    kty, crv = _KTY_FOR_ALG[alg]
    if jwk.get("kty") != kty or jwk.get("crv") != crv:
        raise InvalidRequest(Reason.INVALID_KEY, f"algorithm {alg} needs a {kty} {crv or ''} key")
    members = _THUMBPRINT_MEMBERS[kty]
    values = tuple(jwk.get(m) for m in members)
    if not all(isinstance(v, str) and v for v in values):
        raise InvalidRequest(Reason.INVALID_KEY, "the JWK's public members are missing")
    kid = jwk.get("kid")
    return _load_public_key(
        alg,
        tuple((member, str(value)) for member, value in zip(members, values, strict=True)),
        kid if isinstance(kid, str) else None,
    )


def _load_public_key(
    alg: str, members: tuple[tuple[str, str], ...], kid: str | None
) -> VerificationKey:
    data = dict(members)
    try:
        key = jwt.PyJWK(data, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidRequest(Reason.INVALID_KEY, "the JWK is not a valid public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidRequest(Reason.INVALID_KEY, f"RSA keys need {MIN_RSA_BITS} bits")
    elif not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise InvalidRequest(Reason.INVALID_KEY, "the JWK is not a public key")
    return VerificationKey(alg=alg, key=key, jkt=jwk_thumbprint(data), kid=kid)


class SigningKey(_PrivateKeyHolder):
    """An IdP token-signing key: a private key with a ``kid`` (its RFC 7638 thumbprint)."""

    __slots__ = ()

    @property
    def kid(self) -> str:
        return self._jkt

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry: public members plus ``kid``, ``alg`` and ``use``."""
        return {**self._public_jwk, "kid": self._jkt, "alg": self.alg, "use": "sig"}

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any]) -> str:
        return super().sign(claims, {**headers, "kid": self._jkt})

    @classmethod
    def generate(cls, alg: Alg = DEFAULT_ALG) -> SigningKey:
        return cls(_generate_private(alg))

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, for the IdP's own 0600 key file; never for agent keys."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise InvalidRequest(Reason.INVALID_KEY, "not a PEM private key") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise InvalidRequest(Reason.INVALID_KEY, "only P-256 and Ed25519 keys are supported")
        return cls(private)

    def verification_key(self) -> VerificationKey:
        return VerificationKey(alg=self.alg, key=self.public_key, jkt=self._jkt, kid=self._jkt)


class SigningKeySet:
    """The IdP's signing keys: the newest *active* key signs; every key published verifies.

    Rotation adds a key that is published at once but may become active only later
    (``activate_at``), so resource servers can learn it before any token uses it; old
    keys stay published until ``retire`` drops them (once the last token they signed
    has expired, DESIGN §4; at once for a compromised key).

    >>> keys = SigningKeySet.generate()
    >>> old = keys.active.kid
    >>> _ = keys.rotate()
    >>> [k["kid"] == old for k in keys.jwks()["keys"]]
    [True, False]
    >>> pending = keys.rotate(activate_at=2**40)   # published now, signs from then on
    >>> keys.active.kid != pending.kid and pending.kid in keys.verification_keys().kids()
    True
    """

    def __init__(
        self,
        keys: Iterable[SigningKey | tuple[SigningKey, int]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys: list[tuple[SigningKey, int]] = [
            k if isinstance(k, tuple) else (k, 0) for k in keys
        ]
        self._clock = clock
        if not self._keys:
            raise InvalidRequest(Reason.INVALID_KEY, "a signing key set needs at least one key")

    @classmethod
    def generate(cls, alg: Alg = DEFAULT_ALG) -> SigningKeySet:
        return cls([SigningKey.generate(alg)])

    @property
    def active(self) -> SigningKey:
        """The newest key whose activation time has come (else the oldest key)."""
        now = self._clock()
        live = [key for key, not_before in self._keys if not_before <= now]
        return live[-1] if live else self._keys[0][0]

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return tuple(key for key, _ in self._keys)

    def rotate(self, alg: Alg | None = None, *, activate_at: int = 0) -> SigningKey:
        """Add a new key, published now and signing from ``activate_at`` (default: now)."""
        key = SigningKey.generate(alg or self.active.alg)
        self._keys.append((key, activate_at))
        return key

    def retire(self, kid: str, *, replace: bool = False) -> SigningKey | None:
        """Stop publishing key ``kid``: tokens it signed no longer verify.

        The active key is retired only with ``replace=True``, which first adds a new key
        of the same algorithm that signs at once (the response to a compromised key;
        resource servers fetch it on its first unknown ``kid``); that key is returned.

        >>> keys = SigningKeySet.generate()
        >>> old = keys.active.kid
        >>> keys.retire(old)
        Traceback (most recent call last):
        ...
        ajwt_core.errors.InvalidRequest: the active signing key needs a replacement to be retired
        >>> new = keys.retire(old, replace=True)
        >>> keys.active.kid == new.kid and old not in keys.verification_keys().kids()
        True
        """
        if all(k.kid != kid for k, _ in self._keys):
            raise InvalidRequest(Reason.INVALID_KEY, f"there is no signing key {kid!r}")
        replacement = None
        if kid == self.active.kid:
            if not replace:
                raise InvalidRequest(
                    Reason.INVALID_KEY,
                    "the active signing key needs a replacement to be retired",
                )
            replacement = self.rotate()
        self._keys = [(k, n) for k, n in self._keys if k.kid != kid]
        return replacement

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWKS document (RFC 7517 §5) for ``/.well-known/jwks.json``."""
        return {"keys": [k.public_jwk for k, _ in self._keys]}

    def verification_keys(self) -> KeyResolver:
        return KeyResolver(k.verification_key() for k, _ in self._keys)

    def to_json(self) -> str:
        """Serialise for the IdP's key file (private: the IdP writes it 0600)."""
        return json.dumps(
            {"keys": [{"pem": k.to_pem().decode("ascii"), "not_before": n} for k, n in self._keys]}
        )

    @classmethod
    def from_json(cls, text: str) -> SigningKeySet:
        try:
            entries = json.loads(text)["keys"]
            keys: list[tuple[SigningKey, int]] = []
            for entry in entries:
                if isinstance(entry, str):  # the first file format: PEM strings only
                    entry = {"pem": entry, "not_before": 0}
                not_before = int(entry.get("not_before", 0))
                keys.append((SigningKey.from_pem(entry["pem"].encode("ascii")), not_before))
            return cls(keys)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidRequest(Reason.INVALID_KEY, "the signing key file is malformed") from None


class KeyResolver:
    """Verification keys by ``kid`` (the resource server's view of an IdP's JWKS).

    >>> signing = SigningKeySet.generate()
    >>> resolver = KeyResolver.from_jwks(signing.jwks())
    >>> resolver.get(signing.active.kid).alg
    'ES256'
    >>> resolver.get("unknown") is None
    True
    """

    def __init__(self, keys: Iterable[VerificationKey] = ()) -> None:
        self._by_kid = {k.kid: k for k in keys if k.kid}

    @classmethod
    def from_jwks(
        cls, document: Mapping[str, Any], algorithms: Iterable[str] = ALLOWED_ALGORITHMS
    ) -> KeyResolver:
        """Load a JWKS document; entries with an unsupported or private key are skipped."""
        keys: list[VerificationKey] = []
        entries = document.get("keys") if isinstance(document, Mapping) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
                continue
            default = {"OKP": "EdDSA", "RSA": "RS256"}.get(str(entry.get("kty")), "ES256")
            try:
                keys.append(load_public_jwk(entry, str(entry.get("alg") or default), algorithms))
            except InvalidRequest:
                continue
        return cls(keys)

    def get(self, kid: str) -> VerificationKey | None:
        return self._by_kid.get(kid)

    def kids(self) -> frozenset[str]:
        return frozenset(k for k in self._by_kid if k)

    def __len__(self) -> int:
        return len(self._by_kid)
