"""The AutoGen adapter as the core's CLI finds it (entry point group ``ajwt_core.adapters``).

``ajwt workflow export MODULE:OBJECT`` drafts a workflow from an AutoGen team (or one
``AssistantAgent``) and ``ajwt agents manifest MODULE:OBJECT`` prints its agents'
manifests, through this object.

>>> from autogen_agentchat.agents import AssistantAgent
>>> from autogen_ext.models.replay import ReplayChatCompletionClient
>>> agent = AssistantAgent("writer", ReplayChatCompletionClient([]))
>>> adapter.recognises(agent), adapter.recognises("a string")
(True, False)
>>> adapter.draft_workflow(agent, workflow_id="docs", version=1)["steps"]
{'writer': {'agent': 'writer', 'tools': []}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat

from ajwt_autogen.draft import draft_workflow, team_manifests
from ajwt_core.checksum import AgentManifest

__all__ = ["AutoGenAdapter", "adapter"]


class AutoGenAdapter:
    """What the core asks of the AutoGen adapter about an app
    (:class:`ajwt_core.adapters.FrameworkAdapter`)."""

    name = "autogen"

    def recognises(self, app: object) -> bool:
        return isinstance(app, BaseGroupChat | AssistantAgent)

    def manifests(self, app: object) -> Sequence[AgentManifest]:
        if not isinstance(app, BaseGroupChat | AssistantAgent):
            raise TypeError(f"not an AutoGen team or AssistantAgent: {type(app).__name__}")
        return team_manifests(app)

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, Any]:
        if not isinstance(app, BaseGroupChat | AssistantAgent):
            raise TypeError(f"not an AutoGen team or AssistantAgent: {type(app).__name__}")
        return draft_workflow(app, workflow_id=workflow_id, version=version)


adapter = AutoGenAdapter()
