"""``secure_team`` on teams without hand-off tools: in a ``GraphFlow`` and a
``RoundRobinGroupChat`` each turn change is the delegation (turn delegation is on by
default there), and the API sees every call with its agent, step, tool and chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import Team
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.teams import (
    DiGraphBuilder,
    GraphFlow,
    RoundRobinGroupChat,
    SelectorGroupChat,
)

from ajwt_autogen import binding_of, secure_team
from ajwt_core.errors import Reason
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient, call
from examples.autogen_support.app import WORKFLOW, Services, SupportTools
from examples.autogen_support.desk import Desk, SupportTeam

EXPECTED = [
    ("billing", "refund", "get_invoice", ["triage", "billing"]),
    ("billing", "refund", "issue_refund", ["triage", "billing"]),
    ("closer", "close", "close_ticket", ["triage", "billing", "closer"]),
]


def three_agents(
    tools: SupportTools, more: Mapping[str, Sequence[object]] | None = None
) -> list[AssistantAgent]:
    """``more``: further scripted turns of an agent (by name), after its first."""

    def model(name: str, first: object) -> ScriptedChatCompletionClient:
        turns = [first, *(more or {}).get(name, ())]
        return ScriptedChatCompletionClient(turns, model="scripted-support-model")  # type: ignore[arg-type]

    return [
        AssistantAgent(
            "triage", model("triage", "This is a billing question."), system_message="Route."
        ),
        AssistantAgent(
            "billing",
            model(
                "billing",
                [
                    call("get_invoice", number="INV-42"),
                    call("issue_refund", number="INV-42", amount=3),
                ],
            ),
            tools=[tools.tool("get_invoice"), tools.tool("issue_refund")],
            system_message="Bill.",
        ),
        AssistantAgent(
            "closer",
            model("closer", [call("close_ticket", ticket="T-7")]),
            tools=[tools.tool("close_ticket")],
            system_message="Close.",
        ),
    ]


async def run_team(
    services: Services,
    build: Callable[[list[AssistantAgent]], Team],
    agents_of: Callable[[SupportTools], list[AssistantAgent]] = three_agents,
    workflow: str = "support",
) -> Desk:
    shim = services.new_shim()
    tools = SupportTools(services.api_url, shim.auth())
    agents = agents_of(tools)
    team = build(agents)
    secure_team(team, shim)  # type: ignore[arg-type]
    for agent in agents:
        binding = binding_of(agent)
        assert binding is not None and binding.team is not None
    run = shim.start_run(services.admin.user_token("alice"), workflow)
    desk = Desk(services, shim, run, SupportTeam(team, {a.name: a for a in agents}, {}, tools))  # type: ignore[arg-type]
    with shim.run(run):
        desk.results.append(await team.run(task="Refund INV-42."))
    await tools.aclose()
    return desk


async def test_a_graph_flow_delegates_along_its_edges(services: Services) -> None:
    def graph(agents: list[AssistantAgent]) -> Team:
        builder = DiGraphBuilder()
        for agent in agents:
            builder.add_node(agent)
        builder.add_edge(agents[0], agents[1]).add_edge(agents[1], agents[2])
        return GraphFlow(agents, graph=builder.build())

    desk = await run_team(services, graph)
    assert desk.refusals() == [] and desk.tool_errors() == []
    # The order of one reply's parallel tool calls is AutoGen's (0.7.0 runs them
    # concurrently); each call's agent, step, tool and chain is what is checked.
    assert sorted(desk.seen()) == sorted(EXPECTED)
    # Each node's step completes when its turn ends: the last one's too, at the end of
    # the run block (no acomplete by the app).
    assert desk.completed() == ["route", "refund", "close"]
    assert services.admin.run(desk.run.run_id)["finished"] is True


# The support workflow with its closer after triage too: a fan-out, and a join after it.
JOIN: dict[str, Any] = {
    "id": "support-join",
    "version": 1,
    "steps": {
        **WORKFLOW["steps"],
        "close": {**WORKFLOW["steps"]["close"], "after": ["route"]},
        "report": {"agent": "reporter", "tools": [], "after": ["refund", "close"]},
    },
}


async def test_a_graph_flow_join_runs_once_every_branch_is_done(services: Services) -> None:
    # Triage fans out to billing and closer, and the reporter joins them. Turn delegation
    # hands the join over from whichever branch spoke last: the other branch's step was
    # completed when its turn ended, so the IdP's all-of join holds (a newcomer's
    # GraphFlow was refused here with dependencies_incomplete).
    services.admin.register_workflow(JOIN)

    def four_agents(tools: SupportTools) -> list[AssistantAgent]:
        reporter = ScriptedChatCompletionClient(["Refunded and closed."], model="scripted")  # type: ignore[list-item]
        return [
            *three_agents(tools),
            AssistantAgent("reporter", reporter, system_message="Sum up."),
        ]

    def graph(agents: list[AssistantAgent]) -> Team:
        triage, billing, closer, reporter = agents
        builder = DiGraphBuilder()
        for agent in agents:
            builder.add_node(agent)
        builder.add_edge(triage, billing).add_edge(triage, closer)
        builder.add_edge(billing, reporter).add_edge(closer, reporter)
        return GraphFlow(agents, graph=builder.build())

    desk = await run_team(services, graph, four_agents, workflow="support-join")
    assert desk.refusals() == [] and desk.tool_errors() == []
    assert sorted(desk.seen()) == sorted(
        [*EXPECTED[:2], ("closer", "close", "close_ticket", ["triage", "closer"])]
    )
    assert sorted(desk.completed()) == ["close", "refund", "report", "route"]
    assert any(m.source == "reporter" for m in desk.messages())
    assert services.admin.run(desk.run.run_id)["finished"] is True


async def test_a_selector_turn_back_acts_again_in_its_completed_step(
    services: Services,
) -> None:
    # triage, billing, triage, billing, closer: turns 3 and 4 go back to an agent in
    # the step it completed (max_visits 1): a turn back, nothing signed. Billing's call
    # is a further call in 'refund' with its first chain, minted by the IdP (a
    # newcomer's SelectorGroupChat was refused here with visit_limit_reached, against
    # autogen.md).
    order = iter(["triage", "billing", "triage", "billing", "closer"])

    def selector(agents: list[AssistantAgent]) -> Team:
        chooser = ScriptedChatCompletionClient([], model="scripted-selector")
        stop = TextMentionTermination("TERMINATE") | MaxMessageTermination(20)
        return SelectorGroupChat(
            agents,
            chooser,
            termination_condition=stop,
            max_turns=5,
            allow_repeated_speaker=True,
            selector_func=lambda _: next(order, None),
        )

    def again(tools: SupportTools) -> list[AssistantAgent]:
        more = {"triage": ["Nothing more."], "billing": [[call("get_invoice", number="INV-42")]]}
        return three_agents(tools, more)

    desk = await run_team(services, selector, again)
    assert desk.refusals() == [] and desk.tool_errors() == []
    assert [(a, s, t, c) for a, s, t, c in desk.seen() if t == "get_invoice"] == [
        ("billing", "refund", "get_invoice", ["triage", "billing"])
    ] * 2
    assert ("closer", "close", "close_ticket", ["triage", "billing", "closer"]) in desk.seen()
    # The turns back reopened nothing: two delegations, each step completed once.
    assert [e["kind"] for e in desk.ledger()].count("delegation") == 2
    assert desk.completed() == ["route", "refund"]


async def test_a_turn_after_the_run_finished_is_a_recorded_re_entry(services: Services) -> None:
    # A round robin going on after the closer: turn 4 goes back to triage (completing
    # the closer's step: every step is now done) and turn 5 to billing, whose call is a
    # further call in its completed step, minted by the IdP and in the ledger (design
    # §6: a run per request is the tighter boundary).
    def round_robin(agents: list[AssistantAgent]) -> Team:
        stop = TextMentionTermination("TERMINATE") | MaxMessageTermination(20)
        return RoundRobinGroupChat(agents, termination_condition=stop, max_turns=5)

    def again(tools: SupportTools) -> list[AssistantAgent]:
        more = {"triage": ["Nothing more."], "billing": [[call("get_invoice", number="INV-42")]]}
        return three_agents(tools, more)

    desk = await run_team(services, round_robin, again)
    assert desk.refusals() == [] and desk.tool_errors() == []
    assert desk.completed() == ["route", "refund", "close"]
    again_seen = [c for c in desk.seen() if c[2] == "get_invoice"]
    assert again_seen[-1] == ("billing", "refund", "get_invoice", ["triage", "billing"])
    kinds = [e["kind"] for e in desk.ledger()]
    assert kinds[-1] == "token_minted" and kinds.index("step_completed") < len(kinds) - 1


async def test_a_round_robin_turn_before_its_step_is_due_is_still_refused(
    services: Services,
) -> None:
    # closer speaks right after triage: 'close' waits for 'refund' (an open step, not a
    # turn back), so the turn is refused and closer's model is never called.
    def out_of_order(agents: list[AssistantAgent]) -> Team:
        triage, billing, closer = agents
        stop = TextMentionTermination("TERMINATE") | MaxMessageTermination(8)
        return RoundRobinGroupChat(
            [triage, closer, billing], termination_condition=stop, max_turns=2
        )

    desk = await run_team(services, out_of_order)
    assert desk.refusals() == [("closer", Reason.DEPENDENCIES_INCOMPLETE.value)]
    assert desk.seen() == []


# The support workflow without triage, its closer sending work back to billing.
LOOP: dict[str, Any] = {
    "id": "support-loop",
    "version": 1,
    "steps": {
        "refund": {**WORKFLOW["steps"]["refund"], "after": [], "max_visits": 2},
        "close": {**WORKFLOW["steps"]["close"], "loop_to": ["refund"]},
        "report": {"agent": "reporter", "tools": [], "after": ["close"]},
    },
}


def loop_agents(tools: SupportTools, verdicts: Sequence[str]) -> list[AssistantAgent]:
    def model(*turns: object) -> ScriptedChatCompletionClient:
        return ScriptedChatCompletionClient(list(turns), model="scripted")  # type: ignore[arg-type]

    invoice = [call("get_invoice", number="INV-42")]
    return [
        AssistantAgent(
            "billing",
            model(*[invoice] * len(verdicts)),
            tools=[tools.tool("get_invoice"), tools.tool("issue_refund")],
            system_message="Bill.",
        ),
        AssistantAgent(
            "closer",
            model(*verdicts),
            tools=[tools.tool("close_ticket")],
            system_message="Check.",
        ),
        AssistantAgent("reporter", model("Refunded."), system_message="Sum up."),
    ]


def loop_graph(agents: list[AssistantAgent]) -> Team:
    billing, closer, reporter = agents
    builder = DiGraphBuilder()
    for agent in agents:
        builder.add_node(agent)
    builder.add_edge(billing, closer)
    builder.add_edge(closer, billing, condition="REVISE")
    builder.add_edge(closer, reporter, condition="APPROVE")
    builder.set_entry_point(billing)
    return GraphFlow(agents, graph=builder.build(), max_turns=8)


@pytest.fixture(scope="module")
def loop_workflow(services: Services) -> str:
    services.admin.register_workflow(LOOP)
    return str(LOOP["id"])


async def test_a_graph_flow_loop_reopens_the_step_and_finishes(
    services: Services, loop_workflow: str
) -> None:
    # billing -> closer, which sends the work back once ("REVISE") and then approves:
    # each node's step completes when its turn ends (carried on the next request), the
    # loop back is a delegation along loop_to that reopens 'refund' for a second visit
    # (in a GraphFlow a back edge is a loop, never a return: a return would let the
    # loop go round unbounded by max_visits), and the run finishes with the reporter,
    # nothing completed by the app.
    verdicts = ["REVISE the amount.", "APPROVE"]
    desk = await run_team(
        services, loop_graph, lambda tools: loop_agents(tools, verdicts), workflow=loop_workflow
    )
    assert desk.refusals() == [] and desk.tool_errors() == []
    # The second visit's call carries the loop in its chain, on a token of its own (the
    # first visit's cached token is not reused after the loop reopened the step).
    assert [(a, s, c) for a, s, t, c in desk.seen() if t == "get_invoice"] == [
        ("billing", "refund", ["billing"]),
        ("billing", "refund", ["billing", "closer", "billing"]),
    ]
    ledger = desk.ledger()
    [reopened] = [e["data"] for e in ledger if e["kind"] == "step_reopened"]
    assert reopened["step"] == "refund" and reopened["visit"] == 2
    minted = [e["data"]["chain"] for e in ledger if e["kind"] == "token_minted"]
    assert ["billing", "closer", "billing"] in minted
    assert desk.completed().count("refund") == 2 and desk.completed().count("close") == 2
    assert services.admin.run(desk.run.run_id)["finished"] is True


async def test_a_graph_flow_loop_past_max_visits_is_refused(
    services: Services, loop_workflow: str
) -> None:
    # A third round would be refund's third visit: max_visits is 2.
    verdicts = ["REVISE the amount.", "REVISE it again.", "APPROVE"]
    desk = await run_team(
        services, loop_graph, lambda tools: loop_agents(tools, verdicts), workflow=loop_workflow
    )
    assert desk.refusals() == [("billing", Reason.VISIT_LIMIT_REACHED.value)]
    invoice_calls = [c for a, s, t, c in desk.seen() if t == "get_invoice"]
    assert len(invoice_calls) == 2  # the refused third visit called nothing


async def test_a_round_robin_loop_is_a_new_visit_bounded_by_max_visits(
    services: Services, loop_workflow: str
) -> None:
    # billing, closer, billing, closer: the third turn sends the work back along the
    # closer's loop_to (a new visit of 'refund', not a return or a re-entry), and the
    # fourth hands it on again (a delegation into the reopened 'close', not a return).
    # A newcomer's round-robin loop went round as re-entries, unbounded by max_visits.
    def round_robin(agents: list[AssistantAgent]) -> Team:
        return RoundRobinGroupChat(agents, max_turns=4)

    def billing_and_closer(tools: SupportTools) -> list[AssistantAgent]:
        return loop_agents(tools, ["REVISE the amount.", "APPROVE"])[:2]

    desk = await run_team(services, round_robin, billing_and_closer, workflow=loop_workflow)
    assert desk.refusals() == [] and desk.tool_errors() == []
    assert [c for a, s, t, c in desk.seen() if t == "get_invoice"] == [
        ["billing"],
        ["billing", "closer", "billing"],
    ]
    delegations = [
        (e["data"]["from"], e["data"]["to"], e["data"]["kind"])
        for e in desk.ledger()
        if e["kind"] == "delegation"
    ]
    assert delegations == [
        ("billing", "closer", "handoff"),
        ("closer", "billing", "loop"),
        ("billing", "closer", "handoff"),
    ]
