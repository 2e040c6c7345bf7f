"""Canonical JSON (RFC 8785 JCS) and the ``sha256:<hex>`` digests built on it.

Every hash A-JWT puts on the wire (agent checksum, workflow hash, ledger entries,
token and assertion hashes) is spelled ``"sha256:" + lowercase hex``.

>>> jcs({"b": 1, "a": [True, None]})
b'{"a":[true,null],"b":1}'
>>> sha256_digest(b"")
'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from ajwt_core.errors import InvalidRequest, Reason

DIGEST_PREFIX = "sha256:"


def jcs(value: Any) -> bytes:
    """Serialise a JSON value canonically (RFC 8785); refuse what JSON cannot carry."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"value cannot be canonicalised as JSON (RFC 8785): {type(exc).__name__}",
        ) from None


def sha256_digest(data: bytes) -> str:
    """``"sha256:" + hex(SHA-256(data))``."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def json_digest(value: Any) -> str:
    """``"sha256:" + hex(SHA-256(JCS(value)))``: the digest of a JSON value."""
    return sha256_digest(jcs(value))
