"""The four agents of DESIGN §11 as LangChain objects: prompt, tools, model.

Each :class:`AgentSpec` is the live agent: the graph renders its prompt and binds its
tools and model at every turn, and the shim recomputes its manifest from the same
objects before every mint (``register_agents`` registers ``spec.manifest``, a
callable), so an agent changed after registration is refused (T4/T5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command
from pydantic import BaseModel, Field

from ajwt_core.checksum import AgentManifest
from ajwt_core.shim import Shim
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_demo.scenarios.langgraph.scripted import SCRIPTS, Script, ScriptedChatModel
from ajwt_langchain import manifest_from_langchain

PROMPTS = {
    "supervisor": (
        "You supervise a vulnerability-patching team for {org}.\n"
        "List the repositories, then hand each step to the right worker."
    ),
    "planner": "You plan the fix: read the dependency manifest of each repository.",
    "classifier": "You classify each dependency against the advisory database.",
    "patcher": "You open one pull request per vulnerable dependency, upgrading it.",
}


@dataclass
class AgentSpec:
    """One agent: what it is told, what it may call, which model runs it."""

    agent_id: str
    prompt: ChatPromptTemplate
    tools: list[BaseTool]
    model: BaseChatModel

    def manifest(self) -> AgentManifest:
        """The agent's manifest, extracted from the live objects."""
        return manifest_from_langchain(self.prompt, self.tools, self.model, agent_id=self.agent_id)


def chat_prompt(text: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages([("system", text), MessagesPlaceholder("messages")])


# ------------------------------------------------------------------------- tools


class ReadFileArgs(BaseModel):
    repo: str = Field(description="owner/name")
    path: str = Field(description="file path in the repository")


class QueryAdvisoriesArgs(BaseModel):
    package: str


class CreatePullRequestArgs(BaseModel):
    repo: str
    title: str
    head: str


def _text(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def make_tools(api: PatcherApi) -> dict[str, BaseTool]:
    """The four workflow tools, each calling the resource server (sync and async)."""

    def list_repos() -> str:
        return _text(api.get("/repos"))

    async def alist_repos() -> str:
        return _text(await api.aget("/repos"))

    def read_file(repo: str, path: str) -> str:
        return _text(api.get(f"/repos/{repo}/files/{path}"))

    async def aread_file(repo: str, path: str) -> str:
        return _text(await api.aget(f"/repos/{repo}/files/{path}"))

    def query_advisories(package: str) -> str:
        return _text(api.get("/advisories", params={"package": package}))

    async def aquery_advisories(package: str) -> str:
        return _text(await api.aget("/advisories", params={"package": package}))

    def create_pull_request(repo: str, title: str, head: str) -> str:
        return _text(api.post(f"/repos/{repo}/pulls", {"title": title, "head": head}))

    async def acreate_pull_request(repo: str, title: str, head: str) -> str:
        return _text(await api.apost(f"/repos/{repo}/pulls", {"title": title, "head": head}))

    return {
        "list_repos": StructuredTool.from_function(
            list_repos,
            coroutine=alist_repos,
            description="List the organisation's repositories with their dependencies.",
        ),
        "read_file": StructuredTool.from_function(
            read_file,
            coroutine=aread_file,
            description="Read one file of a repository.",
            args_schema=ReadFileArgs,
        ),
        "query_advisories": StructuredTool.from_function(
            query_advisories,
            coroutine=aquery_advisories,
            description="Look up security advisories for a package.",
            args_schema=QueryAdvisoriesArgs,
        ),
        "create_pull_request": StructuredTool.from_function(
            create_pull_request,
            coroutine=acreate_pull_request,
            description="Open a pull request that upgrades a vulnerable dependency.",
            args_schema=CreatePullRequestArgs,
        ),
    }


def handoff_tool(agent: str) -> BaseTool:
    """A supervisor-style hand-off tool: ``transfer_to_<agent>`` jumps to that node.

    Shaped like langgraph-supervisor's: it answers its own call and returns
    ``Command(goto=agent, graph=Command.PARENT)`` with the conversation so far.
    """
    name = f"transfer_to_{agent}"

    @tool(name, description=f"Hand the next step to the {agent}.")
    def transfer(
        state: Annotated[dict[str, Any], InjectedState],
        tool_call_id: Annotated[str, InjectedToolCallId],
    ) -> Command[Any]:
        answer = ToolMessage(f"Handed over to {agent}.", name=name, tool_call_id=tool_call_id)
        return Command(
            goto=agent,
            graph=Command.PARENT,
            update={"messages": [*state["messages"], answer]},
        )

    transfer.metadata = {"__handoff_destination": agent}
    return transfer


# ------------------------------------------------------------------------ agents


def patcher_agents(
    api: PatcherApi, *, scripts: Mapping[str, Script] | None = None
) -> dict[str, AgentSpec]:
    """The four agents, their tools calling ``api``; ``scripts`` replaces model scripts."""
    tools = make_tools(api)
    the_scripts = {**SCRIPTS, **(scripts or {})}
    own_tools = {
        "supervisor": [tools["list_repos"], handoff_tool("planner"), handoff_tool("classifier")],
        "planner": [tools["read_file"]],
        "classifier": [tools["query_advisories"]],
        "patcher": [tools["create_pull_request"]],
    }
    return {
        agent: AgentSpec(
            agent_id=agent,
            prompt=chat_prompt(PROMPTS[agent]),
            tools=own_tools[agent],
            model=ScriptedChatModel(script=the_scripts[agent]),
        )
        for agent in PROMPTS
    }


def register_agents(shim: Shim, agents: Mapping[str, AgentSpec]) -> None:
    """Register the live agents (one batch, of those the shim does not already hold with
    the same checksum): the shim re-extracts them before each mint."""
    shim.ensure_registered([spec.manifest for spec in agents.values()])
