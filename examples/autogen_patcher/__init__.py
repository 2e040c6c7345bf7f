"""The DESIGN §11 vulnerability patcher as an AutoGen ``Swarm`` under A-JWT.

Run it offline with ``.venv/bin/python -m examples.autogen_patcher``. The swarm itself
(scripted models, tools, agents) lives in :mod:`ajwt_demo.scenarios.autogen`; this example
starts the embedded stack, runs it once and prints what the resource server saw.
"""

from ajwt_demo.scenarios.autogen import (
    TASK,
    PatcherTeam,
    build_agent,
    build_patcher_swarm,
    run_patcher,
)
from examples.autogen_patcher.patcher import Outcome, main, report, run_example, run_on

__all__ = [
    "TASK",
    "Outcome",
    "PatcherTeam",
    "build_agent",
    "build_patcher_swarm",
    "main",
    "report",
    "run_example",
    "run_on",
    "run_patcher",
]
