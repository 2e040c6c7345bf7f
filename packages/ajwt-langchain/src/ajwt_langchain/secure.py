"""Secure a compiled LangGraph app in one call: ``app = secure_graph(shim, app)``.

It is the supported way for apps the developer did not assemble node by node, such as
``create_supervisor`` (langgraph-supervisor) and ``create_swarm`` (langgraph-swarm),
whose builders rebuild or wrap the agents they are given:

1. **Agents** are found in the app and its subgraphs (:func:`~ajwt_langchain.agents.find_agents`:
   the graphs built by ``create_agent`` / ``create_react_agent``, named after their
   agent), and nodes wrapped by :func:`~ajwt_langchain.ajwt_node`.
2. **Registration** (``register=True``): each agent found is registered with a source
   that re-reads its model, prompt and tools from the graph (:class:`LiveAgent`: from
   every app secured with this shim that runs that agent), so the shim sends the
   checksum of the agent the framework runs before every mint, hand-off and completion
   (a prompt, model or tool changed in the graph is refused, by the IdP too). Agents
   the app holds in a shape the adapter cannot read are described with ``manifests=``.
3. **Tool calls**: every ``ToolNode`` of the app gets the A-JWT tool wrapper for the
   agent that owns it (the agent graph it sits in, or the ``ajwt_node`` around it),
   composed with any wrapper it already has (``create_agent`` middleware). A hand-off
   tool (``transfer_to_<agent>``) is a signed hand-off.
4. **A safety net**: the returned app also carries :class:`AJWTCallbackHandler`, which
   secures any tool that runs outside those ``ToolNode``s when it can tell the agent
   (the ``create_agent`` name, the surrounding ``ajwt_node``), and otherwise refuses it
   loudly (``no_agent_context``) instead of letting it run unchecked.

The app is changed in place (its ``ToolNode``s), and a copy bound to the callback
handler is returned: invoke the returned app.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langgraph.errors import GraphInterrupt
from langgraph.graph import StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.pregel import Pregel

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import AJWTError, InvalidGrant, InvalidRequest, Reason
from ajwt_core.shim import Run, Shim
from ajwt_core.shim.client import ManifestSource
from ajwt_langchain._gate import manifest_of
from ajwt_langchain._tracker import tracker_for
from ajwt_langchain.agents import (
    NAMESPACE_SEPARATOR,
    GraphAgent,
    agent_of,
    find_agents,
    subgraphs,
    tool_nodes,
)
from ajwt_langchain.callbacks import AJWTCallbackHandler
from ajwt_langchain.nodes import node_agent
from ajwt_langchain.tools import AJWTToolWrapper, OnRefusal, ToolResult

__all__ = ["LiveAgent", "SecuredAppHandler", "secure_graph", "secured_agents"]

#: Set on a ToolNode secured by :func:`secure_graph`: the agent id it acts for.
SECURED_ATTRIBUTE = "__ajwt_secured_for__"

#: Invocations of secured apps followed at once per handler (the oldest forgotten first).
MAX_OPEN_INVOCATIONS = 1024

logger = logging.getLogger(__name__)

Wrap = Callable[[ToolCallRequest, Callable[[ToolCallRequest], ToolResult]], ToolResult]
AWrap = Callable[
    [ToolCallRequest, Callable[[ToolCallRequest], Awaitable[ToolResult]]],
    Awaitable[ToolResult],
]


def _compose(tool_node: ToolNode, wrapper: AJWTToolWrapper) -> None:
    """Put ``wrapper`` innermost around the node's tool execution, keeping the wrappers
    the node already has outside it (so A-JWT checks the call they let through)."""
    if not hasattr(tool_node, "_wrap_tool_call") or not hasattr(tool_node, "_awrap_tool_call"):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            "this langgraph's ToolNode keeps its tool-call wrappers elsewhere; secure_graph "
            "cannot install A-JWT in it (pass ToolNode(..., wrap_tool_call=...) yourself)",
        )
    outer_sync: Wrap | None = tool_node._wrap_tool_call
    outer_async: AWrap | None = tool_node._awrap_tool_call

    def wrap_tool_call(
        request: ToolCallRequest, execute: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        if outer_sync is None:
            return wrapper.wrap_tool_call(request, execute)
        return outer_sync(request, lambda inner: wrapper.wrap_tool_call(inner, execute))

    async def awrap_tool_call(
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolResult]],
    ) -> ToolResult:
        assert outer_async is not None

        async def inner(call: ToolCallRequest) -> ToolResult:
            return await wrapper.awrap_tool_call(call, execute)

        return await outer_async(request, inner)

    tool_node._wrap_tool_call = wrap_tool_call
    if outer_async is not None:
        tool_node._awrap_tool_call = awrap_tool_call
    elif outer_sync is None:
        tool_node._awrap_tool_call = wrapper.awrap_tool_call
    # else: an outer sync-only wrapper; ToolNode runs it (and so ours) for async calls too.


def _owners(app: Pregel[Any, Any, Any, Any], agents: list[GraphAgent]) -> dict[str, str]:
    """Namespace → agent id: agent graphs, and nodes wrapped by ``ajwt_node``."""
    owners = {agent.namespace: agent.agent_id for agent in agents}
    for namespace, graph in subgraphs(app):
        for name, node in graph.nodes.items():
            tagged = node_agent(getattr(node, "bound", None))
            if tagged is not None:
                key = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
                owners.setdefault(key, tagged.agent)
    return owners


def _owner(owners: Mapping[str, str], namespace: str) -> str | None:
    parts = namespace.split(NAMESPACE_SEPARATOR) if namespace else []
    for end in range(len(parts), -1, -1):
        found = owners.get(NAMESPACE_SEPARATOR.join(parts[:end]))
        if found is not None:
            return found
    return None


def _tool_nodes_of(graph: Pregel[Any, Any, Any, Any]) -> dict[str, ToolNode]:
    """The ToolNodes of one graph level, also those wrapped whole by ``ajwt_node``."""
    found = dict(tool_nodes(graph))
    for name, node in graph.nodes.items():
        bound = getattr(node, "bound", None)
        if node_agent(bound) is not None:
            for dep in getattr(bound, "deps", []):
                if isinstance(dep, ToolNode):
                    found[name] = dep
    return found


def secured_agents(app: Pregel[Any, Any, Any, Any]) -> dict[str, str | None]:
    """Which agent each ToolNode of ``app`` acts for (``namespace|node`` → agent id),
    None for a ToolNode that :func:`secure_graph` did not secure.

    >>> from langchain.agents import create_agent
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> from langchain_core.tools import tool
    >>> @tool
    ... def ping() -> str:
    ...     '''Ping.'''
    ...     return "pong"
    >>> secured_agents(create_agent(FakeListChatModel(responses=[]), [ping], name="a"))
    {'tools': None}
    """
    found: dict[str, str | None] = {}
    for namespace, graph in subgraphs(app):
        for name, tool_node in _tool_nodes_of(graph).items():
            key = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
            found[key] = getattr(tool_node, SECURED_ATTRIBUTE, None)
    return found


class LiveAgent:
    """The registration source of one agent as the apps secured with one shim run it:
    every graph of that agent (an app built twice holds two), re-read on each call.
    If any of them is no longer the agent registered, that one is what the shim sends,
    so its checksum is refused: a change to one copy of an agent stops every copy in
    that shim (the process is no longer the one registered)."""

    def __init__(self, registered: AgentManifest) -> None:
        self._registered = registered.model_dump_json()
        # The graphs, not their readers: the app keeps them alive, and we must not.
        self._graphs: list[tuple[weakref.ref[Pregel[Any, Any, Any, Any]], str]] = []

    def add(self, agent: GraphAgent) -> None:
        if not any(ref() is agent.graph for ref, _ in self._graphs):
            self._graphs.append((weakref.ref(agent.graph), agent.namespace))

    def __call__(self) -> AgentManifest:
        first: AgentManifest | None = None
        alive = []
        for ref, namespace in self._graphs:
            graph = ref()
            agent = agent_of(graph, namespace) if graph is not None else None
            if agent is None:
                continue
            alive.append((ref, namespace))
            manifest = agent.manifest()
            if manifest.model_dump_json() != self._registered:
                return manifest
            first = first or manifest
        self._graphs = alive
        return first or AgentManifest.model_validate_json(self._registered)


#: shim → (agent id, checksum) → its live source; graphs are held by the apps.
_sources: weakref.WeakKeyDictionary[Shim, dict[tuple[str, str], LiveAgent]] = (
    weakref.WeakKeyDictionary()
)
_sources_lock = threading.Lock()


def _register(
    shim: Shim, agents: list[GraphAgent], manifests: Mapping[str, ManifestSource]
) -> None:
    pending: list[ManifestSource] = []
    chosen: dict[str, ManifestSource] = {}
    with _sources_lock:
        known = _sources.setdefault(shim, {})
    checksums: dict[str, str] = {}
    for agent in agents:
        if agent.agent_id in manifests:
            continue
        manifest = agent.manifest()
        key = (agent.agent_id, manifest.checksum())
        with _sources_lock:
            live = known.get(key)
            if live is None:
                live = known[key] = LiveAgent(manifest)
        live.add(agent)
        chosen.setdefault(agent.agent_id, live)
        checksums.setdefault(agent.agent_id, key[1])
    chosen.update(manifests)
    for agent_id, source in chosen.items():
        manifest = manifest_of(source)
        checksum = checksums.get(agent_id) or manifest.checksum()
        try:
            if shim.agent(manifest.agent_id, checksum).source is source:
                continue  # registered, from these graphs
        except AJWTError:
            if _registered(shim, manifest.agent_id):
                # Another description of this agent is registered (a hand-written
                # manifest): two versions of one agent id would make calls ambiguous.
                raise InvalidGrant(
                    Reason.CHECKSUM_MISMATCH,
                    f"agent {manifest.agent_id!r} is registered with this shim as another "
                    f"agent than the app runs (the app's has checksum {checksum}): one shim "
                    "holds one version of each agent. Register it from the app only "
                    "(secure_graph does), describe it with manifests=..., or secure an app "
                    "whose agent of that id is built otherwise with a Shim of its own",
                ) from None
        pending.append(source)
    if pending:
        shim.register_many(pending)


@dataclass
class _Invocation:
    """One call of a secured app (a root LangGraph run) inside an A-JWT run."""

    run: Run
    thread_id: str | None
    paused: bool = False


class SecuredAppHandler(AJWTCallbackHandler):
    """The handler :func:`secure_graph` binds to the app it returns: the tool calls'
    handler, and, given the app's ``graph`` (``complete_on_return``), the end of each
    invocation.

    When the app returns normally (``invoke``/``ainvoke`` returned, a stream was read to
    its end) and is not paused, the open steps its agents acted in since an app last
    returned in the run (or since the run was resumed in this process) are completed,
    deferred like a hand-off's completion (sent with the run's next token request, or
    when the ``shim.run`` block ends): the graph reached its end, so nothing of it acts
    in them any more. A pause keeps them open for the resume: an
    ``interrupt()`` anywhere in the graph, or, for an app with a checkpointer, a thread
    whose state still has nodes to run (``interrupt_before``/``interrupt_after``). An
    error leaves them open too, as does an app invoked inside another runnable (the
    outer app's end is the end)."""

    def __init__(
        self,
        shim: Shim,
        *,
        audience: str | None,
        graph: Pregel[Any, Any, Any, Any] | None,
    ) -> None:
        super().__init__(shim, audience=audience)
        # The app's own graph, whose checkpointer says whether a thread is paused (the
        # copy secure_graph returns holds this handler; the graph itself does not).
        self._graph = graph
        self._invocations: OrderedDict[UUID, _Invocation] = OrderedDict()
        self._lock = threading.Lock()

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._graph is None or parent_run_id is not None:
            return
        run = self._gate.run_or_none()
        if run is None:
            return  # no A-JWT run: the first tool call says so
        thread = (metadata or {}).get("thread_id")
        invocation = _Invocation(run, str(thread) if thread is not None else None)
        with self._lock:
            self._invocations[run_id] = invocation
            while len(self._invocations) > MAX_OPEN_INVOCATIONS:
                self._invocations.popitem(last=False)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if self._graph is None:
            return
        with self._lock:
            if parent_run_id is None:
                self._invocations.pop(run_id, None)
            elif isinstance(error, GraphInterrupt):
                # A node paused: every invocation of this A-JWT run open now stays open.
                run = self._gate.run_or_none()
                for invocation in self._invocations.values():
                    if run is None or invocation.run.run_id == run.run_id:
                        invocation.paused = True

    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if self._graph is None or parent_run_id is not None:
            return
        with self._lock:
            invocation = self._invocations.pop(run_id, None)
        if invocation is None or invocation.paused or self._thread_paused(invocation):
            return
        self._gate.tracker.complete_returned(invocation.run)

    def _thread_paused(self, invocation: _Invocation) -> bool:
        """Whether the app's checkpointer thread stopped before its end (a breakpoint)."""
        graph = self._graph
        if graph is None or invocation.thread_id is None:
            return False
        if graph.checkpointer is None or isinstance(graph.checkpointer, bool):
            return False  # no saver of its own: an interrupt is the only pause
        try:
            state = graph.get_state({"configurable": {"thread_id": invocation.thread_id}})
        except Exception as error:  # noqa: BLE001 - unknown: the steps stay open
            logger.warning(
                "A-JWT cannot read thread %r of the app to tell whether it paused (%s): "
                "the steps its agents acted in stay open",
                invocation.thread_id,
                error,
            )
            return True
        return bool(state.next)


def secure_graph(
    shim: Shim,
    app: Pregel[Any, Any, Any, Any],
    *,
    manifests: Mapping[str, ManifestSource] | None = None,
    register: bool = True,
    audience: str | None = None,
    on_refusal: OnRefusal = "raise",
    complete_on_return: bool = True,
) -> Pregel[Any, Any, Any, Any]:
    """Secure every agent of a compiled app with A-JWT (see the module docstring);
    invoke the app it returns, inside ``with shim.run(run):``.

    ``manifests`` describes agents the adapter cannot read from the app (an agent id →
    a manifest or a callable returning the live one), and replaces what it reads for
    the agents it names. ``register=False`` leaves registration to you: every agent of
    the app must already be registered with the shim (``shim.register(...)``), else
    ``secure_graph`` refuses the app. ``audience`` and ``on_refusal`` are
    :class:`~ajwt_langchain.AJWTToolWrapper`'s. When an invocation of the app returns
    (not paused by an interrupt), the steps its agents acted in are completed
    (:class:`SecuredAppHandler`); ``complete_on_return=False`` leaves them open, for an
    app that continues one A-JWT run over several invocations without pausing.

    >>> from ajwt_core.shim import Shim
    >>> from langchain.agents import create_agent
    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> app = create_agent(FakeListChatModel(responses=[]), [], name="helper")
    >>> secure_graph(shim, app, register=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ajwt_core.errors.InvalidRequest: agent 'helper' of this app is not registered ...

    With ``register=True`` (the default) it registers them with the IdP first.
    """
    if isinstance(app, StateGraph):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            "secure_graph takes a compiled app: secure_graph(shim, builder.compile(...))",
        )
    if not isinstance(app, Pregel):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"secure_graph takes a compiled LangGraph app, not a {type(app).__name__}",
        )
    agents = find_agents(app)
    declared = {
        tagged.agent: tagged.manifest
        for _, graph in subgraphs(app)
        for node in graph.nodes.values()
        if (tagged := node_agent(getattr(node, "bound", None))) is not None
        and tagged.manifest is not None
    }
    handler = SecuredAppHandler(shim, audience=audience, graph=app if complete_on_return else None)
    secured: Pregel[Any, Any, Any, Any] = app.with_config(callbacks=[handler])
    if register:
        # The copy returned shares the app's nodes; either may be the one kept alive.
        both = agents + [agent for agent in find_agents(secured) if agent.namespace == ""]
        _register(shim, both, {**declared, **(manifests or {})})
    owners = _owners(app, agents)
    unknown = sorted({agent for agent in owners.values() if not _registered(shim, agent)})
    if unknown:
        named = ", ".join(repr(a) for a in unknown)
        which = (
            f"agent {named} of this app is"
            if len(unknown) == 1
            else f"agents {named} of this app are"
        )
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"{which} not registered with the shim and cannot be read from the graph (a "
            "node function): register it (shim.register(manifest)), or describe it with "
            "ajwt_node(..., manifest=...) or secure_graph(..., manifests=...)",
        )
    for namespace, graph in subgraphs(app):
        for name, tool_node in _tool_nodes_of(graph).items():
            key = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
            agent = _owner(owners, key)
            secured_for = getattr(tool_node, SECURED_ATTRIBUTE, None)
            if secured_for is not None:
                if secured_for != (agent or ""):
                    raise InvalidRequest(
                        Reason.MALFORMED_REQUEST,
                        f"one ToolNode serves agents {secured_for!r} and {agent!r}: give each "
                        "agent its own tools node",
                    )
                continue
            wrapper = AJWTToolWrapper(shim, agent, audience=audience, on_refusal=on_refusal)
            _compose(tool_node, wrapper)
            setattr(tool_node, SECURED_ATTRIBUTE, agent or "")
    return secured


def _registered(shim: Shim, agent: str) -> bool:
    return tracker_for(shim).is_agent(agent)
