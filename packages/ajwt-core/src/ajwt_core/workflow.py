"""Registered workflows: the DAG of steps an intent may run (DESIGN §6.3, §6.5, §5.2).

A workflow says which agent may call which tools at which step, with which scopes, and
after which other steps. It is pure data plus pure queries: the IdP keeps the completed
steps and approvals of a run (in its ledger) and asks this module whether a mint or a
delegation is allowed.

>>> wf = reference_workflow()
>>> wf.topological_order()
['triage', 'plan', 'classify', 'patch']
>>> wf.step_for("planner", "read_file", completed={"triage"})
'plan'
>>> wf.check_step_call("plan", "planner", "read_file", completed=set())
Traceback (most recent call last):
ajwt_core.errors.InvalidGrant: step 'plan' cannot run yet: it waits for step 'triage'
>>> wf.is_descendant("triage", "patch"), wf.is_descendant("patch", "plan")
(True, False)
"""

from __future__ import annotations

import difflib
import heapq
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
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
from ajwt_core.errors import AccessDenied, InvalidGrant, InvalidRequest, Reason, UnauthorizedClient

#: More steps than any real workflow has; bounds the work done on untrusted definitions.
MAX_WORKFLOW_STEPS: Final = 1000
#: Largest workflow JSON document :meth:`Workflow.from_json` parses.
MAX_WORKFLOW_JSON_BYTES: Final = 1 << 20
#: Longest identifier, tool name or scope (the IdP stores them in 128-character columns).
MAX_NAME_LENGTH: Final = 128
#: Highest workflow version (the IdP stores versions in 32-bit integer columns).
MAX_WORKFLOW_VERSION: Final = 2**31 - 1

# Workflow ids, step ids and agent ids travel in tokens, URLs and policy files: keep
# them to one unambiguous alphabet (the IdP's ``Identifier``).
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:@-]+")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


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


def _step_ref(value: str) -> str:
    return _check_identifier(value, "'after' entry")


def _workflow_id(value: str) -> str:
    return _check_identifier(value, "workflow id")


AgentId = Annotated[StrictStr, AfterValidator(_agent_id)]
ToolName = Annotated[StrictStr, AfterValidator(_check_tool_name)]
ScopeToken = Annotated[StrictStr, AfterValidator(_check_scope)]
StepRef = Annotated[StrictStr, AfterValidator(_step_ref)]
WorkflowId = Annotated[StrictStr, AfterValidator(_workflow_id)]


def _repeated(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def _names(values: Iterable[str]) -> str:
    """``'a', 'b'`` for messages."""
    return ", ".join(repr(v) for v in values)


def _steps(values: Collection[str]) -> str:
    """``step 'a'`` or ``steps 'a', 'b'`` for messages."""
    return ("step " if len(values) == 1 else "steps ") + _names(values)


class Step(BaseModel):
    """One step of a workflow (DESIGN §6.3): who may act, with which tools and scopes.

    ``after`` lists the steps that must be completed first. ``required`` says whether a
    run is finished without this step; it does not relax ``after`` edges (a step that
    lists an optional step in ``after`` still waits for it). ``approval`` requires a
    recorded approval before any token is minted for the step.

    >>> Step(agent="planner", tools=["read_file"], after=["triage"]).approval
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: AgentId
    tools: list[ToolName]
    scopes: list[ScopeToken] = Field(default_factory=list)
    after: list[StepRef] = Field(default_factory=list)
    required: StrictBool = True
    approval: StrictBool = False

    @field_validator("tools")
    @classmethod
    def _tools_present_and_unique(cls, tools: list[str]) -> list[str]:
        if not tools:
            raise ValueError("has an empty tool list: a step must allow at least one tool")
        if repeated := _repeated(tools):
            raise ValueError(f"lists tool {_names(repeated)} more than once")
        return tools

    @field_validator("scopes")
    @classmethod
    def _scopes_unique(cls, scopes: list[str]) -> list[str]:
        if repeated := _repeated(scopes):
            raise ValueError(f"lists scope {_names(repeated)} more than once")
        return scopes

    @field_validator("after")
    @classmethod
    def _after_unique(cls, after: list[str]) -> list[str]:
        if repeated := _repeated(after):
            raise ValueError(f"lists {_steps(repeated)} in 'after' more than once")
        return after

    def canonical(self) -> dict[str, Any]:
        """The step as plain JSON, lists sorted, defaults spelled out (for hashing)."""
        return {
            "agent": self.agent,
            "tools": sorted(self.tools),
            "scopes": sorted(self.scopes),
            "after": sorted(self.after),
            "required": self.required,
            "approval": self.approval,
        }


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(Reason.INVALID_WORKFLOW, message)


def _location(loc: tuple[int | str, ...]) -> str:
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
        return f"has an unknown field {where!r}"
    if error["type"] == "value_error":
        # Our own checks: their message already continues the sentence.
        return str(error.get("ctx", {}).get("error", error["msg"]))
    message = error["msg"].removeprefix("Input ")
    message = message[:1].lower() + message[1:]
    return f"has an invalid {where or 'value'!r}: {message} (got {type(error['input']).__name__})"


def _from_validation_error(exc: ValidationError, subject: str) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return _invalid(f"{subject} {_describe(errors[0])}{more}")


def _parse_step(step_id: str, raw: Any) -> Step:
    if isinstance(raw, Step):
        return raw
    if not isinstance(raw, Mapping):
        raise _invalid(f"step {step_id!r} must be an object, not {type(raw).__name__}")
    try:
        return Step.model_validate(dict(raw))
    except ValidationError as exc:
        raise _from_validation_error(exc, f"step {step_id!r}") from None


def _check_step_id(step_id: Any, where: str) -> str:
    if not isinstance(step_id, str):
        raise _invalid(f"{where} has a step id that is not a string: {step_id!r:.40}")
    try:
        return _check_identifier(step_id, "step id")
    except ValueError as exc:
        raise _invalid(f"{where} {exc}") from None


def _steps_from_list(items: list[Any]) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _invalid(f"steps[{index}] must be an object with an 'id', not {item!r:.40}")
        if "id" not in item:
            raise _invalid(f"steps[{index}] has no 'id'")
        body = {k: v for k, v in item.items() if k != "id"}
        step_id = _check_step_id(item["id"], f"steps[{index}]")
        if step_id in steps:
            raise _invalid(f"step id {step_id!r} is used by more than one step")
        steps[step_id] = _parse_step(step_id, body)
    return steps


def _steps_from_mapping(items: Mapping[Any, Any]) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for raw_id, body in items.items():
        step_id = _check_step_id(raw_id, "the workflow")
        steps[step_id] = _parse_step(step_id, body)
    return steps


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _find_cycle(steps: Mapping[str, Step], among: set[str]) -> list[str]:
    """A cycle among ``among`` (steps Kahn's algorithm could not order), in run order.

    Every step in ``among`` has a dependency in ``among``, so walking dependencies from
    any of them must revisit a step; the walk from that step back to itself is a cycle.
    """
    start = min(among)
    path: list[str] = []
    position: dict[str, int] = {}
    node = start
    while node not in position:
        position[node] = len(path)
        path.append(node)
        node = min(dep for dep in steps[node].after if dep in among)
    cycle = path[position[node] :]
    # The walk follows "after" edges backwards in time; present it forwards, starting
    # at its smallest step id so the message is deterministic.
    cycle.reverse()
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


class Workflow(BaseModel):
    """A registered, versioned workflow DAG (DESIGN §6.3).

    Build it from untrusted input with :meth:`from_mapping` or :meth:`from_json`: they
    raise only :class:`~ajwt_core.errors.InvalidRequest` (reason ``invalid_workflow``) with a
    sentence naming the offending step. ``steps`` may be given as a mapping
    ``{step_id: {...}}`` or as a list of ``{"id": step_id, ...}`` objects.

    Queries take ``completed`` (the step ids completed in the run, from its ledger) and
    are pure.

    >>> wf = Workflow.from_mapping({"id": "w", "version": 1, "steps": [
    ...     {"id": "a", "agent": "x", "tools": ["t"]},
    ...     {"id": "b", "agent": "y", "tools": ["u"], "after": ["a"]}]})
    >>> wf.next_steps(completed=set()), wf.next_steps(completed={"a"})
    (['a'], ['b'])
    >>> Workflow.from_mapping({"id": "w", "version": 1, "steps": {
    ...     "a": {"agent": "x", "tools": ["t"], "after": ["b"]},
    ...     "b": {"agent": "y", "tools": ["u"], "after": ["a"]}}})
    Traceback (most recent call last):
    ajwt_core.errors.InvalidRequest: steps a -> b -> a form a cycle in 'after': none of them \
can ever run
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: WorkflowId
    version: StrictInt = Field(ge=1, le=MAX_WORKFLOW_VERSION)
    steps: dict[str, Step]

    # Derived once at validation (the model is frozen).
    _order: tuple[str, ...] = PrivateAttr(default=())
    _ancestors: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    _hash: str = PrivateAttr(default="")

    # ------------------------------------------------------------------ construction

    @model_validator(mode="before")
    @classmethod
    def _normalise_steps(cls, data: Any) -> Any:
        """Accept both step forms; validate each step here so errors can name it."""
        if not isinstance(data, Mapping) or "steps" not in data:
            return data
        raw = data["steps"]
        if isinstance(raw, Mapping | list):
            count = len(raw)
        else:
            raise _invalid(
                "'steps' must be a mapping of step id to step, or a list of steps with "
                f"an 'id', not {type(raw).__name__}"
            )
        if count == 0:
            raise _invalid("the workflow has no steps")
        if count > MAX_WORKFLOW_STEPS:
            raise _invalid(f"the workflow has {count} steps; at most {MAX_WORKFLOW_STEPS} allowed")
        steps = _steps_from_mapping(raw) if isinstance(raw, Mapping) else _steps_from_list(raw)
        return {**data, "steps": steps}

    @model_validator(mode="after")
    def _check_graph(self) -> Workflow:
        steps = self.steps
        if not steps:
            raise _invalid("the workflow has no steps")
        for step_id in sorted(steps):
            for dep in sorted(steps[step_id].after):
                if dep == step_id:
                    raise _invalid(f"step {step_id!r} lists itself in 'after'")
                if dep not in steps:
                    raise _invalid(
                        f"step {step_id!r} runs after {dep!r}, which is not a step of this "
                        f"workflow{_suggest(dep, steps)}"
                    )
        order = self._order_steps()
        # Ancestor sets as bitmasks over the topological positions: a dense DAG of
        # MAX_WORKFLOW_STEPS steps stays cheap to validate.
        index = {step_id: i for i, step_id in enumerate(order)}
        masks: dict[str, int] = {}
        for step_id in order:
            mask = 0
            for dep in steps[step_id].after:
                mask |= masks[dep] | (1 << index[dep])
            masks[step_id] = mask
        self._order = tuple(order)
        self._ancestors = {
            step_id: frozenset(order[i] for i in range(mask.bit_length()) if mask >> i & 1)
            for step_id, mask in masks.items()
        }
        self._hash = json_digest(self.canonical())
        return self

    def _order_steps(self) -> list[str]:
        """Kahn's algorithm, ties broken by step id; refuses (and names) a cycle."""
        steps = self.steps
        waiting = {step_id: len(step.after) for step_id, step in steps.items()}
        dependents: dict[str, list[str]] = {step_id: [] for step_id in steps}
        for step_id, step in steps.items():
            for dep in step.after:
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
            raise _invalid(
                f"steps {' -> '.join(cycle)} form a cycle in 'after': none of them can ever run"
            )
        return order

    @classmethod
    def from_mapping(cls, data: Any) -> Workflow:
        """Validate a parsed definition (JSON, YAML…); only ``InvalidRequest`` escapes.

        >>> Workflow.from_mapping({"id": "w", "version": 1, "steps": {
        ...     "a": {"agent": "x", "tools": []}}})
        Traceback (most recent call last):
        ajwt_core.errors.InvalidRequest: step 'a' has an empty tool list: \
a step must allow at least one tool
        """
        if not isinstance(data, Mapping):
            raise _invalid(f"a workflow must be an object, not {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _from_validation_error(exc, "the workflow") from None
        except RecursionError:
            raise _invalid("the workflow definition is nested too deeply") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Workflow:
        """Parse and validate a JSON definition, refusing duplicate keys at any depth.

        A repeated key would silently replace the first value (for example one of two
        steps with the same id), so it is an error rather than "last one wins".

        >>> Workflow.from_json('{"id": "w", "version": 1, "steps": {'
        ...     '"a": {"agent": "x", "tools": ["t"]}, "a": {"agent": "y", "tools": ["t"]}}}')
        Traceback (most recent call last):
        ajwt_core.errors.InvalidRequest: the workflow JSON repeats the key 'a' in one object; \
keys (such as step ids) must be unique
        """
        if len(text) > MAX_WORKFLOW_JSON_BYTES:
            raise InvalidRequest(
                Reason.REQUEST_TOO_LARGE,
                f"the workflow JSON is larger than {MAX_WORKFLOW_JSON_BYTES} bytes",
            )
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise _invalid(
                f"the workflow JSON repeats the key {exc.key!r} in one object; keys (such as "
                "step ids) must be unique"
            ) from None
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors.
            raise _invalid(f"the workflow is not valid JSON: {type(exc).__name__}") from None
        return cls.from_mapping(data)

    # ---------------------------------------------------------------- serialisation

    def canonical(self) -> dict[str, Any]:
        """The mapping form, lists sorted and defaults spelled out: what is hashed.

        DESIGN §6.3: the six step members of the first format are always present; a
        member added later must be left out while it holds its default, so that the
        hash of every existing workflow stays the same (``tests/vectors`` pins one).

        >>> reference_workflow().canonical()["steps"]["plan"]
        {'agent': 'planner', 'tools': ['read_file'], 'scopes': ['repo:read'], \
'after': ['triage'], 'required': True, 'approval': False}
        """
        return {
            "id": self.id,
            "version": self.version,
            "steps": {step_id: self.steps[step_id].canonical() for step_id in self._order},
        }

    @property
    def workflow_hash(self) -> str:
        """``sha256:`` digest of the JCS canonical form; carried in tokens (T6).

        Semantically equal workflows hash equally whatever the input form or list order.

        >>> reference_workflow().workflow_hash.startswith("sha256:")
        True
        """
        return self._hash

    # ----------------------------------------------------------------------- queries

    def step(self, step_id: str) -> Step:
        """The step ``step_id``; ``InvalidGrant(unknown_step)`` if there is none.

        >>> reference_workflow().step("plan").agent
        'planner'
        >>> reference_workflow().step("deploy")
        Traceback (most recent call last):
        ajwt_core.errors.InvalidGrant: workflow 'vuln-patch' v1 has no step 'deploy'
        """
        step = self.steps.get(step_id)
        if step is None:
            raise InvalidGrant(
                Reason.UNKNOWN_STEP,
                f"workflow {self.id!r} v{self.version} has no step {step_id!r}"
                f"{_suggest(step_id, self.steps)}",
            )
        return step

    def dependencies(self, step_id: str) -> frozenset[str]:
        """The steps ``step_id`` directly runs after.

        >>> sorted(reference_workflow().dependencies("classify"))
        ['plan']
        """
        return frozenset(self.step(step_id).after)

    def ancestors(self, step_id: str) -> frozenset[str]:
        """Every step that must run before ``step_id`` (transitively through ``after``).

        >>> sorted(reference_workflow().ancestors("classify"))
        ['plan', 'triage']
        """
        self.step(step_id)
        return self._ancestors[step_id]

    def is_descendant(self, from_step: str, to_step: str) -> bool:
        """Whether ``to_step`` is reachable from ``from_step`` along ``after`` edges.

        A step is not its own descendant.

        >>> wf = reference_workflow()
        >>> wf.is_descendant("triage", "classify"), wf.is_descendant("plan", "plan")
        (True, False)
        """
        self.step(from_step)
        return from_step in self.ancestors(to_step)

    def missing_dependencies(self, step_id: str, completed: Collection[str]) -> list[str]:
        """The steps that must still complete before ``step_id`` may run, sorted.

        Every ancestor counts, not only the direct ``after`` list: for a completed set
        taken from a ledger that enforced the order the result is the same, and for any
        other set the check stays closed (defence in depth against step bypass, T8).

        >>> reference_workflow().missing_dependencies("classify", completed=set())
        ['plan', 'triage']
        """
        done = frozenset(completed)
        return sorted(step for step in self.ancestors(step_id) if step not in done)

    def dependencies_met(self, step_id: str, completed: Collection[str]) -> bool:
        """Whether every step before ``step_id`` is completed.

        >>> reference_workflow().dependencies_met("plan", completed={"triage"})
        True
        """
        return not self.missing_dependencies(step_id, completed)

    def topological_order(self) -> list[str]:
        """All step ids, every step after its dependencies; ties broken by step id.

        >>> reference_workflow().topological_order()
        ['triage', 'plan', 'classify', 'patch']
        """
        return list(self._order)

    def next_steps(self, completed: Collection[str]) -> list[str]:
        """Steps not yet completed whose dependencies are, in topological order.

        >>> reference_workflow().next_steps(completed={"triage", "plan"})
        ['classify']
        """
        done = frozenset(completed)
        return [
            step_id
            for step_id in self._order
            if step_id not in done and self._ancestors[step_id] <= done
        ]

    def remaining_required(self, completed: Collection[str]) -> list[str]:
        """Required steps not yet completed, in topological order (empty: run finished).

        >>> reference_workflow().remaining_required(completed={"triage", "plan"})
        ['classify', 'patch']
        """
        done = frozenset(completed)
        return [s for s in self._order if self.steps[s].required and s not in done]

    # ------------------------------------------------------------------------ checks

    def step_for(self, agent: str, tool: str, completed: Collection[str]) -> str:
        """The step an agent's tool call belongs to, when the caller did not name it.

        Candidates are the agent's steps that allow ``tool``. Exactly one not-completed
        candidate with its dependencies met is the answer; several are ambiguous (the
        caller must name the step). Otherwise the refusal says why: the agent has no
        step (``wrong_agent_for_step``), none of its steps allows the tool
        (``tool_not_allowed``), the candidates wait for other steps
        (``dependencies_incomplete``). If every candidate is completed, the one candidate
        is re-entered; several completed ones are refused (``step_already_completed``).

        >>> wf = reference_workflow()
        >>> wf.step_for("planner", "read_file", completed={"triage"})
        'plan'
        >>> wf.step_for("planner", "create_pull_request", completed={"triage"})
        Traceback (most recent call last):
        ajwt_core.errors.UnauthorizedClient: agent 'planner' may not call tool \
'create_pull_request' in workflow 'vuln-patch' v1: it may call only 'read_file' (in step 'plan')
        """
        own = [s for s in self._order if self.steps[s].agent == agent]
        if not own:
            raise UnauthorizedClient(
                Reason.WRONG_AGENT_FOR_STEP,
                f"agent {agent!r} has no step in workflow {self.id!r} v{self.version}",
            )
        candidates = [s for s in own if tool in self.steps[s].tools]
        if not candidates:
            allowed = sorted({t for s in own for t in self.steps[s].tools})
            raise UnauthorizedClient(
                Reason.TOOL_NOT_ALLOWED,
                f"agent {agent!r} may not call tool {tool!r} in workflow {self.id!r} "
                f"v{self.version}: it may call only {_names(allowed)} (in {_steps(own)})",
            )
        done = frozenset(completed)
        open_steps = [s for s in candidates if s not in done]
        ready = [s for s in open_steps if self._ancestors[s] <= done]
        if len(ready) == 1:
            return ready[0]
        if ready:
            raise InvalidGrant(
                Reason.AMBIGUOUS_STEP,
                f"tool {tool!r} of agent {agent!r} may belong to {_steps(ready)}; "
                "name the step explicitly",
            )
        if open_steps:
            missing = sorted({m for s in open_steps for m in self._ancestors[s] - done})
            raise InvalidGrant(
                Reason.DEPENDENCIES_INCOMPLETE,
                f"tool {tool!r} of agent {agent!r} belongs to {_steps(open_steps)}, "
                f"which cannot run yet: it waits for {_steps(missing)}",
            )
        if len(candidates) == 1:
            # Calling a tool again in the agent's one (completed) step re-enters it: a
            # supervisor re-listing, a worker retrying. Minting is still checked in full.
            return candidates[0]
        raise InvalidGrant(
            Reason.STEP_ALREADY_COMPLETED,
            f"every step in which agent {agent!r} may call {tool!r} ({_names(candidates)}) "
            "is already completed; name the step explicitly to call it again",
        )

    def check_step_call(
        self,
        step_id: str,
        agent: str,
        tool: str,
        completed: Collection[str],
        approvals: Collection[str] = (),
    ) -> Step:
        """The workflow checks of a mint (DESIGN §6.5), in order; returns the step.

        Step exists (``unknown_step``) → the step's agent is the caller
        (``wrong_agent_for_step``) → the tool is allowed (``tool_not_allowed``) → every
        step before it is completed (``dependencies_incomplete``) → its approval is
        granted if it needs one (``approval_required``). ``approvals`` holds the ids of
        the steps approved in the run.

        A step that is already completed may still be minted for: an agent can make
        further calls within its step, and whether a completed step (or the run) is
        closed is the IdP's decision, not the workflow's.

        >>> wf = reference_workflow()
        >>> wf.check_step_call("plan", "planner", "read_file", completed={"triage"}).scopes
        ['repo:read']
        >>> wf.check_step_call("plan", "patcher", "read_file", completed={"triage"})
        Traceback (most recent call last):
        ajwt_core.errors.UnauthorizedClient: step 'plan' belongs to agent 'planner', not 'patcher'
        """
        step = self.step(step_id)
        if step.agent != agent:
            raise UnauthorizedClient(
                Reason.WRONG_AGENT_FOR_STEP,
                f"step {step_id!r} belongs to agent {step.agent!r}, not {agent!r}",
            )
        if tool not in step.tools:
            raise UnauthorizedClient(
                Reason.TOOL_NOT_ALLOWED,
                f"step {step_id!r} does not allow tool {tool!r}; it allows "
                f"{_names(sorted(step.tools))}",
            )
        missing = self.missing_dependencies(step_id, completed)
        if missing:
            raise InvalidGrant(
                Reason.DEPENDENCIES_INCOMPLETE,
                f"step {step_id!r} cannot run yet: it waits for {_steps(missing)}",
            )
        if step.approval and step_id not in approvals:
            raise AccessDenied(
                Reason.APPROVAL_REQUIRED,
                f"step {step_id!r} needs an approval before it can run, and none is recorded",
            )
        return step

    def check_delegation_edge(self, from_step: str, to_step: str, delegate_agent: str) -> None:
        """A hand-off must follow the DAG (DESIGN §5.2, T11), or ``InvalidGrant``.

        ``to_step`` must be a step reachable from ``from_step`` through ``after`` edges
        (``delegation_not_along_workflow``, also for unknown steps) and its agent must be
        the delegate (``delegate_mismatch``). A supervisor may so hand each later step to
        its worker, and a chain of agents may hand on one step at a time.

        >>> wf = reference_workflow()
        >>> wf.check_delegation_edge("triage", "patch", "patcher")
        >>> wf.check_delegation_edge("patch", "plan", "planner")
        Traceback (most recent call last):
        ajwt_core.errors.InvalidGrant: step 'plan' does not come after step 'patch' in workflow \
'vuln-patch' v1, so 'patch' cannot delegate it
        """
        for end, step_id in (("from_step", from_step), ("to_step", to_step)):
            if step_id not in self.steps:
                raise InvalidGrant(
                    Reason.DELEGATION_NOT_ALONG_WORKFLOW,
                    f"the delegation's {end} {step_id!r} is not a step of workflow "
                    f"{self.id!r} v{self.version}",
                )
        if from_step not in self._ancestors[to_step]:
            raise InvalidGrant(
                Reason.DELEGATION_NOT_ALONG_WORKFLOW,
                f"step {to_step!r} does not come after step {from_step!r} in workflow "
                f"{self.id!r} v{self.version}, so {from_step!r} cannot delegate it",
            )
        expected = self.steps[to_step].agent
        if expected != delegate_agent:
            raise InvalidGrant(
                Reason.DELEGATE_MISMATCH,
                f"step {to_step!r} belongs to agent {expected!r}, so it cannot be delegated "
                f"to {delegate_agent!r}",
            )


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def reference_workflow() -> Workflow:
    """The reference workflow ``vuln-patch`` v1 of DESIGN §11 (a fresh instance).

    Used by the tests, the examples of every adapter and the demo.

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
