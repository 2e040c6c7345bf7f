"""``secure_agent``: put an existing ``AssistantAgent`` under A-JWT.

It maps the agent's events onto the shim:

- *tool is called* / *agent acts*: every tool of a ``StaticWorkbench`` (what
  ``tools=[...]`` builds, or one you pass, subclasses included: the bench keeps its
  class and its own ``call_tool``) is wrapped in an :class:`AJWTTool`; another
  in-process workbench is wrapped whole in an :class:`AJWTWorkbench`. Names,
  descriptions and schemas are unchanged;
- *agent hands off*: every hand-off tool (``transfer_to_<target>``, used by ``Swarm`` and
  ``AssistantAgent(handoffs=...)``) signs the delegation when it runs
  (:func:`~ajwt_autogen.ahandover`); a hand-off back to the agent's own delegator is a
  return, which only completes the step; a hand-off to a person (``human_targets``)
  signs nothing. If the delegation is refused, the hand-off does not happen: the model
  sees the refusal as the hand-off tool's result and the agent's reply becomes a text
  message, so a ``Swarm`` keeps the turn with the same agent;
- *agent turn* (``turn_delegation=True``, for ``RoundRobinGroupChat``,
  ``SelectorGroupChat`` and ``GraphFlow``, which have no hand-off tools): when the agent
  takes the turn from another agent of the workflow, that agent hands over to it first;
  a refused delegation ends the turn with a text message, before the model is called;
- *agent run as a tool* (``AgentTool``, a ``TeamTool``'s first speaker, or any tool that
  runs the agent): as its turn starts inside the caller's tool call, the caller consults
  it (its step lists the agent under ``consult``) or hands it its next step; an
  ``AgentTool``'s agent completes its step when it answers, unless one of its actions
  was refused; a refusal fails the caller's tool call;
- *state saved / loaded*: ``save_state`` adds the run the agent acts in (its id and the
  latest ledger checkpoint); ``load_state`` resumes that run from the IdP's ledger
  (``shim.aresume``), so a team saved in one process continues in another;
- the agent is registered with the shim with a live manifest
  (:func:`~ajwt_autogen.manifest_from_autogen`), recomputed before every mint, hand-off
  and completion, as one version of its agent id (several may be live in one shim).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import Handoff, Response
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    HandoffMessage,
    TextMessage,
)
from autogen_core import CancellationToken
from autogen_core.tools import BaseTool, ToolSchema, Workbench
from pydantic import BaseModel

from ajwt_autogen import _internals
from ajwt_autogen.binding import (
    AgentBinding,
    binding_of,
    bindings_of,
    register_agent,
    set_binding,
)
from ajwt_autogen.delegation import adelegate, ahandover
from ajwt_autogen.refusals import not_an_agent, refusal, unknown_agent_hint
from ajwt_autogen.resume import RUN_KEY, resume_saved_run, saved_run_record
from ajwt_autogen.steps import current_step, refusals
from ajwt_autogen.tool import AJWTTool, AJWTWorkbench, running_as_tool
from ajwt_core.checksum import PromptSpec
from ajwt_core.errors import AgentContextError, AJWTError, Reason
from ajwt_core.shim import AgentContext, Run, Shim

if TYPE_CHECKING:
    from ajwt_autogen.team import TeamBinding

__all__ = ["binding_of", "secure_agent"]

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
    """Wrap every tool and hand-off of ``agent`` and register it with ``shim``.

    ``agent_ids`` maps AutoGen agent names to workflow agent ids (default: identity),
    for this agent and its hand-off targets; ``agent_id`` overrides this agent's id.
    ``run`` pins the agent to one run (default: the shim's current run, ``with
    shim.run(run):`` around ``team.run(...)``). ``prompt`` / ``prompt_values``: the
    template the system message was filled from (see :func:`manifest_from_autogen`).
    Hand-offs to ``human_targets`` return control to a person: they are not delegations.
    Returns the same agent, changed in place. To secure a whole team (and let hand-offs
    tell apart versions of one agent id that several teams share), use
    :func:`~ajwt_autogen.secure_team`.

    Example::

        planner = secure_agent(AssistantAgent("planner", model, tools=[read_file],
                                              handoffs=["classifier"]), shim)
        team = Swarm([supervisor, planner, classifier, patcher], termination_condition=...)
        with shim.run(run):
            await team.run(task="Patch the vulnerable dependencies.")
    """
    return _secure(
        agent,
        shim,
        agent_id=agent_id,
        ids=dict(agent_ids or {}),
        run=run,
        prompt=prompt,
        prompt_values=prompt_values,
        deep=deep,
        register=register,
        turn_delegation=turn_delegation,
        humans=frozenset(human_targets),
        team=None,
    )


def _secure(
    agent: AssistantAgent,
    shim: Shim,
    *,
    agent_id: str | None,
    ids: Mapping[str, str],
    run: Run | None,
    prompt: PromptSpec | None,
    prompt_values: Mapping[str, str] | None,
    deep: bool,
    register: bool,
    turn_delegation: bool,
    humans: frozenset[str],
    team: TeamBinding | None,
) -> AssistantAgent:
    if not isinstance(agent, AssistantAgent):
        raise TypeError(f"secure_agent expects an AssistantAgent, got {type(agent).__name__}")
    if binding_of(agent) is not None:
        raise ValueError(f"agent {agent.name!r} is already secured")
    binding = AgentBinding(
        shim,
        agent_id or ids.get(agent.name, agent.name),
        agent,
        run=run,
        prompt=prompt,
        prompt_values=dict(prompt_values or {}),
        deep=deep,
        team=team,
    )
    _internals.set_workbenches(
        agent, [_secured_bench(bench, binding) for bench in _internals.workbenches(agent)]
    )
    guard = _TurnGuard(binding, ids, humans)
    handoffs = _internals.handoffs(agent)
    _internals.set_handoff_tools(
        agent,
        [
            _AJWTHandoffTool(tool, handoffs[tool.name], guard)
            for tool in _internals.handoff_tools(agent)
        ],
    )
    original = agent.on_messages_stream
    save, load = agent.save_state, agent.load_state

    async def on_messages_stream(
        messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[TurnItem, None]:
        async for item in guard.turn(original, messages, cancellation_token, turn_delegation):
            yield item

    async def save_state() -> Mapping[str, Any]:
        state = dict(await save())
        acting = binding.known_run()
        if acting is not None:
            state[RUN_KEY] = {"run_id": acting.run_id, "checkpoint": shim.checkpoint(acting)}
        return state

    async def load_state(state: Mapping[str, Any]) -> None:
        await load(state)
        record = saved_run_record(state)
        if record is not None:
            binding.resumed = await resume_saved_run(shim, record)
            if binding.team is not None:
                binding.team.resumed = binding.resumed

    # Every caller (teams, agent.run, team state) goes through the instance's methods.
    setattr(agent, "on_messages_stream", on_messages_stream)  # noqa: B010
    setattr(agent, "save_state", save_state)  # noqa: B010
    setattr(agent, "load_state", load_state)  # noqa: B010
    set_binding(agent, binding)
    if register:
        register_agent(binding)
    return agent


def _secured_bench(bench: Workbench, binding: AgentBinding) -> Workbench:
    static = _internals.static_tools(bench)
    if static is None:
        if _internals.is_mcp(bench):
            raise TypeError(
                f"{type(bench).__name__} of agent {binding.name!r}: its tools run in the MCP "
                "server's process, where the shim cannot attach the agent's token and proof; "
                "give the agent in-process tools (tools=[...]) that call your API with "
                "shim.auth(), or protect the MCP server itself as a resource server"
            )
        # An in-process workbench of another kind: authorise each call_tool. One that
        # needs I/O to list its tools cannot be described before each mint: refused.
        _internals.listed_tools(bench)
        return AJWTWorkbench(bench, binding)
    tools, overrides = static
    wrapped: list[BaseTool[Any, Any]] = []
    for tool in tools:
        if isinstance(tool, AJWTTool):
            owner = tool.binding
            if owner.agent_id != binding.agent_id or (
                owner.agent is not None and owner.agent is not binding.agent
            ):
                raise TypeError(
                    f"tool {tool.name!r} of agent {binding.name!r} is already secured for agent "
                    f"{owner.name!r} (a workbench shared by two agents): give each agent its "
                    "own workbench, since a tool acts as the agent that calls it"
                )
            tool.binding = binding  # an AJWTTool the application made for this agent
            wrapped.append(tool)
            continue
        visible = getattr(overrides.get(tool.name), "name", None) or tool.name
        wrapped.append(AJWTTool(tool, binding.shim, agent=binding, tool_name=visible))
    _internals.set_static_tools(bench, wrapped)
    return bench


class _TurnGuard:
    """One secured agent's hand-offs and turns."""

    def __init__(self, binding: AgentBinding, ids: Mapping[str, str], humans: frozenset[str]):
        self.binding = binding
        self.ids = ids
        self.humans = humans
        self.refused: dict[str, AJWTError] = {}
        self.handed_off = False
        # One per event loop (a lock binds to the loop that first waits on it).
        self._calls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def workflow_id(self, name: str) -> str:
        team = self.binding.team
        peer = team.agents.get(name) if team is not None else None
        return peer.agent_id if peer is not None else self.ids.get(name, name)

    def is_human(self, name: str) -> bool:
        team = self.binding.team
        return name in self.humans or (team is not None and team.is_human(name))

    def peer(self, name: str) -> AgentBinding | None:
        """The binding of another agent of the application, by its AutoGen name: the one
        secured with this agent's team, else the only live version of its agent id."""
        team = self.binding.team
        if team is not None and name in team.agents:
            return team.agents[name]
        versions = {b.checksum: b for b in bindings_of(self.binding.shim, self.workflow_id(name))}
        return next(iter(versions.values())) if len(versions) == 1 else None

    async def delegate_to(self, target: str) -> None:
        """The agent hands off to ``target`` (an AutoGen name): a delegation, or a
        return to the agent that delegated to it."""
        binding, shim = self.binding, self.binding.shim
        run = binding.current_run()
        to_agent = self.workflow_id(target)
        peer = self.peer(target)
        if to_agent not in run.workflow.agents():
            raise not_an_agent(target, to_agent, run, self.humans, agent=peer is not None)
        with binding.acting(*([peer] if peer is not None else [])):
            await _handover(
                shim,
                binding.agent_id,
                to_agent,
                run,
                binding.checksum,
                _checksum(peer),
                turn=False,
            )

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
        as_tool = False
        previous = self._previous_speaker(messages) if turn_delegation else None
        refused = None
        if previous is not None:
            refused = await self._take_turn(previous)
        else:
            # Two calls of the caller's tool at once: the second finds the first's
            # consultation or hand-off made, and signs nothing again.
            async with self._call_lock():
                caller = self._caller()
                if caller is not None:
                    refused = await self._called_by(caller)
            running = running_as_tool.get()
            as_tool = (
                caller is not None and running is not None and running.runner is self.binding.agent
            )
        if refused is not None:
            yield refused
            return
        team = self.binding.team
        own_step = as_tool or (turn_delegation and team is not None and team.graph)
        refusals_before = self._refusals() if own_step else 0
        async for item in original(messages, cancellation_token):
            if isinstance(item, Response) and own_step and self._refusals() == refusals_before:
                # Done, unless something it did was refused (its work is not done: the
                # step stays open, and nothing after it runs). Before the answer goes
                # out: ``agent.run`` (what an AgentTool calls) stops reading there.
                await self._complete_turn_step()
            if isinstance(item, Response) and isinstance(item.chat_message, HandoffMessage):
                error = self.refused.get(item.chat_message.target)
                if error is not None:
                    # The hand-off did not happen: keep the turn, say why.
                    item = Response(
                        chat_message=TextMessage(
                            source=item.chat_message.source,
                            content=str(error),
                            metadata={"ajwt_reason": error.reason.value},
                        ),
                        inner_messages=item.inner_messages,
                    )
            yield item

    def _call_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._calls.get(loop)
        if lock is None:
            lock = self._calls[loop] = asyncio.Lock()
        return lock

    def _refusals(self) -> int:
        binding = self.binding
        run = binding.known_run()
        return refusals(binding.shim, binding.agent_id, run) if run is not None else 0

    async def _complete_turn_step(self) -> None:
        """A ``GraphFlow`` node's turn is its step: done when the turn ends, as a
        LangGraph node's step is when the node returns; so is the turn of an agent an
        ``AgentTool`` runs (its answer is the tool's result). Deferred inside
        ``shim.run`` (it rides on the run's next token request, or is sent when the
        block ends), so a join finds every parent complete whichever branch spoke last."""
        binding, shim = self.binding, self.binding.shim
        try:
            run = binding.current_run()
            step = current_step(shim, binding.agent_id, run)
            if run.workflow.steps[step].agent != binding.agent_id:
                return  # consulted in another agent's step: that step goes on
            if step in shim.completed_steps(run):
                return
            await shim.acomplete(
                binding.agent_id, step, run=run, checksum=binding.checksum, defer=True
            )
        except AJWTError:
            # Told to the shim's observers (completion_refused); the step stays open,
            # and the next turn's delegation is refused with the reason.
            return

    def _previous_speaker(self, messages: Sequence[BaseChatMessage]) -> str | None:
        """The AutoGen name of the agent of this application that spoke before this
        agent's turn, if any (a turn A-JWT refused hands nothing on)."""
        name = self.binding.name
        previous = next(
            (
                m.source
                for m in reversed(messages)
                if m.source != name and "ajwt_reason" not in m.metadata
            ),
            None,
        )
        if previous is None or self.is_human(previous):
            return None
        from_agent = self.workflow_id(previous)
        if from_agent == self.binding.agent_id:
            return None
        if not bindings_of(self.binding.shim, from_agent):
            return None  # not an agent of this application (a user proxy, a tool echo)
        return previous

    def _caller(self) -> AgentContext | None:
        """The tool call of another agent this turn runs inside (an ``AgentTool``, a
        ``TeamTool``'s first speaker, any tool that runs the agent), while that agent has
        yet to consult this one or hand it its step; ``None`` otherwise."""
        binding, shim = self.binding, self.binding.shim
        outer = shim.current()
        if outer is None or outer.tool is None or outer.ended:
            return None
        if outer.agent == binding.agent_id:
            return None
        state = shim.run_state(outer.run)
        if state.active_steps(binding.agent_id):
            return None  # handed its step already (a Swarm's hand-off tool, say)
        if outer.step is not None and state.consultation(binding.agent_id, outer.step):
            return None  # consulted in that step already: the same consultation
        return outer

    async def _called_by(self, caller: AgentContext) -> Response | None:
        """The agent acts inside ``caller``'s tool call: the caller consults it, or hands
        it its next step (:func:`~ajwt_autogen.adelegate`); refused, the turn ends with
        the refusal as its text and the agent does not run."""
        binding, run, step = self.binding, caller.run, caller.step
        try:
            with binding.acting():
                if step is not None and binding.agent_id in run.workflow.steps[step].consult:
                    # Asked inside the caller's step, which goes on when the tool returns:
                    # a consultation, also when the agent has a later step of its own.
                    await binding.shim.aconsult(
                        caller.agent,
                        binding.agent_id,
                        run=run,
                        from_step=step,
                        from_checksum=caller.checksum,
                        to_checksum=binding.checksum,
                    )
                else:
                    await adelegate(
                        binding.shim,
                        caller.agent,
                        binding.agent_id,
                        run=run,
                        from_checksum=caller.checksum,
                        to_checksum=binding.checksum,
                    )
        except AJWTError as error:
            hint = _as_tool_hint(error, binding.agent_id, run, step)
            what = f"the call from {caller.agent!r}'s tool {caller.tool!r}"
            denied = refusal(error, binding.agent_id, what, hint)
            running = running_as_tool.get()
            if running is not None:
                running.refusal = denied  # the caller's tool call fails with it
            return Response(
                chat_message=TextMessage(
                    source=binding.name,
                    content=str(denied),
                    metadata={"ajwt_reason": error.reason.value},
                )
            )
        return None

    async def _take_turn(self, previous: str) -> Response | None:
        """Turn delegation: the previous speaker of the workflow delegates to this agent."""
        name = self.binding.name
        from_agent = self.workflow_id(previous)
        peer = self.peer(previous)
        team = self.binding.team
        try:
            run = self.binding.current_run()
            with self.binding.acting(*([peer] if peer is not None else [])):
                await _handover(
                    self.binding.shim,
                    from_agent,
                    self.binding.agent_id,
                    run,
                    _checksum(peer),
                    self.binding.checksum,
                    graph=team is not None and team.graph,
                )
        except AJWTError as error:
            involved = {previous: from_agent, name: self.binding.agent_id}
            hint = unknown_agent_hint(error, involved, _run_or_none(self))
            denied = refusal(error, self.binding.agent_id, f"the turn from {previous!r}", hint)
            return Response(
                chat_message=TextMessage(
                    source=name,
                    content=str(denied),
                    metadata={"ajwt_reason": error.reason.value},
                )
            )
        return None


def _as_tool_hint(error: AJWTError, agent: str, run: Run, step: str | None) -> str:
    """What fixes a refused call of an agent that runs as another agent's tool, when
    the workflow has no place for it ("" otherwise)."""
    if error.reason != Reason.WRONG_AGENT_FOR_STEP or agent in run.workflow.agents():
        return ""
    where = f"step {step!r}" if step is not None else "the caller's step"
    return (
        f" (list {agent!r} under 'consult' in {where}, give it a step of its own after "
        "it, or map its AutoGen name to the workflow's agent id: agent_ids=)"
    )


def _checksum(binding: AgentBinding | None) -> str | None:
    return binding.checksum if binding is not None else None


def _run_or_none(guard: _TurnGuard) -> Run | None:
    try:
        return guard.binding.current_run()
    except AJWTError:
        return None


async def _handover(
    shim: Shim,
    from_agent: str,
    to_agent: str,
    run: Run,
    from_checksum: str | None,
    to_checksum: str | None,
    *,
    turn: bool = True,
    graph: bool = False,
) -> None:
    """``graph``: a ``GraphFlow``'s turn change, along an edge of its graph: always a
    delegation (a back edge is a loop, a new visit bounded by ``max_visits``), never a
    return or a turn back, which would let a loop go round unbounded."""
    hand = adelegate if graph else functools.partial(ahandover, turn=turn)
    try:
        await hand(
            shim,
            from_agent,
            to_agent,
            run=run,
            from_checksum=from_checksum,
            to_checksum=to_checksum,
        )
    except AgentContextError as error:
        if error.reason != Reason.AMBIGUOUS_AGENT:
            raise
        raise AgentContextError(
            error.reason,
            f"{error.description}. Several teams in this shim have an agent of that id: "
            "secure each team with secure_team(team, shim), so that a hand-off knows which "
            "version it hands to",
        ) from error


class _AJWTHandoffTool(BaseTool[BaseModel, BaseModel]):
    """A hand-off tool whose run signs the delegation to its target."""

    # Its schema is its inner tool's (_internals.SCHEMA_OF_INNER).
    _ajwt_schema_of_inner: ClassVar[bool] = True

    def __init__(self, tool: BaseTool[Any, Any], handoff: Handoff, guard: _TurnGuard) -> None:
        super().__init__(tool.args_type(), tool.return_type(), tool.name, tool.description)
        self.inner = tool
        self.handoff = handoff
        self.guard = guard

    @property
    def schema(self) -> ToolSchema:
        return _internals.offered_schema(self.inner)

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
            # AutoGen runs every hand-off the model asked for but follows only the first
            # (the first call starts first): sign one delegation per turn.
            return f"A-JWT: not handed off to {target!r}; only the first handoff of a turn counts"
        self.guard.handed_off = True
        if not self.guard.is_human(target):
            try:
                await self.guard.delegate_to(target)
            except AJWTError as error:
                binding = self.guard.binding
                involved = {binding.name: binding.agent_id, target: self.guard.workflow_id(target)}
                hint = unknown_agent_hint(error, involved, _run_or_none(self.guard))
                denied = refusal(error, binding.agent_id, f"the handoff to {target!r}", hint)
                self.guard.record_refusal(self.handoff, denied)
                # AutoGen does not catch a hand-off tool's exception (it would end the
                # team's run): the refusal is the tool's result, and the turn guard
                # turns the HandoffMessage into a text message.
                return str(denied)
        return await self.inner.run_json(args, cancellation_token, call_id=call_id)
