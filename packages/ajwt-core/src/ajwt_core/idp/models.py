"""Request and response bodies of the IdP's endpoints (also its OpenAPI schema).

This is where the IdP validates what it is sent, once, at the boundary: every field a
request may carry has a type here that admits only what the protocol allows and the
columns can hold (no NUL or other control characters, no lone surrogates, no value
longer or larger than its column). A refusal is ``invalid_request`` naming the field.

>>> from pydantic import ValidationError
>>> try:
...     MintRequest.model_validate({"agent_id": "planner", "agent_checksum": "sha256:é",
...         "run_id": "run-1", "tool": "read_file", "resource": "https://api.example"})
... except ValidationError as exc:
...     print(exc.errors()[0]["loc"])
('agent_checksum',)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from ajwt_core.tokens import CONTROL_CHARACTERS, MAX_TOKEN_BYTES
from ajwt_core.workflow import MAX_WORKFLOW_VERSION, ToolName

#: The one alphabet of every id the IdP issues or looks up: clients, runs, intents,
#: registrations, workflows, steps, agents (ASCII, so it fits any column encoding).
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9._:@-]+$"
MAX_IDENTIFIER_LENGTH: Final = 128
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IDENTIFIER_LENGTH, pattern=IDENTIFIER_PATTERN),
]
#: A person or system named in the ledger (a user subject, an approver): printable text.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=f"^[^{CONTROL_CHARACTERS}]+$")
]
#: Free text a person wrote (a run's intent): lines and tabs, no other control character.
HumanText = Annotated[
    str,
    StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"),
]
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), joined by spaces (a
# requested scope may repeat spaces: it is split on whitespace, never stored as sent).
_SCOPE_CHARACTERS = r"\x21\x23-\x5b\x5d-\x7e"
ScopeToken = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=f"^[{_SCOPE_CHARACTERS}]+$")
]
ScopeList = Annotated[str, StringConstraints(max_length=2048, pattern=f"^[ {_SCOPE_CHARACTERS}]*$")]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
ShimChecksum = Annotated[str, StringConstraints(pattern=r"^(sha256=)?[0-9a-f]{64}$")]
#: An RFC 8707 resource indicator: an absolute http(s) URI, visible ASCII only, with no
#: fragment (§2).
ResourceUri = Annotated[
    str, StringConstraints(max_length=512, pattern=r"^https?://[\x21\x22\x24-\x7e]+$")
]
CompactToken = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_BYTES)]
Version = Annotated[int, Field(ge=1, le=MAX_WORKFLOW_VERSION)]


def is_identifier(value: str) -> bool:
    """Whether ``value`` is a well-formed IdP identifier (checked before any lookup).

    >>> is_identifier("client-1f2e"), is_identifier("a b"), is_identifier("x" * 129)
    (True, False, False)
    """
    return len(value) <= MAX_IDENTIFIER_LENGTH and _IDENTIFIER.fullmatch(value) is not None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A client's registration policy for its agents' checksums (DESIGN §12 Governance).
AgentPolicy = Literal["open", "pinned", "approval"]


class ClientRegistration(_Body):
    client_id: Identifier | None = None
    scopes: list[ScopeToken] = Field(default_factory=list, max_length=100)
    auth_method: Literal["client_secret_basic", "private_key_jwt"] = "client_secret_basic"
    jwks: dict[str, Any] | None = None
    shim_checksums: list[ShimChecksum] = Field(default_factory=list, max_length=20)
    #: Which agent checksums may register: ``open`` (any), ``pinned`` (only those an
    #: administrator registered), ``approval`` (a new one waits for an administrator).
    #: Default: ``open``, or ``pinned`` with ``allow_runtime_registration: false``.
    agent_policy: AgentPolicy | None = None
    #: Before ``agent_policy``: ``false`` is ``pinned``.
    allow_runtime_registration: bool = True
    #: The resource servers (RFC 8707 URIs) this client is: it may introspect the
    #: tokens whose audience is one of them (RFC 7662 §4).
    resources: list[ResourceUri] = Field(default_factory=list, max_length=20)

    def policy(self) -> AgentPolicy:
        if self.agent_policy is not None:
            return self.agent_policy
        return "open" if self.allow_runtime_registration else "pinned"


class ClientCreated(BaseModel):
    client_id: str
    client_secret: str | None
    scopes: list[str]
    auth_method: str
    resources: list[str] = []
    agent_policy: AgentPolicy = "open"


class AgentPolicyChange(_Body):
    agent_policy: AgentPolicy


class AgentPins(_Body):
    """Manifests an administrator registers (pins) for a client, e.g. from CI."""

    manifests: list[dict[str, Any]] = Field(min_length=1, max_length=100)
    decided_by: Name = "administrator"


class ChecksumDecision(_Body):
    """Approve or revoke one checksum of a client's agent."""

    agent_id: Identifier
    checksum: Digest
    decided_by: Name = "administrator"


class AgentRegistration(_Body):
    """One agent: its manifest, and a DPoP proof by its PoP key (proof of possession:
    the IdP takes the public key from the verified proof, never from a separate field)."""

    manifest: dict[str, Any]
    proof: str = Field(min_length=1, max_length=4096)
    expires_in: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)


class AgentBatch(_Body):
    agents: list[AgentRegistration] = Field(min_length=1, max_length=100)


class KeyRotation(_Body):
    proof: str = Field(min_length=1, max_length=4096)
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
    workflow_version: Version | None = None
    subject_token: CompactToken
    #: RFC 8693 §3: the user's access token (local or upstream), or an upstream ID token.
    subject_token_type: Literal[
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:id_token",
    ] = "urn:ietf:params:oauth:token-type:access_token"
    intent: HumanText = ""


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
    subject: Name
    lifetime: int = Field(default=3600, ge=60, le=24 * 3600)


class Revocation(_Body):
    """What to revoke through ``POST /revocations`` (the A-JWT API; RFC 7009 token
    revocation is ``POST /revoke``): answers 200 whether or not it existed."""

    kind: Literal["run", "intent", "agent", "client"]
    id: Identifier


class Approval(_Body):
    approved_by: Name


class RunStatus(BaseModel):
    run_id: str
    intent_id: str
    state: str
    active: bool
    registration_active: bool | None = None
    client_active: bool
    completed_steps: list[str]
    #: Steps that may start now, in workflow order (DESIGN §6.3).
    due_steps: list[str] = []
    #: Every required step on the run's path is completed.
    finished: bool = False
    ledger_head: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["DPoP"] = "DPoP"
    expires_in: int
    scope: str
    issued_token_type: str | None = None
    #: The IdP-signed checkpoint of the run's ledger up to this token's entry.
    ledger_checkpoint: str | None = None
    #: The step the token is for (resolved from the tool when the request named none).
    ajwt_step: str | None = None
    #: What the mint recorded that moves the run (DESIGN §6.3), as ``{"entry": kind,
    #: "data": {...}}`` ledger entries: steps completed by it, entered, reopened, handed
    #: on; the shim keeps its copy of the run's position by them.
    ajwt_run_events: list[dict[str, Any]] = []
    #: The outcome of each step completion the request carried (its ``completions``
    #: parameter, DESIGN §6.7), in order: ``{"step", "outcome": "completed" |
    #: "already_completed" | "refused"}``, a refusal with ``error``, ``reason`` and
    #: ``error_description``. Empty when it carried none.
    ajwt_completions: list[dict[str, Any]] = []


#: At most this many step completions ride on one token request.
MAX_CARRIED_COMPLETIONS: Final = 8


class CarriedCompletion(BaseModel):
    """One step completion carried on a token request (its ``completions`` parameter, a
    JSON array of these, DESIGN §6.7): the step of the request's run, the agent's intent
    token in that step, and a DPoP proof by the agent's key for ``POST
    <issuer>/runs/<run>/steps/<step>/complete`` with the token's ``ath`` and the empty
    body's ``bh``, exactly the proof the completion endpoint takes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    step: Identifier
    token: CompactToken
    proof: CompactToken


CarriedCompletions: TypeAdapter[list[CarriedCompletion]] = TypeAdapter(
    Annotated[list[CarriedCompletion], Field(min_length=1, max_length=MAX_CARRIED_COMPLETIONS)]
)


class MintRequest(BaseModel):
    """The token endpoint's form fields for a mint (DESIGN §6.5; the exchange adds its two
    tokens). Other form fields (``grant_type``, client authentication) pass through."""

    model_config = ConfigDict(extra="ignore")

    agent_id: Identifier
    agent_checksum: Digest
    run_id: Identifier
    step: Identifier | None = None
    #: None: a step token, for the IdP only (DESIGN §6.3).
    tool: ToolName | None = None
    resource: ResourceUri | None = None
    scope: ScopeList | None = None
    input_digest: Digest | None = None


class ExchangeRequest(MintRequest):
    """RFC 8693 token exchange: the delegator's intent token and its signed hand-off."""

    subject_token: CompactToken
    actor_token: CompactToken
