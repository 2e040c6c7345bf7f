"""A deterministic, offline AutoGen model client that plays a script.

Each call to ``create`` returns the next turn of the script: a text answer, or a list
of real function calls (tools and ``transfer_to_<agent>`` handoffs) that the
``AssistantAgent`` loop executes exactly as it would a real model's. Its component
config is only the model's identity (``model``, ``temperature``): the script is the
model's output, not its configuration, so the agent's manifest does not depend on it.

>>> import asyncio
>>> client = ScriptedChatCompletionClient([[call("list_repos")], "Done."])
>>> first = asyncio.run(client.create([]))
>>> first.finish_reason, first.content[0].name
('function_calls', 'list_repos')
>>> asyncio.run(client.create([])).content
'Done.'
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal, Self

from autogen_core import CancellationToken, Component, FunctionCall
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelFamily,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

Turn = str | Sequence[FunctionCall]

MODEL_INFO = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=False,
    family=ModelFamily.UNKNOWN,
    structured_output=False,
)


def call(name: str, **arguments: Any) -> FunctionCall:
    """One scripted function call (its id is assigned when the turn is played)."""
    return FunctionCall(id="", name=name, arguments=json.dumps(arguments, sort_keys=True))


class ScriptedModelConfig(BaseModel):
    model: str
    temperature: float = 0.0


class ScriptedChatCompletionClient(ChatCompletionClient, Component[ScriptedModelConfig]):
    """Plays ``script`` one turn per ``create`` call; raises when it runs out."""

    component_type = "model"
    component_config_schema = ScriptedModelConfig
    component_provider_override = (
        "ajwt_demo.scenarios.autogen.scripted.ScriptedChatCompletionClient"
    )

    def __init__(
        self,
        script: Sequence[Turn],
        *,
        model: str = "scripted-patcher-model",
        temperature: float = 0.0,
    ) -> None:
        self.script = list(script)
        self.model = model
        self.temperature = temperature
        self.offered: list[list[str]] = []  # the tool names offered at each call
        self._played = 0
        self._ids = itertools.count(1)
        self._usage = RequestUsage(prompt_tokens=0, completion_tokens=0)

    @property
    def remaining(self) -> int:
        return len(self.script) - self._played

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        self.offered.append([t.name if isinstance(t, Tool) else t["name"] for t in tools])
        if self._played >= len(self.script):
            raise RuntimeError(f"the script of {self.model!r} has no turn {self._played + 1}")
        turn = self.script[self._played]
        self._played += 1
        if isinstance(turn, str):
            return CreateResult(finish_reason="stop", content=turn, usage=self._usage, cached=False)
        calls = [
            FunctionCall(id=f"call-{next(self._ids)}", name=c.name, arguments=c.arguments)
            for c in turn
        ]
        return CreateResult(
            finish_reason="function_calls", content=calls, usage=self._usage, cached=False
        )

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        yield await self.create(messages, tools=tools)

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._usage

    def total_usage(self) -> RequestUsage:
        return self._usage

    def count_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()
    ) -> int:
        return 0

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()
    ) -> int:
        return 1_000_000

    @property
    def capabilities(self) -> ModelInfo:
        return MODEL_INFO

    @property
    def model_info(self) -> ModelInfo:
        return MODEL_INFO

    def _to_config(self) -> ScriptedModelConfig:
        return ScriptedModelConfig(model=self.model, temperature=self.temperature)

    @classmethod
    def _from_config(cls, config: ScriptedModelConfig) -> Self:
        return cls([], model=config.model, temperature=config.temperature)
