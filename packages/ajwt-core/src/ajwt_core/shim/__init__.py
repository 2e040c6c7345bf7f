"""The client side of A-JWT: :class:`Shim`, its acting context and its ``httpx.Auth``."""

from ajwt_core.shim.auth import AgentAuth
from ajwt_core.shim.client import Binding, IssuedToken, RegisteredAgent, Shim, ShimEvent
from ajwt_core.shim.context import AgentContext, ContextResolver, Run, current_run

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
]
