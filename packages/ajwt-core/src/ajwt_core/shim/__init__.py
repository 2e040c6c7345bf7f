"""The client side of A-JWT: :class:`Shim`, its acting context and its ``httpx.Auth``."""

from ajwt_core.shim.auth import AgentAuth
from ajwt_core.shim.client import Binding, IssuedToken, RegisteredAgent, Shim, ShimEvent
from ajwt_core.shim.context import AgentContext, ContextResolver, Run, current_run
from ajwt_core.shim.env import secret_from_env

__all__ = [
    "AgentAuth",
    "AgentContext",
    "Binding",
    "ContextResolver",
    "IssuedToken",
    "RegisteredAgent",
    "Run",
    "Shim",
    "ShimEvent",
    "current_run",
    "secret_from_env",
]
