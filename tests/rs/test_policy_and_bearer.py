"""Route policy (DESIGN §7 step 7) and the legacy-bearer path of the Verifier: each rule
refuses the request it is for, and the same request passes without the restriction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ajwt_core.errors import InsufficientScope, InvalidToken, Reason
from ajwt_core.keys import SigningKeySet
from ajwt_core.rs import RoutePolicy, Verifier
from ajwt_core.tokens import AgentClaim, IntentTokenClaims, build_act_chain
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


# ------------------------------------------------------------- pinned agent versions


def test_route_pinned_to_agent_versions_refuses_other_versions(
    make_claims: ClaimsFactory,
) -> None:
    policy = RoutePolicy.of(agent_versions={"planner": [2, 3]})

    def version(v: int) -> IntentTokenClaims:
        checksum = "sha256:" + "a" * 64
        return make_claims(
            agent=AgentClaim(id="planner", checksum=checksum, registration_id="r", version=v)
        )

    with pytest.raises(InsufficientScope) as info:
        policy.check(version(1))
    assert info.value.reason == Reason.AGENT_VERSION_NOT_ALLOWED
    assert "version 1" in info.value.description
    policy.check(version(2))
    policy.check(version(3))
    # An agent the mapping does not list is refused too.
    other = make_claims(
        agent=AgentClaim(
            id="patcher", checksum="sha256:" + "a" * 64, registration_id="r", version=2
        )
    )
    with pytest.raises(InsufficientScope) as info:
        policy.check(other)
    assert info.value.reason == Reason.AGENT_VERSION_NOT_ALLOWED


def test_route_pinned_to_agent_checksums_refuses_other_manifests(
    make_claims: ClaimsFactory,
) -> None:
    reviewed = "sha256:" + "a" * 64
    policy = RoutePolicy.of(agent_checksums=[reviewed])
    policy.check(make_claims())  # the default claims carry the reviewed checksum
    changed = make_claims(
        agent=AgentClaim(
            id="planner", checksum="sha256:" + "f" * 64, registration_id="r", version=1
        )
    )
    with pytest.raises(InsufficientScope) as info:
        policy.check(changed)
    assert info.value.reason == Reason.AGENT_CHECKSUM_NOT_ALLOWED
    assert "sha256:" + "f" * 64 in info.value.description
