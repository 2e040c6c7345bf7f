"""Agents as tools (``AgentTool``, ``TeamTool``): the agent a tool runs acts as itself.

Its turn starts inside the calling agent's tool call: the caller consults it (the
caller's step lists it under ``consult``) or hands it its own step (a step ``after`` the
caller's), before its model is called; an agent an ``AgentTool`` runs completes its step
when it answers. An inner agent that is not secured is refused: its calls would go out
as the caller's."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_agentchat.tools import AgentTool, TeamTool

from ajwt_autogen import secure_agent
from ajwt_core.errors import Reason
from ajwt_core.shim import Shim, ShimEvent
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient, call
from ajwt_demo.scenarios.autogen.tools import PatcherApi
from ajwt_demo.stack import Stack

CONSULT = {
    "answer": {
        "agent": "concierge",
        "tools": ["researcher"],
        "consult": {"researcher": {"tools": ["list_repos"], "scopes": ["repo:read"]}},
    }
}
HANDOFF = {
    "answer": {"agent": "concierge", "tools": ["researcher"]},
    "research": {
        "agent": "researcher",
        "tools": ["list_repos"],
        "scopes": ["repo:read"],
        "after": ["answer"],
    },
}


@pytest.fixture
async def api(stack: Stack, shim: Shim) -> AsyncIterator[PatcherApi]:
    the_api = PatcherApi(stack.rs_url, shim.auth())
    yield the_api
    await the_api.aclose()


def workflow(stack: Stack, steps: dict[str, Any]) -> str:
    name = "ask-" + secrets.token_hex(4)
    stack.admin.register_workflow({"id": name, "version": 1, "steps": steps})
    return name


def researcher(api: PatcherApi, name: str = "researcher", runs: int = 1) -> AssistantAgent:
    """An agent that lists the repositories once a run (an AgentTool runs it once a
    call, each run ending with its tool's result), ``runs`` times."""
    return AssistantAgent(
        name,
        ScriptedChatCompletionClient([[call("list_repos")] for _ in range(runs)]),
        tools=[api.tools()["list_repos"]],
        system_message="You look repositories up.",
        description="Looks repositories up.",
    )


def concierge(tool: AgentTool | TeamTool, asks: int = 1) -> AssistantAgent:
    turns: list[Any] = [[call(tool.name, task="Which repositories?")] for _ in range(asks)]
    return AssistantAgent(
        "concierge",
        ScriptedChatCompletionClient([*turns, "Two. TERMINATE"]),
        tools=[tool],
        system_message="You answer users; ask the researcher.",
        max_tool_iterations=asks + 1,
    )


async def ask(stack: Stack, shim: Shim, agent: AssistantAgent, name: str) -> tuple[TaskResult, str]:
    """The agent's run in a new run of workflow ``name``, and the run's id."""
    run = await shim.astart_run(stack.admin.user_token("user:alice"), name, intent="ask")
    with shim.run(run):
        result = await agent.run(task="Which repositories do we have?")
    return result, run.run_id


def calls(stack: Stack, run_id: str) -> list[tuple[Any, ...]]:
    return [(c.agent, c.step, c.tool, c.chain) for c in stack.api.state.calls if c.run_id == run_id]


def tool_results(result: TaskResult) -> list[str]:
    return [
        r.content
        for m in result.messages
        if isinstance(m, ToolCallExecutionEvent)
        for r in m.content
    ]


async def test_an_agent_tool_is_consulted_in_its_callers_step(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    inner = secure_agent(researcher(api), shim)
    outer = secure_agent(concierge(AgentTool(inner, return_value_as_last_message=True)), shim)
    _result, run_id = await ask(stack, shim, outer, workflow(stack, CONSULT))
    assert calls(stack, run_id) == [
        ("researcher", "answer", "list_repos", ["concierge", "researcher"])
    ]
    assert [(e.kind, e.agent) for e in events if e.kind == "consultation"] == [
        ("consultation", "researcher")
    ]
    assert stack.admin.run(run_id)["completed_steps"] == []  # the caller's step goes on
    assert stack.admin.verify_ledger(run_id)["ok"]


async def test_a_second_call_in_the_step_is_the_same_consultation(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    inner = secure_agent(researcher(api, runs=2), shim)
    outer = secure_agent(concierge(AgentTool(inner), asks=2), shim)
    _result, run_id = await ask(stack, shim, outer, workflow(stack, CONSULT))
    assert [c[0] for c in calls(stack, run_id)] == ["researcher", "researcher"]
    assert len([e for e in events if e.kind == "consultation"]) == 1


async def test_an_agent_tool_given_its_own_step_does_it_and_completes_it(
    stack: Stack, shim: Shim, api: PatcherApi
) -> None:
    inner = secure_agent(researcher(api), shim)
    outer = secure_agent(concierge(AgentTool(inner, return_value_as_last_message=True)), shim)
    _result, run_id = await ask(stack, shim, outer, workflow(stack, HANDOFF))
    assert calls(stack, run_id) == [
        ("researcher", "research", "list_repos", ["concierge", "researcher"])
    ]
    run = stack.admin.run(run_id)
    assert sorted(run["completed_steps"]) == ["answer", "research"] and run["finished"]


async def test_a_team_tools_first_speaker_is_handed_its_step_and_the_turns_go_on(
    stack: Stack, shim: Shim, api: PatcherApi
) -> None:
    steps = {
        **HANDOFF,
        "check": {
            "agent": "checker",
            "tools": ["list_repos"],
            "scopes": ["repo:read"],
            "after": ["research"],
        },
    }
    first = secure_agent(researcher(api), shim, turn_delegation=True)
    second = secure_agent(researcher(api, "checker"), shim, turn_delegation=True)
    team = RoundRobinGroupChat([first, second], termination_condition=MaxMessageTermination(5))
    outer = secure_agent(concierge(TeamTool(team, "researcher", "Looks things up.")), shim)
    _result, run_id = await ask(stack, shim, outer, workflow(stack, steps))
    assert calls(stack, run_id) == [
        ("researcher", "research", "list_repos", ["concierge", "researcher"]),
        ("checker", "check", "list_repos", ["concierge", "researcher", "checker"]),
    ]


async def test_an_agent_the_caller_may_not_consult_does_not_run(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    # The workflow has no place for the researcher: its turn ends with the refusal before
    # its model is called, and nothing reaches the API.
    steps = {"answer": {"agent": "concierge", "tools": ["researcher", "list_repos"]}}
    inner = secure_agent(researcher(api), shim)
    outer = secure_agent(concierge(AgentTool(inner, return_value_as_last_message=True)), shim)
    result, run_id = await ask(stack, shim, outer, workflow(stack, steps))
    assert calls(stack, run_id) == []
    [answer] = tool_results(result)
    assert "the call from 'concierge''s tool 'researcher'" in answer
    assert "list 'researcher' under 'consult' in step 'answer'" in answer
    assert answer.endswith(f"[{Reason.WRONG_AGENT_FOR_STEP.value}]")
    # The caller's model sees a failed tool call, not an answer.
    assert [r.is_error for m in result.messages if isinstance(m, ToolCallExecutionEvent)
            for r in m.content] == [True]  # fmt: skip
    assert [e.kind for e in events if e.kind.endswith("refused")] == ["handoff_refused"]


async def test_an_inner_agent_not_secured_is_refused_not_run_as_its_caller(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    # Its list_repos call ran inside the concierge's tool call and went out as the
    # concierge, whose step may list repositories: another agent's identity.
    steps = {
        "answer": {
            "agent": "concierge",
            "tools": ["researcher", "list_repos"],
            "scopes": ["repo:read"],
        }
    }
    inner = researcher(api)
    outer = secure_agent(concierge(AgentTool(inner, return_value_as_last_message=True)), shim)
    result, run_id = await ask(stack, shim, outer, workflow(stack, steps))
    assert calls(stack, run_id) == []
    [answer] = tool_results(result)
    assert "runs agent(s) 'researcher', which are not secured" in answer
    refused = [e for e in events if e.kind == "tool_refused"]
    assert [e.detail["reason"] for e in refused] == [Reason.AGENT_NOT_REGISTERED.value]


async def test_a_consult_entry_wins_over_the_agents_later_step(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    # The researcher may be consulted in 'answer' and also has a later step of its own:
    # the call was a hand-off, completing the caller's step, and the consulted tool was
    # then refused in the researcher's step, which its answer completed.
    steps = {
        **CONSULT,
        "research": {"agent": "researcher", "tools": ["read_file"], "after": ["answer"]},
    }
    inner = secure_agent(researcher(api), shim)
    outer = secure_agent(concierge(AgentTool(inner, return_value_as_last_message=True)), shim)
    _, run_id = await ask(stack, shim, outer, workflow(stack, steps))
    assert calls(stack, run_id) == [
        ("researcher", "answer", "list_repos", ["concierge", "researcher"])
    ]
    assert [e.kind for e in events if e.kind in ("consultation", "handoff")] == ["consultation"]
    assert stack.admin.run(run_id)["completed_steps"] == []


async def test_two_calls_at_once_sign_one_hand_off(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    # Both turns started before either hand-off was recorded: two delegations of one step.
    tool = AgentTool(secure_agent(researcher(api, runs=2), shim), return_value_as_last_message=True)
    both = [call("researcher", task="Which?"), call("researcher", task="Which else?")]
    outer = AssistantAgent(
        "concierge",
        ScriptedChatCompletionClient([both, "Done. TERMINATE"]),
        tools=[tool],
        system_message="You answer users; ask the researcher.",
    )
    secure_agent(outer, shim)
    _, run_id = await ask(stack, shim, outer, workflow(stack, HANDOFF))
    assert [c[0] for c in calls(stack, run_id)] == ["researcher", "researcher"]
    assert [e.kind for e in events if e.kind == "handoff"] == ["handoff"]
    delegations = [e for e in stack.admin.ledger(run_id)["entries"] if e["kind"] == "delegation"]
    assert len(delegations) == 1


async def test_an_agent_whose_calls_were_refused_leaves_its_step_open(
    stack: Stack, shim: Shim, api: PatcherApi, events: list[ShimEvent]
) -> None:
    # Its step has no scope the API wants: the API refuses its call. Its answer used to
    # complete the step all the same, and the run was reported finished.
    steps = {
        "answer": {"agent": "concierge", "tools": ["researcher"]},
        "research": {"agent": "researcher", "tools": ["list_repos"], "after": ["answer"]},
    }
    inner = secure_agent(researcher(api), shim)
    outer = secure_agent(concierge(AgentTool(inner, return_value_as_last_message=True)), shim)
    _, run_id = await ask(stack, shim, outer, workflow(stack, steps))
    assert calls(stack, run_id) == []
    assert [e.detail["reason"] for e in events if e.kind == "api_refused"] == [
        Reason.SCOPE_EXCEEDED.value
    ]
    run = stack.admin.run(run_id)
    assert run["completed_steps"] == ["answer"] and run["due_steps"] == ["research"]
    assert not run["finished"]
