"""An AutoGen hand-off (or turn change) as a signed A-JWT delegation (DESIGN §5.2, §6.6).

:func:`ahandover` is what a hand-off tool does when it runs, and what a team's turn
change does with turn delegation (``SelectorGroupChat``, ``RoundRobinGroupChat``, which
have no hand-off tools):

- handing the turn *back* to the agent that delegated to you (or consulted you) is a
  return (:func:`areturn`): your step is completed (a consulted agent completes
  nothing), nothing is signed;
- handing it to an agent whose step is completed and cannot be entered again from here
  (:func:`is_turn_back`) gives it the turn back in that step: nothing is signed, its
  tool calls are further calls in the completed step, each asked of the IdP, and the
  delegator's own step is completed as on a return;
- handing it to an agent the delegator's step may consult, when that agent has no step
  after it, is a consultation (``shim.aconsult``);
- any other hand-off is a delegation (:func:`adelegate`): the delegator signs the
  delegation of the delegate's step, which the IdP exchanges for the delegate's first
  token, and the delegator's step is completed in the same request (its work is done
  when it hands off). The delegate's tool calls in
  that step then carry the chain ``[..., delegator, delegate]``.

Every one of them is made by the delegator as it is now: the shim recomputes its live
checksum first, so a changed agent hands nothing on and completes nothing (T4).
``from_checksum`` / ``to_checksum`` say which registered version of each agent acts when
the shim holds several (two teams whose agents share a name).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ajwt_autogen.steps import current_step, delegated_step, delegation_of, ready_after, track
from ajwt_core.errors import AJWTError
from ajwt_core.shim import AgentContext, IssuedToken, Run, Shim

__all__ = ["adelegate", "ahandover", "areturn", "is_return", "is_turn_back"]


async def adelegate(
    shim: Shim,
    from_agent: str,
    to_agent: str,
    *,
    run: Run,
    to_step: str | None = None,
    audience: str | None = None,
    from_checksum: str | None = None,
    to_checksum: str | None = None,
) -> IssuedToken:
    """Hand the next step from ``from_agent`` to ``to_agent`` in ``run`` (or consult it).

    ``to_step`` defaults to the delegate's next step after the delegator's (see
    :mod:`ajwt_autogen.steps`); ``audience`` to the shim's ``default_audience`` (the
    delegate's first token is then for its step's only tool; without one it is a step
    token). The delegator's step is completed in the same request as the delegation:
    both are recorded, or neither.
    Raises an :class:`~ajwt_core.errors.AJWTError` on refusal.

    Example (a turn change in a ``SelectorGroupChat``, inside an async selector)::

        await adelegate(shim, "planner", "classifier", run=run)
    """
    track(shim)
    workflow = run.workflow
    with _told(shim, from_agent, to_agent, run):
        from_step = current_step(shim, from_agent, run)
    source = workflow.steps[from_step]
    if (
        to_step is None
        and to_agent in source.consult
        and not _has_step_after(run, from_step, to_agent)
    ):
        return await shim.aconsult(
            from_agent,
            to_agent,
            run=run,
            audience=audience,
            from_step=from_step,
            from_checksum=from_checksum,
            to_checksum=to_checksum,
        )
    with _told(shim, from_agent, to_agent, run, from_step):
        step = to_step or delegated_step(shim, from_step, to_agent, run)
    # A hand-off to a later step completes the delegator's step in the same request,
    # also when that step does not wait for it (a later branch): the delegator is done
    # with it all the same. Work sent back (loop_to) reopens the delegator's step instead.
    done = step in workflow.descendants(from_step) and from_step not in shim.completed_steps(run)
    return await shim.ahandoff(
        from_agent,
        to_agent,
        step,
        run=run,
        audience=audience,
        from_step=from_step,
        from_checksum=from_checksum,
        to_checksum=to_checksum,
        complete=done,
    )


@contextmanager
def _told(
    shim: Shim, from_agent: str, to_agent: str, run: Run, from_step: str | None = None
) -> Iterator[None]:
    """A refusal raised here, before the shim's hand-off operation (which tells its own
    refusals), is told to the shim's observers as ``handoff_refused`` too."""
    try:
        yield
    except AJWTError as error:
        detail = {"from_agent": from_agent, **({"from_step": from_step} if from_step else {})}
        shim.refused("handoff_refused", AgentContext(to_agent, run, None), error, detail)
        raise


def _has_step_after(run: Run, from_step: str, agent: str) -> bool:
    workflow = run.workflow
    later = workflow.descendants(from_step) | set(workflow.steps[from_step].loop_to)
    return any(s in later for s in workflow.steps_of(agent))


def is_return(shim: Shim, from_agent: str, to_agent: str, run: Run) -> bool:
    """Whether handing off to ``to_agent`` hands back to the agent that delegated to
    (or consulted) ``from_agent`` in its current step, rather than delegating on."""
    track(shim)
    step = current_step(shim, from_agent, run)
    delegated = delegation_of(shim, from_agent, step, run)
    return delegated is not None and delegated.from_agent == to_agent


def _loops_back(run: Run, from_step: str, to_agent: str) -> bool:
    """Whether ``to_agent`` has a step ``from_step`` sends work back to (``loop_to``)."""
    loop_to = run.workflow.steps[from_step].loop_to
    return any(s in loop_to for s in run.workflow.steps_of(to_agent))


def is_turn_back(shim: Shim, from_agent: str, to_agent: str, run: Run) -> bool:
    """Whether a turn change gives ``to_agent`` the turn back in a step it has completed
    and no delegation from ``from_agent``'s step may enter again (not after it, or its
    ``max_visits`` used up): its tool calls are then further calls in that completed
    step (DESIGN §6), each asked of the IdP, and nothing is signed. A completed step a
    loop may still enter (``loop_to``, or a later step, with visits left) is delegated
    as a new visit instead."""
    track(shim)
    workflow = run.workflow
    from_step = current_step(shim, from_agent, run)
    source = workflow.steps[from_step]
    if to_agent in source.consult and not _has_step_after(run, from_step, to_agent):
        return False  # a consultation
    step = delegated_step(shim, from_step, to_agent, run)
    state = shim.run_state(run)
    if step not in state.completed or workflow.steps[step].agent != to_agent:
        return False
    along = step in workflow.descendants(from_step) or step in source.loop_to
    return not (along and state.visit(step) < workflow.steps[step].max_visits)


async def areturn(
    shim: Shim,
    from_agent: str,
    *,
    run: Run,
    audience: str | None = None,
    checksum: str | None = None,
) -> None:
    """Hand back to the delegator: ``from_agent``'s step is done; nothing is signed.

    The delegator goes on with its own tokens and chain; its next hand-off delegates
    the next step (a supervisor handing each step to a worker). A consulted agent
    answers inside the consulting agent's step and completes nothing.

    Example (the planner gives the turn back to the supervisor that delegated to it)::

        await areturn(shim, "planner", run=run)
    """
    del audience  # the completion is proven with a step token when no token is live
    step = current_step(shim, from_agent, run)
    if run.workflow.steps[step].agent != from_agent:
        return  # a consultation: the consulting agent's step goes on
    if step not in shim.completed_steps(run):
        await shim.acomplete(from_agent, step, run=run, checksum=checksum)


async def ahandover(
    shim: Shim,
    from_agent: str,
    to_agent: str,
    *,
    run: Run,
    from_checksum: str | None = None,
    to_checksum: str | None = None,
    turn: bool = True,
) -> None:
    """``from_agent`` hands the turn to ``to_agent``: a return, a turn back into a step
    ``to_agent`` completed (:func:`is_turn_back`: nothing signed), or a delegation; work
    sent back along a ``loop_to`` of the speaker's step is always a delegation (a new
    visit, refused past ``max_visits``).
    ``turn=False``: a hand-off the agent made itself (a ``Swarm``'s hand-off tool), which
    is a return or a delegation only: handing work to a step already done is refused.

    Example (a turn change picked by an async ``selector_func``)::

        await ahandover(shim, previous_speaker, chosen_speaker, run=run)
    """
    with _told(shim, from_agent, to_agent, run):
        track(shim)
        from_step = current_step(shim, from_agent, run)
        # Work sent back along a loop the workflow declares is a new visit, bounded by
        # max_visits, whatever else the turn change looks like. Handing the turn to the
        # agent that delegated to the speaker is a return, unless that agent has an open
        # step after the speaker's to move the work on to (after a loop sent it back).
        looping = _loops_back(run, from_step, to_agent)
        returning = (
            not looping
            and is_return(shim, from_agent, to_agent, run)
            and not ready_after(shim, from_step, to_agent, run)
        )
        back = (
            turn and not looping and not returning and is_turn_back(shim, from_agent, to_agent, run)
        )
    if returning or back:
        # A turn back signs nothing either: the delegate acts again in the step it was
        # given before. The agent handing the turn on is done with its own step.
        await areturn(shim, from_agent, run=run, checksum=from_checksum)
    else:
        await adelegate(
            shim,
            from_agent,
            to_agent,
            run=run,
            from_checksum=from_checksum,
            to_checksum=to_checksum,
        )
