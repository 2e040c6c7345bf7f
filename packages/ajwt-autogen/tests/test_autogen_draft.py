"""A workflow drafted from the app (issue 14): from a ``Swarm``'s hand-offs, a
``GraphFlow``'s graph, a round robin's order; through the core's adapter entry point and
``ajwt workflow export``; and a drafted workflow, reviewed (scopes added), registered and
run by the same team over HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import HandoffMessage
from autogen_agentchat.teams import (
    DiGraphBuilder,
    GraphFlow,
    RoundRobinGroupChat,
    SelectorGroupChat,
    Swarm,
)
from autogen_agentchat.tools import AgentTool
from autogen_core.tools import FunctionTool
from typer.testing import CliRunner

from ajwt_autogen import AutoGenAdapter, binding_of, draft_workflow, team_manifests
from ajwt_core.adapters import adapter_for, agent_manifests
from ajwt_core.adapters import draft_workflow as core_draft
from ajwt_core.cli import app
from ajwt_core.workflow import Workflow
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient
from examples.autogen_support.app import Services, build_team, draft_team
from examples.autogen_support.desk import new_desk


def agent(name: str, tools: Sequence[str] = (), handoffs: Sequence[str] = ()) -> AssistantAgent:
    async def run(query: str) -> str:
        return query

    return AssistantAgent(
        name,
        ScriptedChatCompletionClient([]),
        tools=[FunctionTool(run, description=f"The {t} tool.", name=t) for t in tools] or None,
        handoffs=list(handoffs) or None,
    )


def test_an_agent_run_by_an_agent_tool_is_drafted_as_consulted_in_its_callers_step() -> None:
    # It was left out: the draft, registered, refused the researcher's every call.
    researcher = agent("researcher", tools=["lookup_order"])
    concierge = AssistantAgent(
        "concierge", ScriptedChatCompletionClient([]), tools=[AgentTool(researcher)]
    )
    draft = draft_workflow(concierge, workflow_id="ask")
    assert draft["steps"] == {
        "concierge": {
            "agent": "concierge",
            "tools": ["researcher"],
            "consult": {"researcher": {"tools": ["lookup_order"]}},
        }
    }
    Workflow.from_mapping(draft)  # valid as drafted


def test_a_swarm_is_drafted_from_its_hand_offs() -> None:
    draft = draft_workflow(draft_team(), workflow_id="support")
    assert draft == {
        "id": "support",
        "version": 1,
        "steps": {
            "triage": {"agent": "triage", "tools": []},
            "billing": {
                "agent": "billing",
                "tools": ["get_invoice", "issue_refund"],
                "after": ["triage"],
            },
            "closer": {"agent": "closer", "tools": ["close_ticket"], "after": ["billing"]},
        },
    }
    Workflow.from_mapping(draft)


def test_a_supervisor_swarm_gets_returns_not_loops() -> None:
    team = Swarm(
        [
            agent("supervisor", ["list_repos"], ["planner", "patcher"]),
            agent("planner", ["read_file"], ["supervisor", "patcher"]),
            agent("patcher", ["open_pr"], ["supervisor"]),
        ]
    )
    steps = Workflow.from_mapping(draft_workflow(team, workflow_id="hub")).steps
    assert steps["planner"].after == ["supervisor"]
    assert steps["patcher"].after_any == ["supervisor", "planner"]
    assert not any(step.loop_to for step in steps.values())


def test_a_graph_flow_is_drafted_from_its_graph() -> None:
    writer, checker, editor, legal, publisher = (
        agent("writer", ["save_draft"]),
        agent("checker", ["check_facts"]),
        agent("editor", ["edit"]),
        agent("legal", ["review_terms"]),
        agent("publisher", ["publish"]),
    )
    builder = DiGraphBuilder()
    for node in (writer, checker, editor, legal, publisher):
        builder.add_node(node)
    builder.add_edge(writer, checker).add_edge(writer, editor)  # fan-out
    builder.add_edge(checker, writer, condition="REVISE")  # loop back
    builder.add_edge(checker, legal, condition="LEGAL")
    builder.add_edge(editor, publisher).add_edge(legal, publisher)  # join (all)
    builder.set_entry_point(writer)
    team = GraphFlow([writer, checker, editor, legal, publisher], graph=builder.build())
    steps = Workflow.from_mapping(draft_workflow(team, workflow_id="news")).steps
    assert steps["checker"].after == ["writer"] and steps["editor"].after == ["writer"]
    assert steps["checker"].loop_to == ["writer"] and steps["writer"].max_visits == 3
    assert sorted(steps["publisher"].after) == ["editor", "legal"]
    assert steps["writer"].tools == ["save_draft"]


def graph_of(edges: Sequence[tuple[str, str, dict[str, str]]]) -> GraphFlow:
    members = {n: agent(n) for n in "abcd"}
    builder = DiGraphBuilder()
    for member in members.values():
        builder.add_node(member)
    for source, target, options in edges:
        builder.add_edge(members[source], members[target], **options)  # type: ignore[arg-type]
    return GraphFlow(list(members.values()), graph=builder.build())


def test_conditional_branches_become_a_choice_when_the_draft_stays_valid() -> None:
    branch = [("a", "b", {"condition": "B"}), ("a", "c", {"condition": "C"})]
    joined_any = graph_of([*branch, *[(x, "d", {"activation_condition": "any"}) for x in "bc"]])
    steps = Workflow.from_mapping(draft_workflow(joined_any, workflow_id="x")).steps
    assert steps["a"].one_of == ["b", "c"] and steps["d"].after_any == ["b", "c"]
    # A join waiting for both branches cannot follow a choice: no choice is drafted.
    joined_all = graph_of([*branch, ("b", "d", {}), ("c", "d", {})])
    steps = Workflow.from_mapping(draft_workflow(joined_all, workflow_id="x")).steps
    assert steps["a"].one_of == [] and steps["d"].after == ["b", "c"]


def test_round_robin_and_selector_teams_are_drafted_in_participant_order() -> None:
    for kind in (RoundRobinGroupChat, SelectorGroupChat):
        members = [agent("writer", ["save_draft"]), agent("reviewer", ["publish"])]
        extra = (
            {"model_client": ScriptedChatCompletionClient([])} if kind is SelectorGroupChat else {}
        )
        draft = draft_workflow(kind(members, **extra), workflow_id="docs")  # type: ignore[arg-type]
        assert draft["steps"]["reviewer"]["after"] == ["writer"]


def test_the_core_finds_the_adapter_by_its_entry_point(services: Services) -> None:
    desk = new_desk(services)
    assert isinstance(adapter_for(desk.team.swarm), AutoGenAdapter)
    manifests = agent_manifests(desk.team.swarm)
    assert [m.agent_id for m in manifests] == ["triage", "billing", "closer"]
    for manifest in manifests:
        binding = binding_of(desk.team.agents[manifest.agent_id])
        assert binding is not None and manifest.checksum() == binding.checksum
    assert core_draft(desk.team.swarm, workflow_id="support").steps["closer"].after == ["billing"]
    assert team_manifests(desk.team.swarm) == manifests


def test_ajwt_workflow_export_writes_the_draft_as_yaml(tmp_path: Path) -> None:
    out = tmp_path / "support.yaml"
    result = CliRunner().invoke(
        app,
        [
            "workflow",
            "export",
            "examples.autogen_support.app:draft_team()",
            "--id",
            "support",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert text.startswith("# Drafted by `ajwt workflow export`")
    exported = Workflow.from_yaml(text)
    assert (
        exported.canonical()
        == Workflow.from_mapping(draft_workflow(draft_team(), workflow_id="support")).canonical()
    )


def test_the_ajwt_command_imports_the_app_from_the_current_directory() -> None:
    # As the docs show it: the console script, run where the app's package lives.
    ajwt = Path(sys.executable).with_name("ajwt")
    app_ref = "examples.autogen_support.app:draft_team()"
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(ajwt), "workflow", "export", app_ref, "--id", "support"],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert Workflow.from_yaml(done.stdout).steps["closer"].after == ["billing"]


async def test_a_reviewed_draft_is_registered_and_run_by_the_same_team(services: Services) -> None:
    draft = draft_workflow(draft_team(), workflow_id="support-drafted")
    # The reviewer adds what the structure cannot say: the scopes each step needs.
    draft["steps"]["billing"]["scopes"] = ["billing:read", "billing:write"]
    draft["steps"]["closer"]["scopes"] = ["tickets:write"]
    services.admin.register_workflow(draft)
    shim = services.new_shim()
    team = build_team(shim, services.api_url)
    run = await shim.astart_run(services.admin.user_token("carol"), "support-drafted")
    with shim.run(run):
        await team.swarm.run(task="Refund INV-42.")
        await team.swarm.run(task=HandoffMessage(source="user", target="billing", content="yes"))
    await team.aclose()
    assert [(c.agent, c.step, c.tool, c.chain) for c in services.calls_of(run.run_id)] == [
        ("billing", "billing", "get_invoice", ["triage", "billing"]),
        ("billing", "billing", "issue_refund", ["triage", "billing"]),
        ("closer", "closer", "close_ticket", ["triage", "billing", "closer"]),
    ]


def test_what_is_not_an_autogen_app_is_refused() -> None:
    with pytest.raises(TypeError, match="AutoGen team or AssistantAgent"):
        draft_workflow("not a team", workflow_id="x")  # type: ignore[arg-type]
    assert not AutoGenAdapter().recognises(object())
