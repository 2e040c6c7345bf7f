"""The DESIGN §11 vulnerability patcher as a CrewAI crew (importable and reusable).

A supervisor lists the repositories, then delegates each later step to its worker with
CrewAI's ``delegate_work_to_coworker`` tool: the planner reads the dependency manifests,
the classifier looks the packages up in the advisory database, the patcher opens the
pull requests. The tools are plain CrewAI tools calling the reference resource server
with an ``httpx.Auth``; secured (:func:`reference_tools`), each is wrapped with
:func:`ajwt_crewai.secure_tool` and calls with ``shim.auth()``; for the plain-OAuth
baseline (:func:`plain_tools`) they call with the application's bearer token. The LLM
is a script of real tool calls (no model, no key).

The agents' backstory and goal are the reference prompts, so each extracts to the same
manifest (same checksum) as ``ajwt_demo.agents.reference_manifest``.
"""

# No ``from __future__ import annotations`` here: CrewAI builds the tools' argument
# schemas from the functions' annotations, which must be real types.

from typing import Annotated, Any

import httpx
from crewai import Agent, Crew, Process, Task
from crewai.tools import BaseTool, tool
from pydantic import Field

from ajwt_core.shim import Shim
from ajwt_crewai.testing import ScriptedLLM, Turn
from ajwt_crewai.tools import secure_tool
from ajwt_demo.agents import MODEL_CONFIG

#: CrewAI role → workflow agent id (the roles are free text; the ids are the workflow's).
AGENT_IDS = {
    "Security supervisor": "supervisor",
    "Dependency planner": "planner",
    "Advisory classifier": "classifier",
    "Patch author": "patcher",
}

#: The org the crew is kicked off for (fills ``{org}`` in the supervisor's backstory).
INPUTS = {"org": "acme"}


def _delegate(coworker: str, task: str) -> list[tuple[str, dict[str, Any]]]:
    arguments = {
        "task": task,
        "context": "Repositories of the acme organisation.",
        "coworker": coworker,
    }
    return [("delegate_work_to_coworker", arguments)]


def _pull(repo: str, package: str, version: str) -> tuple[str, dict[str, Any]]:
    arguments = {"repo": repo, "title": f"Bump {package} to {version}", "head": f"fix/{package}"}
    return ("create_pull_request", arguments)


#: What the scripted model answers, per agent role: tool calls, then a final answer.
TURNS: dict[str, list[Turn]] = {
    "Security supervisor": [
        [("list_repos", {})],
        _delegate("Dependency planner", "Read the dependency manifest of each repository."),
        _delegate("Advisory classifier", "Classify lodash, express, requests and pyyaml."),
        _delegate("Patch author", "Upgrade lodash, requests and pyyaml."),
        "Opened pull requests for lodash, requests and pyyaml.",
    ],
    "Dependency planner": [
        [
            ("read_file", {"repo": "acme/storefront", "path": "package.json"}),
            ("read_file", {"repo": "acme/billing", "path": "requirements.txt"}),
        ],
        "storefront: lodash 4.17.15, express 4.17.1; billing: requests 2.19.0, pyyaml 5.3.",
    ],
    "Advisory classifier": [
        [("query_advisories", {"package": p}) for p in ("lodash", "express", "requests", "pyyaml")],
        "Vulnerable: lodash (high), requests (moderate), pyyaml (critical).",
    ],
    "Patch author": [
        [_pull("acme/storefront", "lodash", "4.17.21")],
        [_pull("acme/billing", "requests", "2.20.0"), _pull("acme/billing", "pyyaml", "5.4")],
        "Opened three pull requests.",
    ],
}


def scripted_llm(turns: dict[str, list[Turn]] | None = None) -> ScriptedLLM:
    """The deterministic model of the reference agents (``MODEL_CONFIG``'s model)."""
    return ScriptedLLM(
        model=MODEL_CONFIG["model"],
        temperature=MODEL_CONFIG["temperature"],
        turns=TURNS if turns is None else turns,
    )


def _checked(response: httpx.Response) -> str:
    # A refusal by the resource server is an error the agent sees as the tool's result.
    response.raise_for_status()
    return response.text


def plain_tools(api_url: str, auth: httpx.Auth) -> dict[str, BaseTool]:
    """The four tools of the reference workflow as plain CrewAI tools (nothing secured),
    calling the API at ``api_url`` with ``auth``."""

    def client() -> httpx.Client:
        return httpx.Client(base_url=api_url, auth=auth, timeout=10.0)

    @tool("list_repos")
    def list_repos() -> str:
        """List the organisation's repositories with their dependencies."""
        with client() as http:
            return _checked(http.get("/repos"))

    @tool("read_file")
    def read_file(
        repo: Annotated[str, Field(description="owner/name")],
        path: Annotated[str, Field(description="file path in the repository")],
    ) -> str:
        """Read one file of a repository."""
        with client() as http:
            return _checked(http.get(f"/repos/{repo}/files/{path}"))

    @tool("query_advisories")
    def query_advisories(package: str) -> str:
        """Look up security advisories for a package."""
        with client() as http:
            return _checked(http.get("/advisories", params={"package": package}))

    @tool("create_pull_request")
    def create_pull_request(repo: str, title: str, head: str) -> str:
        """Open a pull request that upgrades a vulnerable dependency."""
        with client() as http:
            return _checked(http.post(f"/repos/{repo}/pulls", json={"title": title, "head": head}))

    tools: list[BaseTool] = [list_repos, read_file, query_advisories, create_pull_request]
    return {t.name: t for t in tools}


def reference_tools(shim: Shim, api_url: str) -> dict[str, BaseTool]:
    """The four tools secured with ``shim`` (each run bound to the calling agent),
    calling the API at ``api_url`` with ``shim.auth()``."""
    tools = plain_tools(api_url, shim.auth())
    return {name: secure_tool(t, shim) for name, t in tools.items()}


def reference_agents(tools: dict[str, BaseTool], llm: ScriptedLLM) -> dict[str, Agent]:
    """The four agents, by workflow id. Backstory + goal are the reference prompts."""
    return {
        "supervisor": Agent(
            role="Security supervisor",
            backstory="You supervise a vulnerability-patching team for {org}.",
            goal="List the repositories, then hand each step to the right worker.",
            tools=[tools["list_repos"]],
            allow_delegation=True,
            llm=llm,
        ),
        "planner": Agent(
            role="Dependency planner",
            backstory="",
            goal="You plan the fix: read the dependency manifest of each repository.",
            tools=[tools["read_file"]],
            llm=llm,
        ),
        "classifier": Agent(
            role="Advisory classifier",
            backstory="",
            goal="You classify each dependency against the advisory database.",
            tools=[tools["query_advisories"]],
            llm=llm,
        ),
        "patcher": Agent(
            role="Patch author",
            backstory="",
            goal="You open one pull request per vulnerable dependency, upgrading it.",
            tools=[tools["create_pull_request"]],
            llm=llm,
        ),
    }


def build_crew(
    shim: Shim | None,
    api_url: str,
    *,
    auth: httpx.Auth | None = None,
    turns: dict[str, list[Turn]] | None = None,
) -> tuple[Crew, dict[str, Agent]]:
    """The patcher crew (sequential: one supervisor task that delegates) and its agents
    by workflow id. Secure it with ``secure_crew(crew, shim, AGENT_IDS)``.

    With a ``shim`` the tools are secured with it (they call with ``shim.auth()`` unless
    ``auth`` is given). Without one, the same agents get plain tools calling with
    ``auth`` (required): the plain-OAuth baseline, which must not be secured.
    """
    if auth is None:
        if shim is None:
            raise ValueError("a crew built without a shim needs auth=")
        auth = shim.auth()
    tools = plain_tools(api_url, auth)
    if shim is not None:
        tools = {name: secure_tool(t, shim) for name, t in tools.items()}
    agents = reference_agents(tools, scripted_llm(turns))
    task = Task(
        description="Patch the vulnerable dependencies of the {org} repositories.",
        expected_output="The pull requests opened.",
        agent=agents["supervisor"],
    )
    crew = Crew(agents=list(agents.values()), tasks=[task], process=Process.sequential)
    return crew, agents
