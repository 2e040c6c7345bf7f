"""The wheel test's default program: a secured LangChain tool calling a protected API.

Runs against the installed ``ajwt-core[idp]`` and ``ajwt-langchain`` only (no file of
the repository): it starts an IdP in this process, registers a workflow and a client
as an operator would, puts a FastAPI app behind ``AJWTMiddleware``, registers an
agent from its live LangChain prompt, tool and model, and calls the tool through the
adapter's callback handler. The API answers with the verified caller; an agent whose
tool is not in its workflow step is refused before its tool runs. Prints ``ok``.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tools import tool

from ajwt_core import AJWTError, AJWTMiddleware, JWKSCache, Reason, Shim, Verifier
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.server import BackgroundServer
from ajwt_langchain import AJWTCallbackHandler, manifest_from_langchain

ADMIN_TOKEN = secrets.token_urlsafe(24)
WORKFLOW = {
    "id": "report",
    "version": 1,
    "steps": {"fetch": {"agent": "reader", "tools": ["get_report"], "scopes": ["reports:read"]}},
}


reports_api = FastAPI()


@reports_api.get("/reports/{name}")
def report(name: str, request: Request) -> dict[str, str]:
    """The protected API: answers with who called, as the middleware verified it."""
    claims = request.state.ajwt.claims
    return {"user": claims.sub, "agent": claims.agent.id, "step": claims.intent.step}


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    idp = BackgroundServer()
    idp.start(
        create_app(
            IdPSettings(
                issuer=idp.url,
                db_url=f"sqlite+aiosqlite:///{folder / 'idp.db'}",
                admin_token=ADMIN_TOKEN,
            )
        )
    )
    admin = AdminClient(idp.url, ADMIN_TOKEN)
    admin.register_workflow(WORKFLOW)
    client = admin.register_client(scopes=["reports:read"])

    api = BackgroundServer()
    verifier = Verifier(
        issuer=idp.url, audience=api.url, keys=JWKSCache(idp.url + "/.well-known/jwks.json")
    )
    api.start(AJWTMiddleware(reports_api, verifier=verifier))

    shim = Shim(idp.url, client["client_id"], client_secret=client["client_secret"])

    @tool
    def get_report(name: str) -> str:
        """Fetch a report by name."""
        return httpx.get(f"{api.url}/reports/{name}", auth=shim.auth(), timeout=10).text

    model = FakeListChatModel(responses=["done"])
    shim.register(
        lambda: manifest_from_langchain(
            "Fetch the report asked for.", [get_report], model, agent_id="reader"
        )
    )
    run = shim.start_run(admin.user_token("user:alice"), "report", intent="read a report")
    with shim.run(run):
        answer = get_report.invoke(
            {"name": "q3"}, config={"callbacks": [AJWTCallbackHandler(shim, agent="reader")]}
        )
    assert json.loads(answer) == {"user": "user:alice", "agent": "reader", "step": "fetch"}

    # An agent the workflow does not name is refused before its tool runs.
    shim.register(
        manifest_from_langchain("Another prompt.", [get_report], model, agent_id="intruder")
    )
    refusal: AJWTError | None = None
    with shim.run(run):
        try:
            get_report.invoke(
                {"name": "q3"}, config={"callbacks": [AJWTCallbackHandler(shim, "intruder")]}
            )
        except AJWTError as exc:
            refusal = exc
    assert refusal is not None, "the intruder's tool call was not refused"
    assert refusal.reason == Reason.WRONG_AGENT_FOR_STEP, refusal

    for server in (api, idp):
        server.close()
    admin.close()
    print("ok")


if __name__ == "__main__":
    main()
