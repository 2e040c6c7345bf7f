"""The workflow constructs of DESIGN §6.3 end to end over HTTP: a real IdP, the shim, and a
protected tool API that reports who called it. Each construct runs as an app would use it,
and the moves it must refuse are refused by the IdP on its own (the shim's local checks
off), with the reason that names the cause.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from ajwt_core.checksum import AgentManifest, PromptSpec, ToolSpec
from ajwt_core.errors import AJWTError, Reason
from ajwt_core.rs import AJWTMiddleware, JWKSCache, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Run, Shim
from ajwt_core.workflow import Workflow
from ajwt_demo.stack import Stack, start_stack

USER = "user:alice"


def tool_api(verifier: Verifier) -> Any:
    """``/tools/<name>`` answers with what the verified token says about the caller."""
    app = FastAPI()

    @app.api_route("/tools/{tool}", methods=["GET", "POST"])
    async def call(tool: str, request: Request) -> dict[str, Any]:
        claims = request.state.ajwt.claims
        assert claims.intent.tool == tool, "a token is used for its own tool only"
        return {
            "user": claims.sub,
            "agent": claims.agent.id,
            "step": claims.intent.step,
            "tool": claims.intent.tool,
            "chain": claims.chain,
            "scope": claims.scope,
            "consulted_by": claims.intent.consulted_by,
        }

    return AJWTMiddleware(app, verifier=verifier)


@dataclass
class Env:
    stack: Stack
    api_url: str

    def workflow(self, steps: dict[str, Any]) -> Workflow:
        workflow = Workflow.from_mapping(
            {"id": "wf-" + secrets.token_hex(4), "version": 1, "steps": steps}
        )
        self.stack.admin.register_workflow(workflow.canonical())
        return workflow

    def shim(self, workflow: Workflow, scopes: list[str], *, local_checks: bool = True) -> Shim:
        client = self.stack.new_client(scopes)
        shim = Shim(
            self.stack.idp_url,
            client["client_id"],
            client_secret=client["client_secret"],
            local_checks=local_checks,
        )
        tools: dict[str, set[str]] = {}
        for step in workflow.steps.values():
            tools.setdefault(step.agent, set()).update(step.tools)
            for agent, consultation in step.consult.items():
                tools.setdefault(agent, set()).update(consultation.tools)
        shim.register_many(manifest(agent, sorted(names)) for agent, names in tools.items())
        return shim

    def start(self, shim: Shim, workflow: Workflow) -> Run:
        return shim.start_run(self.stack.admin.user_token(USER), workflow.id, intent="test")

    def call(self, shim: Shim, run: Run, agent: str, tool: str, **acting: Any) -> dict[str, Any]:
        with (
            httpx.Client(base_url=self.api_url, auth=shim.auth(), timeout=10) as http,
            shim.acting(agent, tool=tool, run=run, **acting),
        ):
            response = http.post(f"/tools/{tool}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def status(self, run: Run) -> dict[str, Any]:
        response = httpx.get(f"{self.stack.idp_url}/runs/{run.run_id}/status", timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def kinds(self, run: Run) -> list[tuple[str, str | None]]:
        entries = self.stack.admin.ledger(run.run_id)["entries"]
        return [(e["kind"], e["data"].get("step") or e["data"].get("to_step")) for e in entries]


def manifest(agent: str, tools: list[str]) -> AgentManifest:
    return AgentManifest(
        agent_id=agent,
        prompt=PromptSpec(template=f"You are {agent}."),
        tools=[
            ToolSpec(name=t, description=f"{t}.", parameters={"type": "object", "properties": {}})
            for t in tools
        ],
        config={"model": "scripted", "temperature": 0},
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    stack = start_stack(Path(tmp_path_factory.mktemp("constructs")) / "idp.db")
    server = BackgroundServer()
    verifier = Verifier(
        issuer=stack.idp_url,
        audience=server.url,
        keys=JWKSCache(stack.idp_url + "/.well-known/jwks.json", min_refresh=1.0),
    )
    server.start(tool_api(verifier))
    yield Env(stack, server.url)
    server.close()
    stack.close()


def refused(reason: Reason, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(AJWTError) as info:
        call(*args, **kwargs)
    assert info.value.reason == reason, info.value.description
    return info.value.description


# ------------------------------------------------------------------ routing steps

SUPERVISED = {
    "triage": {"agent": "supervisor"},
    "research": {
        "agent": "researcher",
        "tools": ["search"],
        "scopes": ["web:read"],
        "after": ["triage"],
    },
    "write": {
        "agent": "writer",
        "tools": ["publish"],
        "scopes": ["blog:write"],
        "after": ["research"],
    },
}


def test_a_routing_supervisor_hands_out_work_without_any_tool(env: Env) -> None:
    workflow = env.workflow(SUPERVISED)
    shim = env.shim(workflow, ["web:read", "blog:write"])
    run = env.start(shim, workflow)
    shim.handoff("supervisor", "researcher", "research", run=run)
    seen = env.call(shim, run, "researcher", "search")
    assert (seen["agent"], seen["step"], seen["chain"]) == (
        "researcher",
        "research",
        ["supervisor", "researcher"],
    )
    assert seen["user"] == USER and seen["scope"] == "web:read"
    kinds = env.kinds(run)
    # The supervisor holds a step token (no tool) and its step is completed by the
    # hand-off; the ledger records no tool token for it.
    assert ("step_completed", "triage") in kinds
    triage_tokens = [
        e["data"]
        for e in env.stack.admin.ledger(run.run_id)["entries"]
        if e["kind"] == "token_minted" and e["data"]["step"] == "triage"
    ]
    assert [t["tool"] for t in triage_tokens] == [None]
    assert triage_tokens[0]["aud"] == env.stack.idp_url


def test_a_step_token_is_refused_by_a_resource_server(env: Env) -> None:
    workflow = env.workflow(SUPERVISED)
    shim = env.shim(workflow, ["web:read", "blog:write"])
    run = env.start(shim, workflow)
    step_token = shim._send_sync(shim._op_step_token("supervisor", run, "triage"))
    key = shim.agent("supervisor").key
    from ajwt_core.dpop import create_proof

    url = env.api_url + "/tools/search"
    proof = create_proof(key, "POST", url, token=step_token.token, body=b"")
    response = httpx.post(
        url, headers={"Authorization": f"DPoP {step_token.token}", "DPoP": proof}, timeout=10
    )
    assert response.status_code == 401
    assert response.json()["ajwt_reason"] == Reason.WRONG_AUDIENCE
    # A resource server configured with the IdP's own identifier still refuses it.
    verifier = Verifier(
        issuer=env.stack.idp_url,
        audience=env.stack.idp_url,
        keys=JWKSCache(env.stack.idp_url + "/.well-known/jwks.json"),
    )
    from ajwt_core.rs import RoutePolicy

    with pytest.raises(AJWTError) as info:
        asyncio.run(
            verifier.verify(
                method="POST",
                url=url,
                headers=[("authorization", f"DPoP {step_token.token}"), ("dpop", proof)],
                body=b"",
                policy=RoutePolicy(),
            )
        )
    assert info.value.reason == Reason.STEP_TOKEN_NOT_FOR_API


def test_a_routing_step_cannot_call_an_api(env: Env) -> None:
    workflow = env.workflow(SUPERVISED)
    shim = env.shim(workflow, ["web:read", "blog:write"], local_checks=False)
    run = env.start(shim, workflow)
    with shim.acting("supervisor", step="triage", tool="search", run=run) as context:
        refused(Reason.TOOL_NOT_ALLOWED, shim.token, context, env.api_url)


# --------------------------------------------------------- an agent's next step

TRIP = {
    "lookup": {"agent": "travel", "tools": ["search_flights"], "scopes": ["flights:read"]},
    "book": {
        "agent": "travel",
        "tools": ["book_flight"],
        "scopes": ["flights:write"],
        "after": ["lookup"],
    },
    "confirm": {"agent": "mailer", "tools": ["send_mail"], "after": ["book"]},
}


def test_one_agent_moves_on_to_its_next_step_by_calling_its_tool(env: Env) -> None:
    workflow = env.workflow(TRIP)
    shim = env.shim(workflow, ["flights:read", "flights:write"])
    run = env.start(shim, workflow)
    assert env.call(shim, run, "travel", "search_flights")["step"] == "lookup"
    booked = env.call(shim, run, "travel", "book_flight")
    assert (booked["step"], booked["scope"]) == ("book", "flights:write")
    completions = [
        e for e in env.stack.admin.ledger(run.run_id)["entries"] if e["kind"] == "step_completed"
    ]
    assert [(c["data"]["step"], c["data"].get("implicit")) for c in completions] == [
        ("lookup", True)
    ]
    assert env.status(run)["due_steps"] == ["book"]


def test_the_idp_does_not_let_an_agent_move_past_another_agents_step(env: Env) -> None:
    workflow = env.workflow(
        {
            **TRIP,
            "approve": {"agent": "manager", "tools": ["approve_budget"], "after": ["lookup"]},
            "book": {**TRIP["book"], "after": ["approve"]},
        }
    )
    shim = env.shim(workflow, ["flights:read", "flights:write"], local_checks=False)
    run = env.start(shim, workflow)
    env.call(shim, run, "travel", "search_flights")
    with shim.acting("travel", step="book", tool="book_flight", run=run) as context:
        text = refused(Reason.DEPENDENCIES_INCOMPLETE, shim.token, context, env.api_url)
    assert "waits for step 'approve' (agent 'manager')" in text


# ---------------------------------------------------------- fan-out and joins

FAN = {
    "route": {"agent": "supervisor"},
    "news": {"agent": "reporter", "tools": ["get_news"], "after": ["route"]},
    "prices": {"agent": "analyst", "tools": ["get_prices"], "after": ["route"]},
    "write": {"agent": "writer", "tools": ["publish"], "after": ["news", "prices"]},
}


def test_a_router_fans_out_and_the_join_waits_for_both_branches(env: Env) -> None:
    workflow = env.workflow(FAN)
    shim = env.shim(workflow, [])
    run = env.start(shim, workflow)
    shim.handoff("supervisor", "reporter", "news", run=run)
    shim.handoff("supervisor", "analyst", "prices", run=run)

    async def branch(agent: str, tool: str, step: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=env.api_url, auth=shim.auth()) as http:
            async with shim.aacting(agent, tool=tool, run=run):
                response = await http.post(f"/tools/{tool}")
            await shim.acomplete(agent, step, run=run)
        body: dict[str, Any] = response.json()
        return body

    async def both() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                branch("reporter", "get_news", "news"), branch("analyst", "get_prices", "prices")
            )
        )

    news, prices = asyncio.run(both())
    assert news["chain"] == ["supervisor", "reporter"]
    assert prices["chain"] == ["supervisor", "analyst"]
    # The join is handed on by one branch once both are done.
    shim.handoff("analyst", "writer", "write", run=run)
    assert env.call(shim, run, "writer", "publish")["chain"] == ["supervisor", "analyst", "writer"]


def test_the_idp_refuses_a_join_early_and_a_branch_delegating_outside_the_fan_out(
    env: Env,
) -> None:
    workflow = env.workflow(FAN)
    shim = env.shim(workflow, [], local_checks=False)
    run = env.start(shim, workflow)
    shim.handoff("supervisor", "reporter", "news", run=run)
    shim.handoff("supervisor", "analyst", "prices", run=run)
    env.call(shim, run, "reporter", "get_news")
    text = refused(
        Reason.DELEGATION_NOT_ALONG_WORKFLOW, shim.handoff, "reporter", "analyst", "prices", run=run
    )
    assert "'prices' does not come after step 'news'" in text
    shim.complete("reporter", "news", run=run)
    with shim.acting("writer", step="write", tool="publish", run=run) as context:
        text = refused(Reason.DEPENDENCIES_INCOMPLETE, shim.token, context, env.api_url)
    assert "waits for step 'prices' (agent 'analyst')" in text


# --------------------------------------------------------------------- choices

CHOICE = {
    "route": {"agent": "supervisor", "one_of": ["draft", "quick"]},
    "draft": {"agent": "writer", "tools": ["write_long"], "after": ["route"]},
    "review": {"agent": "editor", "tools": ["comment"], "after": ["draft"]},
    "quick": {"agent": "writer", "tools": ["write_short"], "after": ["route"]},
    "publish": {"agent": "publisher", "tools": ["publish"], "after_any": ["review", "quick"]},
}


def test_a_run_takes_one_branch_and_finishes_without_the_other(env: Env) -> None:
    workflow = env.workflow(CHOICE)
    shim = env.shim(workflow, [])
    run = env.start(shim, workflow)
    shim.handoff("supervisor", "writer", "quick", run=run)
    env.call(shim, run, "writer", "write_short")
    shim.handoff("writer", "publisher", "publish", run=run)
    env.call(shim, run, "publisher", "publish")
    shim.complete("publisher", "publish", run=run)
    status = env.status(run)
    assert status["finished"] is True
    assert "draft" not in status["completed_steps"] and "review" not in status["completed_steps"]


def test_the_idp_refuses_the_branch_not_taken_and_a_skipped_required_step(env: Env) -> None:
    workflow = env.workflow(CHOICE)
    shim = env.shim(workflow, [], local_checks=False)
    run = env.start(shim, workflow)
    shim.handoff("supervisor", "writer", "draft", run=run)
    env.call(shim, run, "writer", "write_long")
    shim.complete("writer", "draft", run=run)
    # The short branch is closed: neither handed on nor entered by its own agent...
    text = refused(Reason.BRANCH_NOT_TAKEN, shim.handoff, "supervisor", "writer", "quick", run=run)
    assert "already chose 'draft'" in text or "not on this run's path" in text
    with shim.acting("writer", step="quick", tool="write_short", run=run) as context:
        refused(Reason.BRANCH_NOT_TAKEN, shim.token, context, env.api_url)
    # ...so the review on the path taken cannot be skipped on the way to publishing.
    with shim.acting("publisher", step="publish", tool="publish", run=run) as context:
        text = refused(Reason.DEPENDENCIES_INCOMPLETE, shim.token, context, env.api_url)
    assert "'review' (agent 'editor')" in text


# ----------------------------------------------------------------------- loops

LOOP = {
    "brief": {"agent": "supervisor"},
    "write": {"agent": "writer", "tools": ["draft"], "after": ["brief"], "max_visits": 2},
    "critique": {"agent": "critic", "tools": ["review"], "after": ["write"], "loop_to": ["write"]},
    "publish": {"agent": "publisher", "tools": ["publish"], "after": ["critique"]},
}


def loop_run(env: Env) -> tuple[Shim, Run]:
    """A run of LOOP with the IdP's checks only, the writer handed its step."""
    workflow = env.workflow(LOOP)
    shim = env.shim(workflow, [], local_checks=False)
    run = env.start(shim, workflow)
    shim.handoff("supervisor", "writer", "write", run=run)
    return shim, run


def draft_and_review(env: Env, shim: Shim, run: Run) -> None:
    env.call(shim, run, "writer", "draft")
    shim.handoff("writer", "critic", "critique", run=run)
    env.call(shim, run, "critic", "review")


def test_a_critic_sends_work_back_and_the_idp_stops_the_loop_at_its_bound(env: Env) -> None:
    shim, run = loop_run(env)
    for visit in (1, 2):
        env.call(shim, run, "writer", "draft")
        shim.handoff("writer", "critic", "critique", run=run)
        assert env.call(shim, run, "critic", "review")["chain"][-2:] == ["writer", "critic"]
        if visit == 1:
            shim.handoff("critic", "writer", "write", run=run)
            assert "write" not in env.status(run)["completed_steps"]
    text = refused(Reason.VISIT_LIMIT_REACHED, shim.handoff, "critic", "writer", "write", run=run)
    assert "max_visits" in text
    kinds = env.kinds(run)
    assert kinds.count(("step_reopened", "write")) == 1
    shim.handoff("critic", "publisher", "publish", run=run)
    assert env.call(shim, run, "publisher", "publish")["step"] == "publish"


def test_a_token_of_an_earlier_visit_hands_nothing_on_and_completes_nothing(env: Env) -> None:
    # Found by a probe (high, T8): once the critic sent the work back, its token of the
    # first visit, still unexpired, handed 'critique' on to the publisher: the redone
    # draft was skipped, and the implicit completion of 'critique' let it through.
    shim, run = loop_run(env)
    draft_and_review(env, shim, run)
    checksum = shim.agent("critic").checksum
    stale = shim._tokens.latest("critic", run.run_id, "critique", checksum)
    assert stale is not None
    shim.handoff("critic", "writer", "write", run=run)  # the loop: write, critique reopened
    # The shim dropped its tokens of the reopened steps; an attacker kept one.
    assert shim._tokens.latest("critic", run.run_id, "critique", checksum) is None
    shim._tokens.put(stale)
    text = refused(Reason.STEP_NOT_ENTERED, shim.handoff, "critic", "publisher", "publish", run=run)
    assert "sent back past it" in text
    refused(Reason.STEP_NOT_ENTERED, shim.complete, "critic", "critique", run=run)
    assert env.status(run)["completed_steps"] == ["brief"]
    # The second visit, done in order, goes through.
    shim._tokens.forget(run.run_id, {"critique"})
    draft_and_review(env, shim, run)
    shim.handoff("critic", "publisher", "publish", run=run)
    assert env.call(shim, run, "publisher", "publish")["step"] == "publish"


def test_a_revoked_agent_completes_no_step(env: Env) -> None:
    # Found by a probe (medium): a revoked registration's token, still unexpired,
    # completed its step, and the next step could then run.
    shim, run = loop_run(env)
    env.call(shim, run, "writer", "draft")
    shim.revoke("agent", shim.agent("writer").registration_id)
    text = refused(Reason.AGENT_REVOKED, shim.complete, "writer", "write", run=run)
    assert "registration has been revoked" in text
    assert "write" not in env.status(run)["completed_steps"]


# ---------------------------------------------------------------- consultation

CONSULT = {
    "plan": {"agent": "planner"},
    "write": {
        "agent": "writer",
        "tools": ["publish"],
        "scopes": ["blog:write"],
        "after": ["plan"],
        "consult": {"researcher": {"tools": ["search"], "scopes": ["web:read"]}},
    },
    "research": {
        "agent": "researcher",
        "tools": ["search", "crawl"],
        "scopes": ["web:read", "web:crawl"],
        "after": ["plan"],
        "required": False,
    },
}


def test_a_consulted_agent_acts_inside_the_consulting_step(env: Env) -> None:
    workflow = env.workflow(CONSULT)
    shim = env.shim(workflow, ["blog:write", "web:read", "web:crawl"])
    run = env.start(shim, workflow)
    shim.handoff("planner", "writer", "write", run=run)
    before = env.status(run)
    shim.consult("writer", "researcher", run=run)
    seen = env.call(shim, run, "researcher", "search")  # resolved to the consultation
    assert (seen["agent"], seen["step"], seen["consulted_by"]) == ("researcher", "write", "writer")
    assert seen["chain"] == ["planner", "writer", "researcher"]
    assert seen["scope"] == "web:read"
    after = env.status(run)
    assert (after["due_steps"], after["completed_steps"]) == (
        before["due_steps"],
        before["completed_steps"],
    )
    assert env.call(shim, run, "writer", "publish")["step"] == "write"


def test_a_consultation_reaches_no_other_tool_or_scope_and_moves_nothing(env: Env) -> None:
    workflow = env.workflow(CONSULT)
    shim = env.shim(workflow, ["blog:write", "web:read", "web:crawl"], local_checks=False)
    run = env.start(shim, workflow)
    shim.handoff("planner", "writer", "write", run=run)
    shim.consult("writer", "researcher", run=run)
    # Its own step's other tool is not granted inside the consultation.
    with shim.acting("researcher", step="write", tool="crawl", run=run) as context:
        text = refused(Reason.TOOL_NOT_ALLOWED, shim.token, context, env.api_url)
    assert "steps.write.consult.researcher.tools" in text
    # Nor more scope than the consultation's.
    with pytest.raises(AJWTError) as info:
        shim.consult("writer", "researcher", run=run, scope="web:crawl")
    assert info.value.reason == Reason.SCOPE_EXCEEDED
    # A consulted agent neither completes the step nor hands it on.
    refused(Reason.CONSULTATION_NOT_ALLOWED, shim.complete, "researcher", "write", run=run)
    refused(
        Reason.CONSULTATION_NOT_ALLOWED,
        shim.handoff,
        "researcher",
        "writer",
        "write",
        run=run,
        from_step="write",
    )
    # Only listed agents are consulted.
    refused(Reason.CONSULTATION_NOT_ALLOWED, shim.consult, "writer", "planner", run=run)
