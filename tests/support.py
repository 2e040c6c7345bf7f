"""Constants and types shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

from ajwt_core.tokens import IntentTokenClaims

NOW = 1_750_000_000
ISSUER = "https://idp.example"
AUDIENCE = "https://api.example"

ClaimsFactory = Callable[..., IntentTokenClaims]
