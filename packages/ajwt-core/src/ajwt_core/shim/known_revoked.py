"""What one shim has learnt was revoked: runs, intents and agent registrations.

The IdP and the resource servers decide; this memory only lets the shim refuse at once,
with the right reason, before another local check could give another one or a cached
token could go out. It is bounded: a long-lived service that revokes a run on every
failed request would otherwise grow without end. An id forgotten here is still refused
by the IdP and by every resource server (a revocation is final there), and the shim
learns it again from their answer.

>>> known = KnownRevoked(most=2)
>>> for run_id in ("run-1", "run-2", "run-3"):
...     known.add("run", run_id)
>>> [known.has("run", run_id) for run_id in ("run-1", "run-2", "run-3")]
[False, True, True]
>>> known.has("intent", "run-3")
False
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["KINDS", "KNOWN_REVOKED_MAX", "KnownRevoked"]

#: What can be revoked, as ``POST /revocations`` names it.
KINDS = ("run", "intent", "agent")
#: Ids remembered per kind, the least recently added forgotten first (some 100 bytes each).
KNOWN_REVOKED_MAX = 10_000


class KnownRevoked:
    """Revoked ids by kind, each kind holding at most ``most`` (the newest)."""

    def __init__(self, *, most: int = KNOWN_REVOKED_MAX) -> None:
        self._most = most
        self._lock = threading.Lock()
        self._ids: dict[str, OrderedDict[str, None]] = {kind: OrderedDict() for kind in KINDS}

    def add(self, kind: str, ident: str) -> None:
        """Remember that ``ident`` (of ``kind``: ``run``, ``intent`` or ``agent``) is
        revoked; an unknown kind is ignored."""
        ids = self._ids.get(kind)
        if ids is None:
            return
        with self._lock:
            ids[ident] = None
            ids.move_to_end(ident)
            while len(ids) > self._most:
                ids.popitem(last=False)

    def has(self, kind: str, ident: str) -> bool:
        """Whether ``ident`` of ``kind`` is known to be revoked (one dictionary lookup)."""
        ids = self._ids.get(kind)
        return ids is not None and ident in ids

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())
