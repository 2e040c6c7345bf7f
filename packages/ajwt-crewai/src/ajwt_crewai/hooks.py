"""The CrewAI hooks the adapter installs (global, once per process).

- ``before_tool_call``: announce the call (agent, tool) for the secured tools to read
  back (:mod:`ajwt_crewai.calls`); for CrewAI's delegation tools, make the signed
  hand-off ("Delegate work to coworker") or the consultation ("Ask question to
  coworker") and **block** the call (return ``False``) if it is refused.
- ``after_tool_call``: close the announced call; tell the agent why a delegation was
  refused; complete the coworker's step after its delegated work; in strict mode
  (``secure_crew(..., strict=True)``) abort the kickoff on a refusal, with CrewAI's own
  :class:`~crewai.hooks.HookAborted` (:class:`AJWTRefusal`, which carries the error).
- ``post_step`` (end of a crew task): complete the task agent's steps.

``crewai.hooks.clear_all_global_hooks()`` removes the tool hooks; every secured crew
reinstalls them when it is kicked off (a ``before_kickoff_callbacks`` entry), and a
secured tool called without them refuses and says why.

CrewAI swallows any exception a hook raises and carries on (fail-open), so these hooks
never raise: a refusal becomes ``return False``, and the tools themselves refuse what
reaches them without an agent they can name (fail closed).

The hooks are global and know agents by role, so an unsecured crew whose agents have
the roles of secured ones (a plain-OAuth baseline of the same crew, in the same process)
runs inside :func:`hooks_suspended`, where they do nothing; a secured tool called there
refuses, since no agent is announced to it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.hooks import (
    InterceptionPoint,
    ToolCallHookContext,
    register_after_tool_call_hook,
    register_before_tool_call_hook,
    register_hook,
    unregister_after_tool_call_hook,
    unregister_before_tool_call_hook,
    unregister_hook,
)
from crewai.hooks.contexts import StepContext
from crewai.hooks.dispatch import HookAborted, get_hooks
from crewai.hooks.tool_hooks import get_after_tool_call_hooks, get_before_tool_call_hooks

from ajwt_core.errors import AgentContextError, AJWTError, Reason
from ajwt_core.shim.context import current_run
from ajwt_crewai.binding import CrewAIBinding, Handoff, bindings
from ajwt_crewai.calls import CONSULT_TOOL, DELEGATION_TOOLS, ToolCall, pop_call, push_call

__all__ = [
    "DELEGATION_TOOLS",
    "AJWTRefusal",
    "hooks_installed",
    "hooks_suspended",
    "install_hooks",
    "uninstall_hooks",
]


class AJWTRefusal(HookAborted):
    """A refusal that aborts ``kickoff`` (``secure_crew(..., strict=True)``): CrewAI's
    :class:`~crewai.hooks.HookAborted`, with the A-JWT error in ``error``."""

    def __init__(self, agent: str, tool: str, error: AJWTError) -> None:
        super().__init__(
            f"A-JWT refused {tool!r} for agent {agent!r}: {error.description} "
            f"[{error.reason.value}]",
            source="ajwt_crewai",
        )
        self.agent = agent
        self.tool = tool
        self.error = error


log = logging.getLogger(__name__)

_install_lock = threading.Lock()
_suspended: ContextVar[bool] = ContextVar("ajwt_crewai_hooks_suspended", default=False)


@contextlib.contextmanager
def hooks_suspended() -> Iterator[None]:
    """The adapter's hooks do nothing in this context (and in the copies CrewAI makes of
    it for its worker threads): no call is announced, no delegation signed or refused,
    no step completed. For a crew that is deliberately not secured."""
    token = _suspended.set(True)
    try:
        yield
    finally:
        _suspended.reset(token)


def _role_key(name: str) -> str:
    # How CrewAI's delegation tools match a coworker's role (BaseAgentTool).
    return " ".join(name.split()).replace('"', "").casefold()


def _coworker_name(tool_input: dict[str, Any]) -> str:
    name = tool_input.get("coworker") or tool_input.get("co_worker") or ""
    name = str(name)
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1].split(",")[0]
    return name


def _find_coworker(context: ToolCallHookContext, name: str) -> BaseAgent | None:
    wanted = _role_key(name)
    crew = context.crew
    candidates: list[BaseAgent] = [*(getattr(crew, "agents", None) or [])]
    for binding in bindings():
        candidates.extend(binding.registered_agents())
    return next((a for a in candidates if _role_key(a.role) == wanted), None)


def _crewai_agent(agent: object) -> BaseAgent | None:
    # LiteAgent (a standalone agent outside any crew) is not a BaseAgent: not mapped.
    return agent if isinstance(agent, BaseAgent) else None


def _binding_of(agent: BaseAgent | None) -> CrewAIBinding | None:
    if agent is None:
        return None
    known = [b for b in bindings() if b.agent_id_for(agent) is not None]
    for binding in known:
        if binding.knows(agent):  # the binding of the crew it was secured in
            return binding
    crew = getattr(agent, "crew", None)
    for binding in known:
        if crew is not None and binding.secured(crew):  # made by CrewAI for that crew
            return binding
    # A copy of a secured crew (crew.copy(), kickoff_for_each): its secured tools, or
    # its coworkers', name the shim.
    for member in [agent, *(getattr(crew, "agents", None) or [])]:
        for tool in getattr(member, "tools", None) or []:
            shim = getattr(tool, "shim", None)
            for binding in known:
                if shim is not None and binding.shim is shim:
                    return binding
    return known[0] if known else None


def _hand_off(context: ToolCallHookContext) -> tuple[CrewAIBinding | None, Handoff | None]:
    """Sign the delegation or consultation of this call; a refusal raises, and is listed
    in the binding's ``refusals`` (the delegator's, else the coworker's)."""
    name = _coworker_name(context.tool_input)
    coworker = _find_coworker(context, name)
    delegator = _crewai_agent(context.agent)
    binding = _binding_of(delegator)
    if binding is None:
        theirs = _binding_of(coworker)
        if theirs is None:
            return None, None  # neither side is an A-JWT agent: not ours to check
        error = AgentContextError(
            Reason.NO_AGENT_CONTEXT,
            f"an agent unknown to A-JWT cannot delegate to the A-JWT agent {name!r}",
        )
        theirs.record_refusal(delegator.role if delegator else "?", context.tool_name, error)
        raise error
    assert delegator is not None
    try:
        if coworker is None:
            raise AgentContextError(Reason.NO_AGENT_CONTEXT, f"no coworker has the role {name!r}")
        run = current_run()
        if run is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT, "a delegation outside any run: use shim.run(run)"
            )
        if context.tool_name == CONSULT_TOOL:
            return binding, binding.consult(delegator, coworker, run)
        return binding, binding.delegate(delegator, coworker, run)
    except AJWTError as error:
        label = binding.agent_id_for(delegator) or delegator.role
        binding.record_refusal(label, context.tool_name, error)
        raise


def before_tool_call(context: ToolCallHookContext) -> bool | None:
    """Announce the call; sign the hand-off of a delegation, or block it."""
    if _suspended.get():
        return None
    binding: CrewAIBinding | None = None
    handoff: Handoff | None = None
    refusal: Exception | None = None
    if context.tool_name in DELEGATION_TOOLS:
        try:
            binding, handoff = _hand_off(context)
        except Exception as error:  # noqa: BLE001 - a raising hook would let the call through
            refusal = error
    push_call(
        ToolCall(
            key=id(context.tool_input),
            tool_name=context.tool_name,
            agent=_crewai_agent(context.agent),
            crew=context.crew,
            binding=binding,
            handoff=handoff,
            refusal=refusal,
        )
    )
    return False if refusal is not None else None


def _explain(error: Exception) -> str:
    if isinstance(error, AJWTError):
        return f"{error.description} (A-JWT: {error.reason.value})"
    return f"{type(error).__name__}: {error}"


def after_tool_call(context: ToolCallHookContext) -> str | None:
    """Close the call; explain a refused delegation; complete the coworker's step."""
    if _suspended.get():
        return None
    call = pop_call(id(context.tool_input), context.tool_name)
    if call is None:
        return None
    _abort_if_strict(call)
    if call.refusal is not None:
        what = "Consultation" if call.tool_name == CONSULT_TOOL else "Delegation"
        return f"{what} refused: {_explain(call.refusal)}"
    if call.handoff is not None and call.binding is not None:
        try:
            call.binding.finish_delegation(call.handoff)
        except Exception:  # hooks must not raise; the next mint fails closed
            log.exception("A-JWT: completing step %r failed", call.handoff.to_step)
    return None


def _abort_if_strict(call: ToolCall) -> None:
    """In strict mode, a refused call aborts the kickoff (HookAborted propagates)."""
    binding = call.binding or _binding_of(call.agent)
    if binding is None or not binding.strict_for(call.crew):
        return
    refusals = list(call.refused)
    if call.refusal is not None:
        label = (binding.agent_id_for(call.agent) if call.agent else None) or "?"
        refusals.append((label, call.tool_name, call.refusal))
    if not refusals:
        return
    agent, tool, error = refusals[0]
    if not isinstance(error, AJWTError):
        error = AgentContextError(Reason.NO_AGENT_CONTEXT, str(error))
    raise AJWTRefusal(agent, tool, error)


def after_task(context: StepContext) -> None:
    """A crew task ended: complete its agent's steps (its tool calls succeeded)."""
    if _suspended.get():
        return None
    run = current_run()
    if context.kind != "task" or not isinstance(context.agent, BaseAgent) or run is None:
        return None
    for binding in bindings():
        try:
            binding.complete_task(context.agent, run)
        except Exception:  # hooks must not raise; the next mint fails closed
            log.exception("A-JWT: completing the steps of %r failed", context.agent.role)
    return None


def hooks_installed() -> bool:
    """Whether all of the adapter's hooks are registered with CrewAI now."""
    return (
        before_tool_call in get_before_tool_call_hooks()
        and after_tool_call in get_after_tool_call_hooks()
        and after_task in get_hooks(InterceptionPoint.POST_STEP)
    )


def install_hooks() -> None:
    """Install the adapter's CrewAI hooks, or the ones removed since (idempotent)."""
    with _install_lock:
        if before_tool_call not in get_before_tool_call_hooks():
            register_before_tool_call_hook(before_tool_call)
        if after_tool_call not in get_after_tool_call_hooks():
            register_after_tool_call_hook(after_tool_call)
        if after_task not in get_hooks(InterceptionPoint.POST_STEP):
            register_hook(InterceptionPoint.POST_STEP, after_task)


def reinstall_at_kickoff(inputs: dict[str, Any] | None) -> dict[str, Any] | None:
    """A crew's ``before_kickoff_callbacks`` entry: reinstall the hooks if something
    (``crewai.hooks.clear_all_global_hooks()``) removed them; the inputs pass unchanged."""
    install_hooks()
    return inputs


def uninstall_hooks() -> None:
    """Remove the adapter's CrewAI hooks (for tests).

    Secured tools then refuse every call made outside ``shim.acting``.
    """
    with _install_lock:
        unregister_before_tool_call_hook(before_tool_call)
        unregister_after_tool_call_hook(after_tool_call)
        unregister_hook(InterceptionPoint.POST_STEP, after_task)
