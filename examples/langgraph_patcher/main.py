"""Run the LangGraph vulnerability patcher against an embedded IdP and resource server.

``.venv/bin/python -m examples.langgraph_patcher [--async]`` starts the stack on
127.0.0.1, registers the four LangChain agents (their manifests extracted from the
live objects), runs the graph for ``user:alice`` and prints, for every API call the
resource server accepted, the agent, step, tool and delegation chain it verified.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from ajwt_core.shim import Run, Shim
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.langgraph import initial_state
from ajwt_demo.scenarios.langgraph.agents import AgentSpec, patcher_agents, register_agents
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_demo.scenarios.langgraph.graph import Graph, build_graph
from ajwt_demo.scenarios.langgraph.scripted import results
from ajwt_demo.stack import Stack, start_stack


@dataclass
class Patcher:
    """Everything one process needs to run the workflow: shim, API, agents, graph."""

    stack: Stack
    shim: Shim
    api: PatcherApi
    agents: dict[str, AgentSpec]
    graph: Graph

    def start_run(self, user: str = "user:alice") -> Run:
        return self.stack.start_run(self.shim, user)

    def invoke(self, run: Run, org: str = "acme") -> dict[str, Any]:
        with self.shim.run(run):
            result: dict[str, Any] = self.graph.invoke(initial_state(org))
        return result

    async def ainvoke(self, run: Run, org: str = "acme") -> dict[str, Any]:
        with self.shim.run(run):
            result: dict[str, Any] = await self.graph.ainvoke(initial_state(org))
        return result

    def close(self) -> None:
        self.api.close()
        self.shim.close()

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.shim.aclose()


def make_patcher(
    stack: Stack,
    *,
    agents: Callable[[PatcherApi], dict[str, AgentSpec]] = patcher_agents,
    **shim_kw: Any,
) -> Patcher:
    """A fresh client app on ``stack`` with the LangChain agents registered.

    ``agents`` builds the agents from the API client (default: the reference agents;
    tests swap scripts, tools or prompts that way); ``shim_kw`` go to the ``Shim``.
    """
    client = stack.new_client()
    shim = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
        **shim_kw,
    )
    api = PatcherApi(stack.rs_url, shim.auth())
    the_agents = agents(api)
    register_agents(shim, the_agents)
    return Patcher(stack, shim, api, the_agents, build_graph(shim, the_agents))


@dataclass
class PatcherResult:
    """What one run did: the API calls the resource server accepted, and the answer."""

    run_id: str
    user: str
    calls: list[CallRecord]
    pulls: list[dict[str, Any]]
    answer: str
    ledger: dict[str, Any] = field(default_factory=dict)


def result_of(patcher: Patcher, run: Run, final: dict[str, Any]) -> PatcherResult:
    state = patcher.stack.api.state
    messages: Sequence[BaseMessage] = final["messages"]
    return PatcherResult(
        run_id=run.run_id,
        user=run.initiated_by,
        calls=[c for c in state.calls if c.run_id == run.run_id],
        pulls=[answer["pull_request"] for answer in results(messages, "create_pull_request")],
        answer=str(messages[-1].content),
        ledger=patcher.stack.admin.verify_ledger(run.run_id),
    )


def run_patcher(
    stack: Stack, *, use_async: bool = False, user: str = "user:alice"
) -> PatcherResult:
    """One run of the workflow on ``stack``, sync or async."""
    patcher = make_patcher(stack)
    run = patcher.start_run(user)
    if use_async:

        async def main() -> dict[str, Any]:
            try:
                return await patcher.ainvoke(run)
            finally:
                await patcher.aclose()

        final = asyncio.run(main())
    else:
        final = patcher.invoke(run)
    patcher.close()
    return result_of(patcher, run, final)


def report(result: PatcherResult) -> str:
    lines = [f"Run {result.run_id} for {result.user}: every API call and who made it", ""]
    lines.append(f"  {'call':<48} {'agent':<11} {'step':<9} {'tool':<20} chain")
    for call in result.calls:
        request = f"{call.method} {call.path}"
        chain = " → ".join(call.chain)
        lines.append(
            f"  {request:<48} {call.agent or '-':<11} {call.step or '-':<9} "
            f"{call.tool or '-':<20} {chain}"
        )
    lines.append("")
    for pull in result.pulls:
        lines.append(
            f"  pull request #{pull['number']} {pull['repo']}: {pull['title']!r} "
            f"(opened by {pull['opened_by']} for {pull['on_behalf_of']})"
        )
    lines.append(f"  supervisor: {result.answer}")
    verdict = "intact" if result.ledger.get("ok") else f"BROKEN {result.ledger}"
    lines.append(f"  run ledger: hash chain {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> PatcherResult:
    parser = argparse.ArgumentParser(prog="python -m examples.langgraph_patcher")
    parser.add_argument("--async", dest="use_async", action="store_true", help="use ainvoke")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp) / "idp.db")
        try:
            result = run_patcher(stack, use_async=args.use_async)
        finally:
            stack.close()
    print(report(result))
    return result
