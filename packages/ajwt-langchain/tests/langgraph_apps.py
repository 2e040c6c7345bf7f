"""Apps as newcomers build them, over HTTP: a real IdP, a protected tool API that records
who called it (user, agent, step, tool, chain), LangChain tools calling it, and a
scripted chat model. Used by the adapter's end-to-end tests of issue 14.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import Field

from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.rs import AJWTMiddleware, IdPRevocationChecker, JWKSCache, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Run, Shim
from ajwt_core.workflow import Workflow

USER = "user:alice"
#: Every call the API accepted: (user, agent, step, tool, chain).
Call = tuple[str, str, str, str, tuple[str, ...]]


@dataclass
class Recorded:
    run_id: str
    user: str
    agent: str
    step: str
    tool: str
    chain: tuple[str, ...]
    argument: str

    @property
    def call(self) -> Call:
        return (self.user, self.agent, self.step, self.tool, self.chain)


@dataclass
class ToolApi:
    """The protected API: ``POST /tools/<name>`` answers and records the verified caller."""

    calls: list[Recorded] = field(default_factory=list)

    def app(self, verifier: Verifier) -> Any:
        api = FastAPI()

        @api.post("/tools/{tool}")
        async def call(tool: str, request: Request) -> dict[str, Any]:
            claims = request.state.ajwt.claims
            body = await request.json()
            self.calls.append(
                Recorded(
                    run_id=claims.intent.run_id,
                    user=claims.sub,
                    agent=claims.agent.id,
                    step=claims.intent.step,
                    tool=str(claims.intent.tool),
                    chain=tuple(claims.chain),
                    argument=str(body.get("item", "")),
                )
            )
            return {"tool": tool, "ok": True, "item": body.get("item", "")}

        return AJWTMiddleware(api, verifier=verifier)

    def of(self, run: Run) -> list[Call]:
        return [c.call for c in self.calls if c.run_id == run.run_id]


@dataclass
class Env:
    """An IdP and the tool API on 127.0.0.1 (one per test module)."""

    idp_url: str
    api_url: str
    admin: AdminClient
    api: ToolApi
    servers: list[BackgroundServer]

    def workflow(self, steps: dict[str, Any], *, prefix: str = "wf") -> Workflow:
        workflow = Workflow.from_mapping(
            {"id": f"{prefix}-{secrets.token_hex(4)}", "version": 1, "steps": steps}
        )
        self.admin.register_workflow(workflow.canonical())
        return workflow

    def shim(self, *, local_checks: bool = True, scopes: Sequence[str] = ()) -> Shim:
        client = self.admin.register_client(
            "app-" + secrets.token_hex(6), scopes=list(scopes) or ["tools"]
        )
        return Shim(
            self.idp_url,
            client["client_id"],
            client_secret=client["client_secret"],
            default_audience=self.api_url,
            local_checks=local_checks,
        )

    def start(self, shim: Shim, workflow: Workflow, user: str = USER) -> Run:
        return shim.start_run(self.admin.user_token(user), workflow.id, intent="test")

    def close(self) -> None:
        self.admin.close()
        for server in reversed(self.servers):
            server.close()


def start_env(db: Path, *, token_lifetime: int | None = None) -> Env:
    idp = BackgroundServer()
    admin_token = secrets.token_urlsafe(32)
    settings = IdPSettings(
        issuer=idp.url, db_url=f"sqlite+aiosqlite:///{db}", admin_token=admin_token
    )
    if token_lifetime is not None:
        settings.token_lifetime = token_lifetime
    idp.start(create_app(settings))
    api_server = BackgroundServer()
    verifier = Verifier(
        issuer=idp.url,
        audience=api_server.url,
        keys=JWKSCache(idp.url + "/.well-known/jwks.json", min_refresh=1.0),
        revocation=IdPRevocationChecker(idp.url, ttl=0.0),
    )
    api = ToolApi()
    api_server.start(api.app(verifier))
    return Env(idp.url, api_server.url, AdminClient(idp.url, admin_token), api, [idp, api_server])


# -------------------------------------------------------------------------- tools


def api_tool(name: str, shim: Shim, api_url: str, description: str | None = None) -> BaseTool:
    """A LangChain tool that posts to the API's ``/tools/<name>`` (sync and async)."""

    def call(item: str = "") -> str:
        with httpx.Client(base_url=api_url, auth=shim.auth(), timeout=10) as http:
            response = http.post(f"/tools/{name}", json={"item": item})
        response.raise_for_status()
        return response.text

    async def acall(item: str = "") -> str:
        async with httpx.AsyncClient(base_url=api_url, auth=shim.auth(), timeout=10) as http:
            response = await http.post(f"/tools/{name}", json={"item": item})
        response.raise_for_status()
        return response.text

    return StructuredTool.from_function(
        call, coroutine=acall, name=name, description=description or f"Call {name}."
    )


# -------------------------------------------------------------------------- model

Reply = AIMessage | str


class ScriptedModel(BaseChatModel):
    """A chat model playing its replies in order (each test builds its own)."""

    model: str = "scripted"
    temperature: float = 0.0
    replies: list[Any] = Field(default_factory=list, exclude=True)
    script: Callable[[Sequence[BaseMessage]], Any] | None = Field(default=None, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.script is not None:
            reply = self.script(messages)
        else:
            reply = self.replies.pop(0) if self.replies else "Done."
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=reply)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


def calls(*names: str | tuple[str, dict[str, Any]]) -> AIMessage:
    """A model reply calling these tools (``name`` or ``(name, args)``)."""
    tool_calls = []
    for name in names:
        tool, args = (name, {}) if isinstance(name, str) else name
        tool_calls.append(
            {"name": tool, "args": args, "id": f"call-{secrets.token_hex(4)}", "type": "tool_call"}
        )
    return AIMessage(content="", tool_calls=tool_calls)


def model(*replies: Reply) -> ScriptedModel:
    return ScriptedModel(replies=list(replies))


def env_fixture(tmp: Path, **kw: Any) -> Iterator[Env]:
    env = start_env(tmp / "idp.db", **kw)
    yield env
    env.close()


def post(env: Env, shim: Shim, tool: str, item: str = "") -> dict[str, Any]:
    """A raw HTTP call to the API's ``/tools/<tool>`` with the shim's auth."""
    with httpx.Client(base_url=env.api_url, auth=shim.auth(), timeout=10) as http:
        response = http.post(f"/tools/{tool}", json={"item": item})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body
