"""The manifest of a CrewAI agent (DESIGN §3): what its checksum is computed from.

A CrewAI agent is steered by its ``role``, ``goal`` and ``backstory``, its tools and its
LLM. They map onto the manifest as follows:

- ``prompt.template`` is the backstory followed by the goal, one per line (an empty one
  drops out when the template is normalised). ``{name}`` placeholders, which CrewAI
  fills from ``crew.kickoff(inputs=…)``, are the template's ``variables``; any other
  brace is literal text.
- The ``role`` is the agent's *name*: the adapter maps it to the workflow agent id
  (``secure_crew(crew, shim, {"Security supervisor": "supervisor", …})``) every time
  the agent calls a tool, so an agent whose role changes is no longer that agent.
- ``tools`` are the agent's own tools (not the delegation tools CrewAI adds at run
  time: delegation is governed by the workflow and signed hand-offs, DESIGN §5.2):
  name, description (the docstring for ``@tool``) and the JSON schema of the argument
  model, with pydantic's generated ``title`` annotations left out.
- ``config`` is the LLM configuration: the model and the generation settings that are
  set, secrets stripped; and, when the agent sets them, its ``system_template``,
  ``prompt_template`` and ``response_template`` (under ``"templates"``), which are part
  of what the model is told.

CrewAI rewrites ``role``, ``goal`` and ``backstory`` in place when it fills the inputs
(keeping the templates in private ``_original_*`` attributes). The template is hashed,
and the live text must be that template filled in; a live text that is not (someone
edited it after kickoff) is hashed as it is, so its checksum no longer matches the
registration (threats T4/T5).
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.llms.base_llm import BaseLLM
from crewai.tools.agent_tools.base_agent_tools import BaseAgentTool
from crewai.tools.base_tool import BaseTool
from pydantic import BaseModel

from ajwt_core.checksum import AgentManifest, PromptSpec, ToolSpec, render_prompt, strip_secrets

__all__ = [
    "TEMPLATE_FIELDS",
    "CrewAIPrompt",
    "agent_prompt",
    "agent_templates",
    "default_agent_id",
    "describe_change",
    "llm_config",
    "manifest_from_crewai",
    "role_template",
    "tool_spec",
]

# The placeholders CrewAI fills (``interpolate_only``), restricted to Python identifiers
# because manifest variables must be identifiers.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# BaseLLM settings that shape the model's answers; transport, provider and key fields
# are left out (the provider follows from the model name, the key is a secret).
_LLM_SETTINGS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "base_url",
)
#: The CrewAI ``Agent`` fields that wrap the prompt the model is sent.
TEMPLATE_FIELDS = ("system_template", "prompt_template", "response_template")
# Keys of a JSON schema whose value is a schema, a list of schemas or a map of them.
_SCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "propertyNames", "if")
_SCHEMA_LIST_KEYS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions")


@dataclass(frozen=True)
class CrewAIPrompt:
    """An agent's prompt template as hashed, and the input values CrewAI filled into it.

    ``values`` is empty before kickoff; ``tampered`` says that the live text is not the
    template filled in (so ``template`` is the live text, escaped, without variables).
    """

    template: str
    variables: list[str]
    values: dict[str, str] = field(default_factory=dict)
    tampered: bool = False

    @property
    def input_digest(self) -> str | None:
        """``intent.input_digest`` for the token: the digest of the filled-in values."""
        if not self.values:
            return None
        return render_prompt(self.template, self.variables, self.values).input_digest


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _to_format_syntax(template: str) -> str:
    """CrewAI's template syntax as ``str.format`` syntax: other braces become literal."""
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(_escape(template[position : match.start()]))
        parts.append(match.group(0))
        position = match.end()
    parts.append(_escape(template[position:]))
    return "".join(parts)


def _filled_values(template: str, live: str) -> dict[str, str] | None:
    """The values that turn ``template`` into ``live`` the way CrewAI fills inputs, or
    ``None`` if ``live`` is not the template filled in."""
    if live == template:
        return {}
    pattern: list[str] = []
    seen: set[str] = set()
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        pattern.append(re.escape(template[position : match.start()]))
        name = match.group(1)
        pattern.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        position = match.end()
    pattern.append(re.escape(template[position:]))
    found = re.fullmatch("".join(pattern), live, re.DOTALL)
    return None if found is None else found.groupdict()


def _template_and_live(agent: BaseAgent) -> tuple[str, str]:
    original = [agent._original_backstory, agent._original_goal]
    live = [agent.backstory or "", agent.goal or ""]
    template = [o if o is not None else text for o, text in zip(original, live, strict=True)]
    return "\n".join(template), "\n".join(live)


def agent_prompt(agent: BaseAgent) -> CrewAIPrompt:
    """The agent's prompt template (backstory, then goal) and its filled-in inputs.

    >>> from crewai import Agent
    >>> agent = Agent(role="Planner", backstory="You plan for {org}.",
    ...               goal="Answer as { json }.", llm="gpt-4o")
    >>> agent_prompt(agent).template, agent_prompt(agent).variables
    ('You plan for {org}.\\nAnswer as {{ json }}.', ['org'])
    """
    template, live = _template_and_live(agent)
    values = _filled_values(template, live)
    if values is None:
        return CrewAIPrompt(template=_escape(live), variables=[], tampered=True)
    variables = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)})
    return CrewAIPrompt(template=_to_format_syntax(template), variables=variables, values=values)


def role_template(agent: BaseAgent) -> str | None:
    """The role the agent was created with, or ``None`` if its live role is not that
    role filled in (the role was changed: the agent is no longer the registered one)."""
    template = agent._original_role if agent._original_role is not None else agent.role
    return template if _filled_values(template, agent.role) is not None else None


def default_agent_id(role: str) -> str:
    """The agent id used when no mapping is given: the role in lower case, words joined
    by ``-`` (``"Security supervisor"`` → ``"security-supervisor"``).

    >>> default_agent_id("Security  Supervisor (EU)")
    'security-supervisor-eu'
    """
    return "-".join(re.findall(r"[a-z0-9]+", role.lower())) or "agent"


def _without_titles(schema: Any) -> Any:
    """A JSON schema without ``title`` annotations, at every schema position (a property
    *named* ``title`` is kept)."""
    if not isinstance(schema, Mapping):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in _SCHEMA_KEYS:
            cleaned[key] = _without_titles(value)
        elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
            cleaned[key] = [_without_titles(item) for item in value]
        elif key in _SCHEMA_MAP_KEYS and isinstance(value, Mapping):
            cleaned[key] = {name: _without_titles(item) for name, item in value.items()}
        else:
            cleaned[key] = value
    return cleaned


# Each argument class's parameters, with the core schema they were built from: pydantic
# builds a JSON schema anew on every call (about 0.3 ms), and the shim reads the live
# agent's manifest before every mint, hand-off, completion and tool call. A class
# rebuilt in place (``model_rebuild``) gets a new core schema, and new parameters.
_schemas: weakref.WeakKeyDictionary[type[BaseModel], tuple[object, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
_schemas_lock = threading.Lock()


def _parameters(args_schema: type[BaseModel] | None) -> dict[str, Any]:
    if args_schema is None:
        return {"type": "object", "properties": {}, "required": []}
    core = args_schema.__dict__.get("__pydantic_core_schema__")
    with _schemas_lock:
        held = _schemas.get(args_schema)
    if held is None or held[0] is not core:
        schema: dict[str, Any] = _without_titles(args_schema.model_json_schema())
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        held = (core, schema)
        with _schemas_lock:
            _schemas[args_schema] = held
    return copy.deepcopy(held[1])


def tool_spec(tool: BaseTool) -> ToolSpec:
    """The manifest entry of a CrewAI tool: name, description and argument schema.

    >>> from crewai.tools import tool
    >>> @tool("query_advisories")
    ... def query_advisories(package: str) -> str:
    ...     '''Look up security advisories for a package.'''
    ...     return package
    >>> tool_spec(query_advisories).parameters
    {'properties': {'package': {'type': 'string'}}, 'required': ['package'], 'type': 'object'}
    """
    return ToolSpec(
        name=tool.name,
        description=inspect.cleandoc(tool.description or ""),
        parameters=_parameters(tool.args_schema),
    )


def _json_only(value: Any) -> Any:
    """``value`` with anything JSON cannot carry left out (clients, callables…)."""
    if isinstance(value, Mapping):
        kept = {str(k): _json_only(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not _DROP}
    if isinstance(value, list | tuple):
        return [item for item in (_json_only(v) for v in value) if item is not _DROP]
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _DROP
    return value


_DROP = object()


def llm_config(llm: object) -> dict[str, Any]:
    """The manifest ``config`` of an agent's LLM: the model and the generation settings
    that are set (temperature, top_p, max_tokens…, stop words, extra parameters),
    without secrets (``api_key`` and anything named like a secret are left out).

    >>> from crewai import LLM
    >>> llm_config(LLM(model="gpt-4o", temperature=0.2, api_key="sk-not-in-the-manifest"))
    {'model': 'gpt-4o', 'temperature': 0.2}
    """
    if llm is None:
        return {}
    if isinstance(llm, str):
        return {"model": llm}
    if not isinstance(llm, BaseLLM):
        model = getattr(llm, "model", None) or getattr(llm, "model_name", None)
        return {"model": str(model) if model else type(llm).__qualname__}
    config: dict[str, Any] = {"model": llm.model}
    for name in _LLM_SETTINGS:
        value = getattr(llm, name, None)
        if value is not None:
            config[name] = value
    if llm.stop:
        config["stop"] = list(llm.stop)
    extra = _json_only(dict(llm.additional_params or {}))
    if extra:
        config["additional_params"] = extra
    return strip_secrets(config)


def manifest_from_crewai(agent: BaseAgent, agent_id: str | None = None) -> AgentManifest:
    """The A-JWT manifest of a CrewAI agent (see the module docstring for the mapping).

    ``agent_id`` is the workflow's id for the agent (default: :func:`default_agent_id`
    of its role).

    >>> from crewai import Agent
    >>> from ajwt_crewai.testing import ScriptedLLM
    >>> planner = Agent(role="Dependency planner", backstory="",
    ...                 goal="You plan the fix: read the dependency manifest of each repository.",
    ...                 llm=ScriptedLLM(model="scripted-patcher-model", temperature=0.0))
    >>> manifest = manifest_from_crewai(planner, "planner")
    >>> manifest.prompt.template, manifest.config
    ('\\nYou plan the fix: read the dependency manifest of each repository.', \
{'model': 'scripted-patcher-model', 'temperature': 0.0})
    """
    prompt = agent_prompt(agent)
    the_id = agent_id if agent_id is not None else default_agent_id(agent.role)
    config = llm_config(agent.llm)
    templates = agent_templates(agent)
    if templates:
        config["templates"] = templates
    return AgentManifest(
        agent_id=the_id,
        prompt=PromptSpec(template=prompt.template, variables=prompt.variables),
        tools=[
            tool_spec(tool)
            for tool in agent.tools or []
            if not isinstance(tool, BaseAgentTool)  # delegation tools: see the module doc
        ],
        config=config,
    )


def agent_templates(agent: BaseAgent) -> dict[str, str]:
    """The prompt templates the agent sets (``system_template``, ``prompt_template``,
    ``response_template``); the ones left unset are CrewAI's defaults and drop out.

    >>> from crewai import Agent
    >>> agent = Agent(role="Planner", backstory="", goal="Plan.", llm="gpt-4o",
    ...               system_template="{{ .System }} Be brief.")
    >>> agent_templates(agent)
    {'system_template': '{{ .System }} Be brief.'}
    """
    found: dict[str, str] = {}
    for name in TEMPLATE_FIELDS:
        value = getattr(agent, name, None)
        if isinstance(value, str) and value:
            found[name] = value
    return found


def describe_change(registered: AgentManifest, live: AgentManifest, agent: BaseAgent) -> str:
    """What differs between the manifest an agent was registered with and the live one,
    in words (for a ``checksum_mismatch``); empty if nothing the adapter reads differs.

    A goal or backstory that is the registered template filled in by an earlier kickoff
    is named as such: ``crew.copy()`` (which ``kickoff_for_each`` uses) keeps the text a
    previous kickoff filled in, so the copy's agent would be told that run's inputs.
    """
    changes: list[str] = []
    if registered.prompt != live.prompt:
        template = registered.prompt.template.replace("{{", "{").replace("}}", "}")
        live_text = "\n".join([agent.backstory or "", agent.goal or ""])
        if registered.prompt.variables and _filled_values(template, live_text):
            changes.append(
                "its goal/backstory is the text an earlier kickoff filled in "
                f"({template!r} filled with other inputs): CrewAI's crew.copy(), which "
                "kickoff_for_each uses, keeps that text, so this copy would be told an earlier "
                "run's inputs; build a new crew per input (or kickoff the original crew)"
            )
        else:
            changes.append("its goal or backstory changed")
    before, after = {t.name: t for t in registered.tools}, {t.name: t for t in live.tools}
    added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    if added:
        changes.append(f"tool(s) {', '.join(added)} were added")
    if removed:
        changes.append(f"tool(s) {', '.join(removed)} were removed")
    if any(before[n] != after[n] for n in before.keys() & after.keys()):
        changes.append("a tool's description or arguments changed")
    old_templates = registered.config.get("templates", {})
    new_templates = live.config.get("templates", {})
    for name in TEMPLATE_FIELDS:
        if old_templates.get(name) != new_templates.get(name):
            changes.append(f"its {name} changed")
    old_llm = {k: v for k, v in registered.config.items() if k != "templates"}
    new_llm = {k: v for k, v in live.config.items() if k != "templates"}
    if old_llm != new_llm:
        keys = sorted(
            k for k in old_llm.keys() | new_llm.keys() if old_llm.get(k) != new_llm.get(k)
        )
        changes.append(f"its LLM settings changed ({', '.join(keys)})")
    return "; ".join(changes)
