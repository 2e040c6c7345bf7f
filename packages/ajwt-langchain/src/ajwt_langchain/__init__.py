"""A-JWT for LangChain and LangGraph: per-agent identity, intent and delegation.

Secure a compiled app in one call (its agents are read from the app, registered, and
every tool call and hand-off goes through A-JWT)::

    app = secure_graph(shim, builder.compile())
    with shim.run(shim.start_run(user_token, "support")):
        app.invoke({"messages": [("user", "Refund order 42.")]})

- :func:`secure_graph`: agents found in the app (``create_agent``,
  ``create_react_agent``, a supervisor's workers, a swarm's agents, ``ajwt_node``
  nodes), registered from their live objects, each ``ToolNode`` wrapped for its agent.
- :func:`ajwt_node`: a LangGraph node of your own acts as an agent; the node that
  routed to it hands it its step (edges, conditional edges, fan-out, ``Send``,
  ``Command(goto=...)``), and its return completes the step.
- :class:`AJWTToolWrapper` (``ToolNode``), :class:`AJWTAgentMiddleware`
  (``create_agent``), :class:`AJWTCallbackHandler` / :class:`AsyncAJWTCallbackHandler`
  (any LangChain tool): each tool call is checked and minted for before it runs, and
  its HTTP calls through ``shim.auth()`` carry agent, step, tool and delegation chain.
- :func:`agent_manifests`, :func:`manifest_from_langchain`: agent manifests (and so
  checksums) from an app, or from a prompt, tools and model.
- :func:`draft_workflow`: a workflow draft from the app's structure
  (``ajwt workflow export module:app``).
- :func:`run_config`, :func:`resume_thread`: the A-JWT run travels with a
  checkpointer thread, and is picked up in another process.
"""

from ajwt_langchain.adapter import LangGraphAdapter
from ajwt_langchain.agents import GraphAgent, agent_manifests, find_agents
from ajwt_langchain.callbacks import AJWTCallbackHandler, AsyncAJWTCallbackHandler
from ajwt_langchain.draft import draft_workflow
from ajwt_langchain.manifest import (
    is_handoff_tool,
    manifest_from_langchain,
    model_config,
    prompt_spec,
    tool_spec,
)
from ajwt_langchain.middleware import AJWTAgentMiddleware
from ajwt_langchain.nodes import ajwt_node
from ajwt_langchain.secure import secure_graph
from ajwt_langchain.threads import aresume_thread, resume_thread, run_config
from ajwt_langchain.tools import AJWTToolWrapper

__all__ = [
    "AJWTAgentMiddleware",
    "AJWTCallbackHandler",
    "AJWTToolWrapper",
    "AsyncAJWTCallbackHandler",
    "GraphAgent",
    "LangGraphAdapter",
    "agent_manifests",
    "ajwt_node",
    "aresume_thread",
    "draft_workflow",
    "find_agents",
    "is_handoff_tool",
    "manifest_from_langchain",
    "model_config",
    "prompt_spec",
    "resume_thread",
    "run_config",
    "secure_graph",
    "tool_spec",
]
