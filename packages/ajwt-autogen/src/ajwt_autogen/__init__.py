"""A-JWT for AutoGen (autogen-agentchat / autogen-core 0.7).

Five lines put an AutoGen team under A-JWT::

    shim = Shim(idp_url, client_id, client_secret=secret, default_audience=api_url)
    agents = [secure_agent(agent, shim) for agent in (supervisor, planner, patcher)]
    team = Swarm(agents, termination_condition=TextMentionTermination("TERMINATE"))
    with shim.run(shim.start_run(user_token, "vuln-patch")):
        await team.run(task="Patch the vulnerable dependencies.")

Every tool call then mints (or reuses) the acting agent's intent token for its workflow
step and tool, every handoff is a signed delegation, and every refusal is a tool error
the agent sees. See ``docs/autogen.md``.
"""

from ajwt_autogen.agent import secure_agent
from ajwt_autogen.binding import AgentBinding, register_agent
from ajwt_autogen.delegation import adelegate, ahandover, areturn
from ajwt_autogen.manifest import manifest_from_autogen, model_client_config, tool_spec
from ajwt_autogen.tool import AJWTTool

__all__ = [
    "AJWTTool",
    "AgentBinding",
    "adelegate",
    "ahandover",
    "areturn",
    "manifest_from_autogen",
    "model_client_config",
    "register_agent",
    "secure_agent",
    "tool_spec",
]
