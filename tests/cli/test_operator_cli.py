"""The operator commands against a running IdP (a development IdP in this process):
``ajwt client``, ``workflow register|list|show --idp``, ``agents``, ``user token``,
``runs``; every one with ``--json``, the admin token from ``AJWT_ADMIN_TOKEN`` or a file,
and each failure one line (never a traceback, never the token)."""

from __future__ import annotations

import io
import json
import logging
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from ajwt_core.cli import app
from ajwt_core.errors import AJWTError, Reason
from ajwt_core.idp.dev import DevIdP, start_dev_idp
from ajwt_core.shim import Shim
from ajwt_demo.agents import reference_manifest

WORKFLOW_YAML = """\
id: triage
version: 1
steps:
  plan: {agent: planner, tools: [read_file], scopes: [repo:read]}
"""


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevIdP]:
    with start_dev_idp(tmp_path_factory.mktemp("dev"), scopes=["repo:read"]) as running:
        yield running


def ajwt(idp: DevIdP, *args: str, token: str | None = "env") -> Result:
    env = {"AJWT_IDP_URL": idp.url, "AJWT_ADMIN_TOKEN_FILE": ""}
    env["AJWT_ADMIN_TOKEN"] = idp.environ()["AJWT_ADMIN_TOKEN"] if token == "env" else ""
    return CliRunner().invoke(app, list(args), env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_client_create_list_show_revoke(idp: DevIdP, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    created = as_json(
        ajwt(
            idp, "client", "create", "ops-app", "--scope", "repo:read", "--agent-policy",
            "approval", "--env-file", str(env_file), "--json",
        )
    )  # fmt: skip
    assert created["client_id"] == "ops-app" and created["agent_policy"] == "approval"
    assert "client_secret" not in created  # written to the file instead
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = dict(
        line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
    )
    assert lines["AJWT_IDP_URL"] == idp.url and lines["AJWT_CLIENT_ID"] == "ops-app"
    shim = Shim.from_env(lines)  # the file is what Shim.from_env reads
    assert shim.client_id == "ops-app"

    listed = as_json(ajwt(idp, "client", "list", "--json"))
    assert "ops-app" in [c["client_id"] for c in listed["items"]]
    human = ajwt(idp, "client", "list")
    assert human.exit_code == 0 and "ops-app" in human.stdout and "approval" in human.stdout
    assert as_json(ajwt(idp, "client", "show", "ops-app", "--json"))["scopes"] == ["repo:read"]
    assert as_json(ajwt(idp, "client", "set-policy", "ops-app", "pinned", "--json")) == {
        "client_id": "ops-app",
        "agent_policy": "pinned",
    }
    assert as_json(ajwt(idp, "client", "revoke", "ops-app", "--json"))["revoked"] is True
    assert as_json(ajwt(idp, "client", "show", "ops-app", "--json"))["revoked_at"] is not None


def test_client_create_registers_a_resource_server_that_may_introspect(idp: DevIdP) -> None:
    created = as_json(
        ajwt(idp, "client", "create", "orders-api", "--resource", "http://127.0.0.1:8001",
             "--resource", "http://127.0.0.1:8002", "--json")
    )  # fmt: skip
    shown = as_json(ajwt(idp, "client", "show", "orders-api", "--json"))
    assert shown["resources"] == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    # It authenticates at the introspection endpoint (RFC 7662) like any client.
    answer = httpx.post(
        idp.url + "/introspect",
        data={"token": "not-a-token"},
        auth=("orders-api", created["client_secret"]),
    )
    assert (answer.status_code, answer.json()) == (200, {"active": False})


def test_client_list_pages_with_a_cursor(idp: DevIdP) -> None:
    for name in ("page-a", "page-b", "page-c"):
        assert ajwt(idp, "client", "create", name, "--json").exit_code == 0
    seen: list[str] = []
    after: list[str] = []
    while True:
        page = as_json(ajwt(idp, "client", "list", "--limit", "2", *after, "--json"))
        assert len(page["items"]) <= 2
        seen += [c["client_id"] for c in page["items"]]
        if not page["next"]:
            break
        after = ["--after", page["next"]]
    assert seen == sorted(seen) and {"page-a", "page-b", "page-c"} <= set(seen)
    assert len(seen) == len(set(seen))
    bad = ajwt(idp, "client", "list", "--after", "bm90LWEtY3Vyc29y")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("error: 'after' is not a cursor from this IdP")


def test_workflow_register_list_show(idp: DevIdP, tmp_path: Path) -> None:
    document = tmp_path / "triage.yaml"
    document.write_text(WORKFLOW_YAML)
    registered = as_json(ajwt(idp, "workflow", "register", str(document), "--json"))
    assert (registered["workflow_id"], registered["version"]) == ("triage", 1)
    listed = as_json(ajwt(idp, "workflow", "list", "--id", "triage", "--json"))
    assert [(w["workflow_id"], w["version"], w["hash"]) for w in listed["items"]] == [
        ("triage", 1, registered["hash"])
    ]
    drawn = ajwt(idp, "workflow", "show", "--idp", idp.url, "triage:1")
    assert drawn.exit_code == 0 and "planner" in drawn.stdout and "read_file" in drawn.stdout
    latest = ajwt(idp, "workflow", "show", "--idp", idp.url, "--mermaid", "triage")
    assert latest.stdout.startswith("flowchart TD")
    # Another document under the same version is refused, naming the fix.
    document.write_text(WORKFLOW_YAML.replace("repo:read]", "repo:read, repo:write]"))
    refused = ajwt(idp, "workflow", "register", str(document))
    assert refused.exit_code == 1 and "register a new version" in refused.stderr
    missing = ajwt(idp, "workflow", "show", "--idp", idp.url, "nope")
    assert missing.exit_code == 1 and "(not_found)" in missing.stderr


def test_agents_manifest_register_list_approve_revoke(
    idp: DevIdP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ajwt_core.adapters

    monkeypatch.setattr(ajwt_core.adapters, "installed_adapters", lambda: [_ToyAdapter()])
    assert ajwt(idp, "client", "create", "ci-app", "--agent-policy", "pinned").exit_code == 0
    manifests = tmp_path / "agents.json"
    made = ajwt(
        idp, "agents", "manifest", "tests.cli.test_operator_cli:TOY_APP", "--out", str(manifests)
    )
    assert made.exit_code == 0, made.output
    planner = reference_manifest("planner")
    assert f"planner {planner.checksum()}" in made.stderr
    assert json.loads(manifests.read_text())["manifests"][0]["agent_id"] == "planner"

    pinned = as_json(ajwt(idp, "agents", "register", "ci-app", str(manifests), "--json"))
    assert [(a["agent_id"], a["version"], a["status"]) for a in pinned["items"]] == [
        ("planner", 1, "allowed")
    ]
    listed = as_json(ajwt(idp, "agents", "list", "ci-app", "--json"))
    assert [(a["version"], a["checksum"]) for a in listed["items"]] == [(1, planner.checksum())]
    human = ajwt(idp, "agents", "list", "ci-app")
    from_env = CliRunner().invoke(
        app,
        ["agents", "list", "--json"],
        env={"AJWT_IDP_URL": idp.url, "AJWT_CLIENT_ID": "ci-app"}
        | {"AJWT_ADMIN_TOKEN": idp.environ()["AJWT_ADMIN_TOKEN"], "AJWT_ADMIN_TOKEN_FILE": ""},
    )
    assert as_json(from_env) == listed  # the client from AJWT_CLIENT_ID, as . .ajwt-dev/env sets
    assert "planner" in human.stdout and planner.checksum() in human.stdout

    revoked = as_json(
        ajwt(idp, "agents", "revoke", "ci-app", "planner", planner.checksum(), "--json")
    )
    assert revoked["status"] == "revoked"
    approved = ajwt(idp, "agents", "approve", "ci-app", "planner", planner.checksum())
    assert approved.exit_code == 0 and "allowed" in approved.stdout
    unknown = ajwt(idp, "agents", "approve", "ci-app", "planner", "sha256:" + "0" * 64)
    assert unknown.exit_code == 1 and "(not_found)" in unknown.stderr
    nothing = ajwt(idp, "agents", "register", "ci-app")
    assert nothing.exit_code == 1 and "(missing_parameter)" in nothing.stderr


def test_user_token_and_runs(idp: DevIdP) -> None:
    token = ajwt(idp, "user", "token", "user:carol")
    assert token.exit_code == 0 and token.stdout.count(".") == 2  # just the JWS
    shim = idp.shim()
    shim.register(reference_manifest("planner"))
    idp.admin.register_workflow(
        {
            "id": "runs-wf",
            "version": 1,
            "steps": {"p": {"agent": "planner", "tools": ["read_file"]}},
        }
    )
    run = shim.start_run(token.stdout.strip(), "runs-wf", intent="look around")
    page = as_json(ajwt(idp, "runs", "list", "--client", idp.client_id, "--json"))
    assert page["items"][0]["run_id"] == run.run_id  # newest first
    assert page["items"][0]["subject"] == "user:carol"
    shown = as_json(ajwt(idp, "runs", "show", run.run_id, "--json"))
    assert (shown["state"], shown["due_steps"], shown["ledger_length"]) == ("open", ["p"], 1)
    text = ajwt(idp, "runs", "show", run.run_id).stdout
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(shown["created_at"]))
    assert "created_at" in text and created in text  # a time, not an epoch number
    assert str(shown["created_at"]) not in text
    assert as_json(ajwt(idp, "runs", "revoke", run.run_id, "--json"))["revoked"] is True
    assert as_json(ajwt(idp, "runs", "show", run.run_id, "--json"))["state"] == "revoked"
    open_runs = as_json(ajwt(idp, "runs", "list", "--state", "open", "--json"))
    assert run.run_id not in [r["run_id"] for r in open_runs["items"]]
    missing = ajwt(idp, "runs", "show", "run-nope")
    assert missing.exit_code == 1 and "(run_not_found)" in missing.stderr


def test_runs_ledger_and_approve(idp: DevIdP) -> None:
    shim = idp.shim()
    shim.register(reference_manifest("planner"))
    idp.admin.register_workflow(
        {
            "id": "approved-wf",
            "version": 1,
            "steps": {"p": {"agent": "planner", "tools": ["read_file"], "approval": True}},
        }
    )
    run = shim.start_run(idp.admin.user_token("user:dan"), "approved-wf", intent="read")
    # Before the approval: the planner gets no token for its step.
    context = shim.context("planner", tool="read_file", run=run)
    with pytest.raises(AJWTError) as refused:
        shim.token(context, "https://files.example")
    assert refused.value.reason == Reason.APPROVAL_REQUIRED
    approved = ajwt(idp, "runs", "approve", run.run_id, "p", "--by", "ops:erin")
    assert approved.exit_code == 0, approved.stderr
    assert f"run {run.run_id}: step p approved" in approved.stdout
    shim.token(context, "https://files.example")  # now it may
    shown = ajwt(idp, "runs", "ledger", run.run_id)
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "(UTC)", "ENTRY", "AGENT", "STEP", "TOOL", "DETAIL"]
    kinds = [line.split()[3] for line in lines[1:-1]]
    assert kinds[0] == "run_started" and "step_approved" in kinds and "token_minted" in kinds
    assert "approved_by=ops:erin" in shown.stdout
    assert lines[-1] == f"chain verified: {len(kinds)} entries"
    exported = as_json(ajwt(idp, "runs", "ledger", run.run_id, "--json"))
    assert exported["verified"]["ok"] is True
    assert [e["kind"] for e in exported["entries"]] == kinds
    # An unknown step or run is a typed refusal in one line, not a traceback.
    unknown = ajwt(idp, "runs", "approve", run.run_id, "nope", "--by", "ops:erin")
    assert unknown.exit_code == 1 and unknown.stderr.count("\n") == 1, unknown.stderr
    missing = ajwt(idp, "runs", "ledger", "run-nope")
    assert missing.exit_code == 1 and "(run_not_found)" in missing.stderr


def test_admin_token_from_a_file_and_refusals_are_one_line(idp: DevIdP, tmp_path: Path) -> None:
    token_file = idp.secret_file("admin-token")
    result = CliRunner().invoke(
        app,
        ["client", "list", "--json", "--admin-token-file", str(token_file), "--idp", idp.url],
        env={"AJWT_ADMIN_TOKEN": "", "AJWT_ADMIN_TOKEN_FILE": ""},
    )
    assert result.exit_code == 0, result.output
    none = ajwt(idp, "client", "list", token="")
    assert none.exit_code == 1
    assert "AJWT_ADMIN_TOKEN or --admin-token-file" in none.stderr
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("w" * 43)
    wrong = ajwt(idp, "client", "list", "--admin-token-file", str(wrong_file), token="")
    assert wrong.exit_code == 1
    assert wrong.stderr.strip().endswith("(client_authentication_failed)")
    assert "w" * 43 not in wrong.output
    down = CliRunner().invoke(
        app,
        ["runs", "list", "--idp", "http://127.0.0.1:9"],
        env={"AJWT_ADMIN_TOKEN": "t" * 43},
    )
    assert down.exit_code == 1 and "cannot reach the IdP" in down.stderr
    assert "Traceback" not in down.output


def test_dev_prints_the_variables_and_writes_private_files(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW_YAML)
    state = tmp_path / "state"
    audit = logging.getLogger("ajwt_core.idp.audit")
    handlers = list(audit.handlers)
    result = CliRunner().invoke(
        app,
        ["dev", "--dir", str(state), "--port", "0", "--workflow", str(workflow), "--once"],
    )
    assert result.exit_code == 0, result.output
    # Its audit lines went to the command's standard error, which CliRunner has closed:
    # the handler is gone with it (else later lines hit a closed file: "Logging error").
    assert audit.handlers == handlers
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines()
    )
    assert set(exported) == {
        "AJWT_IDP_URL",
        "AJWT_CLIENT_ID",
        "AJWT_CLIENT_SECRET_FILE",
        "AJWT_ADMIN_TOKEN_FILE",
        "AJWT_USER_TOKEN_FILE",
    }
    for name in ("client-secret", "admin-token", "user-token", "env"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    secret = (state / "client-secret").read_text().strip()
    assert secret not in result.output  # the secrets are in files, never printed
    assert "triage v1" in result.stderr and "repo:read" in result.stderr
    assert (state / "env").read_text() == result.stdout


def test_dev_prints_a_line_per_refusal_with_its_reason(idp: DevIdP) -> None:
    from ajwt_core.cli.dev import _print_audit_lines
    from ajwt_core.errors import AJWTError

    audit = logging.getLogger("ajwt_core.idp.audit")
    level = audit.level
    printed = io.StringIO()
    handler, shim = _print_audit_lines(printed), idp.shim()
    try:
        with pytest.raises(AJWTError) as refused:
            shim.start_run(idp.user_token(), "no-such-workflow")
        deadline = time.monotonic() + 5  # the IdP logs once its answer is sent
        while "refused" not in printed.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        shim.close()
        audit.removeHandler(handler)
        audit.setLevel(level)
    line = printed.getvalue().strip().splitlines()[-1]
    assert f"ajwt start_run refused: reason={refused.value.reason.value}" in line, line
    assert idp.user_token() not in line


class _ToyAdapter:
    name = "toy"

    def recognises(self, app: object) -> bool:
        return isinstance(app, dict) and app.get("kind") == "toy-app"

    def manifests(self, app: object) -> list[object]:
        return [reference_manifest("planner")]

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, Any]:
        return {"id": workflow_id, "version": version, "steps": {}}


TOY_APP = {"kind": "toy-app"}


def test_idp_serve_dev_runs_the_development_idp(monkeypatch: pytest.MonkeyPatch) -> None:
    import ajwt_core.cli.dev

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ajwt_core.cli.dev, "dev", lambda **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["idp", "serve", "--dev", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert calls == [{"host": "127.0.0.1", "port": 8123}]
