"""The CrewAI adapter as the core's CLI finds it (entry point group ``ajwt_core.adapters``).

``ajwt workflow export MODULE:CREW`` drafts a workflow from a crew's tasks, agents and
process (:func:`~ajwt_crewai.draft.draft_workflow`) and ``ajwt agents manifest
MODULE:CREW`` prints its agents' manifests. Loading this module does not import
``crewai`` (slow, and it writes under ``$HOME``): only an app that is a CrewAI object
makes it load.

>>> adapter.recognises("a string")
False
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ajwt_core.checksum import AgentManifest

if TYPE_CHECKING:
    from crewai import Crew

__all__ = ["CrewAIAdapter", "adapter"]


def _crew(app: object) -> Crew:
    if not type(app).__module__.startswith("crewai"):
        raise TypeError(f"not a CrewAI crew: {type(app).__name__}")
    from crewai import Crew

    if not isinstance(app, Crew):
        raise TypeError(f"not a CrewAI crew: {type(app).__name__}")
    return app


class CrewAIAdapter:
    """What the core asks of the CrewAI adapter about an app
    (:class:`ajwt_core.adapters.FrameworkAdapter`)."""

    name = "crewai"

    def recognises(self, app: object) -> bool:
        try:
            _crew(app)
        except TypeError:
            return False
        return True

    def manifests(self, app: object) -> Sequence[AgentManifest]:
        from ajwt_crewai.draft import crew_manifests

        return crew_manifests(_crew(app))

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, Any]:
        from ajwt_crewai.draft import draft_workflow

        return draft_workflow(_crew(app), workflow_id=workflow_id, version=version)


adapter = CrewAIAdapter()
