"""A-JWT: per-agent identity, intent and delegation for LLM multi-agent applications."""

__version__ = "0.1.0"
