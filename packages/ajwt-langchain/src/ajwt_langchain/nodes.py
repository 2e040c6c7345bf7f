"""LangGraph nodes that act as an A-JWT agent, and hand-offs between them.

``ajwt_node(shim, node, agent="planner")`` wraps a node function or runnable (a
compiled subgraph, a ``ToolNode``…). While it runs, the node acts as ``planner``: the
tool hooks of this package inside it act for that agent. When a node of agent B starts
after a node of agent A routed to it (an edge, a conditional edge, a fan-out, ``Send``,
``Command(goto=...)``), B's node starts with the hand-off: A signs a delegation to B for
B's step (DESIGN §6.6), which completes A's step when B's waits for it; work sent back
along a ``loop_to`` is a hand-off too, and an agent a step may ``consult`` is consulted.
The agent that routed is the one whose node finished last (each branch of a fan-out is
handed over by the node that fanned out), within what the workflow allows. When the node
returns, its agent's step is completed (``complete_on_exit``; with several nodes of one
agent running in one step, as ``Send`` makes them, when the last one returns).

An HTTP call made in the node itself, outside any tool, is not a tool call and is
refused, unless the node declares the tool its own calls are made for (``tool=``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, overload

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from ajwt_core.shim import Run, Shim
from ajwt_core.shim.client import ManifestSource
from ajwt_langchain._tracker import NodeActing, Tracker, tracker_for

__all__ = ["NODE_AGENT_ATTRIBUTE", "NodeAgent", "ajwt_node", "node_agent"]

Node: TypeAlias = Callable[..., Any] | Runnable[Any, Any]

#: The attribute a wrapped node carries (a :class:`NodeAgent`), which ``secure_graph``
#: and ``draft_workflow`` read.
NODE_AGENT_ATTRIBUTE = "__ajwt_agent__"


@dataclass(frozen=True)
class NodeAgent:
    """What :func:`ajwt_node` declared about a node: its agent, step, own tool, and the
    agent's manifest when given (a node function's model, prompt and tools cannot be
    read from the graph)."""

    agent: str
    step: str | None = None
    tool: str | None = None
    manifest: ManifestSource | None = None


class _AgentNode:
    """Enter / exit logic of one wrapped node."""

    def __init__(
        self,
        shim: Shim,
        agent: str,
        run: Run | None,
        audience: str | None,
        complete_on_exit: bool,
        step: str | None,
        tool: str | None,
        manifest: ManifestSource | None = None,
    ) -> None:
        self.shim = shim
        self.manifest = manifest
        self.agent = agent
        self.tracker: Tracker = tracker_for(shim)
        self._run = run
        self._audience = audience
        self._complete_on_exit = complete_on_exit
        self.step = step
        self.tool = tool

    def _acting(self, run: Run, step: str | None) -> NodeActing:
        self.tracker.node_started(run, self.agent, step)
        return NodeActing(self.tracker, self.agent, run, step, self.tool)

    def enter(self) -> NodeActing:
        run = self.tracker.run_for(self._run)
        move = self.tracker.enter(run, self.agent, self._audience, step=self.step)
        return self._acting(run, move.step)

    async def aenter(self) -> NodeActing:
        run = self.tracker.run_for(self._run)
        move = await self.tracker.aenter(run, self.agent, self._audience, step=self.step)
        return self._acting(run, move.step)

    def _step_now(self, acting: NodeActing) -> str | None:
        # A tool call may have moved the agent on to its next step meanwhile.
        return self.tracker.step_of(acting.run, self.agent) or acting.step

    def exit(self, acting: NodeActing) -> None:
        if self._complete_on_exit:
            self.tracker.finish(acting.run, self.agent, self._step_now(acting))
        else:
            self.tracker.node_left(acting.run, self.agent, acting.step, returned=True)

    async def aexit(self, acting: NodeActing) -> None:
        if self._complete_on_exit:
            await self.tracker.afinish(acting.run, self.agent, self._step_now(acting))
        else:
            self.tracker.node_left(acting.run, self.agent, acting.step, returned=True)

    def left(self, acting: NodeActing) -> None:
        self.tracker.node_left(acting.run, self.agent, acting.step)

    # ------------------------------------------------------------------ wrapping

    def wrap(self, node: Node) -> Node:
        if isinstance(node, Runnable):
            wrapped: Any = self._wrap_runnable(node)
        elif inspect.iscoroutinefunction(node) or inspect.iscoroutinefunction(
            getattr(node, "__call__", None)  # noqa: B004 - an object with async __call__
        ):
            wrapped = self._wrap_async_function(node)
        elif callable(node):
            wrapped = self._wrap_function(node)
        else:
            raise TypeError(f"ajwt_node wraps a node function or a runnable, not {node!r}")
        declared = NodeAgent(self.agent, self.step, self.tool, self.manifest)
        setattr(wrapped, NODE_AGENT_ATTRIBUTE, declared)
        return wrapped  # type: ignore[no-any-return]

    def _run_sync(self, call: Callable[[], Any]) -> Any:
        acting = self.enter()
        try:
            with self.tracker.acting_node(acting):
                result = call()
        except BaseException:
            self.left(acting)
            raise
        self.exit(acting)
        return result

    async def _run_async(self, call: Callable[[], Any]) -> Any:
        acting = await self.aenter()
        try:
            with self.tracker.acting_node(acting):
                result = await call()
        except BaseException:
            self.left(acting)
            raise
        await self.aexit(acting)
        return result

    def _wrap_function(self, node: Callable[..., Any]) -> Callable[..., Any]:
        def agent_node(*args: Any, **kwargs: Any) -> Any:
            return self._run_sync(lambda: node(*args, **kwargs))

        return _like(agent_node, node)

    def _wrap_async_function(self, node: Callable[..., Any]) -> Callable[..., Any]:
        async def agent_node(*args: Any, **kwargs: Any) -> Any:
            return await self._run_async(lambda: node(*args, **kwargs))

        return _like(agent_node, node)

    def _wrap_runnable(self, node: Runnable[Any, Any]) -> Runnable[Any, Any]:
        # A RunnableLambda with both halves, so the graph can run sync and async;
        # both take ``config`` and pass it on (callbacks, checkpoint namespace…).
        def agent_node(state: Any, config: RunnableConfig) -> Any:
            return self._run_sync(lambda: node.invoke(state, config))

        async def aagent_node(state: Any, config: RunnableConfig) -> Any:
            return await self._run_async(lambda: node.ainvoke(state, config))

        return _NodeRunnable(node, agent_node, aagent_node, node.get_name() or self.agent)


class _NodeRunnable(RunnableLambda[Any, Any]):
    """The runnable an ``ajwt_node`` wraps, run as the node's agent. Its one dependency
    is that runnable, so LangGraph finds a subgraph inside (its checkpoints, its stream
    events) without parsing the wrapper's source, as it would a plain ``RunnableLambda``'s
    (``inspect.getsource`` and ``ast``: some milliseconds for every graph built)."""

    def __init__(
        self,
        inner: Runnable[Any, Any],
        func: Callable[..., Any],
        afunc: Callable[..., Any],
        name: str,
    ) -> None:
        super().__init__(func, afunc=afunc, name=name)
        self._inner = inner

    @property
    def deps(self) -> list[Runnable[Any, Any]]:
        return [self._inner]


def _like(wrapper: Callable[..., Any], node: Callable[..., Any]) -> Callable[..., Any]:
    # The wrapper forwards every argument, so it may present the node's own signature:
    # LangGraph then passes exactly what the node asks for (config, runtime, store…).
    # A wrapper with a signature of its own would lose them (see docs/langchain.md).
    functools.update_wrapper(wrapper, node)
    wrapper.__signature__ = inspect.signature(node)  # type: ignore[attr-defined]
    return wrapper


@overload
def ajwt_node(
    shim: Shim,
    node: None = None,
    *,
    agent: str,
    run: Run | None = None,
    audience: str | None = None,
    complete_on_exit: bool = True,
    step: str | None = None,
    tool: str | None = None,
    manifest: ManifestSource | None = None,
) -> Callable[[Node], Node]: ...


@overload
def ajwt_node(
    shim: Shim,
    node: Node,
    *,
    agent: str,
    run: Run | None = None,
    audience: str | None = None,
    complete_on_exit: bool = True,
    step: str | None = None,
    tool: str | None = None,
    manifest: ManifestSource | None = None,
) -> Node: ...


def ajwt_node(
    shim: Shim,
    node: Node | None = None,
    *,
    agent: str,
    run: Run | None = None,
    audience: str | None = None,
    complete_on_exit: bool = True,
    step: str | None = None,
    tool: str | None = None,
    manifest: ManifestSource | None = None,
) -> Node | Callable[[Node], Node]:
    """Make a LangGraph node act as A-JWT agent ``agent``; use as a wrapper or decorator.

    ``node`` is a node function (sync or async, with any of the arguments LangGraph
    injects) or a runnable such as a compiled subgraph; a runnable comes back as a
    ``RunnableLambda`` that runs it sync or async. Entering the node hands ``agent`` its
    step when another agent's node routed to it (see the module docstring); ``step``
    names the step when the agent has several and the node is one of them. When the
    node returns, its step is completed unless ``complete_on_exit`` is false (set it
    false when one agent spans several nodes of one step, e.g. a model node and its
    tool node: the hand-off to the next agent completes the step then). Errors,
    interrupts and ``Command(graph=PARENT)`` hand-offs leave the step open. ``tool``
    declares the tool the node's own HTTP calls (outside any tool) are made for;
    without it such a call is refused. ``manifest`` describes the agent (a manifest,
    or a callable returning the live one) for ``secure_graph`` to register and
    ``draft_workflow`` to read its tools from: a node function's model, prompt and
    tools cannot be read from the graph. ``run`` defaults to the current run (``with
    shim.run(run):``); ``audience`` serves hand-offs that need a token the agent does
    not hold yet (default ``shim.default_audience``).

    >>> from ajwt_core.shim import Shim
    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> @ajwt_node(shim, agent="planner")
    ... def plan(state: dict) -> dict:
    ...     return {"messages": []}
    >>> plan.__name__, node_agent(plan).agent
    ('plan', 'planner')

    ``builder.add_node("planner", ajwt_node(shim, planner_graph, agent="planner"))``
    """
    wrapper = _AgentNode(shim, agent, run, audience, complete_on_exit, step, tool, manifest)
    if node is None:
        return wrapper.wrap
    return wrapper.wrap(node)


def node_agent(node: Any) -> NodeAgent | None:
    """What :func:`ajwt_node` declared about a node (also once LangGraph has wrapped the
    function in its own runnable), else None."""
    for candidate in (node, getattr(node, "func", None), getattr(node, "afunc", None)):
        found = getattr(candidate, NODE_AGENT_ATTRIBUTE, None)
        if isinstance(found, NodeAgent):
            return found
    return None
