"""HTTP calls made in a node itself, outside any tool (issue 14), and refusals reported
once. A node's own call is not a tool call: it is refused (no token is minted, nothing
is sent) unless the node declares the tool its calls are made for; a declared tool is
checked like any tool call. A callback handler's refusal is raised once, without
LangChain's "Error in ... callback" line before it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, TypedDict

import httpx
import pytest
from langchain_core.tools import StructuredTool
from langgraph.graph import START, StateGraph
from langgraph_apps import USER, Env, env_fixture

from ajwt_core.errors import AgentContextError, AJWTError, Reason
from ajwt_core.shim import Shim
from ajwt_langchain import AJWTCallbackHandler, ajwt_node

STEPS = {"fetch": {"agent": "fetcher", "tools": ["get_report", "get_invoice"]}}


class State(TypedDict, total=False):
    done: bool


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from env_fixture(tmp_path_factory.mktemp("node-calls"))


def fetcher_shim(env: Env, local_checks: bool = True) -> Shim:
    shim = env.shim(local_checks=local_checks)
    shim.register(
        {
            "agent_id": "fetcher",
            "prompt": {"template": "You fetch."},
            "tools": [{"name": "get_report"}, {"name": "get_invoice"}],
            "config": {},
        }
    )
    return shim


def node_app(shim: Shim, env: Env, **declared: Any) -> Any:
    def fetcher(state: State) -> dict[str, Any]:
        with httpx.Client(base_url=env.api_url, auth=shim.auth(), timeout=10) as http:
            http.post("/tools/get_report", json={"item": "q3"}).raise_for_status()
        return {"done": True}

    builder = StateGraph(State)
    builder.add_node("fetch", ajwt_node(shim, fetcher, agent="fetcher", **declared))
    builder.add_edge(START, "fetch")
    return builder.compile()


def test_a_raw_http_call_in_a_node_is_refused(env: Env) -> None:
    workflow = env.workflow(STEPS)
    shim = fetcher_shim(env)
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AgentContextError) as info:
        node_app(shim, env).invoke({})
    assert info.value.reason == Reason.NO_AGENT_CONTEXT
    assert env.api.of(run) == []
    kinds = [e["kind"] for e in env.admin.ledger(run.run_id)["entries"]]
    assert "token_minted" not in kinds  # nothing minted for it


def test_a_node_that_declares_its_tool_calls_as_that_tool(env: Env) -> None:
    workflow = env.workflow(STEPS)
    shim = fetcher_shim(env)
    run = env.start(shim, workflow)
    with shim.run(run):
        node_app(shim, env, tool="get_report").invoke({})
    assert env.api.of(run) == [(USER, "fetcher", "fetch", "get_report", ("fetcher",))]
    assert shim.completed_steps(run) == {"fetch"}


def test_a_node_run_inside_an_acting_block_calls_as_the_node(env: Env) -> None:
    # The graph runs inside another tool call's shim.acting block (an agent run from a
    # tool): the node, entered inside it, is the one acting.
    workflow = env.workflow(STEPS)
    shim = fetcher_shim(env)
    run = env.start(shim, workflow)
    with shim.run(run), shim.acting("fetcher", step="fetch", tool="get_invoice"):
        node_app(shim, env, tool="get_report").invoke({})
    assert env.api.of(run) == [(USER, "fetcher", "fetch", "get_report", ("fetcher",))]


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
def test_a_declared_tool_outside_the_step_is_refused(env: Env, local_checks: bool) -> None:
    workflow = env.workflow(STEPS)
    shim = env.shim(local_checks=local_checks)
    shim.register(
        {
            "agent_id": "fetcher",
            "prompt": {"template": "You fetch."},
            "tools": [{"name": "get_report"}, {"name": "delete_report"}],
            "config": {},
        }
    )
    run = env.start(shim, workflow)
    with shim.run(run), pytest.raises(AJWTError) as info:
        node_app(shim, env, tool="delete_report").invoke({})
    assert info.value.reason == Reason.TOOL_NOT_ALLOWED
    assert env.api.of(run) == []


def test_a_callback_refusal_is_reported_once(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    workflow = env.workflow(STEPS)
    shim = fetcher_shim(env)
    tool = StructuredTool.from_function(
        lambda item="": "nope", name="delete_report", description="Delete a report."
    )
    run = env.start(shim, workflow)
    caplog.set_level(logging.WARNING)
    with shim.run(run), pytest.raises(AJWTError) as info:
        tool.invoke({"item": "q3"}, config={"callbacks": [AJWTCallbackHandler(shim, "fetcher")]})
    assert info.value.reason == Reason.TOOL_NOT_ALLOWED
    assert not [r for r in caplog.records if "callback" in r.getMessage()]
    # Other handlers' errors are still logged by LangChain.
    from langchain_core.callbacks import BaseCallbackHandler

    class Broken(BaseCallbackHandler):
        def on_tool_start(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("broken handler")

    tool.invoke({"item": "q3"}, config={"callbacks": [Broken()]})
    assert [r for r in caplog.records if "Error in Broken.on_tool_start" in r.getMessage()]
