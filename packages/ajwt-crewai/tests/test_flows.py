"""Resume across processes and human pauses (issue 14): a CrewAI Flow carries the run.

Phase 1 runs in one process until a person must approve; the pause outlasts the IdP's
token lifetime; phase 2, in another process with another shim, restores the flow from
its persisted state, resumes the run from the IdP's ledger and goes on: the planner
hands off with no tool call first (a step token, minted again), and every call carries
the right user, agent, step, tool and chain.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_crewai.flows import flow_run, run_record
from ajwt_demo.stack import Stack, start_stack

TOKEN_LIFETIME = 2
APP = Path(__file__).parent / "crewai_flow_app.py"


@pytest.fixture(scope="module")
def short_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("flows") / "idp.db", token_lifetime=TOKEN_LIFETIME
    )
    yield running
    running.close()


def load_app() -> Any:
    spec = importlib.util.spec_from_file_location("crewai_flow_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_phase(phase: str, settings: Path) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - this interpreter and our own script
        [sys.executable, str(APP), phase, str(settings)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_paused_flow_resumes_its_run_in_another_process(
    short_stack: Stack, tmp_path: Path
) -> None:
    client = short_stack.new_client()
    settings = {
        "idp_url": short_stack.idp_url,
        "api_url": short_stack.rs_url,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "user_token": short_stack.admin.user_token("user:alice"),
        "flow_db": str(tmp_path / "flows.db"),
    }
    first = load_app().run_flow("1", settings)
    assert first["refusals"] == []
    time.sleep(TOKEN_LIFETIME + 1)  # the person takes longer than a token lives
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({**settings, "flow_id": first["flow_id"]}))
    second = run_phase("2", path)
    assert second["refusals"] == []
    assert second["run_id"] == first["run_id"]  # the same run, from the flow's state
    calls = [
        (c.agent, c.step, c.tool, tuple(c.chain), c.subject)
        for c in short_stack.api.state.calls
        if c.run_id == first["run_id"]
    ]
    alice = "user:alice"
    assert calls == [
        ("supervisor", "triage", "list_repos", ("supervisor",), alice),
        *[("planner", "plan", "read_file", ("supervisor", "planner"), alice)] * 2,
        *[
            (
                "classifier",
                "classify",
                "query_advisories",
                ("supervisor", "planner", "classifier"),
                alice,
            )
        ]
        * 4,
    ]
    entries = short_stack.admin.ledger(first["run_id"])["entries"]
    done = [e["data"]["step"] for e in entries if e["kind"] == "step_completed"]
    assert done == ["triage", "plan", "classify"]


def test_a_flow_state_without_a_run_needs_a_user_and_a_workflow() -> None:
    from ajwt_core.shim import Shim

    shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    with pytest.raises(InvalidRequest) as refused:
        flow_run(shim, {"id": "flow-1"})
    assert refused.value.reason == Reason.MISSING_PARAMETER
    with pytest.raises(InvalidRequest) as malformed:
        run_record({"ajwt_run": {"run_id": 7}})
    assert malformed.value.reason == Reason.MALFORMED_REQUEST
    shim.close()
