"""Agent manifests from LangChain objects (DESIGN §3): prompt, tools, model.

The adapter only *extracts*; :mod:`ajwt_core.checksum` decides what is hashed. The rules:

- **prompt**: a plain string or ``PromptTemplate`` is the template (f-string syntax);
  a ``ChatPromptTemplate`` is the text of its messages joined by newlines, system
  messages as they are and the others prefixed with their role (``"human: ..."``);
  ``MessagesPlaceholder`` slots carry the conversation and are left out. The
  variables are the template's input and partial variables (not the placeholders).
- **tools**: name, description and the JSON schema of the arguments exactly as
  LangChain sends it to the model (``convert_to_openai_tool``), with ``required``
  spelled out (``[]`` when nothing is). Hand-off tools (``transfer_to_<agent>``,
  ``metadata["__handoff_destination"]``) are routing, governed by the workflow and
  the signed delegation, so they are left out unless ``include_handoff_tools``.
- **config**: the model name (``model_name``/``model``/``model_id``/…) as ``model``
  and the generation parameters that are set (``temperature``, ``top_p``,
  ``max_tokens``, ``stop``, …, also ``model_kwargs`` and values bound with
  ``.bind(...)``), secrets removed. The class is left out unless ``include_class``,
  so the same logical agent has the same checksum in every framework.
"""

from __future__ import annotations

import collections
import functools
import json
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompts import (
    AIMessagePromptTemplate,
    BasePromptTemplate,
    ChatMessagePromptTemplate,
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    MessagesPlaceholder,
    PromptTemplate,
    SystemMessagePromptTemplate,
)
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.tools import BaseTool, StructuredTool, Tool
from langchain_core.tools import tool as as_tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from ajwt_core.checksum import (
    AgentManifest,
    PromptSpec,
    ToolSpec,
    strip_secrets,
    tool_source_digest,
)
from ajwt_core.errors import InvalidRequest, Reason
from ajwt_langchain._gate import HANDOFF_DESTINATION, HANDOFF_PREFIX

__all__ = [
    "MODEL_NAME_FIELDS",
    "MODEL_PARAMETERS",
    "is_handoff_tool",
    "manifest_from_langchain",
    "model_config",
    "prompt_spec",
    "tool_spec",
]

#: Attributes that name the model, first found wins (as LangChain's own tracing does).
MODEL_NAME_FIELDS = ("model_name", "model", "model_id", "deployment_name", "repo_id")
#: Generation parameters that change what the model does; recorded when set.
MODEL_PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_new_tokens",
    "n",
    "seed",
    "stop",
    "stop_sequences",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "reasoning_effort",
    "reasoning",
    "thinking",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
)

PromptLike = str | BasePromptTemplate[Any]
ToolLike = BaseTool | Callable[..., Any]


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(Reason.INVALID_MANIFEST, message)


# ------------------------------------------------------------------------- prompt


def _escape(text: str) -> str:
    # Text of a fixed message is literal: its braces are not placeholders.
    return text.replace("{", "{{").replace("}", "}}")


def _string_template(prompt: Any) -> str:
    if not isinstance(prompt, PromptTemplate):
        raise _invalid(f"cannot read the template of a {type(prompt).__name__} prompt")
    if prompt.template_format != "f-string":
        raise _invalid(
            f"prompt templates must use the f-string format, not {prompt.template_format!r}"
        )
    return prompt.template


def _role(message: Any) -> str:
    if isinstance(message, SystemMessagePromptTemplate):
        return "system"
    if isinstance(message, HumanMessagePromptTemplate):
        return "human"
    if isinstance(message, AIMessagePromptTemplate):
        return "ai"
    if isinstance(message, ChatMessagePromptTemplate):
        return message.role
    if isinstance(message, BaseMessage):
        return message.type
    raise _invalid(f"cannot read a {type(message).__name__} in a chat prompt")


def _message_text(message: Any) -> str:
    if isinstance(message, BaseMessage):
        if not isinstance(message.content, str):
            raise _invalid("chat prompt messages must have text content")
        return _escape(message.content)
    inner = getattr(message, "prompt", None)
    if isinstance(inner, list):
        return "\n".join(_string_template(part) for part in inner)
    return _string_template(inner)


def _chat_template(prompt: ChatPromptTemplate) -> str:
    parts = []
    for message in prompt.messages:
        if isinstance(message, MessagesPlaceholder):
            continue
        role, text = _role(message), _message_text(message)
        parts.append(text if role == "system" else f"{role}: {text}")
    return "\n".join(parts)


def prompt_spec(prompt: PromptLike) -> PromptSpec:
    """The prompt part of a manifest, from a string, ``PromptTemplate`` or chat prompt.

    >>> from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    >>> chat = ChatPromptTemplate.from_messages(
    ...     [("system", "Patch {org}'s repositories."), MessagesPlaceholder("messages")])
    >>> prompt_spec(chat) == prompt_spec("Patch {org}'s repositories.")
    True
    >>> prompt_spec(chat).variables
    ['org']
    """
    if isinstance(prompt, str):
        prompt = PromptTemplate.from_template(prompt)
    placeholders: set[str] = set()
    if isinstance(prompt, ChatPromptTemplate):
        template = _chat_template(prompt)
        placeholders = {
            m.variable_name for m in prompt.messages if isinstance(m, MessagesPlaceholder)
        }
    elif isinstance(prompt, PromptTemplate):
        template = _string_template(prompt)
    else:
        raise _invalid(f"cannot extract a prompt from a {type(prompt).__name__}")
    names = [*prompt.input_variables, *prompt.partial_variables]
    variables = sorted({name for name in names if name not in placeholders})
    return PromptSpec(template=template, variables=variables)


# -------------------------------------------------------------------------- tools


def _as_tool(tool: ToolLike) -> BaseTool:
    if isinstance(tool, BaseTool):
        return tool
    if callable(tool):
        # As ``@tool`` would make it; a function without a docstring has no description.
        made: BaseTool = (
            as_tool(tool) if tool.__doc__ else StructuredTool.from_function(tool, description="")
        )
        return made
    raise _invalid(f"cannot extract a tool from {type(tool).__name__}")


def is_handoff_tool(tool: ToolLike) -> bool:
    """Whether ``tool`` only hands control to another agent (``transfer_to_<agent>``).

    >>> from langchain_core.tools import tool
    >>> @tool
    ... def transfer_to_planner() -> str:
    ...     '''Hand over.'''
    ...     return "ok"
    >>> is_handoff_tool(transfer_to_planner)
    True
    """
    the_tool = _as_tool(tool)
    return HANDOFF_DESTINATION in (the_tool.metadata or {}) or the_tool.name.startswith(
        HANDOFF_PREFIX
    )


def _source_digest(tool: BaseTool) -> str:
    if isinstance(tool, StructuredTool):
        code = tool.func or tool.coroutine
        if code is None:  # pragma: no cover - StructuredTool requires one of them
            raise _invalid(f"tool {tool.name!r} has no code to digest")
        return tool_source_digest(code)
    return tool_source_digest(type(tool))


def tool_spec(tool: ToolLike, *, deep: bool = False) -> ToolSpec:
    """The manifest entry of one tool: name, description, argument schema.

    With ``deep`` the tool's code is digested too (``source``, DESIGN §3).

    >>> from langchain_core.tools import tool
    >>> @tool
    ... def query_advisories(package: str) -> str:
    ...     '''Look up security advisories for a package.'''
    ...     return "[]"
    >>> tool_spec(query_advisories).parameters
    {'properties': {'package': {'type': 'string'}}, 'required': ['package'], 'type': 'object'}
    """
    the_tool = _as_tool(tool)
    if deep:
        return _tool_spec(the_tool, deep=True)
    key, same = _made_from(the_tool)
    with _specs_lock:
        held = _specs.get(key)
        if held is not None and _is_same(held[0], same):
            _specs.move_to_end(key)
            return held[1]
    spec = _tool_spec(the_tool, deep=False)
    kept = tuple(weakref.ref(o) if isinstance(o, BaseTool) else o for o in same)
    with _specs_lock:
        _specs[key] = (kept, spec)
        _specs.move_to_end(key)
        while len(_specs) > _SPECS_KEPT:
            _specs.popitem(last=False)
    return spec


# Tool specs by what they were built from (see _made_from). The JSON schema and the
# spec's validation cost more than the rest of a manifest, which the shim reads before
# every mint, hand-off, completion and tool call; and apps often build their tools anew
# for each run (closing over a client), from the same argument schema.
_specs: collections.OrderedDict[Hashable, tuple[tuple[Any, ...], ToolSpec]] = (
    collections.OrderedDict()
)
_specs_lock = threading.Lock()
_SPECS_KEPT = 4096


def _schema_from_fields(cls: type[BaseTool]) -> bool:
    """Whether ``convert_to_openai_tool`` builds a tool of class ``cls`` from its class,
    name, description and argument schema alone: ``tool_call_schema`` and
    ``get_input_schema`` are LangChain's own (``StructuredTool``, ``@tool``, most
    subclasses), and it is not a ``Tool``, whose metadata may make it a custom tool."""
    return (
        cls.tool_call_schema is BaseTool.tool_call_schema
        and cls.get_input_schema is BaseTool.get_input_schema
        and not issubclass(cls, Tool)
    )


def _made_from(tool: BaseTool) -> tuple[Hashable, tuple[Any, ...]]:
    """What ``convert_to_openai_tool`` builds a tool's schema from, as a key, and the
    objects a cached spec must have been built from (compared by identity).

    The key is the tool's class, name, description and argument schema (a class with
    its core schema, which pydantic replaces when the class is rebuilt; a JSON-schema
    dict by its content). Two tools with the same key get the same schema when
    :func:`_schema_from_fields` holds for their class; any other tool's spec is its own
    (its weak reference tells a new tool at a reused id)."""
    args = tool.args_schema
    same: tuple[Any, ...] = ()
    if isinstance(args, dict):
        shape: Hashable = json.dumps(args, sort_keys=True, default=repr)
    else:
        core = getattr(args, "__dict__", {}).get("__pydantic_core_schema__")
        shape, same = (args, id(core)), (core,)
    key: tuple[Hashable, ...] = (type(tool), tool.name, tool.description, shape)
    if not _schema_from_fields(type(tool)):
        key, same = (*key, id(tool)), (*same, tool)
    return key, same


def _is_same(kept: tuple[Any, ...], same: tuple[Any, ...]) -> bool:
    return len(kept) == len(same) and all(
        (k() if isinstance(k, weakref.ReferenceType) else k) is s
        for k, s in zip(kept, same, strict=True)
    )


def _tool_spec(the_tool: BaseTool, *, deep: bool) -> ToolSpec:
    function = convert_to_openai_tool(the_tool)["function"]
    parameters = dict(function.get("parameters") or {"type": "object", "properties": {}})
    if parameters.get("type") == "object":
        parameters.setdefault("properties", {})
        parameters.setdefault("required", [])
    return ToolSpec(
        name=the_tool.name,
        description=the_tool.description or "",
        parameters=parameters,
        source=_source_digest(the_tool) if deep else None,
    )


# -------------------------------------------------------------------------- model


def _json(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, where) for v in value]
    raise _invalid(
        f"model setting {where!r} is a {type(value).__name__}, not JSON; pass config= "
        "to manifest_from_langchain to describe the model yourself"
    )


def _unbind(model: Any) -> tuple[Any, dict[str, Any]]:
    """The model under ``.bind(...)`` / ``.bind_tools(...)`` layers, and the bound values."""
    bound: dict[str, Any] = {}
    while isinstance(model, RunnableBinding):
        bound = {**model.kwargs, **bound}
        model = model.bound
    return model, bound


@functools.lru_cache(maxsize=4096)
def _class_has(cls: type, name: str) -> bool:
    return hasattr(cls, name)


def _setting(model: Any, name: str) -> Any:
    """``getattr(model, name, None)``, without pydantic's slow path for a name the model
    does not have (raising and catching ``AttributeError``, about 2 µs each: a manifest
    asks for some thirty names): a pydantic model's value is a field in its ``__dict__``,
    a class attribute (a property), or an extra field."""
    if not isinstance(model, BaseModel):
        return getattr(model, name, None)
    values = model.__dict__
    if name in values:
        return values[name]
    if _class_has(type(model), name):
        return getattr(model, name, None)
    extra = model.__pydantic_extra__
    return extra.get(name) if extra else None


def model_config(model: Any, *, include_class: bool = False) -> dict[str, Any]:
    """The model configuration of a manifest: name and generation parameters, no secrets.

    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> class Model(FakeListChatModel):
    ...     model: str = "gpt-4o"
    ...     temperature: float = 0.2
    ...     openai_api_key: str = "sk-..."
    >>> model_config(Model(responses=[]).bind(max_tokens=256))
    {'model': 'gpt-4o', 'temperature': 0.2, 'max_tokens': 256}
    """
    inner, bound = _unbind(model)
    config: dict[str, Any] = {}
    for field in MODEL_NAME_FIELDS:
        name = _setting(inner, field)
        if isinstance(name, str) and name:
            config["model"] = name
            break
    settings: dict[str, Any] = {}
    extra = _setting(inner, "model_kwargs")
    if isinstance(extra, Mapping):
        settings.update(extra)
    for field in MODEL_PARAMETERS:
        value = _setting(inner, field)
        if value is not None:
            settings[field] = value
    settings.update({k: v for k, v in bound.items() if k in MODEL_PARAMETERS or k == "model"})
    settings.pop("tools", None)
    for key, value in strip_secrets(settings).items():
        if value is not None:
            config[key] = _json(value, key)
    if include_class:
        config["class"] = f"{type(inner).__module__}.{type(inner).__qualname__}"
    return strip_secrets(config)


# ----------------------------------------------------------------------- manifest


def manifest_from_langchain(
    prompt: PromptLike,
    tools: Iterable[ToolLike],
    model: Runnable[Any, Any] | Any,
    *,
    agent_id: str,
    config: Mapping[str, Any] | None = None,
    deep: bool = False,
    include_class: bool = False,
    include_handoff_tools: bool = False,
) -> AgentManifest:
    """The :class:`~ajwt_core.checksum.AgentManifest` of a LangChain agent (rules above).

    ``config`` replaces the configuration read from ``model`` (secrets still
    removed). Register a *live* agent with a callable, so that the shim recomputes
    the checksum before every mint and a changed prompt, tool or model is refused:
    ``shim.register(lambda: manifest_from_langchain(prompt, tools, model,
    agent_id="planner"))``.

    >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
    >>> from langchain_core.tools import StructuredTool
    >>> class Model(FakeListChatModel):
    ...     model: str = "scripted-patcher-model"
    ...     temperature: float = 0.0
    >>> def list_repos() -> str:
    ...     return "[]"
    >>> tool = StructuredTool.from_function(list_repos, description=(
    ...     "List the organisation's repositories with their dependencies."))
    >>> manifest = manifest_from_langchain(
    ...     "You plan the fix: read the dependency manifest of each repository.",
    ...     [tool], Model(responses=[]), agent_id="planner")
    >>> manifest.tools[0].parameters
    {'properties': {}, 'type': 'object', 'required': []}
    """
    tool_list: Sequence[ToolLike] = list(tools)
    if not include_handoff_tools:
        tool_list = [t for t in tool_list if not is_handoff_tool(t)]
    the_config = (
        strip_secrets(dict(config))
        if config is not None
        else model_config(model, include_class=include_class)
    )
    return AgentManifest(
        agent_id=agent_id,
        prompt=prompt_spec(prompt),
        tools=[tool_spec(t, deep=deep) for t in tool_list],
        config=the_config,
    )
