"""The DESIGN §11 vulnerability patcher as an AutoGen ``Swarm`` under A-JWT.

Run it offline with ``.venv/bin/python -m examples.autogen_patcher``.
"""

from examples.autogen_patcher.patcher import Outcome, main, run_example
from examples.autogen_patcher.swarm import (
    TASK,
    PatcherTeam,
    build_agent,
    build_patcher_swarm,
    run_patcher,
)

__all__ = [
    "TASK",
    "Outcome",
    "PatcherTeam",
    "build_agent",
    "build_patcher_swarm",
    "main",
    "run_example",
    "run_patcher",
]
