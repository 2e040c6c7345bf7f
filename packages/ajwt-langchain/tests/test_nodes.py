"""``ajwt_node``: a node acts as its agent; moving between agents is a signed hand-off.

Plain node functions (sync and async) calling the resource server directly, each
declaring the tool its own calls are made for (``tool=``), routed with
``Command(goto=...)``: each call carries the delegation chain, each node's return
completes its step, and an agent jumping the queue (T11: the supervisor sends the
patcher before the planner and classifier) or acting before its step is due (T8) is
refused, by the shim and by the IdP alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph.types import Command

from ajwt_core.errors import InvalidGrant, Reason
from ajwt_core.shim import Run, Shim
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_demo.stack import Stack
from ajwt_langchain import ajwt_node

PR = {"title": "Bump lodash to 4.17.21", "head": "fix/lodash"}


class State(TypedDict, total=False):
    seen: list[str]


def chain_graph(shim: Shim, api: PatcherApi, *, first: str = "supervisor") -> Any:
    """supervisor → planner → classifier → patcher, each handing on with Command(goto)."""
    seen_config: list[RunnableConfig] = []

    @ajwt_node(shim, agent="supervisor", tool="list_repos")
    def supervisor(state: State, config: RunnableConfig) -> Command[Any]:
        seen_config.append(config)
        api.get("/repos")
        return Command(goto="planner")

    @ajwt_node(shim, agent="planner", tool="read_file")
    def planner(state: State) -> Command[Any]:
        api.get("/repos/acme/storefront/files/package.json")
        return Command(goto="classifier")

    @ajwt_node(shim, agent="classifier", tool="query_advisories")
    def classifier(state: State) -> Command[Any]:
        api.get("/advisories", params={"package": "lodash"})
        return Command(goto="patcher")

    @ajwt_node(shim, agent="patcher", tool="create_pull_request")
    def patcher(state: State) -> dict[str, Any]:
        api.post("/repos/acme/storefront/pulls", PR)
        return {}

    builder = StateGraph(State)
    for name, node in [
        ("supervisor", supervisor),
        ("planner", planner),
        ("classifier", classifier),
        ("patcher", patcher),
    ]:
        builder.add_node(name, node)
    builder.add_edge(START, first)
    graph = builder.compile()
    graph.seen_config = seen_config  # type: ignore[attr-defined]
    return graph


def async_chain_graph(shim: Shim, api: PatcherApi) -> Any:
    @ajwt_node(shim, agent="supervisor", tool="list_repos")
    async def supervisor(state: State) -> Command[Any]:
        await api.aget("/repos")
        return Command(goto="planner")

    @ajwt_node(shim, agent="planner", tool="read_file")
    async def planner(state: State) -> Command[Any]:
        await api.aget("/repos/acme/storefront/files/package.json")
        return Command(goto="classifier")

    @ajwt_node(shim, agent="classifier", tool="query_advisories")
    async def classifier(state: State) -> Command[Any]:
        await api.aget("/advisories", params={"package": "lodash"})
        return Command(goto="patcher")

    @ajwt_node(shim, agent="patcher", tool="create_pull_request")
    async def patcher(state: State) -> dict[str, Any]:
        await api.apost("/repos/acme/storefront/pulls", PR)
        return {}

    builder = StateGraph(State)
    builder.add_node("supervisor", supervisor)
    builder.add_node("planner", planner)
    builder.add_node("classifier", classifier)
    builder.add_node("patcher", patcher)
    builder.add_edge(START, "supervisor")
    return builder.compile()


CHAIN = [
    ("supervisor", "triage", "list_repos", ["supervisor"]),
    ("planner", "plan", "read_file", ["supervisor", "planner"]),
    ("classifier", "classify", "query_advisories", ["supervisor", "planner", "classifier"]),
    (
        "patcher",
        "patch",
        "create_pull_request",
        ["supervisor", "planner", "classifier", "patcher"],
    ),
]


def assert_chain_run(stack: Stack, shim: Shim, run: Run, calls: list[CallRecord]) -> None:
    assert [(c.agent, c.step, c.tool, c.chain) for c in calls] == CHAIN
    assert shim.completed_steps(run) == {"triage", "plan", "classify", "patch"}
    kinds = [e["kind"] for e in stack.admin.ledger(run.run_id)["entries"]]
    assert kinds.count("delegation") == 3 and kinds.count("step_completed") == 4
    assert stack.admin.verify_ledger(run.run_id)["ok"]


def test_command_goto_between_agent_nodes_is_a_signed_delegation(
    stack: Stack,
    shim: Shim,
    run: Run,
    api: PatcherApi,
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    graph = chain_graph(shim, api)
    with shim.run(run):
        graph.invoke({"seen": []})
    assert_chain_run(stack, shim, run, calls(run))
    # The wrapped node still gets what LangGraph injects (here its config).
    assert graph.seen_config[0]["metadata"]["langgraph_node"] == "supervisor"


async def test_async_nodes_hand_off_the_same_way(
    stack: Stack,
    shim: Shim,
    run: Run,
    api: PatcherApi,
    calls: Callable[[Run], list[CallRecord]],
) -> None:
    with shim.run(run):
        await async_chain_graph(shim, api).ainvoke({"seen": []})
    assert_chain_run(stack, shim, run, calls(run))
    await shim.aclose()
    await api.aclose()


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_T11_an_agent_routed_to_out_of_turn_is_refused(
    shim: Shim,
    run: Run,
    api: PatcherApi,
    calls: Callable[[Run], list[CallRecord]],
    local_checks: bool,
) -> None:
    @ajwt_node(shim, agent="supervisor", tool="list_repos")
    def supervisor(state: State) -> Command[Any]:
        api.get("/repos")
        return Command(goto="patcher")  # skips the planner and the classifier

    @ajwt_node(shim, agent="patcher", tool="create_pull_request")
    def patcher(state: State) -> dict[str, Any]:
        api.post("/repos/acme/storefront/pulls", PR)
        return {}

    builder = StateGraph(State)
    builder.add_node("supervisor", supervisor)
    builder.add_node("patcher", patcher)
    builder.add_edge(START, "supervisor")
    graph = builder.compile()
    shim.local_checks = local_checks  # False: a compromised shim, the IdP must refuse
    with shim.run(run), pytest.raises(InvalidGrant) as info:
        graph.invoke({})
    # The patcher's step waits for the classifier's: no token for it, no call.
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert "'patch'" in info.value.description and "'classify'" in info.value.description
    assert [c.agent for c in calls(run)] == ["supervisor"]


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_T8_agent_acting_before_its_step_is_due_is_refused(
    shim: Shim,
    run: Run,
    api: PatcherApi,
    calls: Callable[[Run], list[CallRecord]],
    local_checks: bool,
) -> None:
    graph = chain_graph(shim, api, first="patcher")
    shim.local_checks = local_checks
    with shim.run(run), pytest.raises(InvalidGrant) as info:
        graph.invoke({})
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert calls(run) == []


def test_node_return_completes_its_step_unless_told_not_to(
    shim: Shim, run: Run, api: PatcherApi
) -> None:
    def list_repos(state: State) -> dict[str, Any]:
        api.get("/repos")
        return {}

    for complete in (False, True):
        builder = StateGraph(State)
        builder.add_node(
            "supervisor",
            ajwt_node(
                shim, list_repos, agent="supervisor", tool="list_repos", complete_on_exit=complete
            ),
        )
        builder.add_edge(START, "supervisor")
        with shim.run(run):
            builder.compile().invoke({})
        assert shim.completed_steps(run) == ({"triage"} if complete else set())


def test_failing_node_leaves_its_step_open(shim: Shim, run: Run, api: PatcherApi) -> None:
    @ajwt_node(shim, agent="supervisor", tool="list_repos")
    def supervisor(state: State) -> dict[str, Any]:
        api.get("/repos")
        raise RuntimeError("the model gave up")

    builder = StateGraph(State)
    builder.add_node("supervisor", supervisor)
    builder.add_edge(START, "supervisor")
    with shim.run(run), pytest.raises(RuntimeError):
        builder.compile().invoke({})
    assert shim.completed_steps(run) == set()


def test_node_outside_any_run_is_refused(shim: Shim, api: PatcherApi) -> None:
    from ajwt_core.errors import AgentContextError

    @ajwt_node(shim, agent="supervisor")
    def supervisor(state: State) -> dict[str, Any]:
        return {}

    builder = StateGraph(State)
    builder.add_node("supervisor", supervisor)
    builder.add_edge(START, "supervisor")
    with pytest.raises(AgentContextError) as info:
        builder.compile().invoke({})
    assert info.value.reason == Reason.NO_AGENT_CONTEXT


def test_a_wrapped_graph_is_still_the_nodes_subgraph(shim: Shim) -> None:
    # LangGraph streams a subgraph's events and keeps its checkpoints when it finds the
    # subgraph in the node; the wrapper names it as its dependency (no source parsing).
    inner = StateGraph(State)
    inner.add_node("work", lambda state: {"seen": ["inner"]})
    inner.add_edge(START, "work")
    agent_graph = inner.compile()
    outer = StateGraph(State)
    outer.add_node("agent", ajwt_node(shim, agent_graph, agent="planner"))
    outer.add_edge(START, "agent")
    compiled = outer.compile()
    assert [name for name, _ in compiled.get_subgraphs()] == ["agent"]
    assert next(iter(compiled.builder.nodes["agent"].runnable.deps)) is agent_graph
