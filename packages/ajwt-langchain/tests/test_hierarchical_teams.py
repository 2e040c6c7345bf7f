"""LangGraph hierarchical teams secured with ``secure_graph``, over HTTP: a top
``create_supervisor`` whose workers are compiled ``create_supervisor`` graphs
(docs/langchain.md, *Hierarchical teams*). Each API call carries its agent, step and
the two-level chain; the run finishes when the app returns and is not entered again; a
team whose supervisor is named otherwise than its graph is refused with the reason; and
``draft_workflow`` refuses the nested app, naming its teams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

# Not a dependency of the adapter (it needs none of its code): the apps the tests build.
pytest.importorskip("langgraph_supervisor")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph_apps import USER, Env, ScriptedModel, api_tool, calls, env_fixture
from langgraph_supervisor import create_supervisor

from ajwt_core.errors import AJWTError, InvalidRequest, Reason
from ajwt_core.shim import Shim
from ajwt_langchain import draft_workflow, secure_graph

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_react_agent inside


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from env_fixture(tmp_path_factory.mktemp("hierarchical"))


def plan(*tools: str, done: str = "Done.") -> ScriptedModel:
    """A model that calls each of ``tools`` once, in order, then answers ``done``. It reads
    the conversation, so every invocation of the app plays the same turns."""

    def reply(messages: Sequence[BaseMessage]) -> AIMessage | str:
        asked = {
            call["name"]
            for message in messages
            if isinstance(message, AIMessage)
            for call in message.tool_calls
        }
        answered = {message.name for message in messages if isinstance(message, ToolMessage)}
        for tool in tools:
            if tool not in asked or tool not in answered:
                return calls(tool if tool.startswith("transfer_to_") else (tool, {"item": tool}))
        return done

    return ScriptedModel(script=reply)


def newsroom(
    shim: Shim,
    env: Env,
    *,
    chief: Sequence[str] = ("transfer_to_research_team", "transfer_to_writing_team"),
    research_lead: str = "research_team",
    writing_lead: str = "writing_team",
) -> Any:
    """The top supervisor ``chief`` and two teams, each a compiled ``create_supervisor``
    graph (``research_team``, ``writing_team``) with one worker. A team's supervisor is
    named as its graph unless ``research_lead`` / ``writing_lead`` say otherwise."""

    def team(name: str, lead: str, worker: str, tool: str, done: str) -> Any:
        member = create_agent(
            plan(tool, done=done),
            [api_tool(tool, shim, env.api_url)],
            system_prompt=f"You are the {worker}.",
            name=worker,
        )
        return create_supervisor(
            [member],
            model=plan(f"transfer_to_{worker}", done=f"{name} done."),
            prompt=f"You lead the {name}.",
            supervisor_name=lead,
        ).compile(name=name)

    research_team = team("research_team", research_lead, "researcher", "search", "Facts found.")
    writing_team = team("writing_team", writing_lead, "writer", "publish", "Written.")
    return create_supervisor(
        [research_team, writing_team],
        model=plan(*chief, done="All done."),
        prompt="You run the newsroom.",
        supervisor_name="chief",
    ).compile(name="newsroom")


#: The workflow written by hand (docs/langchain.md): the writing team only once the
#: researcher's work is done.
NEWSROOM = {
    "chief": {"agent": "chief"},
    "research_team": {"agent": "research_team", "after": ["chief"]},
    "researcher": {"agent": "researcher", "tools": ["search"], "after": ["research_team"]},
    "writing_team": {"agent": "writing_team", "after": ["researcher"]},
    "writer": {"agent": "writer", "tools": ["publish"], "after": ["writing_team"]},
}
TWO_LEVELS = [
    (USER, "researcher", "researcher", "search", ("chief", "research_team", "researcher")),
    (USER, "writer", "writer", "publish", ("chief", "writing_team", "writer")),
]
ASK = {"messages": [("user", "Write about A-JWT.")]}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_nested_team_app_runs_with_two_level_chains(env: Env, asynchronous: bool) -> None:
    workflow = env.workflow(NEWSROOM)
    shim = env.shim()
    app = secure_graph(shim, newsroom(shim, env))
    run = env.start(shim, workflow)
    with shim.run(run):
        out = asyncio.run(app.ainvoke(ASK)) if asynchronous else app.invoke(ASK)
    assert out["messages"][-1].content == "All done."
    assert env.api.of(run) == TWO_LEVELS
    state = env.admin.run(run.run_id)
    assert state["finished"], state
    assert set(state["completed_steps"]) == set(NEWSROOM)
    assert state["due_steps"] == []
    assert env.admin.verify_ledger(run.run_id)["ok"]


def test_the_writing_team_may_follow_the_research_team_directly(env: Env) -> None:
    # The more natural shape also runs; it does not make the writers wait for the
    # researcher's work (only for the research team's supervisor).
    workflow = env.workflow(
        {**NEWSROOM, "writing_team": {"agent": "writing_team", "after": ["research_team"]}}
    )
    shim = env.shim()
    app = secure_graph(shim, newsroom(shim, env))
    run = env.start(shim, workflow)
    with shim.run(run):
        app.invoke(ASK)
    assert env.api.of(run) == TWO_LEVELS
    assert env.admin.run(run.run_id)["finished"]


def test_the_chief_sending_the_writers_first_is_refused(env: Env) -> None:
    workflow = env.workflow(NEWSROOM)
    shim = env.shim()
    app = secure_graph(shim, newsroom(shim, env, chief=["transfer_to_writing_team"]))
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AJWTError) as info:
        app.invoke(ASK)
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE, info.value.description
    assert env.api.of(run) == []


def test_a_second_invoke_in_the_finished_run_is_refused_and_a_new_run_works(env: Env) -> None:
    workflow = env.workflow(NEWSROOM)
    shim = env.shim()
    app = secure_graph(shim, newsroom(shim, env))
    run = env.start(shim, workflow)
    with shim.run(run):
        app.invoke(ASK)
    assert env.admin.run(run.run_id)["finished"]
    with shim.run(run), pytest.raises(AJWTError) as info:
        app.invoke(ASK)
    assert info.value.reason == Reason.RUN_FINISHED, info.value.description
    assert env.api.of(run) == TWO_LEVELS  # nothing more reached the API

    again = env.start(shim, workflow)
    with shim.run(again):
        app.invoke(ASK)
    assert env.api.of(again) == TWO_LEVELS
    assert env.admin.run(again.run_id)["finished"]


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_a_team_supervisor_named_otherwise_than_its_graph_is_refused(
    env: Env, local_checks: bool
) -> None:
    # transfer_to_research_team names the graph, and no agent has that name: it is a
    # plain tool, which the chief's step does not allow.
    workflow = env.workflow(NEWSROOM)
    shim = env.shim(local_checks=local_checks)
    app = secure_graph(
        shim, newsroom(shim, env, research_lead="research_lead", writing_lead="writing_lead")
    )
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AJWTError) as info:
        app.invoke(ASK)
    assert info.value.reason == Reason.TOOL_NOT_ALLOWED, info.value.description
    assert "transfer_to_research_team" in info.value.description
    assert env.api.of(run) == []


def test_draft_workflow_refuses_a_nested_app_naming_its_teams(env: Env) -> None:
    with pytest.raises(InvalidRequest) as info:
        draft_workflow(newsroom(env.shim(), env), workflow_id="newsroom")
    assert info.value.reason == Reason.MALFORMED_REQUEST
    description = info.value.description
    assert "nests agent teams (research_team, writing_team" in description
    assert "write the workflow by hand" in description
    assert "Hierarchical teams" in description
