"""What a resource server remembers of an intent token it verified (DESIGN §12).

A verified token is remembered under its ``ath`` (base64url SHA-256 of the token, which
the proof check computes anyway) as :class:`TokenFacts`: the few claims the checks read
(expiry, key binding, the route policy's fields, the revocation ids), not the parsed
claims nor the token's text. The full claims are parsed again from the request's own
token only if the handler (or an audit line) reads them: the token's hash matched, so
this is the exact text that was verified.

>>> from ajwt_core.rs.token_cache import TokenCache
>>> cache = TokenCache(2)
>>> len(cache)
0
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from functools import lru_cache
from typing import NamedTuple

from ajwt_core.tokens import ActorClaim, IntentTokenClaims, parse_scope

_intern = sys.intern


@lru_cache(maxsize=1024)
def _scopes(scope: str) -> frozenset[str]:
    """Scope strings repeat across tokens: one frozenset for each."""
    return parse_scope(scope)


def _depth(act: ActorClaim) -> int:
    """Delegation hops of an ``act`` chain (``IntentTokenClaims.delegation_depth``,
    without building the list of agent ids)."""
    depth = 0
    while act.act is not None:
        act = act.act
        depth += 1
    return depth


class TokenFacts(NamedTuple):
    """The claims of a verified intent token that the resource server's checks read.

    Identifiers are interned: the tokens of one run, agent or client share them.
    ``revealed`` is set only for a privacy-mode token, once its names were revealed:
    the handler then gets those claims rather than the token's opaque ones.

    A named tuple rather than a frozen dataclass: as immutable, smaller, and built in a
    fifth of the time (a frozen dataclass sets each of its 16 fields through
    ``object.__setattr__``), on the path of every request whose token is not cached.
    """

    exp: int
    jkt: str
    tool: str | None
    step: str
    workflow_id: str
    agent_id: str
    agent_checksum: str
    agent_version: int
    delegation_depth: int
    scopes: frozenset[str]
    run_id: str
    intent_id: str
    client_id: str
    registration_id: str
    opaque_names: bool
    revealed: IntentTokenClaims | None = None

    @classmethod
    def of(
        cls, claims: IntentTokenClaims, *, revealed: IntentTokenClaims | None = None
    ) -> TokenFacts:
        named = revealed or claims
        intent, agent = named.intent, named.agent
        tool = intent.tool
        return cls(
            claims.exp,
            _intern(claims.cnf.jkt),
            None if tool is None else _intern(tool),
            _intern(intent.step),
            _intern(intent.workflow_id),
            _intern(agent.id),
            _intern(agent.checksum),
            agent.version,
            _depth(named.act),
            _scopes(claims.scope),
            _intern(claims.intent.run_id),
            _intern(claims.intent.id),
            _intern(claims.client_id),
            _intern(claims.agent.registration_id),
            bool(claims.intent.opaque_names),
            revealed,
        )


class TokenCache:
    """Verified tokens by ``ath``, at most ``max_entries`` (the oldest go first)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, TokenFacts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ath: str) -> bool:
        return ath in self._entries

    def get(self, ath: str, now: float) -> TokenFacts | None:
        """The facts of an unexpired token (``now`` already less the leeway)."""
        facts = self._entries.get(ath)
        if facts is not None and facts.exp <= now:
            del self._entries[ath]
            return None
        return facts

    def put(self, ath: str, facts: TokenFacts) -> None:
        if not self.max_entries:
            return
        entries = self._entries
        entries[ath] = facts
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def replace(self, ath: str, facts: TokenFacts) -> None:
        """Update an entry still cached (privacy mode: with the revealed names)."""
        if ath in self._entries:
            self._entries[ath] = facts

    def clear(self) -> None:
        self._entries.clear()
