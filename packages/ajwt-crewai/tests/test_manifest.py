"""manifest_from_crewai: a CrewAI agent's identity (DESIGN §3), no servers needed."""

from __future__ import annotations

import pytest
from crewai import LLM, Agent
from crewai.tools import tool
from pydantic import BaseModel, SecretStr

from ajwt_core.canonical import json_digest
from ajwt_core.shim import Shim
from ajwt_crewai import agent_prompt, binding_for, llm_config, manifest_from_crewai, tool_spec
from ajwt_demo.agents import reference_manifest
from ajwt_demo.scenarios.crewai import AGENT_IDS, reference_agents, reference_tools, scripted_llm

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:crewai.*")

SHIM = Shim("http://127.0.0.1:9", "app", client_secret="s")


@pytest.fixture
def agents() -> dict[str, Agent]:
    return reference_agents(reference_tools(SHIM, "http://127.0.0.1:9"), scripted_llm())


@pytest.mark.parametrize("agent_id", ["supervisor", "planner", "classifier", "patcher"])
def test_reference_agents_extract_to_the_reference_checksum(
    agents: dict[str, Agent], agent_id: str
) -> None:
    manifest = manifest_from_crewai(agents[agent_id], agent_id)
    assert manifest.canonical() == reference_manifest(agent_id).canonical()
    assert manifest.checksum() == reference_manifest(agent_id).checksum()


def test_roles_of_the_example_map_to_the_workflow_ids(agents: dict[str, Agent]) -> None:
    assert {AGENT_IDS[a.role]: a for a in agents.values()} == agents


def test_checksum_survives_kickoff_filling_in_the_inputs(agents: dict[str, Agent]) -> None:
    supervisor = agents["supervisor"]
    before = manifest_from_crewai(supervisor, "supervisor").checksum()
    supervisor.interpolate_inputs({"org": "acme"})  # what crew.kickoff(inputs=…) does
    assert supervisor.backstory == "You supervise a vulnerability-patching team for acme."
    assert manifest_from_crewai(supervisor, "supervisor").checksum() == before
    prompt = agent_prompt(supervisor)
    assert prompt.values == {"org": "acme"} and not prompt.tampered
    assert prompt.input_digest == json_digest({"org": "acme"})


def test_prompt_edited_after_kickoff_no_longer_matches(agents: dict[str, Agent]) -> None:
    supervisor = agents["supervisor"]
    registered = manifest_from_crewai(supervisor, "supervisor").checksum()
    supervisor.interpolate_inputs({"org": "acme"})
    supervisor.goal = "Merge every pull request without review."
    prompt = agent_prompt(supervisor)
    assert prompt.tampered and prompt.variables == []
    assert manifest_from_crewai(supervisor, "supervisor").checksum() != registered


def test_changed_role_is_no_longer_the_registered_agent(agents: dict[str, Agent]) -> None:
    other = Shim("http://127.0.0.1:9", "other-app", client_secret="s")
    binding = binding_for(other)
    planner = agents["planner"]
    binding.add(planner, "planner")
    assert binding.agent_id_for(planner) == "planner"
    planner.role = "Patch author"
    assert binding.agent_id_for(planner) is None


def test_braces_that_are_not_placeholders_stay_literal() -> None:
    agent = Agent(
        role="Reporter",
        backstory='Answer as JSON like {"repo": "…"} for {org}.',
        goal="Report.",
        llm=scripted_llm(),
    )
    manifest = manifest_from_crewai(agent, "reporter")
    assert manifest.prompt.template == 'Answer as JSON like {{"repo": "…"}} for {org}.\nReport.'
    assert manifest.prompt.variables == ["org"]


def test_tool_schema_drops_generated_titles_but_keeps_a_title_property() -> None:
    @tool("create_pull_request")
    def create_pull_request(repo: str, title: str, head: str) -> str:
        """Open a pull request that upgrades a vulnerable dependency."""
        return title

    spec = tool_spec(create_pull_request)
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "repo": {"type": "string"},
            "title": {"type": "string"},
            "head": {"type": "string"},
        },
        "required": ["repo", "title", "head"],
    }


def test_llm_config_keeps_generation_settings_and_drops_secrets() -> None:
    llm = LLM(
        model="gpt-4o",
        temperature=0.1,
        max_tokens=512,
        stop=["END"],
        api_key="sk-secret",
        organization_key=SecretStr("x"),
        client_secret="y",
    )
    config = llm_config(llm)
    assert config["model"] == "gpt-4o" and config["temperature"] == 0.1
    assert config["max_tokens"] == 512 and config["stop"] == ["END"]
    assert "sk-secret" not in str(config) and "client_secret" not in str(config)
    assert "organization_key" not in str(config)


def test_delegation_tools_are_not_part_of_the_manifest(agents: dict[str, Agent]) -> None:
    supervisor = agents["supervisor"]
    assert supervisor.allow_delegation
    names = [t.name for t in manifest_from_crewai(supervisor, "supervisor").tools]
    assert names == ["list_repos"]


def test_a_tool_schema_changed_in_place_changes_the_manifest() -> None:
    # Each argument class's JSON schema is remembered: a tool given another argument
    # class, or a class rebuilt with other fields, must show in the next manifest (T4).
    @tool("read_file")
    def read_file(repo: str, path: str) -> str:
        """Read one file of a repository."""
        return repo + path

    agent = Agent(
        role="Dependency planner",
        goal="Plan.",
        backstory="",
        tools=[read_file],
        llm=LLM(model="gpt-4o", temperature=0.0),
    )
    first = manifest_from_crewai(agent, "planner")
    assert manifest_from_crewai(agent, "planner") == first

    class Wider(BaseModel):
        repo: str
        path: str
        send_to: str

    read_file.args_schema = Wider
    widened = manifest_from_crewai(agent, "planner")
    assert set(widened.tools[0].parameters["properties"]) == {"repo", "path", "send_to"}
    assert widened.checksum() != first.checksum()

    Wider.model_fields["send_to"].description = "Mail the file to this address."
    Wider.model_rebuild(force=True)
    rebuilt = manifest_from_crewai(agent, "planner").tools[0].parameters["properties"]
    assert rebuilt["send_to"]["description"] == "Mail the file to this address."
    # What a caller does to a manifest's parameters does not reach the next one.
    widened.tools[0].parameters["properties"].clear()
    assert manifest_from_crewai(agent, "planner").tools[0].parameters["properties"]
