"""Resume and human pauses (issue 14), over HTTP and across processes.

A refund app (``langgraph_resume_app``) runs in one process until a person's pause
(``interrupt``), the A-JWT run recorded in its checkpointer thread (SQLite). The pause
outlasts the IdP's token lifetime; then another process builds a new shim, picks the
run up from the thread and the IdP's ledger (``resume_thread``), and the graph goes on:
the paused agent hands off with no tool call first (a step token, no "say which tool"),
and every call carries the right user, agent, step, tool and chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph_apps import USER, Env, env_fixture

from ajwt_core.errors import AJWTError, Reason
from ajwt_langchain import ajwt_node, resume_thread, run_config

TOKEN_LIFETIME = 2
APP = Path(__file__).parent / "langgraph_resume_app.py"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from env_fixture(tmp_path_factory.mktemp("resume"), token_lifetime=TOKEN_LIFETIME)


def run_app(phase: str, settings: Path) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - this interpreter and our own script
        [sys.executable, str(APP), phase, str(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_paused_run_resumes_in_another_process_after_its_tokens_expired(
    env: Env, tmp_path: Path
) -> None:
    pytest.importorskip("langgraph.checkpoint.sqlite")  # the app's checkpointer
    from langgraph_resume_app import WORKFLOW

    workflow = env.workflow(WORKFLOW, prefix="refund")
    client = env.admin.register_client("refunds", scopes=["tools"])
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "idp_url": env.idp_url,
                "api_url": env.api_url,
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
                "user_token": env.admin.user_token(USER),
                "workflow_id": workflow.id,
                "thread_id": "ticket-42",
                "checkpoints": str(tmp_path / "checkpoints.sqlite"),
            }
        )
    )
    started = run_app("start", settings)
    assert started["paused"] == ["Refund issued. Close the ticket?"]
    run_id = started["run_id"]
    assert [c.call for c in env.api.calls if c.run_id == run_id] == [
        (USER, "supervisor", "triage", "lookup_order", ("supervisor",)),
        (USER, "refunder", "refund", "issue_refund", ("supervisor", "refunder")),
    ]
    time.sleep(TOKEN_LIFETIME + 1)  # the person takes longer than a token lives

    resumed = run_app("resume", settings)
    assert resumed == {"run_id": run_id, "approved": "approved"}
    assert [c.call for c in env.api.calls if c.run_id == run_id][2:] == [
        (USER, "closer", "close", "close_ticket", ("supervisor", "refunder", "closer")),
    ]
    entries = env.admin.ledger(run_id)["entries"]
    handoffs = [e["data"] for e in entries if e["kind"] == "delegation"]
    assert [(h["from"], h["to"], h["to_step"]) for h in handoffs] == [
        ("supervisor", "refunder", "refund"),
        ("refunder", "closer", "close"),
    ]
    # The refunder handed off after the pause with a step token (no tool, aud = IdP).
    minted = [e["data"] for e in entries if e["kind"] == "token_minted"]
    assert any(m.get("agent") == "refunder" and m.get("tool") is None for m in minted[2:])
    assert {e["data"]["step"] for e in entries if e["kind"] == "step_completed"} == {
        "triage",
        "refund",
        "close",
    }
    assert env.admin.verify_ledger(run_id)["ok"]


class State(TypedDict, total=False):
    done: bool


def test_a_thread_without_a_run_says_how_to_record_one(env: Env) -> None:
    shim = env.shim()

    def node(state: State) -> dict[str, Any]:
        return {"done": True}

    builder = StateGraph(State)
    builder.add_node("n", node)
    builder.add_edge(START, "n")
    app = builder.compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t-1"}}
    app.invoke({}, thread)
    with pytest.raises(AJWTError) as info:
        resume_thread(shim, app, thread)
    assert info.value.reason == Reason.MALFORMED_REQUEST
    assert "run_config(run, config)" in info.value.description


def test_run_config_keeps_the_run_in_every_checkpoint_of_the_thread(env: Env) -> None:
    workflow = env.workflow({"only": {"agent": "solo"}})
    shim = env.shim()
    shim.register({"agent_id": "solo", "prompt": {"template": "."}, "tools": [], "config": {}})

    def node(state: State) -> dict[str, Any]:
        return {"done": True}

    builder = StateGraph(State)
    builder.add_node("only", ajwt_node(shim, node, agent="solo"))
    builder.add_edge(START, "only")
    app = builder.compile(checkpointer=InMemorySaver())
    run = env.start(shim, workflow)
    thread = {"configurable": {"thread_id": "t-2"}}
    with shim.run(run):
        app.invoke({}, run_config(run, thread))
    assert resume_thread(shim, app, thread).run_id == run.run_id
    assert shim.completed_steps(run) == {"only"}
