"""A-JWT adapter for langchain (not yet implemented: see the tracker)."""

__all__: list[str] = []
