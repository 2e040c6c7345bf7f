"""The LangGraph adapter as the core's CLI sees it (entry point ``ajwt_core.adapters``):
``ajwt workflow export module:app`` and ``ajwt agents manifest module:app`` on a
compiled LangGraph app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.pregel import Pregel

from ajwt_core.checksum import AgentManifest
from ajwt_langchain.agents import agent_manifests
from ajwt_langchain.draft import draft_workflow

__all__ = ["LangGraphAdapter", "adapter"]


class LangGraphAdapter:
    """:class:`ajwt_core.adapters.FrameworkAdapter` for compiled LangGraph apps.

    >>> from ajwt_core.adapters import FrameworkAdapter
    >>> isinstance(adapter, FrameworkAdapter), adapter.recognises(object())
    (True, False)
    """

    name = "langgraph"

    def recognises(self, app: object) -> bool:
        return isinstance(app, Pregel)

    def manifests(self, app: object) -> Sequence[AgentManifest]:
        assert isinstance(app, Pregel)
        return agent_manifests(app)

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, Any]:
        assert isinstance(app, Pregel)
        return draft_workflow(app, workflow_id=workflow_id, version=version)


adapter = LangGraphAdapter()
