"""A-JWT for AutoGen (autogen-agentchat / autogen-core 0.7).

A few lines put an AutoGen team under A-JWT::

    shim = Shim(idp_url, client_id, client_secret=secret, default_audience=api_url)
    team = secure_team(Swarm([triage, billing], termination_condition=stop), shim)
    with shim.run(shim.start_run(user_token, "support")):
        await team.run(task="Refund invoice 42.")

Every tool call then mints (or reuses) the acting agent's intent token for its workflow
step and tool, every hand-off is a signed delegation, and every refusal is a tool error
the agent sees. See ``docs/autogen.md``.
"""

from ajwt_autogen.adapter import AutoGenAdapter
from ajwt_autogen.agent import binding_of, secure_agent
from ajwt_autogen.binding import AgentBinding, register_agent, register_agents
from ajwt_autogen.delegation import adelegate, ahandover, areturn
from ajwt_autogen.draft import draft_workflow, team_manifests
from ajwt_autogen.manifest import (
    manifest_from_autogen,
    model_client_config,
    model_context_config,
    tool_spec,
)
from ajwt_autogen.resume import saved_run_id
from ajwt_autogen.team import TeamBinding, run_of, secure_team
from ajwt_autogen.tool import AJWTTool, AJWTWorkbench

__all__ = [
    "AJWTTool",
    "AJWTWorkbench",
    "AgentBinding",
    "AutoGenAdapter",
    "TeamBinding",
    "adelegate",
    "ahandover",
    "areturn",
    "binding_of",
    "draft_workflow",
    "manifest_from_autogen",
    "model_client_config",
    "model_context_config",
    "register_agent",
    "register_agents",
    "run_of",
    "saved_run_id",
    "secure_agent",
    "secure_team",
    "team_manifests",
    "tool_spec",
]
