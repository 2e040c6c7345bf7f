"""LangGraph nodes that act as an A-JWT agent, and hand-offs between them.

``ajwt_node(shim, node, agent="planner")`` wraps a node function or runnable (a
compiled subgraph, a ``ToolNode``…). While it runs, the node acts as ``planner``:
HTTP calls through ``shim.auth()`` made inside it, and the tool hooks of this package
(which refine the context with the tool), act for that agent. When the graph moves
from a node of agent A to a node of agent B, by an edge, a ``Command(goto=...)`` or a
hand-off tool, the node of B starts with the hand-off: A's step is completed and A
signs a delegation to B for B's next step (DESIGN §6.6). When the node returns, its
agent's step is completed (``complete_on_exit``), so the steps after it can run.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeAlias, overload

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from ajwt_core.shim import AgentContext, Run, Shim
from ajwt_langchain._tracker import Tracker, tracker_for

__all__ = ["ajwt_node"]

Node: TypeAlias = Callable[..., Any] | Runnable[Any, Any]


class _AgentNode:
    """Enter / exit logic of one wrapped node."""

    def __init__(
        self,
        shim: Shim,
        agent: str,
        run: Run | None,
        audience: str | None,
        complete_on_exit: bool,
    ) -> None:
        self.shim = shim
        self.agent = agent
        self.tracker: Tracker = tracker_for(shim)
        self._run = run
        self._audience = audience
        self._complete_on_exit = complete_on_exit

    def enter(self) -> AgentContext:
        run = self.tracker.run_for(self._run)
        entered = self.tracker.enter(run, self.agent, self._audience)
        return self.shim.context(self.agent, step=entered.step, run=run)

    async def aenter(self) -> AgentContext:
        run = self.tracker.run_for(self._run)
        entered = await self.tracker.aenter(run, self.agent, self._audience)
        return self.shim.context(self.agent, step=entered.step, run=run)

    def _open_step(self, context: AgentContext) -> tuple[bool, str | None]:
        last, step = self.tracker.acting_agent(context.run)
        return self._complete_on_exit and last == self.agent, step

    def exit(self, context: AgentContext) -> None:
        complete, step = self._open_step(context)
        if complete:
            self.tracker.finish(context.run, self.agent, step, self._audience)

    async def aexit(self, context: AgentContext) -> None:
        complete, step = self._open_step(context)
        if complete:
            await self.tracker.afinish(context.run, self.agent, step, self._audience)

    # ------------------------------------------------------------------ wrapping

    def wrap(self, node: Node) -> Node:
        if isinstance(node, Runnable):
            return self._wrap_runnable(node)
        if inspect.iscoroutinefunction(node) or inspect.iscoroutinefunction(
            getattr(node, "__call__", None)  # noqa: B004 - an object with async __call__
        ):
            return self._wrap_async_function(node)
        if callable(node):
            return self._wrap_function(node)
        raise TypeError(f"ajwt_node wraps a node function or a runnable, not {node!r}")

    def _wrap_function(self, node: Callable[..., Any]) -> Callable[..., Any]:
        def agent_node(*args: Any, **kwargs: Any) -> Any:
            context = self.enter()
            with self.tracker.acting_node(context):
                result = node(*args, **kwargs)
            self.exit(context)
            return result

        return _like(agent_node, node)

    def _wrap_async_function(self, node: Callable[..., Any]) -> Callable[..., Any]:
        async def agent_node(*args: Any, **kwargs: Any) -> Any:
            context = await self.aenter()
            with self.tracker.acting_node(context):
                result = await node(*args, **kwargs)
            await self.aexit(context)
            return result

        return _like(agent_node, node)

    def _wrap_runnable(self, node: Runnable[Any, Any]) -> Runnable[Any, Any]:
        # A RunnableLambda with both halves, so the graph can run sync and async;
        # both take ``config`` and pass it on (callbacks, checkpoint namespace…).
        def agent_node(state: Any, config: RunnableConfig) -> Any:
            context = self.enter()
            with self.tracker.acting_node(context):
                result = node.invoke(state, config)
            self.exit(context)
            return result

        async def aagent_node(state: Any, config: RunnableConfig) -> Any:
            context = await self.aenter()
            with self.tracker.acting_node(context):
                result = await node.ainvoke(state, config)
            await self.aexit(context)
            return result

        return RunnableLambda(agent_node, afunc=aagent_node, name=node.get_name() or self.agent)


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
) -> Node: ...


def ajwt_node(
    shim: Shim,
    node: Node | None = None,
    *,
    agent: str,
    run: Run | None = None,
    audience: str | None = None,
    complete_on_exit: bool = True,
) -> Node | Callable[[Node], Node]:
    """Make a LangGraph node act as A-JWT agent ``agent``; use as a wrapper or decorator.

    ``node`` is a node function (sync or async, with any of the arguments LangGraph
    injects) or a runnable such as a compiled subgraph; a runnable comes back as a
    ``RunnableLambda`` that runs it sync or async. Entering the node hands off to
    ``agent`` if another agent acted last in the run; when the node returns, its step
    is completed unless ``complete_on_exit`` is false (set it false when one agent
    spans several nodes, e.g. a model node and its tool node: the hand-off to the next
    agent completes the step then). Errors, interrupts and ``Command(graph=PARENT)``
    hand-offs leave the step open. ``run`` defaults to the current run
    (``with shim.run(run):``); ``audience`` serves hand-offs and completions that
    need a token the agent does not hold yet (default ``shim.default_audience``).

    >>> from ajwt_core.shim import Shim
    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> @ajwt_node(shim, agent="planner")
    ... def plan(state: dict) -> dict:
    ...     return {"messages": []}
    >>> plan.__name__
    'plan'

    ``builder.add_node("planner", ajwt_node(shim, planner_graph, agent="planner"))``
    """
    wrapper = _AgentNode(shim, agent, run, audience, complete_on_exit)
    if node is None:
        return wrapper.wrap
    return wrapper.wrap(node)
