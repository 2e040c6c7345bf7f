"""A support desk as an AutoGen ``Swarm`` under A-JWT: a triage agent routes a ticket to
billing, which looks up the invoice, may ask the customer (a human pause), refunds it and
hands off to a closer, which closes the ticket.

Everything runs offline on 127.0.0.1: :func:`start_services` starts an IdP and the
support API (FastAPI behind A-JWT); :func:`build_team` builds the three agents with
scripted models and secures them with :func:`ajwt_autogen.secure_team`. The tests of
``ajwt-autogen`` use it for the patterns of issue 14 (several teams in one shim, state
saved and resumed in another process, human pauses, workbenches); ``ajwt workflow export
examples.autogen_support.app:draft_team()`` drafts its workflow.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import (
    HandoffTermination,
    MaxMessageTermination,
    TextMentionTermination,
)
from autogen_agentchat.teams import Swarm
from autogen_core.tools import FunctionTool
from fastapi import FastAPI, Security

from ajwt_autogen import secure_team
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.rs import Verifier
from ajwt_core.rs.fastapi import install, require_intent
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_core.tokens import IntentTokenClaims
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient, Turn, call

WORKFLOW: dict[str, Any] = {
    "id": "support",
    "version": 1,
    "steps": {
        "route": {"agent": "triage", "tools": []},
        "refund": {
            "agent": "billing",
            "tools": ["get_invoice", "issue_refund"],
            "scopes": ["billing:read", "billing:write"],
            "after": ["route"],
        },
        "close": {
            "agent": "closer",
            "tools": ["close_ticket"],
            "scopes": ["tickets:write"],
            "after": ["refund"],
        },
    },
}
SCOPES = ["billing:read", "billing:write", "tickets:write"]

#: The default scripts: triage routes, billing reads and refunds, asks the customer,
#: then hands off to the closer (after the customer's answer).
SCRIPTS: dict[str, list[Turn]] = {
    "triage": [[call("transfer_to_billing")]],
    "billing": [
        [call("get_invoice", number="INV-42")],
        [call("issue_refund", number="INV-42", amount=30)],
        [call("transfer_to_user")],
        [call("transfer_to_closer")],
    ],
    "closer": [[call("close_ticket", ticket="T-7")], "Ticket closed. TERMINATE"],
}


@dataclass(frozen=True)
class Call:
    """One request the support API accepted, with what its token proved."""

    method: str
    path: str
    subject: str
    agent: str
    checksum: str
    step: str
    tool: str | None
    chain: list[str]
    run_id: str


@dataclass
class Services:
    """The IdP and the support API, running on 127.0.0.1."""

    idp_url: str
    api_url: str
    admin: AdminClient
    calls: list[Call] = field(default_factory=list)
    servers: list[BackgroundServer] = field(default_factory=list)

    def new_shim(self, **kw: Any) -> Shim:
        """A shim for a newly registered client (tokens minted before each tool runs)."""
        client = self.admin.register_client(scopes=SCOPES)
        return self.shim_for(client, **kw)

    def shim_for(self, client: Mapping[str, Any], **kw: Any) -> Shim:
        kw.setdefault("default_audience", self.api_url)
        return Shim(self.idp_url, client["client_id"], client_secret=client["client_secret"], **kw)

    def calls_of(self, run_id: str) -> list[Call]:
        return [c for c in self.calls if c.run_id == run_id]

    def close(self) -> None:
        self.admin.close()
        for server in reversed(self.servers):
            server.close()


Reading = Annotated[IntentTokenClaims, Security(require_intent(scopes=["billing:read"]))]
Refunding = Annotated[IntentTokenClaims, Security(require_intent(scopes=["billing:write"]))]
Closing = Annotated[IntentTokenClaims, Security(require_intent(scopes=["tickets:write"]))]


def create_api(verifier: Verifier, calls: list[Call]) -> FastAPI:
    """The support API: every route requires an intent token for its scope."""
    api = FastAPI()
    install(api, verifier)

    def record(method: str, path: str, claims: IntentTokenClaims) -> dict[str, Any]:
        calls.append(
            Call(
                method,
                path,
                claims.sub,
                claims.agent.id,
                claims.agent.checksum,
                claims.intent.step,
                claims.intent.tool,
                claims.chain,
                claims.intent.run_id,
            )
        )
        return {"ok": True, "by": claims.agent.id}

    @api.get("/invoices/{number}")
    def get_invoice(number: str, claims: Reading) -> dict[str, Any]:
        return record("GET", f"/invoices/{number}", claims) | {"number": number, "total": 30}

    @api.post("/refunds")
    def issue_refund(claims: Refunding) -> dict[str, Any]:
        return record("POST", "/refunds", claims)

    @api.post("/tickets/{ticket}/close")
    def close_ticket(ticket: str, claims: Closing) -> dict[str, Any]:
        return record("POST", f"/tickets/{ticket}/close", claims)

    return api


def start_services(db_path: Path, *, token_lifetime: int | None = None) -> Services:
    """Start the IdP (SQLite at ``db_path``) and the support API; register the workflow."""
    admin_token = secrets.token_urlsafe(32)
    idp = BackgroundServer()
    settings = IdPSettings(
        issuer=idp.url, db_url=f"sqlite+aiosqlite:///{db_path}", admin_token=admin_token
    )
    if token_lifetime is not None:
        settings.token_lifetime = token_lifetime
    idp.start(create_app(settings))
    admin = AdminClient(idp.url, admin_token)
    admin.register_workflow(WORKFLOW)
    api_server = BackgroundServer()
    calls: list[Call] = []
    api_server.start(create_api(Verifier.for_idp(idp.url, audience=api_server.url), calls))
    return Services(idp.url, api_server.url, admin, calls, [idp, api_server])


class SupportTools:
    """The support API as AutoGen tools (one HTTP client per team)."""

    def __init__(self, api_url: str, auth: httpx.Auth) -> None:
        self.http = httpx.AsyncClient(base_url=api_url, auth=auth, timeout=10.0)

    async def _send(self, method: str, path: str, **kw: Any) -> str:
        response = await self.http.request(method, path, **kw)
        if not response.is_success:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return response.text

    async def get_invoice(self, number: Annotated[str, "invoice number"]) -> str:
        return await self._send("GET", f"/invoices/{number}")

    async def issue_refund(self, number: str, amount: int) -> str:
        return await self._send("POST", "/refunds", json={"number": number, "amount": amount})

    async def close_ticket(self, ticket: str) -> str:
        return await self._send("POST", f"/tickets/{ticket}/close")

    def tool(self, name: str) -> FunctionTool:
        descriptions = {
            "get_invoice": "Fetch an invoice.",
            "issue_refund": "Refund (part of) an invoice.",
            "close_ticket": "Close the support ticket.",
        }
        return FunctionTool(getattr(self, name), description=descriptions[name], name=name)

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class SupportTeam:
    swarm: Swarm
    agents: dict[str, AssistantAgent]
    models: dict[str, ScriptedChatCompletionClient]
    tools: SupportTools

    async def aclose(self) -> None:
        await self.tools.aclose()


def build_team(
    shim: Shim | None,
    api_url: str,
    *,
    tenant: str = "acme",
    scripts: Mapping[str, Sequence[Turn]] | None = None,
    secure: bool = True,
) -> SupportTeam:
    """The three agents in a ``Swarm``, secured with ``secure_team`` (unless ``secure``
    is false or there is no shim: then nothing is secured and the tools call the API
    through ``shim.auth()`` only if a shim is given). ``tenant`` goes into the prompts:
    two tenants' teams are two versions of each agent id."""
    the_scripts = {**SCRIPTS, **(scripts or {})}
    auth: httpx.Auth = shim.auth() if shim is not None else httpx.Auth()
    tools = SupportTools(api_url, auth)
    models = {
        name: ScriptedChatCompletionClient(script, model="scripted-support-model")
        for name, script in the_scripts.items()
    }
    agents = {
        "triage": AssistantAgent(
            "triage",
            models["triage"],
            handoffs=["billing"],
            system_message=f"You route {tenant}'s support tickets to the right desk.",
        ),
        "billing": AssistantAgent(
            "billing",
            models["billing"],
            tools=[tools.tool("get_invoice"), tools.tool("issue_refund")],
            handoffs=["closer", "user"],
            system_message=f"You settle {tenant}'s billing questions; ask the user when unsure.",
        ),
        "closer": AssistantAgent(
            "closer",
            models["closer"],
            tools=[tools.tool("close_ticket")],
            system_message=f"You close {tenant}'s tickets once they are settled.",
        ),
    }
    stop = (
        HandoffTermination("user") | TextMentionTermination("TERMINATE") | MaxMessageTermination(30)
    )
    swarm = Swarm(list(agents.values()), termination_condition=stop)
    if shim is not None and secure:
        secure_team(swarm, shim)
    return SupportTeam(swarm, agents, models, tools)


def draft_team() -> Swarm:
    """The team, not secured, for ``ajwt workflow export`` (no shim, no server)."""
    return build_team(None, "http://127.0.0.1:9", secure=False).swarm
