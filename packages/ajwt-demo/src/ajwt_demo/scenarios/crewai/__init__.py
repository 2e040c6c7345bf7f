"""The DESIGN §11 vulnerability patcher as a CrewAI crew: four agents with a scripted LLM,
as used by ``examples/crewai_patcher``, the tests and ``ajwt demo --framework crewai``.

``scenario`` is what the demo runs (see :class:`ajwt_demo.scenario.Scenario`): the same
crew secured with A-JWT, or with plain OAuth as the baseline.

Importing this package keeps CrewAI offline first (:mod:`.offline`: telemetry and
tracing off where unset; unless ``CREWAI_STORAGE_DIR`` is set, CrewAI's files in a
temporary folder), before it imports ``crewai``.
"""

from ajwt_demo.scenarios.crewai.offline import OFFLINE_FLAGS, keep_crewai_offline

keep_crewai_offline()

import httpx  # noqa: E402 - crewai loads after the flags

from ajwt_core.shim import Run, Shim  # noqa: E402
from ajwt_crewai.binding import secure_crew  # noqa: E402
from ajwt_crewai.hooks import hooks_suspended  # noqa: E402
from ajwt_demo.scenarios.crewai.crew import (  # noqa: E402
    AGENT_IDS,
    INPUTS,
    TURNS,
    build_crew,
    plain_tools,
    reference_agents,
    reference_tools,
    scripted_llm,
)


def _answer(output: object) -> str:
    # ``kickoff`` returns a CrewOutput (its ``raw`` text is the crew's final answer).
    return str(getattr(output, "raw", output))


class CrewAIScenario:
    """The patcher crew, secured with A-JWT or as a plain-OAuth baseline."""

    name = "crewai"

    def run_secured(self, shim: Shim, run: Run, rs_url: str) -> str:
        """Build the crew with tools secured by ``shim``, register its agents (the shim
        keeps agents it already holds) and kick it off for ``run``."""
        crew, _ = build_crew(shim, rs_url)
        secure_crew(crew, shim, AGENT_IDS)
        with shim.run(run):
            output = crew.kickoff(inputs=INPUTS)
        return _answer(output)

    def run_baseline(self, rs_url: str, auth: httpx.Auth) -> str:
        """The same agents and tools, nothing secured: every call uses ``auth``.

        The adapter's hooks are global and know agents by role: once a secured crew has
        run in this process they would take these agents for the secured ones (and
        refuse their delegations, made outside any run), so they are suspended here.
        """
        crew, _ = build_crew(None, rs_url, auth=auth)
        with hooks_suspended():
            output = crew.kickoff(inputs=INPUTS)
        return _answer(output)


scenario = CrewAIScenario()

__all__ = [
    "AGENT_IDS",
    "INPUTS",
    "OFFLINE_FLAGS",
    "TURNS",
    "CrewAIScenario",
    "build_crew",
    "keep_crewai_offline",
    "plain_tools",
    "reference_agents",
    "reference_tools",
    "scenario",
    "scripted_llm",
]
