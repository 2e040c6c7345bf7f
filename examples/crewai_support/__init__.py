"""A support desk as a hierarchical CrewAI crew under A-JWT, runnable offline."""
