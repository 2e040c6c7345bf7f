"""A workflow drafted from the app's structure (issue 14): ``draft_workflow`` and
``ajwt workflow export module:object`` on compiled LangGraph apps: supervisors,
swarms (``test_supervisor_swarm``), fan-outs and joins, choices, loops. Each draft is
a valid workflow, and the drafts of the routing tests' apps are the workflows they run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool
from langgraph_apps import Env
from test_routing import CHOICE, FAN_OUT, LOOP, choice_app, fan_out_app, loop_app

from ajwt_core.adapters import adapter_for, agent_manifests
from ajwt_core.adapters import draft_workflow as core_draft
from ajwt_core.shim import Shim
from ajwt_core.workflow import Workflow
from ajwt_langchain import LangGraphAdapter, draft_workflow


def canonical(steps: dict[str, Any], workflow_id: str = "draft") -> dict[str, Any]:
    return Workflow.from_mapping({"id": workflow_id, "version": 1, "steps": steps}).canonical()


@pytest.fixture
def offline() -> tuple[Shim, Env]:
    """Apps are built without running them: a shim and an env that are never called."""
    shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    env = Env("http://127.0.0.1:9", "http://127.0.0.1:9", None, None, [])  # type: ignore[arg-type]
    return shim, env


def test_a_fan_out_and_its_join(offline: tuple[Shim, Env]) -> None:
    draft = draft_workflow(fan_out_app(*offline), workflow_id="draft")
    assert canonical(draft["steps"]) == canonical(FAN_OUT)


def test_a_conditional_edge_is_a_choice(offline: tuple[Shim, Env]) -> None:
    draft = draft_workflow(choice_app(*offline), workflow_id="draft")
    # The nodes declare their tools; the choice is the conditional edge's.
    assert canonical(draft["steps"]) == canonical(CHOICE)


def test_an_edge_back_is_a_loop(offline: tuple[Shim, Env]) -> None:
    draft = draft_workflow(loop_app(*offline, rounds=2), workflow_id="draft")
    loop = {**LOOP, "draft": {**LOOP["draft"], "max_visits": 5}}
    assert canonical(draft["steps"]) == canonical(loop)


def test_the_core_finds_this_adapter_for_a_compiled_graph(offline: tuple[Shim, Env]) -> None:
    app = fan_out_app(*offline)
    assert isinstance(adapter_for(app), LangGraphAdapter)
    assert core_draft(app, workflow_id="shop").id == "shop"
    assert sorted(m.agent_id for m in agent_manifests(app)) == ["prices", "reporter", "stock"]


NEWSDESK = '''
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tools import tool
from langgraph_supervisor import create_supervisor


@tool
def get_news(topic: str) -> str:
    """Headlines about a topic."""
    return ""


@tool
def publish(text: str) -> str:
    """Publish an article."""
    return ""


class Model(FakeListChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


def model():
    return Model(responses=[])


reporter = create_agent(model(), [get_news], system_prompt="You report.", name="reporter")
writer = create_agent(model(), [publish], system_prompt="You write.", name="writer")
app = create_supervisor([reporter, writer], model=model(), prompt="You edit.").compile()
'''


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ajwt_workflow_export_writes_the_draft_of_a_supervisor_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("langgraph_supervisor")
    pytest.importorskip("typer")  # ajwt-core[cli]
    from typer.testing import CliRunner

    from ajwt_core.cli import app as cli

    (tmp_path / "newsdesk.py").write_text(textwrap.dedent(NEWSDESK))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "newsdesk.yaml"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["workflow", "export", "newsdesk:app", "--id", "news", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    drafted = Workflow.from_yaml(out.read_text())
    assert drafted.canonical() == canonical(
        {
            "supervisor": {"agent": "supervisor"},
            "reporter": {"agent": "reporter", "tools": ["get_news"], "after": ["supervisor"]},
            "writer": {"agent": "writer", "tools": ["publish"], "after": ["supervisor"]},
        },
        "news",
    )
    checked = runner.invoke(cli, ["workflow", "check", str(out)])
    assert checked.exit_code == 0 and "ok: workflow news v1, 3 steps" in checked.output


def test_an_app_without_agents_is_explained() -> None:
    from typing import TypedDict

    from langgraph.graph import START, StateGraph

    from ajwt_core.errors import AJWTError

    class State(TypedDict, total=False):
        done: bool

    builder = StateGraph(State)
    builder.add_node("n", lambda state: {"done": True})
    builder.add_edge(START, "n")
    with pytest.raises(AJWTError) as info:
        draft_workflow(builder.compile(), workflow_id="x")
    assert "no agent in this app" in info.value.description


def test_a_single_agent_app_is_one_step() -> None:
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    app = create_agent(FakeListChatModel(responses=[]), [get_weather], name="forecaster")
    assert draft_workflow(app, workflow_id="w")["steps"] == {
        "forecaster": {"agent": "forecaster", "tools": ["get_weather"]}
    }


def test_a_node_function_is_described_by_its_manifest(tmp_path: Path) -> None:
    """A node function's tools cannot be read from the graph: ``ajwt_node(manifest=...)``
    gives them to the draft, and ``secure_graph`` registers it."""
    from typing import TypedDict

    from langgraph.graph import START, StateGraph
    from langgraph_apps import ScriptedModel

    from ajwt_langchain import ajwt_node, manifest_from_langchain, secure_graph

    @tool
    def fetch_doc(name: str) -> str:
        """Fetch a document."""
        return name

    class State(TypedDict, total=False):
        done: bool

    shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    described = manifest_from_langchain(
        "You summarise.", [fetch_doc], ScriptedModel(), agent_id="summarizer"
    )
    builder = StateGraph(State)
    builder.add_node(
        "summarize",
        ajwt_node(shim, lambda state: {"done": True}, agent="summarizer", manifest=described),
    )
    builder.add_edge(START, "summarize")
    app = builder.compile()
    assert draft_workflow(app, workflow_id="w")["steps"] == {
        "summarize": {"agent": "summarizer", "tools": ["fetch_doc"]}
    }
    registered: list[Any] = []

    class Registered(Exception):
        pass

    def register_many(sources: list[Any]) -> None:
        registered.extend(sources)
        raise Registered  # no IdP here: what would be sent is enough

    shim.register_many = register_many  # type: ignore[method-assign]
    with pytest.raises(Registered):
        secure_graph(shim, app)
    assert registered == [described]
