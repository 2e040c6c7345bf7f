"""Wiring mistakes get errors that point at the fix (issue 14): AutoGen names that are not
the workflow's agent ids (``agent_ids``), a person to hand off to who is not called
``user`` (``human_targets``, or ``secure_team``), and a shim without ``default_audience``
(which now works: hand-offs and completions use step tokens)."""

from __future__ import annotations

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import HandoffTermination, TextMentionTermination
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_agentchat.teams import Swarm

from ajwt_autogen import ahandover, secure_agent, secure_team
from ajwt_core.errors import AJWTError, Reason
from ajwt_core.shim import ShimEvent
from ajwt_demo.scenarios.autogen.scripted import Turn, call
from examples.autogen_support.app import Services, SupportTeam, build_team
from examples.autogen_support.desk import Desk, new_desk


def capitalised_team(services: Services, shim_kw: dict[str, str] | None = None) -> SupportTeam:
    """The support desk with AutoGen-style names: Triage, Billing, Closer."""
    shim = services.new_shim(**(shim_kw or {}))
    team = build_team(
        shim,
        services.api_url,
        secure=False,
        scripts={
            "triage": [[call("transfer_to_billing")], "TERMINATE"],  # AutoGen lower-cases it
            "billing": [[call("get_invoice", number="INV-42")], "TERMINATE"],
        },
    )
    triage = AssistantAgent(
        "Triage", team.models["triage"], handoffs=["Billing"], system_message="Route."
    )
    billing = AssistantAgent(
        "Billing",
        team.models["billing"],
        tools=[team.tools.tool("get_invoice")],
        handoffs=["user"],
        system_message="Bill.",
    )
    team.agents = {"Triage": triage, "Billing": billing}
    stop = HandoffTermination("user") | TextMentionTermination("TERMINATE")
    team.swarm = Swarm([triage, billing], termination_condition=stop)
    team.shim = shim  # type: ignore[attr-defined]
    return team


async def test_autogen_names_that_are_not_agent_ids_name_agent_ids(services: Services) -> None:
    team = capitalised_team(services)
    shim = team.shim  # type: ignore[attr-defined]
    secure_team(team.swarm, shim)
    desk = Desk(services, shim, shim.start_run(services.admin.user_token("alice"), "support"), team)
    await desk.turn("Refund INV-42.")
    await team.aclose()
    assert desk.refusals() == [("Triage", Reason.WRONG_AGENT_FOR_STEP.value)]
    [text] = [m.content for m in desk.messages() if "ajwt_reason" in getattr(m, "metadata", {})]
    assert "agent_ids={'Billing': 'billing'}" in text
    assert "human_targets" not in text  # Billing is an agent of the team, not a person
    assert desk.calls() == []


async def test_a_hand_over_refused_before_the_shim_is_told_to_observers(
    services: Services,
) -> None:
    # A turn change from an AutoGen name the workflow does not know (no agent_ids): the
    # adapter refuses before any shim operation, and observers are told all the same.
    shim = services.new_shim()
    run = shim.start_run(services.admin.user_token("alice"), "support")
    seen: list[ShimEvent] = []
    shim.subscribe(seen.append)
    with pytest.raises(AJWTError) as refused:
        await ahandover(shim, "Triage", "billing", run=run)
    assert refused.value.reason == Reason.WRONG_AGENT_FOR_STEP
    [event] = [e for e in seen if e.kind == "handoff_refused"]
    assert (event.agent, event.run_id) == ("billing", run.run_id)
    assert event.detail["from_agent"] == "Triage"
    assert event.detail["reason"] == Reason.WRONG_AGENT_FOR_STEP.value
    await shim.aclose()


async def test_mapped_names_act_as_their_workflow_agents(services: Services) -> None:
    team = capitalised_team(services)
    shim = team.shim  # type: ignore[attr-defined]
    secure_team(team.swarm, shim, agent_ids={"Triage": "triage", "Billing": "billing"})
    desk = Desk(services, shim, shim.start_run(services.admin.user_token("alice"), "support"), team)
    await desk.turn("Refund INV-42.")
    await team.aclose()
    assert desk.refusals() == [] and desk.tool_errors() == []
    assert desk.seen() == [("billing", "refund", "get_invoice", ["triage", "billing"])]


async def test_a_tool_of_an_unmapped_agent_names_agent_ids(services: Services) -> None:
    team = capitalised_team(services)
    shim = team.shim  # type: ignore[attr-defined]
    secure_team(team.swarm, shim, agent_ids={"Triage": "triage"})  # Billing forgotten
    run = shim.start_run(services.admin.user_token("alice"), "support")
    with shim.run(run):
        result = await team.agents["Billing"].run(task="Refund INV-42.")
    await team.aclose()
    [error] = [
        r.content
        for m in result.messages
        if isinstance(m, ToolCallExecutionEvent)
        for r in m.content
        if r.is_error
    ]
    assert "agent_ids={'Billing': 'billing'}" in error and error.endswith("[wrong_agent_for_step]")


def human_scripts() -> dict[str, list[Turn]]:
    return {
        "billing": [
            [call("get_invoice", number="INV-42")],
            [call("transfer_to_customer")],
            "Handed to the customer. TERMINATE",
        ]
    }


async def test_a_person_not_called_user_is_named_in_human_targets(services: Services) -> None:
    shim = services.new_shim()
    team = build_team(shim, services.api_url, secure=False, scripts=human_scripts())
    billing = AssistantAgent(
        "billing",
        team.models["billing"],
        tools=[team.tools.tool("get_invoice")],
        handoffs=["customer"],
        system_message="Bill.",
    )
    team.agents["billing"] = billing
    stop = HandoffTermination("customer") | TextMentionTermination("TERMINATE")
    team.swarm = Swarm([team.agents["triage"], billing], termination_condition=stop)
    for agent in (team.agents["triage"], billing):
        secure_agent(agent, shim)  # one by one, default human_targets=("user",)
    desk = Desk(services, shim, shim.start_run(services.admin.user_token("alice"), "support"), team)
    await desk.turn("Refund INV-42.")
    await team.aclose()
    assert desk.refusals() == [("billing", Reason.WRONG_AGENT_FOR_STEP.value)]
    [text] = [m.content for m in desk.messages() if "ajwt_reason" in getattr(m, "metadata", {})]
    assert "human_targets=['customer', 'user']" in text and "secure_team" in text


async def test_secure_team_treats_targets_outside_the_team_as_people(services: Services) -> None:
    shim = services.new_shim()
    team = build_team(shim, services.api_url, secure=False, scripts=human_scripts())
    billing = AssistantAgent(
        "billing",
        team.models["billing"],
        tools=[team.tools.tool("get_invoice")],
        handoffs=["customer"],
        system_message="Bill.",
    )
    team.agents["billing"] = billing
    stop = HandoffTermination("customer") | TextMentionTermination("TERMINATE")
    team.swarm = Swarm([team.agents["triage"], billing], termination_condition=stop)
    secure_team(team.swarm, shim)
    desk = Desk(services, shim, shim.start_run(services.admin.user_token("alice"), "support"), team)
    result = await desk.turn("Refund INV-42.")
    await team.aclose()
    assert desk.refusals() == []
    assert result.stop_reason is not None and "customer" in result.stop_reason
    assert desk.handoffs()[-1] == ("billing", "customer")
    assert [e["kind"] for e in desk.ledger()].count("delegation") == 1  # triage -> billing only


async def test_without_default_audience_hand_offs_and_completions_use_step_tokens(
    services: Services,
) -> None:
    shim = services.new_shim(default_audience=None)  # type: ignore[arg-type]
    assert shim.default_audience is None
    desk = new_desk(services, shim=shim)
    await desk.turn("Refund INV-42.")
    await desk.answer()
    await desk.team.aclose()
    assert desk.refusals() == [] and desk.tool_errors() == []
    assert [(c.agent, c.tool) for c in desk.calls()] == [
        ("billing", "get_invoice"),
        ("billing", "issue_refund"),
        ("closer", "close_ticket"),
    ]
    assert desk.calls()[-1].chain == ["triage", "billing", "closer"]
    assert desk.completed() == ["route", "refund"]
