"""The DESIGN §11 vulnerability patcher as an AutoGen ``Swarm``: four ``AssistantAgent``s
with scripted model clients, as used by ``examples/autogen_patcher``, the tests and
``ajwt demo --framework autogen``.

``scenario`` is what the demo runs (see :class:`ajwt_demo.scenario.Scenario`): the same
swarm secured with A-JWT, or with plain OAuth as the baseline.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from ajwt_core.shim import Run, Shim
from ajwt_demo.scenarios.autogen.scripted import (
    MODEL_INFO,
    ScriptedChatCompletionClient,
    ScriptedModelConfig,
    Turn,
    call,
)
from ajwt_demo.scenarios.autogen.swarm import (
    AGENTS,
    HANDOFFS,
    SCRIPTS,
    TASK,
    PatcherTeam,
    build_agent,
    build_patcher_swarm,
    final_answer,
    prompt_of,
    run_patcher,
    run_plain,
    scripted_model,
)
from ajwt_demo.scenarios.autogen.tools import PatcherApi, ToolError

T = TypeVar("T")


class AutoGenScenario:
    """The patcher swarm, secured with A-JWT or as a plain-OAuth baseline.

    Both methods are synchronous: each runs the swarm on this scenario's event loop for
    the calling thread (an ``asyncio.Runner``, kept across runs), so they must not be
    called from inside a running loop. Keeping the loop keeps the shim's HTTP client
    for it: a new loop per run (``asyncio.run``) would need a new client every run.
    """

    name = "autogen"

    def __init__(self) -> None:
        self._local = threading.local()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._local.runner = asyncio.Runner()
        # The caller's context variables (a current run, an acting agent), as asyncio.run
        # would give them.
        return runner.run(work, context=contextvars.copy_context())

    def run_secured(self, shim: Shim, run: Run, rs_url: str) -> str:
        """Build fresh agents, secure them with ``shim`` (registering in one request those
        the shim does not already hold with the same checksum) and run the swarm for
        ``run``; the patcher's last step is completed when its script is done."""
        return final_answer(self._run(run_patcher(shim, run, rs_url, task=TASK)))

    def run_baseline(self, rs_url: str, auth: httpx.Auth) -> str:
        """The same agents and tools, nothing secured: every call uses ``auth``."""
        return final_answer(self._run(run_plain(rs_url, auth, task=TASK)))

    def close(self) -> None:
        """Close the calling thread's event loop (the clients on it are left to the
        process's end)."""
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is not None:
            self._local.runner = None
            runner.close()


scenario = AutoGenScenario()

__all__ = [
    "AGENTS",
    "HANDOFFS",
    "MODEL_INFO",
    "SCRIPTS",
    "TASK",
    "AutoGenScenario",
    "PatcherApi",
    "PatcherTeam",
    "ScriptedChatCompletionClient",
    "ScriptedModelConfig",
    "ToolError",
    "Turn",
    "build_agent",
    "build_patcher_swarm",
    "call",
    "final_answer",
    "prompt_of",
    "run_patcher",
    "run_plain",
    "scenario",
    "scripted_model",
]
