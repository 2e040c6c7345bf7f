"""When an app secured with ``secure_graph`` returns, the steps its agents acted in are
completed (the last worker under a supervisor too), so the run finishes at the IdP; a
paused app (``interrupt()``, a breakpoint) keeps them open for the resume, and so do an
error and ``complete_on_return=False``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.tools import StructuredTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, interrupt
from langgraph_apps import USER, Env, api_tool, calls, env_fixture, model

from ajwt_core.errors import AJWTError, Reason
from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_langchain import resume_thread, run_config, secure_graph

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_supervisor


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from env_fixture(tmp_path_factory.mktemp("returns"))


SUPERVISED = {
    "supervisor": {"agent": "supervisor"},
    "researcher": {"agent": "researcher", "tools": ["search"], "after": ["supervisor"]},
    "writer": {"agent": "writer", "tools": ["publish"], "after": ["researcher"]},
}
ALL_STEPS = {"supervisor", "researcher", "writer"}


def supervised(shim: Shim, env: Env, publish: Any = None, **compiled: Any) -> Any:
    # Not a dependency of the adapter: the tests that need it skip without it.
    create_supervisor = pytest.importorskip("langgraph_supervisor").create_supervisor
    researcher = create_agent(
        model(calls(("search", {"item": "refunds"})), "Found it."),
        [api_tool("search", shim, env.api_url)],
        system_prompt="You research.",
        name="researcher",
    )
    writer = create_agent(
        model(calls(("publish", {"item": "answer"})), "Published."),
        [publish or api_tool("publish", shim, env.api_url)],
        system_prompt="You write.",
        name="writer",
    )
    return create_supervisor(
        [researcher, writer],
        model=model(calls("transfer_to_researcher"), calls("transfer_to_writer"), "All done."),
        prompt="You route work to your team.",
    ).compile(**compiled)


def finished(env: Env, run: Run) -> bool:
    view = env.admin.run(run.run_id)
    assert env.admin.verify_ledger(run.run_id)["ok"]
    return bool(view["finished"])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_last_worker_is_completed_when_the_app_returns(env: Env, asynchronous: bool) -> None:
    shim = env.shim()
    app = secure_graph(shim, supervised(shim, env))
    run = env.start(shim, env.workflow(SUPERVISED))
    question = {"messages": [("user", "Answer the refund question.")]}
    with shim.run(run):
        if asynchronous:

            async def ask() -> None:
                await app.ainvoke(question)
                await shim.aflush(run)

            asyncio.run(ask())
        else:
            app.invoke(question)
        # The app returned: the writer's step is completed, to be sent with the block's end.
        assert shim.completed_steps(run) == ALL_STEPS
    assert shim.deferred(run) == []
    assert finished(env, run)
    assert [call[2] for call in env.api.of(run)] == ["researcher", "writer"]


def test_a_stream_read_to_its_end_completes_like_invoke(env: Env) -> None:
    shim = env.shim()
    app = secure_graph(shim, supervised(shim, env))
    run = env.start(shim, env.workflow(SUPERVISED))
    with shim.run(run):
        for _ in app.stream({"messages": [("user", "Go.")]}):
            pass
    assert finished(env, run)


def test_a_stream_left_before_its_end_leaves_the_steps_open(env: Env) -> None:
    shim = env.shim()
    app = secure_graph(shim, supervised(shim, env))
    run = env.start(shim, env.workflow(SUPERVISED))
    with shim.run(run):
        stream = app.stream({"messages": [("user", "Go.")]}, stream_mode="updates")
        for update in stream:
            if "writer" in update:
                break  # the writer acted; the supervisor's last turn is never read
        stream.close()
    assert shim.completed_steps(run) == {"supervisor", "researcher"}
    assert not finished(env, run)


def test_complete_on_return_false_leaves_the_steps_open(env: Env) -> None:
    shim = env.shim()
    app = secure_graph(shim, supervised(shim, env), complete_on_return=False)
    run = env.start(shim, env.workflow(SUPERVISED))
    with shim.run(run):
        app.invoke({"messages": [("user", "Go.")]})
    assert shim.completed_steps(run) == {"supervisor", "researcher"}
    assert not finished(env, run)


def test_an_app_that_fails_leaves_the_acting_step_open(env: Env) -> None:
    shim = env.shim()

    def publish(item: str = "") -> str:
        raise RuntimeError("the publishing service is down")

    broken = StructuredTool.from_function(publish, name="publish", description="Call publish.")
    app = secure_graph(shim, supervised(shim, env, publish=broken))
    run = env.start(shim, env.workflow(SUPERVISED))
    with shim.run(run), pytest.raises(RuntimeError, match="publishing service is down"):
        app.invoke({"messages": [("user", "Go.")]})
    assert shim.completed_steps(run) == {"supervisor", "researcher"}
    assert not finished(env, run)


def test_an_interrupt_keeps_the_step_open_until_the_resumed_app_returns(env: Env) -> None:
    # The writer asks a person before publishing (interrupt() inside its tool).
    shim = env.shim()
    http_publish = api_tool("publish", shim, env.api_url)

    @tool("publish", description="Call publish.")
    def publish(item: str = "") -> str:
        if interrupt(f"publish {item}?") != "yes":
            return "not published"
        return str(http_publish.invoke({"item": item}))

    app = secure_graph(shim, supervised(shim, env, publish=publish, checkpointer=InMemorySaver()))
    run = env.start(shim, env.workflow(SUPERVISED))
    config = run_config(run, {"configurable": {"thread_id": f"t-{run.run_id}"}})
    events: list[ShimEvent] = []
    shim.subscribe(events.append)
    with shim.run(run):
        paused = app.invoke({"messages": [("user", "Go.")]}, config)
    assert "__interrupt__" in paused
    assert shim.completed_steps(run) == {"supervisor", "researcher"}
    assert not finished(env, run)
    with shim.run(run):
        app.invoke(Command(resume="yes"), config)
    assert finished(env, run)
    # The pause is not a failure; the resumed call starts again and finishes.
    assert [e.kind for e in events if e.tool == "publish" and e.kind.startswith("tool_")] == [
        "tool_started",
        "tool_paused",
        "tool_started",
        "tool_finished",
    ]
    assert env.api.of(run)[-1] == (USER, "writer", "writer", "publish", ("supervisor", "writer"))


def test_a_breakpoint_keeps_the_step_open_until_the_resumed_app_returns(env: Env) -> None:
    # One agent, two tool calls; the app stops before the second (interrupt_before).
    shim = env.shim()
    agent = create_agent(
        model(
            calls(("search", {"item": "a"})),
            calls(("search", {"item": "b"})),
            "Both found.",
        ),
        [api_tool("search", shim, env.api_url)],
        system_prompt="You research.",
        name="researcher",
        checkpointer=InMemorySaver(),
    )
    app = secure_graph(shim, agent)
    run = env.start(shim, env.workflow({"research": {"agent": "researcher", "tools": ["search"]}}))
    config: Any = {"configurable": {"thread_id": f"t-{run.run_id}"}}
    with shim.run(run):
        app.invoke({"messages": [("user", "Find a, then b.")]}, config, interrupt_before=["tools"])
        paused = app.invoke(None, config, interrupt_before=["tools"])
    assert paused["messages"][-1].tool_calls  # stopped before the second search
    assert [call[3] for call in env.api.of(run)] == ["search"]
    assert shim.completed_steps(run) == set()
    with shim.run(run):
        app.invoke(None, config)
    assert [call[3] for call in env.api.of(run)] == ["search", "search"]
    assert finished(env, run)


def test_an_interrupt_without_a_checkpointer_keeps_the_step_open(env: Env) -> None:
    # No thread to read: the interrupt itself says the app paused (async run here).
    shim = env.shim()

    @tool("publish", description="Call publish.")
    async def publish(item: str = "") -> str:
        interrupt(f"publish {item}?")
        return "published"

    app = secure_graph(shim, supervised(shim, env, publish=publish))
    run = env.start(shim, env.workflow(SUPERVISED))

    async def go() -> dict[str, Any]:
        paused: dict[str, Any] = await app.ainvoke({"messages": [("user", "Go.")]})
        await shim.aflush(run)
        return paused

    events: list[ShimEvent] = []
    shim.subscribe(events.append)
    with shim.run(run):
        assert "__interrupt__" in asyncio.run(go())
    assert "tool_paused" in [e.kind for e in events if e.tool == "publish"]
    assert "tool_failed" not in [e.kind for e in events]
    assert shim.completed_steps(run) == {"supervisor", "researcher"}
    assert not finished(env, run)


def reviewed(shim: Shim, env: Env, saver: InMemorySaver) -> Any:
    """A writer agent, then a person reviews (interrupt() in a node of no agent)."""
    writer = create_agent(
        model(calls(("publish", {"item": "draft"})), "Published the draft."),
        [api_tool("publish", shim, env.api_url)],
        system_prompt="You write.",
        name="writer",
    )

    def review(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("user", str(interrupt("Keep it?")))]}

    builder = StateGraph(MessagesState)
    builder.add_node("writer", writer)
    builder.add_node("review", review)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", "review")
    builder.add_edge("review", END)
    return secure_graph(shim, builder.compile(checkpointer=saver))


@pytest.mark.parametrize("where", ["same-process", "new-process"])
def test_a_step_acted_in_before_a_pause_is_completed_when_the_resumed_app_returns(
    env: Env, where: str
) -> None:
    registered = env.admin.register_client(f"app-{where}-{uuid.uuid4().hex[:8]}", scopes=["tools"])

    def new_shim() -> Shim:  # a process of that client app
        return Shim(
            env.idp_url,
            registered["client_id"],
            client_secret=registered["client_secret"],
            default_audience=env.api_url,
        )

    shim, saver = new_shim(), InMemorySaver()
    workflow = env.workflow({"write": {"agent": "writer", "tools": ["publish"]}})
    run = env.start(shim, workflow)
    thread: Any = {"configurable": {"thread_id": f"t-{run.run_id}"}}
    with shim.run(run):
        paused = reviewed(shim, env, saver).invoke(
            {"messages": [("user", "Write.")]}, run_config(run, thread)
        )
    assert paused["__interrupt__"][0].value == "Keep it?"
    assert not finished(env, run)
    if where == "new-process":
        # Another process of the app (a new shim and tracker), the run read from the thread.
        client = new_shim()
        app = reviewed(client, env, saver)
        resumed = resume_thread(client, app, thread)
    else:
        client, app, resumed = shim, reviewed(shim, env, saver), run
    with client.run(resumed):
        app.invoke(Command(resume="yes"), run_config(resumed, thread))
    assert finished(env, run)
    assert [c[3] for c in env.api.of(run)] == ["publish"]


def test_astream_events_read_to_its_end_completes_the_steps(env: Env) -> None:
    shim = env.shim()
    app = secure_graph(shim, supervised(shim, env))
    run = env.start(shim, env.workflow(SUPERVISED))

    async def go() -> list[str]:
        kinds = [e["event"] async for e in app.astream_events({"messages": [("user", "Go.")]})]
        await shim.aflush(run)
        return kinds

    with shim.run(run):
        kinds = asyncio.run(go())
    assert "on_tool_end" in kinds
    assert finished(env, run)


def test_an_async_saver_tells_a_breakpoint_in_an_async_run(env: Env, tmp_path: Path) -> None:
    # ainvoke with an async-only checkpointer: the thread is read from the handler too.
    pytest.importorskip("langgraph.checkpoint.sqlite")  # a dev dependency
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    shim = env.shim()
    run = env.start(shim, env.workflow({"research": {"agent": "researcher", "tools": ["search"]}}))
    config: Any = {"configurable": {"thread_id": f"t-{run.run_id}"}}

    async def go() -> None:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "threads.db")) as saver:
            agent = create_agent(
                model(calls(("search", {"item": "a"})), calls(("search", {"item": "b"})), "Ok."),
                [api_tool("search", shim, env.api_url)],
                system_prompt="You research.",
                name="researcher",
                checkpointer=saver,
            )
            app = secure_graph(shim, agent)
            await app.ainvoke({"messages": [("user", "a, b")]}, config, interrupt_before=["tools"])
            await app.ainvoke(None, config, interrupt_before=["tools"])  # after search a
            await shim.aflush(run)
            assert shim.completed_steps(run) == set()
            await app.ainvoke(None, config)
            await shim.aflush(run)

    with shim.run(run):
        asyncio.run(go())
    assert finished(env, run)


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_an_app_invoked_again_in_its_finished_run_is_refused(env: Env, local_checks: bool) -> None:
    # Found by a newcomer: the supervisor's first hand-off of a second invoke in the same
    # run was refused as visit_limit_reached, whose hint (raise max_visits) is no fix for
    # a replayed request.
    shim = env.shim()
    run = env.start(shim, env.workflow(SUPERVISED))
    question = {"messages": [("user", "Answer the refund question.")]}
    with shim.run(run):
        secure_graph(shim, supervised(shim, env)).invoke(question)
    assert finished(env, run)
    shim.local_checks = local_checks
    with shim.run(run), pytest.raises(AJWTError) as refused:
        secure_graph(shim, supervised(shim, env)).invoke(question)
    assert refused.value.reason == Reason.RUN_FINISHED
    assert "start a new run" in refused.value.description
    assert [call[2] for call in env.api.of(run)] == ["researcher", "writer"]  # no replay
    if not local_checks:  # the IdP refused it, and wrote the refusal to the ledger
        entries = env.admin.ledger(run.run_id)["entries"]
        assert entries[-1]["kind"] == "mint_refused"
        assert entries[-1]["data"]["reason"] == Reason.RUN_FINISHED.value
    # The same app in a new run of its own is served.
    again = env.start(shim, env.workflow(SUPERVISED))
    with shim.run(again):
        secure_graph(shim, supervised(shim, env)).invoke(question)
    assert finished(env, again)
