"""RFC 7662 token introspection: for resource servers that do not verify JWTs, or that
need the names a privacy-mode token hides (DESIGN §5.1, §12).
"""

from __future__ import annotations

from typing import Any

from ajwt_core.errors import AJWTError, ServerError
from ajwt_core.idp.base import IdPBase
from ajwt_core.idp.db import AgentRow, ClientRow, RunRow
from ajwt_core.tokens import IntentTokenClaims, decode_intent_token

INACTIVE: dict[str, Any] = {"active": False}


class Introspection(IdPBase):
    """``POST /introspect`` (client-authenticated)."""

    async def introspect(self, client: ClientRow, token: str) -> dict[str, Any]:
        """What this IdP knows of ``token``, for ``client`` (RFC 7662 §2.2).

        Active only when the token is an intent token of this IdP that verifies now,
        its run is not revoked (a completed run's tokens stay usable until they expire),
        its agent registration and client are not revoked, and ``client`` may see it:
        the token was issued to it, or its audience is one of the client's registered
        ``resources`` (§4). Everything else is ``{"active": false}``, with no reason
        (a caller learns nothing about tokens it may not see). An active answer holds
        the token's claims with its names revealed, and ``token_type: DPoP`` (RFC 9449
        §6.2: ``cnf.jkt`` binds it to the agent's key).
        """
        try:
            claims = decode_intent_token(
                token,
                self.keys.verification_keys(),
                issuer=self.settings.issuer,
                audience=None,
                now=self.clock(),
            )
        except AJWTError:
            return dict(INACTIVE)
        allowed = claims.client_id == client.client_id or claims.aud in (client.resources or [])
        if not allowed or not await self._live(claims):
            return dict(INACTIVE)
        try:
            named = await self.reveal_own(claims)
        except ServerError:
            raise
        except AJWTError:
            return dict(INACTIVE)
        return {"active": True, **named.model_dump(exclude_none=True), "token_type": "DPoP"}

    async def _live(self, claims: IntentTokenClaims) -> bool:
        async with self.db.read() as session:
            run = await session.get(RunRow, claims.intent.run_id)
            agent = await session.get(AgentRow, claims.agent.registration_id)
            owner = await session.get(ClientRow, claims.client_id)
            return (
                run is not None
                and run.state in ("open", "closed")
                and agent is not None
                and agent.revoked_at is None
                and owner is not None
                and owner.revoked_at is None
            )
