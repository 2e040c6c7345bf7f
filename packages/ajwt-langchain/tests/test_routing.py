"""LangGraph routing mapped onto the workflow forms (issue 14), over HTTP: fan-out by a
conditional edge and by ``Send``, joins, choices (``one_of``), loops (``loop_to``) and
consultation. The delegator of each hand-off is the node that routed, not the agent
that acted last; what the workflow does not allow is refused, by the IdP alone too.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain.agents import create_agent
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from langgraph_apps import USER, Env, api_tool, calls, env_fixture, model, post

from ajwt_core.errors import AJWTError, Reason
from ajwt_core.shim import Shim
from ajwt_langchain import ajwt_node, secure_graph


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from env_fixture(tmp_path_factory.mktemp("routing"))


class State(TypedDict, total=False):
    messages: Annotated[list[Any], operator.add]
    items: list[str]
    item: str
    rounds: int


def refused(reason: Reason, call: Any, *args: Any) -> str:
    with pytest.raises(AJWTError) as info:
        call(*args)
    assert info.value.reason == reason, info.value.description
    return info.value.description


# ------------------------------------------------------------ fan-out and join

FAN_OUT = {
    "route": {"agent": "router"},
    "prices": {"agent": "prices", "tools": ["get_prices"], "after": ["route"]},
    "stock": {"agent": "stock", "tools": ["get_stock"], "after": ["route"]},
    "report": {"agent": "reporter", "tools": ["write_report"], "after": ["prices", "stock"]},
}


def fan_out_app(shim: Shim, env: Env) -> Any:
    def agent(name: str, tool: str) -> Any:
        graph = create_agent(
            model(calls((tool, {"item": name})), "Done."),
            [api_tool(tool, shim, env.api_url)],
            system_prompt=f"You are the {name} agent.",
            name=name,
        )
        return ajwt_node(shim, graph, agent=name)

    def route(state: State) -> dict[str, Any]:
        return {}

    builder = StateGraph(State)
    builder.add_node("route", ajwt_node(shim, route, agent="router"))
    builder.add_node("prices", agent("prices", "get_prices"))
    builder.add_node("stock", agent("stock", "get_stock"))
    builder.add_node("report", agent("reporter", "write_report"))
    builder.add_edge(START, "route")
    builder.add_conditional_edges("route", lambda state: ["prices", "stock"], ["prices", "stock"])
    builder.add_edge(["prices", "stock"], "report")
    builder.add_edge("report", END)
    return builder.compile()


def register_router(shim: Shim) -> None:
    shim.register(
        {"agent_id": "router", "prompt": {"template": "You route."}, "tools": [], "config": {}}
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_fan_out_is_handed_over_by_the_node_that_routed(env: Env, asynchronous: bool) -> None:
    workflow = env.workflow(FAN_OUT)
    shim = env.shim()
    register_router(shim)
    app = secure_graph(shim, fan_out_app(shim, env))
    run = env.start(shim, workflow)
    with shim.run(run):
        if asynchronous:
            import asyncio

            asyncio.run(app.ainvoke({"messages": [("user", "Report.")]}))
        else:
            app.invoke({"messages": [("user", "Report.")]})
    seen = env.api.of(run)
    assert sorted(seen[:2]) == [
        (USER, "prices", "prices", "get_prices", ("router", "prices")),
        (USER, "stock", "stock", "get_stock", ("router", "stock")),
    ]
    user, agent, step, tool, chain = seen[2]
    assert (user, agent, step, tool) == (USER, "reporter", "report", "write_report")
    # The join is handed over by one of the two branches, each handed over by the router.
    assert chain in {("router", "prices", "reporter"), ("router", "stock", "reporter")}
    assert shim.completed_steps(run) == {"route", "prices", "stock", "report"}
    assert env.admin.verify_ledger(run.run_id)["ok"]


SEND = {
    "route": {"agent": "router"},
    "fetch": {"agent": "fetcher", "tools": ["fetch"], "after": ["route"]},
    "merge": {"agent": "merger", "tools": ["merge"], "after": ["fetch"]},
}


def send_app(shim: Shim, env: Env) -> Any:
    fetch = api_tool("fetch", shim, env.api_url)

    def route(state: State) -> dict[str, Any]:
        return {}

    def fetcher(state: State) -> dict[str, Any]:
        # A node calling its tool directly: secured by secure_graph's callback handler.
        fetch.invoke({"item": state["item"]})
        return {"messages": [("ai", f"fetched {state['item']}")]}

    def merger(state: State) -> dict[str, Any]:
        post(env, shim, "merge", "all")
        return {}

    builder = StateGraph(State)
    builder.add_node("route", ajwt_node(shim, route, agent="router"))
    builder.add_node("fetch", ajwt_node(shim, fetcher, agent="fetcher"))
    builder.add_node("merge", ajwt_node(shim, merger, agent="merger", tool="merge"))
    builder.add_edge(START, "route")
    builder.add_conditional_edges(
        "route", lambda state: [Send("fetch", {"item": i}) for i in state["items"]], ["fetch"]
    )
    builder.add_edge("fetch", "merge")
    builder.add_edge("merge", END)
    return builder.compile()


def test_send_runs_one_agent_many_times_in_one_step(env: Env) -> None:
    workflow = env.workflow(SEND)
    shim = env.shim()
    register_router(shim)
    for agent, tool in (("fetcher", "fetch"), ("merger", "merge")):
        shim.register(
            {
                "agent_id": agent,
                "prompt": {"template": "."},
                "tools": [{"name": tool}],
                "config": {},
            }
        )
    app = secure_graph(shim, send_app(shim, env), register=False)
    run = env.start(shim, workflow)
    with shim.run(run):
        app.invoke({"items": ["a", "b", "c"], "messages": []})
    seen = env.api.of(run)
    assert seen[:3] == [(USER, "fetcher", "fetch", "fetch", ("router", "fetcher"))] * 3
    # The step completes when the last of the three nodes returns, then the merger goes.
    assert seen[3] == (USER, "merger", "merge", "merge", ("router", "fetcher", "merger"))
    fetched = [c.argument for c in env.api.calls if c.run_id == run.run_id and c.tool == "fetch"]
    assert sorted(fetched) == ["a", "b", "c"]
    entries = env.admin.ledger(run.run_id)["entries"]
    assert [e["data"]["step"] for e in entries if e["kind"] == "step_completed"].count("fetch") == 1


# ---------------------------------------------------------------------- choices

CHOICE = {
    "route": {"agent": "router", "one_of": ["refund", "replace"]},
    "refund": {"agent": "refunder", "tools": ["refund"], "after": ["route"]},
    "replace": {"agent": "replacer", "tools": ["replace"], "after": ["route"]},
}


def choice_app(shim: Shim, env: Env, then: str | None = None) -> Any:
    def route(state: State) -> dict[str, Any]:
        return {}

    def refunder(state: State) -> dict[str, Any]:
        post(env, shim, "refund", "order-42")
        return {}

    def replacer(state: State) -> dict[str, Any]:
        post(env, shim, "replace", "order-42")
        return {}

    builder = StateGraph(State)
    builder.add_node("route", ajwt_node(shim, route, agent="router"))
    builder.add_node("refund", ajwt_node(shim, refunder, agent="refunder", tool="refund"))
    builder.add_node("replace", ajwt_node(shim, replacer, agent="replacer", tool="replace"))
    builder.add_edge(START, "route")
    builder.add_conditional_edges("route", lambda state: "replace", ["refund", "replace"])
    builder.add_edge("replace", then or END)
    if then is not None:
        builder.add_edge(then, END)
    return builder.compile()


def choice_shim(env: Env, local_checks: bool = True) -> Shim:
    shim = env.shim(local_checks=local_checks)
    register_router(shim)
    for agent, tool in (("refunder", "refund"), ("replacer", "replace")):
        shim.register(
            {
                "agent_id": agent,
                "prompt": {"template": "."},
                "tools": [{"name": tool}],
                "config": {},
            }
        )
    return shim


def test_a_conditional_edge_takes_one_alternative_of_a_choice(env: Env) -> None:
    workflow = env.workflow(CHOICE)
    shim = choice_shim(env)
    run = env.start(shim, workflow)
    with shim.run(run):
        choice_app(shim, env).invoke({})
    assert env.api.of(run) == [(USER, "replacer", "replace", "replace", ("router", "replacer"))]
    assert shim.run_state(run).skipped().keys() == {"refund"}


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_the_alternative_not_taken_is_refused(env: Env, local_checks: bool) -> None:
    workflow = env.workflow(CHOICE)
    shim = choice_shim(env, local_checks)
    run = env.start(shim, workflow)
    with shim.run(run):
        refused(Reason.BRANCH_NOT_TAKEN, choice_app(shim, env, then="refund").invoke, {})
    assert [c[1] for c in env.api.of(run)] == ["replacer"]


# ------------------------------------------------------------------------ loops

LOOP = {
    "draft": {"agent": "writer", "tools": ["write"], "max_visits": 2},
    "review": {"agent": "reviewer", "tools": ["comment"], "after": ["draft"], "loop_to": ["draft"]},
}


def loop_app(shim: Shim, env: Env, rounds: int) -> Any:
    def writer(state: State) -> dict[str, Any]:
        post(env, shim, "write", f"draft {state.get('rounds', 0)}")
        return {"rounds": state.get("rounds", 0) + 1}

    def reviewer(state: State) -> dict[str, Any]:
        post(env, shim, "comment", "more")
        return {}

    builder = StateGraph(State)
    builder.add_node("draft", ajwt_node(shim, writer, agent="writer", tool="write"))
    builder.add_node("review", ajwt_node(shim, reviewer, agent="reviewer", tool="comment"))
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_conditional_edges(
        "review", lambda state: "draft" if state["rounds"] < rounds else END, ["draft", END]
    )
    return builder.compile()


def loop_shim(env: Env, local_checks: bool = True) -> Shim:
    shim = env.shim(local_checks=local_checks)
    for agent, tool in (("writer", "write"), ("reviewer", "comment")):
        shim.register(
            {
                "agent_id": agent,
                "prompt": {"template": "."},
                "tools": [{"name": tool}],
                "config": {},
            }
        )
    return shim


def test_work_sent_back_is_a_loop_hand_off(env: Env) -> None:
    workflow = env.workflow(LOOP)
    shim = loop_shim(env)
    run = env.start(shim, workflow)
    with shim.run(run):
        loop_app(shim, env, rounds=2).invoke({"rounds": 0})
    assert env.api.of(run) == [
        (USER, "writer", "draft", "write", ("writer",)),
        (USER, "reviewer", "review", "comment", ("writer", "reviewer")),
        (USER, "writer", "draft", "write", ("writer", "reviewer", "writer")),
        (USER, "reviewer", "review", "comment", ("writer", "reviewer", "writer", "reviewer")),
    ]


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_a_loop_past_max_visits_is_refused(env: Env, local_checks: bool) -> None:
    workflow = env.workflow(LOOP)
    shim = loop_shim(env, local_checks)
    run = env.start(shim, workflow)
    with shim.run(run):
        refused(Reason.VISIT_LIMIT_REACHED, loop_app(shim, env, rounds=3).invoke, {"rounds": 0})
    assert [c[1] for c in env.api.of(run)] == ["writer", "reviewer"] * 2


# ---------------------------------------------------------------- consultation

CONSULT = {
    "plan": {"agent": "planner", "tools": ["read"], "consult": {"expert": {"tools": ["lookup"]}}},
}


def test_an_agent_asked_inside_a_node_is_consulted(env: Env) -> None:
    workflow = env.workflow(CONSULT)
    shim = env.shim()
    expert = create_agent(
        model(calls(("lookup", {"item": "CVE-1"})), "It is bad."),
        [api_tool("lookup", shim, env.api_url)],
        system_prompt="You know every advisory.",
        name="expert",
    )

    def planner(state: State) -> dict[str, Any]:
        post(env, shim, "read", "manifest")
        answer = expert.invoke({"messages": [("user", "Is CVE-1 bad?")]})
        return {"messages": answer["messages"][-1:]}

    builder = StateGraph(State)
    builder.add_node("plan", ajwt_node(shim, planner, agent="planner", tool="read"))
    builder.add_edge(START, "plan")
    shim.register(
        {
            "agent_id": "planner",
            "prompt": {"template": "."},
            "tools": [{"name": "read"}],
            "config": {},
        }
    )
    app = secure_graph(shim, builder.compile())
    secure_graph(shim, expert)  # the expert runs outside the app's graph
    run = env.start(shim, workflow)
    with shim.run(run):
        app.invoke({"messages": []})
    assert env.api.of(run) == [
        (USER, "planner", "plan", "read", ("planner",)),
        (USER, "expert", "plan", "lookup", ("planner", "expert")),
    ]
    assert shim.completed_steps(run) == {"plan"}
