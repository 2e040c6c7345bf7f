"""Audit log lines that carry their fields in the message, for any log handler.

``logging.basicConfig`` prints only the message, so a refusal's reason, agent, step,
tool and run are written into it as ``key=value`` pairs; the same fields go in
``extra={"ajwt": {...}}`` for JSON handlers. Values come from requests, so each is
quoted when it holds a space, a quote, ``=`` or a control character (a forged path
cannot start a new log line), and cut at :data:`MAX_VALUE`. Callers pass only the fields
named here: never a token, a proof, a client secret or a query string.

>>> message("ajwt request refused", {"reason": "jkt_mismatch", "agent": "planner",
...                                  "tool": None, "url": "https://api.example/a b"})
'ajwt request refused: reason=jkt_mismatch agent=planner url="https://api.example/a b"'
>>> message("ajwt request accepted", {"chain": ["supervisor", "planner"], "n": 2})
'ajwt request accepted: chain=supervisor,planner n=2'
>>> message("x", {"path": "/runs/r1\\nforged"})
'x: path="/runs/r1\\\\nforged"'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

#: Longest value written (the rest is replaced by "…").
MAX_VALUE: Final = 200


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        text = ",".join(str(item) for item in value)  # a delegation chain: a,b,c
    else:
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + "…"
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


def message(event: str, fields: Mapping[str, Any]) -> str:
    """``event: key=value …`` for the fields that have a value, in the given order."""
    pairs = " ".join(f"{key}={_value(value)}" for key, value in fields.items() if value is not None)
    return f"{event}: {pairs}" if pairs else event


def without_query(url: str) -> str:
    """``url`` without its query and fragment, which may hold anything (an API key).

    >>> without_query("https://api.example/repos?token=abc#x")
    'https://api.example/repos'
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


__all__ = ["MAX_VALUE", "message", "without_query"]
