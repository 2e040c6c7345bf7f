"""The vulnerability patcher (DESIGN §11) as a LangGraph graph with A-JWT.

``build_graph(shim, agents)`` returns a compiled graph, reusable across runs, sync
(``invoke``) and async (``ainvoke``). The run is chosen at invocation:

    with shim.run(run):
        graph.invoke({"messages": [HumanMessage("Patch acme.")], "org": "acme"})

Each agent is a small ReAct subgraph (a model node and a ``ToolNode`` whose
``wrap_tool_call`` is :class:`~ajwt_langchain.AJWTToolWrapper`), and each subgraph is
a node of the top graph wrapped by :func:`~ajwt_langchain.ajwt_node`:

    START → supervisor ─transfer_to_planner→ planner → supervisor
                       ─transfer_to_classifier→ classifier ─Command(goto)→ patcher → supervisor

So the hand-offs take all three shapes: a supervisor's hand-off tool, a node's
``Command(goto=...)`` (the classifier hands straight on to the patcher: a chain
supervisor → classifier → patcher), and a plain edge back to the supervisor (which
takes control back without a delegation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command

from ajwt_core.shim import Shim
from ajwt_demo.scenarios.langgraph.agents import AgentSpec
from ajwt_demo.scenarios.langgraph.scripted import vulnerable
from ajwt_langchain import AJWTToolWrapper, ajwt_node

Graph = CompiledStateGraph[Any, Any, Any, Any]


class PatchState(MessagesState):
    """The conversation, and the organisation the supervisor's prompt names."""

    org: str


def agent_graph(shim: Shim | None, spec: AgentSpec) -> Graph:
    """One agent as a ReAct loop: model → tools → model … until it answers.

    ``shim=None`` builds the same loop without A-JWT (the demo's plain-OAuth baseline).
    """
    wrapper = AJWTToolWrapper(shim) if shim is not None else None  # agent: the ajwt_node's

    def prompt_input(state: PatchState) -> dict[str, Any]:
        wanted = set(spec.prompt.input_variables)
        return {key: value for key, value in state.items() if key in wanted}

    def call_model(state: PatchState, config: RunnableConfig) -> dict[str, Any]:
        prompt = spec.prompt.invoke(prompt_input(state), config)
        reply = spec.model.bind_tools(spec.tools).invoke(prompt, config)
        return {"messages": [reply]}

    async def acall_model(state: PatchState, config: RunnableConfig) -> dict[str, Any]:
        prompt = await spec.prompt.ainvoke(prompt_input(state), config)
        reply = await spec.model.bind_tools(spec.tools).ainvoke(prompt, config)
        return {"messages": [reply]}

    builder = StateGraph(PatchState)
    builder.add_node("model", RunnableLambda(call_model, afunc=acall_model, name="model"))
    builder.add_node(
        "tools",
        ToolNode(
            spec.tools,
            wrap_tool_call=wrapper.wrap_tool_call if wrapper else None,
            awrap_tool_call=wrapper.awrap_tool_call if wrapper else None,
        ),
    )
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(name=spec.agent_id)


def build_graph(shim: Shim | None, agents: Mapping[str, AgentSpec]) -> Graph:
    """The top graph: one ``ajwt_node`` per agent (see the module docstring); with
    ``shim=None``, the same graph without A-JWT."""
    subgraphs = {name: agent_graph(shim, spec) for name, spec in agents.items()}
    classifier = subgraphs["classifier"]

    def route(state: PatchState, result: dict[str, Any]) -> Command[Any]:
        new = result["messages"][len(state["messages"]) :]
        goto = "patcher" if vulnerable(result["messages"]) else "supervisor"
        return Command(goto=goto, update={"messages": new})

    def classify(state: PatchState, config: RunnableConfig) -> Command[Any]:
        return route(state, classifier.invoke(state, config))

    async def aclassify(state: PatchState, config: RunnableConfig) -> Command[Any]:
        return route(state, await classifier.ainvoke(state, config))

    def node(agent: str, runnable: Any) -> Any:
        return ajwt_node(shim, runnable, agent=agent) if shim is not None else runnable

    builder = StateGraph(PatchState)
    builder.add_node("supervisor", node("supervisor", subgraphs["supervisor"]))
    builder.add_node("planner", node("planner", subgraphs["planner"]))
    builder.add_node(
        "classifier",
        node("classifier", RunnableLambda(classify, afunc=aclassify, name="classifier")),
    )
    builder.add_node("patcher", node("patcher", subgraphs["patcher"]))
    builder.add_edge(START, "supervisor")
    builder.add_edge("planner", "supervisor")
    builder.add_edge("patcher", "supervisor")
    return builder.compile(name="vuln-patch")
