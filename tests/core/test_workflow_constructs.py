"""The workflow constructs of DESIGN §6.3 beyond a chain of steps, each with the run it
allows and the moves it refuses: routing steps, an agent's next step, fan-out and joins,
choices, loops, consultation. The decisions are :class:`RunState`'s (the IdP's)."""

from __future__ import annotations

from typing import Any

import pytest

from ajwt_core.errors import AJWTError, InvalidRequest, Reason
from ajwt_core.workflow import RunState, Workflow, WorkflowError


def workflow(**steps: Any) -> Workflow:
    return Workflow.from_mapping({"id": "w", "version": 1, "steps": steps})


def refused(call: Any, reason: Reason) -> str:
    with pytest.raises(AJWTError) as info:
        call()
    assert info.value.reason == reason, info.value.description
    return info.value.description


def invalid(**steps: Any) -> str:
    with pytest.raises(WorkflowError) as info:
        workflow(**steps)
    assert info.value.reason == Reason.INVALID_WORKFLOW
    return info.value.description


def enter(state: RunState, agent: str, step: str | None, tool: str | None) -> str:
    """Mint as the IdP would: check, then record what the mint records."""
    decision = state.check_mint(agent, step, tool)
    for done in decision.complete_first:
        state.apply("step_completed", {"step": done, "agent": agent, "implicit": True})
    if decision.enters:
        state.apply("step_entered", {"step": decision.step, "agent": agent})
    return decision.step


def hand(state: RunState, from_agent: str, from_step: str, to_agent: str, to_step: str) -> None:
    """Hand off as the IdP would (delegation recorded, then the delegate's step token)."""
    decision = state.check_delegation(from_agent, from_step, to_agent, to_step)
    for done in decision.complete_first:
        state.apply("step_completed", {"step": done, "agent": from_agent, "implicit": True})
    if decision.reopen:
        state.apply(
            "step_reopened", {"step": to_step, "visit": decision.visit, "reset": decision.reopen}
        )
    state.apply(
        "delegation",
        {
            "from": from_agent,
            "to": to_agent,
            "from_step": from_step,
            "to_step": to_step,
            "scope": "",
            "chain": [from_agent, to_agent],
            "assertion": "sha256:" + "0" * 64,
            "kind": decision.kind,
        },
    )
    enter(state, to_agent, to_step, None)


def complete(state: RunState, agent: str, step: str) -> None:
    if state.check_completion(agent, step):
        state.apply("step_completed", {"step": step, "agent": agent})


# ------------------------------------------------------------------ routing steps

SUPERVISED = {
    "triage": {"agent": "supervisor"},
    "research": {"agent": "researcher", "tools": ["search"], "after": ["triage"]},
    "write": {"agent": "writer", "tools": ["publish"], "after": ["research"]},
}


def test_a_routing_step_hands_on_without_any_tool_token() -> None:
    state = RunState(workflow(**SUPERVISED))
    # A step token (no tool) for the routing step, then the hand-off completes it.
    assert enter(state, "supervisor", None, None) == "triage"
    hand(state, "supervisor", "triage", "researcher", "research")
    assert state.completed == {"triage"}
    assert enter(state, "researcher", None, "search") == "research"


def test_a_routing_step_allows_no_tool() -> None:
    state = RunState(workflow(**SUPERVISED))
    text = refused(
        lambda: state.check_mint("supervisor", "triage", "search"), Reason.TOOL_NOT_ALLOWED
    )
    assert "no tools (a routing step)" in text


def test_step_token_names_the_agents_current_step() -> None:
    wf = workflow(
        a={"agent": "x", "tools": ["t"]},
        b={"agent": "x", "tools": ["u"], "after": ["a"]},
    )
    state = RunState(wf)
    assert state.check_mint("x", None, None).step == "a"
    enter(state, "x", "a", "t")
    complete(state, "x", "a")
    assert state.check_mint("x", None, None).step == "b"


# --------------------------------------------------------- an agent's next step

TRIP = {
    "lookup": {"agent": "travel", "tools": ["search_flights"]},
    "book": {"agent": "travel", "tools": ["book_flight"], "after": ["lookup"]},
    "confirm": {"agent": "mailer", "tools": ["send_mail"], "after": ["book"]},
}


def test_calling_a_tool_of_its_next_step_completes_the_current_one() -> None:
    state = RunState(workflow(**TRIP))
    enter(state, "travel", None, "search_flights")
    decision = state.check_mint("travel", None, "book_flight")
    assert (decision.step, decision.complete_first) == ("book", ("lookup",))
    enter(state, "travel", None, "book_flight")
    assert state.completed == {"lookup"}
    assert state.due() == ["book"]


def test_an_agent_cannot_move_past_another_agents_step() -> None:
    wf = workflow(
        lookup={"agent": "travel", "tools": ["search_flights"]},
        approve={"agent": "manager", "tools": ["approve_budget"], "after": ["lookup"]},
        book={"agent": "travel", "tools": ["book_flight"], "after": ["approve"]},
    )
    state = RunState(wf)
    enter(state, "travel", None, "search_flights")
    text = refused(
        lambda: state.check_mint("travel", None, "book_flight"), Reason.DEPENDENCIES_INCOMPLETE
    )
    assert "belongs to step 'book'" in text
    assert "waits for step 'approve' (agent 'manager')" in text


def test_moving_on_does_not_skip_an_approval() -> None:
    wf = workflow(
        lookup={"agent": "travel", "tools": ["search_flights"], "approval": True},
        book={"agent": "travel", "tools": ["book_flight"], "after": ["lookup"]},
    )
    state = RunState(wf, approved=set())
    refused(
        lambda: state.check_mint("travel", "book", "book_flight"), Reason.DEPENDENCIES_INCOMPLETE
    )


def test_the_refusal_of_a_wrong_tool_names_the_step_that_owns_it() -> None:
    wf = workflow(
        lookup={"agent": "travel", "tools": ["search_flights"]},
        approve={"agent": "manager", "tools": ["approve_budget"], "after": ["lookup"]},
        book={"agent": "travel", "tools": ["book_flight"], "after": ["approve"]},
    )
    state = RunState(wf)
    text = refused(
        lambda: state.check_mint("travel", "lookup", "book_flight"), Reason.TOOL_NOT_ALLOWED
    )
    assert "belongs to the agent's step 'book', which waits for step 'approve'" in text


# ---------------------------------------------------------- fan-out and joins

FAN = {
    "route": {"agent": "supervisor"},
    "news": {"agent": "reporter", "tools": ["get_news"], "after": ["route"]},
    "prices": {"agent": "analyst", "tools": ["get_prices"], "after": ["route"]},
    "write": {"agent": "writer", "tools": ["publish"], "after": ["news", "prices"]},
}


def test_one_step_hands_on_to_two_parallel_steps_and_the_join_waits_for_both() -> None:
    state = RunState(workflow(**FAN))
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "reporter", "news")
    hand(state, "supervisor", "route", "analyst", "prices")
    enter(state, "reporter", None, "get_news")
    complete(state, "reporter", "news")
    refused(lambda: state.check_mint("writer", "write", "publish"), Reason.DEPENDENCIES_INCOMPLETE)
    # A delegation by the first finisher into the join is along the workflow, but the join
    # still waits for the other branch.
    refused(
        lambda: hand(state, "reporter", "news", "writer", "write"), Reason.DEPENDENCIES_INCOMPLETE
    )
    enter(state, "analyst", None, "get_prices")
    complete(state, "analyst", "prices")
    hand(state, "analyst", "prices", "writer", "write")
    assert enter(state, "writer", None, "publish") == "write"


def test_a_branch_cannot_delegate_outside_the_fan_out() -> None:
    state = RunState(workflow(**FAN))
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "reporter", "news")
    text = refused(
        lambda: state.check_delegation("reporter", "news", "analyst", "prices"),
        Reason.DELEGATION_NOT_ALONG_WORKFLOW,
    )
    assert "'prices' does not come after step 'news'" in text


def test_an_any_join_runs_after_the_first_branch() -> None:
    wf = workflow(
        **{**FAN, "write": {**FAN["write"], "after": [], "after_any": ["news", "prices"]}}
    )
    state = RunState(wf)
    refused(lambda: state.check_mint("writer", "write", "publish"), Reason.DEPENDENCIES_INCOMPLETE)
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "reporter", "news")
    complete(state, "reporter", "news")
    assert enter(state, "writer", "write", "publish") == "write"


# --------------------------------------------------------------------- choices

CHOICE = {
    "route": {"agent": "supervisor", "one_of": ["news", "prices"]},
    "news": {"agent": "reporter", "tools": ["get_news"], "after": ["route"]},
    "prices": {"agent": "analyst", "tools": ["get_prices"], "after": ["route"]},
    "write": {"agent": "writer", "tools": ["publish"], "after_any": ["news", "prices"]},
}


def test_a_run_takes_one_branch_and_finishes_without_the_other() -> None:
    state = RunState(workflow(**CHOICE))
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "analyst", "prices")
    complete(state, "analyst", "prices")
    hand(state, "analyst", "prices", "writer", "write")
    complete(state, "writer", "write")
    assert state.finished
    assert set(state.skipped()) == {"news"}


def test_the_branch_not_taken_is_refused_to_hand_offs_and_mints() -> None:
    state = RunState(workflow(**CHOICE))
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "analyst", "prices")
    text = refused(
        lambda: state.check_delegation("supervisor", "route", "reporter", "news"),
        Reason.BRANCH_NOT_TAKEN,
    )
    assert "'route' chose 'prices'" in text
    refused(lambda: state.check_mint("reporter", None, "get_news"), Reason.BRANCH_NOT_TAKEN)
    refused(lambda: state.check_mint("reporter", "news", "get_news"), Reason.BRANCH_NOT_TAKEN)


def test_a_required_step_on_the_path_taken_cannot_be_skipped() -> None:
    wf = workflow(
        route={"agent": "supervisor", "one_of": ["draft", "quick"]},
        draft={"agent": "writer", "tools": ["write"], "after": ["route"]},
        review={"agent": "editor", "tools": ["comment"], "after": ["draft"]},
        quick={"agent": "writer", "tools": ["write"], "after": ["route"]},
        publish={"agent": "publisher", "tools": ["publish"], "after_any": ["review", "quick"]},
    )
    state = RunState(wf)
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "writer", "draft")
    complete(state, "writer", "draft")
    # The long branch was taken: its review is required before publishing...
    refused(
        lambda: state.check_mint("publisher", "publish", "publish"), Reason.DEPENDENCIES_INCOMPLETE
    )
    # ...and the short branch is closed, so it cannot be used to get around the review.
    refused(lambda: state.check_mint("writer", "quick", "write"), Reason.BRANCH_NOT_TAKEN)
    assert state.remaining() == ["review", "publish"]


def test_a_join_of_all_alternatives_is_an_invalid_workflow() -> None:
    text = invalid(
        **{**CHOICE, "write": {**CHOICE["write"], "after_any": [], "after": ["news", "prices"]}}
    )
    assert "a run takes only one of the alternatives of 'route': list them in 'after_any'" in text


def test_one_of_alternatives_must_follow_their_chooser() -> None:
    text = invalid(
        route={"agent": "s", "one_of": ["a", "b"]},
        a={"agent": "x", "tools": ["t"], "after": ["route"]},
        b={"agent": "y", "tools": ["t"]},
    )
    assert "'b' does not run after 'route'" in text


# ----------------------------------------------------------------------- loops

LOOP = {
    "brief": {"agent": "supervisor"},
    "write": {"agent": "writer", "tools": ["draft"], "after": ["brief"], "max_visits": 3},
    "critique": {"agent": "critic", "tools": ["review"], "after": ["write"], "loop_to": ["write"]},
    "publish": {"agent": "publisher", "tools": ["publish"], "after": ["critique"]},
}


def test_a_critic_sends_work_back_within_the_bound() -> None:
    state = RunState(workflow(**LOOP))
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "brief", "writer", "write")
    for visit in (1, 2, 3):
        assert state.visit("write") == visit
        enter(state, "writer", None, "draft")
        complete(state, "writer", "write")
        hand(state, "writer", "write", "critic", "critique")
        enter(state, "critic", None, "review")
        if visit < 3:
            hand(state, "critic", "critique", "writer", "write")
            # Sent back: the critique must be done again after the next draft.
            assert "critique" not in state.completed
            refused(
                lambda: state.check_mint("critic", "critique", "review"),
                Reason.DEPENDENCIES_INCOMPLETE,
            )
    text = refused(
        lambda: state.check_delegation("critic", "critique", "writer", "write"),
        Reason.VISIT_LIMIT_REACHED,
    )
    assert "max_visits" in text
    complete(state, "critic", "critique")
    hand(state, "critic", "critique", "publisher", "publish")


def test_a_loop_needs_loop_to() -> None:
    wf = workflow(**{**LOOP, "critique": {**LOOP["critique"], "loop_to": []}})
    state = RunState(wf)
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "brief", "writer", "write")
    complete(state, "writer", "write")
    hand(state, "writer", "write", "critic", "critique")
    text = refused(
        lambda: state.check_delegation("critic", "critique", "writer", "write"),
        Reason.DELEGATION_NOT_ALONG_WORKFLOW,
    )
    assert "list 'write' in steps.critique.loop_to" in text


@pytest.mark.parametrize(
    ("report", "reason"),
    [(True, Reason.VISIT_LIMIT_REACHED), (False, Reason.RUN_FINISHED)],
    ids=["run under way", "run finished"],
)
def test_a_supervisor_re_hands_a_finished_step_within_its_bound(
    report: bool, reason: Reason
) -> None:
    # Past the bound: visit_limit_reached while the run is under way; once every
    # required step is done, the hand-off is the request replayed (run_finished).
    steps: dict[str, Any] = {
        "route": {"agent": "supervisor"},
        "research": {
            "agent": "researcher",
            "tools": ["search"],
            "after": ["route"],
            "max_visits": 2,
        },
    }
    if report:
        steps["report"] = {"agent": "reporter", "after": ["research"]}
    state = RunState(workflow(**steps))
    enter(state, "supervisor", None, None)
    hand(state, "supervisor", "route", "researcher", "research")
    complete(state, "researcher", "research")
    hand(state, "supervisor", "route", "researcher", "research")  # a visit left: passes
    assert state.visit("research") == 2 and "research" not in state.completed
    complete(state, "researcher", "research")
    refused(
        lambda: state.check_delegation("supervisor", "route", "researcher", "research"),
        reason,
    )


def test_loop_targets_must_come_before_and_allow_a_second_visit() -> None:
    assert "'critique' does not come before 'write'" in invalid(
        **{**LOOP, "write": {**LOOP["write"], "loop_to": ["critique"]}}
    )
    assert "has max_visits 1 so the loop could never run" in invalid(
        **{**LOOP, "write": {**LOOP["write"], "max_visits": 1}}
    )


# ---------------------------------------------------------------- consultation

CONSULT = {
    "plan": {"agent": "planner", "tools": ["read_file"]},
    "write": {
        "agent": "writer",
        "tools": ["publish"],
        "scopes": ["blog:write"],
        "after": ["plan"],
        "consult": {"researcher": {"tools": ["search"], "scopes": ["web:read"]}, "lawyer": {}},
    },
    "research": {"agent": "researcher", "tools": ["search", "crawl"], "after": ["plan"]},
}


def _writing() -> RunState:
    state = RunState(workflow(**CONSULT))
    enter(state, "planner", None, "read_file")
    hand(state, "planner", "plan", "writer", "write")
    return state


def test_a_consulted_agent_acts_inside_the_consulting_step_with_its_own_grant() -> None:
    state = _writing()
    hand(state, "writer", "write", "researcher", "write")
    decision = state.check_mint("researcher", "write", "search")
    assert decision.consultation and decision.scopes == ("web:read",)
    assert not decision.enters and not decision.complete_first
    # The position does not move: the writer is still in 'write'.
    assert state.active_steps("writer") == ["write"]
    assert state.due() == ["research", "write"]


def test_a_consultation_does_not_reach_other_tools_or_complete_or_hand_on() -> None:
    state = _writing()
    hand(state, "writer", "write", "researcher", "write")
    text = refused(
        lambda: state.check_mint("researcher", "write", "crawl"), Reason.TOOL_NOT_ALLOWED
    )
    assert "steps.write.consult.researcher.tools" in text
    refused(lambda: state.check_mint("researcher", "write", "publish"), Reason.TOOL_NOT_ALLOWED)
    refused(lambda: state.check_completion("researcher", "write"), Reason.CONSULTATION_NOT_ALLOWED)
    refused(
        lambda: state.check_delegation("researcher", "write", "lawyer", "write"),
        Reason.CONSULTATION_NOT_ALLOWED,
    )


def test_a_consulted_agents_unnamed_tool_is_refused_with_its_grant_and_the_fix() -> None:
    # "it may call only no tools; add it to a step's 'tools'" told a consulted agent
    # neither what it may call nor where the fix goes.
    steps = {
        "answer": {
            "agent": "concierge",
            "tools": ["ask"],
            "consult": {"researcher": {"tools": ["lookup_order"]}},
        }
    }
    state = RunState(workflow(**steps))
    enter(state, "concierge", None, "ask")
    hand(state, "concierge", "answer", "researcher", "answer")
    assert state.step_for("researcher", "lookup_order") == "answer"
    text = refused(lambda: state.step_for("researcher", "issue_refund"), Reason.TOOL_NOT_ALLOWED)
    assert "it may call only 'lookup_order' (consulted in 'answer')" in text
    assert "add it to the 'tools' of its 'consult' entry in step 'answer'" in text
    # An agent with steps of its own and a consultation is told both.
    both = RunState(workflow(**CONSULT))
    text = refused(lambda: both.step_for("researcher", "publish"), Reason.TOOL_NOT_ALLOWED)
    assert "only 'crawl', 'search' (in step 'research'); 'search' (consulted in 'write')" in text


def test_only_listed_agents_are_consulted_and_only_when_asked() -> None:
    state = _writing()
    refused(lambda: state.check_mint("researcher", "write", "search"), Reason.WRONG_AGENT_FOR_STEP)
    text = refused(
        lambda: state.check_delegation("writer", "write", "planner", "write"),
        Reason.CONSULTATION_NOT_ALLOWED,
    )
    assert "may consult 'lawyer', 'researcher', not 'planner'" in text
    hand(state, "writer", "write", "lawyer", "write")
    assert state.check_mint("lawyer", "write", None).scopes == ()
    refused(lambda: state.check_mint("lawyer", "write", "search"), Reason.TOOL_NOT_ALLOWED)


def test_a_consultation_after_the_step_is_done_is_still_inside_it() -> None:
    state = _writing()
    complete(state, "writer", "write")
    hand(state, "writer", "write", "researcher", "write")
    assert state.check_mint("researcher", None, "search").step == "write"


# ------------------------------------------------------------------ documents


def test_new_keys_keep_old_documents_hash() -> None:
    old = {
        "agent": "x",
        "tools": ["t"],
        "scopes": [],
        "after": [],
        "required": True,
        "approval": False,
    }
    wf = workflow(a=old)
    assert wf.canonical()["steps"]["a"] == old
    with_defaults = workflow(a={**old, "after_any": [], "max_visits": 1, "consult": {}})
    assert with_defaults.workflow_hash == wf.workflow_hash


def test_consult_shorthand_is_a_consultation_without_tools() -> None:
    short = workflow(a={"agent": "x", "tools": ["t"], "consult": ["y"]})
    long = workflow(a={"agent": "x", "tools": ["t"], "consult": {"y": {"tools": []}}})
    assert short.workflow_hash == long.workflow_hash
    assert short.agents() == ["x", "y"]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"agent": "x", "tools": ["t"], "after_any": ["a"]}, "waiting for any of one step"),
        ({"agent": "x", "tools": ["t"], "one_of": ["a"]}, "a choice needs at least two"),
        ({"agent": "x", "tools": ["t"], "consult": ["x"]}, "an agent does not consult itself"),
        ({"agent": "x", "tools": ["t"], "max_visits": 0}, "max_visits"),
        ({"agent": "x", "tools": ["t"], "after": ["a"], "after_any": ["a", "b"]}, "in both"),
    ],
)
def test_new_keys_are_validated(step: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        workflow(a={"agent": "p", "tools": ["t"]}, b={"agent": "q", "tools": ["t"]}, c=step)
    assert expected in info.value.description
