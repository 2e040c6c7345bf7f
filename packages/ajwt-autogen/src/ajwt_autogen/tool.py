"""``AJWTTool``: an AutoGen tool whose every call acts as its agent (DESIGN §6.5, §6.8).

It wraps any ``autogen_core.tools.BaseTool`` and keeps its name, description and schema,
so the model sees the same tool and the agent's checksum does not change. Around each
``run_json``:

1. *tool is called*: ``shim.aprepare`` resolves the workflow step for (agent, tool),
   runs the local checks and, with a ``default_audience``, mints the intent token. A
   refusal raises: AutoGen turns the exception into a tool result with
   ``is_error=True`` that the model sees, and the shim records a ``tool_failed`` event
   (the IdP's own refusals are in the run ledger). The tool does not run.
2. *agent acts*: the shim's acting context is set for the tool's body, so the tool's
   HTTP calls (``httpx`` with ``shim.auth()``) carry the agent's token and proof.
   ``FunctionTool`` runs a sync function in a thread without copying the context; this
   wrapper runs such functions itself, in a thread, with a copy of the context.
3. ``shim.tool_finished`` reports success or the error.

Tool calls that ``AssistantAgent`` runs concurrently each run in their own task, so
their contexts stay apart.

:class:`AJWTWorkbench` does the same around ``call_tool`` for an in-process workbench
that is not a ``StaticWorkbench`` (whose tools are wrapped one by one instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat
from autogen_core import CancellationToken, ComponentModel
from autogen_core.tools import (
    BaseTool,
    TextResultContent,
    ToolResult,
    ToolSchema,
    Workbench,
)
from pydantic import BaseModel

from ajwt_autogen import _internals
from ajwt_autogen.binding import AgentBinding, binding_of
from ajwt_autogen.refusals import refusal, unknown_agent_hint
from ajwt_autogen.steps import track
from ajwt_core.errors import AgentContextError, AJWTError, Reason
from ajwt_core.shim import AgentContext, Run, Shim

__all__ = ["AJWTTool", "AJWTWorkbench", "authorised"]

#: The agent an ``AgentTool`` (or the team a ``TeamTool``) runs in the tool call going on
#: now (the adapter's own plumbing, read by ``agent.py``): the calling agent consults it,
#: or hands it its step, as its turn starts; an agent run this way completes its own step
#: when it answers, and a refusal of its turn fails the tool call.
running_as_tool: ContextVar[RunAsTool | None] = ContextVar("ajwt_autogen_as_tool", default=None)


@dataclass
class RunAsTool:
    """The agent or team a tool call runs, and the refusal its turn met, if any (the
    tool call then fails with it, so the calling model sees an error result)."""

    runner: object
    refusal: AJWTError | None = None


def _unsecured(runner: object) -> list[str]:
    """The ``AssistantAgent`` s an ``AgentTool`` or ``TeamTool`` runs that are not
    secured: their tools would call as the agent that called the tool."""
    if isinstance(runner, AssistantAgent):
        return [] if binding_of(runner) is not None else [runner.name]
    if isinstance(runner, BaseGroupChat):
        return [name for member in _internals.participants(runner) for name in _unsecured(member)]
    return []


def _refuse_unsecured(binding: AgentBinding, tool: str, runner: object) -> None:
    names = _unsecured(runner)
    if not names:
        return
    error = AgentContextError(
        Reason.AGENT_NOT_REGISTERED,
        f"tool {tool!r} of agent {binding.agent_id!r} runs agent(s) "
        f"{', '.join(repr(n) for n in names)}, which are not secured: their calls would be "
        f"made as {binding.agent_id!r}. Secure them with the same shim (secure_agent, or "
        "secure_team for a team) and say in the workflow how they act (consult, or a step "
        "after the caller's)",
    )
    with contextlib.suppress(AJWTError):
        binding.shim.refused("tool_refused", binding.context(tool=tool), error)
    raise error


def _refused(error: AJWTError, binding: AgentBinding, tool: str) -> AJWTError:
    run: Run | None
    try:
        run = binding.current_run()
    except AJWTError:
        run = None
    hint = unknown_agent_hint(error, {binding.name: binding.agent_id}, run)
    return refusal(error, binding.agent_id, f"tool {tool!r}", hint)


@contextlib.asynccontextmanager
async def authorised(binding: AgentBinding, tool: str) -> AsyncIterator[AgentContext]:
    """The body runs as ``binding``'s agent calling ``tool``, once the shim allowed it.

    Resolves the step, runs the local checks (the live checksum and tools included) and,
    with a ``default_audience``, mints the token first; a refusal raises (with the hint
    that fixes a wiring mistake) and the body never runs. The outcome is reported with
    ``shim.tool_finished``.
    """
    shim = binding.shim
    track(shim)
    with binding.acting():
        try:
            context = binding.context(tool=tool)
        except AJWTError as error:
            raise _refused(error, binding, tool) from error
        try:
            prepared = await shim.aprepare(context)
        except AJWTError as error:
            shim.tool_finished(context, error)
            raise _refused(error, binding, tool) from error
        async with shim.aacting(
            prepared.agent,
            step=prepared.step,
            tool=prepared.tool,
            run=prepared.run,
            input_digest=prepared.input_digest,
            checksum=binding.checksum,
        ) as acting:
            try:
                yield acting
            except BaseException as error:
                shim.tool_finished(prepared, error)
                raise
        shim.tool_finished(prepared)


class AJWTTool(BaseTool[BaseModel, BaseModel]):
    """Wrap ``tool`` so that each call is authorised and made as ``agent``.

    ``agent`` is the ``AssistantAgent`` that owns the tool (its live object is what the
    shim checksums), its workflow agent id, or an :class:`AgentBinding`. ``agent_id``
    maps the AutoGen name to the workflow's agent id (default: the name).
    ``tool_name`` is the tool's name in the workflow (default: the tool's name).

    Example::

        read_file = AJWTTool(FunctionTool(read_file, description="Read one file."),
                             shim, agent="planner")
        planner = AssistantAgent("planner", model_client, tools=[read_file])

    (:func:`~ajwt_autogen.secure_agent` does this for every tool of an agent.)
    """

    # Its schema is its inner tool's (_internals.SCHEMA_OF_INNER).
    _ajwt_schema_of_inner: ClassVar[bool] = True

    def __init__(
        self,
        tool: BaseTool[Any, Any],
        shim: Shim,
        *,
        agent: str | AssistantAgent | AgentBinding,
        agent_id: str | None = None,
        tool_name: str | None = None,
    ) -> None:
        super().__init__(tool.args_type(), tool.return_type(), tool.name, tool.description)
        self.inner = tool
        if isinstance(agent, AgentBinding):
            self.binding = agent
        elif isinstance(agent, str):
            self.binding = AgentBinding(shim, agent_id or agent)
        else:
            self.binding = AgentBinding(shim, agent_id or agent.name, agent)
        self.tool_name = tool_name or tool.name
        self._sync_function = _internals.sync_function(tool)
        track(self.binding.shim)

    # The model sees exactly the wrapped tool.
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def description(self) -> str:
        return self.inner.description

    @property
    def schema(self) -> ToolSchema:
        return _internals.offered_schema(self.inner)

    def state_type(self) -> type[BaseModel] | None:
        return self.inner.state_type()

    def return_value_as_string(self, value: Any) -> str:
        return self.inner.return_value_as_string(value)

    async def save_state_json(self) -> Mapping[str, Any]:
        return await self.inner.save_state_json()

    async def load_state_json(self, state: Mapping[str, Any]) -> None:
        await self.inner.load_state_json(state)

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        return await self.run_json(args.model_dump(), cancellation_token)

    async def run_json(
        self,
        args: Mapping[str, Any],
        cancellation_token: CancellationToken,
        call_id: str | None = None,
    ) -> Any:
        runner = _internals.task_runner(self.inner)
        if runner is None:
            async with authorised(self.binding, self.tool_name):
                return await self._call(args, cancellation_token, call_id)
        _refuse_unsecured(self.binding, self.tool_name, runner)
        async with authorised(self.binding, self.tool_name):
            running = RunAsTool(runner)
            token = running_as_tool.set(running)
            try:
                result = await self._call(args, cancellation_token, call_id)
            finally:
                running_as_tool.reset(token)
            if running.refusal is not None:
                raise running.refusal
            return result

    async def _call(
        self, args: Mapping[str, Any], cancellation_token: CancellationToken, call_id: str | None
    ) -> Any:
        function = self._sync_function
        if function is None:
            return await self.inner.run_json(args, cancellation_token, call_id=call_id)
        # FunctionTool would run it in the default executor without the context: the
        # acting agent would be unknown inside (FRAMEWORKS.md, AutoGen).
        model = self.inner.args_type().model_validate(args)
        parameters = inspect.signature(function).parameters
        kwargs = {name: getattr(model, name) for name in parameters if hasattr(model, name)}
        if "cancellation_token" in parameters:
            kwargs["cancellation_token"] = cancellation_token
        call = functools.partial(contextvars.copy_context().run, function, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(None, call)
        cancellation_token.link_future(future)
        return await future


class AJWTWorkbench(Workbench):
    """An in-process workbench whose every ``call_tool`` is authorised and made as the
    agent (the same checks as :class:`AJWTTool`); a refusal is an error result the model
    sees, and the inner workbench is not called.

    :func:`~ajwt_autogen.secure_agent` uses it for workbenches that are not a
    ``StaticWorkbench`` and list their tools without I/O; a ``StaticWorkbench`` (or a
    subclass) keeps its own class and ``call_tool``, and its tools are wrapped instead.

    Example::

        bench = AJWTWorkbench(MyWorkbench(), AgentBinding(shim, "planner", planner))
    """

    def __init__(self, inner: Workbench, binding: AgentBinding) -> None:
        self.inner = inner
        self.binding = binding

    async def list_tools(self) -> list[ToolSchema]:
        return list(await self.inner.list_tools())

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        cancellation_token: CancellationToken | None = None,
        call_id: str | None = None,
    ) -> ToolResult:
        try:
            async with authorised(self.binding, name):
                return await self.inner.call_tool(name, arguments, cancellation_token, call_id)
        except AJWTError as error:
            return ToolResult(
                name=name, result=[TextResultContent(content=str(error))], is_error=True
            )

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def reset(self) -> None:
        await self.inner.reset()

    async def save_state(self) -> Mapping[str, Any]:
        return await self.inner.save_state()

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await self.inner.load_state(state)

    def dump_component(self) -> ComponentModel:
        raise TypeError(
            "a secured workbench holds a live shim and is not a serialisable component: "
            "dump the agent before securing it"
        )
