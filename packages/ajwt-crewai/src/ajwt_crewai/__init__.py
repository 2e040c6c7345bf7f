"""A-JWT adapter for crewai (not yet implemented: see the tracker)."""

__all__: list[str] = []
