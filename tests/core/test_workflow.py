"""The workflow DAG (DESIGN §6.3): validation, hashing, queries and mint/delegation checks."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core.canonical import json_digest
from ajwt_core.errors import (
    AccessDenied,
    AJWTError,
    InvalidGrant,
    InvalidRequest,
    Reason,
    UnauthorizedClient,
)
from ajwt_core.workflow import (
    MAX_WORKFLOW_JSON_BYTES,
    MAX_WORKFLOW_STEPS,
    RunState,
    Step,
    Workflow,
    reference_workflow,
)

REFERENCE: dict[str, Any] = {
    "id": "vuln-patch",
    "version": 1,
    "steps": {
        "triage": {"agent": "supervisor", "tools": ["list_repos"], "scopes": ["repo:read"]},
        "plan": {
            "agent": "planner",
            "tools": ["read_file"],
            "scopes": ["repo:read"],
            "after": ["triage"],
        },
        "classify": {
            "agent": "classifier",
            "tools": ["query_advisories"],
            "scopes": ["advisories:read"],
            "after": ["plan"],
        },
        "patch": {
            "agent": "patcher",
            "tools": ["create_pull_request"],
            "scopes": ["repo:write"],
            "after": ["classify"],
            "approval": False,
        },
    },
}


def definition(**steps: Any) -> dict[str, Any]:
    return {"id": "w", "version": 1, "steps": steps}


def invalid(data: Any) -> InvalidRequest:
    """The InvalidRequest ``from_mapping`` raises for ``data`` (and check its reason)."""
    with pytest.raises(InvalidRequest) as info:
        Workflow.from_mapping(data)
    assert info.value.reason == Reason.INVALID_WORKFLOW
    return info.value


def at(wf: Workflow, completed: Any = (), approved: Any = ()) -> RunState:
    """The run state in which ``completed`` steps are done (and were entered)."""
    return RunState(wf, entered=set(completed), completed=set(completed), approved=set(approved))


@pytest.fixture
def wf() -> Workflow:
    return reference_workflow()


# ------------------------------------------------------------------------ reference


def test_reference_workflow_is_design_section_11(wf: Workflow) -> None:
    assert wf == Workflow.from_mapping(REFERENCE)
    assert (wf.id, wf.version) == ("vuln-patch", 1)
    assert wf.step("triage") == Step(agent="supervisor", tools=["list_repos"], scopes=["repo:read"])
    assert wf.step("patch").scopes == ["repo:write"]
    assert not any(wf.step(s).approval for s in wf.steps)
    assert all(wf.step(s).required for s in wf.steps)


def test_reference_workflow_returns_independent_instances() -> None:
    first = reference_workflow()
    first.step("plan").tools.append("rm_rf")
    assert reference_workflow().step("plan").tools == ["read_file"]


# ----------------------------------------------------------------------- validation


def test_accepts_list_form_like_mapping_form() -> None:
    as_list = {
        "id": "vuln-patch",
        "version": 1,
        "steps": [{"id": sid, **body} for sid, body in REFERENCE["steps"].items()],
    }
    assert Workflow.from_mapping(as_list) == reference_workflow()


def test_accepts_step_objects_and_bytes() -> None:
    wf = Workflow(id="w", version=1, steps={"a": Step(agent="x", tools=["t"])})
    assert wf.topological_order() == ["a"]
    assert Workflow.from_json(json.dumps(REFERENCE).encode()) == reference_workflow()


@pytest.mark.parametrize("steps", [{}, []])
def test_rejects_empty_workflow(steps: Any) -> None:
    assert "no steps" in invalid({"id": "w", "version": 1, "steps": steps}).description


def test_rejects_too_many_steps() -> None:
    steps = {f"s{i}": {"agent": "x", "tools": ["t"]} for i in range(MAX_WORKFLOW_STEPS + 1)}
    assert "at most" in invalid({"id": "w", "version": 1, "steps": steps}).description


def test_rejects_unknown_step_in_after_naming_both_and_suggesting() -> None:
    err = invalid(
        definition(
            triage={"agent": "s", "tools": ["t"]},
            plan={"agent": "p", "tools": ["t"], "after": ["triag"]},
        )
    )
    assert "step 'plan'" in err.description
    assert "'triag'" in err.description
    assert "did you mean 'triage'" in err.description


def test_rejects_step_after_itself() -> None:
    err = invalid(definition(a={"agent": "x", "tools": ["t"], "after": ["a"]}))
    assert err.description == "step 'a' lists itself in 'after'"


def test_rejects_cycle_and_names_it() -> None:
    err = invalid(
        definition(
            a={"agent": "x", "tools": ["t"], "after": ["b"]},
            b={"agent": "x", "tools": ["t"], "after": ["a"]},
        )
    )
    assert "a -> b -> a" in err.description


def test_names_only_the_cycle_not_steps_waiting_on_it() -> None:
    err = invalid(
        definition(
            start={"agent": "x", "tools": ["t"]},
            a={"agent": "x", "tools": ["t"], "after": ["start", "c"]},
            b={"agent": "x", "tools": ["t"], "after": ["a"]},
            c={"agent": "x", "tools": ["t"], "after": ["b"]},
            tail={"agent": "x", "tools": ["t"], "after": ["c"]},
        )
    )
    # a runs before b, b before c, c before a.
    assert "steps a -> b -> c -> a form a cycle" in err.description
    assert "tail" not in err.description
    assert "start" not in err.description


def test_rejects_duplicate_step_ids_in_list_form() -> None:
    err = invalid(
        {
            "id": "w",
            "version": 1,
            "steps": [
                {"id": "a", "agent": "x", "tools": ["t"]},
                {"id": "a", "agent": "y", "tools": ["t"]},
            ],
        }
    )
    assert "step id 'a' is used by more than one step" in err.description


def test_rejects_duplicate_step_ids_in_json_text() -> None:
    text = (
        '{"id": "w", "version": 1, "steps": {'
        '"a": {"agent": "x", "tools": ["t"]}, "a": {"agent": "evil", "tools": ["t"]}}}'
    )
    with pytest.raises(InvalidRequest) as info:
        Workflow.from_json(text)
    assert info.value.reason == Reason.INVALID_WORKFLOW
    assert "repeats the key 'a'" in info.value.description


def test_rejects_duplicate_keys_anywhere_in_json_text() -> None:
    text = '{"id": "w", "version": 1, "steps": {"a": {"agent": "x", "agent": "y", "tools": ["t"]}}}'
    with pytest.raises(InvalidRequest) as info:
        Workflow.from_json(text)
    assert info.value.reason == Reason.INVALID_WORKFLOW
    assert "repeats the key 'agent'" in info.value.description


def test_a_step_without_tools_is_a_routing_step() -> None:
    for body in ({"agent": "x", "tools": []}, {"agent": "x"}):
        step = Workflow.from_mapping(definition(a=body)).step("a")
        assert step.is_routing
        assert step.tools == []


def test_rejects_scopes_on_a_routing_step() -> None:
    err = invalid(definition(a={"agent": "x", "scopes": ["repo:read"]}))
    assert "is a routing step (no tools) with scopes" in err.description


def test_rejects_a_step_without_agent() -> None:
    assert (
        invalid(definition(a={"tools": ["t"]})).description == "step 'a' misses the field 'agent'"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"id": "", "version": 1, "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "workflow id"),
        ({"id": "  ", "version": 1, "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "workflow id"),
        (definition(**{" ": {"agent": "x", "tools": ["t"]}}), "empty step id"),
        (definition(**{"": {"agent": "x", "tools": ["t"]}}), "empty step id"),
        (definition(a={"agent": " ", "tools": ["t"]}), "step 'a' has an empty agent id"),
        (definition(a={"agent": "x", "tools": [" "]}), "step 'a' has an empty tool name"),
        (definition(a={"agent": "x", "tools": ["t"], "after": [""]}), "empty 'after' entry"),
        (
            {"id": "w", "version": 1, "steps": [{"id": " ", "agent": "x", "tools": ["t"]}]},
            "steps[0] has an empty step id",
        ),
    ],
)
def test_rejects_empty_or_whitespace_ids(data: dict[str, Any], expected: str) -> None:
    assert expected in invalid(data).description


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (definition(**{"apply patch": {"agent": "x", "tools": ["t"]}}), "step id 'apply patch'"),
        (definition(a={"agent": "the planner", "tools": ["t"]}), "agent id 'the planner'"),
        (definition(a={"agent": "x", "tools": [" padded"]}), "tool name ' padded'"),
        (definition(a={"agent": "x", "tools": ["new\nline"]}), "tool name 'new\\nline'"),
        (definition(a={"agent": "x", "tools": ["x" * 129]}), "overlong tool name"),
    ],
)
def test_rejects_ambiguous_identifiers(data: dict[str, Any], expected: str) -> None:
    assert expected in invalid(data).description


def test_tool_names_may_contain_inner_spaces() -> None:
    wf = Workflow.from_mapping(definition(a={"agent": "x", "tools": ["Read a file"]}))
    assert wf.step("a").tools == ["Read a file"]


@pytest.mark.parametrize("scope", ["repo read", "repo:read ", "a\tb", 'say"hi', "back\\slash", "é"])
def test_rejects_scope_that_is_not_an_oauth_scope_token(scope: str) -> None:
    err = invalid(definition(a={"agent": "x", "tools": ["t"], "scopes": [scope]}))
    assert "step 'a'" in err.description
    assert "not an OAuth scope token" in err.description


@pytest.mark.parametrize(
    ("field", "values", "expected"),
    [
        ("tools", ["t", "u", "t"], "lists 't' in 'tools' more than once"),
        ("scopes", ["s", "s"], "lists 's' in 'scopes' more than once"),
        ("after", ["b", "b"], "lists 'b' in 'after' more than once"),
    ],
)
def test_rejects_duplicates_within_a_step(field: str, values: list[str], expected: str) -> None:
    body = {"agent": "x", "tools": ["t"], field: values}
    err = invalid(definition(a=body, b={"agent": "y", "tools": ["t"]}))
    assert err.description == f"step 'a' {expected}"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (definition(a={"agent": "x", "tools": "t"}), "step 'a' has an invalid 'tools'"),
        (definition(a={"agent": "x", "tools": [1]}), "step 'a' has an invalid 'tools[0]'"),
        (definition(a={"agent": "x", "tools": ["t"], "approval": "no"}), "invalid 'approval'"),
        (definition(a={"agent": "x", "tools": ["t"], "required": 1}), "invalid 'required'"),
        (definition(a={"agent": "x", "tools": ["t"], "toolz": []}), "unknown field 'toolz'"),
        (definition(a=["x"]), "step 'a' must be an object"),
        ({"id": "w", "version": 0, "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "'version'"),
        ({"id": "w", "version": "1", "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "'version'"),
        ({"id": "w", "version": True, "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "'version'"),
        ({"id": 7, "version": 1, "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "'id'"),
        ({"version": 1, "steps": {"a": {"agent": "x", "tools": ["t"]}}}, "misses the field 'id'"),
        ({"id": "w", "version": 1}, "misses the field 'steps'"),
        ({**REFERENCE, "owner": "mallory"}, "unknown field 'owner'"),
        ({"id": "w", "version": 1, "steps": "a"}, "'steps' must be a mapping"),
        ({"id": "w", "version": 1, "steps": [{"agent": "x", "tools": ["t"]}]}, "has no 'id'"),
        ({"id": "w", "version": 1, "steps": [None]}, "steps[0] must be an object"),
        ({"id": "w", "version": 1, "steps": {1: {"agent": "x", "tools": ["t"]}}}, "not a string"),
        (["not", "a", "mapping"], "must be an object"),
    ],
)
def test_rejects_malformed_definitions_with_readable_message(data: Any, expected: str) -> None:
    err = invalid(data)
    assert expected in err.description
    assert "pydantic" not in err.description
    assert "errors.pydantic.dev" not in err.description


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", '"w"', b"\xff\xfe\xfa", "[" * 100_000])
def test_from_json_rejects_what_is_not_a_json_workflow(text: str | bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        Workflow.from_json(text)
    assert info.value.reason == Reason.INVALID_WORKFLOW


def test_from_json_refuses_oversized_documents() -> None:
    with pytest.raises(InvalidRequest) as info:
        Workflow.from_json(" " * (MAX_WORKFLOW_JSON_BYTES + 1))
    assert info.value.reason == Reason.REQUEST_TOO_LARGE


def test_direct_construction_refuses_graph_errors_with_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        Workflow(
            id="w",
            version=1,
            steps={
                "a": Step(agent="x", tools=["t"], after=["b"]),
                "b": Step(agent="x", tools=["t"], after=["a"]),
            },
        )
    assert info.value.reason == Reason.INVALID_WORKFLOW


def test_workflow_is_frozen(wf: Workflow) -> None:
    with pytest.raises(ValueError, match="frozen"):
        wf.version = 2  # type: ignore[misc]


# --------------------------------------------------------------------------- hashing


def test_hash_is_json_digest_of_canonical_form(wf: Workflow) -> None:
    assert wf.workflow_hash == json_digest(wf.canonical())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", wf.workflow_hash)


def test_hash_is_stable_across_input_forms_and_list_order() -> None:
    base = Workflow.from_mapping(
        definition(
            a={"agent": "x", "tools": ["t1", "t2"], "scopes": ["s1", "s2"]},
            b={"agent": "y", "tools": ["u"]},
            c={"agent": "z", "tools": ["v"], "after": ["a", "b"]},
        )
    )
    shuffled_list_form = {
        "id": "w",
        "version": 1,
        "steps": [
            {"id": "c", "agent": "z", "tools": ["v"], "after": ["b", "a"]},
            {"id": "b", "agent": "y", "tools": ["u"], "required": True, "approval": False},
            {"id": "a", "agent": "x", "tools": ["t2", "t1"], "scopes": ["s2", "s1"]},
        ],
    }
    other = Workflow.from_mapping(shuffled_list_form)
    assert other.workflow_hash == base.workflow_hash
    assert Workflow.from_json(json.dumps(shuffled_list_form)).workflow_hash == base.workflow_hash


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(REFERENCE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), "vuln-patch-2"),
        (("version",), 2),
        (("steps", "plan", "agent"), "classifier"),
        (("steps", "plan", "tools"), ["read_file", "write_file"]),
        (("steps", "plan", "scopes"), ["repo:read", "repo:write"]),
        (("steps", "plan", "scopes"), []),
        (("steps", "classify", "after"), ["plan", "triage"]),
        (("steps", "plan", "required"), False),
        (("steps", "patch", "approval"), True),
        (("steps", "extra"), {"agent": "x", "tools": ["t"]}),
    ],
)
def test_hash_changes_on_any_field_change(path: tuple[str, ...], value: Any, wf: Workflow) -> None:
    assert Workflow.from_mapping(_changed(path, value)).workflow_hash != wf.workflow_hash


def test_hash_changes_when_a_step_is_renamed(wf: Workflow) -> None:
    data = copy.deepcopy(REFERENCE)
    data["steps"]["final"] = data["steps"].pop("patch")
    assert Workflow.from_mapping(data).workflow_hash != wf.workflow_hash


def test_canonical_form_round_trips(wf: Workflow) -> None:
    again = Workflow.from_mapping(wf.canonical())
    assert again.workflow_hash == wf.workflow_hash
    assert again.canonical() == wf.canonical()


# --------------------------------------------------------------------------- queries


def test_step_of_unknown_id_is_unknown_step(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        wf.step("deploy")
    assert info.value.reason == Reason.UNKNOWN_STEP
    assert "'deploy'" in info.value.description


@pytest.mark.parametrize(
    "query",
    [
        lambda wf: wf.dependencies("nope"),
        lambda wf: wf.ancestors("nope"),
        lambda wf: wf.is_descendant("nope", "plan"),
        lambda wf: wf.is_descendant("plan", "nope"),
        lambda wf: wf.waits_for("nope", set()),
        lambda wf: wf.descendants("nope"),
    ],
)
def test_queries_on_unknown_steps_raise_unknown_step(query: Any, wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        query(wf)
    assert info.value.reason == Reason.UNKNOWN_STEP


def test_dependencies_are_the_direct_after_edges(wf: Workflow) -> None:
    assert wf.dependencies("triage") == frozenset()
    assert wf.dependencies("plan") == frozenset({"triage"})
    assert wf.dependencies("patch") == frozenset({"classify"})


def test_ancestors_are_transitive(wf: Workflow) -> None:
    assert wf.ancestors("triage") == frozenset()
    assert wf.ancestors("patch") == frozenset({"triage", "plan", "classify"})


def test_supervisor_step_reaches_every_later_step(wf: Workflow) -> None:
    assert all(wf.is_descendant("triage", s) for s in ("plan", "classify", "patch"))
    assert wf.is_descendant("plan", "patch")


def test_descendant_relation_does_not_run_backwards_or_to_itself(wf: Workflow) -> None:
    assert not wf.is_descendant("patch", "plan")
    assert not wf.is_descendant("classify", "triage")
    assert not wf.is_descendant("plan", "plan")


def test_siblings_are_not_descendants_of_each_other() -> None:
    wf = Workflow.from_mapping(
        definition(
            root={"agent": "s", "tools": ["t"]},
            left={"agent": "l", "tools": ["t"], "after": ["root"]},
            right={"agent": "r", "tools": ["t"], "after": ["root"]},
        )
    )
    assert not wf.is_descendant("left", "right")
    assert not wf.is_descendant("right", "left")


def test_waits_for_names_the_missing_predecessors(wf: Workflow) -> None:
    assert wf.waits_for("triage", []) == []
    assert wf.waits_for("plan", []) == ["triage"]
    assert wf.waits_for("plan", ["triage"]) == []
    assert wf.waits_for("patch", {"triage"}) == ["classify"]
    assert wf.waits_for("patch", {"triage", "plan", "classify"}) == []


def test_dependencies_count_every_ancestor_not_only_direct_ones(wf: Workflow) -> None:
    # A completed set that skips a step (never produced by a ledger that enforced the
    # order) does not let a later step run.
    assert wf.waits_for("patch", {"classify"}) == ["classify"]
    assert wf.soundly_completed({"classify", "triage"}) == {"triage"}


def test_next_steps_walk_the_reference_workflow(wf: Workflow) -> None:
    assert wf.next_steps(set()) == ["triage"]
    assert wf.next_steps({"triage"}) == ["plan"]
    assert wf.next_steps({"triage", "plan"}) == ["classify"]
    assert wf.next_steps({"triage", "plan", "classify"}) == ["patch"]
    assert wf.next_steps(set(wf.steps)) == []


def test_next_steps_lists_parallel_steps_in_topological_order() -> None:
    wf = Workflow.from_mapping(
        definition(
            z={"agent": "s", "tools": ["t"]},
            b={"agent": "x", "tools": ["t"], "after": ["z"]},
            a={"agent": "y", "tools": ["t"], "after": ["z"]},
        )
    )
    assert wf.next_steps({"z"}) == ["a", "b"]


def test_topological_order_breaks_ties_by_step_id() -> None:
    wf = Workflow.from_mapping(
        definition(
            d={"agent": "x", "tools": ["t"], "after": ["c"]},
            c={"agent": "x", "tools": ["t"]},
            b={"agent": "x", "tools": ["t"]},
            a={"agent": "x", "tools": ["t"], "after": ["d"]},
        )
    )
    assert wf.topological_order() == ["b", "c", "d", "a"]


def test_remaining_required_ignores_optional_steps() -> None:
    wf = Workflow.from_mapping(
        definition(
            a={"agent": "x", "tools": ["t"]},
            notify={"agent": "n", "tools": ["t"], "after": ["a"], "required": False},
        )
    )
    assert wf.remaining_required(set()) == ["a"]
    assert wf.remaining_required({"a"}) == []
    assert wf.next_steps({"a"}) == ["notify"]


# -------------------------------------------------------------------------- step_for


def test_step_for_finds_the_step_of_a_tool_call(wf: Workflow) -> None:
    assert at(wf, {"triage"}).step_for("planner", "read_file") == "plan"
    assert at(wf, set()).step_for("supervisor", "list_repos") == "triage"


def test_step_for_refuses_planner_before_triage(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        at(wf, set()).step_for("planner", "read_file")
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert "'triage'" in info.value.description


def test_step_for_names_every_missing_step(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        at(wf, {"triage"}).step_for("patcher", "create_pull_request")
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert "waits for step 'classify' (agent 'classifier')" in info.value.description
    assert "due now: step 'plan' (agent 'planner')" in info.value.description


def test_step_for_refuses_agent_without_steps(wf: Workflow) -> None:
    with pytest.raises(UnauthorizedClient) as info:
        at(wf, {"triage"}).step_for("mallory", "read_file")
    assert info.value.reason == Reason.WRONG_AGENT_FOR_STEP


def test_step_for_refuses_tool_none_of_the_agents_steps_allows(wf: Workflow) -> None:
    with pytest.raises(UnauthorizedClient) as info:
        at(wf, {"triage"}).step_for("planner", "create_pull_request")
    assert info.value.reason == Reason.TOOL_NOT_ALLOWED
    assert "'read_file'" in info.value.description


def test_step_for_reenters_the_one_completed_candidate(wf: Workflow) -> None:
    assert at(wf, {"triage", "plan"}).step_for("planner", "read_file") == "plan"


def test_step_for_refuses_when_several_candidates_are_completed() -> None:
    wf = Workflow.from_mapping(
        {
            "id": "twice",
            "version": 1,
            "steps": {
                "a": {"agent": "x", "tools": ["t"]},
                "b": {"agent": "x", "tools": ["t"], "after": ["a"]},
            },
        }
    )
    with pytest.raises(InvalidGrant) as info:
        at(wf, {"a", "b"}).step_for("x", "t")
    assert info.value.reason == Reason.STEP_ALREADY_COMPLETED


def _review_workflow() -> Workflow:
    return Workflow.from_mapping(
        definition(
            draft={"agent": "writer", "tools": ["edit"]},
            first_review={"agent": "reviewer", "tools": ["comment"], "after": ["draft"]},
            second_review={"agent": "reviewer", "tools": ["comment"], "after": ["first_review"]},
            style={"agent": "reviewer", "tools": ["comment", "lint"], "after": ["draft"]},
        )
    )


def test_step_for_prefers_the_open_step_over_completed_ones() -> None:
    wf = _review_workflow()
    assert at(wf, {"draft", "first_review", "style"}).step_for("reviewer", "comment") == (
        "second_review"
    )
    assert at(wf, {"draft"}).step_for("reviewer", "lint") == "style"


def test_step_for_refuses_ambiguous_calls_and_names_the_steps() -> None:
    wf = _review_workflow()
    with pytest.raises(InvalidGrant) as info:
        at(wf, {"draft"}).step_for("reviewer", "comment")
    assert info.value.reason == Reason.AMBIGUOUS_STEP
    assert "'first_review'" in info.value.description
    assert "'style'" in info.value.description


def test_step_for_ignores_candidates_still_waiting_when_one_is_ready() -> None:
    wf = _review_workflow()
    # second_review waits for first_review; style is done; first_review is the one.
    assert at(wf, {"draft", "style"}).step_for("reviewer", "comment") == "first_review"


# ----------------------------------------------------------------------- check_mint


def test_check_mint_returns_the_step_and_its_scopes(wf: Workflow) -> None:
    decision = at(wf, {"triage"}).check_mint("planner", "plan", "read_file")
    assert (decision.step, decision.scopes, decision.enters) == ("plan", ("repo:read",), True)


def test_check_mint_refuses_unknown_step(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        at(wf, {"triage"}).check_mint("planner", "deploy", "read_file")
    assert info.value.reason == Reason.UNKNOWN_STEP


def test_check_mint_refuses_another_agents_step(wf: Workflow) -> None:
    with pytest.raises(UnauthorizedClient) as info:
        at(wf, set(wf.steps) - {"patch"}).check_mint("planner", "patch", "create_pull_request")
    assert info.value.reason == Reason.WRONG_AGENT_FOR_STEP


def test_check_mint_refuses_tool_outside_the_step(wf: Workflow) -> None:
    with pytest.raises(UnauthorizedClient) as info:
        at(wf, {"triage"}).check_mint("planner", "plan", "create_pull_request")
    assert info.value.reason == Reason.TOOL_NOT_ALLOWED
    # The refusal names the step that owns the tool and its agent.
    assert "'patch' (agent 'patcher')" in info.value.description


def test_check_mint_refuses_step_before_its_dependencies(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        at(wf, {"triage"}).check_mint("classifier", "classify", "query_advisories")
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    assert "'plan' (agent 'planner')" in info.value.description
    assert "due now: step 'plan'" in info.value.description


def _approval_workflow() -> Workflow:
    data = copy.deepcopy(REFERENCE)
    data["steps"]["patch"]["approval"] = True
    return Workflow.from_mapping(data)


def test_check_mint_requires_recorded_approval() -> None:
    wf = _approval_workflow()
    done = {"triage", "plan", "classify"}
    with pytest.raises(AccessDenied) as info:
        at(wf, done).check_mint("patcher", "patch", "create_pull_request")
    assert info.value.reason == Reason.APPROVAL_REQUIRED
    with pytest.raises(AccessDenied):
        at(wf, done, approved={"plan"}).check_mint("patcher", "patch", "create_pull_request")
    decision = at(wf, done, approved={"patch"}).check_mint(
        "patcher", "patch", "create_pull_request"
    )
    assert decision.step == "patch"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        # wrong agent is reported before a disallowed tool, missing dependencies, approval
        (("planner", "patch", "rm_rf"), Reason.WRONG_AGENT_FOR_STEP),
        # a disallowed tool before missing dependencies and approval
        (("patcher", "patch", "rm_rf"), Reason.TOOL_NOT_ALLOWED),
        # missing dependencies before approval
        (("patcher", "patch", "create_pull_request"), Reason.DEPENDENCIES_INCOMPLETE),
    ],
)
def test_check_mint_checks_in_design_order(call: tuple[str, str, str], reason: Reason) -> None:
    with pytest.raises(AJWTError) as info:
        at(_approval_workflow()).check_mint(*call)
    assert info.value.reason == reason


def test_completed_step_may_be_minted_again(wf: Workflow) -> None:
    # Further calls within a completed step are the IdP's decision, not the workflow's.
    decision = at(wf, {"triage", "plan"}).check_mint("planner", "plan", "read_file")
    assert (decision.step, decision.enters) == ("plan", False)


# --------------------------------------------------------------- check_delegation_edge


@pytest.mark.parametrize(
    ("to_step", "agent"),
    [("plan", "planner"), ("classify", "classifier"), ("patch", "patcher")],
)
def test_supervisor_may_delegate_every_later_step(wf: Workflow, to_step: str, agent: str) -> None:
    wf.check_delegation_edge("triage", to_step, agent)


def test_chain_may_delegate_step_by_step(wf: Workflow) -> None:
    wf.check_delegation_edge("triage", "plan", "planner")
    wf.check_delegation_edge("plan", "classify", "classifier")
    wf.check_delegation_edge("classify", "patch", "patcher")


@pytest.mark.parametrize(
    ("from_step", "to_step"),
    [("patch", "plan"), ("classify", "triage"), ("triage", "deploy")],
)
def test_delegation_must_follow_the_dag(wf: Workflow, from_step: str, to_step: str) -> None:
    with pytest.raises(InvalidGrant) as info:
        wf.check_delegation_edge(from_step, to_step, wf.steps.get(to_step, wf.step("plan")).agent)
    assert info.value.reason == Reason.DELEGATION_NOT_ALONG_WORKFLOW


def test_delegation_from_unknown_step_is_not_along_workflow(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        wf.check_delegation_edge("nowhere", "plan", "planner")
    assert info.value.reason == Reason.DELEGATION_NOT_ALONG_WORKFLOW


def test_delegation_to_someone_else_than_the_steps_agent_is_refused(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        wf.check_delegation_edge("triage", "patch", "planner")
    assert info.value.reason == Reason.DELEGATE_MISMATCH
    assert "'patcher'" in info.value.description


def test_delegation_checks_the_edge_before_the_delegate(wf: Workflow) -> None:
    with pytest.raises(InvalidGrant) as info:
        wf.check_delegation_edge("patch", "plan", "mallory")
    assert info.value.reason == Reason.DELEGATION_NOT_ALONG_WORKFLOW


# -------------------------------------------------------------------------- properties


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """A random acyclic definition and its edges ``(before, after)``."""
    count = draw(st.integers(min_value=1, max_value=12))
    names = draw(
        st.lists(
            st.text(alphabet="abcdefgh0123456789_-", min_size=1, max_size=6),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    edges: set[tuple[str, str]] = set()
    steps: dict[str, Any] = {}
    # Edges only point from earlier to later names in this (random) order: acyclic.
    for index, name in enumerate(names):
        after = [names[j] for j in range(index) if draw(st.booleans())]
        edges |= {(dep, name) for dep in after}
        steps[name] = {
            "agent": draw(st.sampled_from(["a1", "a2", "a3"])),
            "tools": draw(st.lists(st.sampled_from(["t1", "t2", "t3"]), min_size=1, unique=True)),
            "scopes": draw(st.lists(st.sampled_from(["s:1", "s:2"]), unique=True)),
            "after": after,
        }
    return {"id": "random", "version": 1, "steps": steps}, edges


def _reachable(edges: set[tuple[str, str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        for before, after in edges:
            if before == node and after not in seen:
                seen.add(after)
                todo.append(after)
    return seen


@given(dags())
@settings(max_examples=200, deadline=None)
def test_random_dags_validate_and_order_respects_every_edge(
    dag: tuple[dict[str, Any], set[tuple[str, str]]],
) -> None:
    data, edges = dag
    wf = Workflow.from_mapping(data)
    order = wf.topological_order()
    assert sorted(order) == sorted(data["steps"])
    position = {step: i for i, step in enumerate(order)}
    for before, after in edges:
        assert position[before] < position[after]
    for step in data["steps"]:
        assert {s for s in data["steps"] if wf.is_descendant(step, s)} == _reachable(edges, step)


@given(dags(), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_random_dags_hash_the_same_in_every_form_and_order(
    dag: tuple[dict[str, Any], set[tuple[str, str]]], rnd: random.Random
) -> None:
    data, _ = dag
    shuffled = []
    for step_id, body in data["steps"].items():
        body = {
            key: list(value) if isinstance(value, list) else value for key, value in body.items()
        }
        for key in ("tools", "scopes", "after"):
            rnd.shuffle(body[key])
        shuffled.append({"id": step_id, **body})
    rnd.shuffle(shuffled)
    as_list = {"id": data["id"], "version": data["version"], "steps": shuffled}
    assert Workflow.from_mapping(as_list).workflow_hash == Workflow.from_mapping(data).workflow_hash


@given(dags(), st.data())
@settings(max_examples=200, deadline=None)
def test_any_back_edge_is_rejected_as_a_named_cycle(
    dag: tuple[dict[str, Any], set[tuple[str, str]]], data: st.DataObject
) -> None:
    definition_, edges = dag
    if not edges:
        return
    before, after = data.draw(st.sampled_from(sorted(edges)))
    definition_["steps"][before]["after"].append(after)  # now before also waits for after
    err = invalid(definition_)
    match = re.search(r"steps (.+) form a cycle", err.description)
    assert match is not None
    cycle = match.group(1).split(" -> ")
    assert cycle[0] == cycle[-1]
    for first, second in itertools.pairwise(cycle):
        assert first in definition_["steps"][second]["after"]


@given(st.one_of(st.text(), st.binary()))
@settings(max_examples=300, deadline=None)
def test_from_json_on_arbitrary_text_raises_only_ajwt_errors(text: str | bytes) -> None:
    with contextlib.suppress(AJWTError):
        Workflow.from_json(text)


_json_keys = st.sampled_from(
    ["id", "version", "steps", "agent", "tools", "scopes", "after", "required", "approval", "a"]
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["a", "b", "t", "x", "repo:read", " ", ""]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_json_keys, children),
    max_leaves=30,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": _json_values,
            "version": _json_values,
            "steps": st.dictionaries(st.sampled_from(["a", "b", "c"]), _json_values)
            | st.lists(_json_values),
        },
    )
)
@settings(max_examples=300, deadline=None)
def test_from_json_on_arbitrary_json_raises_only_ajwt_errors(data: dict[str, Any]) -> None:
    with contextlib.suppress(AJWTError):
        Workflow.from_json(json.dumps(data))
