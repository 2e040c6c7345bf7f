"""A workflow draft from a compiled LangGraph app's structure, for a person to review
(DESIGN §6.3): ``ajwt workflow export module:app`` writes it as YAML.

- **Steps**: one per agent node of the app's top graph, named after the node, for the
  node's agent (an agent graph built by ``create_agent`` / ``create_react_agent``, such
  as a supervisor's workers and a swarm's agents, or a node wrapped by ``ajwt_node``),
  with the agent's tools (its ``ToolNode``'s, hand-off tools left out; for an
  ``ajwt_node``, those of the ``ToolNode``s inside it, its declared ``tool`` and the
  tools of its ``manifest``). An app that is one agent is one step.
- **Order**: an edge from agent node A to agent node B (directly, or through nodes that
  are not agents) makes B come ``after`` A; several such predecessors make it
  ``after_any`` (LangGraph runs a node when any of its edges fires), except for a join
  (``add_edge([a, b], c)``), which is ``after`` all of them.
- **Returns and loops**: an edge back to an earlier agent node B that routes to
  several agents (a worker returning to its supervisor) is a return: B takes control
  back in its own step, nothing is drafted. An edge back to any other earlier agent
  node (a reviewer sending work back to the writer, a swarm's agents handing to each
  other) is a ``loop_to`` of the sending step, and B may be visited
  :data:`DRAFT_MAX_VISITS` times. A swarm's steps start at its
  ``default_active_agent``.
- **Choices**: a conditional edge (or ``Command`` destinations) from A to several agent
  nodes is a ``one_of`` on A, unless a join waits for two of them (then it fans out)
  or they return to A (then A is a hub calling them in turn).

What the structure cannot say is left for the reviewer: scopes, approvals, which steps
are ``required``, ``consult`` grants, and whether a conditional edge that is not joined
is a choice or a fan-out.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from langgraph.graph import END, START
from langgraph.pregel import Pregel

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_langchain._gate import HANDOFF_PREFIX, manifest_of
from ajwt_langchain.agents import (
    NAMESPACE_SEPARATOR,
    GraphAgent,
    find_agents,
    subgraphs,
    tool_nodes,
)
from ajwt_langchain.manifest import is_handoff_tool
from ajwt_langchain.nodes import node_agent

__all__ = ["DRAFT_MAX_VISITS", "draft_workflow"]

#: How many visits a drafted loop target gets (the reviewer sets the real bound).
DRAFT_MAX_VISITS = 5


def is_handoff_tool_name(name: str) -> bool:
    return name.startswith(HANDOFF_PREFIX)


def _tools_under(app: Pregel[Any, Any, Any, Any], namespace: str) -> list[str]:
    names: set[str] = set()
    for where, graph in subgraphs(app):
        if where == namespace or where.startswith(namespace + NAMESPACE_SEPARATOR):
            for node in tool_nodes(graph).values():
                names.update(t.name for t in node.tools_by_name.values() if not is_handoff_tool(t))
    return sorted(names)


def _agent_nodes(
    app: Pregel[Any, Any, Any, Any], agents: list[GraphAgent]
) -> dict[str, tuple[str, list[str]]]:
    """Top-level node → (agent id, tools)."""
    by_namespace = {agent.namespace: agent for agent in agents}
    found: dict[str, tuple[str, list[str]]] = {}
    for name, node in app.nodes.items():
        if name in (START, END):
            continue
        tagged = node_agent(getattr(node, "bound", None))
        agent = by_namespace.get(name)
        if agent is not None:
            found[name] = (
                agent.agent_id,
                sorted(t.name for t in agent.tools() if not is_handoff_tool(t)),
            )
        elif tagged is not None:
            names = set(_tools_under(app, name))
            if tagged.tool:
                names.add(tagged.tool)
            if tagged.manifest is not None:
                described = manifest_of(tagged.manifest)
                names.update(t.name for t in described.tools if not is_handoff_tool_name(t.name))
            found[name] = (tagged.agent, sorted(names))
    return found


def _edges(app: Pregel[Any, Any, Any, Any]) -> tuple[dict[str, list[tuple[str, bool]]], list[Any]]:
    """Node → [(successor, conditional)], and the joins ((sources...), target)."""
    successors: dict[str, list[tuple[str, bool]]] = {}
    for edge in app.get_graph().edges:
        successors.setdefault(edge.source, []).append((edge.target, bool(edge.conditional)))
    builder = getattr(app, "builder", None)
    joins = sorted(getattr(builder, "waiting_edges", set()) or set())
    return successors, joins


def _reach(
    start: str,
    successors: dict[str, list[tuple[str, bool]]],
    agents: dict[str, Any],
) -> list[tuple[str, bool]]:
    """The agent nodes reached from ``start``'s edges, through nodes that are not
    agents; each with whether the first edge taken was conditional."""
    reached: dict[str, bool] = {}
    for first, conditional in successors.get(start, []):
        stack, seen = [first], set()
        while stack:
            node = stack.pop()
            if node in seen or node in (END, START):
                continue
            seen.add(node)
            if node in agents:
                reached[node] = reached.get(node, False) or conditional
                continue
            stack.extend(target for target, _ in successors.get(node, []))
    return list(reached.items())


def _default_entry(app: Pregel[Any, Any, Any, Any]) -> str | None:
    """The node a router on START goes to by default: a langgraph-swarm app's
    ``default_active_agent``, read by name from its router's closure (as the factories'
    closures are read; pinned by the tests)."""
    branches = getattr(getattr(app, "builder", None), "branches", None) or {}
    for spec in dict(branches.get(START) or {}).values():
        func = getattr(getattr(spec, "path", None), "func", None)
        if not inspect.isfunction(func):
            continue
        default = inspect.getclosurevars(func).nonlocals.get("default_active_agent")
        if isinstance(default, str):
            return default
    return None


def _order(
    start: Iterable[str], graph: dict[str, list[str]]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Nodes in depth-first order from the entries, and the edges that go back."""
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for target in graph.get(node, []):
            if state.get(target) == 1:
                back.add((node, target))
            elif target not in state:
                visit(target)
        state[node] = 2
        order.append(node)

    for entry in [*start, *graph]:
        if entry not in state:
            visit(entry)
    order.reverse()
    return order, back


def draft_workflow(
    app: Pregel[Any, Any, Any, Any], *, workflow_id: str, version: int = 1
) -> dict[str, Any]:
    """The workflow document the app's structure suggests (see the module docstring).

    >>> from langchain.agents import create_agent
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> from langchain_core.tools import tool
    >>> @tool
    ... def get_weather(city: str) -> str:
    ...     '''The weather in a city.'''
    ...     return "sunny"
    >>> app = create_agent(FakeListChatModel(responses=[]), [get_weather], name="forecaster")
    >>> draft_workflow(app, workflow_id="weather")["steps"]
    {'forecaster': {'agent': 'forecaster', 'tools': ['get_weather']}}
    """
    agents = find_agents(app)
    if agents and agents[0].namespace == "":
        only = agents[0]
        tools = sorted(t.name for t in only.tools() if not is_handoff_tool(t))
        return {
            "id": workflow_id,
            "version": version,
            "steps": {only.agent_id: {"agent": only.agent_id, "tools": tools}},
        }
    nodes = _agent_nodes(app, agents)
    # One level is read: a team node's own agents would be drafted as nothing (its
    # edges back to the supervisor became a loop of the supervisor to itself).
    teams: dict[str, list[str]] = {}
    for agent in agents:
        top, nested, _ = agent.namespace.partition(NAMESPACE_SEPARATOR)
        if nested and top not in nodes:
            teams.setdefault(top, []).append(agent.agent_id)
    if teams:
        inner = sorted(a for ids in teams.values() for a in ids)
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"this app nests agent teams ({', '.join(sorted(teams))}, with agents "
            f"{', '.join(inner)}): draft_workflow reads one level of agents; write the "
            "workflow by hand (docs/langchain.md, Hierarchical teams)",
        )
    if not nodes:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            "no agent in this app: its nodes are neither agent graphs (create_agent, "
            "create_react_agent) nor wrapped by ajwt_node",
        )
    successors, joins = _edges(app)
    forward: dict[str, list[tuple[str, bool]]] = {
        node: _reach(node, successors, nodes) for node in nodes
    }
    entries = [node for node, _ in _reach(START, successors, nodes)]
    default = _default_entry(app)
    if default in entries:  # a swarm starts at its default agent, whatever the edges' order
        entries.remove(default)
        entries.insert(0, default)
    order, back = _order(entries, {n: [t for t, _ in targets] for n, targets in forward.items()})
    steps: dict[str, dict[str, Any]] = {
        node: {"agent": agent, "tools": tools} for node, (agent, tools) in nodes.items()
    }
    joined: dict[str, set[str]] = {}
    for sources, target in joins:
        if target in nodes:
            joined[target] = {s for s in sources if s in nodes}
    predecessors: dict[str, list[str]] = {}
    hubs = {
        node
        for node in nodes
        if len([t for t, _ in forward[node] if (t, node) in back]) > 1
        or (len(forward[node]) > 1 and any((t, node) in back for t, _ in forward[node]))
    }
    for node in order:
        for target, _ in forward[node]:
            if (node, target) in back:
                if target not in hubs:
                    steps[node].setdefault("loop_to", []).append(target)
                    steps[target]["max_visits"] = DRAFT_MAX_VISITS
            else:
                predecessors.setdefault(target, []).append(node)
    for target, sources in predecessors.items():
        together = joined.get(target, set())
        if together and set(sources) <= together:
            steps[target]["after"] = sorted(sources)
        elif len(sources) == 1:
            steps[target]["after"] = sources
        else:
            steps[target]["after_any"] = sorted(sources)
    chosen: set[str] = set()
    for node in order:
        options = [t for t, conditional in forward[node] if conditional and (node, t) not in back]
        fans_out = any(len(set(options) & together) > 1 for together in joined.values())
        if len(options) > 1 and not fans_out and node not in hubs and not chosen & set(options):
            steps[node]["one_of"] = sorted(options)
            chosen.update(options)
    for step in steps.values():
        if "loop_to" in step:
            step["loop_to"] = sorted(set(step["loop_to"]))
    return {
        "id": workflow_id,
        "version": version,
        "steps": {node: steps[node] for node in order if node in steps},
    }
