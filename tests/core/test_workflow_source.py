"""Workflow documents as text: YAML and JSON, line numbers, duplicate keys, aliases, and
the JSON Schema agreeing with the model."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.workflow import Workflow, WorkflowError, reference_workflow
from ajwt_core.workflow.model import MAX_WORKFLOW_JSON_BYTES, json_schema
from ajwt_core.workflow.source import load_document

REFERENCE_YAML = """\
id: vuln-patch
version: 1
steps:
  triage: {agent: supervisor, tools: [list_repos], scopes: [repo:read]}
  plan: {agent: planner, tools: [read_file], scopes: [repo:read], after: [triage]}
  classify: {agent: classifier, tools: [query_advisories], scopes: [advisories:read], after: [plan]}
  patch: {agent: patcher, tools: [create_pull_request], scopes: [repo:write], after: [classify]}
"""


def refusal(text: str, fmt: str = "yaml") -> str:
    with pytest.raises(WorkflowError) as info:
        load_document(text, fmt).workflow()  # type: ignore[arg-type]
    assert info.value.reason == Reason.INVALID_WORKFLOW
    return info.value.description


def test_the_design_documents_yaml_is_the_reference_workflow() -> None:
    assert Workflow.from_yaml(REFERENCE_YAML).workflow_hash == reference_workflow().workflow_hash


def test_yaml_and_json_forms_hash_the_same() -> None:
    text = json.dumps(reference_workflow().canonical())
    assert (
        Workflow.from_json(text).workflow_hash == Workflow.from_yaml(REFERENCE_YAML).workflow_hash
    )


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (REFERENCE_YAML.replace("after: [plan]", "after: [plann]"), "line 6, column", "'plann'"),
        (
            REFERENCE_YAML.replace("after: [classify]", "afterr: [classify]"),
            "line 7, column",
            "'afterr'",
        ),
        (
            REFERENCE_YAML.replace("agent: planner,", "agent: 'plan ner',"),
            "line 5, column",
            "agent id",
        ),
        (REFERENCE_YAML.replace("version: 1", "version: one"), "line 2, column 1:", "'version'"),
    ],
)
def test_yaml_refusals_point_at_the_line_and_key(text: str, where: str, what: str) -> None:
    message = refusal(text)
    assert message.startswith(where), message
    assert what in message


def test_yaml_duplicate_step_ids_are_refused_with_their_line() -> None:
    text = REFERENCE_YAML + "  plan: {agent: mallory, tools: [rm]}\n"
    assert refusal(text).startswith("line 8, column 3: the document repeats the key 'plan'")


def test_yaml_duplicate_keys_inside_a_step_are_refused() -> None:
    message = refusal("id: w\nversion: 1\nsteps:\n  a: {agent: x, agent: y}\n")
    assert "repeats the key 'agent'" in message


def test_json_duplicate_keys_are_refused_with_their_line() -> None:
    text = '{"id": "w", "version": 1,\n "steps": {"a": {"agent": "x"},\n "a": {"agent": "y"}}}'
    assert refusal(text, "json").startswith("line 3, column 2: the document repeats the key 'a'")


@pytest.mark.parametrize(
    "text",
    [
        "id: w\nversion: 1\nsteps:\n  a: &s {agent: x}\n  b: *s\n",
        "id: w\nversion: 1\nsteps:\n  a: {agent: x}\n  b: {<<: {agent: y}}\n",
    ],
)
def test_yaml_aliases_and_merge_keys_are_refused(text: str) -> None:
    assert "are not allowed in a workflow document" in refusal(text)


def test_yaml_tags_that_build_objects_are_refused() -> None:
    message = refusal("id: !!python/object:os.system {}\nversion: 1\nsteps: {a: {agent: x}}\n")
    assert "not valid YAML" in message


def test_oversized_documents_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidRequest) as info:
        load_document("#" * (MAX_WORKFLOW_JSON_BYTES + 1), "yaml")
    assert info.value.reason == Reason.REQUEST_TOO_LARGE


def test_non_utf8_documents_are_refused() -> None:
    with pytest.raises(WorkflowError):
        load_document(b"\xff\xfe", "yaml")


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_yaml_text_raises_only_workflow_errors(text: str) -> None:
    with contextlib.suppress(InvalidRequest):
        load_document(text, "yaml").workflow()


# --------------------------------------------------------------------- the schema


def test_schema_is_valid_draft_2020_12_and_accepts_the_reference() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(reference_workflow().canonical(), schema)
    as_list = {
        "id": "w",
        "version": 1,
        "steps": [{"id": "a", "agent": "x", "consult": ["y"]}],
    }
    jsonschema.validate(as_list, schema)


_keys = st.sampled_from(
    [
        "agent",
        "tools",
        "scopes",
        "after",
        "after_any",
        "one_of",
        "loop_to",
        "max_visits",
        "consult",
        "required",
        "approval",
        "nope",
    ]
)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 200),
    st.sampled_from(["x", "a", "b", "t", "repo:read", "a b", ""]),
    st.lists(st.sampled_from(["a", "b", "t", "x", " "]), max_size=3),
    st.dictionaries(
        st.sampled_from(["y", "x"]),
        st.dictionaries(
            st.sampled_from(["tools", "z"]), st.lists(st.sampled_from(["t"]), max_size=1)
        ),
    ),
)


@given(st.dictionaries(st.sampled_from(["a", "b"]), st.dictionaries(_keys, _values), min_size=1))
@settings(max_examples=400, deadline=None)
def test_a_document_the_model_accepts_the_schema_accepts(steps: dict[str, Any]) -> None:
    document = {"id": "w", "version": 1, "steps": steps}
    try:
        Workflow.from_mapping(document)
    except InvalidRequest:
        return
    jsonschema.validate(document, json_schema())
