"""``ajwt demo --framework crewai``: the reference crew as a demo scenario, secured with
A-JWT against the real IdP and resource server, and as the plain-OAuth baseline against
a bearer-token API (client-credentials token, one identity for the whole app)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ajwt_core.errors import Reason
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Run, Shim
from ajwt_crewai import secure_crew
from ajwt_crewai.hooks import hooks_suspended
from ajwt_demo.api import BaselineApi, CallRecord, create_bearer_api
from ajwt_demo.baseline import BaselineAuthServer, ClientCredentialsAuth
from ajwt_demo.scenario import Scenario, load_scenario
from ajwt_demo.scenarios.crewai import AGENT_IDS, INPUTS, CrewAIScenario, build_crew, scenario
from ajwt_demo.stack import Stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:crewai.*")

ANSWER = "Opened pull requests for lodash, requests and pyyaml."
#: (agent, step, tool, delegation chain) of every call, in the order of the workflow:
#: the supervisor delegates each later step to its worker.
EXPECTED = (
    [("supervisor", "triage", "list_repos", ["supervisor"])]
    + [("planner", "plan", "read_file", ["supervisor", "planner"])] * 2
    + [("classifier", "classify", "query_advisories", ["supervisor", "classifier"])] * 4
    + [("patcher", "patch", "create_pull_request", ["supervisor", "patcher"])] * 3
)
REQUESTS = sorted(
    [("GET", "/repos")]
    + [("GET", "/repos/acme/storefront/files/package.json")]
    + [("GET", "/repos/acme/billing/files/requirements.txt")]
    + [("GET", "/advisories")] * 4
    + [("POST", "/repos/acme/storefront/pulls")]
    + [("POST", "/repos/acme/billing/pulls")] * 2
)


@dataclass
class Baseline:
    url: str
    api: BaselineApi
    auth: ClientCredentialsAuth
    client_id: str


@pytest.fixture
def baseline() -> Iterator[Baseline]:
    """A client-credentials token endpoint and the reference API behind bearer tokens."""
    token_server, api_server = BackgroundServer(), BackgroundServer()
    auth_server = BaselineAuthServer(issuer=token_server.url)
    secret = auth_server.register("patcher-app", ["repo:read", "repo:write", "advisories:read"])
    token_server.start(auth_server.app())
    api = create_bearer_api(
        issuer=token_server.url, audience=api_server.url, key=auth_server.key.public_key
    )
    api_server.start(api.asgi)
    auth = ClientCredentialsAuth(
        token_server.url + "/token", "patcher-app", secret, resource=api_server.url
    )
    try:
        yield Baseline(api_server.url, api, auth, "patcher-app")
    finally:
        api_server.close()
        token_server.close()


def seen(calls: list[CallRecord]) -> list[tuple[str | None, str | None, str | None, list[str]]]:
    return [(c.agent, c.step, c.tool, c.chain) for c in calls]


def run_calls(stack: Stack, run: Run) -> list[CallRecord]:
    return [c for c in stack.api.state.calls if c.run_id == run.run_id]


def test_the_demo_loads_this_scenario() -> None:
    loaded = load_scenario("crewai")
    assert loaded is scenario
    assert isinstance(loaded, CrewAIScenario) and isinstance(loaded, Scenario)
    assert loaded.name == "crewai"


def test_secured_run_makes_every_call_as_its_agent_along_the_chain(
    stack: Stack, shim: Shim, run: Run
) -> None:
    answer = scenario.run_secured(shim, run, stack.rs_url)
    calls = run_calls(stack, run)
    assert answer == ANSWER
    assert seen(calls) == EXPECTED
    assert sorted((c.method, c.path) for c in calls) == REQUESTS
    assert {c.subject for c in calls} == {"user:alice"}
    assert stack.admin.verify_ledger(run.run_id)["ok"] is True
    assert shim.completed_steps(run) == {"triage", "plan", "classify", "patch"}


def test_a_delegation_completes_the_delegators_step_in_the_same_request(stack: Stack) -> None:
    # Issue 17: the supervisor's triage is completed by its first delegation, not by a
    # request of its own; the workers' completions of plan and classify ride on the next
    # delegation, patch's is sent when the run's shim.run block ends.
    shim = stack.new_shim(default_audience=stack.rs_url)
    try:
        scenario.run_secured(shim, stack.start_run(shim), stack.rs_url)  # registers
        run = stack.start_run(shim, "user:bob")
        shim.sent.clear()
        assert scenario.run_secured(shim, run, stack.rs_url) == ANSWER
        # One mint (the supervisor's), three delegations; patch's completion.
        assert dict(shim.sent) == {"token": 4, "complete": 1}
        entries = stack.admin.ledger(run.run_id)["entries"]
        completed = [e["data"]["step"] for e in entries if e["kind"] == "step_completed"]
        assert completed == ["triage", "plan", "classify", "patch"]
        assert stack.admin.verify_ledger(run.run_id)["ok"] is True
    finally:
        shim.close()


def test_secured_runs_reuse_the_agents_registered_with_the_shim(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # Another app's crew, with the same roles, secured in the same process: the hooks
    # must keep telling the two shims' crews apart on every run.
    client = stack.new_client()
    other = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
    )
    try:
        other_run = stack.start_run(other, "user:carol")
        assert scenario.run_secured(other, other_run, stack.rs_url) == ANSWER
        assert seen(run_calls(stack, other_run)) == EXPECTED
        scenario.run_secured(shim, run, stack.rs_url)
        registrations = {a: shim.agent(a).registration_id for a in AGENT_IDS.values()}
        second = stack.start_run(shim, "user:bob")
        assert scenario.run_secured(shim, second, stack.rs_url) == ANSWER
    finally:
        other.close()
    calls = run_calls(stack, second)
    assert seen(calls) == EXPECTED
    assert {c.subject for c in calls} == {"user:bob"}
    assert {a: shim.agent(a).registration_id for a in AGENT_IDS.values()} == registrations
    assert stack.admin.verify_ledger(second.run_id)["ok"] is True


def test_baseline_runs_the_same_calls_with_the_apps_identity_only(
    stack: Stack, shim: Shim, run: Run, baseline: Baseline
) -> None:
    # A secured run first, its shim still open: the adapter's hooks (global, and
    # knowing agents by role) must not take the baseline's agents for the secured ones.
    scenario.run_secured(shim, run, stack.rs_url)
    answer = scenario.run_baseline(baseline.url, baseline.auth)
    calls = baseline.api.state.calls
    assert answer == ANSWER
    assert sorted((c.method, c.path) for c in calls) == REQUESTS
    assert {c.subject for c in calls} == {baseline.client_id}
    assert seen(calls) == [(None, None, None, [])] * len(REQUESTS)
    assert [p["opened_by"] for p in baseline.api.state.pulls] == [None] * 3


def test_secured_tools_refuse_while_the_hooks_are_suspended(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # Suspending the hooks names no agent to the secured tools: they fail closed.
    crew, _ = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    with hooks_suspended(), shim.run(run):
        crew.kickoff(inputs=INPUTS)
    assert run_calls(stack, run) == []
    assert binding.refusals
    assert {r.reason for r in binding.refusals} == {Reason.NO_AGENT_CONTEXT}
