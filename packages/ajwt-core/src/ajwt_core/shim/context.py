"""Who is acting now: the run and agent context of the shim (DESIGN §6, §10).

The context lives in :mod:`contextvars`, so it follows asyncio tasks and threads started
with ``contextvars.copy_context().run``. Frameworks that cannot carry a context variable
to the code that makes the HTTP call register a *resolver*: a function that answers
"who is acting now" from the framework's own state (used by every adapter that needs it).
"""

from __future__ import annotations

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


class ActingBlock:
    """The ``shim.acting`` block that set a context: ended when the block exits. A task
    or thread started inside it copies the context variable and may outlive the block;
    its requests are refused then (the tool call they belonged to is over)."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended = False


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
    #: The ``shim.acting`` block that set it (None for an adapter's resolver context).
    acting_block: ActingBlock | None = field(default=None, compare=False, repr=False)

    @property
    def ended(self) -> bool:
        """Whether the ``shim.acting`` block that set this context has exited."""
        return self.acting_block is not None and self.acting_block.ended

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
