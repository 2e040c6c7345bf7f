"""Reading the live agent (``RegisteredAgent.live_checksum``): a manifest that cannot be
serialised is a typed refusal, never a pydantic error."""

from __future__ import annotations

from typing import Any

import pytest

from ajwt_core.checksum import AgentManifest, PromptSpec, ToolSpec
from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.keys import PopKey
from ajwt_core.shim.client import RegisteredAgent


def _agent(tool: ToolSpec) -> RegisteredAgent:
    def live() -> AgentManifest:
        return AgentManifest(agent_id="planner", prompt=PromptSpec(template="Plan."), tools=[tool])

    return RegisteredAgent(
        agent_id="planner",
        source=live,
        checksum="",
        key=PopKey.generate("ES256"),
        registration_id="reg-1",
        version=1,
        expires_at=0,
    )


def test_a_tool_dict_changed_in_place_beyond_json_is_refused_with_a_reason() -> None:
    tool = ToolSpec(name="read_file", parameters={"type": "object"})
    agent = _agent(tool)
    # Legitimate: the spec as built is read, and its checksum taken.
    assert agent.live_checksum().startswith("sha256:")
    # Attack: its parameters changed in place afterwards, nested past what JSON
    # serialisation takes (the spec is reused as built, not validated again).
    deep: dict[str, Any] = {}
    tool.parameters["extra"] = deep
    for _ in range(5000):
        deep["d"] = deep = {}
    with pytest.raises(InvalidRequest) as info:
        agent.live_checksum()
    assert info.value.reason is Reason.INVALID_MANIFEST
    assert "planner" in info.value.description
