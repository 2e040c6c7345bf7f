"""The ``agent_checksum`` grant (DESIGN §6.5): an intent token for an agent's tool call, or
a step token, after the checks in order; refusals are written to the run's ledger.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select

from ajwt_core.dpop import VerifiedProof
from ajwt_core.errors import (
    AJWTError,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    NotFound,
    Reason,
    ServerError,
    UnauthorizedClient,
)
from ajwt_core.idp.base import IdPBase
from ajwt_core.idp.db import (
    AgentRow,
    ClientRow,
    DbSession,
    RunRow,
    detached,
    execute_core,
)
from ajwt_core.idp.grants import INTENT_TOKEN_TYPE_URI
from ajwt_core.idp.models import (
    TokenResponse,
)
from ajwt_core.ledger import (
    EntryKind,
)
from ajwt_core.opaque import hide_names, opaque_ref
from ajwt_core.tokens import (
    AgentClaim,
    Confirmation,
    IntentClaim,
    IntentTokenClaims,
    build_act_chain,
    encode_intent_token,
    format_scope,
    narrow_scope,
    parse_scope,
)
from ajwt_core.workflow import RunState


@dataclass(frozen=True)
class MintParams:
    """A mint request. No ``tool``: a step token (DESIGN §6.3), for the IdP only, whose
    ``resource`` is absent or the IdP's issuer."""

    agent_id: str
    agent_checksum: str
    run_id: str
    step: str | None
    tool: str | None
    resource: str | None
    scope: str | None = None
    input_digest: str | None = None


#: The hand-off check of a token exchange: called inside the mint's transaction, after
#: the run is locked and before the delegate's token is checked; it records the hand-off
#: and returns the step handed on.
HandOff = Callable[[DbSession, RunRow, RunState, list[dict[str, Any]]], Awaitable[str]]


_REGISTRATIONS = (
    select(
        AgentRow.registration_id,
        AgentRow.agent_id,
        AgentRow.version,
        AgentRow.checksum,
        AgentRow.jkt,
        AgentRow.expires_at,
        AgentRow.revoked_at,
        AgentRow.manifest,
    )
    .where(AgentRow.client_id == bindparam("client_id"), AgentRow.agent_id == bindparam("agent_id"))
    .order_by(AgentRow.version.desc())
)


class AgentChecksumGrant(IdPBase):
    """``grant_type=agent_checksum``: an intent token for (agent, run, step, tool), DESIGN §6.5."""

    async def mint(self, client: ClientRow, proof: VerifiedProof, p: MintParams) -> TokenResponse:
        """``grant_type=agent_checksum``: the checks of DESIGN §6.5, in order."""
        return await self._recording_refusals(client, p.run_id, p, self._mint(client, proof, p))

    async def _recording_refusals(
        self, client: ClientRow, run_id: str, p: MintParams, work: Any
    ) -> TokenResponse:
        try:
            result: TokenResponse = await work
            return result
        except ServerError:
            raise  # an outage is not a refusal, and the ledger is out of reach anyway
        except AJWTError as exc:
            await self._record_refusal(client, run_id, p, exc)
            raise

    async def _record_refusal(
        self, client: ClientRow, run_id: str, p: MintParams, exc: AJWTError
    ) -> None:
        # Only runs of the authenticated client are written to: an outsider cannot
        # fill someone else's ledger with refusals.
        async with self.db.transaction() as session:
            try:
                run = await self.db.lock_run(session, run_id)
            except NotFound:
                return
            if run.client_id != client.client_id:
                return
            await self._append(
                session,
                run,
                EntryKind.MINT_REFUSED,
                {
                    "agent": p.agent_id,
                    "step": p.step,
                    "tool": p.tool,
                    "error": exc.error,
                    "reason": exc.reason.value,
                },
                self.now(),
            )

    async def _mint(
        self,
        client: ClientRow,
        proof: VerifiedProof,
        p: MintParams,
        hand_off: HandOff | None = None,
    ) -> TokenResponse:
        now = self.now()
        issuer = self.settings.issuer
        if p.tool is None and p.resource not in (None, issuer):
            # RFC 8707 §2: a resource the token cannot be issued for.
            raise InvalidTarget(
                Reason.MALFORMED_REQUEST,
                "a step token (no tool) is for the IdP only: leave out 'resource' or give the "
                "IdP's issuer",
            )
        if p.tool is not None and p.resource is None:
            raise InvalidRequest(Reason.MISSING_PARAMETER, "parameter 'resource' is required")
        audience = p.resource if p.tool is not None and p.resource is not None else issuer
        events: list[dict[str, Any]] = []
        # Read before the write transaction (the first call may create it); cached.
        opaque_secret = await self.opaque_secret()
        async with self.db.transaction() as session:
            # 1. client: authenticated by the caller, revocation checked there.
            # 2.–4. agent registered and unexpired, checksum, PoP key.
            agent = await self._registration(session, client, p, proof, now)
            # 5. run open, not revoked.
            run, state = await self._open_run(session, client, p.run_id)
            workflow = state.workflow
            # A hand-off (token exchange) is checked and recorded first: it fixes the
            # delegate's step, chain and scope bound (DESIGN §5.2).
            step_asked = p.step
            if hand_off is not None:
                step_asked = await hand_off(session, run, state, events)
            # 6.–9. step, agent, tool, branch, dependencies (or the agent's own earlier
            # steps, completed by this call), approval (DESIGN §6.3).
            decision = state.check_mint(p.agent_id, step_asked, p.tool)
            step = decision.step
            _check_manifest_tool(agent, p.agent_id, p.tool)
            for done in decision.complete_first:
                data = {"step": done, "agent": p.agent_id, "implicit": True}
                await self._record(session, run, state, events, EntryKind.STEP_COMPLETED, data)
            if decision.enters:
                data = {"step": step, "agent": p.agent_id, "visit": decision.visit}
                await self._record(session, run, state, events, EntryKind.STEP_ENTERED, data)
            # 10. scope narrowing: step ∩ client grant ∩ delegator (T9). A step token
            # carries no scope: it is good for nothing at a resource server.
            delegated = decision.delegated
            granted: frozenset[str] = frozenset()
            if p.tool is not None:
                bounds: list[Any] = [list(decision.scopes), parse_scope(client.scopes)]
                if delegated is not None:
                    bounds.append(parse_scope(delegated.scope))
                granted = narrow_scope(p.scope, *bounds)
                if decision.scopes and not granted:
                    raise InvalidScope(
                        Reason.SCOPE_EXCEEDED,
                        f"the client's grant covers none of step {step!r}'s scopes",
                    )
            # 11. mint, append to ledger, one transaction.
            chain = list(delegated.chain) if delegated else [p.agent_id]
            jti = secrets.token_urlsafe(16)
            exp = now + self.settings.token_lifetime
            entry = await self._append(
                session,
                run,
                EntryKind.TOKEN_MINTED,
                {
                    "jti": jti,
                    "agent": p.agent_id,
                    "registration_id": agent.registration_id,
                    "step": step,
                    "tool": p.tool,
                    "chain": chain,
                    "scope": format_scope(granted),
                    "aud": audience,
                    "exp": exp,
                },
                now,
            )
            claims = IntentTokenClaims(
                iss=issuer,
                aud=audience,
                sub=run.subject,
                client_id=client.client_id,
                scope=format_scope(granted),
                iat=now,
                nbf=now,
                exp=exp,
                jti=jti,
                cnf=Confirmation(jkt=agent.jkt),
                act=build_act_chain(chain),
                agent=AgentClaim(
                    id=agent.agent_id,
                    checksum=agent.checksum,
                    registration_id=agent.registration_id,
                    version=agent.version,
                ),
                intent=IntentClaim(
                    id=run.intent_id,
                    initiated_by=run.subject,
                    workflow_id=workflow.id,
                    workflow_version=workflow.version,
                    workflow_hash=workflow.workflow_hash,
                    run_id=run.run_id,
                    step=step,
                    tool=p.tool,
                    step_sequence_hash=entry.entry_hash,
                    delegation=delegated.assertion_hash if delegated else None,
                    input_digest=p.input_digest,
                    consulted_by=delegated.from_agent
                    if decision.consultation and delegated
                    else None,
                ),
            )
            if workflow.opaque_names:
                # Privacy mode (DESIGN §5.1): the ledger and the answer keep the names,
                # the token carries references only the IdP can reveal.
                claims = hide_names(
                    claims, lambda kind, name: opaque_ref(opaque_secret, workflow.id, kind, name)
                )
            token = encode_intent_token(claims, self.keys.active)
        return TokenResponse(
            access_token=token,
            expires_in=exp - now,
            scope=claims.scope,
            issued_token_type=INTENT_TOKEN_TYPE_URI,
            ledger_checkpoint=self.checkpoint(entry),
            ajwt_step=step,
            ajwt_run_events=events,
        )

    async def _registration(
        self,
        session: DbSession,
        client: ClientRow,
        p: MintParams,
        proof: VerifiedProof,
        now: int,
    ) -> AgentRow:
        result = await execute_core(
            session, _REGISTRATIONS, {"client_id": client.client_id, "agent_id": p.agent_id}
        )
        rows = [detached(AgentRow, row) for row in result]
        if not rows:
            raise InvalidGrant(
                Reason.AGENT_NOT_REGISTERED, f"agent {p.agent_id!r} is not registered"
            )
        live = [r for r in rows if r.revoked_at is None]
        if not live:
            raise InvalidGrant(Reason.AGENT_REVOKED, f"agent {p.agent_id!r} has been revoked")
        live = [r for r in live if r.expires_at > now]
        if not live:
            raise InvalidGrant(
                Reason.AGENT_REGISTRATION_EXPIRED, f"agent {p.agent_id!r}'s registration expired"
            )
        wanted = p.agent_checksum.encode()
        matching = [r for r in live if hmac.compare_digest(r.checksum.encode(), wanted)]
        if not matching:
            raise InvalidGrant(
                Reason.CHECKSUM_MISMATCH,
                f"agent {p.agent_id!r}'s runtime checksum differs from its registration",
            )
        keyed = [r for r in matching if r.jkt == proof.jkt]
        if not keyed:
            raise InvalidGrant(
                Reason.POP_KEY_MISMATCH,
                "the DPoP proof is not signed by the agent's registered key",
            )
        agent = keyed[0]
        return agent


def _check_manifest_tool(agent: AgentRow, agent_id: str, tool: str | None) -> None:
    """The checksum pins the manifest, and the manifest lists the agent's tools: an agent
    gets tokens only for tools it was registered with, whatever its step allows (a tool
    added to the running agent makes it another agent, T4)."""
    if tool is None:
        return
    listed = (agent.manifest or {}).get("tools", [])
    tools = {t.get("name") for t in listed if isinstance(t, dict)}
    if tool not in tools:
        names = ", ".join(sorted(str(t) for t in tools)) or "no tools"
        raise UnauthorizedClient(
            Reason.TOOL_NOT_ALLOWED,
            f"tool {tool!r} is not in agent {agent_id!r}'s registered manifest ({names})",
        )
