"""The workflow document (DESIGN §6.3): steps, their agents, tools, scopes and order.

A workflow is pure data. This module validates it (every refusal is a
:class:`WorkflowError` naming the key at fault), derives its graph once, and computes
the canonical form that :attr:`Workflow.workflow_hash` digests. What a run may do next
is decided by :mod:`ajwt_core.workflow.state` from this model and the run's ledger.

>>> wf = Workflow.from_mapping({"id": "news", "version": 1, "steps": {
...     "route": {"agent": "supervisor", "tools": []},
...     "headlines": {"agent": "reporter", "tools": ["get_news"], "after": ["route"]},
...     "prices": {"agent": "analyst", "tools": ["get_prices"], "after": ["route"]},
...     "write": {"agent": "writer", "tools": ["publish"], "after_any": ["headlines", "prices"]},
... }})
>>> wf.step("route").is_routing, wf.topological_order()
(True, ['route', 'headlines', 'prices', 'write'])
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ajwt_core.canonical import json_digest
from ajwt_core.errors import InvalidRequest, Reason

#: More steps than any real workflow has; bounds the work done on untrusted definitions.
MAX_WORKFLOW_STEPS: Final = 1000
#: Largest workflow document (JSON or YAML) that is parsed.
MAX_WORKFLOW_JSON_BYTES: Final = 1 << 20
#: Longest identifier, tool name or scope (the IdP stores them in 128-character columns).
MAX_NAME_LENGTH: Final = 128
#: Highest workflow version (the IdP stores versions in 32-bit integer columns).
MAX_WORKFLOW_VERSION: Final = 2**31 - 1
#: Highest ``max_visits``: loops are bounded, and a run's ledger with them.
MAX_VISITS: Final = 100

# Workflow ids, step ids and agent ids travel in tokens, URLs and policy files: keep
# them to one unambiguous alphabet (the IdP's ``Identifier``).
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:@-]+")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

Path = tuple[str | int, ...]


class WorkflowError(InvalidRequest):
    """A workflow document is not valid: ``path`` is the key at fault, e.g.
    ``("steps", "plan", "after", 0)``, so that tools can point at its line."""

    def __init__(self, description: str, path: Path = ()) -> None:
        super().__init__(Reason.INVALID_WORKFLOW, description)
        self.path = path


def _check_length(value: str, what: str) -> None:
    if not value.strip():
        raise ValueError(f"has an empty {what}")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"has an overlong {what} ({len(value)} characters; at most {MAX_NAME_LENGTH})"
        )


# Each check's message continues a sentence that starts with its subject ("step 'plan'
# has ...", "the workflow has ...").


def _check_identifier(value: str, what: str) -> str:
    _check_length(value, what)
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"has {what} {value!r}, which may contain only letters, digits and . _ : @ - "
            "(no spaces or other characters)"
        )
    return value


def _check_tool_name(value: str) -> str:
    # Frameworks name tools freely (CrewAI uses sentences), so tool names may contain
    # inner spaces; they must still be printable and not padded.
    _check_length(value, "tool name")
    if value != value.strip() or not value.isprintable():
        raise ValueError(
            f"has tool name {value!r}, which must be printable and must not start or end "
            "with whitespace"
        )
    return value


def _check_scope(value: str) -> str:
    _check_length(value, "scope")
    if not _SCOPE_TOKEN.fullmatch(value):
        raise ValueError(
            f"has scope {value!r}, which is not an OAuth scope token (RFC 6749 §3.3: no "
            "spaces, quotes, backslashes or non-ASCII characters)"
        )
    return value


def _agent_id(value: str) -> str:
    return _check_identifier(value, "agent id")


def _step_ref(field: str) -> Any:
    return AfterValidator(lambda value: _check_identifier(value, f"{field!r} entry"))


def _workflow_id(value: str) -> str:
    return _check_identifier(value, "workflow id")


AgentId = Annotated[StrictStr, AfterValidator(_agent_id)]
ToolName = Annotated[StrictStr, AfterValidator(_check_tool_name)]
ScopeToken = Annotated[StrictStr, AfterValidator(_check_scope)]
WorkflowId = Annotated[StrictStr, AfterValidator(_workflow_id)]


def _repeated(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def names(values: Iterable[str]) -> str:
    """``'a', 'b'`` for messages."""
    return ", ".join(repr(v) for v in values)


def steps_phrase(values: Iterable[str]) -> str:
    """``step 'a'`` or ``steps 'a', 'b'`` for messages."""
    items = list(values)
    return ("step " if len(items) == 1 else "steps ") + names(items)


def _unique(field: str) -> Any:
    def check(values: list[str]) -> list[str]:
        if repeated := _repeated(values):
            raise ValueError(f"lists {names(repeated)} in {field!r} more than once")
        return values

    return AfterValidator(check)


class Consultation(BaseModel):
    """What a consulted agent may do inside the consulting step (DESIGN §6.3).

    >>> Consultation(tools=["search"]).scopes
    []
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tools: Annotated[list[ToolName], _unique("tools")] = Field(default_factory=list)
    scopes: Annotated[list[ScopeToken], _unique("scopes")] = Field(default_factory=list)

    def canonical(self) -> dict[str, Any]:
        return {"tools": sorted(self.tools), "scopes": sorted(self.scopes)}


def _consult_shorthand(value: Any) -> Any:
    # ``consult: [researcher]`` is short for ``consult: {researcher: {}}``: a consultation
    # with no tools (the consulted agent answers from what it knows).
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            return value  # the dict validation reports the type
        if repeated := _repeated(value):
            raise ValueError(f"lists {names(repeated)} in 'consult' more than once")
        return {agent: {} for agent in value}
    return value


class Step(BaseModel):
    """One step of a workflow (DESIGN §6.3).

    ``tools`` are the API tools its agent may call (none: a *routing* step, whose agent
    only hands work on). ``after`` lists steps that must all be completed first;
    ``after_any`` steps of which at least one must be. ``one_of`` names successors of
    which a run takes exactly one. ``max_visits`` bounds how often the step may be
    entered again (sent back to by a later step listing it in ``loop_to``, or re-handed
    by an earlier one). ``consult`` names agents the step's agent may ask for advice,
    with what they may use meanwhile. ``required``: whether a run is finished without
    it; ``approval``: a recorded approval is needed before any token for it.

    >>> Step(agent="planner", tools=["read_file"], after=["triage"]).approval
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: AgentId
    tools: Annotated[list[ToolName], _unique("tools")] = Field(default_factory=list)
    scopes: Annotated[list[ScopeToken], _unique("scopes")] = Field(default_factory=list)
    after: Annotated[list[Annotated[StrictStr, _step_ref("after")]], _unique("after")] = Field(
        default_factory=list
    )
    after_any: Annotated[
        list[Annotated[StrictStr, _step_ref("after_any")]], _unique("after_any")
    ] = Field(default_factory=list)
    one_of: Annotated[list[Annotated[StrictStr, _step_ref("one_of")]], _unique("one_of")] = Field(
        default_factory=list
    )
    loop_to: Annotated[list[Annotated[StrictStr, _step_ref("loop_to")]], _unique("loop_to")] = (
        Field(default_factory=list)
    )
    max_visits: StrictInt = Field(default=1, ge=1, le=MAX_VISITS)
    consult: Annotated[dict[AgentId, Consultation], BeforeValidator(_consult_shorthand)] = Field(
        default_factory=dict
    )
    required: StrictBool = True
    approval: StrictBool = False

    @field_validator("after_any")
    @classmethod
    def _any_of_two(cls, after_any: list[str]) -> list[str]:
        if len(after_any) == 1:
            raise ValueError(
                f"lists one step in 'after_any' ({after_any[0]!r}): waiting for any of one "
                "step is waiting for it, so list it in 'after'"
            )
        return after_any

    @field_validator("one_of")
    @classmethod
    def _one_of_two(cls, one_of: list[str]) -> list[str]:
        if len(one_of) == 1:
            raise ValueError(
                f"lists one step in 'one_of' ({one_of[0]!r}): a choice needs at least two "
                "alternatives"
            )
        return one_of

    @model_validator(mode="after")
    def _coherent(self) -> Step:
        if both := sorted(set(self.after) & set(self.after_any)):
            raise ValueError(
                f"lists {names(both)} in both 'after' and 'after_any': a step is either "
                "waited for (after) or one of several alternatives (after_any)"
            )
        if not self.tools and self.scopes:
            raise ValueError(
                "is a routing step (no tools) with scopes: its agent calls no API, so it "
                "holds no scope; remove 'scopes' or list the tools it calls"
            )
        if self.agent in self.consult:
            raise ValueError(
                f"lists its own agent {self.agent!r} in 'consult': an agent does not consult itself"
            )
        return self

    @property
    def is_routing(self) -> bool:
        """A step with no API tools: its agent hands work on and completes it."""
        return not self.tools

    def canonical(self) -> dict[str, Any]:
        """The step as plain JSON for hashing: lists sorted; the keys of the first format
        (agent, tools, scopes, after, required, approval) always present, later keys only
        when they differ from their default, so earlier documents keep their hash."""
        body: dict[str, Any] = {
            "agent": self.agent,
            "tools": sorted(self.tools),
            "scopes": sorted(self.scopes),
            "after": sorted(self.after),
            "required": self.required,
            "approval": self.approval,
        }
        if self.after_any:
            body["after_any"] = sorted(self.after_any)
        if self.one_of:
            body["one_of"] = sorted(self.one_of)
        if self.loop_to:
            body["loop_to"] = sorted(self.loop_to)
        if self.max_visits != 1:
            body["max_visits"] = self.max_visits
        if self.consult:
            body["consult"] = {a: self.consult[a].canonical() for a in sorted(self.consult)}
        return body


def _location(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as the rest of a sentence ("... has an unknown field 'x'")."""
    where = _location(error["loc"])
    if error["type"] == "missing":
        return f"misses the field {where!r}"
    if error["type"] == "extra_forbidden":
        return f"has an unknown field {where!r}{_suggest(str(error['loc'][-1]), _FIELDS)}"
    if error["type"] == "value_error":
        # Our own checks: their message already continues the sentence.
        return str(error.get("ctx", {}).get("error", error["msg"]))
    message = error["msg"].removeprefix("Input ")
    message = message[:1].lower() + message[1:]
    return f"has an invalid {where or 'value'!r}: {message} (got {type(error['input']).__name__})"


def _from_validation_error(exc: ValidationError, subject: str, prefix: Path) -> WorkflowError:
    errors = exc.errors(include_url=False)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    first = errors[0]
    return WorkflowError(f"{subject} {_describe(first)}{more}", (*prefix, *first["loc"]))


_FIELDS = [*sorted(Step.model_fields), "id", "version", "steps"]


def _parse_step(step_id: str, raw: Any, where: Path) -> Step:
    if isinstance(raw, Step):
        return raw
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"step {step_id!r} must be an object, not {type(raw).__name__}", where)
    try:
        return Step.model_validate(dict(raw))
    except ValidationError as exc:
        raise _from_validation_error(exc, f"step {step_id!r}", where) from None


def _check_step_id(step_id: Any, subject: str, where: Path) -> str:
    if not isinstance(step_id, str):
        raise WorkflowError(f"{subject} has a step id that is not a string: {step_id!r:.40}", where)
    try:
        return _check_identifier(step_id, "step id")
    except ValueError as exc:
        raise WorkflowError(f"{subject} {exc}", where) from None


def _steps_from_list(items: list[Any]) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for index, item in enumerate(items):
        where: Path = ("steps", index)
        if not isinstance(item, Mapping):
            raise WorkflowError(
                f"steps[{index}] must be an object with an 'id', not {item!r:.40}", where
            )
        if "id" not in item:
            raise WorkflowError(f"steps[{index}] has no 'id'", where)
        body = {k: v for k, v in item.items() if k != "id"}
        step_id = _check_step_id(item["id"], f"steps[{index}]", (*where, "id"))
        if step_id in steps:
            raise WorkflowError(
                f"step id {step_id!r} is used by more than one step", (*where, "id")
            )
        steps[step_id] = _parse_step(step_id, body, where)
    return steps


def _steps_from_mapping(items: Mapping[Any, Any]) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for raw_id, body in items.items():
        where: Path = ("steps", str(raw_id))
        step_id = _check_step_id(raw_id, "the workflow", where)
        steps[step_id] = _parse_step(step_id, body, where)
    return steps


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _predecessors(step: Step) -> list[str]:
    return [*step.after, *step.after_any]


def _find_cycle(steps: Mapping[str, Step], among: set[str]) -> list[str]:
    """A cycle among ``among`` (steps Kahn's algorithm could not order), in run order.

    Every step in ``among`` has a predecessor in ``among``, so walking predecessors from
    any of them must revisit a step; the walk from that step back to itself is a cycle.
    """
    start = min(among)
    path: list[str] = []
    position: dict[str, int] = {}
    node = start
    while node not in position:
        position[node] = len(path)
        path.append(node)
        node = min(dep for dep in _predecessors(steps[node]) if dep in among)
    cycle = path[position[node] :]
    # The walk follows edges backwards in time; present it forwards, starting at its
    # smallest step id so the message is deterministic.
    cycle.reverse()
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


class Workflow(BaseModel):
    """A registered, versioned workflow (DESIGN §6.3).

    Build it from untrusted input with :meth:`from_mapping`, :meth:`from_json` or
    :meth:`from_yaml`: they raise only :class:`WorkflowError` (an ``InvalidRequest``,
    reason ``invalid_workflow``) with a sentence naming the offending step and key.
    ``steps`` may be a mapping ``{step_id: {...}}`` or a list of ``{"id": ..., ...}``.

    >>> Workflow.from_mapping({"id": "w", "version": 1, "steps": {
    ...     "a": {"agent": "x", "tools": ["t"], "after": ["b"]},
    ...     "b": {"agent": "y", "tools": ["u"], "after": ["a"]}}})
    Traceback (most recent call last):
    ajwt_core.workflow.model.WorkflowError: steps a -> b -> a form a cycle in \
'after'/'after_any': none of them can ever run (a loop is written with 'loop_to' and 'max_visits')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: WorkflowId
    version: StrictInt = Field(ge=1, le=MAX_WORKFLOW_VERSION)
    steps: dict[str, Step]
    #: Privacy mode: its intent tokens carry opaque references instead of the workflow,
    #: step, tool and agent names (DESIGN §5.1); the IdP reveals them by introspection.
    opaque_names: StrictBool = False

    # Derived once at validation (the model is frozen).
    _order: tuple[str, ...] = PrivateAttr(default=())
    _ancestors: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    _descendants: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    _choice: dict[str, str] = PrivateAttr(default_factory=dict)
    _hash: str = PrivateAttr(default="")

    # ------------------------------------------------------------------ construction

    @model_validator(mode="before")
    @classmethod
    def _normalise_steps(cls, data: Any) -> Any:
        """Accept both step forms; validate each step here so errors can name it."""
        if not isinstance(data, Mapping) or "steps" not in data:
            return data
        raw = data["steps"]
        if not isinstance(raw, Mapping | list):
            raise WorkflowError(
                "'steps' must be a mapping of step id to step, or a list of steps with "
                f"an 'id', not {type(raw).__name__}",
                ("steps",),
            )
        if len(raw) == 0:
            raise WorkflowError("the workflow has no steps", ("steps",))
        if len(raw) > MAX_WORKFLOW_STEPS:
            raise WorkflowError(
                f"the workflow has {len(raw)} steps; at most {MAX_WORKFLOW_STEPS} allowed",
                ("steps",),
            )
        steps = _steps_from_mapping(raw) if isinstance(raw, Mapping) else _steps_from_list(raw)
        return {**data, "steps": steps}

    @model_validator(mode="after")
    def _check_graph(self) -> Workflow:
        steps = self.steps
        for step_id in sorted(steps):
            step = steps[step_id]
            for key in ("after", "after_any", "one_of", "loop_to"):
                for index, ref in enumerate(getattr(step, key)):
                    where: Path = ("steps", step_id, key, index)
                    if ref == step_id:
                        raise WorkflowError(f"step {step_id!r} lists itself in {key!r}", where)
                    if ref not in steps:
                        raise WorkflowError(
                            f"step {step_id!r} lists {ref!r} in {key!r}, which is not a step "
                            f"of this workflow{_suggest(ref, steps)}",
                            where,
                        )
        order = self._order_steps()
        position = {step_id: i for i, step_id in enumerate(order)}
        # Ancestor sets as bitmasks over the topological positions: a dense DAG of
        # MAX_WORKFLOW_STEPS steps stays cheap to validate.
        masks: dict[str, int] = {}
        for step_id in order:
            mask = 0
            for dep in _predecessors(steps[step_id]):
                mask |= masks[dep] | (1 << position[dep])
            masks[step_id] = mask
        ancestors = {
            step_id: frozenset(order[i] for i in range(mask.bit_length()) if mask >> i & 1)
            for step_id, mask in masks.items()
        }
        descendants: dict[str, set[str]] = {step_id: set() for step_id in steps}
        for step_id, before in ancestors.items():
            for ancestor in before:
                descendants[ancestor].add(step_id)
        self._order = tuple(order)
        self._ancestors = ancestors
        self._descendants = {s: frozenset(d) for s, d in descendants.items()}
        self._choice = self._check_choices()
        self._check_loops()
        self._check_joins()
        self._hash = json_digest(self.canonical())
        return self

    def _order_steps(self) -> list[str]:
        """Kahn's algorithm, ties broken by step id; refuses (and names) a cycle."""
        steps = self.steps
        waiting = {step_id: len(_predecessors(step)) for step_id, step in steps.items()}
        dependents: dict[str, list[str]] = {step_id: [] for step_id in steps}
        for step_id, step in steps.items():
            for dep in _predecessors(step):
                dependents[dep].append(step_id)
        ready = [step_id for step_id, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            step_id = heapq.heappop(ready)
            order.append(step_id)
            for dependent in dependents[step_id]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, dependent)
        if len(order) < len(steps):
            cycle = _find_cycle(steps, set(steps) - set(order))
            raise WorkflowError(
                f"steps {' -> '.join(cycle)} form a cycle in 'after'/'after_any': none of them "
                "can ever run (a loop is written with 'loop_to' and 'max_visits')",
                ("steps", cycle[1], "after"),
            )
        return order

    def _check_choices(self) -> dict[str, str]:
        """Each ``one_of`` alternative follows its chooser; a step is in one choice only."""
        choice: dict[str, str] = {}
        for step_id in self._order:
            for index, member in enumerate(self.steps[step_id].one_of):
                where: Path = ("steps", step_id, "one_of", index)
                if step_id not in _predecessors(self.steps[member]):
                    raise WorkflowError(
                        f"step {step_id!r} lists {member!r} in 'one_of', but {member!r} does "
                        f"not run after {step_id!r}: add {step_id!r} to its 'after'",
                        where,
                    )
                if member in choice:
                    raise WorkflowError(
                        f"step {member!r} is an alternative of both {choice[member]!r} and "
                        f"{step_id!r}; a step belongs to one 'one_of' choice",
                        where,
                    )
                choice[member] = step_id
        return choice

    def _check_loops(self) -> None:
        for step_id in self._order:
            step = self.steps[step_id]
            for index, target in enumerate(step.loop_to):
                where: Path = ("steps", step_id, "loop_to", index)
                if target not in self._ancestors[step_id]:
                    raise WorkflowError(
                        f"step {step_id!r} lists {target!r} in 'loop_to', but {target!r} does "
                        f"not come before {step_id!r}: a loop sends work back to an earlier step",
                        where,
                    )
                if self.steps[target].max_visits < 2:
                    raise WorkflowError(
                        f"step {step_id!r} may send work back to {target!r}, but {target!r} "
                        "has max_visits 1 so the loop could never run: set its 'max_visits'",
                        ("steps", target),
                    )

    def _check_joins(self) -> None:
        """A step that waits for *all* of two alternatives of one choice can never run."""
        taken: dict[str, dict[str, str]] = {}  # step -> {chooser: alternative it needs}
        for step_id in self._order:
            needs: dict[str, str] = {}
            for dep in self.steps[step_id].after:
                inherited = dict(taken[dep])
                if dep in self._choice:
                    inherited[self._choice[dep]] = dep
                for chooser, member in inherited.items():
                    if needs.get(chooser, member) != member:
                        raise WorkflowError(
                            f"step {step_id!r} waits for all of {needs[chooser]!r} and "
                            f"{member!r}, but a run takes only one of the alternatives of "
                            f"{chooser!r}: list them in 'after_any'",
                            ("steps", step_id, "after"),
                        )
                    needs[chooser] = member
            taken[step_id] = needs

    @classmethod
    def from_mapping(cls, data: Any) -> Workflow:
        """Validate a parsed definition (JSON, YAML…); only ``WorkflowError`` escapes.

        >>> Workflow.from_mapping({"id": "w", "version": 1, "steps": {
        ...     "a": {"agent": "x", "tools": ["t"], "afer": ["b"]}}})
        Traceback (most recent call last):
        ajwt_core.workflow.model.WorkflowError: step 'a' has an unknown field 'afer' \
(did you mean 'after'?)
        """
        if isinstance(data, Workflow):
            return data
        if not isinstance(data, Mapping):
            raise WorkflowError(f"a workflow must be an object, not {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except WorkflowError:
            raise
        except ValidationError as exc:
            raise _from_validation_error(exc, "the workflow", ()) from None
        except RecursionError:
            raise WorkflowError("the workflow definition is nested too deeply") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Workflow:
        """Parse and validate a JSON document, refusing duplicate keys at any depth.

        >>> Workflow.from_json('{"id": "w", "version": 1, "steps": {'
        ...     '"a": {"agent": "x", "tools": ["t"]}, "a": {"agent": "y", "tools": ["t"]}}}')
        Traceback (most recent call last):
        ajwt_core.workflow.model.WorkflowError: line 1, column 74: the document repeats the \
key 'a' in one object; keys (such as step ids) must be unique
        """
        from ajwt_core.workflow.source import load_document

        return load_document(text, "json").workflow()

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Workflow:
        """Parse and validate a YAML document (safe loader; duplicate keys refused).

        >>> Workflow.from_yaml('''
        ... id: w
        ... version: 1
        ... steps:
        ...   route: {agent: boss, tools: []}
        ...   work:  {agent: worker, tools: [do_it], after: [route]}
        ... ''').step("work").after
        ['route']
        """
        from ajwt_core.workflow.source import load_document

        return load_document(text, "yaml").workflow()

    # ---------------------------------------------------------------- serialisation

    def canonical(self) -> dict[str, Any]:
        """The mapping form with defaults spelled out (see :meth:`Step.canonical`): what
        is hashed, and what the IdP stores and serves.

        DESIGN §6.3: the six step members of the first format are always present; a
        member added later is left out while it holds its default, so that the hash of
        every existing workflow stays the same (``tests/vectors`` pins one).

        >>> from ajwt_core.workflow import reference_workflow
        >>> reference_workflow().canonical()["steps"]["plan"]
        {'agent': 'planner', 'tools': ['read_file'], 'scopes': ['repo:read'], \
'after': ['triage'], 'required': True, 'approval': False}
        """
        body: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "steps": {step_id: self.steps[step_id].canonical() for step_id in self._order},
        }
        if self.opaque_names:
            body["opaque_names"] = True
        return body

    @property
    def workflow_hash(self) -> str:
        """``sha256:`` digest of the JCS canonical form; carried in tokens (T6)."""
        return self._hash

    # ----------------------------------------------------------------------- queries

    def step(self, step_id: str) -> Step:
        """The step ``step_id``; ``InvalidGrant(unknown_step)`` if there is none.

        >>> from ajwt_core.workflow import reference_workflow
        >>> reference_workflow().step("deploy")
        Traceback (most recent call last):
        ajwt_core.errors.InvalidGrant: workflow 'vuln-patch' v1 has no step 'deploy'
        """
        step = self.steps.get(step_id)
        if step is None:
            from ajwt_core.errors import InvalidGrant

            raise InvalidGrant(
                Reason.UNKNOWN_STEP,
                f"workflow {self.id!r} v{self.version} has no step {step_id!r}"
                f"{_suggest(step_id, self.steps)}",
            )
        return step

    def dependencies(self, step_id: str) -> frozenset[str]:
        """The steps ``step_id`` directly waits for (``after`` and ``after_any``)."""
        return frozenset(_predecessors(self.step(step_id)))

    def ancestors(self, step_id: str) -> frozenset[str]:
        """Every step that comes before ``step_id`` (transitively, both edge kinds).

        >>> from ajwt_core.workflow import reference_workflow
        >>> sorted(reference_workflow().ancestors("classify"))
        ['plan', 'triage']
        """
        self.step(step_id)
        return self._ancestors[step_id]

    def descendants(self, step_id: str) -> frozenset[str]:
        """Every step that comes after ``step_id``."""
        self.step(step_id)
        return self._descendants[step_id]

    def is_descendant(self, from_step: str, to_step: str) -> bool:
        """Whether ``to_step`` comes after ``from_step`` (not itself)."""
        self.step(from_step)
        return from_step in self.ancestors(to_step)

    def chooser_of(self, step_id: str) -> str | None:
        """The step whose ``one_of`` lists ``step_id``, if any."""
        return self._choice.get(step_id)

    def topological_order(self) -> list[str]:
        """All step ids, every step after its predecessors; ties broken by step id."""
        return list(self._order)

    def steps_of(self, agent: str) -> list[str]:
        """The steps ``agent`` performs, in topological order."""
        return [s for s in self._order if self.steps[s].agent == agent]

    def agents(self) -> list[str]:
        """Every agent named by the workflow (step agents, then consulted agents), sorted."""
        found = {step.agent for step in self.steps.values()}
        found |= {agent for step in self.steps.values() for agent in step.consult}
        return sorted(found)

    def next_steps(self, completed: Iterable[str]) -> list[str]:
        """Steps not completed whose predecessors are, in topological order (ignoring
        choices already made: :class:`~ajwt_core.workflow.state.RunState` knows those).

        >>> from ajwt_core.workflow import reference_workflow
        >>> reference_workflow().next_steps(completed={"triage", "plan"})
        ['classify']
        """
        done = frozenset(completed)
        return [s for s in self._order if s not in done and self.waits_for(s, done) == []]

    def waits_for(self, step_id: str, completed: Iterable[str]) -> list[str]:
        """What ``step_id`` still waits for: its ``after`` steps not completed, and its
        ``after_any`` steps when none of them is. Empty: it may run.

        A step counts as completed only if its own predecessors do: a completed set that
        skips a step (never produced by a ledger that enforced the order) does not let a
        later step run (defence in depth against step bypass, T8).

        >>> from ajwt_core.workflow import reference_workflow
        >>> reference_workflow().waits_for("patch", {"classify"})
        ['classify']
        """
        done = self.soundly_completed(completed)
        step = self.step(step_id)
        missing = [s for s in step.after if s not in done]
        if step.after_any and not any(s in done for s in step.after_any):
            missing += step.after_any
        return sorted(missing)

    def soundly_completed(self, completed: Iterable[str]) -> frozenset[str]:
        """The completed steps whose predecessors are all (soundly) completed too."""
        given = frozenset(completed)
        done: set[str] = set()
        for step_id in self._order:
            if step_id not in given:
                continue
            step = self.steps[step_id]
            if all(d in done for d in step.after) and (
                not step.after_any or any(d in done for d in step.after_any)
            ):
                done.add(step_id)
        return frozenset(done)

    def check_delegation_edge(self, from_step: str, to_step: str, delegate_agent: str) -> None:
        """Whether the graph lets ``from_step`` hand ``to_step`` to ``delegate_agent`` at
        all (a later step, a ``loop_to`` target, or a consultation), before any run.

        >>> from ajwt_core.workflow import reference_workflow
        >>> reference_workflow().check_delegation_edge("patch", "plan", "planner")
        Traceback (most recent call last):
        ajwt_core.errors.InvalidGrant: step 'plan' does not come after step 'patch' in \
workflow 'vuln-patch' v1, so 'patch' cannot hand it on; to send work back, list 'plan' in \
steps.patch.loop_to and give 'plan' a max_visits above 1
        """
        from ajwt_core.workflow.state import RunState

        agent = self.steps[from_step].agent if from_step in self.steps else ""
        RunState(self).check_delegation(
            agent, from_step, delegate_agent, to_step, require_entry=False
        )

    def remaining_required(self, completed: Iterable[str]) -> list[str]:
        """Required steps not yet completed, in topological order."""
        done = frozenset(completed)
        return [s for s in self._order if self.steps[s].required and s not in done]


def reference_workflow() -> Workflow:
    """The reference workflow ``vuln-patch`` v1 of DESIGN §11 (a fresh instance).

    >>> wf = reference_workflow()
    >>> (wf.id, wf.version, wf.step("patch").tools)
    ('vuln-patch', 1, ['create_pull_request'])
    """
    return Workflow.from_mapping(
        {
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
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow document's structure.

    It says what each key holds; what it cannot say (references between steps, no
    cycles, choices and loops that can happen) :meth:`Workflow.from_mapping` checks.

    >>> json_schema()["properties"]["version"]
    {'type': 'integer', 'minimum': 1, 'maximum': 2147483647}
    """
    identifier = {"type": "string", "pattern": r"^[A-Za-z0-9._:@-]+$", "maxLength": MAX_NAME_LENGTH}
    tool = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
    scope = {
        "type": "string",
        "pattern": r"^[\x21\x23-\x5b\x5d-\x7e]+$",
        "maxLength": MAX_NAME_LENGTH,
    }

    def unique(item: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "type": "array",
            "items": item,
            "uniqueItems": True,
            "default": [],
            "description": description,
        }

    consultation = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tools": unique(tool, "Tools the consulted agent may call meanwhile."),
            "scopes": unique(scope, "Scopes its tokens may carry."),
        },
    }
    step_properties: dict[str, Any] = {
        "agent": {**identifier, "description": "The agent that performs the step."},
        "tools": unique(tool, "API tools its agent may call; none: a routing step."),
        "scopes": unique(scope, "The scopes its tokens may carry (none on a routing step)."),
        "after": unique(identifier, "Steps that must all be completed first."),
        "after_any": {
            **unique(identifier, "Steps of which at least one must be completed first."),
            "not": {"minItems": 1, "maxItems": 1},
        },
        "one_of": {
            **unique(identifier, "Successors of which a run takes exactly one."),
            "not": {"minItems": 1, "maxItems": 1},
        },
        "loop_to": unique(identifier, "Earlier steps this step may send work back to."),
        "max_visits": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_VISITS,
            "default": 1,
            "description": "How many times the step may be entered in a run.",
        },
        "consult": {
            "description": "Agents its agent may consult inside the step, and what they "
            "may use; a list of agent ids is short for no tools and no scopes.",
            "default": {},
            "oneOf": [
                {
                    "type": "object",
                    "propertyNames": identifier,
                    "additionalProperties": consultation,
                },
                {"type": "array", "items": identifier, "uniqueItems": True},
            ],
        },
        "required": {
            "type": "boolean",
            "default": True,
            "description": "Whether a run is finished only with this step.",
        },
        "approval": {
            "type": "boolean",
            "default": False,
            "description": "Whether a recorded approval must precede its tokens.",
        },
    }
    step = {
        "type": "object",
        "additionalProperties": False,
        "required": ["agent"],
        "properties": step_properties,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:ajwt:schema:workflow",
        "title": "A-JWT workflow",
        "description": "A registered workflow (DESIGN §6.3).",
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "version", "steps"],
        "properties": {
            "id": identifier,
            "version": {"type": "integer", "minimum": 1, "maximum": MAX_WORKFLOW_VERSION},
            "opaque_names": {
                "type": "boolean",
                "default": False,
                "description": "Whether its tokens carry opaque references instead of the "
                "workflow, step, tool and agent names.",
            },
            "steps": {
                "oneOf": [
                    {
                        "type": "object",
                        "propertyNames": identifier,
                        "additionalProperties": step,
                        "minProperties": 1,
                        "maxProperties": MAX_WORKFLOW_STEPS,
                    },
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_WORKFLOW_STEPS,
                        "items": {
                            **step,
                            "required": ["id", "agent"],
                            "properties": {"id": identifier, **step_properties},
                        },
                    },
                ]
            },
        },
    }
