"""A-JWT adapter for autogen (not yet implemented: see the tracker)."""

__all__: list[str] = []
