"""The DESIGN §11 vulnerability patcher as a CrewAI crew under A-JWT.

Run it offline with ``.venv/bin/python -m examples.crewai_patcher`` from the repository
root. ``build_crew`` and ``AGENT_IDS`` are reusable (the demo's ``--framework crewai``).
Importing this package keeps CrewAI offline (see :mod:`.offline`) before crewai loads.
"""

from examples.crewai_patcher.offline import keep_crewai_offline

keep_crewai_offline()

from examples.crewai_patcher.crew import (  # noqa: E402 - crewai loads after the flags
    AGENT_IDS,
    INPUTS,
    TURNS,
    build_crew,
    reference_agents,
    reference_tools,
    scripted_llm,
)
from examples.crewai_patcher.patcher import (  # noqa: E402
    PatcherReport,
    format_report,
    main,
    run_patcher,
)

__all__ = [
    "AGENT_IDS",
    "INPUTS",
    "TURNS",
    "PatcherReport",
    "build_crew",
    "format_report",
    "keep_crewai_offline",
    "main",
    "reference_agents",
    "reference_tools",
    "run_patcher",
    "scripted_llm",
]
