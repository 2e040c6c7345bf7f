"""Route policy (DESIGN §7 step 7) and the legacy-bearer path of the Verifier: each rule
refuses the request it is for, and the same request passes without the restriction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ajwt_core.errors import InsufficientScope, InvalidToken, Reason
from ajwt_core.keys import SigningKeySet
from ajwt_core.rs import RoutePolicy, Verifier
from ajwt_core.tokens import IntentTokenClaims, build_act_chain
from tests.support import AUDIENCE, ISSUER, ClaimsFactory


@pytest.fixture
def claims(make_claims: ClaimsFactory) -> IntentTokenClaims:
    return make_claims()  # planner, step plan, tool read_file, chain supervisor → planner


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (RoutePolicy.of(scopes=["repo:write"]), Reason.SCOPE_EXCEEDED),
        (RoutePolicy.of(workflows=["other-flow"]), Reason.WORKFLOW_NOT_ALLOWED),
        (RoutePolicy.of(steps=["patch"]), Reason.STEP_NOT_ALLOWED),
        (RoutePolicy.of(tools=["create_pull_request"]), Reason.TOOL_NOT_ALLOWED),
        (RoutePolicy.of(agents=["patcher"]), Reason.AGENT_NOT_ALLOWED),
        (RoutePolicy.of(max_delegation_depth=0), Reason.DELEGATION_TOO_DEEP),
        (RoutePolicy.of(require_shim_checksum=True), Reason.SHIM_CHECKSUM_REQUIRED),
    ],
)
def test_each_policy_rule_refuses_what_it_restricts(
    policy: RoutePolicy, reason: Reason, claims: IntentTokenClaims
) -> None:
    with pytest.raises(InsufficientScope) as info:
        policy.check(claims, None, {"a" * 64})
    assert info.value.reason == reason
    assert info.value.status_code == 403


def test_the_same_request_passes_a_policy_that_allows_it(claims: IntentTokenClaims) -> None:
    RoutePolicy.of(
        scopes=["repo:read"],
        workflows=["vuln-patch"],
        steps=["plan"],
        tools=["read_file"],
        agents=["planner"],
        max_delegation_depth=1,
        require_shim_checksum=True,
    ).check(claims, "sha256=" + "a" * 64, {"a" * 64})


def test_deeper_chains_are_refused_by_depth(make_claims: ClaimsFactory) -> None:
    deep = make_claims(act=build_act_chain(["supervisor", "planner", "classifier", "planner"]))
    with pytest.raises(InsufficientScope):
        RoutePolicy.of(max_delegation_depth=2).check(deep)
    RoutePolicy.of(max_delegation_depth=3).check(deep)


def _verify(verifier: Verifier, token: str, policy: RoutePolicy) -> Any:
    return asyncio.run(
        verifier.verify(
            method="GET",
            url=AUDIENCE + "/repos",
            headers=[("authorization", f"Bearer {token}")],
            body=b"",
            policy=policy,
        )
    )


def test_bearer_tokens_only_where_the_route_allows_them() -> None:
    async def legacy(token: str) -> dict[str, Any]:
        if token != "good-legacy-token":
            raise ValueError("a legacy verifier's own error")
        return {"sub": "service-account"}

    verifier = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=SigningKeySet.generate().verification_keys(),
        bearer_verifier=legacy,
    )
    with pytest.raises(InvalidToken) as info:
        _verify(verifier, "good-legacy-token", RoutePolicy())
    assert info.value.reason == Reason.BEARER_NOT_ALLOWED
    allowed = RoutePolicy.of(allow_bearer=True)
    assert _verify(verifier, "good-legacy-token", allowed).bearer_claims == {
        "sub": "service-account"
    }
    with pytest.raises(InvalidToken) as info:  # the legacy verifier's failure: a 401, no 500
        _verify(verifier, "forged", allowed)
    assert info.value.reason == Reason.BAD_SIGNATURE
