"""An AutoGen handoff (or turn change) as a signed A-JWT delegation (DESIGN §5.2, §6.6).

:func:`ahandover` is what a handoff tool does when it runs, and what a team's turn
change does with ``turn_delegation=True`` (``SelectorGroupChat``,
``RoundRobinGroupChat``, which have no handoff tools):

- handing the turn *back* to the agent that delegated to you is a return
  (:func:`areturn`): your step is completed, nothing is signed;
- any other handoff is a delegation (:func:`adelegate`): the delegator's step is
  completed (its work is done when it hands off) and the delegator signs the delegation
  of the delegate's step, which the IdP exchanges for the delegate's first token. The
  delegate's tool calls in that step then carry the chain ``[..., delegator, delegate]``.
"""

from __future__ import annotations

from ajwt_autogen.steps import current_step, delegated_step, delegator_of, track
from ajwt_core.shim import IssuedToken, Run, Shim

__all__ = ["adelegate", "ahandover", "areturn", "is_return"]


async def adelegate(
    shim: Shim,
    from_agent: str,
    to_agent: str,
    *,
    run: Run,
    to_step: str | None = None,
    audience: str | None = None,
) -> IssuedToken:
    """Hand the next step from ``from_agent`` to ``to_agent`` in ``run``.

    ``to_step`` defaults to the delegate's next step after the delegator's (see
    :mod:`ajwt_autogen.steps`); ``audience`` to the shim's ``default_audience`` (needed
    when the delegator holds no token yet). The local workflow check runs before the
    delegator's step is completed, so a handoff along no workflow edge completes
    nothing. Raises an :class:`~ajwt_core.errors.AJWTError` on refusal.

    Example (a turn change in a ``SelectorGroupChat``, inside an async selector)::

        await adelegate(shim, "planner", "classifier", run=run)
    """
    track(shim)
    the_audience = audience or shim.default_audience
    from_step = current_step(shim, from_agent, run)
    step = to_step or delegated_step(shim, from_step, to_agent, run)
    if shim.local_checks:
        run.workflow.check_delegation_edge(from_step, step, to_agent)
    if from_step not in shim.completed_steps(run):
        await shim.acomplete(from_agent, from_step, run=run, audience=the_audience)
    return await shim.ahandoff(
        from_agent, to_agent, step, run=run, audience=the_audience, from_step=from_step
    )


def is_return(shim: Shim, from_agent: str, to_agent: str, run: Run) -> bool:
    """Whether handing off to ``to_agent`` hands back to the agent that delegated to
    ``from_agent`` (a supervisor getting the turn back), rather than delegating on."""
    track(shim)
    return delegator_of(shim, from_agent, run) == to_agent


async def areturn(shim: Shim, from_agent: str, *, run: Run, audience: str | None = None) -> None:
    """Hand back to the delegator: ``from_agent``'s step is done; nothing is signed.

    The delegator goes on with its own tokens and chain; its next handoff delegates
    the next step (a supervisor handing each step to a worker).

    Example (the planner gives the turn back to the supervisor that delegated to it)::

        await areturn(shim, "planner", run=run)
    """
    step = current_step(shim, from_agent, run)
    if step not in shim.completed_steps(run):
        await shim.acomplete(from_agent, step, run=run, audience=audience or shim.default_audience)


async def ahandover(shim: Shim, from_agent: str, to_agent: str, *, run: Run) -> None:
    """``from_agent`` hands the turn to ``to_agent``: a return or a delegation.

    Example (a turn change picked by an async ``selector_func``)::

        await ahandover(shim, previous_speaker, chosen_speaker, run=run)
    """
    if is_return(shim, from_agent, to_agent, run):
        await areturn(shim, from_agent, run=run)
    else:
        await adelegate(shim, from_agent, to_agent, run=run)
