"""JSON read strictly: UTF-8 only (RFC 8259 §8.1) and no key twice in one object.

A repeated key is read as "the last one wins" by Python's parser and as "the first one
wins" by others: a document that says two things is refused, never interpreted (a
workflow with two steps of one id, a manifest whose ``agent_id`` a reviewer reads one
way and the IdP another, a ledger export).

>>> loads_unique('{"a": 1, "b": {"c": 2}}')
{'a': 1, 'b': {'c': 2}}
>>> loads_unique('{"a": 1, "a": 2}')
Traceback (most recent call last):
...
ajwt_core.strict_json.DuplicateKey: 'a'
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKey(ValueError):
    """A JSON object names ``key`` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(repr(key))
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def loads_unique(text: str | bytes) -> Any:
    """``json.loads`` refusing a repeated key at any depth (:class:`DuplicateKey`) and
    bytes that are not UTF-8 (``UnicodeDecodeError``, a ``ValueError``); invalid JSON is
    ``json.JSONDecodeError`` and too deep nesting ``RecursionError``, as ``json.loads``."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    return json.loads(text, object_pairs_hook=_unique_keys)
