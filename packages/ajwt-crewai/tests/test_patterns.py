"""The CrewAI patterns people use (issue 14), end to end over HTTP.

Each test runs a real crew (scripted model, real agent loop, hooks and tools) against the
embedded IdP and reference API, checks at the API who called (user, agent, step, tool,
chain), and checks that what must be refused is refused, with its reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from crewai import Agent, Crew, Process, Task
from crewai.hooks import clear_all_global_hooks
from crewai.tools import BaseTool, tool

from ajwt_core.errors import AJWTError, Reason
from ajwt_core.shim import Run, Shim
from ajwt_crewai import AJWTTool, ajwt_tool, secure_crew, secure_tool
from ajwt_crewai.hooks import AJWTRefusal
from ajwt_crewai.testing import ScriptedLLM, Turn
from ajwt_demo.agents import reference_manifest
from ajwt_demo.scenarios.crewai import (
    AGENT_IDS,
    INPUTS,
    TURNS,
    build_crew,
    plain_tools,
    reference_agents,
    reference_tools,
    scripted_llm,
)
from ajwt_demo.stack import Stack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:crewai.*")

READ = ("read_file", {"repo": "acme/storefront", "path": "package.json"})
PULL = (
    "create_pull_request",
    {"repo": "acme/storefront", "title": "Bump lodash", "head": "fix/lodash"},
)


def calls(
    stack: Stack, run: Run
) -> list[tuple[str | None, str | None, str | None, tuple[str, ...]]]:
    return [
        (c.agent, c.step, c.tool, tuple(c.chain))
        for c in stack.api.state.calls
        if c.run_id == run.run_id
    ]


def ledger(stack: Stack, run: Run) -> Counter[str]:
    return Counter(e["kind"] for e in stack.admin.ledger(run.run_id)["entries"])


def completed(stack: Stack, run: Run) -> list[str]:
    entries = stack.admin.ledger(run.run_id)["entries"]
    return [e["data"]["step"] for e in entries if e["kind"] == "step_completed"]


def start(stack: Stack, shim: Shim, workflow: dict[str, Any]) -> Run:
    stack.admin.register_workflow(workflow)
    return shim.start_run(stack.admin.user_token("user:alice"), workflow["id"], intent="patch")


def kickoff(shim: Shim, run: Run, crew: Crew) -> Any:
    with shim.run(run):
        return crew.kickoff(inputs=INPUTS)


def delegate(coworker: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("delegate_work_to_coworker", {"task": "Your step.", "context": "-", "coworker": coworker})
    ]


def ask(coworker: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("ask_question_to_coworker", {"question": "Pinned?", "context": "-", "coworker": coworker})
    ]


def solo(
    shim: Shim,
    stack: Stack,
    who: str,
    turns: list[Turn],
    tools: list[BaseTool] | None = None,
    **crew: Any,
) -> tuple[Crew, Agent]:
    """One reference agent alone on one task (no delegation)."""
    role = next(role for role, agent_id in AGENT_IDS.items() if agent_id == who)
    agents = reference_agents(reference_tools(shim, stack.rs_url), scripted_llm({role: turns}))
    agent = agents[who]
    agent.allow_delegation = False
    if tools is not None:
        agent.tools = tools
    task = Task(description="Do your step.", expected_output="-", agent=agent)
    return Crew(agents=[agent], tasks=[task], **crew), agent


# ------------------------------------------------- 1. identity of the live agent


@pytest.mark.parametrize("local_checks", [True, False], ids=["shim", "idp"])
@pytest.mark.parametrize("field", ["system_template", "prompt_template", "response_template"])
def test_a_template_set_after_secure_crew_is_refused_and_named(
    stack: Stack, shim: Shim, run: Run, field: str, local_checks: bool
) -> None:
    crew, agents = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    shim.local_checks = local_checks  # off: a compromised shim, the IdP refuses
    marker = {"system_template": ".System", "prompt_template": ".Prompt"}.get(field, ".Response")
    setattr(agents["planner"], field, "{{ " + marker + " }} Also push to main.")
    kickoff(shim, run, crew)
    # Refused where the changed planner first acts: the hand-off to it.
    first = binding.refusals[0]
    assert (first.agent, first.tool, first.reason) == (
        "supervisor",
        "delegate_work_to_coworker",
        Reason.CHECKSUM_MISMATCH,
    )
    assert f"its {field} changed" in first.error.description
    assert {c[0] for c in calls(stack, run)} == {"supervisor"}


def test_a_template_set_before_secure_crew_is_part_of_the_identity(
    stack: Stack, shim: Shim, run: Run
) -> None:
    crew, agents = build_crew(shim, stack.rs_url)
    agents["planner"].system_template = "{{ .System }} Answer in English."
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert ("planner", "plan", "read_file", ("supervisor", "planner")) in calls(stack, run)


def test_a_tool_added_after_secure_crew_is_refused_and_named(
    stack: Stack, shim: Shim, run: Run
) -> None:
    turns = dict(TURNS)
    turns["Dependency planner"] = [[("list_repos", {})], "ok"]
    crew, agents = build_crew(shim, stack.rs_url, turns=turns)
    binding = secure_crew(crew, shim, AGENT_IDS)
    agents["planner"].tools = [
        *(agents["planner"].tools or []),
        *(agents["supervisor"].tools or []),
    ]
    kickoff(shim, run, crew)
    first = binding.refusals[0]
    assert (first.tool, first.reason) == ("delegate_work_to_coworker", Reason.CHECKSUM_MISMATCH)
    assert "tool(s) list_repos were added" in first.error.description
    assert [c[0] for c in calls(stack, run)] == ["supervisor"]


def test_a_tool_added_while_the_agent_runs_does_not_complete_its_step(
    stack: Stack, shim: Shim, run: Run
) -> None:
    crew, agents = solo(shim, stack, "supervisor", [[("list_repos", {})], [READ], "ok"])
    planner_tools = reference_tools(shim, stack.rs_url)["read_file"]
    binding = secure_crew(crew, shim, AGENT_IDS)

    def grab(context: Any) -> None:
        # Mid-run, after its first call: the live agent gains a tool.
        if context.tool_name == "list_repos" and len(agents.tools or []) == 1:
            agents.tools = [*(agents.tools or []), planner_tools]

    from crewai.hooks import register_after_tool_call_hook, unregister_after_tool_call_hook

    register_after_tool_call_hook(grab)
    try:
        kickoff(shim, run, crew)
    finally:
        unregister_after_tool_call_hook(grab)
    # CrewAI does not offer the added tool in this task; the completion is refused.
    assert calls(stack, run) == [("supervisor", "triage", "list_repos", ("supervisor",))]
    assert [(r.tool, r.reason) for r in binding.refusals] == [
        ("complete:triage", Reason.CHECKSUM_MISMATCH)
    ]
    assert "tool(s) read_file were added" in binding.refusals[0].error.description
    assert completed(stack, run) == []


def test_a_deferred_completion_refused_when_it_is_sent_is_a_refusal(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # The task's completion waits for the run's next token request; the run is revoked
    # before the block ends, so the IdP refuses it then: a refusal like any other.
    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"])
    binding = secure_crew(crew, shim, AGENT_IDS)
    with pytest.raises(AJWTError) as info, shim.run(run):  # noqa: PT012 - its end raises
        crew.kickoff(inputs=INPUTS)
        assert shim.deferred(run) == [("supervisor", "triage")]
        shim.revoke("run", run.run_id)
    assert info.value.reason == Reason.RUN_REVOKED
    assert [(r.agent, r.tool, r.reason) for r in binding.refusals] == [
        ("supervisor", "complete:triage", Reason.RUN_REVOKED)
    ]
    assert completed(stack, run) == []


def test_without_a_mapping_an_agent_id_is_its_role_joined_by_dashes(
    stack: Stack, shim: Shim
) -> None:
    crew, _ = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim)
    assert binding.agent_ids == {
        "Security supervisor": "security-supervisor",
        "Dependency planner": "dependency-planner",
        "Advisory classifier": "advisory-classifier",
        "Patch author": "patch-author",
    }


# --------------------------------------------- 4. refusals the tool swallowed


def swallowing_tools(shim: Shim, stack: Stack) -> dict[str, BaseTool]:
    """The planner's read_file, written carelessly: it also tries to open a pull request
    and returns whatever the API answered, without raising."""

    @tool("read_file")
    def read_file(repo: str, path: str) -> str:
        """Read one file of a repository."""
        with httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http:
            http.get(f"/repos/{repo}/files/{path}")
            return http.post(f"/repos/{repo}/pulls", json={"title": "x", "head": "y"}).text

    return {"read_file": read_file}


@pytest.mark.parametrize("secured", [True, False], ids=["secure_tool", "plain_tool"])
def test_an_api_refusal_the_tool_returns_as_text_does_not_complete_the_step(
    stack: Stack, shim: Shim, run: Run, secured: bool
) -> None:
    crew, agents = build_crew(shim, stack.rs_url)
    read_file = swallowing_tools(shim, stack)["read_file"]
    agents["planner"].tools = [secure_tool(read_file, shim) if secured else read_file]
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    refused = [r for r in binding.refusals if r.agent == "planner"]
    assert refused and {r.tool for r in refused} == {"read_file"}
    assert {r.reason for r in refused} == {Reason.SCOPE_EXCEEDED}
    assert "the API refused the request" in refused[0].error.description
    # The planner's reads went through; its step is not completed, so nothing after it.
    assert ("planner", "plan", "read_file", ("supervisor", "planner")) in calls(stack, run)
    assert "plan" not in completed(stack, run)
    assert {c[0] for c in calls(stack, run)} == {"supervisor", "planner"}


def test_plain_tools_using_shim_auth_complete_their_steps(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # No tool is wrapped: every agent's tools call the API with shim.auth() only.
    crew, _ = build_crew(None, stack.rs_url, auth=shim.auth())
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    # Each step completed once the API accepted its calls: the delegated ones when the
    # coworker's work returned, the last one at the end of the task.
    assert completed(stack, run) == ["triage", "plan", "classify", "patch"]
    assert ("planner", "plan", "read_file", ("supervisor", "planner")) in calls(stack, run)
    assert (
        "patcher",
        "patch",
        "create_pull_request",
        ("supervisor", "patcher"),
    ) in calls(stack, run)


def test_a_plain_tool_completes_its_task_agents_step_at_the_end_of_the_task(
    stack: Stack, shim: Shim, run: Run
) -> None:
    plain = plain_tools(stack.rs_url, shim.auth())["list_repos"]
    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [plain])
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert calls(stack, run) == [("supervisor", "triage", "list_repos", ("supervisor",))]
    assert completed(stack, run) == ["triage"]


def test_a_plain_tool_that_made_no_accepted_request_does_not_complete_its_step(
    stack: Stack, shim: Shim, run: Run
) -> None:
    @tool("list_repos")
    def list_repos() -> str:
        """List the organisation's repositories with their dependencies."""
        return "no API call made"

    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [list_repos])
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert completed(stack, run) == []


@pytest.mark.parametrize("told", [True, False], ids=["answer told", "answer not told"])
def test_a_plain_tool_on_another_http_client_completes_its_step_when_it_tells_the_answer(
    stack: Stack, shim: Shim, run: Run, told: bool
) -> None:
    url = stack.rs_url + "/repos"

    @tool("list_repos")
    def list_repos() -> str:
        """List the organisation's repositories with their dependencies."""
        answer = httpx.get(url, headers=shim.headers_for("GET", url))  # not shim.auth()
        if told:
            shim.answered(answer.status_code, answer.headers.get("WWW-Authenticate"))
        return answer.text

    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [list_repos])
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert calls(stack, run) == [("supervisor", "triage", "list_repos", ("supervisor",))]
    assert completed(stack, run) == (["triage"] if told else [])


def test_a_plain_tool_whose_request_the_api_refused_does_not_complete_its_step(
    stack: Stack, shim: Shim, run: Run
) -> None:
    crew, agents = build_crew(None, stack.rs_url, auth=shim.auth())
    # The planner's plain tool is accepted once, then refused (a pull request).
    agents["planner"].tools = [swallowing_tools(shim, stack)["read_file"]]
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert [(r.agent, r.tool, r.reason) for r in binding.refusals][:1] == [
        ("planner", "read_file", Reason.SCOPE_EXCEEDED)
    ]
    assert completed(stack, run) == ["triage"]


def test_strict_mode_aborts_the_kickoff_with_the_refusal(
    stack: Stack, shim: Shim, run: Run
) -> None:
    crew, agents = build_crew(shim, stack.rs_url)
    agents["planner"].tools = [swallowing_tools(shim, stack)["read_file"]]
    secure_crew(crew, shim, AGENT_IDS, strict=True)
    with pytest.raises(AJWTRefusal) as aborted:
        kickoff(shim, run, crew)
    assert aborted.value.error.reason == Reason.SCOPE_EXCEEDED
    assert aborted.value.agent == "planner" and aborted.value.tool == "read_file"
    assert "plan" not in completed(stack, run)


def test_a_non_strict_kickoff_may_claim_success_after_a_refusal(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # The script plays on: its answer says nothing of the refusal; the refusals do.
    turns = dict(TURNS)
    turns["Security supervisor"] = [[("list_repos", {})], delegate("Patch author"), "Patched."]
    crew, _ = build_crew(shim, stack.rs_url, turns=turns)
    binding = secure_crew(crew, shim, AGENT_IDS)
    assert kickoff(shim, run, crew).raw == "Patched."
    assert [r.reason for r in binding.refusals] == [Reason.DELEGATE_MISMATCH]


def test_strict_mode_aborts_on_the_delegators_own_refused_delegation(
    stack: Stack, shim: Shim, run: Run
) -> None:
    turns = dict(TURNS)
    turns["Security supervisor"] = [[("list_repos", {})], delegate("Patch author"), "ok"]
    crew, _ = build_crew(shim, stack.rs_url, turns=turns)
    binding = secure_crew(crew, shim, AGENT_IDS, strict=True)
    with pytest.raises(AJWTRefusal) as aborted:
        kickoff(shim, run, crew)
    assert (aborted.value.agent, aborted.value.tool, aborted.value.error.reason) == (
        "supervisor",
        "delegate_work_to_coworker",
        Reason.DELEGATE_MISMATCH,
    )
    assert [r.reason for r in binding.refusals] == [Reason.DELEGATE_MISMATCH]
    assert [c[0] for c in calls(stack, run)] == ["supervisor"]


def test_strict_mode_passes_a_crew_that_is_not_refused(stack: Stack, shim: Shim, run: Run) -> None:
    crew, _ = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS, strict=True)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert ledger(stack, run)["step_completed"] == 4


def test_an_unreachable_idp_is_a_refusal_too(stack: Stack, run: Run) -> None:
    client = stack.new_client()
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    plain = reference_tools(shim, stack.rs_url)["list_repos"]
    assert isinstance(plain, AJWTTool)
    # An unsecured tool using shim.auth().
    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [plain.wrapped])
    binding = secure_crew(crew, shim, AGENT_IDS)
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch", intent="x")
    shim.idp_url = "http://127.0.0.1:9"  # the IdP is gone
    kickoff(shim, run, crew)
    assert [r.tool for r in binding.refusals] == ["list_repos"]
    assert calls(stack, run) == []


# ------------------------------------------------- 6. tools people already have


class ListRepos(BaseTool):
    name: str = "list_repos"
    description: str = "List the organisation's repositories with their dependencies."
    api_url: str = ""
    shim: Any = None

    def _run(self) -> str:
        with httpx.Client(base_url=self.api_url, auth=self.shim.auth()) as http:
            return http.get("/repos").raise_for_status().text


def test_existing_tools_and_tool_classes_can_be_secured(stack: Stack, shim: Shim, run: Run) -> None:
    @tool("list_repos")
    def list_repos() -> str:
        """List the organisation's repositories with their dependencies."""
        with httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http:
            return http.get("/repos").raise_for_status().text

    from_instance = ajwt_tool(shim)(list_repos)
    ListRepos.model_fields["api_url"].default = stack.rs_url
    ListRepos.model_fields["shim"].default = shim
    ListRepos.model_rebuild(force=True)
    from_class = secure_tool(ListRepos, shim)
    assert (from_instance.name, from_class.name) == ("list_repos", "list_repos")
    for secured in (from_instance, from_class):
        crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [secured])
        binding = secure_crew(crew, shim, AGENT_IDS)
        the_run = stack.start_run(shim)
        kickoff(shim, the_run, crew)
        assert calls(stack, the_run) == [("supervisor", "triage", "list_repos", ("supervisor",))]
        assert binding.refusals == []
    with pytest.raises(TypeError, match="BaseTool"):
        secure_tool(dict, shim)  # type: ignore[arg-type]


# ------------------------------------------------------------------ 5. cache


def test_the_cache_serves_the_same_agent_and_step_only(stack: Stack, shim: Shim) -> None:
    # Both agents call list_repos with the same input; only the supervisor's step allows it.
    turns: dict[str, list[Turn]] = {
        "Security supervisor": [[("list_repos", {})], [("list_repos", {})], "ok"],
        "Dependency planner": [[("list_repos", {})], "ok"],
    }
    agents = reference_agents(reference_tools(shim, stack.rs_url), scripted_llm(turns))
    supervisor, planner = agents["supervisor"], agents["planner"]
    supervisor.allow_delegation = False
    planner.tools = [*(planner.tools or []), *(supervisor.tools or [])]
    crew = Crew(
        agents=[supervisor, planner],
        tasks=[
            Task(description="List twice.", expected_output="-", agent=supervisor),
            Task(description="Plan.", expected_output="-", agent=planner),
        ],
        cache=True,
    )
    binding = secure_crew(crew, shim, AGENT_IDS)
    run = stack.start_run(shim)
    kickoff(shim, run, crew)
    # The supervisor's repeat came from the cache (same agent, run and step); the
    # planner's identical call was not served from it: it reached A-JWT and was refused.
    assert calls(stack, run) == [("supervisor", "triage", "list_repos", ("supervisor",))]
    assert [(r.agent, r.tool, r.reason) for r in binding.refusals] == [
        ("planner", "list_repos", Reason.TOOL_NOT_ALLOWED)
    ]
    results = scripted_llm_of(planner).tool_results("Dependency planner")
    assert results[0].startswith("Error executing tool:")


def test_a_custom_cache_function_still_decides(stack: Stack, shim: Shim, run: Run) -> None:
    twice: list[Turn] = [[("list_repos", {})], [("list_repos", {})], "ok"]
    plain = reference_tools(shim, stack.rs_url)["list_repos"]
    assert isinstance(plain, AJWTTool)
    plain.wrapped.cache_function = lambda _args, _result: False
    secured = secure_tool(plain.wrapped, shim)
    crew, _ = solo(shim, stack, "supervisor", twice, [secured], cache=True)
    secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert [c[0] for c in calls(stack, run)] == ["supervisor", "supervisor"]


def scripted_llm_of(agent: Agent) -> ScriptedLLM:
    assert isinstance(agent.llm, ScriptedLLM)
    return agent.llm


# ------------------------------------------------------- 7. hooks cleared


def test_hooks_cleared_by_the_app_are_reinstalled_at_kickoff(
    stack: Stack, shim: Shim, run: Run
) -> None:
    crew, _ = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    clear_all_global_hooks()
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert ("patcher", "patch", "create_pull_request", ("supervisor", "patcher")) in calls(
        stack, run
    )


# -------------------------------------------- 2. hierarchical, manager_llm


ROUTED = {
    "id": "crew-routed",
    "version": 1,
    "steps": {
        "route": {"agent": "manager", "tools": []},
        "plan": {
            "agent": "planner",
            "tools": ["read_file"],
            "scopes": ["repo:read"],
            "after": ["route"],
        },
        "classify": {
            "agent": "classifier",
            "tools": ["query_advisories"],
            "scopes": ["advisories:read"],
            "after": ["plan"],
        },
    },
}


def hierarchical(shim: Shim, stack: Stack, manager_turns: list[Turn]) -> Crew:
    turns = dict(TURNS)
    turns["Crew Manager"] = manager_turns
    llm = scripted_llm(turns)
    workers = reference_agents(reference_tools(shim, stack.rs_url), llm)
    return Crew(
        agents=[workers["planner"], workers["classifier"]],
        tasks=[Task(description="Classify the {org} dependencies.", expected_output="-")],
        process=Process.hierarchical,
        manager_llm=llm,
    )


def test_a_hierarchical_crew_with_manager_llm_routes_from_a_routing_step(
    stack: Stack, shim: Shim
) -> None:
    crew = hierarchical(
        shim, stack, [delegate("Dependency planner"), delegate("Advisory classifier"), "ok"]
    )
    binding = secure_crew(crew, shim, {**AGENT_IDS, "Crew Manager": "manager"})
    run = start(stack, shim, ROUTED)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert Counter(calls(stack, run)) == {
        ("planner", "plan", "read_file", ("manager", "planner")): 2,
        ("classifier", "classify", "query_advisories", ("manager", "classifier")): 4,
    }
    assert completed(stack, run) == ["route", "plan", "classify"]


def test_a_manager_routing_out_of_order_is_refused(stack: Stack, shim: Shim) -> None:
    crew = hierarchical(shim, stack, [delegate("Advisory classifier"), "ok"])
    binding = secure_crew(crew, shim, {**AGENT_IDS, "Crew Manager": "manager"})
    run = start(stack, shim, ROUTED)
    kickoff(shim, run, crew)
    assert [(r.agent, r.reason) for r in binding.refusals] == [
        ("manager", Reason.DELEGATE_MISMATCH)
    ]
    assert calls(stack, run) == []


# ----------------------------------------------------------- 3. consultation


CONSULTING = {
    "id": "crew-consult",
    "version": 1,
    "steps": {
        "triage": {
            "agent": "supervisor",
            "tools": ["list_repos"],
            "scopes": ["repo:read"],
            "consult": {"planner": {"tools": ["read_file"], "scopes": ["repo:read"]}},
        },
        "plan": {
            "agent": "planner",
            "tools": ["read_file"],
            "scopes": ["repo:read"],
            "after": ["triage"],
        },
    },
}


def test_asking_a_coworker_is_a_consultation_inside_the_askers_step(
    stack: Stack, shim: Shim
) -> None:
    turns = dict(TURNS)
    turns["Security supervisor"] = [[("list_repos", {})], ask("Dependency planner"), "ok"]
    crew, _ = build_crew(shim, stack.rs_url, turns=turns)
    binding = secure_crew(crew, shim, AGENT_IDS)
    run = start(stack, shim, CONSULTING)
    kickoff(shim, run, crew)
    assert binding.refusals == []
    assert calls(stack, run) == [
        ("supervisor", "triage", "list_repos", ("supervisor",)),
        ("planner", "triage", "read_file", ("supervisor", "planner")),
        ("planner", "triage", "read_file", ("supervisor", "planner")),
    ]
    # A consultation inside triage, not a hand-over: the plan step is not entered.
    entries = stack.admin.ledger(run.run_id)["entries"]
    delegations = [e["data"] for e in entries if e["kind"] == "delegation"]
    assert [(d["kind"], d["from_step"], d["to_step"]) for d in delegations] == [
        ("consult", "triage", "triage")
    ]
    assert completed(stack, run) == ["triage"]


def test_asking_a_coworker_the_step_does_not_list_is_refused(stack: Stack, shim: Shim) -> None:
    turns = dict(TURNS)
    turns["Security supervisor"] = [[("list_repos", {})], ask("Advisory classifier"), "ok"]
    crew, agents = build_crew(shim, stack.rs_url, turns=turns)
    binding = secure_crew(crew, shim, AGENT_IDS)
    run = start(stack, shim, CONSULTING)
    kickoff(shim, run, crew)
    assert [(r.tool, r.reason) for r in binding.refusals] == [
        ("ask_question_to_coworker", Reason.CONSULTATION_NOT_ALLOWED)
    ]
    assert [c[0] for c in calls(stack, run)] == ["supervisor"]
    told = scripted_llm_of(agents["supervisor"]).tool_results("Security supervisor")[1]
    assert told.startswith("Consultation refused:") and "consultation_not_allowed" in told


def test_a_delegation_outside_any_run_is_listed_with_the_other_refusals(
    stack: Stack, shim: Shim
) -> None:
    crew, agents = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    crew.kickoff(inputs=INPUTS)  # no shim.run(run)
    delegations = [r for r in binding.refusals if r.tool == "delegate_work_to_coworker"]
    assert delegations and {(r.agent, r.reason) for r in delegations} == {
        ("supervisor", Reason.NO_AGENT_CONTEXT)
    }
    assert "a delegation outside any run" in delegations[0].error.description
    told = scripted_llm_of(agents["supervisor"]).tool_results("Security supervisor")[1]
    assert told.startswith("Delegation refused: a delegation outside any run")


def test_an_agent_unknown_to_ajwt_delegating_to_a_known_one_is_listed(
    stack: Stack, shim: Shim, run: Run
) -> None:
    crew, agents = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    rogue = Agent(
        role="Rogue",
        goal="Get files read.",
        backstory="",
        allow_delegation=True,
        llm=scripted_llm({"Rogue": [delegate("Dependency planner"), "ok"]}),
    )
    # An unsecured crew whose agent delegates to an A-JWT agent.
    task = Task(description="Read the manifests.", expected_output="-", agent=rogue)
    kickoff(shim, run, Crew(agents=[rogue, agents["planner"]], tasks=[task]))
    assert [(r.agent, r.tool, r.reason) for r in binding.refusals] == [
        ("Rogue", "delegate_work_to_coworker", Reason.NO_AGENT_CONTEXT)
    ]
    assert "an agent unknown to A-JWT cannot delegate" in binding.refusals[0].error.description
    assert calls(stack, run) == []


# ------------------------------------------------------ 8. copies of a crew


def test_a_copy_that_kept_an_earlier_runs_text_is_refused_with_the_cause(
    stack: Stack, shim: Shim
) -> None:
    crew, _ = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    first = stack.start_run(shim)
    kickoff(shim, first, crew)
    assert binding.refusals == []
    second = stack.start_run(shim)
    with shim.run(second):
        crew.copy().kickoff(inputs={"org": "globex"})
    refused = [r for r in binding.refusals if r.agent == "supervisor"]
    assert refused and refused[0].reason == Reason.CHECKSUM_MISMATCH
    assert "kickoff_for_each" in refused[0].error.description
    assert calls(stack, second) == []


def test_a_tool_given_to_a_task_but_not_to_the_agent_is_refused(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # CrewAI runs a task with the task's tools; the agent's identity (its manifest) has
    # none, so the call is refused before the tool runs, though its step allows the tool.
    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [])
    crew.tasks[0].tools = [reference_tools(shim, stack.rs_url)["list_repos"]]
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, run, crew)
    assert [(r.agent, r.tool, r.reason) for r in binding.refusals] == [
        ("supervisor", "list_repos", Reason.TOOL_NOT_ALLOWED)
    ]
    assert "as it runs now" in binding.refusals[0].error.description
    assert calls(stack, run) == []


def test_a_copy_is_judged_by_the_binding_of_its_own_shim(stack: Stack, shim: Shim) -> None:
    # Another app in the process secured a crew with the same roles first.
    other = stack.shim()
    other_crew, _ = build_crew(other, stack.rs_url)
    other_binding = secure_crew(other_crew, other, AGENT_IDS)
    crew, _ = build_crew(shim, stack.rs_url)
    binding = secure_crew(crew, shim, AGENT_IDS)
    kickoff(shim, stack.start_run(shim), crew)
    before, other_before = len(binding.refusals), len(other_binding.refusals)
    second = stack.start_run(shim)
    with shim.run(second):
        crew.copy().kickoff(inputs={"org": "globex"})
    assert binding.refusals[before].reason == Reason.CHECKSUM_MISMATCH
    assert len(other_binding.refusals) == other_before
    other.close()


def test_a_crew_kicked_off_inside_another_agents_tool_calls_as_its_own_agent(
    stack: Stack, shim: Shim, run: Run
) -> None:
    # A crew run from another agent's tool (another framework's agent, or a shim.acting
    # block): the crew's plain tool went out as that outer agent, whose acting block
    # the shim preferred to the crew's hook-announced call.
    plain = plain_tools(stack.rs_url, shim.auth())["list_repos"]
    crew, _ = solo(shim, stack, "supervisor", [[("list_repos", {})], "ok"], [plain])
    binding = secure_crew(crew, shim, AGENT_IDS)
    shim.register(reference_manifest("planner"))
    with shim.run(run), shim.acting("planner", tool="read_file"):
        crew.kickoff(inputs=INPUTS)
        # The outer agent's own calls, after the crew, are its own again.
        assert shim.current() is not None and shim.current().agent == "planner"
    assert binding.refusals == []
    assert calls(stack, run) == [("supervisor", "triage", "list_repos", ("supervisor",))]
