"""Who is acting now: the run and agent context of the shim (DESIGN §6, §10).

The context lives in :mod:`contextvars`, so it follows asyncio tasks and threads started
with ``contextvars.copy_context().run``. Frameworks that cannot carry a context variable
to the code that makes the HTTP call register a *resolver*: a function that answers
"who is acting now" from the framework's own state (used by every adapter that needs it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from ajwt_core.workflow import Workflow


@dataclass(frozen=True)
class Run:
    """A started run: the user's intent bound to one registered workflow version."""

    run_id: str
    intent_id: str
    initiated_by: str
    workflow: Workflow
    workflow_hash: str


_entries = itertools.count()


class ActingBlock:
    """The scope that set a context: a ``shim.acting`` block, or a tool call an adapter
    tracks. Ended when a ``shim.acting`` block exits: a task or thread started inside it
    copies the context variable and may outlive the block; its requests are refused then
    (the tool call they belonged to is over). ``entered`` orders scopes: of two that
    both hold the code running now, the one entered later is the inner one."""

    __slots__ = ("ended", "entered")

    def __init__(self) -> None:
        self.ended = False
        self.entered = next(_entries)


@dataclass(frozen=True)
class AgentContext:
    """The agent acting now, in which run, at which step, calling which tool."""

    agent: str
    run: Run
    step: str | None = None
    tool: str | None = None
    input_digest: str | None = None
    #: Which registration of ``agent`` acts, when a shim holds several versions of one
    #: agent id (two teams whose agents share a name); None: its only one.
    checksum: str | None = None
    #: The scope that set it: a ``shim.acting`` block, or a tool call an adapter tracks
    #: (None for a context an adapter builds from other state, such as a graph node).
    acting_block: ActingBlock | None = field(default=None, compare=False, repr=False)

    @property
    def ended(self) -> bool:
        """Whether the ``shim.acting`` block that set this context has exited."""
        return self.acting_block is not None and self.acting_block.ended

    def inside(self, other: AgentContext) -> bool:
        """Whether this context's scope was entered after ``other``'s: when both hold the
        code running now, this one is nested in the other."""
        mine, theirs = self.acting_block, other.acting_block
        return mine is not None and theirs is not None and mine.entered > theirs.entered

    def with_tool(self, tool: str) -> AgentContext:
        return replace(self, tool=tool)


ContextResolver = Callable[[], AgentContext | None]


@lru_cache(maxsize=1024)
def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased: a request's default audience, and
    the key under which a server's latest DPoP nonce is kept."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


_acting: ContextVar[AgentContext | None] = ContextVar("ajwt_acting", default=None)
_run: ContextVar[Run | None] = ContextVar("ajwt_run", default=None)


def current_acting() -> AgentContext | None:
    return _acting.get()


def current_run() -> Run | None:
    return _run.get()


def set_acting(context: AgentContext | None) -> Any:
    """Set the acting context; returns the token for :func:`reset_acting`."""
    return _acting.set(context)


def reset_acting(token: Any) -> None:
    _acting.reset(token)


def set_run(run: Run | None) -> Any:
    return _run.set(run)


def reset_run(token: Any) -> None:
    _run.reset(token)
