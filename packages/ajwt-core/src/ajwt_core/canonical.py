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
import json
from typing import Any, Final

import rfc8785

from ajwt_core.errors import InvalidRequest, Reason

DIGEST_PREFIX = "sha256:"

# The integers RFC 8785 carries (I-JSON: exactly representable as IEEE 754 doubles).
_INT_MAX: Final = 2**53 - 1
# Below this nesting the fast path does not go (rfc8785 decides, and refuses a cycle).
_FAST_DEPTH: Final = 200
# The standard library's C encoder, set to write what RFC 8785 writes for the values
# :func:`_fast_jcs` lets through.
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def jcs(value: Any) -> bytes:
    """Serialise a JSON value canonically (RFC 8785); refuse what JSON cannot carry.

    Written by ``rfc8785``, or, for the values where its output is provably the same,
    by the standard library's C encoder (:func:`_fast_jcs`; about five times faster:
    every checksum, ledger entry and token hash goes through here).
    """
    fast = _fast_jcs(value)
    if fast is not None:
        return fast
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"value cannot be canonicalised as JSON (RFC 8785): {type(exc).__name__}",
        ) from None


def _fast_jcs(value: Any) -> bytes | None:
    """``value`` in RFC 8785 form through ``json``'s C encoder, or None where that could
    differ from ``rfc8785`` (which then writes it, or refuses it).

    The C encoder, set as :data:`_ENCODER` is, writes what RFC 8785 writes (strings
    escaped alike: the quote, the backslash, the five short escapes and a ``u00xx``
    escape for any other control character; everything else as UTF-8) for dicts, lists
    and tuples, strings, ``True``/``False``/``None`` and integers within ±(2**53 − 1),
    provided that:

    - every key is an exact ``str`` of the Basic Multilingual Plane: ``json`` sorts keys
      by code point, RFC 8785 by UTF-16 code unit, which differ only above U+FFFF (and
      ``json`` would turn an ``int`` key into a string where RFC 8785 refuses it);
    - a float is written as RFC 8785 (ECMAScript) writes it: an integral float within
      ±(2**53 − 1) as that integer (``0.0`` is ``0``), any other float only where
      ``repr`` and ECMAScript agree, fixed notation (1e-4 ≤ abs(x) < 1e16; every
      non-integral float is below 2**53 < 1e16), else the fallback;
    - the text is valid UTF-8 (a lone surrogate is left to ``rfc8785`` to refuse).

    Types are checked exactly (an ``int`` or ``dict`` subclass takes the fallback; a
    ``str`` subclass, such as a ``str`` enum, is written by its value by both).
    ``tests/core/test_canonical.py`` compares the two on generated values.
    """
    floats = False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if depth >= _FAST_DEPTH:
                return None
            for key, child in node.items():
                if type(key) is not str or not (key.isascii() or max(key) < "\U00010000"):
                    return None
                stack.append((child, depth + 1))
        elif kind is list or kind is tuple:
            if depth >= _FAST_DEPTH:
                return None
            stack.extend((child, depth + 1) for child in node)
        elif kind is int:
            if not -_INT_MAX <= node <= _INT_MAX:
                return None
        elif kind is float:
            if node.is_integer():
                if not -_INT_MAX <= node <= _INT_MAX:
                    return None
            elif not 1e-4 <= abs(node) < 1e16:
                return None  # NaN and the infinities too
            floats = True
        elif not (node is None or kind is bool or isinstance(node, str)):
            return None
    try:
        text = _ENCODER.encode(_integral_floats_as_ints(value) if floats else value)
        return text.encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        return None


def _integral_floats_as_ints(value: Any) -> Any:
    """A copy of a value :func:`_fast_jcs` accepted, its integral floats as integers."""
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is dict:
        return {key: _integral_floats_as_ints(child) for key, child in value.items()}
    if kind is list or kind is tuple:
        return [_integral_floats_as_ints(child) for child in value]
    return value


def sha256_digest(data: bytes) -> str:
    """``"sha256:" + hex(SHA-256(data))``."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def json_digest(value: Any) -> str:
    """``"sha256:" + hex(SHA-256(JCS(value)))``: the digest of a JSON value."""
    return sha256_digest(jcs(value))
