"""The verifier's token cache (``ajwt_core.rs.token_cache``): small entries keyed by the
token's SHA-256, so a changed token is never a hit, and the handler still gets the
token's full claims."""

from __future__ import annotations

import base64
import gc
import json
import secrets
import tracemalloc

import pytest

from ajwt_core.dpop import access_token_hash, create_proof
from ajwt_core.errors import InvalidToken, Reason
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.rs import RoutePolicy, Verifier
from ajwt_core.tokens import (
    AgentClaim,
    Confirmation,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    encode_intent_token,
)
from tests.rs.conftest import Caller
from tests.support import AUDIENCE, ISSUER, NOW

URL = AUDIENCE + "/repos"


def _unique_token(keys: SigningKeySet, agent: PopKey) -> str:
    """A token sharing nothing but the workflow with the others: its own run, intent,
    client, agent registration, checksum and key (the cache's worst case)."""
    hex_id = secrets.token_hex
    claims = IntentTokenClaims(
        iss=ISSUER,
        aud=AUDIENCE,
        sub="user:alice",
        client_id="app-" + hex_id(6),
        scope="repo:read repo:write",
        iat=NOW,
        nbf=NOW,
        exp=NOW + 300,
        jti=secrets.token_urlsafe(16),
        cnf=Confirmation(jkt=agent.thumbprint),
        act=build_act_chain(["supervisor", "planner"]),
        agent=AgentClaim(
            id="planner",
            checksum="sha256:" + hex_id(32),
            registration_id="reg-" + secrets.token_urlsafe(12),
            version=1,
        ),
        intent=IntentClaim(
            id="intent-" + secrets.token_urlsafe(12),
            initiated_by="user:alice",
            workflow_id="vuln-patch",
            workflow_version=1,
            workflow_hash="sha256:" + "b" * 64,
            run_id="run-" + secrets.token_urlsafe(12),
            step="plan",
            tool="read_file",
            step_sequence_hash="sha256:" + hex_id(32),
        ),
    )
    return encode_intent_token(claims, keys.active)


async def test_an_entry_takes_at_most_1536_bytes(idp_keys: SigningKeySet) -> None:
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, keys=idp_keys.verification_keys(), clock=lambda: NOW
    )
    agents = [PopKey.generate() for _ in range(4)]
    count = 400
    tokens = [_unique_token(idp_keys, agents[i % 4]) for i in range(count)]
    warm = _unique_token(idp_keys, agents[0])
    await verifier._decode(warm, access_token_hash(warm), NOW)  # first-call allocations
    access_token_hash.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        for token in tokens:
            await verifier._decode(token, access_token_hash(token), NOW)
        gc.collect()
        kept = tracemalloc.take_snapshot().traces
    finally:
        tracemalloc.stop()
    assert len(verifier._cache) == count + 1
    # Counted: the entry, its key (ath), its identifiers, the dict slot, and the shared
    # ath cache's node (bounded at 1024 whatever the token cache holds). Not counted: a
    # single block over 64 KiB, which is a process-wide table growing (the interned
    # strings' table reached 3.8 MB after other tests, and doubles when an identifier
    # interned here tips it), paid once for every string the process interns.
    per_entry = sum(trace.size for trace in kept if trace.size <= 65536) / count
    print(f"{per_entry:.0f} bytes per cached token")
    assert per_entry <= 1536, f"{per_entry:.0f} bytes per cached token"


async def test_a_cached_token_changed_in_one_claim_is_verified_again_and_refused(
    verifier: Verifier, caller: Caller
) -> None:
    policy = RoutePolicy()
    headers = caller.headers("GET", URL)
    await verifier.verify(method="GET", url=URL, headers=headers.items(), body=b"", policy=policy)
    header, payload, signature = caller.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "repo:read repo:write repo:admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = Caller(token=f"{header}.{forged_payload}.{signature}", key=caller.key)
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify(
            method="GET",
            url=URL,
            headers=forged.headers("GET", URL).items(),
            body=b"",
            policy=policy,
        )
    assert refused.value.reason == Reason.BAD_SIGNATURE


async def test_the_handler_gets_the_full_claims_of_a_cached_token(
    verifier: Verifier, caller: Caller
) -> None:
    policy = RoutePolicy.of(scopes=["repo:read"])
    first = await verifier.verify(
        method="GET", url=URL, headers=caller.headers("GET", URL).items(), body=b"", policy=policy
    )
    again = await verifier.verify(
        method="GET", url=URL, headers=caller.headers("GET", URL).items(), body=b"", policy=policy
    )
    assert again.claims == first.claims
    assert again.claims is not None and again.claims.intent.step_sequence_hash
    assert again.chain == ["supervisor", "planner"]
    assert again.facts is not None and again.facts.scopes == {"repo:read", "repo:write"}


async def test_a_cached_token_past_its_expiry_is_refused(
    idp_keys: SigningKeySet, caller: Caller
) -> None:
    now = [NOW + 1.0]
    verifier = Verifier(
        issuer=ISSUER, audience=AUDIENCE, keys=idp_keys.verification_keys(), clock=lambda: now[0]
    )
    policy = RoutePolicy()
    await verifier.verify(
        method="GET", url=URL, headers=caller.headers("GET", URL).items(), body=b"", policy=policy
    )
    now[0] = NOW + 300 + 120  # past exp and the leeway
    proof = create_proof(caller.key, "GET", URL, token=caller.token, now=now[0])
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify(
            method="GET",
            url=URL,
            headers=[("authorization", f"DPoP {caller.token}"), ("dpop", proof)],
            body=b"",
            policy=policy,
        )
    assert refused.value.reason == Reason.TOKEN_EXPIRED


def test_module_doctests_pass() -> None:
    import doctest

    import ajwt_core.rs.revocation_feed
    import ajwt_core.rs.token_cache

    for module in (ajwt_core.rs.token_cache, ajwt_core.rs.revocation_feed):
        assert doctest.testmod(module).failed == 0, module.__name__


async def test_a_non_ascii_token_is_malformed_not_an_error(verifier: Verifier) -> None:
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify(
            method="GET",
            url=URL,
            headers=[("authorization", "DPoP é.e30.sig"), ("dpop", "x.y.z")],
            body=b"",
            policy=RoutePolicy(),
        )
    assert refused.value.reason == Reason.MALFORMED_TOKEN
