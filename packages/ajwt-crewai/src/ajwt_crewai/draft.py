"""A workflow draft from a crew's tasks, agents and process, for a person to review
(DESIGN §6.3).

Registering and governing workflows is what A-JWT costs an application; a crew already
says most of it. :func:`draft_workflow` reads it:

- **agent ids**: ``agent_ids`` (CrewAI role → workflow agent id), else the ids the crew
  was secured with (:func:`~ajwt_crewai.binding.secure_crew`), else
  :func:`~ajwt_crewai.manifest.default_agent_id` of the role;
- **sequential crew**: one step per task, in task order, each after the previous one,
  for the task's agent with the tools it may use (the task's ``tools``, else the
  agent's). Consecutive tasks with ``async_execution=True`` run together: their steps
  are each after the step before them, and the next task's step is after all of them.
  An agent that delegates (``allow_delegation=True``) hands work to its coworkers: the
  crew's agents that have no task of their own get a step each after the delegating
  task, in the order the crew lists them;
- **hierarchical crew**: the manager's routing step ``route`` (no tools), then one step
  per agent, in the order the crew lists them, each after the previous one.

A step is named after its agent id (``_2``, ``_3``… for an agent's later steps). What
the structure cannot say is left to the reviewer: scopes, approvals, consultations
("Ask question to coworker"), branches a delegating agent chooses between.

>>> from crewai import Agent, Crew, Task
>>> from ajwt_crewai.testing import ScriptedLLM
>>> llm = ScriptedLLM(model="scripted")
>>> lead = Agent(role="Lead", goal="Lead.", backstory="", allow_delegation=True, llm=llm)
>>> writer = Agent(role="Writer", goal="Write.", backstory="", llm=llm)
>>> crew = Crew(agents=[lead, writer], tasks=[Task(description="Do it.", expected_output="-",
...                                                agent=lead)])
>>> draft_workflow(crew, workflow_id="docs")["steps"]["writer"]
{'agent': 'writer', 'tools': [], 'after': ['lead']}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crewai import Crew
from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.process import Process
from crewai.tools.agent_tools.base_agent_tools import BaseAgentTool

from ajwt_core.checksum import AgentManifest
from ajwt_crewai.binding import bindings, manager_from_llm
from ajwt_crewai.manifest import default_agent_id, manifest_from_crewai, role_template

__all__ = ["crew_manifests", "draft_workflow"]


def _agent_id(crew: Crew, agent: BaseAgent, agent_ids: Mapping[str, str] | None) -> str:
    role = role_template(agent) or agent.role
    if agent_ids is not None and role in agent_ids:
        return agent_ids[role]
    for binding in bindings():
        if binding.secured(crew):
            known = binding.agent_id_for(agent)
            if known is not None:
                return known
    return default_agent_id(role)


def _tool_names(tools: Sequence[Any] | None) -> list[str]:
    return [t.name for t in tools or [] if not isinstance(t, BaseAgentTool)]


def _manager(crew: Crew) -> BaseAgent | None:
    if crew.process != Process.hierarchical:
        return None
    if crew.manager_agent is not None:
        return crew.manager_agent
    return manager_from_llm(crew) if crew.manager_llm is not None else None


class _Steps:
    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.last: str | None = None

    def add(self, agent_id: str, tools: list[str], *, after: list[str] | None = None) -> str:
        name, n = agent_id, 1
        while name in self.steps:
            n += 1
            name = f"{agent_id}_{n}"
        step: dict[str, Any] = {"agent": agent_id, "tools": tools}
        previous = after if after is not None else ([self.last] if self.last else [])
        if previous:
            step["after"] = list(previous)
        self.steps[name] = step
        self.last = name
        return name


def draft_workflow(
    crew: Crew,
    *,
    workflow_id: str,
    version: int = 1,
    agent_ids: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A workflow document drafted from ``crew`` (see the module docstring)."""
    steps = _Steps()
    manager = _manager(crew)
    if manager is not None:
        steps.steps["route"] = {"agent": _agent_id(crew, manager, agent_ids), "tools": []}
        steps.last = "route"
        for agent in crew.agents:
            steps.add(_agent_id(crew, agent, agent_ids), _tool_names(agent.tools))
    else:
        with_tasks = {id(task.agent) for task in crew.tasks if task.agent is not None}
        # Consecutive async tasks run together (CrewAI waits for them at the next
        # synchronous task): each after what came before them, the next task after all.
        before: list[str] = []
        running: list[str] = []
        for task in crew.tasks:
            doer = task.agent
            if doer is None:
                continue
            tools = _tool_names(task.tools) or _tool_names(doer.tools)
            if task.async_execution:
                running.append(steps.add(_agent_id(crew, doer, agent_ids), tools, after=before))
                continue
            steps.add(_agent_id(crew, doer, agent_ids), tools, after=running or before)
            running = []
            if doer.allow_delegation:
                for coworker in crew.agents:
                    if coworker is not doer and id(coworker) not in with_tasks:
                        the_id = _agent_id(crew, coworker, agent_ids)
                        steps.add(the_id, _tool_names(coworker.tools))
                        with_tasks.add(id(coworker))
            before = [steps.last] if steps.last else []
    return {"id": workflow_id, "version": version, "steps": steps.steps}


def crew_manifests(
    crew: Crew, *, agent_ids: Mapping[str, str] | None = None
) -> list[AgentManifest]:
    """The manifests of the crew's agents (its manager included), as
    :func:`~ajwt_crewai.binding.secure_crew` registers them."""
    members: list[BaseAgent] = []
    for agent in [*crew.agents, *(t.agent for t in crew.tasks), _manager(crew)]:
        if agent is not None and all(agent is not m for m in members):
            members.append(agent)
    return [manifest_from_crewai(a, _agent_id(crew, a, agent_ids)) for a in members]
