"""Opaque workflow names in intent tokens: the privacy mode of DESIGN §5.1.

A workflow registered with ``opaque_names: true`` gets intent tokens whose workflow id,
step, tool, consulting agent, acting agent and ``act`` chain are references instead of
names: ``base64url(HMAC-SHA256(secret, "ajwt/opaque-name/v1" || JSON([workflow, kind,
name])))`` cut to 128 bits, with a secret only the IdP holds, so a name cannot be
guessed back from its reference. The same name of the same workflow always gets the
same reference (a resource server can keep a local map of them); two workflows never
share one. The IdP reveals them to an authorised client by introspection, or hands a
client the map of a workflow; :func:`reveal_names` applies such a map.

>>> from ajwt_core.workflow import reference_workflow
>>> secret = bytes(32)
>>> refs = workflow_refs(secret, reference_workflow())
>>> ref = opaque_ref(secret, "vuln-patch", "step", "plan")
>>> refs[ref], len(ref)
('plan', 22)
>>> opaque_ref(secret, "vuln-patch", "tool", "plan") == ref   # the kind is hashed too
False
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Final, Literal

from ajwt_core.errors import InvalidToken, Reason
from ajwt_core.keys import b64url
from ajwt_core.tokens import IntentTokenClaims, build_act_chain
from ajwt_core.workflow import Workflow

NameKind = Literal["workflow", "step", "tool", "agent"]
#: Bytes of HMAC output kept: 128 bits, 22 base64url characters.
REF_BYTES: Final = 16
_CONTEXT: Final = b"ajwt/opaque-name/v1"


def opaque_ref(secret: bytes, workflow_id: str, kind: NameKind, name: str) -> str:
    """The reference that stands for ``name`` (a ``kind`` of workflow ``workflow_id``)."""
    message = json.dumps([workflow_id, kind, name], ensure_ascii=False, separators=(",", ":"))
    digest = hmac.new(secret, _CONTEXT + message.encode("utf-8"), hashlib.sha256).digest()
    return b64url(digest[:REF_BYTES])


def workflow_names(workflow: Workflow) -> list[tuple[NameKind, str]]:
    """Every name of ``workflow`` a token can carry: its id, steps, tools and agents."""
    names: list[tuple[NameKind, str]] = [("workflow", workflow.id)]
    names += [("step", step) for step in workflow.steps]
    tools = {tool for step in workflow.steps.values() for tool in step.tools}
    tools |= {
        tool
        for step in workflow.steps.values()
        for consultation in step.consult.values()
        for tool in consultation.tools
    }
    names += [("tool", tool) for tool in sorted(tools)]
    names += [("agent", agent) for agent in workflow.agents()]
    return names


def workflow_refs(secret: bytes, workflow: Workflow) -> dict[str, str]:
    """``{reference: name}`` for every name of ``workflow``: the map a resource server
    keeps to read its tokens (what ``GET /workflows/{id}/{version}`` answers as
    ``opaque_names``)."""
    return {
        opaque_ref(secret, workflow.id, kind, name): name for kind, name in workflow_names(workflow)
    }


def hide_names(claims: IntentTokenClaims, ref: Callable[[NameKind, str], str]) -> IntentTokenClaims:
    """``claims`` with every workflow name replaced by ``ref(kind, name)`` and
    ``intent.opaque_names`` set (the IdP, before signing)."""
    intent = claims.intent
    hidden_intent = intent.model_copy(
        update={
            "workflow_id": ref("workflow", intent.workflow_id),
            "step": ref("step", intent.step),
            "tool": None if intent.tool is None else ref("tool", intent.tool),
            "consulted_by": None
            if intent.consulted_by is None
            else ref("agent", intent.consulted_by),
            "opaque_names": True,
        }
    )
    return claims.model_copy(
        update={
            "act": build_act_chain([ref("agent", agent) for agent in claims.chain]),
            "agent": claims.agent.model_copy(update={"id": ref("agent", claims.agent.id)}),
            "intent": hidden_intent,
        }
    )


def reveal_names(claims: IntentTokenClaims, names: Mapping[str, str]) -> IntentTokenClaims:
    """``claims`` with its references replaced by the names ``names`` maps them to, and
    ``intent.opaque_names`` cleared; claims without opaque names are returned as they are.

    A reference ``names`` does not know is refused (``InvalidToken``, reason
    ``unknown_opaque_name``): a name check cannot be made on it.
    """
    intent = claims.intent
    if not intent.opaque_names:
        return claims

    def name(ref: str) -> str:
        found = names.get(ref)
        if found is None:
            raise InvalidToken(
                Reason.UNKNOWN_OPAQUE_NAME,
                "the intent token names its workflow by references this server cannot read",
            )
        return found

    revealed_intent = intent.model_copy(
        update={
            "workflow_id": name(intent.workflow_id),
            "step": name(intent.step),
            "tool": None if intent.tool is None else name(intent.tool),
            "consulted_by": None if intent.consulted_by is None else name(intent.consulted_by),
            "opaque_names": None,
        }
    )
    return claims.model_copy(
        update={
            "act": build_act_chain([name(agent) for agent in claims.chain]),
            "agent": claims.agent.model_copy(update={"id": name(claims.agent.id)}),
            "intent": revealed_intent,
        }
    )
