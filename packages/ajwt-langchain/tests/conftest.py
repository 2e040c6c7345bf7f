"""Fixtures: the real IdP and resource server on 127.0.0.1, shims, tools, fake models."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool

from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.langgraph.agents import make_tools
from ajwt_demo.scenarios.langgraph.api import PatcherApi
from ajwt_demo.stack import Stack, start_stack

# The tests' own helpers (``langgraph_apps``) import by name beside them.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("idp") / "idp.db")
    yield running
    running.close()


@pytest.fixture
def shim(stack: Stack) -> Iterator[Shim]:
    """A fresh client app with the four reference agents registered; mints up front."""
    the_shim = stack.shim(default_audience=stack.rs_url)
    yield the_shim
    the_shim.close()


@pytest.fixture
def events(shim: Shim) -> list[ShimEvent]:
    seen: list[ShimEvent] = []
    shim.subscribe(seen.append)
    return seen


@pytest.fixture
def run(stack: Stack, shim: Shim) -> Run:
    return stack.start_run(shim)


@pytest.fixture
def api(stack: Stack, shim: Shim) -> Iterator[PatcherApi]:
    the_api = PatcherApi(stack.rs_url, shim.auth())
    yield the_api
    the_api.close()


@pytest.fixture
def tools(api: PatcherApi) -> dict[str, BaseTool]:
    """The four workflow tools (sync and async), calling the resource server."""
    return make_tools(api)


@pytest.fixture
def calls(stack: Stack) -> Callable[[Run], list[CallRecord]]:
    """The API calls the resource server accepted in a run."""

    def of(run: Run) -> list[CallRecord]:
        return [call for call in stack.api.state.calls if call.run_id == run.run_id]

    return of


class ToolCallingFakeModel(GenericFakeChatModel):
    """LangChain's fake chat model, able to sit in an agent loop (FRAMEWORKS.md)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


def _tool_call(name: str, call_id: str = "call-1", **args: Any) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}]
    )


@pytest.fixture
def tool_call() -> Callable[..., AIMessage]:
    """``tool_call("read_file", repo=..., path=...)``: a model reply calling one tool."""
    return _tool_call


@pytest.fixture
def fake_model() -> Callable[..., ToolCallingFakeModel]:
    """``fake_model(reply, reply, ...)``: LangChain's fake model playing these replies."""

    def make(*replies: AIMessage | str) -> ToolCallingFakeModel:
        messages = [r if isinstance(r, AIMessage) else AIMessage(content=r) for r in replies]
        return ToolCallingFakeModel(messages=iter(messages))

    return make
