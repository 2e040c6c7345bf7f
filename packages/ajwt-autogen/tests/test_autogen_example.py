"""The example runs offline with one command and does what it prints."""

from __future__ import annotations

import pytest

from ajwt_demo.stack import Stack
from examples.autogen_patcher import main
from examples.autogen_patcher.patcher import run_on


def test_example_runs_the_workflow_with_the_right_identities_on_every_call(stack: Stack) -> None:
    outcome = run_on(stack)
    assert [(c.agent, c.step, c.tool) for c in outcome.calls] == (
        [("supervisor", "triage", "list_repos")]
        + [("planner", "plan", "read_file")] * 2
        + [("classifier", "classify", "query_advisories")] * 4
        + [("patcher", "patch", "create_pull_request")] * 3
    )
    assert outcome.calls[-1].chain == ["supervisor", "planner", "classifier", "patcher"]
    assert outcome.handoffs == [
        "supervisor → planner (plan)",
        "planner → classifier (classify)",
        "classifier → patcher (patch)",
    ]
    assert [p["opened_by"] for p in outcome.pulls] == ["patcher"] * 3
    completed = [e.step for e in outcome.events if e.kind == "step_completed"]
    assert completed == ["triage", "plan", "classify", "patch"]
    assert outcome.ledger_ok


def test_example_main_starts_its_own_stack_and_prints_each_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main() == 0
    out = capsys.readouterr().out
    assert "chain=supervisor → planner → classifier → patcher" in out
    assert out.count("agent=") == 10
    assert "Run ledger verifies: True" in out
