"""``ajwt workflow check | show | schema``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from ajwt_core.cli import app
from ajwt_core.workflow import reference_workflow

NEWS = """\
id: news-desk
version: 1
steps:
  route: {agent: supervisor, one_of: [headlines, prices]}
  headlines: {agent: reporter, tools: [get_news], after: [route]}
  prices: {agent: analyst, tools: [get_prices], after: [route]}
  write:
    agent: writer
    tools: [publish]
    after_any: [headlines, prices]
    max_visits: 2
    consult: {researcher: {tools: [search]}}
  critique: {agent: critic, tools: [review], after: [write], loop_to: [write]}
"""


@pytest.fixture
def news(tmp_path: Path) -> Path:
    path = tmp_path / "news.yaml"
    path.write_text(NEWS)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_prints_the_hash_the_idp_computes(news: Path, tmp_path: Path) -> None:
    code, out, _ = run("workflow", "check", str(news))
    assert code == 0
    assert out.startswith("ok: workflow news-desk v1, 5 steps")
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(reference_workflow().canonical()))
    code, out, _ = run("workflow", "check", "--json", str(reference))
    assert code == 0
    assert json.loads(out)["hash"] == reference_workflow().workflow_hash


def test_check_refuses_with_the_line_and_key(news: Path) -> None:
    news.write_text(NEWS.replace("after: [write], loop_to", "after: [wirte], loop_to"))
    code, out, err = run("workflow", "check", str(news))
    assert code == 1 and out == ""
    assert err.startswith("error: line 13, column ")
    assert "lists 'wirte' in 'after'" in err and "(did you mean 'write'?)" in err
    assert "(invalid_workflow)" in err and "Traceback" not in err


def test_check_refuses_duplicate_keys(news: Path) -> None:
    news.write_text(NEWS + "  route: {agent: mallory}\n")
    code, _, err = run("workflow", "check", str(news))
    assert code == 1 and "repeats the key 'route'" in err


def test_show_draws_every_construct_within_80_columns(news: Path) -> None:
    code, out, _ = run("workflow", "show", str(news))
    assert code == 0
    assert all(len(line) <= 80 for line in out.splitlines())
    for phrase in (
        "routing (no tools)",
        "then one of headlines, prices",
        "after any of",
        "consults researcher",
        "may send back to write",
        "at most 2 visits",
    ):
        assert phrase in " ".join(out.split()), phrase


def test_show_writes_mermaid(news: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "news.mmd"
    code, _, err = run("workflow", "show", "--mermaid", "--out", str(out_file), str(news))
    assert code == 0 and "wrote" in err
    text = out_file.read_text()
    assert text.startswith("flowchart TD")
    assert "-. back, max 2 .->" in text and "-- one of -->" in text


def test_schema_is_json_schema_for_the_documents(news: Path) -> None:
    code, out, _ = run("workflow", "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    import yaml

    jsonschema.validate(yaml.safe_load(NEWS), schema)


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("workflow", "check", str(tmp_path / "missing.yaml"))
    assert code == 1 and err.startswith("error: cannot read workflow") and "(io_error)" in err


class _ToyAdapter:
    """An adapter for a toy 'app': a dict of agent -> tools, in order."""

    name = "toy"

    def recognises(self, app: object) -> bool:
        return isinstance(app, dict) and app.get("kind") == "toy-app"

    def manifests(self, app: object) -> list[object]:
        return []

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, object]:
        assert isinstance(app, dict)
        steps: dict[str, object] = {}
        previous: str | None = None
        for agent, tools in app["agents"]:
            steps[agent] = {"agent": agent, "tools": tools, "after": [previous] if previous else []}
            previous = agent
        return {"id": workflow_id, "version": version, "steps": steps}


TOY_APP = {"kind": "toy-app", "agents": [("router", []), ("worker", ["do_it"])]}


def test_export_drafts_a_workflow_through_the_adapter_that_recognises_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ajwt_core.adapters

    monkeypatch.setattr(ajwt_core.adapters, "installed_adapters", lambda: [_ToyAdapter()])
    out = tmp_path / "draft.yaml"
    code, _, err = run(
        "workflow",
        "export",
        "tests.cli.test_workflow_cli:TOY_APP",
        "--id",
        "toy",
        "--out",
        str(out),
    )
    assert code == 0, err
    text = out.read_text()
    assert text.startswith("# Drafted by `ajwt workflow export`")
    code, stdout, _ = run("workflow", "check", str(out))
    assert code == 0 and stdout.startswith("ok: workflow toy v1, 2 steps")


def test_export_names_the_installed_adapters_when_none_recognises_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ajwt_core.adapters

    monkeypatch.setattr(ajwt_core.adapters, "installed_adapters", lambda: [_ToyAdapter()])
    code, _, err = run("workflow", "export", "ajwt_core.workflow:reference_workflow()")
    assert code == 1
    assert "no installed adapter recognises a ajwt_core.workflow.model.Workflow" in err
    assert "(adapters: toy)" in err
    code, _, err = run("workflow", "export", "no_such_module:app")
    assert code == 1 and "cannot import 'no_such_module'" in err


def test_an_app_module_that_raises_on_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A newcomer's app.py read its user's token at import time (as a script does): the
    # CLI imports it to draft a workflow, and says what failed in one line.
    (tmp_path / "setup_at_import.py").write_text(
        "import os\nTOKEN = os.environ['AJWT_USER_TOKEN_NOT_SET']\n"
        "def team():\n    raise RuntimeError('no IdP here')\n"
    )
    (tmp_path / "lazy_app.py").write_text("def team():\n    raise RuntimeError('no IdP here')\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run("workflow", "export", "setup_at_import:team()")
    assert code == 1 and "Traceback" not in err + out
    assert "importing 'setup_at_import' ran its top-level code, which raised KeyError" in err
    assert "'setup_at_import:factory()'" in err
    code, out, err = run("workflow", "export", "lazy_app:team()")
    assert code == 1 and "Traceback" not in err + out
    assert "'lazy_app:team()' raised RuntimeError: no IdP here" in err
