"""A support desk as a hierarchical CrewAI crew under A-JWT, in CrewAI's common idiom: a
``Flow`` whose state carries the run across a human pause, a crew whose manager (built
by CrewAI from ``manager_llm``) delegates the refund to billing, asks billing a question
when it needs to, and, once the customer has answered, delegates closing the ticket.

Everything runs offline on 127.0.0.1: :func:`start_services` starts an IdP and the
support API (FastAPI behind A-JWT); :func:`build_crew` builds the agents with a scripted
model and :func:`support_flow` the flow. ``ajwt workflow export
examples.crewai_support.app:draft_crew()`` drafts its workflow.
"""

from ajwt_demo.scenarios.crewai.offline import keep_crewai_offline

keep_crewai_offline()

# No ``from __future__ import annotations``: CrewAI builds tool schemas from annotations.
import os  # noqa: E402 - crewai must load after the offline flags
import secrets  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import httpx  # noqa: E402
from crewai import Agent, Crew, Process, Task  # noqa: E402
from crewai.flow.flow import Flow, start  # noqa: E402
from crewai.flow.persistence import SQLiteFlowPersistence, persist  # noqa: E402
from crewai.tools import BaseTool  # noqa: E402
from fastapi import FastAPI, Security  # noqa: E402

from ajwt_core.idp import IdPSettings, create_app  # noqa: E402
from ajwt_core.idp.admin import AdminClient  # noqa: E402
from ajwt_core.rs import Verifier  # noqa: E402
from ajwt_core.rs.fastapi import install, require_intent  # noqa: E402
from ajwt_core.server import BackgroundServer  # noqa: E402
from ajwt_core.shim import Shim  # noqa: E402
from ajwt_core.tokens import IntentTokenClaims  # noqa: E402
from ajwt_crewai import CrewAIBinding, ajwt_tool, flow_run, save_run, secure_crew  # noqa: E402
from ajwt_crewai.testing import ScriptedLLM, Turn  # noqa: E402

WORKFLOW: dict[str, Any] = {
    "id": "support",
    "version": 1,
    "steps": {
        "route": {
            "agent": "manager",
            "tools": [],
            "consult": {"billing": {"tools": ["get_invoice"], "scopes": ["billing"]}},
        },
        "refund": {
            "agent": "billing",
            "tools": ["get_invoice", "issue_refund"],
            "scopes": ["billing"],
            "after": ["route"],
        },
        "close": {
            "agent": "closer",
            "tools": ["close_ticket"],
            "scopes": ["tickets"],
            "after": ["refund"],
        },
    },
}

#: CrewAI role -> workflow agent id ("Crew Manager": the manager CrewAI builds).
AGENT_IDS = {"Crew Manager": "manager", "Billing agent": "billing", "Ticket closer": "closer"}


def _delegate(coworker: str, task: str) -> list[tuple[str, dict[str, Any]]]:
    arguments = {"task": task, "context": "Ticket T-7, invoice INV-42.", "coworker": coworker}
    return [("delegate_work_to_coworker", arguments)]


def _ask(coworker: str, question: str) -> list[tuple[str, dict[str, Any]]]:
    arguments = {"question": question, "context": "Ticket T-7.", "coworker": coworker}
    return [("ask_question_to_coworker", arguments)]


#: Before the pause: the manager asks billing, then hands it the refund.
BEFORE_PAUSE: dict[str, list[Turn]] = {
    "Crew Manager": [
        _ask("Billing agent", "Was INV-42 charged twice?"),
        _delegate("Billing agent", "Refund INV-42."),
        "Refunded; waiting for the customer to confirm.",
    ],
    "Billing agent: Was INV-42 charged twice?": [
        [("get_invoice", {"number": "INV-42"})],
        "Yes, twice.",
    ],
    "Billing agent": [
        [("get_invoice", {"number": "INV-42"})],
        [("issue_refund", {"number": "INV-42"})],
        "Refunded.",
    ],
}
#: After the customer's answer: the manager hands the ticket to the closer.
AFTER_PAUSE: dict[str, list[Turn]] = {
    "Crew Manager": [_delegate("Ticket closer", "Close ticket T-7."), "Closed."],
    "Ticket closer": [[("close_ticket", {"ticket": "T-7"})], "Closed."],
}


@dataclass(frozen=True)
class Call:
    """One request the support API accepted, with what its token proved."""

    user: str
    agent: str
    step: str
    tool: str | None
    chain: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"user={self.user} agent={self.agent} step={self.step} tool={self.tool} "
            f"chain={' > '.join(self.chain)}"
        )


@dataclass
class Services:
    """The IdP and the support API, on 127.0.0.1."""

    idp: BackgroundServer
    api: BackgroundServer
    admin: AdminClient
    workdir: tempfile.TemporaryDirectory[str]
    calls: list[Call] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.api.url

    def new_shim(self) -> Shim:
        client = self.admin.register_client(scopes=["billing", "tickets"])
        return Shim(
            self.idp.url,
            client["client_id"],
            client_secret=client["client_secret"],
            default_audience=self.api.url,
        )

    def close(self) -> None:
        self.admin.close()
        self.api.close()
        self.idp.close()
        self.workdir.cleanup()


def start_services() -> Services:
    workdir = tempfile.TemporaryDirectory()
    admin_token = secrets.token_urlsafe(32)
    idp = BackgroundServer()
    database = f"sqlite+aiosqlite:///{workdir.name}/idp.db"
    idp.start(create_app(IdPSettings(issuer=idp.url, db_url=database, admin_token=admin_token)))
    admin = AdminClient(idp.url, admin_token)
    admin.register_workflow(WORKFLOW)
    app = FastAPI()
    api = BackgroundServer()
    # Keys from the IdP's JWKS, revocations from its feed, a replay cache.
    install(app, Verifier.for_idp(idp.url, audience=api.url))
    services = Services(idp=idp, api=api, admin=admin, workdir=workdir)
    billing = Annotated[IntentTokenClaims, Security(require_intent(scopes=["billing"]))]
    tickets = Annotated[IntentTokenClaims, Security(require_intent(scopes=["tickets"]))]

    def record(claims: IntentTokenClaims) -> dict[str, str]:
        call = Call(
            claims.sub,
            claims.agent.id,
            claims.intent.step,
            claims.intent.tool,
            tuple(claims.chain),
        )
        services.calls.append(call)
        return {"status": "done"}

    @app.get("/invoices/{number}")
    def read_invoice(number: str, claims: billing) -> dict[str, str]:
        return record(claims)

    @app.post("/refunds")
    def refund(claims: billing) -> dict[str, str]:
        return record(claims)

    @app.post("/tickets/{ticket}/close")
    def close(ticket: str, claims: tickets) -> dict[str, str]:
        return record(claims)

    api.start(app)
    return services


def support_tools(shim: Shim, api_url: str) -> dict[str, BaseTool]:
    """The agents' tools: plain HTTP calls with ``shim.auth()``, secured with
    ``@ajwt_tool``."""

    def call_api(method: str, path: str) -> str:
        with httpx.Client(base_url=api_url, auth=shim.auth()) as http:
            return http.request(method, path).raise_for_status().text

    @ajwt_tool(shim)
    def get_invoice(number: str) -> str:
        """Fetch an invoice."""
        return call_api("GET", f"/invoices/{number}")

    @ajwt_tool(shim)
    def issue_refund(number: str) -> str:
        """Refund an invoice."""
        return call_api("POST", "/refunds")

    @ajwt_tool(shim)
    def close_ticket(ticket: str) -> str:
        """Close the support ticket."""
        return call_api("POST", f"/tickets/{ticket}/close")

    return {t.name: t for t in (get_invoice, issue_refund, close_ticket)}


def build_crew(tools: dict[str, BaseTool], turns: dict[str, list[Turn]]) -> Crew:
    """The support crew: billing and closer, managed by the manager CrewAI builds from
    ``manager_llm``. Secure it with ``secure_crew(crew, shim, AGENT_IDS)``."""
    llm = ScriptedLLM(model="scripted-support-model", turns=turns)
    billing = Agent(
        role="Billing agent",
        goal="Settle {customer}'s bills.",
        backstory="You work in billing.",
        tools=[tools["get_invoice"], tools["issue_refund"]],
        llm=llm,
    )
    closer = Agent(
        role="Ticket closer",
        goal="Close settled tickets.",
        backstory="You keep the queue clean.",
        tools=[tools["close_ticket"]],
        llm=llm,
    )
    task = Task(
        description="{customer} was charged twice for invoice INV-42 (ticket T-7).",
        expected_output="What was done.",
    )
    return Crew(
        agents=[billing, closer],
        tasks=[task],
        process=Process.hierarchical,
        manager_llm=llm,
    )


def draft_crew() -> Crew:
    """The crew with unsecured stand-in tools: what ``ajwt workflow export`` reads."""
    shim = Shim("http://127.0.0.1:9", "draft", client_secret="unused")
    return build_crew(support_tools(shim, "http://127.0.0.1:9"), BEFORE_PAUSE)


def draft_app() -> tuple[Crew, dict[str, str]]:
    """The crew and its role → agent id mapping (what ``secure_crew`` is given): the CLI
    drafts and prints manifests with the app's agent ids."""
    return draft_crew(), dict(AGENT_IDS)


def support_flow(shim: Shim, services: Services, user_token: str) -> type[Flow[Any]]:
    """The flow class: each kickoff runs the crew for the next part of the ticket, in the
    run its persisted state carries (``flow_run``); the bindings of each part are kept
    in ``bindings``."""
    tools = support_tools(shim, services.api_url)
    persistence = SQLiteFlowPersistence(os.path.join(services.workdir.name, "flows.db"))
    bindings: list[CrewAIBinding] = []

    @persist(persistence)
    class SupportFlow(Flow[dict[str, Any]]):
        @start()
        def handle_ticket(self) -> str:
            run = flow_run(
                shim, self.state, user_token=user_token, workflow="support", intent="refund"
            )
            turns = AFTER_PAUSE if self.state.get("refunded") else BEFORE_PAUSE
            crew = build_crew(tools, turns)
            bindings.append(secure_crew(crew, shim, AGENT_IDS))
            with shim.run(run):
                crew.kickoff(inputs={"customer": "Alice"})
            self.state["refunded"] = True
            save_run(shim, self.state, run)
            return run.run_id

    SupportFlow.bindings = bindings  # type: ignore[attr-defined]
    return SupportFlow


def main() -> int:
    services = start_services()
    shim = services.new_shim()
    try:
        support = support_flow(shim, services, services.admin.user_token("alice"))
        first = support()
        run_id = first.kickoff()
        print("-- the customer is asked to confirm; later, the flow is restored --")
        again = support()
        again.kickoff(inputs={"id": first.state["id"]})
        for call in services.calls:
            print(call)
        refusals = [r for b in support.bindings for r in b.refusals]  # type: ignore[attr-defined]
        print(f"run {run_id}: {len(services.calls)} API calls, {len(refusals)} refusals")
        return 0 if not refusals else 1
    finally:
        shim.close()
        services.close()
