"""The four agents of the reference workflow (DESIGN §11) as hand-written manifests.

Every adapter's example builds the same agents from its framework's objects; the
manifests here are what their extraction must reproduce (same checksum).
"""

from __future__ import annotations

from typing import Any

from ajwt_core.checksum import AgentManifest, PromptSpec, ToolSpec

MODEL_CONFIG: dict[str, Any] = {"model": "scripted-patcher-model", "temperature": 0.0}

TOOLS: dict[str, ToolSpec] = {
    "list_repos": ToolSpec(
        name="list_repos",
        description="List the organisation's repositories with their dependencies.",
        parameters={"type": "object", "properties": {}, "required": []},
    ),
    "read_file": ToolSpec(
        name="read_file",
        description="Read one file of a repository.",
        parameters={
            "type": "object",
            "properties": {
                "repo": {"type": "string", "description": "owner/name"},
                "path": {"type": "string", "description": "file path in the repository"},
            },
            "required": ["repo", "path"],
        },
    ),
    "query_advisories": ToolSpec(
        name="query_advisories",
        description="Look up security advisories for a package.",
        parameters={
            "type": "object",
            "properties": {"package": {"type": "string"}},
            "required": ["package"],
        },
    ),
    "create_pull_request": ToolSpec(
        name="create_pull_request",
        description="Open a pull request that upgrades a vulnerable dependency.",
        parameters={
            "type": "object",
            "properties": {
                "repo": {"type": "string"},
                "title": {"type": "string"},
                "head": {"type": "string"},
            },
            "required": ["repo", "title", "head"],
        },
    ),
}

PROMPTS: dict[str, str] = {
    "supervisor": (
        "You supervise a vulnerability-patching team for {org}.\n"
        "List the repositories, then hand each step to the right worker."
    ),
    "planner": "You plan the fix: read the dependency manifest of each repository.",
    "classifier": "You classify each dependency against the advisory database.",
    "patcher": "You open one pull request per vulnerable dependency, upgrading it.",
}

AGENT_TOOLS: dict[str, list[str]] = {
    "supervisor": ["list_repos"],
    "planner": ["read_file"],
    "classifier": ["query_advisories"],
    "patcher": ["create_pull_request"],
}


def reference_manifest(agent_id: str, *, prompt: str | None = None) -> AgentManifest:
    """The manifest of one reference agent (``prompt`` overrides its template)."""
    template = prompt if prompt is not None else PROMPTS[agent_id]
    variables = ["org"] if "{org}" in template else []
    return AgentManifest(
        agent_id=agent_id,
        prompt=PromptSpec(template=template, variables=variables),
        tools=[TOOLS[name] for name in AGENT_TOOLS[agent_id]],
        config=dict(MODEL_CONFIG),
    )


def reference_manifests() -> list[AgentManifest]:
    return [reference_manifest(agent) for agent in AGENT_TOOLS]
