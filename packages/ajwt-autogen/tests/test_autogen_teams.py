"""``secure_team`` on teams without hand-off tools: in a ``GraphFlow`` and a
``RoundRobinGroupChat`` each turn change is the delegation (turn delegation is on by
default there), and the API sees every call with its agent, step, tool and chain."""

from __future__ import annotations

from collections.abc import Callable

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import Team
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow, RoundRobinGroupChat

from ajwt_autogen import binding_of, secure_team
from ajwt_core.errors import Reason
from ajwt_demo.scenarios.autogen.scripted import ScriptedChatCompletionClient, call
from examples.autogen_support.app import Services, SupportTools
from examples.autogen_support.desk import Desk, SupportTeam

EXPECTED = [
    ("billing", "refund", "get_invoice", ["triage", "billing"]),
    ("billing", "refund", "issue_refund", ["triage", "billing"]),
    ("closer", "close", "close_ticket", ["triage", "billing", "closer"]),
]


def three_agents(tools: SupportTools) -> list[AssistantAgent]:
    def model(*turns: object) -> ScriptedChatCompletionClient:
        return ScriptedChatCompletionClient(list(turns), model="scripted-support-model")  # type: ignore[arg-type]

    return [
        AssistantAgent("triage", model("This is a billing question."), system_message="Route."),
        AssistantAgent(
            "billing",
            model(
                [
                    call("get_invoice", number="INV-42"),
                    call("issue_refund", number="INV-42", amount=3),
                ]
            ),
            tools=[tools.tool("get_invoice"), tools.tool("issue_refund")],
            system_message="Bill.",
        ),
        AssistantAgent(
            "closer",
            model([call("close_ticket", ticket="T-7")]),
            tools=[tools.tool("close_ticket")],
            system_message="Close.",
        ),
    ]


async def run_team(services: Services, build: Callable[[list[AssistantAgent]], Team]) -> Desk:
    shim = services.new_shim()
    tools = SupportTools(services.api_url, shim.auth())
    agents = three_agents(tools)
    team = build(agents)
    secure_team(team, shim)  # type: ignore[arg-type]
    for agent in agents:
        binding = binding_of(agent)
        assert binding is not None and binding.team is not None
    run = shim.start_run(services.admin.user_token("alice"), "support")
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
    assert desk.completed() == ["route", "refund"]


async def test_a_round_robin_refuses_the_turn_that_leaves_the_workflow(services: Services) -> None:
    def round_robin(agents: list[AssistantAgent]) -> Team:
        stop = TextMentionTermination("TERMINATE") | MaxMessageTermination(8)
        return RoundRobinGroupChat(agents, termination_condition=stop, max_turns=4)

    desk = await run_team(services, round_robin)
    assert sorted(desk.seen()) == sorted(EXPECTED)  # parallel calls: in either order
    # The fourth turn goes back to triage: 'close' may not hand work back to 'route'.
    assert desk.refusals() == [("triage", Reason.DELEGATION_NOT_ALONG_WORKFLOW.value)]
