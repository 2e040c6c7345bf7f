"""``ajwt demo --framework autogen``: the reference swarm as a demo scenario, secured with
A-JWT against the real IdP and resource server, and as the plain-OAuth baseline against
a bearer-token API (client-credentials token, one identity for the whole app)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_demo.api import BaselineApi, CallRecord, create_bearer_api
from ajwt_demo.baseline import BaselineAuthServer, ClientCredentialsAuth
from ajwt_demo.scenario import Scenario, load_scenario
from ajwt_demo.scenarios.autogen import AutoGenScenario, scenario
from ajwt_demo.stack import Stack

ANSWER = "Opened 3 pull requests for lodash, requests and pyyaml."
CHAIN = ["supervisor", "planner", "classifier", "patcher"]
#: (agent, step, tool, delegation chain) of every call, in the order of the workflow.
EXPECTED = (
    [("supervisor", "triage", "list_repos", CHAIN[:1])]
    + [("planner", "plan", "read_file", CHAIN[:2])] * 2
    + [("classifier", "classify", "query_advisories", CHAIN[:3])] * 4
    + [("patcher", "patch", "create_pull_request", CHAIN)] * 3
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


@pytest.fixture
def app_shim(stack: Stack) -> Iterator[Shim]:
    """A shim for a fresh client app, used synchronously (as the demo does)."""
    client = stack.new_client()
    shim = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
    )
    yield shim
    shim.close()


def seen(calls: list[CallRecord]) -> list[tuple[str | None, str | None, str | None, list[str]]]:
    return [(c.agent, c.step, c.tool, c.chain) for c in calls]


def test_the_demo_loads_this_scenario() -> None:
    loaded = load_scenario("autogen")
    assert loaded is scenario
    assert isinstance(loaded, AutoGenScenario) and isinstance(loaded, Scenario)
    assert loaded.name == "autogen"


def test_secured_run_makes_every_call_as_its_agent_along_the_chain(
    stack: Stack, app_shim: Shim
) -> None:
    run = stack.start_run(app_shim)
    answer = scenario.run_secured(app_shim, run, stack.rs_url)
    calls = [c for c in stack.api.state.calls if c.run_id == run.run_id]
    assert answer == ANSWER
    assert seen(calls) == EXPECTED
    assert sorted((c.method, c.path) for c in calls) == REQUESTS
    assert {c.subject for c in calls} == {"user:alice"}
    assert stack.admin.verify_ledger(run.run_id)["ok"] is True
    assert app_shim.completed_steps(run) >= {"triage", "plan", "classify", "patch"}


def test_secured_runs_reuse_the_agents_registered_with_the_shim(
    stack: Stack, app_shim: Shim
) -> None:
    first = stack.start_run(app_shim)
    scenario.run_secured(app_shim, first, stack.rs_url)
    registrations = {a: app_shim.agent(a).registration_id for a in CHAIN}
    second = stack.start_run(app_shim, "user:bob")
    assert scenario.run_secured(app_shim, second, stack.rs_url) == ANSWER
    calls = [c for c in stack.api.state.calls if c.run_id == second.run_id]
    assert seen(calls) == EXPECTED
    assert {c.subject for c in calls} == {"user:bob"}
    assert {a: app_shim.agent(a).registration_id for a in CHAIN} == registrations
    assert stack.admin.verify_ledger(second.run_id)["ok"] is True


def test_baseline_runs_the_same_calls_with_the_apps_identity_only(
    stack: Stack, app_shim: Shim, baseline: Baseline
) -> None:
    # A secured run first, its shim still open: the baseline must not be affected.
    scenario.run_secured(app_shim, stack.start_run(app_shim), stack.rs_url)
    answer = scenario.run_baseline(baseline.url, baseline.auth)
    calls = baseline.api.state.calls
    assert answer == ANSWER
    assert sorted((c.method, c.path) for c in calls) == REQUESTS
    assert {c.subject for c in calls} == {baseline.client_id}
    assert seen(calls) == [(None, None, None, [])] * len(REQUESTS)
    assert [p["opened_by"] for p in baseline.api.state.pulls] == [None] * 3


def test_runs_keep_one_client_and_make_one_round_trip_per_hand_off(stack: Stack) -> None:
    # Issue 17: the agents registered in one request, and not again on the next run;
    # each hand-off (delegation and the delegator's completion) one request; the shim's
    # HTTP client built once for all runs.
    shim = stack.new_shim(default_audience=stack.rs_url)
    try:
        clients = []
        for user in ("user:alice", "user:bob"):
            run = stack.start_run(shim, user)
            shim.sent.clear()
            assert scenario.run_secured(shim, run, stack.rs_url) == ANSWER
            clients.append(set(map(id, shim._async_clients._clients.values())))
            # Three hand-offs, one mint (the supervisor's), the patcher's last completion.
            sent = {"token": 4, "complete": 1}
            if user == "user:alice":
                sent["batch"] = 1
            assert dict(shim.sent) == sent
        assert clients[0] == clients[1] and len(clients[0]) == 1
    finally:
        shim.close()
