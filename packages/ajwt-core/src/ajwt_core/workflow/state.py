"""Where a run stands in its workflow, and what it may do next (DESIGN §6.3, §6.5–§6.7).

:class:`RunState` is rebuilt from the run's ledger events (``step_entered``,
``step_completed``, ``step_approved``, ``delegation``, ``step_reopened``) and answers the
IdP's questions: may this agent get a token for this step and tool
(:meth:`RunState.check_mint`), may this agent hand on to that one
(:meth:`RunState.check_delegation`), may it complete its step
(:meth:`RunState.check_completion`). The shim asks the same questions of its own copy,
so a refusal is usually known before a request is sent; the IdP decides.

>>> from ajwt_core.workflow import Workflow
>>> wf = Workflow.from_mapping({"id": "trip", "version": 1, "steps": {
...     "lookup": {"agent": "agent", "tools": ["search_flights"]},
...     "book": {"agent": "agent", "tools": ["book_flight"], "after": ["lookup"]}}})
>>> state = RunState(wf)
>>> state.check_mint("agent", None, "search_flights").step
'lookup'
>>> state.apply("step_entered", {"step": "lookup", "agent": "agent"})
>>> state.check_mint("agent", None, "book_flight").complete_first   # moves on to its next step
('lookup',)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ajwt_core.errors import (
    AccessDenied,
    InvalidGrant,
    Reason,
    UnauthorizedClient,
)
from ajwt_core.workflow.model import Step, Workflow, names, steps_phrase

DelegationKind = Literal["handoff", "consult", "loop"]

#: The ledger entry kinds a run state is built from (see :mod:`ajwt_core.ledger`).
STATE_EVENTS = frozenset(
    {"step_entered", "step_completed", "step_approved", "delegation", "step_reopened"}
)


@dataclass(frozen=True)
class Delegated:
    """A hand-off recorded in the run: ``agent`` now acts in ``step`` under ``chain``."""

    agent: str
    step: str
    from_agent: str
    from_step: str
    chain: tuple[str, ...]
    scope: str
    assertion_hash: str
    kind: DelegationKind = "handoff"


@dataclass(frozen=True)
class MintDecision:
    """What a token for (agent, step, tool) may carry, and what minting it records.

    ``complete_first``: the agent's own earlier steps that this call completes (it moved
    on to its next step). ``enters``: the first token of the step in this visit.
    ``scopes``: the workflow's bound on the token's scope. ``delegated``: the hand-off
    (or consultation) the token continues, whose chain and scope it carries.
    """

    step: str
    scopes: tuple[str, ...]
    complete_first: tuple[str, ...] = ()
    enters: bool = False
    visit: int = 1
    delegated: Delegated | None = None

    @property
    def consultation(self) -> bool:
        return self.delegated is not None and self.delegated.kind == "consult"


@dataclass(frozen=True)
class DelegationDecision:
    """How a hand-off moves the run: ``complete_first`` (the delegator's step, completed
    by handing on), ``reopen`` (steps reset because work is sent back to ``reopen[0]``)."""

    kind: DelegationKind
    complete_first: tuple[str, ...] = ()
    reopen: tuple[str, ...] = ()
    visit: int = 1


def _who(workflow: Workflow, step_id: str) -> str:
    return f"{step_id!r} (agent {workflow.steps[step_id].agent!r})"


def _steps_with_agents(workflow: Workflow, step_ids: Iterable[str]) -> str:
    items = [_who(workflow, s) for s in step_ids]
    if not items:
        return "none"
    return ("step " if len(items) == 1 else "steps ") + ", ".join(items)


@dataclass
class RunState:
    """A run's position in its workflow, from its ledger events (or a shim's own)."""

    workflow: Workflow
    entered: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    approved: set[str] = field(default_factory=set)
    delegations: list[Delegated] = field(default_factory=list)
    visits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def replay(
        cls, workflow: Workflow, events: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> RunState:
        """The state after ``events`` (ledger ``(kind, data)`` pairs in ledger order);
        other kinds are ignored."""
        state = cls(workflow)
        for kind, data in events:
            state.apply(kind, data)
        return state

    def copy(self) -> RunState:
        return RunState(
            self.workflow,
            set(self.entered),
            set(self.completed),
            set(self.approved),
            list(self.delegations),
            dict(self.visits),
        )

    # ------------------------------------------------------------------ events

    def apply(self, kind: str, data: Mapping[str, Any]) -> None:
        """Record one ledger event (the data the IdP writes for that kind)."""
        if kind == "step_entered":
            self.entered.add(str(data["step"]))
        elif kind == "step_completed":
            self.entered.add(str(data["step"]))
            self.completed.add(str(data["step"]))
        elif kind == "step_approved":
            self.approved.add(str(data["step"]))
        elif kind == "delegation":
            self.delegations.append(
                Delegated(
                    agent=str(data["to"]),
                    step=str(data["to_step"]),
                    from_agent=str(data["from"]),
                    from_step=str(data["from_step"]),
                    chain=tuple(str(a) for a in data["chain"]),
                    scope=str(data["scope"]),
                    assertion_hash=str(data["assertion"]),
                    kind=_kind(data.get("kind")),
                )
            )
        elif kind == "step_reopened":
            reset = {str(s) for s in data["reset"]}
            self.entered -= reset
            self.completed -= reset
            self.approved -= reset
            self.delegations = [d for d in self.delegations if d.step not in reset]
            self.visits[str(data["step"])] = int(data["visit"])

    def visit(self, step_id: str) -> int:
        """Which visit of ``step_id`` the run is in (1 until work is sent back to it)."""
        return self.visits.get(step_id, 1)

    # ----------------------------------------------------------------- position

    def chosen(self, chooser: str) -> str | None:
        """The alternative of ``chooser``'s ``one_of`` the run has taken, if any."""
        for member in self.workflow.steps[chooser].one_of:
            if member in self.entered or member in self.completed:
                return member
        return None

    def skipped(self) -> dict[str, str]:
        """Steps the run can no longer take, each with the reason (a sentence end)."""
        wf = self.workflow
        skipped: dict[str, str] = {}
        for step_id in wf.topological_order():
            step = wf.steps[step_id]
            chooser = wf.chooser_of(step_id)
            if chooser is not None:
                chosen = self.chosen(chooser)
                if chosen is not None and chosen != step_id:
                    skipped[step_id] = (
                        f"step {chooser!r} chose {chosen!r} among its 'one_of' alternatives "
                        f"{names(wf.steps[chooser].one_of)}"
                    )
                    continue
            blocked = [d for d in step.after if d in skipped]
            if blocked:
                skipped[step_id] = f"it runs after {blocked[0]!r}, which the run did not take"
                continue
            if step.after_any and all(d in skipped for d in step.after_any):
                skipped[step_id] = (
                    f"none of its 'after_any' steps {names(step.after_any)} is on the run's path"
                )
        return skipped

    def ready(self, step_id: str) -> bool:
        """Whether ``step_id`` may run now: on the run's path, predecessors completed."""
        return step_id not in self.skipped() and not self.workflow.waits_for(
            step_id, self.completed
        )

    def due(self) -> list[str]:
        """Steps that may start now (ready, not completed), in topological order."""
        skipped = self.skipped()
        return [
            s
            for s in self.workflow.topological_order()
            if s not in skipped
            and s not in self.completed
            and not self.workflow.waits_for(s, self.completed)
        ]

    def remaining(self) -> list[str]:
        """Required steps on the run's path not yet completed (empty: run finished)."""
        skipped = self.skipped()
        return [
            s
            for s in self.workflow.topological_order()
            if self.workflow.steps[s].required and s not in skipped and s not in self.completed
        ]

    @property
    def finished(self) -> bool:
        return not self.remaining()

    def active_steps(self, agent: str) -> list[str]:
        """Steps ``agent`` has entered and not completed (its current work)."""
        return [
            s
            for s in self.workflow.steps_of(agent)
            if s in self.entered and s not in self.completed
        ]

    def consultation(self, agent: str, step_id: str) -> Delegated | None:
        """The open consultation of ``agent`` in ``step_id`` (this visit), if any."""
        for delegated in reversed(self.delegations):
            if (
                delegated.kind == "consult"
                and delegated.agent == agent
                and delegated.step == step_id
            ):
                return delegated
        return None

    def consulting(self, agent: str) -> list[str]:
        """Steps in which ``agent`` has been consulted (and may still act)."""
        found: list[str] = []
        for delegated in self.delegations:
            consulted = delegated.kind == "consult" and delegated.agent == agent
            if consulted and delegated.step not in found:
                found.append(delegated.step)
        return found

    def delegation_to(self, agent: str, step_id: str) -> Delegated | None:
        """The latest hand-off of ``step_id`` to ``agent`` in this visit (not consultations)."""
        for delegated in reversed(self.delegations):
            if (
                delegated.kind != "consult"
                and delegated.agent == agent
                and delegated.step == step_id
            ):
                return delegated
        return None

    def describe(self) -> str:
        """Where the run stands, for messages: the steps due now."""
        due = self.due()
        if not due:
            return "no step is due now" + (" (the run is finished)" if self.finished else "")
        return "due now: " + _steps_with_agents(self.workflow, due)

    # -------------------------------------------------------------------- mints

    def check_mint(
        self, agent: str, step_id: str | None, tool: str | None, *, approvals: bool = True
    ) -> MintDecision:
        """Whether ``agent`` may get a token for ``tool`` (None: a step token, for the IdP
        only) in ``step_id`` (None: the step its tool resolves to). Raises the refusal
        (DESIGN §6.5 steps 6–9) with a sentence that names the cause and the fix.
        ``approvals=False`` skips the approval check (a client does not see approvals;
        the IdP checks them)."""
        wf = self.workflow
        if step_id is None:
            step_id = (
                self._only_step(agent)
                if tool is None
                else self.step_for(agent, tool, approvals=approvals)
            )
        step = wf.step(step_id)
        consultation: Delegated | None = None
        if step.agent == agent:
            if tool is not None and tool not in step.tools:
                raise UnauthorizedClient(
                    Reason.TOOL_NOT_ALLOWED, self._tool_refusal(agent, step_id, tool)
                )
            scopes = tuple(step.scopes)
        else:
            consultation = self.consultation(agent, step_id)
            if consultation is None:
                raise UnauthorizedClient(
                    Reason.WRONG_AGENT_FOR_STEP, self._wrong_agent(agent, step_id, step)
                )
            allowed = step.consult[agent]
            if tool is not None and tool not in allowed.tools:
                granted = f"tools {names(sorted(allowed.tools))}" if allowed.tools else "no tools"
                raise UnauthorizedClient(
                    Reason.TOOL_NOT_ALLOWED,
                    f"agent {agent!r} is consulted in step {step_id!r} with {granted}; "
                    f"{tool!r} is not among them (the workflow key "
                    f"steps.{step_id}.consult.{agent}.tools grants them)",
                )
            scopes = tuple(allowed.scopes)
        skipped = self.skipped()
        if step_id in skipped:
            raise InvalidGrant(
                Reason.BRANCH_NOT_TAKEN,
                f"step {step_id!r} is not on this run's path: {skipped[step_id]}",
            )
        complete_first: tuple[str, ...] = ()
        missing = wf.waits_for(step_id, self.completed)
        if missing:
            plan = (
                None if consultation is not None else self._advance_plan(agent, step_id, approvals)
            )
            if plan is None:
                raise InvalidGrant(
                    Reason.DEPENDENCIES_INCOMPLETE, self._waiting(agent, step_id, tool, missing)
                )
            complete_first = tuple(plan)
        if approvals and step.approval and step_id not in self.approved:
            raise AccessDenied(
                Reason.APPROVAL_REQUIRED,
                f"step {step_id!r} needs an approval before any token for it, and none is "
                "recorded for this visit (an administrator approves it: POST "
                f"/admin/runs/<run>/steps/{step_id}/approve)",
            )
        delegated = consultation or self.delegation_to(agent, step_id)
        return MintDecision(
            step=step_id,
            scopes=scopes,
            complete_first=complete_first,
            enters=consultation is None and step_id not in self.entered,
            visit=self.visit(step_id),
            delegated=delegated,
        )

    def _only_step(self, agent: str) -> str:
        """The step of a step token when none is named: the agent's one current step."""
        active = self.active_steps(agent)
        if len(active) == 1:
            return active[0]
        own = [s for s in self.due() if self.workflow.steps[s].agent == agent]
        if not active and len(own) == 1:
            return own[0]
        candidates = active or own or self.workflow.steps_of(agent)
        raise InvalidGrant(
            Reason.AMBIGUOUS_STEP,
            f"agent {agent!r} may act in {steps_phrase(candidates)}; name the step",
        )

    def _advance_plan(self, agent: str, target: str, approvals: bool = True) -> list[str] | None:
        """The agent's own steps to complete, in order, so that ``target`` may run; None
        if ``target`` waits for anything else (another agent's step, an approval)."""
        done = set(self.completed)
        plan: list[str] = []
        skipped = self.skipped()
        if self._unblock(agent, target, done, plan, skipped, approvals, depth=0):
            return plan
        return None

    def _unblock(
        self,
        agent: str,
        target: str,
        done: set[str],
        plan: list[str],
        skipped: Mapping[str, str],
        approvals: bool,
        depth: int,
    ) -> bool:
        step = self.workflow.steps[target]
        for dep in step.after:
            if dep not in done and not self._finish(
                agent, dep, done, plan, skipped, approvals, depth
            ):
                return False
        if step.after_any and not any(d in done for d in step.after_any):
            order = self.workflow.topological_order()
            options = sorted(step.after_any, key=lambda d: (d not in self.entered, order.index(d)))
            for option in options:
                trial_done, trial_plan = set(done), list(plan)
                if self._finish(agent, option, trial_done, trial_plan, skipped, approvals, depth):
                    done |= trial_done
                    plan[:] = trial_plan
                    break
            else:
                return False
        return True

    def _finish(
        self,
        agent: str,
        step_id: str,
        done: set[str],
        plan: list[str],
        skipped: Mapping[str, str],
        approvals: bool,
        depth: int,
    ) -> bool:
        step = self.workflow.steps[step_id]
        if step.agent != agent or step_id in skipped or depth > len(self.workflow.steps):
            return False
        if approvals and step.approval and step_id not in self.approved:
            return False
        if not self._unblock(agent, step_id, done, plan, skipped, approvals, depth + 1):
            return False
        done.add(step_id)
        plan.append(step_id)
        return True

    # ------------------------------------------------------------- delegation

    def check_delegation(
        self,
        from_agent: str,
        from_step: str,
        to_agent: str,
        to_step: str,
        *,
        require_entry: bool = True,
    ) -> DelegationDecision:
        """Whether ``from_agent``, acting in ``from_step``, may hand ``to_step`` to
        ``to_agent`` (DESIGN §5.2, T11): a hand-off to a later step, work sent back along
        ``loop_to``, or a consultation (``to_step == from_step``, ``to_agent`` in its
        ``consult``). The delegate's token is then checked by :meth:`check_mint`.
        ``require_entry=False``: the delegator need not have entered ``from_step`` yet
        (a shim that mints its step token, which enters it, before it asks the IdP)."""
        wf = self.workflow
        for end, step_id in (("from_step", from_step), ("to_step", to_step)):
            if step_id not in wf.steps:
                raise InvalidGrant(
                    Reason.DELEGATION_NOT_ALONG_WORKFLOW,
                    f"the delegation's {end} {step_id!r} is not a step of workflow "
                    f"{wf.id!r} v{wf.version}",
                )
        source, target = wf.steps[from_step], wf.steps[to_step]
        if require_entry and from_step not in self.entered and source.agent == from_agent:
            # The delegator acts in its step in this visit: a token of an earlier visit
            # (before work was sent back past it) hands nothing on (T8).
            raise InvalidGrant(
                Reason.STEP_NOT_ENTERED,
                f"step {from_step!r} has not been entered since work was sent back past it "
                "(a loop reopened it): a token of the earlier visit hands nothing on; "
                f"{from_agent!r} acts in it again first",
            )
        if source.agent != from_agent:
            if self.consultation(from_agent, from_step) is not None:
                raise InvalidGrant(
                    Reason.CONSULTATION_NOT_ALLOWED,
                    f"agent {from_agent!r} is consulted in step {from_step!r}: it answers "
                    f"{source.agent!r} and cannot hand work on",
                )
            raise InvalidGrant(
                Reason.INVALID_DELEGATION,
                f"step {from_step!r} belongs to agent {source.agent!r}, so {from_agent!r} "
                "cannot hand work on from it",
            )
        skipped = self.skipped()
        if from_step in skipped:
            raise InvalidGrant(
                Reason.BRANCH_NOT_TAKEN,
                f"step {from_step!r} is not on this run's path: {skipped[from_step]}",
            )
        kind: DelegationKind
        if to_step == from_step:
            if to_agent not in source.consult:
                consultable = names(sorted(source.consult)) if source.consult else "no agent"
                raise InvalidGrant(
                    Reason.CONSULTATION_NOT_ALLOWED,
                    f"step {from_step!r} may consult {consultable}, not {to_agent!r} (the "
                    f"workflow key steps.{from_step}.consult lists who may be asked)",
                )
            return DelegationDecision(kind="consult", visit=self.visit(from_step))
        if to_step in wf.descendants(from_step):
            kind = "handoff"
        elif to_step in source.loop_to:
            kind = "loop"
        else:
            raise InvalidGrant(
                Reason.DELEGATION_NOT_ALONG_WORKFLOW, self._off_workflow(from_step, to_step)
            )
        if target.agent != to_agent:
            hint = ""
            if to_agent in source.consult:
                hint = f" ({to_agent!r} may be consulted in {from_step!r} instead)"
            raise InvalidGrant(
                Reason.DELEGATE_MISMATCH,
                f"step {to_step!r} belongs to agent {target.agent!r}, so it cannot be handed to "
                f"{to_agent!r}{hint}",
            )
        if to_step in skipped:
            raise InvalidGrant(
                Reason.BRANCH_NOT_TAKEN,
                f"step {to_step!r} is not on this run's path: {skipped[to_step]}",
            )
        chooser = wf.chooser_of(to_step)
        if chooser is not None and (chosen := self.chosen(chooser)) not in (None, to_step):
            raise InvalidGrant(
                Reason.BRANCH_NOT_TAKEN,
                f"step {chooser!r} already chose {chosen!r} among "
                f"{names(wf.steps[chooser].one_of)}",
            )
        reopen: tuple[str, ...] = ()
        visit = self.visit(to_step)
        if to_step in self.completed:
            if visit >= target.max_visits and kind == "handoff" and self.finished:
                # Handing a done step on again in a finished run, with no visit left: the
                # request replayed (the app invoked once more); raising max_visits is no
                # fix. A visit left is a supervisor's bounded second round, and passes.
                raise InvalidGrant(
                    Reason.RUN_FINISHED,
                    f"the run is finished (every required step is completed), so step "
                    f"{to_step!r} is not handed on again: start a new run for a new request",
                )
            if visit >= target.max_visits:
                raise InvalidGrant(
                    Reason.VISIT_LIMIT_REACHED,
                    f"step {to_step!r} has been visited {visit} time(s), its max_visits; it "
                    f"cannot be entered again (raise steps.{to_step}.max_visits to allow more)",
                )
            order = wf.topological_order()
            reset = {to_step} | set(wf.descendants(to_step))
            reopen = tuple(s for s in order if s in reset)
            visit += 1
        complete_first: tuple[str, ...] = ()
        if (
            kind == "handoff"
            and from_step not in self.completed
            and from_step in wf.dependencies(to_step)
        ):
            complete_first = (from_step,)
        return DelegationDecision(
            kind=kind, complete_first=complete_first, reopen=reopen, visit=visit
        )

    # -------------------------------------------------------------- completion

    def check_completion(self, agent: str, step_id: str, *, require_entry: bool = True) -> bool:
        """Whether ``agent`` may complete ``step_id``; False if it already is.
        ``require_entry=False``: as in :meth:`check_delegation`."""
        wf = self.workflow
        step = wf.step(step_id)
        if step.agent != agent:
            if self.consultation(agent, step_id) is not None:
                raise InvalidGrant(
                    Reason.CONSULTATION_NOT_ALLOWED,
                    f"agent {agent!r} is consulted in step {step_id!r}; only {step.agent!r} "
                    "completes it",
                )
            raise UnauthorizedClient(
                Reason.WRONG_AGENT_FOR_STEP,
                f"step {step_id!r} belongs to agent {step.agent!r}, not {agent!r}",
            )
        skipped = self.skipped()
        if step_id in skipped:
            raise InvalidGrant(
                Reason.BRANCH_NOT_TAKEN,
                f"step {step_id!r} is not on this run's path: {skipped[step_id]}",
            )
        if step_id in self.completed:
            return False
        if require_entry and step_id not in self.entered:
            # Its agent has acted in it in this visit (a token minted or handed to it) or
            # it has nothing to complete: a token of an earlier visit, before work was
            # sent back to the step, proves nothing of this one.
            raise InvalidGrant(
                Reason.STEP_NOT_ENTERED,
                f"step {step_id!r} has not been entered since work was sent back past it "
                "(a loop reopened it): a token of the earlier visit completes nothing of "
                f"this one; {wf.steps[step_id].agent!r} acts in it again first",
            )
        missing = wf.waits_for(step_id, self.completed)
        if missing:
            raise InvalidGrant(
                Reason.DEPENDENCIES_INCOMPLETE,
                f"step {step_id!r} cannot be completed: it waits for "
                f"{_steps_with_agents(wf, missing)}",
            )
        return True

    # ------------------------------------------------------------ resolution

    def step_for(self, agent: str, tool: str, *, approvals: bool = True) -> str:
        """The step an agent's tool call belongs to, when the caller did not name it.

        In order of preference: the agent's current step that allows the tool; a step in
        which it is being consulted with that tool; a due step of its own; its next own
        step, reached by completing its current one(s); a completed step it re-enters.
        Otherwise the refusal says which step owns the tool and what the run waits for.
        """
        wf = self.workflow
        own = wf.steps_of(agent)
        consulted = self.consulting(agent)
        if not own and not consulted:
            raise UnauthorizedClient(
                Reason.WRONG_AGENT_FOR_STEP,
                f"agent {agent!r} has no step in workflow {wf.id!r} v{wf.version}"
                + (
                    f" and is not being consulted (it may be consulted in "
                    f"{steps_phrase(self._consultable_in(agent))})"
                    if self._consultable_in(agent)
                    else f"; its agents are {names(wf.agents())}"
                ),
            )
        mine = [s for s in own if tool in wf.steps[s].tools]
        asked = [s for s in consulted if tool in wf.steps[s].consult[agent].tools]
        if not mine and not asked:
            raise UnauthorizedClient(Reason.TOOL_NOT_ALLOWED, self._tool_refusal(agent, None, tool))
        skipped = self.skipped()
        live = [s for s in mine if s not in skipped]
        if not live and not asked:
            raise InvalidGrant(
                Reason.BRANCH_NOT_TAKEN,
                f"tool {tool!r} of agent {agent!r} belongs to {steps_phrase(mine)}, which this "
                f"run did not take: {skipped[mine[0]]}",
            )
        ready = [s for s in live if not wf.waits_for(s, self.completed)]
        active = [s for s in ready if s in self.entered and s not in self.completed]
        for group in (active, asked, [s for s in ready if s not in self.completed]):
            if len(group) == 1:
                return group[0]
            if len(group) > 1:
                raise InvalidGrant(
                    Reason.AMBIGUOUS_STEP,
                    f"tool {tool!r} of agent {agent!r} may belong to {steps_phrase(group)}; "
                    "name the step",
                )
        advanceable = [
            s
            for s in live
            if s not in self.completed
            and s not in ready
            and self._advance_plan(agent, s, approvals) is not None
        ]
        if advanceable:
            return advanceable[0]
        done = [s for s in live if s in self.completed]
        waiting = [s for s in live if s not in self.completed]
        if waiting:
            target = waiting[0]
            raise InvalidGrant(
                Reason.DEPENDENCIES_INCOMPLETE,
                self._waiting(agent, target, tool, wf.waits_for(target, self.completed)),
            )
        if len(done) == 1:
            # Calling a tool again in the agent's one (completed) step re-enters it: a
            # supervisor re-listing, a worker retrying. Minting is still checked in full.
            return done[0]
        raise InvalidGrant(
            Reason.STEP_ALREADY_COMPLETED,
            f"every step in which agent {agent!r} may call {tool!r} ({names(done)}) is "
            "already completed; name the step to call it again",
        )

    # ------------------------------------------------------------- messages

    def _consultable_in(self, agent: str) -> list[str]:
        return [
            s for s in self.workflow.topological_order() if agent in self.workflow.steps[s].consult
        ]

    def _tool_refusal(self, agent: str, step_id: str | None, tool: str) -> str:
        wf = self.workflow
        owners = [s for s in wf.topological_order() if tool in wf.steps[s].tools]
        own = wf.steps_of(agent)
        allowed = sorted({t for s in own for t in wf.steps[s].tools})
        if step_id is not None:
            step = wf.steps[step_id]
            head = (
                f"step {step_id!r} does not allow tool {tool!r}; it allows "
                f"{names(sorted(step.tools)) if step.tools else 'no tools (a routing step)'}"
            )
        else:
            consulted = self._consultable_in(agent)
            may = []
            if own:
                may.append(f"{names(allowed) if allowed else 'no tools'} (in {steps_phrase(own)})")
            elif not consulted:
                may.append("no tools")
            for s in consulted:
                granted = sorted(wf.steps[s].consult[agent].tools)
                may.append(f"{names(granted) if granted else 'no tools'} (consulted in {s!r})")
            head = (
                f"agent {agent!r} may not call tool {tool!r} in workflow {wf.id!r} "
                f"v{wf.version}: it may call only {'; '.join(may)}"
            )
            if not owners and consulted and not own:
                return (
                    f"{head}; to let it call {tool!r} when consulted, add it to the 'tools' "
                    f"of its 'consult' entry in step {consulted[0]!r}"
                )
        if not owners:
            return f"{head}; no step of the workflow allows {tool!r} (add it to a step's 'tools')"
        mine = [s for s in owners if wf.steps[s].agent == agent]
        if mine and step_id is not None:
            target = mine[0]
            missing = wf.waits_for(target, self.completed)
            where = f"; it belongs to the agent's step {target!r}" + (
                f", which waits for {_steps_with_agents(wf, missing)}" if missing else ""
            )
            return head + where
        return f"{head}; {tool!r} belongs to {_steps_with_agents(wf, owners)}"

    def _wrong_agent(self, agent: str, step_id: str, step: Step) -> str:
        wf = self.workflow
        text = f"step {step_id!r} belongs to agent {step.agent!r}, not {agent!r}"
        if agent in step.consult:
            return (
                f"{text}; {agent!r} may be consulted in it, but {step.agent!r} has not asked "
                "(a consultation is a delegation of the step to the consulted agent)"
            )
        own = wf.steps_of(agent)
        if own:
            return f"{text} ({agent!r} performs {steps_phrase(own)}; {self.describe()})"
        return text

    def _waiting(self, agent: str, step_id: str, tool: str | None, missing: list[str]) -> str:
        wf = self.workflow
        what = (
            f"tool {tool!r} of agent {agent!r} belongs to step {step_id!r}, which"
            if tool
            else (f"step {step_id!r}")
        )
        text = f"{what} cannot run yet: it waits for {_steps_with_agents(wf, missing)}"
        active = self.active_steps(agent)
        blockers = [s for s in missing if wf.steps[s].agent == agent]
        if blockers and any(wf.steps[s].approval and s not in self.approved for s in blockers):
            text += "; the agent's own earlier step needs an approval first"
        elif active:
            text += f" (agent {agent!r} is in {steps_phrase(active)})"
        return f"{text}; {self.describe()}"

    def _off_workflow(self, from_step: str, to_step: str) -> str:
        wf = self.workflow
        later = sorted(wf.descendants(from_step), key=wf.topological_order().index)
        text = (
            f"step {to_step!r} does not come after step {from_step!r} in workflow {wf.id!r} "
            f"v{wf.version}, so {from_step!r} cannot hand it on"
        )
        if to_step in wf.ancestors(from_step):
            text += (
                f"; to send work back, list {to_step!r} in steps.{from_step}.loop_to and give "
                f"{to_step!r} a max_visits above 1"
            )
        if later:
            text += f" (it may hand on {names(later[:8])}{', ...' if len(later) > 8 else ''})"
        return text


def _kind(value: Any) -> DelegationKind:
    if value == "consult":
        return "consult"
    if value == "loop":
        return "loop"
    return "handoff"
