"""CrewAI's tool-result cache, keyed by workflow agent, run and step.

``Crew(cache=True)`` gives every agent one ``CacheHandler`` keyed by tool name and input:
one agent's result is served to another agent, with no token of its own and no refusal
(an agent whose step does not allow the tool got it). :func:`~ajwt_crewai.binding.secure_crew`
replaces the crew's handler with a :class:`StepCache`, whose entries are keyed by the
calling agent's workflow id, the run and the step the shim resolves for the call, so a
result is served again only to the agent, run and step that obtained it through its own
token. A call whose agent or step cannot be named is neither served nor stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crewai.agents.cache.cache_handler import CacheHandler
from pydantic import PrivateAttr

from ajwt_crewai.calls import current_call

__all__ = ["StepCache", "in_step_cache"]

#: (tool name) → the key prefix of the calling agent's run and step, or ``None``.
ScopeOf = Callable[[str], str | None]


class StepCache(CacheHandler):
    """A ``CacheHandler`` whose entries belong to one workflow agent, run and step.

    >>> cache = StepCache()
    >>> cache.set_scope(lambda tool: "planner|run-1|plan")
    >>> cache.add("read_file", '{"path": "a"}', "text")
    >>> cache.read("read_file", '{"path": "a"}')
    'text'
    >>> cache.set_scope(lambda tool: "classifier|run-1|classify")
    >>> cache.read("read_file", '{"path": "a"}') is None
    True
    """

    _scope: ScopeOf | None = PrivateAttr(default=None)

    def set_scope(self, scope: ScopeOf) -> None:
        self._scope = scope

    def _key(self, tool: str) -> str | None:
        if self._scope is None:
            return None
        prefix = self._scope(tool)
        return None if prefix is None else f"{prefix}\x1f{tool}"

    def add(self, tool: str, input: str, output: Any) -> None:
        key = self._key(tool)
        if key is not None:
            super().add(key, input, output)

    def read(self, tool: str, input: str) -> Any | None:
        key = self._key(tool)
        return None if key is None else super().read(key, input)


def in_step_cache() -> bool:
    """Whether the agent CrewAI is executing caches in a :class:`StepCache`."""
    call = current_call()
    handler = getattr(getattr(call.agent, "tools_handler", None), "cache", None) if call else None
    return isinstance(handler, StepCache)
