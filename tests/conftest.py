"""Shared fixtures: a fixed clock, IdP keys, and a factory for valid intent-token claims."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.tokens import (
    AgentClaim,
    Confirmation,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
)
from tests.support import AUDIENCE, ISSUER, NOW, ClaimsFactory

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The OpenTelemetry spans ended during the test (the SDK is loaded only here)."""
    from tests.otel import listen

    yield from listen()


@pytest.fixture
def idp_keys() -> SigningKeySet:
    return SigningKeySet.generate()


@pytest.fixture
def agent_key() -> PopKey:
    return PopKey.generate()


@pytest.fixture
def make_claims(agent_key: PopKey) -> ClaimsFactory:
    """Valid intent-token claims at ``NOW``; keyword overrides replace top-level claims."""

    def factory(**overrides: Any) -> IntentTokenClaims:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user:alice",
            "client_id": "patcher-app",
            "scope": "repo:read",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 300,
            "jti": "jti-1",
            "cnf": Confirmation(jkt=agent_key.thumbprint),
            "act": build_act_chain(["supervisor", "planner"]),
            "agent": AgentClaim(
                id="planner", checksum="sha256:" + "a" * 64, registration_id="reg-1", version=1
            ),
            "intent": IntentClaim(
                id="intent-1",
                initiated_by="user:alice",
                workflow_id="vuln-patch",
                workflow_version=1,
                workflow_hash="sha256:" + "b" * 64,
                run_id="run-1",
                step="plan",
                tool="read_file",
                step_sequence_hash="sha256:" + "c" * 64,
            ),
        }
        claims.update(overrides)
        return IntentTokenClaims(**claims)

    return factory
