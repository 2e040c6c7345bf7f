"""The shim's intent tokens, reused until shortly before they expire (DESIGN §6.8).

Bounded (``max_entries``) and O(1) per lookup: one map by the request a token answers
(agent, run, step, tool, audience, inputs), and one index of each agent's latest token per run
and step, which hand-offs and completions ask for. Tokens are dropped oldest first as
they expire or when the cache is full; a dropped token is simply minted again.

>>> now = [1000.0]
>>> cache = TokenCache(max_entries=2, clock=lambda: now[0])
>>> cache.put(IssuedToken("t1", 1300, "planner", "run-1", "plan", "read_file", "api", ""))
>>> cache.get(("planner", "", "run-1", "plan", "read_file", "api", "")).token
't1'
>>> cache.latest("planner", "run-1", None).token
't1'
>>> now[0] = 1280.0   # within REFRESH_MARGIN of expiry: no longer handed out
>>> cache.get(("planner", "", "run-1", "plan", "read_file", "api", "")) is None
True
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

#: Reuse a cached token until this many seconds before it expires (DESIGN §6.8).
REFRESH_MARGIN = 30
DEFAULT_MAX_ENTRIES = 4096

#: (agent, registration checksum, run_id, step, tool or None for a step token, audience,
#: input digest or "": a token states the inputs it was minted for, DESIGN §5)
RequestKey: TypeAlias = tuple[str, str, str, str, str | None, str, str]
#: (agent, registration checksum, run_id, step or None for "any step")
LatestKey: TypeAlias = tuple[str, str, str, str | None]
_K = TypeVar("_K")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: int
    agent: str
    run_id: str
    step: str
    #: None for a step token (DESIGN §6.3), whose audience is the IdP.
    tool: str | None
    audience: str
    scope: str
    #: The checksum of the agent registration it was minted for: several versions of
    #: one agent id may be live in one shim (two teams), each with its own tokens.
    checksum: str = ""
    #: The ``input_digest`` it states ("" for none): a call with other inputs gets a
    #: token of its own.
    input_digest: str = ""


class TokenCache:
    """Intent tokens by request, plus each agent's latest per run and step."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        margin: int = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_entries = max_entries
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is (almost) expiry order: every token lives as long.
        self._by_request: OrderedDict[RequestKey, IssuedToken] = OrderedDict()
        self._latest: OrderedDict[LatestKey, IssuedToken] = OrderedDict()

    def _live(self, issued: IssuedToken | None, now: float) -> IssuedToken | None:
        if issued is not None and issued.expires_at - self._margin > now:
            return issued
        return None

    def get(self, key: RequestKey) -> IssuedToken | None:
        """The live token minted for exactly this request, if any."""
        return self._live(self._by_request.get(key), self._clock())

    def latest(
        self, agent: str, run_id: str, step: str | None, checksum: str = ""
    ) -> IssuedToken | None:
        """The live token of ``agent`` in ``run_id`` (at ``step``, or at any step for
        ``None``) that expires last.

        The index keeps, per key, the token with the latest expiry; if that one is no
        longer live, no other token of the key is either.
        """
        return self._live(self._latest.get((agent, checksum, run_id, step)), self._clock())

    def put(self, issued: IssuedToken) -> None:
        request = (
            issued.agent,
            issued.checksum,
            issued.run_id,
            issued.step,
            issued.tool,
            issued.audience,
            issued.input_digest,
        )
        with self._lock:
            self._by_request.pop(request, None)
            self._by_request[request] = issued
            by_step: LatestKey = (issued.agent, issued.checksum, issued.run_id, issued.step)
            for key in (by_step, (issued.agent, issued.checksum, issued.run_id, None)):
                current = self._latest.get(key)
                if current is None or issued.expires_at >= current.expires_at:
                    self._latest.pop(key, None)
                    self._latest[key] = issued
            horizon = self._clock() + self._margin  # not handed out any more
            _prune(self._by_request, horizon, self._max_entries)
            _prune(self._latest, horizon, self._max_entries)

    def forget(self, run_id: str, steps: Collection[str] | None = None) -> None:
        """Drop every token of ``run_id`` for one of ``steps`` (a loop reopened them:
        their new visit gets tokens of its own, with the loop's chain, each minted and
        recorded), or of every step (``None``: the run was revoked). A scan: reopening
        and revoking are rare, a lookup is not."""
        with self._lock:
            _forget(self._by_request, run_id, steps)
            _forget(self._latest, run_id, steps)

    def clear(self) -> None:
        with self._lock:
            self._by_request.clear()
            self._latest.clear()

    def __len__(self) -> int:
        return len(self._by_request)


def _prune(entries: OrderedDict[_K, IssuedToken], horizon: float, cap: int) -> None:
    """Drop entries expiring by ``horizon`` from the old end, then the oldest beyond
    ``cap``."""
    while entries:
        oldest = next(iter(entries.values()))
        if oldest.expires_at > horizon and len(entries) <= cap:
            return
        entries.popitem(last=False)


def _forget(
    entries: OrderedDict[_K, IssuedToken], run_id: str, steps: Collection[str] | None
) -> None:
    dropped = [
        k
        for k, issued in entries.items()
        if issued.run_id == run_id and (steps is None or issued.step in steps)
    ]
    for key in dropped:
        del entries[key]
