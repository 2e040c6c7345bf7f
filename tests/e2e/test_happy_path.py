"""The DESIGN §11 workflow end to end over real HTTP: IdP, shim, resource server.

Both hand-off shapes: a supervisor that hands each step to a worker, and a chain in
which each agent hands on to the next. Every API call reaches the resource server with
the right user, agent, step, tool and delegation chain, and the run ledger verifies.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest

from ajwt_core.shim import Shim
from ajwt_demo.stack import Stack

PR = {"title": "Bump lodash to 4.17.21", "head": "fix/lodash"}


def caller(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()["caller"]
    return result


def test_supervisor_hands_each_step_to_a_worker(stack: Stack) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    with httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http, shim.run(run):
        with shim.acting("supervisor", tool="list_repos"):
            assert caller(http.get("/repos")) == {
                "agent": "supervisor",
                "step": "triage",
                "tool": "list_repos",
                "chain": ["supervisor"],
                "user": "user:alice",
            }
        shim.complete("supervisor")
        shim.handoff("supervisor", "planner", "plan")
        with shim.acting("planner", tool="read_file"):
            seen = caller(http.get("/repos/acme/storefront/files/package.json"))
            assert (seen["step"], seen["chain"]) == ("plan", ["supervisor", "planner"])
        shim.complete("planner")
        shim.handoff("supervisor", "classifier", "classify")
        with shim.acting("classifier", tool="query_advisories"):
            seen = caller(http.get("/advisories", params={"package": "lodash"}))
            assert seen["chain"] == ["supervisor", "classifier"]
        shim.complete("classifier")
        shim.handoff("supervisor", "patcher", "patch")
        with shim.acting("patcher", tool="create_pull_request"):
            seen = caller(http.post("/repos/acme/storefront/pulls", json=PR))
            assert seen == {
                "agent": "patcher",
                "step": "patch",
                "tool": "create_pull_request",
                "chain": ["supervisor", "patcher"],
                "user": "user:alice",
            }
        shim.complete("patcher")
    report = stack.admin.verify_ledger(run.run_id)
    assert report["ok"], report
    kinds = [e["kind"] for e in stack.admin.ledger(run.run_id)["entries"]]
    assert kinds.count("delegation") == 3
    assert kinds.count("step_completed") == 4
    assert kinds[0] == "run_started"


def test_chain_of_handoffs(stack: Stack) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    with httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http, shim.run(run):
        with shim.acting("supervisor", tool="list_repos"):
            caller(http.get("/repos"))
        shim.complete("supervisor")
        shim.handoff("supervisor", "planner", "plan")
        with shim.acting("planner", tool="read_file"):
            caller(http.get("/repos/acme/billing/files/requirements.txt"))
        shim.complete("planner")
        shim.handoff("planner", "classifier", "classify")
        with shim.acting("classifier", tool="query_advisories"):
            assert caller(http.get("/advisories", params={"package": "requests"}))["chain"] == [
                "supervisor",
                "planner",
                "classifier",
            ]
        shim.complete("classifier")
        shim.handoff("classifier", "patcher", "patch")
        with shim.acting("patcher", tool="create_pull_request"):
            seen = caller(http.post("/repos/acme/billing/pulls", json=PR))
        assert seen["chain"] == ["supervisor", "planner", "classifier", "patcher"]
    assert stack.admin.verify_ledger(run.run_id)["ok"]


def test_token_claims_on_the_wire(stack: Stack) -> None:
    """What a resource server that knows nothing of A-JWT still sees (DESIGN §5.1)."""
    shim = stack.shim()
    run = stack.start_run(shim)
    with shim.run(run), shim.acting("supervisor", tool="list_repos") as context:
        issued = shim.token(context, stack.rs_url)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    header = jwt.get_unverified_header(issued.token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    assert claims["iss"] == stack.idp_url
    assert claims["aud"] == stack.rs_url
    assert claims["sub"] == "user:alice"
    assert claims["scope"] == "repo:read"
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["cnf"]["jkt"] == shim.agent("supervisor").key.thumbprint
    assert claims["act"] == {"sub": "agent:supervisor"}
    assert claims["agent"]["checksum"] == shim.agent("supervisor").checksum
    assert claims["intent"]["run_id"] == run.run_id
    assert claims["intent"]["workflow_hash"] == run.workflow_hash
    ledger = stack.admin.ledger(run.run_id)["entries"]
    assert claims["intent"]["step_sequence_hash"] == ledger[-1]["entry_hash"]
    # T12: nothing of the agent's prompt or keys leaves the process in the token.
    assert "You supervise" not in str(claims) and '"d"' not in str(header)


def test_token_is_cached_until_near_expiry(stack: Stack) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    with shim.run(run), shim.acting("supervisor", tool="list_repos") as context:
        first = shim.token(context, stack.rs_url)
        assert shim.token(context, stack.rs_url) is first


def test_async_client_and_concurrent_runs_keep_contexts_apart(stack: Stack) -> None:
    shim = stack.shim()
    users = ["user:alice", "user:bob", "user:carol"]
    runs = [stack.start_run(shim, user) for user in users]

    async def work(http: httpx.AsyncClient, index: int) -> list[dict[str, Any]]:
        seen = []
        with shim.run(runs[index]):
            for _ in range(3):
                async with shim.aacting("supervisor", tool="list_repos"):
                    await asyncio.sleep(0)  # interleave with the other runs
                    seen.append(caller(await http.get("/repos")))
        return seen

    async def main() -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=stack.rs_url, auth=shim.auth()) as http:
            return await asyncio.gather(*(work(http, i) for i in range(len(runs))))

    results = asyncio.run(main())
    for user, seen in zip(users, results, strict=True):
        assert {s["user"] for s in seen} == {user}


def test_request_outside_agent_context_is_refused_locally(stack: Stack) -> None:
    from ajwt_core.errors import AgentContextError, Reason

    shim = stack.shim()
    calls_before = len(stack.api.state.calls)
    with (
        httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http,
        pytest.raises(AgentContextError) as info,
    ):
        http.get("/repos")
    assert info.value.reason == Reason.NO_AGENT_CONTEXT
    assert len(stack.api.state.calls) == calls_before


def test_shim_with_private_key_jwt(stack: Stack) -> None:
    from ajwt_core.keys import PopKey
    from ajwt_demo.agents import reference_manifest

    client_key = PopKey.generate()
    jwks = {"keys": [client_key.public_jwk | {"kid": "k1", "alg": "ES256"}]}
    client = stack.new_client(auth_method="private_key_jwt", jwks=jwks)
    shim = Shim(stack.idp_url, client["client_id"], client_key=client_key, client_key_id="k1")
    shim.register(reference_manifest("supervisor"))
    run = stack.start_run(shim)
    with (
        httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http,
        shim.run(run),
        shim.acting("supervisor", tool="list_repos"),
    ):
        assert caller(http.get("/repos"))["agent"] == "supervisor"


def test_prepare_mints_before_the_tool_runs_and_reports_events(stack: Stack) -> None:
    from ajwt_core.errors import InvalidGrant, Reason

    shim = stack.shim(default_audience=stack.rs_url)
    events: list[Any] = []
    shim.subscribe(events.append)
    run = stack.start_run(shim)
    context = shim.prepare(shim.context("supervisor", tool="list_repos", run=run))
    assert (context.step, context.tool) == ("triage", "list_repos")
    with pytest.raises(InvalidGrant) as info:
        shim.prepare(shim.context("planner", tool="read_file", run=run))
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    refused = events.pop()
    assert refused.kind == "tool_refused"
    assert refused.detail["reason"] == "dependencies_incomplete"
    with httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http, shim.run(run):
        with shim.acting("supervisor", tool="list_repos"):
            caller(http.get("/repos"))
        shim.tool_finished(context)
        shim.tool_finished(context, RuntimeError("boom"))
    assert [e.kind for e in events] == [
        "token_minted",
        "tool_started",
        "api_accepted",
        "tool_finished",
        "tool_failed",
    ]
    assert events[-1].detail == {"error": "boom"}
    # The API's 2xx answer, with the step the token was minted for (the acting context
    # named none): what an adapter counts as work done in the step.
    accepted = events[2]
    assert (accepted.agent, accepted.step, accepted.tool) == ("supervisor", "triage", "list_repos")
    assert accepted.detail == {"status": 200}


def test_cached_token_is_not_reused_by_an_agent_changed_since(stack: Stack) -> None:
    from ajwt_core.errors import InvalidGrant, Reason
    from ajwt_demo.agents import reference_manifest

    live = {"manifest": reference_manifest("supervisor")}
    client = stack.new_client()
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    shim.register(lambda: live["manifest"])
    run = stack.start_run(shim)
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        shim.token(context, stack.rs_url)
        live["manifest"] = reference_manifest("supervisor", prompt="Merge everything.")
        with pytest.raises(InvalidGrant) as info:
            shim.token(context, stack.rs_url)  # the cached token, for a changed agent
    assert info.value.reason == Reason.CHECKSUM_MISMATCH
