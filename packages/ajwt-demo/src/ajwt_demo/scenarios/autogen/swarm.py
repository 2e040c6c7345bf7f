"""The DESIGN §11 vulnerability patcher as an AutoGen ``Swarm``, with or without A-JWT.

Reusable: :func:`build_patcher_swarm` builds the four agents (same prompts, tools and
model configuration as the reference manifests in ``ajwt_demo.agents``), secures them
with :func:`ajwt_autogen.secure_agent` (unless built without a shim, for the plain-OAuth
baseline) and returns the ``Swarm``; :func:`run_patcher` runs it for one A-JWT run and
:func:`run_plain` runs the same agents and tools with a plain ``httpx.Auth``.

The supervisor lists the repositories and hands off to the planner, which reads the
dependency manifests and hands off to the classifier, which looks up advisories and
hands off to the patcher, which opens the pull requests: a chain of delegations
``supervisor → planner → classifier → patcher``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.messages import TextMessage
from autogen_agentchat.teams import Swarm
from autogen_core.tools import BaseTool

from ajwt_autogen import binding_of, register_agents, secure_agent
from ajwt_core.checksum import PromptSpec
from ajwt_core.shim import Run, Shim
from ajwt_demo.agents import AGENT_TOOLS, MODEL_CONFIG, PROMPTS
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient, Turn, call
from ajwt_demo.scenarios.autogen.tools import PatcherApi

AGENTS = ("supervisor", "planner", "classifier", "patcher")
HANDOFFS: dict[str, list[str]] = {
    "supervisor": ["planner"],
    "planner": ["classifier"],
    "classifier": ["patcher"],
    "patcher": [],
}
TASK = "Find and patch the vulnerable dependencies in acme's repositories."

#: What each agent's model does, turn by turn (real function calls and handoffs).
SCRIPTS: dict[str, list[Turn]] = {
    "supervisor": [[call("list_repos")], [call("transfer_to_planner")]],
    "planner": [
        [
            call("read_file", repo="acme/storefront", path="package.json"),
            call("read_file", repo="acme/billing", path="requirements.txt"),
        ],
        [call("transfer_to_classifier")],
    ],
    "classifier": [
        [call("query_advisories", package=p) for p in ("lodash", "express", "requests", "pyyaml")],
        [call("transfer_to_patcher")],
    ],
    "patcher": [
        [
            call("create_pull_request", repo="acme/storefront", title="Bump lodash to 4.17.21",
                 head="fix/lodash"),
            call("create_pull_request", repo="acme/billing", title="Bump requests to 2.20.0",
                 head="fix/requests"),
            call("create_pull_request", repo="acme/billing", title="Bump pyyaml to 5.4",
                 head="fix/pyyaml"),
        ],
        "Opened 3 pull requests for lodash, requests and pyyaml. TERMINATE",
    ],
}  # fmt: skip


def prompt_of(agent_id: str, org: str) -> tuple[PromptSpec, dict[str, str]]:
    """The agent's prompt template (as in the reference manifest) and its values."""
    template = PROMPTS[agent_id]
    variables = ["org"] if "{org}" in template else []
    values = {"org": org} if variables else {}
    return PromptSpec(template=template, variables=variables), values


def build_agent(
    agent_id: str,
    model_client: ScriptedChatCompletionClient,
    tools: Mapping[str, BaseTool[Any, Any]],
    *,
    org: str = "acme",
    handoffs: Sequence[str] = (),
    tool_names: Sequence[str] | None = None,
) -> AssistantAgent:
    """One reference agent as a plain AutoGen ``AssistantAgent`` (not yet secured).

    ``tool_names`` replaces the agent's reference tools (the tests give an agent a tool
    outside its step).
    """
    prompt, values = prompt_of(agent_id, org)
    return AssistantAgent(
        agent_id,
        model_client,
        tools=[tools[name] for name in (tool_names or AGENT_TOOLS[agent_id])],
        handoffs=list(handoffs) or None,
        system_message=prompt.render(values).text,
        description=PROMPTS[agent_id].splitlines()[0].format(org=org),
        max_tool_iterations=4,
    )


def scripted_model(script: Sequence[Turn]) -> ScriptedChatCompletionClient:
    """A scripted client with the reference model configuration."""
    return ScriptedChatCompletionClient(
        script, model=MODEL_CONFIG["model"], temperature=MODEL_CONFIG["temperature"]
    )


@dataclass
class PatcherTeam:
    """A built swarm, its agents and the HTTP clients its tools use."""

    swarm: Swarm
    agents: dict[str, AssistantAgent]
    models: dict[str, ScriptedChatCompletionClient]
    api: PatcherApi
    handoffs: dict[str, list[str]] = field(default_factory=dict)

    async def aclose(self) -> None:
        await self.api.aclose()


def build_patcher_swarm(
    shim: Shim | None,
    rs_url: str,
    *,
    auth: httpx.Auth | None = None,
    org: str = "acme",
    run: Run | None = None,
    scripts: Mapping[str, Sequence[Turn]] | None = None,
    handoffs: Mapping[str, Sequence[str]] | None = None,
    agent_tools: Mapping[str, Sequence[str]] | None = None,
    max_messages: int = 40,
) -> PatcherTeam:
    """Build the four agents, secure them with ``shim`` and put them in a ``Swarm``.

    The tools call ``rs_url`` through ``auth`` (default: ``shim.auth()``). Without a
    shim the same agents and tools are built but nothing is secured: no registration,
    no wrapped tools, no signed handoffs (the plain-OAuth baseline; ``auth`` is then
    required, e.g. the application's bearer token).

    ``scripts``, ``handoffs`` and ``agent_tools`` replace the default model scripts,
    handoff targets and tools per agent (the tests use them to script attacks). Each
    call builds fresh agents: build one team per concurrent run. ``run`` pins the agents
    to one run (default: the shim's current run when they act).
    """
    the_scripts = {**SCRIPTS, **(scripts or {})}
    the_handoffs = {n: list(t) for n, t in {**HANDOFFS, **(handoffs or {})}.items()}
    if auth is None:
        if shim is None:
            raise ValueError("a swarm built without a shim needs auth=")
        auth = shim.auth()
    api = PatcherApi(rs_url, auth)
    tools = api.tools()
    models = {name: scripted_model(the_scripts[name]) for name in AGENTS}
    agents: dict[str, AssistantAgent] = {}
    for name in AGENTS:
        prompt, values = prompt_of(name, org)
        agent = build_agent(
            name,
            models[name],
            tools,
            org=org,
            handoffs=the_handoffs[name],
            tool_names=(agent_tools or {}).get(name),
        )
        if shim is not None:
            agent = secure_agent(
                agent, shim, run=run, prompt=prompt, prompt_values=values, register=False
            )
        agents[name] = agent
    if shim is not None:
        # The four in one request (none when the shim holds them from an earlier run).
        register_agents([binding for a in agents.values() if (binding := binding_of(a))])
    termination = TextMentionTermination("TERMINATE") | MaxMessageTermination(max_messages)
    swarm = Swarm(list(agents.values()), termination_condition=termination)
    return PatcherTeam(swarm, agents, models, api, the_handoffs)


async def run_patcher(
    shim: Shim, run: Run, rs_url: str, *, org: str = "acme", task: str = TASK
) -> TaskResult:
    """Run the patcher swarm for ``run``; the last agent's step is completed at the end."""
    team = build_patcher_swarm(shim, rs_url, org=org, run=run)
    try:
        with shim.run(run):
            result = await team.swarm.run(task=task)
        if team.models["patcher"].remaining == 0:
            # The patcher hands off to no one: its work is done when its script is.
            await shim.acomplete("patcher", run=run)
    finally:
        await team.aclose()
    return result


async def run_plain(
    rs_url: str, auth: httpx.Auth, *, org: str = "acme", task: str = TASK
) -> TaskResult:
    """Run the same swarm without A-JWT: every tool call uses ``auth``."""
    team = build_patcher_swarm(None, rs_url, auth=auth, org=org)
    try:
        return await team.swarm.run(task=task)
    finally:
        await team.aclose()


def final_answer(result: TaskResult) -> str:
    """The last text an agent answered (the termination keyword removed)."""
    texts = [m for m in result.messages if isinstance(m, TextMessage)]
    if not texts:
        return ""
    return texts[-1].content.replace("TERMINATE", "").strip()
