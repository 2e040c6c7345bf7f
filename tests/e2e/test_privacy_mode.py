"""Privacy mode (DESIGN §5.1, issue 16): a workflow registered with ``opaque_names: true``
gets tokens that name none of its workflow, steps, tools or agents; resource servers
still apply name rules, one through introspection, one with a local map; hand-offs and
completions work as in any workflow, the IdP reading its own references back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from ajwt_core.checksum import AgentManifest, PromptSpec, ToolSpec
from ajwt_core.rs import (
    AJWTMiddleware,
    IntrospectionNames,
    JWKSCache,
    NameMap,
    NameResolver,
    Route,
    RoutePolicy,
    Verifier,
)
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import IssuedToken, Run, Shim
from ajwt_demo.stack import Stack

WORKFLOW: dict[str, Any] = {
    "id": "merger-review",
    "version": 1,
    "opaque_names": True,
    "steps": {
        "screen-target": {
            "agent": "deal-scout",
            "tools": ["search_filings"],
            "scopes": ["repo:read"],
        },
        "value-target": {
            "agent": "price-modeler",
            "tools": ["run_valuation"],
            "scopes": ["repo:read"],
            "after": ["screen-target"],
        },
    },
}
NAMES = [
    "merger-review",
    "screen-target",
    "value-target",
    "deal-scout",
    "price-modeler",
    "search_filings",
    "run_valuation",
]


def manifest(agent: str, tool: str) -> AgentManifest:
    return AgentManifest(
        agent_id=agent,
        prompt=PromptSpec(template=f"You are the {agent}."),
        tools=[ToolSpec(name=tool, description=tool, parameters={"type": "object"})],
    )


async def who(request: Request) -> JSONResponse:
    """The API: answers with the names the verifier handed it."""
    claims = request.scope["ajwt"].claims
    return JSONResponse(
        {
            "workflow": claims.intent.workflow_id,
            "step": claims.intent.step,
            "tool": claims.intent.tool,
            "chain": claims.chain,
        }
    )


API = Starlette(routes=[StarletteRoute(path, who) for path in ("/filings", "/valuation")])


ROUTES = [
    Route(
        "GET",
        "/filings",
        RoutePolicy.of(
            workflows=["merger-review"],
            steps=["screen-target"],
            tools=["search_filings"],
            agents=["deal-scout"],
        ),
    ),
    Route("GET", "/valuation", RoutePolicy.of(tools=["run_valuation"], agents=["price-modeler"])),
]


def start_api(stack: Stack, names: Any) -> BackgroundServer:
    server = BackgroundServer()
    resolver: NameResolver = names(server.url) if callable(names) else names
    verifier = Verifier(
        issuer=stack.idp_url,
        audience=server.url,
        keys=JWKSCache(stack.idp_url + "/.well-known/jwks.json"),
        names=resolver,
    )
    server.start(AJWTMiddleware(API, verifier=verifier, routes=ROUTES, default=None))
    return server


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[dict[str, Any]]:
    stack.admin.register_workflow(WORKFLOW)
    app = stack.new_client()
    shim = Shim(stack.idp_url, app["client_id"], client_secret=app["client_secret"])
    shim.register_many(
        [manifest("deal-scout", "search_filings"), manifest("price-modeler", "run_valuation")]
    )
    # One resource server introspects (a client registered for its URL), one keeps the
    # workflow's map, fetched once from the IdP.
    servers: list[BackgroundServer] = []

    def introspecting(url: str) -> IntrospectionNames:
        rs = stack.admin.register_client(f"rs-{len(servers)}-api", scopes=[], resources=[url])
        auth = (rs["client_id"], rs["client_secret"])
        return IntrospectionNames(stack.idp_url + "/introspect", auth=auth)

    servers.append(start_api(stack, introspecting))
    document = httpx.get(
        stack.idp_url + "/workflows/merger-review/1",
        auth=(app["client_id"], app["client_secret"]),
    ).json()
    servers.append(start_api(stack, NameMap.from_workflows([document])))
    yield {"shim": shim, "introspecting": servers[0].url, "mapped": servers[1].url, "app": app}
    for server in servers:
        server.close()


def payload(token: str) -> str:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def call(shim: Shim, run: Run, agent: str, tool: str, url: str) -> httpx.Response:
    with httpx.Client(auth=shim.auth()) as http, shim.acting(agent, tool=tool, run=run):
        return http.get(url)


def issued(shim: Shim, run: Run, agent: str, tool: str, audience: str) -> IssuedToken:
    with shim.acting(agent, tool=tool, run=run) as context:
        return shim.token(context, audience)


def test_tokens_name_nothing_and_both_resource_servers_apply_name_rules(
    stack: Stack, world: dict[str, Any]
) -> None:
    shim: Shim = world["shim"]
    user = stack.admin.user_token("user:alice")
    run = shim.start_run(user, "merger-review", intent="review the target")
    tokens: list[str] = []

    for server in (world["introspecting"], world["mapped"]):
        answer = call(shim, run, "deal-scout", "search_filings", server + "/filings")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "workflow": "merger-review",
            "step": "screen-target",
            "tool": "search_filings",
            "chain": ["deal-scout"],
        }
        tokens.append(issued(shim, run, "deal-scout", "search_filings", server).token)
        # The wrong agent's route refuses it by name.
        refused = call(shim, run, "deal-scout", "search_filings", server + "/valuation")
        assert refused.status_code == 403 and refused.json()["ajwt_reason"] == "tool_not_allowed"

    # The hand-off presents an opaque parent token; the IdP reads it back.
    shim.handoff("deal-scout", "price-modeler", "value-target", run=run)
    answer = call(shim, run, "price-modeler", "run_valuation", world["mapped"] + "/valuation")
    assert answer.status_code == 200, answer.text
    assert answer.json()["chain"] == ["deal-scout", "price-modeler"]
    tokens.append(issued(shim, run, "price-modeler", "run_valuation", world["mapped"]).token)
    done = shim.complete("price-modeler", "value-target", run=run)
    assert done["finished"] is True

    for token in tokens:
        text = payload(token)
        for name in NAMES:
            assert name not in text, (name, text)
        assert json.loads(text)["intent"]["opaque_names"] is True
    # The ledger, which only the client and the IdP read, keeps the names.
    entries = stack.admin.ledger(run.run_id)["entries"]
    assert {e["data"].get("step") for e in entries} >= {"screen-target", "value-target"}


def test_introspection_reveals_names_only_to_whom_the_token_concerns(
    stack: Stack, world: dict[str, Any]
) -> None:
    shim: Shim = world["shim"]
    run = shim.start_run(stack.admin.user_token("user:bob"), "merger-review")
    token = issued(shim, run, "deal-scout", "search_filings", world["introspecting"]).token
    app = world["app"]
    own = httpx.post(
        stack.idp_url + "/introspect",
        data={"token": token},
        auth=(app["client_id"], app["client_secret"]),
    ).json()
    assert own["active"] is True and own["intent"]["step"] == "screen-target"
    assert "opaque_names" not in own["intent"]
    stranger = stack.new_client()
    other = httpx.post(
        stack.idp_url + "/introspect",
        data={"token": token},
        auth=(stranger["client_id"], stranger["client_secret"]),
    ).json()
    assert other == {"active": False}
