"""A-JWT for CrewAI: per-agent identity, intent and delegation for a crew.

The integration::

    shim = Shim(idp_url, client_id, client_secret=secret, default_audience=api_url)

    @ajwt_tool(shim)
    def read_file(repo: str, path: str) -> str:
        '''Read one file of a repository.'''
        with httpx.Client(auth=shim.auth()) as http:
            return http.get(f"{api_url}/repos/{repo}/files/{path}").text

    secure_crew(crew, shim, {"Dependency planner": "planner", ...})
    with shim.run(shim.start_run(user_token, "vuln-patch")):
        crew.kickoff(inputs={"org": "acme"})

What each piece maps onto the shim: :func:`manifest_from_crewai` (an agent's manifest),
:func:`secure_crew` (registration and the CrewAI hooks), :func:`ajwt_tool` /
:func:`secure_tool` (a tool call: ``prepare``, ``acting``, ``tool_finished``), and the
delegation hook (CrewAI's delegate/ask coworker tools and the hierarchical manager:
``handoff`` and ``complete``). See ``docs/crewai.md``.
"""

from ajwt_crewai.binding import CrewAIBinding, Handoff, Refusal, binding_for, secure_crew
from ajwt_crewai.hooks import DELEGATION_TOOLS, install_hooks, uninstall_hooks
from ajwt_crewai.manifest import (
    agent_prompt,
    default_agent_id,
    llm_config,
    manifest_from_crewai,
    tool_spec,
)
from ajwt_crewai.tools import AJWTTool, ajwt_tool, secure_tool

__all__ = [
    "DELEGATION_TOOLS",
    "AJWTTool",
    "CrewAIBinding",
    "Handoff",
    "Refusal",
    "agent_prompt",
    "ajwt_tool",
    "binding_for",
    "default_agent_id",
    "install_hooks",
    "llm_config",
    "manifest_from_crewai",
    "secure_crew",
    "secure_tool",
    "tool_spec",
    "uninstall_hooks",
]
