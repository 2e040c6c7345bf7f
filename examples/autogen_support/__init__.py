"""A support desk as an AutoGen ``Swarm`` under A-JWT (see :mod:`examples.autogen_support.app`)."""
