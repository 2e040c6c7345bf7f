"""Workflow drafts from a crew (``draft_workflow``), the adapter the core's CLI finds, and
a reviewed draft registered and run by the same crew."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from crewai import Crew, Process, Task
from typer.testing import CliRunner

from ajwt_core.adapters import adapter_for, agent_manifests
from ajwt_core.checksum import compute_checksum
from ajwt_core.cli import app
from ajwt_core.shim import Shim
from ajwt_core.workflow import Workflow
from ajwt_crewai import secure_crew
from ajwt_crewai.adapter import CrewAIAdapter
from ajwt_crewai.draft import draft_workflow
from ajwt_demo.agents import reference_manifest
from ajwt_demo.scenarios.crewai import (
    AGENT_IDS,
    INPUTS,
    build_crew,
    reference_agents,
    reference_tools,
    scripted_llm,
)
from ajwt_demo.stack import Stack
from examples.crewai_patcher.patcher import draft_app, draft_crew


def test_a_sequential_crew_whose_supervisor_delegates_drafts_a_chain(stack: Stack) -> None:
    crew, _ = build_crew(None, stack.rs_url, auth=httpx.Auth())
    draft = draft_workflow(crew, workflow_id="patch", agent_ids=AGENT_IDS)
    assert draft["steps"] == {
        "supervisor": {"agent": "supervisor", "tools": ["list_repos"]},
        "planner": {"agent": "planner", "tools": ["read_file"], "after": ["supervisor"]},
        "classifier": {"agent": "classifier", "tools": ["query_advisories"], "after": ["planner"]},
        "patcher": {"agent": "patcher", "tools": ["create_pull_request"], "after": ["classifier"]},
    }
    Workflow.from_mapping(draft)  # a valid workflow


def test_a_hierarchical_crew_drafts_a_routing_step_first(shim: Shim, stack: Stack) -> None:
    llm = scripted_llm({})
    workers = reference_agents(reference_tools(shim, stack.rs_url), llm)
    crew = Crew(
        agents=[workers["planner"], workers["classifier"]],
        tasks=[Task(description="Classify.", expected_output="-")],
        process=Process.hierarchical,
        manager_llm=llm,
    )
    secure_crew(crew, shim, {**AGENT_IDS, "Crew Manager": "manager"})
    # Secured: the ids it was secured with.
    assert draft_workflow(crew, workflow_id="w")["steps"] == {
        "route": {"agent": "manager", "tools": []},
        "planner": {"agent": "planner", "tools": ["read_file"], "after": ["route"]},
        "classifier": {"agent": "classifier", "tools": ["query_advisories"], "after": ["planner"]},
    }


def test_the_core_finds_the_adapter_by_its_entry_point(shim: Shim, stack: Stack) -> None:
    crew, _ = build_crew(shim, stack.rs_url)
    secure_crew(crew, shim, AGENT_IDS)
    assert isinstance(adapter_for(crew), CrewAIAdapter)
    manifests = {m.agent_id: m for m in agent_manifests(crew)}
    assert set(manifests) == {"supervisor", "planner", "classifier", "patcher"}
    for agent_id, manifest in manifests.items():
        assert manifest.checksum() == reference_manifest(agent_id).checksum()


def test_ajwt_workflow_export_writes_the_draft_as_yaml(tmp_path: Path) -> None:
    out = tmp_path / "patch.yaml"
    ref = "examples.crewai_patcher.patcher:draft_crew()"
    result = CliRunner().invoke(
        app, ["workflow", "export", ref, "--id", "patch", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    exported = Workflow.from_yaml(out.read_text())
    drafted = Workflow.from_mapping(draft_workflow(draft_crew(), workflow_id="patch"))
    assert exported.canonical() == drafted.canonical()
    assert exported.steps["patch-author"].after == ["advisory-classifier"]


def test_the_cli_takes_the_role_to_id_mapping_of_secure_crew(tmp_path: Path) -> None:
    # A factory returning (crew, {role: agent id}): the ids secure_crew is given.
    ref = "examples.crewai_patcher.patcher:draft_app()"
    out = tmp_path / "patch.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["workflow", "export", ref, "--id", "patch", "--out", str(out)])
    assert result.exit_code == 0, result.output
    exported = Workflow.from_yaml(out.read_text())
    assert list(exported.steps) == ["supervisor", "planner", "classifier", "patcher"]
    assert exported.steps["patcher"].agent == "patcher"
    manifests = tmp_path / "manifests.json"
    result = runner.invoke(app, ["agents", "manifest", ref, "--out", str(manifests)])
    assert result.exit_code == 0, result.output
    printed = json.loads(manifests.read_text())["manifests"]
    # The checksums CI would pin are the ones the mapped app registers.
    assert {m["agent_id"]: compute_checksum(m) for m in printed} == {
        agent_id: reference_manifest(agent_id).checksum() for agent_id in AGENT_IDS.values()
    }
    # Without the mapping, the default ids: nothing matches the mapped app.
    result = runner.invoke(
        app, ["agents", "manifest", "examples.crewai_patcher.patcher:draft_crew()"]
    )
    assert result.exit_code == 0, result.output
    assert "security-supervisor sha256:" in result.stderr


def test_a_pair_whose_mapping_is_not_role_to_id_is_not_an_app() -> None:
    crew, ids = draft_app()
    assert adapter_for((crew, ids)).name == "crewai"
    for not_an_app in [(crew, {"Security supervisor": 1}), ("crew", ids), (crew, ids, 1)]:
        assert not CrewAIAdapter().recognises(not_an_app)
    result = CliRunner().invoke(app, ["agents", "manifest", "ajwt_core.workflow:Workflow"])
    assert result.exit_code != 0 and "no installed adapter recognises" in result.output


def test_a_reviewed_draft_is_registered_and_run_by_the_same_crew(shim: Shim, stack: Stack) -> None:
    crew, _ = build_crew(shim, stack.rs_url)
    draft = draft_workflow(crew, workflow_id="patch-drafted", agent_ids=AGENT_IDS)
    # The reviewer adds what the structure cannot say: the scopes each step needs.
    scopes = {"supervisor": "repo:read", "planner": "repo:read", "classifier": "advisories:read"}
    for step, scope in {**scopes, "patcher": "repo:write"}.items():
        draft["steps"][step]["scopes"] = [scope]
    stack.admin.register_workflow(draft)
    binding = secure_crew(crew, shim, AGENT_IDS)
    run = shim.start_run(stack.admin.user_token("user:alice"), "patch-drafted", intent="x")
    with shim.run(run):
        crew.kickoff(inputs=INPUTS)
    assert binding.refusals == []
    seen = {
        (c.agent, c.step, tuple(c.chain)) for c in stack.api.state.calls if c.run_id == run.run_id
    }
    assert seen == {
        ("supervisor", "supervisor", ("supervisor",)),
        ("planner", "planner", ("supervisor", "planner")),
        ("classifier", "classifier", ("supervisor", "classifier")),
        ("patcher", "patcher", ("supervisor", "patcher")),
    }


def test_consecutive_async_tasks_are_drafted_side_by_side() -> None:
    # Found by a newcomer: async tasks were drafted as a chain, and a run whose async
    # tasks finished out of order was refused (dependencies_incomplete).
    from crewai import Agent

    from ajwt_crewai.testing import ScriptedLLM

    llm = ScriptedLLM(model="scripted")
    intake, stock, prices, writer = (
        Agent(role=role, goal="-", backstory="", llm=llm)
        for role in ("Intake", "Stock", "Prices", "Writer")
    )
    tasks = [
        Task(description="Read.", expected_output="-", agent=intake),
        Task(description="Stock.", expected_output="-", agent=stock, async_execution=True),
        Task(description="Prices.", expected_output="-", agent=prices, async_execution=True),
        Task(description="Write.", expected_output="-", agent=writer),
    ]
    draft = draft_workflow(
        Crew(agents=[intake, stock, prices, writer], tasks=tasks), workflow_id="w"
    )
    steps = draft["steps"]
    assert steps["stock"]["after"] == ["intake"] and steps["prices"]["after"] == ["intake"]
    assert steps["writer"]["after"] == ["stock", "prices"]
    assert "after" not in steps["intake"]
    Workflow.from_mapping(draft)
