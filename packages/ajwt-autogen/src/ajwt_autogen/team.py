"""``secure_team``: put a whole AutoGen team under A-JWT in one call.

It secures every ``AssistantAgent`` participant (:func:`~ajwt_autogen.secure_agent`) as
members of one team, which gives three things a set of separately secured agents lacks:

- **hand-offs know their delegate's version**: two teams (two tenants) whose agents share
  a name but not a prompt or a model are two versions of one agent id in the shim; a
  hand-off inside a team hands to the version in that team;
- **people are told apart from agents**: a hand-off target that is not an agent of the
  team (``HandoffTermination("user")``, ``"human"``, a ``UserProxyAgent``) returns control
  to a person and signs nothing, whatever its name;
- **turn delegation is on where the team has no hand-off tools** (``RoundRobinGroupChat``,
  ``SelectorGroupChat``, ``GraphFlow``) and off in a ``Swarm``, whose hand-off tools
  already delegate.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat, GraphFlow, Swarm

from ajwt_autogen import _internals
from ajwt_autogen.agent import _secure, binding_of
from ajwt_autogen.binding import AgentBinding, register_agents
from ajwt_core.checksum import PromptSpec
from ajwt_core.shim import Run, Shim

__all__ = ["TeamBinding", "run_of", "secure_team"]


@dataclass(eq=False)
class TeamBinding:
    """The secured agents of one team, by AutoGen name."""

    agents: dict[str, AgentBinding] = field(default_factory=dict)
    #: The run a member last acted in: saved with every member's state, also of members
    #: that have not acted yet (the closer of a paused team).
    last_run: Run | None = None
    #: The run the team's saved state was loaded into: every member acts in it outside
    #: any ``with shim.run(...)``.
    resumed: Run | None = None
    #: A ``GraphFlow``: a member's step is completed when its turn ends.
    graph: bool = False

    def is_human(self, name: str) -> bool:
        """A name that is not a secured agent of the team is a person (or a participant
        A-JWT does not secure): control passes to it without a delegation."""
        return name not in self.agents


def secure_team(
    team: BaseGroupChat,
    shim: Shim,
    *,
    agent_ids: Mapping[str, str] | None = None,
    run: Run | None = None,
    prompts: Mapping[str, tuple[PromptSpec, Mapping[str, str]]] | None = None,
    deep: bool = False,
    register: bool = True,
    turn_delegation: bool | None = None,
    human_targets: Collection[str] = ("user",),
) -> BaseGroupChat:
    """Secure every ``AssistantAgent`` of ``team`` with ``shim``; returns the team.

    ``agent_ids`` maps AutoGen names to workflow agent ids; ``prompts`` gives, per
    AutoGen name, the template its system message was filled from and the values
    (``(PromptSpec(...), {"org": "acme"})``). ``turn_delegation`` defaults to on for
    every team but a ``Swarm``. Participants that are not ``AssistantAgent``s (a
    ``UserProxyAgent``) are left as they are and count as people, like hand-off targets
    outside the team and ``human_targets``.

    Example::

        team = secure_team(Swarm([triage, billing], termination_condition=stop), shim)
        with shim.run(shim.start_run(user_token, "support")):
            await team.run(task="Refund invoice 42.")
    """
    if not isinstance(team, BaseGroupChat):
        raise TypeError(f"secure_team expects an AutoGen team, got {type(team).__name__}")
    group = TeamBinding(graph=isinstance(team, GraphFlow))
    ids = dict(agent_ids or {})
    delegate_turns = not isinstance(team, Swarm) if turn_delegation is None else turn_delegation
    members = [p for p in _internals.participants(team) if isinstance(p, AssistantAgent)]
    for agent in members:
        if binding_of(agent) is not None:
            raise ValueError(
                f"agent {agent.name!r} is already secured: secure a team's agents either "
                "one by one (secure_agent) or all together (secure_team)"
            )
    for agent in members:
        prompt, values = (prompts or {}).get(agent.name, (None, {}))
        _secure(
            agent,
            shim,
            agent_id=None,
            ids=ids,
            run=run,
            prompt=prompt,
            prompt_values=values,
            deep=deep,
            register=False,  # all members below, in one request
            turn_delegation=delegate_turns,
            humans=frozenset(human_targets),
            team=group,
        )
        binding = binding_of(agent)
        assert binding is not None
        group.agents[agent.name] = binding
    if register:
        register_agents(list(group.agents.values()))
    return team


def run_of(app: Any) -> Run | None:
    """The run of a secured agent (or of a team's secured agents): the run it is pinned
    to or acts in now, else the run it last acted in, else the run its saved state was
    loaded into (``load_state``); ``None`` if none.

    Example (a new process, after ``await team.load_state(saved)``)::

        run = run_of(team)
        await shim.acomplete("closer", run=run)
    """
    agents = (
        [p for p in _internals.participants(app) if isinstance(p, AssistantAgent)]
        if isinstance(app, BaseGroupChat)
        else [app]
    )
    for agent in agents:
        binding = binding_of(agent)
        found = binding.known_run() if binding is not None else None
        if found is not None:
            return found
    return None
