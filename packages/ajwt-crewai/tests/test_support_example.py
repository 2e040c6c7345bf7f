"""``examples.crewai_support``: a Flow, a hierarchical crew from ``manager_llm``, a
consultation, a human pause, and its workflow drafted by the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ajwt_core.cli import app
from ajwt_core.workflow import Workflow
from examples.crewai_support.app import main


def test_the_support_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main() == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("user=")] == [
        "user=alice agent=billing step=route tool=get_invoice chain=manager > billing",
        "user=alice agent=billing step=refund tool=get_invoice chain=manager > billing",
        "user=alice agent=billing step=refund tool=issue_refund chain=manager > billing",
        "user=alice agent=closer step=close tool=close_ticket chain=manager > closer",
    ]


def test_its_workflow_and_manifests_come_from_the_crew() -> None:
    ref = "examples.crewai_support.app:draft_crew()"
    drafted = CliRunner().invoke(app, ["workflow", "export", ref, "--id", "support"])
    assert drafted.exit_code == 0, drafted.output
    steps = Workflow.from_yaml(drafted.stdout).steps
    assert steps["route"].is_routing and steps["ticket-closer"].after == ["billing-agent"]
    manifests = CliRunner().invoke(app, ["agents", "manifest", ref])
    assert manifests.exit_code == 0, manifests.output
    assert "crew-manager" in manifests.stdout and "get_invoice" in manifests.stdout


def test_with_its_mapping_the_cli_uses_the_apps_agent_ids() -> None:
    ref = "examples.crewai_support.app:draft_app()"
    drafted = CliRunner().invoke(app, ["workflow", "export", ref, "--id", "support"])
    assert drafted.exit_code == 0, drafted.output
    steps = Workflow.from_yaml(drafted.stdout).steps
    assert [(name, step.agent) for name, step in steps.items()] == [
        ("route", "manager"),
        ("billing", "billing"),
        ("closer", "closer"),
    ]
    manifests = CliRunner().invoke(app, ["agents", "manifest", ref])
    assert manifests.exit_code == 0, manifests.output
    assert {line.split()[0] for line in manifests.stderr.splitlines()} == {
        "manager",
        "billing",
        "closer",
    }
