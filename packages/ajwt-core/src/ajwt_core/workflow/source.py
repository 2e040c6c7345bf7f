"""Workflow documents as text (JSON or YAML), with the line and column of every key.

A document is parsed once; a refusal from validation is then reported at the line of
the key it names (``line 7, column 5: step 'plan' lists 'triag' in 'after' ...``).
Duplicate keys are refused in both formats at any depth (a repeated step id would
otherwise silently replace the first), and YAML is read with the safe loader, without
aliases (an alias can multiply a small document into a huge one).

>>> load_document('{"id": "w", "version": 1, "steps": {"a": {"agent": "x"}}}', "json").data["id"]
'w'
>>> load_document("id: w\\nversion: 1\\nsteps:\\n  a: {agent: x, after: [b]}\\n", "yaml").workflow()
Traceback (most recent call last):
ajwt_core.workflow.model.WorkflowError: line 4, column 25: step 'a' lists 'b' in 'after', \
which is not a step of this workflow
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.strict_json import DuplicateKey, loads_unique
from ajwt_core.workflow.model import MAX_WORKFLOW_JSON_BYTES, Path, Workflow, WorkflowError

Format = Literal["json", "yaml"]


@dataclass(frozen=True)
class Document:
    """A parsed workflow document: its data, and where each key path starts."""

    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path) -> str:
        """``"line L, column C: "`` for the longest known prefix of ``path`` (or "")."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return f"line {found[0]}, column {found[1]}: "
        return ""

    def workflow(self) -> Workflow:
        """Validate the data; a refusal names the line of the key at fault."""
        try:
            return Workflow.from_mapping(self.data)
        except WorkflowError as exc:
            raise WorkflowError(self.where(exc.path) + exc.description, exc.path) from None


def format_of(name: str) -> Format:
    """``json`` for ``*.json``, otherwise ``yaml`` (YAML also reads most JSON)."""
    return "json" if name.lower().endswith(".json") else "yaml"


def load_document(text: str | bytes, fmt: Format) -> Document:
    """Parse ``text`` as ``fmt``; only :class:`WorkflowError` (or, for an oversized
    document, ``InvalidRequest(request_too_large)``) escapes."""
    if len(text) > MAX_WORKFLOW_JSON_BYTES:
        raise InvalidRequest(
            Reason.REQUEST_TOO_LARGE,
            f"the workflow document is larger than {MAX_WORKFLOW_JSON_BYTES} bytes",
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise WorkflowError("the workflow document is not UTF-8 text") from None
    if fmt == "json":
        return _load_json(text)
    node = _compose(text)
    positions: dict[Path, tuple[int, int]] = {}
    _walk(node, (), positions, set())
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise WorkflowError(f"the workflow is not valid YAML: {_reason(exc)}") from None
    finally:
        loader.dispose()
    return Document(data, positions)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return type(exc).__name__


def _compose(text: str) -> yaml.Node | None:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise WorkflowError(f"the workflow is not valid YAML: {_reason(exc)}") from None
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    except (yaml.YAMLError, RecursionError) as exc:
        raise WorkflowError(f"the workflow is not valid YAML: {_reason(exc)}") from None
    finally:
        loader.dispose()


def _key_text(node: yaml.Node) -> str | int:
    return node.value if isinstance(node.value, str) else str(node.value)


def _walk(
    node: yaml.Node | None,
    path: Path,
    positions: dict[Path, tuple[int, int]],
    seen: set[int],
) -> None:
    if node is None:
        return
    if id(node) in seen:
        mark = node.start_mark
        raise WorkflowError(
            f"line {mark.line + 1}, column {mark.column + 1}: YAML aliases are not allowed in "
            "a workflow document",
            path,
        )
    seen.add(id(node))
    positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        keys: dict[tuple[str, Any], yaml.Node] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":merge"):
                mark = key_node.start_mark
                raise WorkflowError(
                    f"line {mark.line + 1}, column {mark.column + 1}: YAML merge keys ('<<') "
                    "are not allowed in a workflow document",
                    path,
                )
            identity = (key_node.tag, key_node.value if isinstance(key_node.value, str) else "")
            if identity in keys:
                mark = key_node.start_mark
                raise WorkflowError(
                    f"line {mark.line + 1}, column {mark.column + 1}: the document repeats the "
                    f"key {key_node.value!r} in one object; keys (such as step ids) must be "
                    "unique",
                    path,
                )
            keys[identity] = key_node
            child = (*path, _key_text(key_node))
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, positions, seen)
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, seen)
            # A list of steps is addressed by id as well as by index.
            if (
                path == ("steps",)
                and isinstance(item, yaml.MappingNode)
                and (step_id := _id_of(item)) is not None
            ):
                for sub_path, where in list(positions.items()):
                    if sub_path[:2] == ("steps", index):
                        positions.setdefault(("steps", step_id, *sub_path[2:]), where)


def _id_of(node: yaml.MappingNode) -> str | None:
    for key_node, value_node in node.value:
        if key_node.value == "id" and isinstance(value_node, yaml.ScalarNode):
            return str(value_node.value)
    return None


def _load_json(text: str) -> Document:
    # The values come from the JSON parser (exact JSON semantics); the positions from
    # composing the same text as YAML, which reads JSON's syntax (best effort: a
    # document YAML cannot read simply gets no line numbers).
    positions: dict[Path, tuple[int, int]] = {}
    duplicate: WorkflowError | None = None
    try:
        _walk(_compose(text), (), positions, set())
    except WorkflowError as exc:
        if "repeats the key" in exc.description:
            duplicate = exc
        positions = {}
    try:
        data = loads_unique(text)
    except DuplicateKey as exc:
        if duplicate is not None:
            raise duplicate from None
        raise WorkflowError(
            f"the document repeats the key {exc.key!r} in one object; keys (such as step "
            "ids) must be unique"
        ) from None
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError.
        detail = (
            f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else type(exc).__name__
        )
        raise WorkflowError(f"the workflow is not valid JSON: {detail}") from None
    return Document(data, positions)
