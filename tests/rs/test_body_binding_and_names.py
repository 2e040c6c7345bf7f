"""Body binding as a route policy (DESIGN §5.3, §7 step 4) and the opaque names of
privacy-mode tokens at a resource server (DESIGN §5.1): each refusal, and the request
the same route still passes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.errors import Reason
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.opaque import NameKind, hide_names, opaque_ref, workflow_refs
from ajwt_core.rs import (
    AJWTMiddleware,
    IntrospectionNames,
    NameMap,
    Route,
    RoutePolicy,
    Verifier,
)
from ajwt_core.tokens import IntentTokenClaims, encode_intent_token
from ajwt_core.workflow import reference_workflow
from tests.rs.asgi import Reply, call, echo
from tests.support import AUDIENCE, ISSUER, NOW, ClaimsFactory

URL = AUDIENCE + "/repos/acme/pulls"
BODY = b'{"title": "Bump lodash"}'
SECRET = bytes(range(32))


def proof(key: PopKey, token: str, method: str, body: bytes | None) -> dict[str, str]:
    """Headers with a proof; ``body=None``: a plain RFC 9449 proof (no ``bh``)."""
    dpop = create_proof(key, method, URL, token=token, body=body, now=NOW)
    return {"authorization": f"DPoP {token}", "dpop": dpop}


def app_with(verifier: Verifier, **policy: Any) -> AJWTMiddleware:
    return AJWTMiddleware(
        echo,
        verifier=verifier,
        routes=[Route("*", "/repos/{repo}/pulls", RoutePolicy.of(**policy))],
    )


async def send(app: AJWTMiddleware, method: str, headers: dict[str, str], body: bytes) -> Reply:
    return await call(
        app, method=method, raw_path=b"/repos/acme/pulls", headers=headers.items(), body=body
    )


@pytest.fixture
def token(idp_keys: SigningKeySet, make_claims: ClaimsFactory) -> str:
    return encode_intent_token(make_claims(), idp_keys.active)


# ------------------------------------------------------------------ body binding


async def test_by_default_a_request_with_a_body_needs_bh(
    verifier: Verifier, agent_key: PopKey, token: str
) -> None:
    app = app_with(verifier)
    plain = await send(app, "POST", proof(agent_key, token, "POST", None), BODY)
    assert (plain.status, plain.reason) == (401, Reason.BODY_HASH_MISSING)
    bound = await send(app, "POST", proof(agent_key, token, "POST", BODY), BODY)
    assert bound.status == 200, bound.body


async def test_by_default_a_plain_rfc9449_proof_passes_without_a_body(
    verifier: Verifier, agent_key: PopKey, token: str
) -> None:
    app = app_with(verifier)
    reply = await send(app, "GET", proof(agent_key, token, "GET", None), b"")
    assert reply.status == 200, reply.body
    # A bh that is there is still checked: this one is for another body.
    wrong = await send(app, "GET", proof(agent_key, token, "GET", b"{}"), b"")
    assert (wrong.status, wrong.reason) == (401, Reason.BODY_HASH_MISMATCH)


async def test_a_route_may_accept_plain_rfc9449_proofs_with_a_body(
    verifier: Verifier, agent_key: PopKey, token: str
) -> None:
    app = app_with(verifier, body_binding="optional")
    reply = await send(app, "POST", proof(agent_key, token, "POST", None), BODY)
    assert reply.status == 200, reply.body
    assert reply.json()["body"] == BODY.decode()
    swapped = await send(app, "POST", proof(agent_key, token, "POST", b"{}"), BODY)
    assert (swapped.status, swapped.reason) == (401, Reason.BODY_HASH_MISMATCH)


async def test_a_route_may_require_bh_on_every_request(
    verifier: Verifier, agent_key: PopKey, token: str
) -> None:
    app = app_with(verifier, body_binding="required")
    plain = await send(app, "GET", proof(agent_key, token, "GET", None), b"")
    assert (plain.status, plain.reason) == (401, Reason.BODY_HASH_MISSING)
    bound = await send(app, "GET", proof(agent_key, token, "GET", b""), b"")
    assert bound.status == 200, bound.body


def test_an_unknown_body_binding_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="always"):
        RoutePolicy.of(body_binding="always")


# ------------------------------------------------------------------ opaque names


def hidden_token(claims: IntentTokenClaims, keys: SigningKeySet, secret: bytes = SECRET) -> str:
    def ref(kind: NameKind, name: str) -> str:
        return opaque_ref(secret, "vuln-patch", kind, name)

    return encode_intent_token(hide_names(claims, ref), keys.active)


def name_app(verifier: Verifier) -> AJWTMiddleware:
    # The planner, in step plan, with read_file: the names the route is written with.
    return app_with(
        verifier, steps=["plan"], tools=["read_file"], agents=["planner"], workflows=["vuln-patch"]
    )


def verifier_with(idp_keys: SigningKeySet, names: Any) -> Verifier:
    return Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=idp_keys.verification_keys(),
        names=names,
        clock=lambda: NOW + 1,
    )


async def test_without_a_resolver_name_rules_refuse_opaque_tokens(
    verifier: Verifier, idp_keys: SigningKeySet, agent_key: PopKey, make_claims: ClaimsFactory
) -> None:
    token = hidden_token(make_claims(), idp_keys)
    reply = await send(name_app(verifier), "GET", proof(agent_key, token, "GET", b""), b"")
    assert (reply.status, reply.reason) == (403, Reason.WORKFLOW_NOT_ALLOWED)
    # A route without name rules serves it (scopes are not hidden).
    scoped = app_with(verifier, scopes=["repo:read"])
    reply = await send(scoped, "GET", proof(agent_key, token, "GET", b""), b"")
    assert reply.status == 200, reply.body


async def test_a_local_name_map_keeps_name_rules_working(
    idp_keys: SigningKeySet, agent_key: PopKey, make_claims: ClaimsFactory
) -> None:
    names = NameMap.from_workflows([{"opaque_names": workflow_refs(SECRET, reference_workflow())}])
    app = name_app(verifier_with(idp_keys, names))
    token = hidden_token(make_claims(), idp_keys)
    reply = await send(app, "GET", proof(agent_key, token, "GET", b""), b"")
    assert reply.status == 200, reply.body
    assert reply.json()["agent"] == "planner"  # the handler sees names
    # Named tokens pass through the same verifier unchanged.
    named = encode_intent_token(make_claims(jti="named"), idp_keys.active)
    assert (await send(app, "GET", proof(agent_key, named, "GET", b""), b"")).status == 200


async def test_a_local_name_map_refuses_references_it_does_not_know(
    idp_keys: SigningKeySet, agent_key: PopKey, make_claims: ClaimsFactory
) -> None:
    names = NameMap(workflow_refs(SECRET, reference_workflow()))
    app = name_app(verifier_with(idp_keys, names))
    token = hidden_token(make_claims(), idp_keys, secret=bytes(32))
    reply = await send(app, "GET", proof(agent_key, token, "GET", b""), b"")
    assert (reply.status, reply.reason) == (401, Reason.UNKNOWN_OPAQUE_NAME)


def introspection(answer: Callable[[dict[str, str]], httpx.Response]) -> IntrospectionNames:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Basic ")
        form = dict(httpx.QueryParams(request.content.decode()))
        return answer(form)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return IntrospectionNames(ISSUER + "/introspect", auth=("rs", "secret"), client=client)


async def test_introspection_reveals_names_once_per_token(
    idp_keys: SigningKeySet, agent_key: PopKey, make_claims: ClaimsFactory
) -> None:
    claims = make_claims()
    calls: list[str] = []

    def answer(form: dict[str, str]) -> httpx.Response:
        calls.append(form["token"])
        body = {"active": True, **claims.model_dump(exclude_none=True), "token_type": "DPoP"}
        return httpx.Response(200, json=body)

    app = name_app(verifier_with(idp_keys, introspection(answer)))
    token = hidden_token(claims, idp_keys)
    for _ in range(2):
        reply = await send(app, "GET", proof(agent_key, token, "GET", b""), b"")
        assert reply.status == 200, reply.body
        assert reply.json()["agent"] == "planner"
    assert calls == [token]


@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [
        (lambda claims: httpx.Response(200, json={"active": False}), 401, Reason.TOKEN_INACTIVE),
        (lambda claims: httpx.Response(500, text="boom"), 503, Reason.SERVICE_UNAVAILABLE),
        (lambda claims: httpx.Response(401, json={}), 503, Reason.SERVICE_UNAVAILABLE),
        (lambda claims: httpx.Response(200, text="<html>"), 503, Reason.SERVICE_UNAVAILABLE),
        (
            # an answer for another token
            lambda claims: httpx.Response(
                200, json={"active": True, **claims.model_dump(exclude_none=True), "jti": "x"}
            ),
            503,
            Reason.SERVICE_UNAVAILABLE,
        ),
    ],
    ids=["inactive", "idp-error", "refused-credentials", "not-json", "other-token"],
)
async def test_introspection_fails_closed(
    answer: Callable[[IntentTokenClaims], httpx.Response],
    status: int,
    reason: Reason,
    idp_keys: SigningKeySet,
    agent_key: PopKey,
    make_claims: ClaimsFactory,
) -> None:
    claims = make_claims()
    app = name_app(verifier_with(idp_keys, introspection(lambda _form: answer(claims))))
    token = hidden_token(claims, idp_keys)
    reply = await send(app, "GET", proof(agent_key, token, "GET", b""), b"")
    assert (reply.status, reply.reason) == (status, reason), reply.body
    assert "Traceback" not in json.dumps(reply.json())
