"""The agents a compiled LangGraph app will run, read from the app itself (DESIGN §3).

An agent's identity must be the agent the framework executes, not a description kept
beside it. For the two agent factories, the model, prompt and tools are read from the
objects bound into the compiled graph:

- ``langchain.agents.create_agent(model, tools, system_prompt=..., name=...)``: the
  model node's model and system message, and the tools of its ``ToolNode``;
- ``langgraph.prebuilt.create_react_agent(model, tools, prompt=..., name=...)``: the
  agent node's model (under any ``bind_tools``/``bind``) and prompt (a string, a
  ``SystemMessage`` or a prompt template), and the tools of its ``ToolNode``.

The agent id is the graph's ``name``. Each agent graph is found in the app and in its
subgraphs (``Pregel.get_subgraphs``, which also sees the agents langgraph-supervisor
calls from its worker nodes), and an agent's manifest is extracted again on every call
of :meth:`GraphAgent.manifest`, so registering that method makes the shim re-check the
live objects before every mint, hand-off and completion.

Both factories keep these objects in closures of their node functions, which neither
library documents: the names read here are checked against the installed versions by
the tests, and a graph whose agent cannot be read fails with a sentence saying what to
pass instead (``secure_graph(..., manifests={name: ...})``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import RunnableBinding, RunnableSequence
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from langgraph.pregel import Pregel

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import InvalidRequest, Reason
from ajwt_langchain.manifest import manifest_from_langchain

__all__ = ["GraphAgent", "agent_manifests", "agent_of", "find_agents", "tool_nodes"]

#: LangGraph's separator of nested graph namespaces (``parent|child``).
NAMESPACE_SEPARATOR = "|"


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(Reason.INVALID_MANIFEST, message)


def _nonlocals(runnable: Any) -> dict[str, Any]:
    """The free variables of a node function (a ``RunnableCallable``'s ``func``)."""
    function = getattr(runnable, "func", None) or getattr(runnable, "afunc", None)
    if function is None or not inspect.isfunction(function):
        return {}
    return dict(inspect.getclosurevars(function).nonlocals)


def _node_runnable(graph: Pregel[Any, Any, Any, Any], name: str) -> Any:
    node = graph.nodes.get(name)
    return getattr(node, "bound", None)


def tool_nodes(graph: Pregel[Any, Any, Any, Any]) -> dict[str, ToolNode]:
    """The ``ToolNode`` nodes of one graph level, by node name."""
    found: dict[str, ToolNode] = {}
    for name in graph.nodes:
        bound = _node_runnable(graph, name)
        if isinstance(bound, ToolNode):
            found[name] = bound
    return found


def _literal(text: str) -> str:
    # A system prompt given as text is literal: its braces are not placeholders.
    return text.replace("{", "{{").replace("}", "}}")


def _system_text(message: Any, agent: str) -> str:
    if message is None:
        return ""
    if isinstance(message, str):
        return _literal(message)
    if isinstance(message, SystemMessage):
        if not isinstance(message.content, str):
            raise _invalid(f"agent {agent!r}: its system message must have text content")
        return _literal(message.content)
    raise _invalid(f"agent {agent!r}: cannot read a system prompt from a {type(message).__name__}")


def _find_model(runnable: Any) -> Any:
    """The chat model inside ``runnable`` (under ``bind``/``bind_tools`` and sequences such
    as langgraph-supervisor's agent-name wrapper), with its bindings."""
    if isinstance(runnable, BaseChatModel):
        return runnable
    if isinstance(runnable, RunnableBinding):
        inner = runnable.bound
        while isinstance(inner, RunnableBinding):
            inner = inner.bound
        if isinstance(inner, BaseChatModel):
            return runnable
        return _find_model(inner)
    if isinstance(runnable, RunnableSequence):
        for step in runnable.steps:
            found = _find_model(step)
            if found is not None:
                return found
    return None


def _react_prompt(prompt_runnable: Any, agent: str) -> Any:
    """The prompt ``create_react_agent`` turned into its ``Prompt`` runnable."""
    if isinstance(prompt_runnable, BasePromptTemplate):
        return prompt_runnable
    captured = _nonlocals(prompt_runnable)
    if "_system_message" in captured:
        return _system_text(captured["_system_message"], agent)
    if isinstance(captured.get("prompt"), SystemMessage):
        return _system_text(captured["prompt"], agent)
    function = getattr(prompt_runnable, "func", None)
    if function is not None and getattr(function, "__name__", "") == "<lambda>" and not captured:
        return ""  # prompt=None: the conversation only
    raise _invalid(
        f"agent {agent!r}: its prompt is a function, whose text is only known when it runs; "
        "give a string, a SystemMessage or a prompt template, or describe the agent "
        f"yourself: secure_graph(..., manifests={{{agent!r}: ...}})"
    )


@dataclass
class GraphAgent:
    """An agent graph found in an app: where it is, and how to read its live objects."""

    agent_id: str
    #: Where the agent graph sits in the app (``""``: the app itself; else the
    #: namespace of node names, ``parent|child``).
    namespace: str
    graph: Pregel[Any, Any, Any, Any]
    kind: str  # "create_agent" | "create_react_agent"
    _read: Callable[[], tuple[Any, list[Any], Any]] = field(repr=False)

    def tools(self) -> list[BaseTool]:
        """The tools the agent's ``ToolNode`` executes (what may run, not only what the
        model is offered)."""
        tools: list[BaseTool] = []
        for node in tool_nodes(self.graph).values():
            tools.extend(node.tools_by_name.values())
        return tools

    def parts(self) -> tuple[Any, list[Any], Any]:
        """(prompt, tools, model) as the graph holds them now."""
        return self._read()

    def manifest(self) -> AgentManifest:
        """The manifest of the agent as the graph holds it now (extracted on each call)."""
        prompt, tools, model = self._read()
        return manifest_from_langchain(prompt, tools, model, agent_id=self.agent_id)


def _create_agent_parts(graph: Pregel[Any, Any, Any, Any], agent: GraphAgent) -> Any:
    def read() -> tuple[Any, list[Any], Any]:
        captured = _nonlocals(_node_runnable(graph, "model"))
        model = captured.get("model")
        if not isinstance(model, BaseChatModel):
            raise _invalid(
                f"agent {agent.agent_id!r}: cannot read the model of this create_agent graph "
                f"(found a {type(model).__name__})"
            )
        prompt = _system_text(captured.get("system_message"), agent.agent_id)
        return prompt, agent.tools(), model

    return read


def _react_agent_parts(graph: Pregel[Any, Any, Any, Any], agent: GraphAgent) -> Any:
    def read() -> tuple[Any, list[Any], Any]:
        captured = _nonlocals(_node_runnable(graph, "agent"))
        static = captured.get("static_model")
        if captured.get("is_dynamic_model") or not isinstance(static, RunnableSequence):
            raise _invalid(
                f"agent {agent.agent_id!r}: its model is chosen at run time (a function), so "
                "it cannot be read before it runs; describe the agent yourself: "
                f"secure_graph(..., manifests={{{agent.agent_id!r}: ...}})"
            )
        prompt = _react_prompt(static.first, agent.agent_id)
        model = _find_model(static.last) or _find_model(static)
        if model is None:
            raise _invalid(f"agent {agent.agent_id!r}: cannot find the chat model in its graph")
        return prompt, agent.tools(), model

    return read


def _kind(graph: Pregel[Any, Any, Any, Any]) -> str | None:
    """Which factory built ``graph``, from what its nodes hold."""
    if "model" in graph.nodes and {"model", "system_message", "default_tools"} <= set(
        _nonlocals(_node_runnable(graph, "model"))
    ):
        return "create_agent"
    if "agent" in graph.nodes and "static_model" in _nonlocals(_node_runnable(graph, "agent")):
        return "create_react_agent"
    return None


def agent_of(graph: Pregel[Any, Any, Any, Any], namespace: str = "") -> GraphAgent | None:
    """The agent ``graph`` is, if an agent factory built it (``namespace``: where it sits)."""
    kind = _kind(graph)
    if kind is None:
        return None
    name = graph.name
    if not name or name == "LangGraph":
        where = f"at {namespace!r}" if namespace else "(the app itself)"
        raise _invalid(
            f"an agent graph {where} has no name: give it one "
            f"({'create_agent' if kind == 'create_agent' else 'create_react_agent'}"
            "(..., name='...')); the name is its A-JWT agent id"
        )
    agent = GraphAgent(name, namespace, graph, kind, lambda: ("", [], None))
    reader = _create_agent_parts if kind == "create_agent" else _react_agent_parts
    agent._read = reader(graph, agent)
    return agent


def subgraphs(app: Pregel[Any, Any, Any, Any]) -> Iterator[tuple[str, Pregel[Any, Any, Any, Any]]]:
    """The app (namespace ``""``) and every graph nested in it, with its namespace."""
    yield "", app
    for namespace, graph in app.get_subgraphs(recurse=True):
        if isinstance(graph, Pregel):
            yield namespace, graph


def find_agents(app: Pregel[Any, Any, Any, Any]) -> list[GraphAgent]:
    """The agent graphs of ``app`` (itself included), outermost first.

    >>> from langchain.agents import create_agent
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> app = create_agent(FakeListChatModel(responses=[]), [], name="helper",
    ...                    system_prompt="You help.")
    >>> [(agent.agent_id, agent.kind) for agent in find_agents(app)]
    [('helper', 'create_agent')]
    """
    found: list[GraphAgent] = []
    for namespace, graph in subgraphs(app):
        agent = agent_of(graph, namespace)
        if agent is not None:
            found.append(agent)
    return found


def agent_manifests(app: Pregel[Any, Any, Any, Any]) -> list[AgentManifest]:
    """The manifests of the agents ``app`` runs, extracted from its live objects; one per
    agent id (an agent graph used twice is one agent).

    >>> from langchain.agents import create_agent
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> app = create_agent(FakeListChatModel(responses=[]), [], name="helper",
    ...                    system_prompt="You help {user}.")
    >>> [(m.agent_id, m.prompt.template) for m in agent_manifests(app)]
    [('helper', 'You help {{user}}.')]
    """
    manifests: dict[str, AgentManifest] = {}
    for agent in find_agents(app):
        manifest = agent.manifest()
        seen = manifests.get(agent.agent_id)
        if seen is not None and seen.checksum() != manifest.checksum():
            raise _invalid(
                f"two different agents are named {agent.agent_id!r} in this app; agent names "
                "are A-JWT agent ids and must be unique"
            )
        manifests[agent.agent_id] = manifest
    return list(manifests.values())


def names_in(namespace: str) -> Sequence[str]:
    """The node names of a namespace (``"a|b:task-id"`` → ``["a", "b"]``)."""
    return [part.split(":", 1)[0] for part in namespace.split(NAMESPACE_SEPARATOR) if part]
