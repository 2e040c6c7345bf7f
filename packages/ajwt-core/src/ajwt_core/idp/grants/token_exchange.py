"""The RFC 8693 token exchange of a hand-off (DESIGN §5.2, §6.6): the delegator's intent
token and its signed delegation assertion, exchanged for the delegate's token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from ajwt_core.dpop import VerifiedProof
from ajwt_core.errors import (
    AJWTError,
    InvalidGrant,
    Reason,
    ServerError,
)
from ajwt_core.idp.db import (
    AgentRow,
    ClientRow,
    DbSession,
    DelegationRow,
    RunRow,
    detached,
    execute_core,
)
from ajwt_core.idp.grants import INTENT_TOKEN_TYPE_URI
from ajwt_core.idp.grants.agent_checksum import AgentChecksumGrant, MintParams
from ajwt_core.idp.models import (
    TokenResponse,
)
from ajwt_core.keys import load_public_jwk
from ajwt_core.ledger import (
    EntryKind,
)
from ajwt_core.tokens import (
    IntentTokenClaims,
    decode_delegation_assertion,
    narrow_scope,
    token_hash,
)
from ajwt_core.workflow import RunState

_agents = cast(Table, AgentRow.__table__)
#: What the hand-off reads of the delegator's registration.
_DELEGATOR = select(
    _agents.c.registration_id,
    _agents.c.client_id,
    _agents.c.jwk,
    _agents.c.alg,
    _agents.c.jkt,
    _agents.c.revoked_at,
).where(_agents.c.registration_id == bindparam("registration_id"))
_INSERT_DELEGATION = insert(cast(Table, DelegationRow.__table__))


@dataclass(frozen=True)
class ExchangeParams:
    mint: MintParams
    subject_token: str
    actor_token: str
    #: RFC 8693 ``requested_token_type`` (one of ``SUBJECT_TOKEN_TYPES``): answered as
    #: the ``issued_token_type``; the A-JWT intent type when not asked.
    requested_token_type: str = INTENT_TOKEN_TYPE_URI


class TokenExchangeGrant(AgentChecksumGrant):
    """RFC 8693 token exchange: a delegator-signed hand-off to the calling agent."""

    async def exchange(
        self, client: ClientRow, proof: VerifiedProof, p: ExchangeParams
    ) -> TokenResponse:
        """Exchange the delegator's token and its delegation assertion for the delegate's
        token (DESIGN §5.2, §6.3: a hand-off, work sent back, or a consultation)."""
        issued = await self._recording_refusals(
            client, p.mint.run_id, p.mint, self._exchange(client, proof, p)
        )
        return issued.model_copy(update={"issued_token_type": p.requested_token_type})

    async def _exchange(
        self, client: ClientRow, proof: VerifiedProof, p: ExchangeParams
    ) -> TokenResponse:
        try:
            parent = await self.decode_own_token(p.subject_token)
        except ServerError:
            raise
        except AJWTError as exc:
            raise InvalidGrant(exc.reason, f"subject token refused: {exc}") from None
        if parent.intent.run_id != p.mint.run_id or parent.client_id != client.client_id:
            raise InvalidGrant(
                Reason.PARENT_TOKEN_MISMATCH, "the subject token belongs to another run or client"
            )

        async def hand_off(
            session: DbSession, run: RunRow, state: RunState, events: list[dict[str, Any]]
        ) -> str:
            return await self._hand_off(session, run, state, events, parent, p)

        return await self._mint(client, proof, p.mint, hand_off)

    async def _hand_off(
        self,
        session: DbSession,
        run: RunRow,
        state: RunState,
        events: list[dict[str, Any]],
        parent: IntentTokenClaims,
        p: ExchangeParams,
    ) -> str:
        """Check the delegation assertion against its parent token and the workflow, and
        record it (with what it moves: the delegator's step completed, or steps reopened
        when work is sent back)."""
        found = (
            await execute_core(
                session, _DELEGATOR, {"registration_id": parent.agent.registration_id}
            )
        ).first()
        delegator = None if found is None else detached(AgentRow, found)
        if delegator is None or delegator.jkt != parent.cnf.jkt:
            raise InvalidGrant(
                Reason.PARENT_TOKEN_MISMATCH, "the delegator's registration does not match"
            )
        if delegator.revoked_at is not None:
            raise InvalidGrant(Reason.AGENT_REVOKED, "the delegator has been revoked")
        key = load_public_jwk(delegator.jwk, delegator.alg)
        assertion = decode_delegation_assertion(
            p.actor_token, key, audience=self.settings.issuer, now=self.clock()
        )
        if assertion.parent != token_hash(p.subject_token):
            raise InvalidGrant(
                Reason.PARENT_TOKEN_MISMATCH, "the assertion was signed for another parent token"
            )
        if (
            assertion.run_id != run.run_id
            or assertion.intent_id != run.intent_id
            or assertion.from_step != parent.intent.step
            or assertion.iss != f"agent:{parent.agent.id}"
        ):
            raise InvalidGrant(
                Reason.INVALID_DELEGATION, "the assertion does not match the delegator's token"
            )
        if assertion.sub != f"agent:{p.mint.agent_id}":
            raise InvalidGrant(Reason.DELEGATE_MISMATCH, "the assertion delegates to another agent")
        if p.mint.step is not None and assertion.to_step != p.mint.step:
            raise InvalidGrant(Reason.INVALID_DELEGATION, "the assertion delegates another step")
        decision = state.check_delegation(
            parent.agent.id, assertion.from_step, p.mint.agent_id, assertion.to_step
        )
        target = state.workflow.steps[assertion.to_step]
        # The delegator cannot hand on more than the step (or consultation) allows (T9).
        allowed = (
            target.consult[p.mint.agent_id].scopes if decision.kind == "consult" else target.scopes
        )
        narrow_scope(assertion.scope, allowed)
        by = parent.agent.id
        if assertion.complete and decision.kind != "handoff":
            raise InvalidGrant(
                Reason.INVALID_DELEGATION,
                f"a {'consultation' if decision.kind == 'consult' else 'hand-off back'} does "
                f"not complete step {assertion.from_step!r}: only a hand-off to a later step "
                "can complete the step it is made from",
            )
        for done in decision.complete_first:
            data: dict[str, Any] = {"step": done, "agent": by, "implicit": True}
            await self._record(session, run, state, events, EntryKind.STEP_COMPLETED, data)
        # The delegator's step completed in the same request (DESIGN §6.7), with the
        # checks of the completion endpoint: the delegator's key signed the assertion for
        # its token in that step, and the step's agent, path and dependencies are checked.
        # One transaction with the delegation and the delegate's token: both or neither.
        if assertion.complete and state.check_completion(by, assertion.from_step):
            data = {"step": assertion.from_step, "agent": by, "jti": parent.jti}
            await self._record(session, run, state, events, EntryKind.STEP_COMPLETED, data)
        if decision.reopen:
            data = {
                "step": assertion.to_step,
                "visit": decision.visit,
                "reset": list(decision.reopen),
                "by": by,
            }
            await self._record(session, run, state, events, EntryKind.STEP_REOPENED, data)
        chain = [*parent.chain, p.mint.agent_id]
        assertion_hash = token_hash(p.actor_token)
        entry = await self._record(
            session,
            run,
            state,
            events,
            EntryKind.DELEGATION,
            {
                "from": by,
                "to": p.mint.agent_id,
                "from_step": assertion.from_step,
                "to_step": assertion.to_step,
                "kind": decision.kind,
                "scope": assertion.scope,
                "chain": chain,
                "assertion": assertion_hash,
                "parent": assertion.parent,
            },
        )
        try:
            await execute_core(
                session,
                _INSERT_DELEGATION,
                {
                    "jti": f"{delegator.jkt}:{assertion.jti}",
                    "run_id": run.run_id,
                    "assertion_hash": assertion_hash,
                    "seq": entry.seq,
                    "created_at": self.now(),
                },
            )
        except IntegrityError:
            raise InvalidGrant(
                Reason.REPLAYED, "the delegation assertion has been used before"
            ) from None
        return assertion.to_step
