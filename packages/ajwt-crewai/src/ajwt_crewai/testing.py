"""An offline, deterministic CrewAI LLM that makes real tool calls: for tests and demos.

:class:`ScriptedLLM` plays, for each agent role (or ``"role: task description"`` for an
agent with several tasks), a list of turns: a turn is a list of tool calls (CrewAI
executes them through its real agent loop, hooks and tools) or a final answer. The turn
played is the number of tool-call rounds already in the conversation, so a script needs
no state and the same crew always runs the same way.

The script plays whatever the tools answered: after a refusal it still gives its final
answer ("Paid."), so a kickoff's result text may claim a success A-JWT refused. Judge a
scripted run by ``binding.refusals`` (or ``secure_crew(..., strict=True)``, which aborts
the kickoff), not by its result text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from crewai.llms.base_llm import BaseLLM
from pydantic import Field, PrivateAttr

__all__ = ["ScriptedLLM", "Turn"]

#: A turn: tool calls ``(tool name, arguments)`` made together, or a final answer.
Turn = list[tuple[str, dict[str, Any]]] | str


class ScriptedLLM(BaseLLM):
    """A ``BaseLLM`` that answers from a script instead of a model.

    >>> llm = ScriptedLLM(model="scripted", turns={"Planner": [[("read_file", {"path": "a"})]]})
    >>> llm.call([{"role": "user", "content": "go"}], from_agent=None) == "Done."
    True
    >>> class Planner:
    ...     role = "Planner"
    >>> llm.call([{"role": "user", "content": "go"}], from_agent=Planner())[0]["function"]
    {'name': 'read_file', 'arguments': '{"path": "a"}'}
    """

    turns: dict[str, list[Turn]] = Field(default_factory=dict)
    final_answer: str = "Done."
    _conversations: dict[str, list[Any]] = PrivateAttr(default_factory=dict)

    def tool_results(self, role: str) -> list[str]:
        """What the tools answered ``role`` in its latest conversation (errors and
        refusals included), as the model saw it."""
        messages = self._conversations.get(role, [])
        return [
            str(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "tool"
        ]

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> str | Any:
        role = str(getattr(from_agent, "role", ""))
        if isinstance(messages, list):
            self._conversations[role] = list(messages)
        script = self._script(role, from_task)
        rounds = _tool_rounds(messages)
        if rounds >= len(script):
            return self.final_answer
        turn = script[rounds]
        if isinstance(turn, str):
            return turn
        slug = re.sub(r"[^a-z0-9]+", "_", role.lower()).strip("_") or "agent"
        return [
            {
                "id": f"call_{slug}_{rounds}_{index}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for index, (name, arguments) in enumerate(turn)
        ]

    def _script(self, role: str, task: Any) -> list[Turn]:
        """The turns for ``role`` on ``task``: keyed by the task's description as it
        runs (its ``{inputs}`` filled in) or as written, else by the role alone."""
        descriptions = [
            str(d)
            for d in (
                getattr(task, "description", None),
                getattr(task, "_original_description", None),
            )
            if d
        ]
        for description in descriptions:
            if f"{role}: {description}" in self.turns:
                return self.turns[f"{role}: {description}"]
        if role in self.turns:
            return self.turns[role]
        keyed = [key for key in self.turns if key.startswith(f"{role}: ")]
        if keyed and descriptions:
            # Answering "Done." here made a typo in a key a silent change of the run.
            others = ", ".join(map(repr, keyed))
            raise LookupError(
                f"ScriptedLLM has scripts for {role!r} on other tasks ({others}) "
                f"but none for {descriptions[0]!r}: key it '{role}: <that description>', or "
                f"add a script keyed {role!r} alone for its other tasks"
            )
        return []

    async def acall(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> str | Any:
        return self.call(
            messages, tools, callbacks, available_functions, from_task, from_agent, response_model
        )

    def supports_function_calling(self) -> bool:
        return True

    def supports_stop_words(self) -> bool:
        return False

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        # The base class logs a warning on every estimate; a script has no tokenizer.
        return len(json.dumps(messages, default=str)) // 4


def _tool_rounds(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(
        1
        for m in messages
        if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls")
    )
