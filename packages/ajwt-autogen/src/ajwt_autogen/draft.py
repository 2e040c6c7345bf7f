"""A workflow draft from an AutoGen team's structure, for a person to review (DESIGN §6.3).

The registration and governance of workflows is what A-JWT costs an application; the
team already says most of it. :func:`draft_workflow` reads it:

- **steps**: one per ``AssistantAgent`` participant, named after its workflow agent id
  (``agent_ids``, or the id it was secured with, else its AutoGen name), with the tools
  its model is offered, hand-off tools excepted (an agent with none gets a routing step,
  ``tools: []``);
- **order**, by team kind: a ``Swarm`` from its hand-offs (the first participant starts;
  an agent's step comes after the agents that hand off to it — ``after_any`` when
  several may; a hand-off back to an earlier agent is a return, not an edge); a
  ``GraphFlow`` from its graph (edges are ``after``, or ``after_any`` for a node that
  any parent activates; an edge back to an earlier node is a ``loop_to`` with
  ``max_visits: 3``; conditional edges out of a node become a ``one_of`` choice when the
  draft stays valid); ``RoundRobinGroupChat``, ``SelectorGroupChat`` and other teams:
  the order the participants are listed in.

- **consultations**: an agent run by another's ``AgentTool`` (not a participant) is
  drafted as consulted in its caller's step (``consult``), with its own tools; to give
  it a step of its own instead, after the caller's, is the reviewer's choice. A
  ``TeamTool``'s team takes turns among its agents, which a consultation cannot: it is
  left to the reviewer.

What the structure cannot say is left to the reviewer: scopes, approvals, optional
steps, choices a ``Swarm`` agent makes between its hand-offs.

>>> from autogen_agentchat.agents import AssistantAgent
>>> from autogen_agentchat.teams import Swarm
>>> from autogen_ext.models.replay import ReplayChatCompletionClient
>>> model = ReplayChatCompletionClient([], model_info={"vision": False,
...     "function_calling": True, "json_output": False, "family": "unknown",
...     "structured_output": False})
>>> def get_invoice(number: str) -> str:
...     return number
>>> triage = AssistantAgent("triage", model, handoffs=["billing"])
>>> billing = AssistantAgent("billing", model, tools=[get_invoice], handoffs=["triage", "user"])
>>> draft = draft_workflow(Swarm([triage, billing]), workflow_id="support")
>>> draft["steps"]["billing"]
{'agent': 'billing', 'tools': ['get_invoice'], 'after': ['triage']}
>>> draft["steps"]["triage"]
{'agent': 'triage', 'tools': []}
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat, GraphFlow, Swarm

from ajwt_autogen import _internals
from ajwt_autogen.binding import binding_of
from ajwt_autogen.manifest import manifest_from_autogen
from ajwt_autogen.tool import AJWTTool
from ajwt_core.checksum import AgentManifest
from ajwt_core.workflow import Workflow, WorkflowError

__all__ = ["draft_workflow", "team_manifests"]

#: How often a drafted loop may send work back (the reviewer sets the real bound).
DRAFT_MAX_VISITS = 3

Edge = tuple[str, str, bool]  # (from, to, conditional)


def _members(app: BaseGroupChat | AssistantAgent) -> list[AssistantAgent]:
    if isinstance(app, AssistantAgent):
        return [app]
    if not isinstance(app, BaseGroupChat):
        raise TypeError(f"expected an AutoGen team or AssistantAgent, got {type(app).__name__}")
    return [p for p in _internals.participants(app) if isinstance(p, AssistantAgent)]


def _agent_id(agent: AssistantAgent, ids: Mapping[str, str]) -> str:
    binding = binding_of(agent)
    if binding is not None:
        return binding.agent_id
    return ids.get(agent.name, agent.name)


def team_manifests(
    app: BaseGroupChat | AssistantAgent, *, agent_ids: Mapping[str, str] | None = None
) -> list[AgentManifest]:
    """The manifests of the team's ``AssistantAgent``s (a secured agent's as it is
    registered: its workflow id and prompt template), in participant order."""
    found: list[AgentManifest] = []
    for agent in _members(app):
        binding = binding_of(agent)
        if binding is not None:
            found.append(binding.manifest())
        else:
            found.append(manifest_from_autogen(agent, agent_id=_agent_id(agent, agent_ids or {})))
    return found


def draft_workflow(
    app: BaseGroupChat | AssistantAgent,
    *,
    workflow_id: str,
    version: int = 1,
    agent_ids: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The workflow document the team's structure suggests (see the module docstring),
    as a mapping ready for ``Workflow.from_mapping`` or ``ajwt workflow export``."""
    ids = dict(agent_ids or {})
    members = _members(app)
    names = [a.name for a in members]
    step_of = {a.name: _agent_id(a, ids) for a in members}
    tools = {a.name: _tools(a) for a in members}
    any_of: set[str] = set()
    if isinstance(app, Swarm):
        edges = [
            (a.name, handoff.target, False)
            for a in members
            for handoff in _internals.handoffs(a).values()
            if handoff.target in step_of
        ]
        starts = names[:1]
        returns = True
        any_of = set(names)
    elif isinstance(app, GraphFlow):
        edges, starts, any_of = _graph_edges(app, set(names))
        returns = False
    else:
        edges = [(a, b, False) for a, b in itertools.pairwise(names)]
        starts = names[:1]
        returns = True
    steps = _steps(names, step_of, tools, edges, starts, any_of, returns)
    for agent in members:
        consulted = {
            _agent_id(inner, ids): {"tools": _tools(inner)}
            for inner in _agents_run_as_tools(agent)
            if inner.name not in step_of
        }
        if consulted:
            steps[step_of[agent.name]]["consult"] = consulted
    document: dict[str, Any] = {"id": workflow_id, "version": version, "steps": steps}
    if any("one_of" in step for step in steps.values()):
        try:
            Workflow.from_mapping(document)
        except WorkflowError:
            # The suggested choices do not fit the joins: leave them to the reviewer.
            for step in steps.values():
                step.pop("one_of", None)
    return document


def _tools(agent: AssistantAgent) -> list[str]:
    handoff_tools = set(_internals.handoffs(agent))
    return [
        tool.name for tool in manifest_from_autogen(agent).tools if tool.name not in handoff_tools
    ]


def _agents_run_as_tools(agent: AssistantAgent) -> list[AssistantAgent]:
    """The ``AssistantAgent`` s the agent's ``AgentTool`` s run."""
    found = []
    for bench in _internals.workbenches(agent):
        static = _internals.static_tools(bench)
        for tool in static[0] if static is not None else []:
            runner = _internals.task_runner(tool.inner if isinstance(tool, AJWTTool) else tool)
            if isinstance(runner, AssistantAgent):
                found.append(runner)
    return found


def _graph_edges(team: GraphFlow, agents: set[str]) -> tuple[list[Edge], list[str], set[str]]:
    """The graph's edges between agents (edges through other participants, a user proxy,
    contracted), its start nodes and the nodes any parent activates."""
    graph = _internals.graph(team)
    raw: dict[str, list[tuple[str, bool]]] = {
        name: [(edge.target, edge.condition is not None or edge.condition_function is not None)
               for edge in node.edges]
        for name, node in graph.nodes.items()
    }  # fmt: skip

    def targets(name: str, seen: frozenset[str]) -> list[tuple[str, bool]]:
        found: list[tuple[str, bool]] = []
        for target, conditional in raw.get(name, []):
            if target in agents:
                found.append((target, conditional))
            elif target not in seen:
                found += [(t, conditional or c) for t, c in targets(target, seen | {target})]
        return found

    edges = [(name, t, c) for name in raw if name in agents for t, c in targets(name, frozenset())]
    starts = sorted(graph.get_start_nodes() & agents) or [n for n in graph.nodes if n in agents][:1]
    any_of = {
        name
        for name, node in graph.nodes.items()
        if node.activation == "any"
        or any(e.target == name and e.activation_condition == "any" for n in graph.nodes.values()
               for e in n.edges)
    }  # fmt: skip
    return edges, starts, any_of


def _steps(
    names: Sequence[str],
    step_of: Mapping[str, str],
    tools: Mapping[str, list[str]],
    edges: Sequence[Edge],
    starts: Sequence[str],
    any_of: set[str],
    returns: bool,
) -> dict[str, dict[str, Any]]:
    # Discovery order from the start nodes: an edge to a later node is an order, an
    # edge back to an earlier one a return (Swarm) or a loop (GraphFlow).
    order: dict[str, int] = {}
    queue = list(starts)
    while queue:
        name = queue.pop(0)
        if name in order:
            continue
        order[name] = len(order)
        queue += [b for a, b, _ in edges if a == name and b not in order]
    for name in names:  # unreachable agents come last, as roots for the reviewer to place
        order.setdefault(name, len(order))
    forward: dict[str, list[str]] = {name: [] for name in names}
    loops: dict[str, list[str]] = {name: [] for name in names}
    choices: dict[str, list[str]] = {name: [] for name in names}
    conditional_out: dict[str, bool] = dict.fromkeys(names, True)
    for a, b, conditional in edges:
        if order[a] < order[b]:
            if a not in forward[b]:
                forward[b].append(a)
            conditional_out[a] = conditional_out[a] and conditional
            if b not in choices[a]:
                choices[a].append(b)
        elif not returns and b not in loops[a]:
            loops[a].append(b)
    ancestors = _ancestors(names, forward)
    steps: dict[str, dict[str, Any]] = {}
    looped = {b for a in names for b in loops[a] if b in ancestors[a]}
    for name in sorted(names, key=order.__getitem__):
        step: dict[str, Any] = {"agent": step_of[name], "tools": tools[name]}
        before = [step_of[p] for p in sorted(forward[name], key=order.__getitem__)]
        if len(before) > 1 and name in any_of:
            step["after_any"] = before
        elif before:
            step["after"] = before
        if len(choices[name]) > 1 and conditional_out[name]:
            step["one_of"] = [step_of[c] for c in choices[name]]
        back = [step_of[b] for b in loops[name] if b in ancestors[name]]
        if back:
            step["loop_to"] = back
        if name in looped:
            step["max_visits"] = DRAFT_MAX_VISITS
        steps[step_of[name]] = step
    return steps


def _ancestors(names: Sequence[str], forward: Mapping[str, list[str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}

    def of(name: str) -> set[str]:
        if name not in found:
            found[name] = set()
            for parent in forward[name]:
                found[name] |= {parent} | of(parent)
        return found[name]

    for name in names:
        of(name)
    return found
