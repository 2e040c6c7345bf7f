"""Privacy mode (DESIGN §5.1): opaque workflow names in intent tokens, and revealing them."""

from __future__ import annotations

import base64
import json

import pytest

from ajwt_core.errors import InvalidToken, Reason
from ajwt_core.keys import SigningKeySet
from ajwt_core.opaque import (
    NameKind,
    hide_names,
    opaque_ref,
    reveal_names,
    workflow_names,
    workflow_refs,
)
from ajwt_core.tokens import (
    IntentTokenClaims,
    build_act_chain,
    decode_intent_token,
    encode_intent_token,
)
from ajwt_core.workflow import reference_workflow
from tests.support import AUDIENCE, ISSUER, NOW, ClaimsFactory

SECRET = bytes(range(32))
NAMES = ["vuln-patch", "supervisor", "planner", "plan", "read_file"]


def refs_of(workflow_id: str = "vuln-patch", secret: bytes = SECRET):  # type: ignore[no-untyped-def]
    def ref(kind: NameKind, name: str) -> str:
        return opaque_ref(secret, workflow_id, kind, name)

    return ref


@pytest.fixture
def claims(make_claims: ClaimsFactory) -> IntentTokenClaims:
    # planner in step plan with read_file, handed on by supervisor; consulted by supervisor
    named = make_claims()
    return named.model_copy(
        update={"intent": named.intent.model_copy(update={"consulted_by": "supervisor"})}
    )


def payload_text(token: str) -> str:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def test_a_hidden_token_carries_none_of_the_names(
    claims: IntentTokenClaims, idp_keys: SigningKeySet
) -> None:
    token = encode_intent_token(hide_names(claims, refs_of()), idp_keys.active)
    text = payload_text(token)
    for name in NAMES:
        assert name not in text, name
    payload = json.loads(text)
    assert payload["intent"]["opaque_names"] is True
    # Everything a standard access-token check needs is still there, as it was.
    assert (payload["iss"], payload["aud"], payload["sub"]) == (ISSUER, AUDIENCE, "user:alice")
    assert payload["scope"] == "repo:read" and payload["cnf"] == {"jkt": claims.cnf.jkt}


def test_a_hidden_token_verifies_and_reveals_to_its_claims(
    claims: IntentTokenClaims, idp_keys: SigningKeySet
) -> None:
    token = encode_intent_token(hide_names(claims, refs_of()), idp_keys.active)
    hidden = decode_intent_token(
        token, idp_keys.verification_keys(), issuer=ISSUER, audience=AUDIENCE, now=NOW + 1
    )
    assert hidden.intent.opaque_names is True
    assert hidden.chain[-1] == hidden.agent.id  # the chain check holds on references
    names = workflow_refs(SECRET, reference_workflow())
    assert reveal_names(hidden, names) == claims


def test_reveal_refuses_a_reference_it_cannot_read(claims: IntentTokenClaims) -> None:
    hidden = hide_names(claims, refs_of(secret=bytes(32)))  # another IdP's secret
    with pytest.raises(InvalidToken) as info:
        reveal_names(hidden, workflow_refs(SECRET, reference_workflow()))
    assert info.value.reason == Reason.UNKNOWN_OPAQUE_NAME


def test_reveal_leaves_named_claims_alone(claims: IntentTokenClaims) -> None:
    assert reveal_names(claims, {}) is claims


def test_references_depend_on_secret_workflow_and_kind() -> None:
    ref = opaque_ref(SECRET, "vuln-patch", "step", "plan")
    assert ref == opaque_ref(SECRET, "vuln-patch", "step", "plan")
    assert ref != opaque_ref(bytes(32), "vuln-patch", "step", "plan")
    assert ref != opaque_ref(SECRET, "other-flow", "step", "plan")
    assert ref != opaque_ref(SECRET, "vuln-patch", "tool", "plan")
    assert len(ref) == 22 and "=" not in ref


def test_the_map_covers_every_name_a_token_can_carry() -> None:
    workflow = reference_workflow()
    names = set(workflow_refs(SECRET, workflow).values())
    assert names == {"vuln-patch", *workflow.steps, *workflow.agents()} | {
        tool for step in workflow.steps.values() for tool in step.tools
    }
    assert len(workflow_names(workflow)) == len(workflow_refs(SECRET, workflow))


def test_a_step_token_hides_its_step_and_keeps_no_tool(claims: IntentTokenClaims) -> None:
    step_token = claims.model_copy(
        update={
            "intent": claims.intent.model_copy(update={"tool": None}),
            "act": build_act_chain(["planner"]),
        }
    )
    hidden = hide_names(step_token, refs_of())
    assert hidden.intent.tool is None
    assert hidden.intent.step == opaque_ref(SECRET, "vuln-patch", "step", "plan")
