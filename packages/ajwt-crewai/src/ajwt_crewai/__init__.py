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
delegation hook (CrewAI's "Delegate work to coworker" and the hierarchical manager:
``handoff`` and ``complete``; "Ask question to coworker": ``consult``),
:func:`flow_run` (a run kept in a Flow's state) and :func:`draft_workflow` (a workflow
draft from a crew). See ``docs/crewai.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ajwt_crewai.binding import (
        CrewAIBinding,
        Handoff,
        Refusal,
        binding_for,
        manager_from_llm,
        secure_crew,
    )
    from ajwt_crewai.cache import StepCache
    from ajwt_crewai.draft import crew_manifests, draft_workflow
    from ajwt_crewai.flows import flow_run, save_run
    from ajwt_crewai.hooks import DELEGATION_TOOLS, AJWTRefusal, install_hooks, uninstall_hooks
    from ajwt_crewai.manifest import (
        agent_prompt,
        default_agent_id,
        llm_config,
        manifest_from_crewai,
        tool_spec,
    )
    from ajwt_crewai.tools import AJWTTool, ajwt_tool, secure_tool

# The names are loaded on first use, so that importing a submodule that must run before
# ``crewai`` loads (``ajwt_demo.scenarios.crewai`` keeps CrewAI offline) does not load it.
_EXPORTS = {
    "CrewAIBinding": "ajwt_crewai.binding",
    "Handoff": "ajwt_crewai.binding",
    "Refusal": "ajwt_crewai.binding",
    "binding_for": "ajwt_crewai.binding",
    "secure_crew": "ajwt_crewai.binding",
    "manager_from_llm": "ajwt_crewai.binding",
    "StepCache": "ajwt_crewai.cache",
    "crew_manifests": "ajwt_crewai.draft",
    "draft_workflow": "ajwt_crewai.draft",
    "flow_run": "ajwt_crewai.flows",
    "save_run": "ajwt_crewai.flows",
    "AJWTRefusal": "ajwt_crewai.hooks",
    "DELEGATION_TOOLS": "ajwt_crewai.hooks",
    "install_hooks": "ajwt_crewai.hooks",
    "uninstall_hooks": "ajwt_crewai.hooks",
    "agent_prompt": "ajwt_crewai.manifest",
    "default_agent_id": "ajwt_crewai.manifest",
    "llm_config": "ajwt_crewai.manifest",
    "manifest_from_crewai": "ajwt_crewai.manifest",
    "tool_spec": "ajwt_crewai.manifest",
    "AJWTTool": "ajwt_crewai.tools",
    "ajwt_tool": "ajwt_crewai.tools",
    "secure_tool": "ajwt_crewai.tools",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "DELEGATION_TOOLS",
    "AJWTRefusal",
    "AJWTTool",
    "CrewAIBinding",
    "Handoff",
    "Refusal",
    "StepCache",
    "agent_prompt",
    "ajwt_tool",
    "binding_for",
    "crew_manifests",
    "default_agent_id",
    "draft_workflow",
    "flow_run",
    "install_hooks",
    "llm_config",
    "manager_from_llm",
    "manifest_from_crewai",
    "save_run",
    "secure_crew",
    "secure_tool",
    "tool_spec",
    "uninstall_hooks",
]
