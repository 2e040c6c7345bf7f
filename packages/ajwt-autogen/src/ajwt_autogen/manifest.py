"""AutoGen agents as A-JWT manifests (DESIGN §3).

:func:`manifest_from_autogen` describes an ``AssistantAgent`` by what its model is
given and what it can do:

- **prompt**: the system message. AutoGen sends it verbatim, so braces in it are
  literal text; an application that fills a template (``"... for {org}"``) passes the
  template as ``prompt`` and its ``prompt_values``: the manifest then holds the template,
  and the agent's live system message must be exactly that template filled with those
  values, else the manifest describes the live text and its checksum no longer matches
  the registration (threat T5).
- **tools**: every tool the model is offered, as the model sees it (name, description,
  JSON schema), *including the handoff tools* (``transfer_to_<target>``): a handoff
  is a capability like any tool. What AutoGen derives from a parameter's name alone is
  left out (the title ``"Max Items"`` of ``max_items``, a description equal to the name,
  the ``additionalProperties: false`` it adds to every tool), so that a tool gives the
  same manifest in every framework.
- **config**: the model client's configuration (its component config) without secrets,
  plus ``handoffs``: for each handoff its tool name, target and the message it gives
  the next agent, which the tool schema does not show; plus ``model_context``: the
  model context's class and configuration when it is not the default (an
  ``UnboundedChatCompletionContext`` with no initial messages), since its initial
  messages are text the model is told before anything else. An agent without handoffs
  has no ``handoffs`` key.

The same agent gives the same manifest, hence the same checksum, every time.

>>> from autogen_agentchat.agents import AssistantAgent
>>> from autogen_ext.models.replay import ReplayChatCompletionClient
>>> model = ReplayChatCompletionClient([], model_info={"vision": False,
...     "function_calling": True, "json_output": False, "family": "unknown",
...     "structured_output": False})
>>> def read_file(repo: str, path: str) -> str:
...     return ""
>>> agent = AssistantAgent("planner", model, tools=[read_file], system_message="Plan.",
...                        handoffs=["classifier"])
>>> manifest = manifest_from_autogen(agent)
>>> [tool.name for tool in manifest.tools]
['read_file', 'transfer_to_classifier']
>>> manifest.tools[0].parameters
{'type': 'object', 'properties': {'repo': {'type': 'string'}, 'path': {'type': 'string'}}, \
'required': ['repo', 'path']}
>>> manifest.config["handoffs"][0]["target"]
'classifier'
>>> manifest.checksum() == manifest_from_autogen(agent).checksum()
True
"""

from __future__ import annotations

import collections
import copy
import threading
from collections.abc import Mapping
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_core.model_context import ChatCompletionContext, UnboundedChatCompletionContext
from autogen_core.models import ChatCompletionClient
from autogen_core.tools import BaseTool, ToolSchema
from pydantic_core import to_jsonable_python

from ajwt_autogen import _internals
from ajwt_core.checksum import (
    AgentManifest,
    PromptSpec,
    ToolSpec,
    strip_secrets,
    tool_source_digest,
)

__all__ = ["manifest_from_autogen", "model_client_config", "model_context_config", "tool_spec"]


def manifest_from_autogen(
    agent: AssistantAgent,
    *,
    agent_id: str | None = None,
    prompt: PromptSpec | None = None,
    prompt_values: Mapping[str, str] | None = None,
    deep: bool = False,
) -> AgentManifest:
    """The manifest of an ``AssistantAgent`` (see the module docstring for what it holds).

    ``agent_id`` is the agent's id in the workflow (default: ``agent.name``).
    ``prompt`` / ``prompt_values``: the template the system message was filled from, and
    its values. ``deep=True`` adds each tool's source digest (DESIGN §3, deep mode).
    Raises ``TypeError`` for an agent that is not an ``AssistantAgent`` or whose tools
    come from a workbench that lists them asynchronously (an MCP server).
    """
    if not isinstance(agent, AssistantAgent):
        raise TypeError(f"expected an AssistantAgent, got {type(agent).__name__}")
    tools = [_tool_spec_of(schema, objects, deep) for schema, objects in _offered_tools(agent)]
    config = model_client_config(_internals.model_client(agent))
    context = model_context_config(_internals.model_context(agent))
    if context is not None:
        config["model_context"] = context
    handoffs = _internals.handoffs(agent)
    if handoffs:
        config["handoffs"] = [
            {"name": name, "target": handoff.target, "message": handoff.message}
            for name, handoff in sorted(handoffs.items())
        ]
    return AgentManifest(
        agent_id=agent_id or agent.name,
        prompt=_prompt_of(_internals.system_message(agent), prompt, prompt_values),
        tools=tools,
        config=config,
    )


def model_client_config(client: ChatCompletionClient) -> dict[str, Any]:
    """A model client's configuration as JSON, without secrets.

    The client's component config (``dump_component().config``: model, temperature,
    base URL…) through :func:`ajwt_core.checksum.strip_secrets`. A client that cannot be
    dumped is described by its class.

    >>> from autogen_ext.models.replay import ReplayChatCompletionClient
    >>> model_client_config(ReplayChatCompletionClient(["Done."]))["chat_completions"]
    ['Done.']

    An ``OpenAIChatCompletionClient(model="gpt-4o", api_key=..., temperature=0)``
    gives ``{"model": "gpt-4o", "temperature": 0}``: its ``api_key`` is dropped.
    """
    try:
        config: dict[str, Any] = dict(client.dump_component().config)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        kind = type(client)
        config = {"model_client": f"{kind.__module__}.{kind.__qualname__}"}
    jsonable: dict[str, Any] = to_jsonable_python(strip_secrets(config))
    return jsonable


def model_context_config(context: ChatCompletionContext) -> dict[str, Any] | None:
    """A model context as the manifest describes it: ``None`` for the default (an
    ``UnboundedChatCompletionContext`` with no initial messages), else its class and its
    component config (initial messages, buffer size...).

    >>> from autogen_core.model_context import BufferedChatCompletionContext
    >>> from autogen_core.models import SystemMessage
    >>> context = BufferedChatCompletionContext(buffer_size=5,
    ...     initial_messages=[SystemMessage(content="Never refund more than 100 EUR.")])
    >>> model_context_config(context)["config"]["initial_messages"][0]["content"]
    'Never refund more than 100 EUR.'
    >>> model_context_config(UnboundedChatCompletionContext()) is None
    True
    """
    kind = type(context)
    if kind is UnboundedChatCompletionContext and not getattr(context, "_initial_messages", None):
        return None
    try:
        component = context.dump_component()
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return {"provider": f"{kind.__module__}.{kind.__qualname__}"}
    described: dict[str, Any] = to_jsonable_python(
        {"provider": component.provider, "config": strip_secrets(dict(component.config))}
    )
    return described


def tool_spec(tool: BaseTool[Any, Any], *, deep: bool = False) -> ToolSpec:
    """One AutoGen tool as the manifest describes it (name, description, JSON schema).

    >>> from autogen_core.tools import FunctionTool
    >>> def query_advisories(package: str) -> str:
    ...     return ""
    >>> tool_spec(FunctionTool(query_advisories, description="Look up advisories.")).parameters
    {'type': 'object', 'properties': {'package': {'type': 'string'}}, 'required': ['package']}
    """
    return _tool_spec_of(tool.schema, [tool], deep)


# --------------------------------------------------------------------------- helpers


def _prompt_of(
    system: str, prompt: PromptSpec | None, values: Mapping[str, str] | None
) -> PromptSpec:
    if prompt is not None and prompt.render(values or {}).text == system:
        return prompt
    # AutoGen never fills placeholders: the text is literal, braces included. A system
    # message that is not the declared template filled with its values is described as
    # it is, so its checksum differs from the registered template's (T5).
    return PromptSpec(template=system.replace("{", "{{").replace("}", "}}"))


def _offered_tools(
    agent: AssistantAgent,
) -> list[tuple[ToolSchema, list[BaseTool[Any, Any]]]]:
    """Each tool schema the model is offered, with the tool objects behind it."""
    offered: list[tuple[ToolSchema, list[BaseTool[Any, Any]]]] = []
    for bench in _internals.workbenches(agent):
        static = _internals.static_tools(bench)
        by_name: dict[str, BaseTool[Any, Any]] = {}
        if static is not None:
            tools, overrides = static
            for tool in tools:
                override = overrides.get(tool.name)
                visible = getattr(override, "name", None) or tool.name
                by_name[visible] = tool
        for schema in _internals.listed_tools(bench):
            found = by_name.get(schema["name"])
            offered.append((schema, [found] if found is not None else []))
    for tool in _internals.handoff_tools(agent):
        offered.append((_internals.tool_schema(tool), [tool]))
    return offered


# ToolSpecs of the schemas _internals.tool_schema keeps, by the schema object (held,
# so its id is not reused): validating a spec costs as much as the rest of a manifest.
_specs: collections.OrderedDict[int, tuple[ToolSchema, ToolSpec]] = collections.OrderedDict()
_specs_lock = threading.Lock()
_SPECS_KEPT = 1024


def _tool_spec_of(schema: ToolSchema, objects: list[BaseTool[Any, Any]], deep: bool) -> ToolSpec:
    if not deep:
        with _specs_lock:
            held = _specs.get(id(schema))
        if held is not None and held[0] is schema:
            return held[1]
        spec = _make_tool_spec(schema, objects, deep)
        with _specs_lock:
            _specs[id(schema)] = (schema, spec)
            _specs.move_to_end(id(schema))
            if len(_specs) > _SPECS_KEPT:
                _specs.popitem(last=False)
        return spec
    return _make_tool_spec(schema, objects, deep)


def _make_tool_spec(schema: ToolSchema, objects: list[BaseTool[Any, Any]], deep: bool) -> ToolSpec:
    source = None
    if deep:
        if not objects:
            raise TypeError(f"deep mode cannot read the code of tool {schema['name']!r}")
        source = tool_source_digest(_internals.tool_function(_unwrapped(objects[0])))
    return ToolSpec(
        name=schema["name"],
        description=schema.get("description", ""),
        parameters=_parameters(schema.get("parameters")),
        source=source,
    )


def _unwrapped(tool: BaseTool[Any, Any]) -> BaseTool[Any, Any]:
    inner: BaseTool[Any, Any] | None = getattr(tool, "inner", None)
    return _unwrapped(inner) if isinstance(inner, BaseTool) else tool


def _default_title(name: str) -> str:
    # pydantic's GenerateJsonSchema.get_title_from_name
    return name.title().replace("_", " ").strip()


def _parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON schema without what AutoGen derives from parameter names alone."""
    schema: dict[str, Any] = copy.deepcopy(dict(parameters or {}))
    if schema.get("additionalProperties") is False:
        del schema["additionalProperties"]
    _drop_derived(schema)
    return schema


def _drop_derived(node: Any) -> None:
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, prop in properties.items():
                if not isinstance(prop, dict):
                    continue
                if prop.get("title") == _default_title(name):
                    del prop["title"]
                if prop.get("description") == name:
                    del prop["description"]
        for value in node.values():
            _drop_derived(value)
    elif isinstance(node, list):
        for item in node:
            _drop_derived(item)
