"""Teams without handoff tools (``RoundRobinGroupChat``, ``SelectorGroupChat``): with
``turn_delegation=True`` the turn change is the delegation — the agent that spoke last
delegates to the agent that takes the turn, before its model is called."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from autogen_agentchat.base import ChatAgent, Team
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.messages import TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat

from ajwt_autogen import secure_agent
from ajwt_core.shim import Shim
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient, Turn
from ajwt_demo.scenarios.autogen.swarm import SCRIPTS, build_agent, prompt_of
from ajwt_demo.scenarios.autogen.tools import PatcherApi
from ajwt_demo.stack import Stack

#: Each agent's tool calls, then a text reply that ends its turn.
TURNS: dict[str, list[Turn]] = {
    "supervisor": [SCRIPTS["supervisor"][0], "Repositories listed."],
    "planner": [SCRIPTS["planner"][0], "Manifests read."],
    "classifier": [SCRIPTS["classifier"][0], "Advisories found."],
    "patcher": SCRIPTS["patcher"],
}


def in_order(names: Sequence[str]) -> Callable[[Sequence[Any]], str]:
    """A deterministic ``selector_func``: the next agent in ``names`` after the last one."""

    def select(thread: Sequence[Any]) -> str:
        speakers = [m.source for m in thread if m.source in names]
        if not speakers:
            return names[0]
        return names[(names.index(speakers[-1]) + 1) % len(names)]

    return select


async def take_turns(
    stack: Stack,
    shim: Shim,
    order: Sequence[str],
    max_messages: int,
    kind: str = "round_robin",
) -> tuple[str, list[tuple[str, str]]]:
    run = stack.start_run(shim)
    api = PatcherApi(stack.rs_url, shim.auth())
    agents: list[ChatAgent | Team] = []
    for name in order:
        prompt, values = prompt_of(name, "acme")
        agent = build_agent(name, ScriptedChatCompletionClient(TURNS[name]), api.tools())
        agents.append(
            secure_agent(agent, shim, prompt=prompt, prompt_values=values, turn_delegation=True)
        )
    stop = TextMentionTermination("TERMINATE") | MaxMessageTermination(max_messages)
    team: RoundRobinGroupChat | SelectorGroupChat
    if kind == "round_robin":
        team = RoundRobinGroupChat(agents, termination_condition=stop)
    else:
        team = SelectorGroupChat(
            agents,
            ScriptedChatCompletionClient([]),  # never asked: the selector function picks
            termination_condition=stop,
            selector_func=in_order(order),
        )
    try:
        with shim.run(run):
            result = await team.run(task="Patch the vulnerable dependencies.")
    finally:
        await api.aclose()
    refused = [
        (m.source, m.metadata["ajwt_reason"])
        for m in result.messages
        if isinstance(m, TextMessage) and "ajwt_reason" in m.metadata
    ]
    return run.run_id, refused


@pytest.mark.parametrize("kind", ["round_robin", "selector"])
async def test_turn_changes_are_delegations_along_the_workflow(
    stack: Stack, shim: Shim, kind: str
) -> None:
    run_id, refused = await take_turns(
        stack, shim, ["supervisor", "planner", "classifier", "patcher"], 20, kind
    )
    assert refused == []
    calls = [(c.agent, c.chain) for c in stack.api.state.calls if c.run_id == run_id]
    assert calls == (
        [("supervisor", ["supervisor"])]
        + [("planner", ["supervisor", "planner"])] * 2
        + [("classifier", ["supervisor", "planner", "classifier"])] * 4
        + [("patcher", ["supervisor", "planner", "classifier", "patcher"])] * 3
    )
    assert stack.admin.verify_ledger(run_id)["ok"]


async def test_a_turn_out_of_workflow_order_is_refused_before_the_model_runs(
    stack: Stack, shim: Shim
) -> None:
    # The classifier speaks before the planner has planned.
    run_id, refused = await take_turns(
        stack, shim, ["supervisor", "classifier", "planner", "patcher"], 5
    )
    assert refused[0] == ("classifier", "dependencies_incomplete")
    agents = {c.agent for c in stack.api.state.calls if c.run_id == run_id}
    assert "classifier" not in agents and "patcher" not in agents


async def test_selector_supervisor_gets_the_turn_back_between_workers(
    stack: Stack, shim: Shim
) -> None:
    order = ["supervisor", "planner", "supervisor", "classifier", "supervisor", "patcher"]
    turns = {
        **TURNS,
        "supervisor": [SCRIPTS["supervisor"][0], "Planner next.", "Classifier next.", "Patcher."],
    }
    run = stack.start_run(shim)
    api = PatcherApi(stack.rs_url, shim.auth())
    agents: list[ChatAgent | Team] = []
    for name in ("supervisor", "planner", "classifier", "patcher"):
        prompt, values = prompt_of(name, "acme")
        agent = build_agent(name, ScriptedChatCompletionClient(turns[name]), api.tools())
        agents.append(
            secure_agent(agent, shim, prompt=prompt, prompt_values=values, turn_delegation=True)
        )

    def scripted_selection(thread: Sequence[Any]) -> str:
        replies = sum(isinstance(m, TextMessage) and m.source != "user" for m in thread)
        return order[min(replies, len(order) - 1)]

    team = SelectorGroupChat(
        agents,
        ScriptedChatCompletionClient([]),
        termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(20),
        selector_func=scripted_selection,
        allow_repeated_speaker=True,
    )
    try:
        with shim.run(run):
            await team.run(task="Patch the vulnerable dependencies.")
    finally:
        await api.aclose()
    chains = {c.agent: c.chain for c in stack.api.state.calls if c.run_id == run.run_id}
    assert chains == {
        "supervisor": ["supervisor"],
        "planner": ["supervisor", "planner"],
        "classifier": ["supervisor", "classifier"],
        "patcher": ["supervisor", "patcher"],
    }
