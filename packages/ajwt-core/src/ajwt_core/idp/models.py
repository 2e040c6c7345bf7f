"""Request and response bodies of the IdP's JSON endpoints (also its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientRegistration(_Body):
    client_id: Identifier | None = None
    scopes: list[str] = Field(default_factory=list, max_length=100)
    auth_method: Literal["client_secret_basic", "private_key_jwt"] = "client_secret_basic"
    jwks: dict[str, Any] | None = None
    shim_checksums: list[str] = Field(default_factory=list, max_length=20)
    allow_runtime_registration: bool = True


class ClientCreated(BaseModel):
    client_id: str
    client_secret: str | None
    scopes: list[str]
    auth_method: str


class AgentRegistration(_Body):
    """One agent: its manifest, and a DPoP proof by its PoP key (proof of possession:
    the IdP takes the public key from the verified proof, never from a separate field)."""

    manifest: dict[str, Any]
    proof: str = Field(max_length=4096)
    expires_in: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)


class AgentBatch(_Body):
    agents: list[AgentRegistration] = Field(min_length=1, max_length=100)


class KeyRotation(_Body):
    proof: str = Field(max_length=4096)
    expires_in: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)
    retire_previous: bool = False


class AgentRegistered(BaseModel):
    registration_id: str
    agent_id: str
    checksum: str
    version: int
    jkt: str
    expires_at: int


class RunStart(_Body):
    workflow_id: Identifier
    workflow_version: int | None = Field(default=None, ge=1)
    subject_token: str = Field(min_length=1, max_length=8192)
    intent: str = Field(default="", max_length=2000)


class RunStarted(BaseModel):
    run_id: str
    intent_id: str
    initiated_by: str
    workflow: dict[str, Any]
    workflow_hash: str
    ledger_head: str
    #: The IdP-signed checkpoint of the ledger's first entry (``typ: ledger-checkpoint+jwt``).
    ledger_checkpoint: str


class UserTokenRequest(_Body):
    subject: str = Field(min_length=1, max_length=256)
    lifetime: int = Field(default=3600, ge=60, le=24 * 3600)


class Revocation(_Body):
    """What to revoke (RFC 7009 style: answers 200 whether or not it existed)."""

    kind: Literal["run", "intent", "agent", "client"]
    id: str = Field(min_length=1, max_length=128)


class Approval(_Body):
    approved_by: str = Field(min_length=1, max_length=256)


class RunStatus(BaseModel):
    run_id: str
    intent_id: str
    state: str
    active: bool
    registration_active: bool | None = None
    client_active: bool
    completed_steps: list[str]
    ledger_head: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["DPoP"] = "DPoP"
    expires_in: int
    scope: str
    issued_token_type: str | None = None
    #: The IdP-signed checkpoint of the run's ledger up to this token's entry.
    ledger_checkpoint: str | None = None
