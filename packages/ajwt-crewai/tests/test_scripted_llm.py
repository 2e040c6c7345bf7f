"""``ScriptedLLM``: which script plays for an agent's task, and a key that matches none."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from ajwt_crewai import testing
from ajwt_crewai.testing import ScriptedLLM

GO = [{"role": "user", "content": "go"}]


class Agent:
    role = "Billing agent"


class Task:
    def __init__(self, description: str, template: str | None = None) -> None:
        self.description = description
        self._original_description = template


def first_call(llm: ScriptedLLM, task: Any) -> Any:
    answer = llm.call(GO, from_agent=Agent(), from_task=task)
    return answer if isinstance(answer, str) else answer[0]["function"]["name"]


def test_module_doctests_pass() -> None:
    assert doctest.testmod(testing).failed == 0


def test_a_task_is_scripted_by_its_description_filled_in_or_as_written() -> None:
    llm = ScriptedLLM(
        model="scripted",
        turns={
            "Billing agent: Refund order 42.": [[("issue_refund", {})]],
            "Billing agent: Close the ticket of {order}.": [[("close_ticket", {})]],
        },
    )
    assert first_call(llm, Task("Refund order 42.")) == "issue_refund"
    closing = Task("Close the ticket of 42.", "Close the ticket of {order}.")
    assert first_call(llm, closing) == "close_ticket"


def test_a_task_no_key_matches_is_an_error_not_a_silent_final_answer() -> None:
    # The agent answered "Done." without a tool call, and a later agent's refusal was
    # the first sign of the typo.
    llm = ScriptedLLM(model="scripted", turns={"Billing agent: Refund order 42.": []})
    with pytest.raises(LookupError, match=r"none for 'Refund order 43\.'"):
        llm.call(GO, from_agent=Agent(), from_task=Task("Refund order 43."))
    # A script for the role alone covers its other tasks.
    llm.turns["Billing agent"] = [[("get_invoice", {})]]
    assert first_call(llm, Task("Refund order 43.")) == "get_invoice"
