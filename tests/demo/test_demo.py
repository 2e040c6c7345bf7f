"""``ajwt demo`` in fast mode, as the README's first command runs it: every attack is
blocked by A-JWT, the baseline blocks fewer, no legitimate call is refused, and the
report files are complete."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ajwt_core.cli import app

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("demo") / "report"
    result = CliRunner().invoke(app, ["demo", "--fast", "--plain", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    return result.exit_code, out, report


def test_demo_exits_zero_when_everything_holds(demo_run: tuple[int, Path, dict[str, Any]]) -> None:
    exit_code, _, report = demo_run
    assert report["summary"]["ok"] is True
    assert exit_code == 0


def test_every_attack_is_blocked_by_ajwt_and_fewer_by_the_baseline(
    demo_run: tuple[int, Path, dict[str, Any]],
) -> None:
    _, _, report = demo_run
    attacks = report["attacks"]
    ids = {a["id"] for a in attacks}
    assert {f"T{i}" for i in range(1, 13)} <= ids
    not_blocked = [a["id"] for a in attacks if not a["ajwt"]["blocked"]]
    assert not_blocked == []
    for attack in attacks:
        if attack["id"] != "T12":  # T12 is about what the request reveals, not a refusal
            assert attack["ajwt"]["status"] >= 400, attack
            assert attack["ajwt"]["reason"], attack
    baseline_blocked = sum(a["baseline"]["blocked"] for a in attacks)
    assert baseline_blocked < len(attacks)
    assert report["summary"]["baseline_blocked"] == baseline_blocked


def test_no_legitimate_call_is_refused(demo_run: tuple[int, Path, dict[str, Any]]) -> None:
    _, _, report = demo_run
    summary = report["summary"]
    assert summary["legit_calls"] == summary["legit_accepted"] > 0
    assert summary["baseline_legit_calls"] == summary["baseline_legit_accepted"] > 0
    agents = {call["agent"] for call in report["legitimate"]["ajwt"]}
    assert agents == {"supervisor", "planner", "classifier", "patcher"}
    assert all(call["user"] == "user:alice" for call in report["legitimate"]["ajwt"])
    assert all(call["agent"] is None for call in report["legitimate"]["baseline"])
    assert report["ledger"]["ok"] is True


def test_delegations_form_a_tree_rooted_in_the_user(
    demo_run: tuple[int, Path, dict[str, Any]],
) -> None:
    _, _, report = demo_run
    tree = report["delegation_tree"]
    assert tree["user"] == "user:alice"
    assert tree["delegations"]
    targets = {d["to"] for d in tree["delegations"]}
    assert {"planner", "classifier", "patcher"} <= targets


class _WellFormed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_well_formed_with_tree_and_table(
    demo_run: tuple[int, Path, dict[str, Any]],
) -> None:
    _, out, report = demo_run
    html = (out / "report.html").read_text()
    parser = _WellFormed()
    parser.feed(html)
    assert parser.errors == []
    assert parser.stack == []
    assert "<svg" in html
    assert "<table" in html
    text = " ".join(parser.text)
    assert report["summary"]["line"] in text
    for attack in report["attacks"]:
        assert attack["id"] in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # self-contained
    assert (out / "report.md").read_text().count("|") > 20


def test_the_results_read_at_80_columns(demo_run: tuple[int, Path, dict[str, Any]]) -> None:
    from rich.console import Console

    from ajwt_demo.cli import _print_results

    _, out, report = demo_run
    console = Console(width=80, record=True, color_system=None)
    _print_results(console, report, out)
    text = console.export_text()
    assert [line for line in text.splitlines() if len(line) > 80] == []
    assert "…" not in text
    for attack in report["attacks"]:  # every reason code whole, on one line
        assert f"({attack['ajwt']['reason']})" in text, attack["id"]
    for call in report["legitimate"]["ajwt"]:
        assert call["path"] in text
