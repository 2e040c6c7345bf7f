"""A refund app that pauses for a person, run as its own process (``test_resume``).

``python langgraph_resume_app.py start|resume CONFIG.json``: ``start`` starts a run and
invokes the graph until the person's pause (``interrupt``); ``resume`` is another
process: a new shim picks the run up from the checkpointer thread and the IdP's ledger,
and the graph continues with the person's answer. Each prints a JSON line.

    triage (supervisor: lookup_order) → refund (refunder: issue_refund)
      → confirm (refunder: the person approves; then hands on, no tool called first)
      → close (closer: close_ticket)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.tools import BaseTool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from langgraph_apps import ScriptedModel, api_tool

from ajwt_core.shim import Shim
from ajwt_langchain import ajwt_node, manifest_from_langchain, resume_thread, run_config

WORKFLOW = {
    "triage": {"agent": "supervisor", "tools": ["lookup_order"]},
    "refund": {
        "agent": "refunder",
        "tools": ["issue_refund", "notify_customer"],
        "after": ["triage"],
    },
    "close": {"agent": "closer", "tools": ["close_ticket"], "after": ["refund"]},
}
AGENT_TOOLS = {
    "supervisor": ["lookup_order"],
    "refunder": ["issue_refund", "notify_customer"],
    "closer": ["close_ticket"],
}


class State(TypedDict, total=False):
    approved: str


def build(shim: Shim, api_url: str, saver: SqliteSaver) -> Any:
    tools: dict[str, BaseTool] = {
        name: api_tool(name, shim, api_url) for names in AGENT_TOOLS.values() for name in names
    }
    for agent, names in AGENT_TOOLS.items():
        shim.register(
            lambda agent=agent, names=names: manifest_from_langchain(
                f"You are the {agent}.",
                [tools[n] for n in names],
                ScriptedModel(),
                agent_id=agent,
            )
        )

    def triage(state: State) -> dict[str, Any]:
        tools["lookup_order"].invoke({"item": "order-42"})
        return {}

    def refund(state: State) -> dict[str, Any]:
        tools["issue_refund"].invoke({"item": "order-42"})
        return {}

    def confirm(state: State) -> dict[str, Any]:
        return {"approved": interrupt("Refund issued. Close the ticket?")}

    def close(state: State) -> dict[str, Any]:
        tools["close_ticket"].invoke({"item": state["approved"]})
        return {}

    builder = StateGraph(State)
    builder.add_node("triage", ajwt_node(shim, triage, agent="supervisor"))
    builder.add_node("refund", ajwt_node(shim, refund, agent="refunder", complete_on_exit=False))
    builder.add_node("confirm", ajwt_node(shim, confirm, agent="refunder", complete_on_exit=False))
    builder.add_node("close", ajwt_node(shim, close, agent="closer"))
    builder.add_edge(START, "triage")
    builder.add_edge("triage", "refund")
    builder.add_edge("refund", "confirm")
    builder.add_edge("confirm", "close")
    builder.add_edge("close", END)
    from ajwt_langchain import secure_graph

    return secure_graph(shim, builder.compile(checkpointer=saver), register=False)


def main(phase: str, config_path: str) -> None:
    settings = json.loads(Path(config_path).read_text())
    shim = Shim(
        settings["idp_url"],
        settings["client_id"],
        client_secret=settings["client_secret"],
        default_audience=settings["api_url"],
    )
    thread = {"configurable": {"thread_id": settings["thread_id"]}}
    with SqliteSaver.from_conn_string(settings["checkpoints"]) as saver:
        app = build(shim, settings["api_url"], saver)
        if phase == "start":
            run = shim.start_run(settings["user_token"], settings["workflow_id"], intent="refund")
            with shim.run(run):
                result = app.invoke({}, run_config(run, thread))
            paused = [str(i.value) for i in result.get("__interrupt__", [])]
            print(json.dumps({"run_id": run.run_id, "paused": paused}))
        else:
            run = resume_thread(shim, app, thread)
            with shim.run(run):
                result = app.invoke(Command(resume="approved"), run_config(run, thread))
            print(json.dumps({"run_id": run.run_id, "approved": result.get("approved")}))
    shim.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
