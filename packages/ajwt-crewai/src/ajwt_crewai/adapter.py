"""The CrewAI adapter as the core's CLI finds it (entry point group ``ajwt_core.adapters``).

``ajwt workflow export MODULE:APP`` drafts a workflow from a crew's tasks, agents and
process (:func:`~ajwt_crewai.draft.draft_workflow`) and ``ajwt agents manifest
MODULE:APP`` prints its agents' manifests. ``APP`` is a crew, or a pair
``(crew, {role: agent id})`` (an attribute, or a factory returning it: ``MODULE:f()``):
the mapping ``secure_crew(crew, shim, agents)`` takes, so that the CLI's agent ids, and
the checksums it prints, are the app's (without one, the ids the crew was secured with
in this process, else :func:`~ajwt_crewai.manifest.default_agent_id` of each role).
Loading this module does not import ``crewai`` (slow, and it writes under ``$HOME``):
only an app that is a CrewAI object makes it load.

>>> adapter.recognises("a string"), adapter.recognises(("a", {"Writer": "writer"}))
(False, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _crew_and_ids(app: object) -> tuple[Crew, Mapping[str, str] | None]:
    """A crew, or a ``(crew, {role: agent id})`` pair."""
    if isinstance(app, tuple) and len(app) == 2 and isinstance(app[1], Mapping):
        ids: Mapping[Any, Any] = app[1]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in ids.items()):
            raise TypeError("the agent ids of a (crew, agent_ids) pair map role to id (str)")
        return _crew(app[0]), ids
    return _crew(app), None


class CrewAIAdapter:
    """What the core asks of the CrewAI adapter about an app
    (:class:`ajwt_core.adapters.FrameworkAdapter`)."""

    name = "crewai"

    def recognises(self, app: object) -> bool:
        try:
            _crew_and_ids(app)
        except TypeError:
            return False
        return True

    def manifests(self, app: object) -> Sequence[AgentManifest]:
        from ajwt_crewai.draft import crew_manifests

        crew, agent_ids = _crew_and_ids(app)
        return crew_manifests(crew, agent_ids=agent_ids)

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, Any]:
        from ajwt_crewai.draft import draft_workflow

        crew, agent_ids = _crew_and_ids(app)
        return draft_workflow(crew, workflow_id=workflow_id, version=version, agent_ids=agent_ids)


adapter = CrewAIAdapter()
