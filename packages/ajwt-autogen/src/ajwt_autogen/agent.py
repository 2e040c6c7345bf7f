"""``secure_agent``: put an existing ``AssistantAgent`` under A-JWT.

It maps the agent's events onto the shim:

- *tool is called* / *agent acts*: every tool is wrapped in an :class:`AJWTTool`
  (name, description and schema unchanged);
- *agent hands off*: every handoff tool (``transfer_to_<target>``, used by ``Swarm`` and
  ``AssistantAgent(handoffs=...)``) signs the delegation when it runs
  (:func:`~ajwt_autogen.ahandover`: the delegator's step is completed, the delegate's
  step delegated; a handoff back to the agent's own delegator is a return, which only
  completes the step). If the delegation is refused, the handoff does not happen: the model
  sees the refusal as the handoff tool's result and the agent's reply becomes a text
  message, so a ``Swarm`` keeps the turn with the same agent;
- *agent turn* (opt-in, ``turn_delegation=True``, for ``RoundRobinGroupChat`` and
  ``SelectorGroupChat``, which have no handoff tools): when the agent takes the turn
  from another agent of the workflow, that agent hands over to it first; a refused
  delegation ends the turn with a text message, before the model is called;
- the agent is registered with the shim with a live manifest
  (:func:`~ajwt_autogen.manifest_from_autogen`), recomputed before every mint.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import Handoff, Response
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    HandoffMessage,
    TextMessage,
)
from autogen_core import CancellationToken
from autogen_core.tools import (
    BaseTool,
    StaticStreamWorkbench,
    StaticWorkbench,
    ToolSchema,
    Workbench,
)
from pydantic import BaseModel

from ajwt_autogen import _internals
from ajwt_autogen.binding import AgentBinding, register_agent
from ajwt_autogen.delegation import ahandover
from ajwt_autogen.tool import AJWTTool, refusal
from ajwt_core.checksum import PromptSpec
from ajwt_core.errors import AJWTError
from ajwt_core.shim import Run, Shim

__all__ = ["secure_agent"]

_SECURED = "_ajwt_secured"
TurnItem = BaseAgentEvent | BaseChatMessage | Response


def secure_agent(
    agent: AssistantAgent,
    shim: Shim,
    *,
    agent_id: str | None = None,
    agent_ids: Mapping[str, str] | None = None,
    run: Run | None = None,
    prompt: PromptSpec | None = None,
    prompt_values: Mapping[str, str] | None = None,
    deep: bool = False,
    register: bool = True,
    turn_delegation: bool = False,
    human_targets: Collection[str] = ("user",),
) -> AssistantAgent:
    """Wrap every tool and handoff of ``agent`` and register it with ``shim``.

    ``agent_ids`` maps AutoGen agent names to workflow agent ids (default: identity),
    for this agent and its handoff targets; ``agent_id`` overrides this agent's id.
    ``run`` pins the agent to one run (default: the shim's current run, ``with
    shim.run(run):`` around ``team.run(...)``). ``prompt`` / ``prompt_values``: the
    template the system message was filled from (see :func:`manifest_from_autogen`).
    Handoffs to ``human_targets`` return control to a person: they are not delegations.
    Returns the same agent, changed in place.

    Example::

        planner = secure_agent(AssistantAgent("planner", model, tools=[read_file],
                                              handoffs=["classifier"]), shim)
        team = Swarm([supervisor, planner, classifier, patcher], termination_condition=...)
        with shim.run(run):
            await team.run(task="Patch the vulnerable dependencies.")
    """
    if not isinstance(agent, AssistantAgent):
        raise TypeError(f"secure_agent expects an AssistantAgent, got {type(agent).__name__}")
    if getattr(agent, _SECURED, False):
        raise ValueError(f"agent {agent.name!r} is already secured")
    ids = dict(agent_ids or {})
    binding = AgentBinding(
        shim,
        agent_id or ids.get(agent.name, agent.name),
        agent,
        run=run,
        prompt=prompt,
        prompt_values=dict(prompt_values or {}),
        deep=deep,
    )
    guard = _TurnGuard(binding, ids, frozenset(human_targets))
    _internals.set_workbenches(
        agent, [_secured_bench(bench, binding) for bench in _internals.workbenches(agent)]
    )
    handoffs = _internals.handoffs(agent)
    _internals.set_handoff_tools(
        agent,
        [
            _AJWTHandoffTool(tool, handoffs[tool.name], guard)
            for tool in _internals.handoff_tools(agent)
        ],
    )
    original = agent.on_messages_stream

    async def on_messages_stream(
        messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[TurnItem, None]:
        async for item in guard.turn(original, messages, cancellation_token, turn_delegation):
            yield item

    # Every caller (teams, agent.run) goes through the instance's on_messages_stream.
    setattr(agent, "on_messages_stream", on_messages_stream)  # noqa: B010
    setattr(agent, _SECURED, True)
    if register:
        register_agent(binding)
    return agent


def _secured_bench(bench: Workbench, binding: AgentBinding) -> Workbench:
    static = _internals.static_tools(bench)
    if static is None:
        raise TypeError(
            f"{type(bench).__name__}: A-JWT secures tools and static workbenches; the tools "
            "of another workbench run where the shim cannot attach tokens"
        )
    tools, overrides = static
    wrapped: list[BaseTool[Any, Any]] = []
    for tool in tools:
        visible = getattr(overrides.get(tool.name), "name", None) or tool.name
        wrapped.append(AJWTTool(tool, binding.shim, agent=binding, tool_name=visible))
    kind = StaticStreamWorkbench if isinstance(bench, StaticStreamWorkbench) else StaticWorkbench
    return kind(wrapped, tool_overrides=overrides or None)


class _TurnGuard:
    """One secured agent's handoffs and turns."""

    def __init__(self, binding: AgentBinding, ids: Mapping[str, str], humans: frozenset[str]):
        self.binding = binding
        self.ids = ids
        self.humans = humans
        self.refused: dict[str, AJWTError] = {}
        self.handed_off = False

    def workflow_id(self, name: str) -> str:
        return self.ids.get(name, name)

    async def delegate_to(self, target: str) -> None:
        """The agent hands off to ``target`` (an AutoGen name): a delegation, or a
        return to the agent that delegated to it."""
        binding, shim = self.binding, self.binding.shim
        run = binding.current_run()
        to_agent = self.workflow_id(target)
        with binding.acting():
            await ahandover(shim, binding.agent_id, to_agent, run=run)

    def record_refusal(self, handoff: Handoff, error: AJWTError) -> None:
        self.refused[handoff.target] = error
        try:
            context = self.binding.context(tool=handoff.name)
        except AJWTError:
            return
        self.binding.shim.tool_finished(context, error)

    async def turn(
        self,
        original: Any,
        messages: Sequence[BaseChatMessage],
        cancellation_token: CancellationToken,
        turn_delegation: bool,
    ) -> AsyncGenerator[TurnItem, None]:
        self.refused.clear()
        self.handed_off = False
        if turn_delegation:
            refused = await self._take_turn(messages)
            if refused is not None:
                yield refused
                return
        async for item in original(messages, cancellation_token):
            if isinstance(item, Response) and isinstance(item.chat_message, HandoffMessage):
                error = self.refused.get(item.chat_message.target)
                if error is not None:
                    # The handoff did not happen: keep the turn, say why.
                    item = Response(
                        chat_message=TextMessage(
                            source=item.chat_message.source,
                            content=str(error),
                            metadata={"ajwt_reason": error.reason.value},
                        ),
                        inner_messages=item.inner_messages,
                    )
            yield item

    async def _take_turn(self, messages: Sequence[BaseChatMessage]) -> Response | None:
        """Turn delegation: the previous speaker of the workflow delegates to this agent."""
        name = self.binding.agent.name if self.binding.agent is not None else ""
        # The previous speaker that acted: a turn A-JWT refused hands nothing on.
        previous = next(
            (
                m.source
                for m in reversed(messages)
                if m.source != name and "ajwt_reason" not in m.metadata
            ),
            None,
        )
        if previous is None or previous in self.humans:
            return None
        from_agent = self.workflow_id(previous)
        shim = self.binding.shim
        if from_agent == self.binding.agent_id:
            return None
        try:
            shim.agent(from_agent)
        except AJWTError:
            return None  # not an agent of this application (a user proxy, a tool echo)
        try:
            run = self.binding.current_run()
            with self.binding.acting():
                await ahandover(shim, from_agent, self.binding.agent_id, run=run)
        except AJWTError as error:
            denied = refusal(error, self.binding.agent_id, f"the turn from {previous!r}")
            return Response(
                chat_message=TextMessage(
                    source=name,
                    content=str(denied),
                    metadata={"ajwt_reason": error.reason.value},
                )
            )
        return None


class _AJWTHandoffTool(BaseTool[BaseModel, BaseModel]):
    """A handoff tool whose run signs the delegation to its target."""

    def __init__(self, tool: BaseTool[Any, Any], handoff: Handoff, guard: _TurnGuard) -> None:
        super().__init__(tool.args_type(), tool.return_type(), tool.name, tool.description)
        self.inner = tool
        self.handoff = handoff
        self.guard = guard

    @property
    def schema(self) -> ToolSchema:
        return self.inner.schema

    def return_value_as_string(self, value: Any) -> str:
        return self.inner.return_value_as_string(value)

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        return await self.run_json(args.model_dump(), cancellation_token)

    async def run_json(
        self,
        args: Mapping[str, Any],
        cancellation_token: CancellationToken,
        call_id: str | None = None,
    ) -> Any:
        target = self.handoff.target
        if self.guard.handed_off:
            # AutoGen runs every handoff the model asked for but follows only the first
            # (the first call starts first): sign one delegation per turn.
            return f"A-JWT: not handed off to {target!r}; only the first handoff of a turn counts"
        self.guard.handed_off = True
        if target not in self.guard.humans:
            try:
                await self.guard.delegate_to(target)
            except AJWTError as error:
                denied = refusal(error, self.guard.binding.agent_id, f"the handoff to {target!r}")
                self.guard.record_refusal(self.handoff, denied)
                # AutoGen does not catch a handoff tool's exception (it would end the
                # team's run): the refusal is the tool's result, and the turn guard
                # turns the HandoffMessage into a text message.
                return str(denied)
        return await self.inner.run_json(args, cancellation_token, call_id=call_id)
