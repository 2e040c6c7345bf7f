"""A deterministic, offline chat model whose reply is a function of the conversation.

``ScriptedChatModel`` is a LangChain fake chat model like ``GenericFakeChatModel``,
except that each reply is computed from the messages it is given rather than read
from a shared list, so one model serves any number of runs, interleaved or not, and
always answers the same conversation the same way. Its replies are real
``AIMessage``s with ``tool_calls``, executed by LangGraph's ``ToolNode`` exactly as a
real model's. Its configuration is only ``model`` and ``temperature``: the script is
the model's behaviour, not its configuration, so the manifest does not depend on it.

The scripts below play the DESIGN §11 vulnerability patcher: the supervisor lists the
repositories and hands work out; the planner reads each dependency manifest; the
classifier looks each dependency up in the advisory database; the patcher opens one
pull request per vulnerable dependency.

>>> from langchain_core.messages import HumanMessage
>>> reply = ScriptedChatModel(script=supervisor).invoke([HumanMessage("Patch acme.")])
>>> [call["name"] for call in reply.tool_calls]
['list_repos']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

Script = Callable[[Sequence[BaseMessage]], AIMessage]

MODEL_NAME = "scripted-patcher-model"

#: Where each ecosystem keeps its dependency manifest.
MANIFEST_FILES = {"JavaScript": "package.json", "Python": "requirements.txt"}


class ScriptedChatModel(BaseChatModel):
    """A fake chat model that answers with ``script(messages)``."""

    model: str = MODEL_NAME
    temperature: float = 0.0
    script: Script = Field(exclude=True)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.script(messages))])

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        # The script already knows its tools; the graph's ToolNode runs them.
        return self


# ----------------------------------------------------------------- conversation


def results(messages: Iterable[BaseMessage], tool: str) -> list[Any]:
    """The JSON results of every call of ``tool`` in the conversation."""
    found = []
    for message in messages:
        if isinstance(message, ToolMessage) and message.name == tool:
            try:
                found.append(json.loads(str(message.content)))
            except ValueError:
                found.append(str(message.content))
    return found


def called(messages: Iterable[BaseMessage]) -> set[str]:
    return {m.name for m in messages if isinstance(m, ToolMessage) and m.name}


def calls(agent: str, *wanted: tuple[str, dict[str, Any]]) -> AIMessage:
    """An ``AIMessage`` from ``agent`` calling tools (ids are deterministic)."""
    return AIMessage(
        content="",
        name=agent,
        tool_calls=[
            {"name": name, "args": args, "id": f"{agent}-{name}-{index}", "type": "tool_call"}
            for index, (name, args) in enumerate(wanted)
        ],
    )


def dependencies(file: dict[str, Any]) -> dict[str, str]:
    """Package → version from a ``read_file`` result (package.json or requirements.txt)."""
    content = str(file.get("content", ""))
    if str(file.get("path", "")).endswith(".json"):
        return dict(json.loads(content).get("dependencies", {}))
    pins = (line.split("==", 1) for line in content.splitlines() if "==" in line)
    return {name.strip(): version.strip() for name, version in pins}


def vulnerable(messages: Sequence[BaseMessage]) -> list[tuple[str, str, str]]:
    """(repo, package, patched version) for each dependency with an advisory."""
    used = {
        (file["repo"], package)
        for file in results(messages, "read_file")
        for package in dependencies(file)
    }
    found = set()
    for answer in results(messages, "query_advisories"):
        for advisory in answer.get("advisories", []):
            for repo, package in used:
                if package == advisory["package"]:
                    found.add((repo, package, advisory["patched"]))
    return sorted(found)


# ---------------------------------------------------------------------- scripts


def supervisor(messages: Sequence[BaseMessage]) -> AIMessage:
    done = called(messages)
    if "list_repos" not in done:
        return calls("supervisor", ("list_repos", {}))
    for worker in ("planner", "classifier"):
        if f"transfer_to_{worker}" not in done:
            return calls("supervisor", (f"transfer_to_{worker}", {}))
    pulls = [r["pull_request"] for r in results(messages, "create_pull_request")]
    opened = ", ".join(f"{p['repo']}#{p['number']}" for p in pulls) or "none"
    return AIMessage(content=f"Done: {len(pulls)} pull requests opened ({opened}).")


def planner(messages: Sequence[BaseMessage]) -> AIMessage:
    if not results(messages, "read_file"):
        repos = [r for answer in results(messages, "list_repos") for r in answer["repos"]]
        reads = [
            ("read_file", {"repo": repo["name"], "path": MANIFEST_FILES[repo["language"]]})
            for repo in repos
            if repo["dependencies"] and repo["language"] in MANIFEST_FILES
        ]
        return calls("planner", *reads)
    files = results(messages, "read_file")
    count = sum(len(dependencies(file)) for file in files)
    return AIMessage(content=f"Plan: check {count} dependencies in {len(files)} repositories.")


def classifier(messages: Sequence[BaseMessage]) -> AIMessage:
    if not results(messages, "query_advisories"):
        packages = sorted(
            {p for file in results(messages, "read_file") for p in dependencies(file)}
        )
        return calls("classifier", *(("query_advisories", {"package": p}) for p in packages))
    found = vulnerable(messages)
    listed = ", ".join(f"{package} in {repo}" for repo, package, _ in found) or "nothing"
    return AIMessage(content=f"Vulnerable: {listed}.")


def patcher(messages: Sequence[BaseMessage]) -> AIMessage:
    if not results(messages, "create_pull_request"):
        pulls = [
            (
                "create_pull_request",
                {"repo": repo, "title": f"Bump {package} to {patched}", "head": f"fix/{package}"},
            )
            for repo, package, patched in vulnerable(messages)
        ]
        if pulls:
            return calls("patcher", *pulls)
    return AIMessage(content=f"Opened {len(results(messages, 'create_pull_request'))} PRs.")


SCRIPTS: dict[str, Script] = {
    "supervisor": supervisor,
    "planner": planner,
    "classifier": classifier,
    "patcher": patcher,
}
