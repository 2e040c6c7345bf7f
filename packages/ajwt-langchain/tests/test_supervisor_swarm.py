"""langgraph-supervisor and langgraph-swarm apps secured with ``secure_graph`` (issue 14),
over HTTP: each API call carries the right user, agent, step, tool and chain, the
hand-offs are signed by the agent that made them, a hand-off the workflow does not
allow is refused (by the IdP alone too), and a wrapper ``create_supervisor`` dropped
is reported loudly instead of failing later with "waits for step ...".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# Not dependencies of the adapter (it needs none of their code): apps the tests build.
pytest.importorskip("langgraph_supervisor")
pytest.importorskip("langgraph_swarm")

from langchain.agents import create_agent
from langgraph.prebuilt import ToolNode, create_react_agent
from langgraph_apps import USER, Env, api_tool, calls, env_fixture, model
from langgraph_supervisor import create_supervisor
from langgraph_swarm import create_handoff_tool, create_swarm

from ajwt_core.errors import AJWTError, Reason
from ajwt_core.shim import Shim
from ajwt_core.workflow import Workflow
from ajwt_langchain import AJWTToolWrapper, agent_manifests, draft_workflow, secure_graph

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_react_agent


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from env_fixture(tmp_path_factory.mktemp("supervisor"))


def supervisor_app(shim: Shim, env: Env, supervisor_replies: list[Any]) -> Any:
    """A supervisor (create_react_agent inside create_supervisor) with two workers: a
    researcher built by create_agent and a writer built by create_react_agent."""
    researcher = create_agent(
        model(calls(("search", {"item": "refunds"})), "Found it."),
        [api_tool("search", shim, env.api_url)],
        system_prompt="You research.",
        name="researcher",
    )
    writer = create_react_agent(
        model(calls(("publish", {"item": "answer"})), "Published."),
        [api_tool("publish", shim, env.api_url)],
        prompt="You write.",
        name="writer",
    )
    builder = create_supervisor(
        [researcher, writer],
        model=model(*supervisor_replies),
        prompt="You route work to your team.",
    )
    return builder.compile()


SUPERVISED = {
    "supervisor": {"agent": "supervisor"},
    "researcher": {"agent": "researcher", "tools": ["search"], "after": ["supervisor"]},
    "writer": {"agent": "writer", "tools": ["publish"], "after": ["supervisor"]},
}
IN_TURN = [calls("transfer_to_researcher"), calls("transfer_to_writer"), "All done."]


def test_the_draft_of_a_supervisor_app_is_the_workflow_it_runs(env: Env) -> None:
    shim = env.shim()
    draft = draft_workflow(supervisor_app(shim, env, []), workflow_id="support")
    assert (
        Workflow.from_mapping(draft).canonical()
        == Workflow.from_mapping({"id": "support", "version": 1, "steps": SUPERVISED}).canonical()
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_supervisor_app_hands_off_with_signed_delegations(env: Env, asynchronous: bool) -> None:
    workflow = env.workflow(SUPERVISED)
    shim = env.shim()
    app = secure_graph(shim, supervisor_app(shim, env, list(IN_TURN)))
    run = env.start(shim, workflow)
    with shim.run(run):
        if asynchronous:
            import asyncio

            asyncio.run(app.ainvoke({"messages": [("user", "Answer the refund question.")]}))
        else:
            app.invoke({"messages": [("user", "Answer the refund question.")]})
    assert env.api.of(run) == [
        (USER, "researcher", "researcher", "search", ("supervisor", "researcher")),
        (USER, "writer", "writer", "publish", ("supervisor", "writer")),
    ]
    # The supervisor's registration is the app's supervisor: hand-off tools are routing.
    registered = {m.agent_id: m for m in agent_manifests(app)}
    assert shim.agent("supervisor").checksum == registered["supervisor"].checksum()
    assert shim.completed_steps(run) >= {"supervisor", "researcher"}
    assert env.admin.verify_ledger(run.run_id)["ok"]


ORDERED = {
    "supervisor": {"agent": "supervisor"},
    "researcher": {"agent": "researcher", "tools": ["search"], "after": ["supervisor"]},
    "writer": {"agent": "writer", "tools": ["publish"], "after": ["researcher"]},
}


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_a_supervisor_handing_out_of_order_is_refused(env: Env, local_checks: bool) -> None:
    # The workflow: the writer only after the researcher. The supervisor skips it.
    workflow = env.workflow(ORDERED)
    shim = env.shim(local_checks=local_checks)
    app = secure_graph(shim, supervisor_app(shim, env, [calls("transfer_to_writer")]))
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AJWTError) as info:
        app.invoke({"messages": [("user", "Publish now.")]})
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE, info.value.description
    assert env.api.of(run) == []


def test_a_wrapper_create_supervisor_drops_is_reported_loudly(env: Env) -> None:
    """The newcomer's mistake: a ToolNode with a wrapper given to create_supervisor."""
    workflow = env.workflow(SUPERVISED)
    shim = env.shim()
    researcher = create_agent(
        model(calls(("search", {"item": "refunds"})), "Found it."),
        [api_tool("search", shim, env.api_url)],
        system_prompt="You research.",
        name="researcher",
    )
    shim.register_many(agent_manifests(researcher))
    wrapper = AJWTToolWrapper(shim)
    builder = create_supervisor(
        [researcher],
        model=model(calls("transfer_to_researcher"), "Done."),
        tools=ToolNode([], wrap_tool_call=wrapper.wrap_tool_call),  # rebuilt: dropped
        prompt="You route work to your team.",
    )
    app = builder.compile()
    shim.register_many(agent_manifests(app))
    # The researcher's tools are wrapped (by hand), the supervisor's hand-off is not.
    from ajwt_langchain import find_agents

    [tools_node] = [
        node
        for agent in find_agents(app)
        if agent.agent_id == "researcher"
        for node in [agent.graph.nodes["tools"].bound]
    ]
    tools_node._wrap_tool_call = wrapper.wrap_tool_call
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AJWTError) as info:
        app.invoke({"messages": [("user", "Answer.")]})
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert "never acted through A-JWT" in info.value.description
    assert "secure_graph" in info.value.description
    assert env.api.of(run) == []


# ---------------------------------------------------------------------- swarm


def swarm_app(shim: Shim, env: Env, alice: list[Any], bob: list[Any], first: str = "alice") -> Any:
    alice_agent = create_agent(
        model(*alice),
        [api_tool("add", shim, env.api_url), create_handoff_tool(agent_name="bob")],
        system_prompt="You are Alice, an addition expert.",
        name="alice",
    )
    bob_agent = create_agent(
        model(*bob),
        [api_tool("speak", shim, env.api_url), create_handoff_tool(agent_name="alice")],
        system_prompt="You are Bob, you speak like a pirate.",
        name="bob",
    )
    return create_swarm([alice_agent, bob_agent], default_active_agent=first).compile()


SWARM = {
    "alice": {"agent": "alice", "tools": ["add"], "max_visits": 5},
    "bob": {"agent": "bob", "tools": ["speak"], "after": ["alice"], "loop_to": ["alice"]},
}


def test_the_draft_of_a_swarm(env: Env) -> None:
    draft = draft_workflow(swarm_app(env.shim(), env, [], []), workflow_id="swarm")
    assert (
        Workflow.from_mapping(draft).canonical()
        == Workflow.from_mapping({"id": "swarm", "version": 1, "steps": SWARM}).canonical()
    )


def test_the_draft_of_a_swarm_starts_at_its_default_agent_and_runs(env: Env) -> None:
    # Bob first, although Alice comes first in the list and in the alphabet.
    shim = env.shim()
    app = swarm_app(
        shim, env, [calls(("add", {"item": "1+1"})), "Two."], [calls("transfer_to_alice")], "bob"
    )
    draft = draft_workflow(app, workflow_id="swarm")
    assert draft["steps"] == {
        "bob": {"agent": "bob", "tools": ["speak"], "max_visits": 5},
        "alice": {"agent": "alice", "tools": ["add"], "after": ["bob"], "loop_to": ["bob"]},
    }
    workflow = Workflow.from_mapping({**draft, "id": env.workflow(draft["steps"]).id})
    run = env.start(shim, workflow)
    with shim.run(run):
        secure_graph(shim, app).invoke({"messages": [("user", "Add one and one.")]})
    assert env.api.of(run) == [(USER, "alice", "alice", "add", ("bob", "alice"))]
    assert env.admin.run(run.run_id)["finished"]


def test_a_swarm_hands_off_both_ways(env: Env) -> None:
    workflow = env.workflow(SWARM)
    shim = env.shim()
    app = secure_graph(
        shim,
        swarm_app(
            shim,
            env,
            [
                calls(("add", {"item": "2+2"})),
                calls("transfer_to_bob"),
                calls(("add", {"item": "3+3"})),
                "Sum done.",
            ],
            [calls(("speak", {"item": "arr"})), calls("transfer_to_alice")],
        ),
    )
    run = env.start(shim, workflow)
    with shim.run(run):
        app.invoke({"messages": [("user", "Add, then talk like a pirate.")]})
    assert env.api.of(run) == [
        (USER, "alice", "alice", "add", ("alice",)),
        (USER, "bob", "bob", "speak", ("alice", "bob")),
        (USER, "alice", "alice", "add", ("alice", "bob", "alice")),
    ]


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_a_swarm_hand_off_the_workflow_does_not_have_is_refused(
    env: Env, local_checks: bool
) -> None:
    # Bob may not hand work back to Alice here (no loop_to).
    workflow = env.workflow(
        {
            "alice": {"agent": "alice", "tools": ["add"]},
            "bob": {"agent": "bob", "tools": ["speak"], "after": ["alice"]},
        }
    )
    shim = env.shim(local_checks=local_checks)
    app = secure_graph(
        shim,
        swarm_app(
            shim,
            env,
            [calls("transfer_to_bob"), calls(("add", {"item": "1+1"}))],
            [calls("transfer_to_alice")],
        ),
    )
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AJWTError) as info:
        app.invoke({"messages": [("user", "Go.")]})
    assert info.value.reason in {
        Reason.DELEGATION_NOT_ALONG_WORKFLOW,
        Reason.STEP_ALREADY_COMPLETED,
    }, info.value.description
    assert env.api.of(run) == []
