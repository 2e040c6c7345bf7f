"""Registration of workflows and agents (DESIGN §6.2, §6.3)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from ajwt_core.checksum import compute_checksum
from ajwt_core.dpop import VerifiedProof
from ajwt_core.errors import (
    InvalidGrant,
    InvalidRequest,
    NotFound,
    Reason,
)
from ajwt_core.idp.db import (
    AgentRow,
    ClientRow,
    WorkflowRow,
)
from ajwt_core.idp.governance import Governance
from ajwt_core.idp.models import (
    AgentRegistered,
)
from ajwt_core.workflow import Workflow


def _registered(row: AgentRow) -> AgentRegistered:
    return AgentRegistered(
        registration_id=row.registration_id,
        agent_id=row.agent_id,
        checksum=row.checksum,
        version=row.version,
        jkt=row.jkt,
        expires_at=row.expires_at,
    )


def _alg_for_jwk(jwk: dict[str, Any]) -> str:
    return "EdDSA" if jwk.get("kty") == "OKP" else "ES256"


class Registration(Governance):
    """Workflows (admin) and agents (client-authenticated, DESIGN §6.1–§6.3)."""

    async def register_workflow(self, definition: Workflow | dict[str, Any]) -> dict[str, Any]:
        """Register a workflow version (admin); the same version again with other content
        is refused (DESIGN §6.3: a registered version never changes)."""
        workflow = Workflow.from_mapping(definition)
        row = WorkflowRow(
            workflow_id=workflow.id,
            version=workflow.version,
            hash=workflow.workflow_hash,
            definition=workflow.canonical(),
            created_at=self.now(),
        )
        async with self.db.transaction() as session:
            existing = await session.get(WorkflowRow, (workflow.id, workflow.version))
            if existing is not None:
                if existing.hash != row.hash:
                    raise InvalidRequest(
                        Reason.INVALID_WORKFLOW,
                        f"workflow {workflow.id!r} version {workflow.version} is already "
                        "registered with other content; register a new version",
                    )
            else:
                session.add(row)
        return {"workflow_id": workflow.id, "version": workflow.version, "hash": row.hash}

    async def register_agents(
        self,
        client: ClientRow,
        items: Sequence[tuple[dict[str, Any], VerifiedProof, int | None]],
    ) -> list[AgentRegistered]:
        """Register agents: the IdP recomputes each checksum from its manifest, and the
        client's registration policy admits it (DESIGN §12 Governance). A registration's
        version is its checksum's: the same checksum registered again (a new key, a
        restarted process) keeps it."""
        versions = await self.admit_checksums(client, [manifest for manifest, _, _ in items])
        now = self.now()
        results: list[AgentRegistered] = []
        async with self.db.transaction() as session:
            for manifest, proof, expires_in in items:
                checksum = compute_checksum(manifest)
                agent_id = str(manifest["agent_id"])
                lifetime = min(expires_in or self.settings.registration_lifetime, 30 * 24 * 3600)
                row = AgentRow(
                    registration_id="reg-" + secrets.token_hex(12),
                    client_id=client.client_id,
                    agent_id=agent_id,
                    version=versions[(agent_id, checksum)],
                    checksum=checksum,
                    manifest=manifest,
                    jwk=proof.jwk,
                    # The key's own algorithm: a JWK's optional "alg" member is the
                    # sender's text, of any length, and never what verifies anything.
                    alg=_alg_for_jwk(proof.jwk),
                    jkt=proof.jkt,
                    created_at=now,
                    expires_at=now + lifetime,
                )
                session.add(row)
                await session.flush()
                results.append(_registered(row))
        return results

    async def rotate_agent_key(
        self,
        client: ClientRow,
        registration_id: str,
        proof: VerifiedProof,
        expires_in: int | None,
        retire_previous: bool,
    ) -> AgentRegistered:
        """Register the agent's next key (same manifest, so the same version)."""
        now = self.now()
        async with self.db.transaction() as session:
            old = await session.get(AgentRow, registration_id)
            if old is None or old.client_id != client.client_id:
                raise NotFound(Reason.AGENT_NOT_REGISTERED, "no such agent registration")
            if old.revoked_at is not None:
                raise InvalidGrant(Reason.AGENT_REVOKED, "a revoked registration cannot rotate")
            row = AgentRow(
                registration_id="reg-" + secrets.token_hex(12),
                client_id=client.client_id,
                agent_id=old.agent_id,
                version=old.version,  # the same checksum: the same version
                checksum=old.checksum,
                manifest=old.manifest,
                jwk=proof.jwk,
                alg=_alg_for_jwk(proof.jwk),
                jkt=proof.jkt,
                created_at=now,
                expires_at=now + (expires_in or self.settings.registration_lifetime),
            )
            session.add(row)
            if retire_previous:
                old.expires_at = min(old.expires_at, now)
            await session.flush()
            return _registered(row)
