"""The DESIGN §11 vulnerability patcher as a LangGraph graph, secured with A-JWT.

Run it: ``.venv/bin/python -m examples.langgraph_patcher`` (add ``--async`` for
``ainvoke``). Reuse it: ``make_patcher(stack)`` gives a shim, the four LangChain
agents (registered) and the compiled graph; or build the parts yourself with
``patcher_agents(api)``, ``register_agents(shim, agents)`` and
``build_graph(shim, agents)``.
"""

from ajwt_demo.scenarios.langgraph.agents import (
    AgentSpec,
    handoff_tool,
    make_tools,
    patcher_agents,
    register_agents,
)
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_demo.scenarios.langgraph.graph import PatchState, agent_graph, build_graph
from ajwt_demo.scenarios.langgraph.scripted import SCRIPTS, ScriptedChatModel
from examples.langgraph_patcher.main import (
    Patcher,
    PatcherResult,
    main,
    make_patcher,
    report,
    run_patcher,
)

__all__ = [
    "SCRIPTS",
    "AgentSpec",
    "PatchState",
    "Patcher",
    "PatcherApi",
    "PatcherResult",
    "ScriptedChatModel",
    "agent_graph",
    "build_graph",
    "handoff_tool",
    "main",
    "make_patcher",
    "make_tools",
    "patcher_agents",
    "register_agents",
    "report",
    "run_patcher",
]
