"""The DESIGN §11 vulnerability patcher as an AutoGen ``Swarm``: four ``AssistantAgent``s
with scripted model clients, as used by ``examples/autogen_patcher``, the tests and
``ajwt demo --framework autogen``.

``scenario`` is what the demo runs (see :class:`ajwt_demo.scenario.Scenario`): the same
swarm secured with A-JWT, or with plain OAuth as the baseline.
"""

from __future__ import annotations

import asyncio

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


class AutoGenScenario:
    """The patcher swarm, secured with A-JWT or as a plain-OAuth baseline.

    Both methods are synchronous: each runs the swarm in its own event loop
    (``asyncio.run``), so they must not be called from inside a running loop.
    """

    name = "autogen"

    def run_secured(self, shim: Shim, run: Run, rs_url: str) -> str:
        """Build fresh agents, secure them with ``shim`` (registering them unless the
        shim already holds them with the same checksum) and run the swarm for ``run``;
        the patcher's last step is completed when its script is done."""

        async def go() -> str:
            try:
                return final_answer(await run_patcher(shim, run, rs_url, task=TASK))
            finally:
                # The shim's HTTP client for this event loop dies with the loop; the
                # shim stays usable (its clients are reopened on demand).
                await shim.aclose()

        return asyncio.run(go())

    def run_baseline(self, rs_url: str, auth: httpx.Auth) -> str:
        """The same agents and tools, nothing secured: every call uses ``auth``."""
        return final_answer(asyncio.run(run_plain(rs_url, auth, task=TASK)))


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
