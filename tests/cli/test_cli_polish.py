"""The CLI at 80 columns and its usage errors (issue 15): every table reads at 80
columns without cutting a reason code, a hash or a path; option values are checked
before any work; a file that is no ledger is called that; usage errors carry no
protocol reason code."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from ajwt_core.cli import app
from ajwt_core.errors import Reason
from ajwt_core.keys import SigningKeySet
from ajwt_core.ledger import EntryKind, Ledger, export_json
from ajwt_core.tokens import build_act_chain, encode_intent_token
from ajwt_demo.cli import _print_results
from tests.support import AUDIENCE, ClaimsFactory

HASH = re.compile(r"sha256:[0-9a-f]{64}")


def at_80(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def assert_fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, long


def assert_usage_error(result: Result, option: str) -> str:
    """Exit 2, Click's usage error naming the option, no reason code in parentheses."""
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert "Traceback" not in result.output
    assert not any(f"({reason.value})" in result.output for reason in Reason)
    return str(result.output)


# ------------------------------------------------------------------------ 80 columns


def test_inspect_reads_at_80_columns_with_hashes_whole(
    make_claims: ClaimsFactory, tmp_path: Path
) -> None:
    keys = SigningKeySet.generate()
    now = int(time.time())
    claims = make_claims(
        iat=now,
        nbf=now,
        exp=now + 300,
        act=build_act_chain(["supervisor", "classifier", "patcher"]),
        scope="repo:read repo:write advisories:read",
    )
    token = encode_intent_token(claims, keys.active)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(SigningKeySet.generate().jwks()))  # another IdP's keys
    args = ["--jwks", str(jwks), "--issuer", "https://idp.example", "--audience", AUDIENCE]
    result = at_80("inspect", token, *args)
    assert result.exit_code == 1, result.output  # refused: the keys are not its IdP's
    assert_fits(result.stdout)
    # Every hash claim is on one line, whole, so it can be copied.
    assert len(HASH.findall(result.stdout)) == 3
    assert "(unknown_kid)" in result.stdout  # the refusal's reason, not cut


def _broken_ledger(tmp_path: Path) -> Path:
    ledger = Ledger("run-1")
    ledger.append(EntryKind.RUN_STARTED, {"intent_id": "i", "initiated_by": "user:alice"})
    ledger.append(EntryKind.TOKEN_MINTED, {"agent": "planner", "step": "plan"})
    document = json.loads(export_json(ledger.entries))
    document["entries"][1]["data"]["step"] = "patch"
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(document))
    return path


def test_audit_reads_at_80_columns_with_hashes_whole(tmp_path: Path) -> None:
    result = at_80("audit", "verify", str(_broken_ledger(tmp_path)))
    assert result.exit_code == 1
    assert_fits(result.stdout)
    assert HASH.search(result.stdout)
    assert "BROKEN at entry 1" in result.stdout


def test_demo_tables_read_at_80_columns_and_keep_reason_codes_whole() -> None:
    longest = "delegation_not_along_workflow"

    def side(blocked: bool, reason: str | None, status: int) -> dict[str, Any]:
        return {"blocked": blocked, "reason": reason, "status": status}

    report: dict[str, Any] = {
        "attacks": [
            {
                "id": f"T{n}",
                "name": "Workflow-definition tampering through a long attack name",
                "stride": "Elevation of privilege",
                "baseline": side(n % 2 == 0, "invalid_token", 401),
                "ajwt": side(True, reason, 400),
                "check": "a signed delegation assertion along a workflow edge, checked "
                "against the run ledger",
            }
            for n, reason in enumerate([longest, "client_authentication_failed", "bh_mismatch"])
        ],
        "legitimate": {
            "ajwt": [
                {
                    "method": "GET",
                    "path": "/repos/acme/storefront/files/requirements-dev.txt",
                    "agent": "classifier",
                    "step": "classify",
                    "tool": "query_advisories",
                    "chain": ["supervisor", "planner", "classifier", "patcher"],
                }
            ]
        },
        "overhead": {
            "mint_ms_p50": 1,
            "proof_us_p50": 1,
            "verify_us_p50": 1,
            "verify_cached_us_p50": 1,
            "bearer_verify_us_p50": 1,
        },
        "ledger": {"ok": True, "entries": [1]},
        "summary": {"ok": True, "line": "ok"},
    }
    console = Console(width=80, record=True, color_system=None)
    _print_results(console, report, Path("out"))
    text = console.export_text()
    assert_fits(text)
    assert f"({longest})" in text and "(client_authentication_failed)" in text
    assert "/repos/acme/storefront/files/requirements-dev.txt" in text
    assert "…" not in text  # nothing abbreviated away


# -------------------------------------------------------------------- usage errors


def test_framework_lists_its_choices() -> None:
    assert "langgraph|autogen|crewai" in at_80("demo", "--help").output
    output = assert_usage_error(at_80("demo", "--framework", "smolagents"), "--framework")
    assert "'langgraph', 'autogen', 'crewai'" in output


def test_demo_out_is_checked_before_any_work(tmp_path: Path) -> None:
    a_file = tmp_path / "report.txt"
    a_file.write_text("")
    started = time.monotonic()
    output = assert_usage_error(at_80("demo", "--out", str(a_file)), "--out")
    assert "is not a folder" in output
    assert_usage_error(at_80("demo", "--out", str(a_file / "sub")), "--out")
    assert time.monotonic() - started < 5  # no demo ran


def test_workflow_out_is_checked_before_the_app_is_imported(tmp_path: Path) -> None:
    result = at_80(
        "workflow", "export", "no_such_module:app", "--out", str(tmp_path / "none" / "w.yaml")
    )
    assert "does not exist" in assert_usage_error(result, "--out")
    result = at_80("workflow", "export", "no_such_module:app", "--out", str(tmp_path))
    assert "is a directory" in assert_usage_error(result, "--out")  # Click's own check


def test_wrong_option_values_are_usage_errors_without_reason_codes(tmp_path: Path) -> None:
    assert_usage_error(at_80("workflow", "show", "w.yaml", "--format", "toml"), "--format")
    key_file = ["--key-file", str(tmp_path / "k.json")]
    assert_usage_error(at_80("idp", "serve", "--db", "not a url", *key_file), "--db")
    workers = ["idp", "serve", "--workers", "2", *key_file]
    output = assert_usage_error(at_80(*workers), "--workers")
    assert "PostgreSQL" in output
    postgres = ["--db", "postgresql+asyncpg://ajwt@127.0.0.1/x"]
    assert "--redis" in assert_usage_error(at_80(*workers, *postgres), "--workers")


# ------------------------------------------------------------------- not a ledger


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"agent_id": "planner", "tools": []}', "it has no 'run_id' and no 'entries'"),
        ("[1, 2]", "it is not a JSON object"),
        ("agent_id: planner\n", "it is not JSON"),
        ("", "it is empty"),
    ],
)
def test_audit_of_a_file_that_is_no_ledger_says_so(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "file.json"
    path.write_text(content)
    result = at_80("audit", "verify", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""  # no verdict table: there was nothing to verify
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {str(path)!r} is not a ledger export ({why})")
    assert line.endswith("(not_a_ledger)")
    assert "BROKEN" not in result.output


def test_a_ledger_export_with_a_broken_entry_is_still_broken(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"run_id": "run-1", "entries": [42]}))
    result = at_80("audit", "verify", str(path))
    assert result.exit_code == 1
    assert "BROKEN" in result.stdout
    assert result.stderr.rstrip().endswith("(ledger_broken)")
