"""A-JWT for LangChain and LangGraph: per-agent identity, intent and delegation.

The integration in five lines::

    shim.register(lambda: manifest_from_langchain(prompt, tools, model, agent_id="planner"))
    tools_node = ToolNode(tools, wrap_tool_call=AJWTToolWrapper(shim).wrap_tool_call)
    builder.add_node("planner", ajwt_node(shim, planner_graph, agent="planner"))
    with shim.run(shim.start_run(user_token, "vuln-patch")):
        graph.invoke({"messages": [...]})

- :func:`ajwt_node`: a LangGraph node acts as an agent; moving between agents' nodes
  is a signed hand-off, and a node's return completes its step.
- :class:`AJWTToolWrapper` (``ToolNode``), :class:`AJWTMiddleware` (``create_agent``),
  :class:`AJWTCallbackHandler` / :class:`AsyncAJWTCallbackHandler` (any LangChain
  tool): each tool call is checked and minted for before it runs, and its HTTP calls
  through ``shim.auth()`` carry agent, step, tool and delegation chain.
- :func:`manifest_from_langchain`: the agent manifest (and so the checksum) of a
  prompt, tools and model.
"""

from ajwt_langchain.callbacks import AJWTCallbackHandler, AsyncAJWTCallbackHandler
from ajwt_langchain.manifest import (
    is_handoff_tool,
    manifest_from_langchain,
    model_config,
    prompt_spec,
    tool_spec,
)
from ajwt_langchain.middleware import AJWTMiddleware
from ajwt_langchain.nodes import ajwt_node
from ajwt_langchain.tools import AJWTToolWrapper

__all__ = [
    "AJWTCallbackHandler",
    "AJWTMiddleware",
    "AJWTToolWrapper",
    "AsyncAJWTCallbackHandler",
    "ajwt_node",
    "is_handoff_tool",
    "manifest_from_langchain",
    "model_config",
    "prompt_spec",
    "tool_spec",
]
