"""The DESIGN §11 vulnerability patcher in LangGraph: four LangChain agents with a
scripted model, as used by ``examples/langgraph_patcher``, the tests and ``ajwt demo``.

``scenario`` is what ``ajwt demo --framework langgraph`` runs (see
:class:`ajwt_demo.scenario.Scenario`).
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.messages import BaseMessage, HumanMessage

from ajwt_core.shim import Run, Shim
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

REQUEST = "Find the vulnerable dependencies of acme's repositories and patch them."


def initial_state(org: str = "acme") -> dict[str, Any]:
    return {"messages": [HumanMessage(REQUEST)], "org": org}


def final_answer(state: dict[str, Any]) -> str:
    messages: list[BaseMessage] = state["messages"]
    return str(messages[-1].content)


class LangGraphScenario:
    """The patcher graph, secured with A-JWT or as a plain-OAuth baseline."""

    name = "langgraph"

    def run_secured(self, shim: Shim, run: Run, rs_url: str) -> str:
        api = PatcherApi(rs_url, shim.auth())
        try:
            agents = patcher_agents(api)
            register_agents(shim, agents)  # these live objects are what gets checked
            with shim.run(run):
                return final_answer(build_graph(shim, agents).invoke(initial_state()))
        finally:
            api.close()

    def run_baseline(self, rs_url: str, auth: httpx.Auth) -> str:
        api = PatcherApi(rs_url, auth)
        try:
            return final_answer(build_graph(None, patcher_agents(api)).invoke(initial_state()))
        finally:
            api.close()


scenario = LangGraphScenario()

__all__ = [
    "REQUEST",
    "SCRIPTS",
    "AgentSpec",
    "LangGraphScenario",
    "PatchState",
    "PatcherApi",
    "ScriptedChatModel",
    "agent_graph",
    "build_graph",
    "final_answer",
    "handoff_tool",
    "initial_state",
    "make_tools",
    "patcher_agents",
    "register_agents",
    "scenario",
]
