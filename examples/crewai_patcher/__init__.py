"""The DESIGN §11 vulnerability patcher as a CrewAI crew under A-JWT.

Run it offline with ``.venv/bin/python -m examples.crewai_patcher`` from the repository
root. The crew itself (agents, tools, scripted LLM) lives in
:mod:`ajwt_demo.scenarios.crewai`, which keeps CrewAI offline before crewai loads; this
example starts the embedded stack, runs the crew once and prints what the resource
server saw.
"""

from ajwt_demo.scenarios.crewai import (
    AGENT_IDS,
    INPUTS,
    TURNS,
    build_crew,
    keep_crewai_offline,
    plain_tools,
    reference_agents,
    reference_tools,
    scripted_llm,
)
from examples.crewai_patcher.patcher import (
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
    "plain_tools",
    "reference_agents",
    "reference_tools",
    "run_patcher",
    "scripted_llm",
]
