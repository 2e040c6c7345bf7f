"""A-JWT: per-agent identity, intent and delegation for LLM multi-agent applications.

The names most programs need are importable from here; each is loaded on first use, so
``import ajwt_core`` stays cheap and an extra that is not installed fails only when its
name is used:

>>> from ajwt_core import AJWTError, Reason
>>> issubclass(AJWTError, Exception), Reason.REPLAYED.value
(True, 'replayed')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "AJWTError": "ajwt_core.errors",
    "Reason": "ajwt_core.errors",
    "Shim": "ajwt_core.shim",
    "Run": "ajwt_core.shim",
    "AgentManifest": "ajwt_core.checksum",
    "Workflow": "ajwt_core.workflow",
    "Verifier": "ajwt_core.rs",
    "IntentTokenClaims": "ajwt_core.tokens",
    "RoutePolicy": "ajwt_core.rs",
    "AJWTMiddleware": "ajwt_core.rs",
    "JWKSCache": "ajwt_core.rs",
}

if TYPE_CHECKING:
    from ajwt_core.checksum import AgentManifest
    from ajwt_core.errors import AJWTError, Reason
    from ajwt_core.rs import AJWTMiddleware, JWKSCache, RoutePolicy, Verifier
    from ajwt_core.shim import Run, Shim
    from ajwt_core.tokens import IntentTokenClaims
    from ajwt_core.workflow import Workflow

__all__ = [
    "AJWTError",
    "AJWTMiddleware",
    "AgentManifest",
    "IntentTokenClaims",
    "JWKSCache",
    "Reason",
    "RoutePolicy",
    "Run",
    "Shim",
    "Verifier",
    "Workflow",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ajwt_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
