"""The one error hierarchy of A-JWT.

Every refusal anywhere in the library (core, IdP, shim, resource server, adapters) is an
:class:`AJWTError`. Each class carries the standard OAuth 2 / RFC 6750 / RFC 9449 error
code (``error``) and HTTP status; each instance carries a specific machine-readable
``reason`` (one of :class:`Reason`) and a human sentence (``description``). The HTTP
layers only map these; nothing re-invents them.

Messages never contain key material, tokens or secrets: callers pass only
descriptions they wrote themselves, never ``str()`` of a key or a request.

>>> err = InvalidToken(Reason.TOKEN_EXPIRED, "The intent token has expired.")
>>> body = err.to_oauth()
>>> body["error"], body["ajwt_reason"]
('invalid_token', 'token_expired')
>>> err.status_code
401
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Reason(StrEnum):
    """Why a request was refused: one value per distinct check.

    The OAuth ``error`` code says which class of failure it is (a client can act on it);
    the reason says which check failed (a person or a test can act on it).
    """

    # request shape
    MALFORMED_REQUEST = "malformed_request"
    MISSING_PARAMETER = "missing_parameter"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    REQUEST_TOO_LARGE = "request_too_large"
    HOST_NOT_ALLOWED = "host_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    # tokens (RFC 7519 / RFC 8725)
    MALFORMED_TOKEN = "malformed_token"
    TOKEN_TOO_LARGE = "token_too_large"
    WRONG_TYPE = "wrong_type"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    FORBIDDEN_HEADER = "forbidden_header"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    CHAIN_TOO_DEEP = "chain_too_deep"
    # privacy mode: a reference to a workflow name the verifier cannot read (DESIGN §5.1)
    UNKNOWN_OPAQUE_NAME = "unknown_opaque_name"
    # introspection (RFC 7662) answered that the token is not active
    TOKEN_INACTIVE = "token_inactive"
    # proofs (RFC 9449)
    MALFORMED_PROOF = "malformed_proof"
    PRIVATE_KEY_IN_PROOF = "private_key_in_proof"
    METHOD_MISMATCH = "method_mismatch"
    URL_MISMATCH = "url_mismatch"
    PROOF_EXPIRED = "proof_expired"
    PROOF_FROM_FUTURE = "proof_from_future"
    ACCESS_TOKEN_HASH_MISMATCH = "ath_mismatch"
    BODY_HASH_MISMATCH = "bh_mismatch"
    BODY_HASH_MISSING = "bh_missing"
    NONCE_REQUIRED = "nonce_required"
    NONCE_MISMATCH = "nonce_mismatch"
    KEY_NOT_BOUND = "jkt_mismatch"
    REPLAYED = "replayed"
    # the shared replay cache lost its memory (Redis restarted empty): older proofs refused
    REPLAY_STATE_RESET = "replay_state_reset"
    # agents, manifests and templates (DESIGN §3)
    INVALID_MANIFEST = "invalid_manifest"
    SECRET_IN_MANIFEST = "secret_in_manifest"
    UNKNOWN_PLACEHOLDER = "unknown_placeholder"
    MISSING_VARIABLE = "missing_variable"
    UNDECLARED_VARIABLE = "undeclared_variable"
    # keys (DESIGN §4)
    INVALID_KEY = "invalid_key"
    # workflows (DESIGN §6.3)
    INVALID_WORKFLOW = "invalid_workflow"
    AMBIGUOUS_STEP = "ambiguous_step"
    AMBIGUOUS_AGENT = "ambiguous_agent"
    BRANCH_NOT_TAKEN = "branch_not_taken"
    VISIT_LIMIT_REACHED = "visit_limit_reached"
    CONSULTATION_NOT_ALLOWED = "consultation_not_allowed"
    # mint checks, in the order of DESIGN §6.5
    CLIENT_AUTHENTICATION_FAILED = "client_authentication_failed"
    TOO_MANY_FAILED_ATTEMPTS = "too_many_failed_attempts"
    WEAK_ADMIN_TOKEN = "weak_admin_token"
    CLIENT_REVOKED = "client_revoked"
    AGENT_NOT_REGISTERED = "agent_not_registered"
    AGENT_REGISTRATION_EXPIRED = "agent_registration_expired"
    AGENT_REVOKED = "agent_revoked"
    # agent governance (DESIGN §12): a client's registration policy refused a checksum
    AGENT_NOT_PINNED = "agent_not_pinned"
    AGENT_APPROVAL_PENDING = "agent_approval_pending"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    POP_KEY_MISMATCH = "pop_key_mismatch"
    RUN_NOT_FOUND = "run_not_found"
    RUN_CLOSED = "run_closed"
    RUN_FINISHED = "run_finished"
    RUN_REVOKED = "run_revoked"
    INTENT_REVOKED = "intent_revoked"
    UNKNOWN_STEP = "unknown_step"
    WRONG_AGENT_FOR_STEP = "wrong_agent_for_step"
    TOOL_NOT_ALLOWED = "tool_not_allowed"
    DEPENDENCIES_INCOMPLETE = "dependencies_incomplete"
    STEP_ALREADY_COMPLETED = "step_already_completed"
    STEP_NOT_ENTERED = "step_not_entered"
    APPROVAL_REQUIRED = "approval_required"
    SCOPE_EXCEEDED = "scope_exceeded"
    # delegation (DESIGN §5.2, §6.6)
    INVALID_DELEGATION = "invalid_delegation"
    DELEGATION_NOT_ALONG_WORKFLOW = "delegation_not_along_workflow"
    DELEGATE_MISMATCH = "delegate_mismatch"
    PARENT_TOKEN_MISMATCH = "parent_token_mismatch"
    # resource-server policy (DESIGN §7.7)
    WORKFLOW_NOT_ALLOWED = "workflow_not_allowed"
    STEP_NOT_ALLOWED = "step_not_allowed"
    AGENT_NOT_ALLOWED = "agent_not_allowed"
    AGENT_CHECKSUM_NOT_ALLOWED = "agent_checksum_not_allowed"
    AGENT_VERSION_NOT_ALLOWED = "agent_version_not_allowed"
    DELEGATION_TOO_DEEP = "delegation_too_deep"
    SHIM_CHECKSUM_REQUIRED = "shim_checksum_required"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    STEP_TOKEN_NOT_FOR_API = "step_token_not_for_api"
    BEARER_NOT_ALLOWED = "bearer_not_allowed"
    MISSING_TOKEN = "missing_token"
    # RFC 7009: a client may revoke only the tokens issued to it
    TOKEN_OF_ANOTHER_CLIENT = "token_of_another_client"
    # ledger (DESIGN §8)
    LEDGER_BROKEN = "ledger_broken"
    WRONG_RUN = "wrong_run"
    # local (shim) conditions
    NO_AGENT_CONTEXT = "no_agent_context"
    SERVICE_UNAVAILABLE = "service_unavailable"
    # the resource server's revocation feed is not up to date: a ServerError (503)
    REVOCATION_FEED_STALE = "revocation_feed_stale"
    # the shim could not reach the IdP (no connection, or no answer): a ServerError
    IDP_UNREACHABLE = "idp_unreachable"
    NOT_FOUND = "not_found"
    LOCAL_USERS_DISABLED = "local_users_disabled"


#: The longest ``error_description`` sent (a refusal may quote what the client sent).
MAX_DESCRIPTION = 512
_OAUTH_TEXT = {ord('"'): "'", ord("\\"): "/", ord("§"): "section "}


def oauth_text(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """``text`` within RFC 6749 §5.2's ``error_description`` characters (printable ASCII
    without ``"`` and ``\\``) and ``limit`` characters: a refusal that quotes a client's
    value cannot put control characters, quotes or megabytes into an answer or a header.

    >>> oauth_text('grant_type "x\\u202e\\r\\n" (RFC 6749 §5.2)')
    "grant_type 'x???' (RFC 6749 section 5.2)"
    """
    mapped = text.translate(_OAUTH_TEXT)
    if not (mapped.isascii() and mapped.isprintable()):
        mapped = "".join(c if " " <= c <= "~" else "?" for c in mapped)
    return mapped if len(mapped) <= limit else mapped[: limit - 3] + "..."


class AJWTError(Exception):
    """Base of every A-JWT error: an OAuth error code, a reason and a human sentence."""

    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400

    def __init__(self, reason: Reason, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description

    def to_oauth(self) -> dict[str, str]:
        """The OAuth error response body (RFC 6749 §5.2), plus the A-JWT reason."""
        return {
            "error": self.error,
            "error_description": oauth_text(self.description),
            "ajwt_reason": self.reason.value,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason.value!r}, {self.description!r})"


class InvalidRequest(AJWTError):
    """The request is malformed or misses a parameter (RFC 6749 §5.2)."""

    error = "invalid_request"
    status_code = 400


class RequestTooLarge(InvalidRequest):
    """The request body is larger than the server takes (RFC 9110 §15.5.14)."""

    status_code = 413


class HeadersTooLarge(InvalidRequest):
    """The request's header fields are larger than the server takes (RFC 6585 §5)."""

    status_code = 431


class InvalidClient(AJWTError):
    """Client authentication failed (RFC 6749 §5.2): a 401 whose challenge names the
    scheme the client used in the ``Authorization`` header (or offers ``Basic`` when it
    used none)."""

    error = "invalid_client"
    status_code = 401
    #: The ``WWW-Authenticate`` value of the answer; ``None``: no challenge.
    challenge: ClassVar[str | None] = 'Basic realm="ajwt"'


class InvalidClientAssertion(InvalidClient):
    """A ``private_key_jwt`` assertion (RFC 7523 §2.2) failed. Sent in the form body, it
    is answered 400 with no challenge: RFC 6749 §5.2 keeps the 401 and its challenge
    for a client that authenticated with the ``Authorization`` header, and a client
    library reading a ``Basic`` challenge would hide the error description."""

    status_code = 400
    challenge = None


class InvalidClientAssertionHeader(InvalidClient):
    """A client assertion sent as ``Authorization: Client-Assertion <jwt>`` (the IdP's
    JSON endpoints) failed: 401, challenging that scheme."""

    challenge = 'Client-Assertion realm="ajwt"'


class InvalidGrant(AJWTError):
    """The grant (agent, run, step, delegation…) is not acceptable (RFC 6749 §5.2)."""

    error = "invalid_grant"
    status_code = 400


class UnauthorizedClient(AJWTError):
    """The client or agent may not use this grant for this step or tool."""

    error = "unauthorized_client"
    status_code = 400


class UnsupportedGrantType(AJWTError):
    error = "unsupported_grant_type"
    status_code = 400


class InvalidTarget(AJWTError):
    """The ``resource`` is not one a token can be issued for (RFC 8707 §2: an absolute URI
    with no fragment)."""

    error = "invalid_target"
    status_code = 400


class InvalidScope(AJWTError):
    """The requested scope exceeds what the step, grant or delegator allows."""

    error = "invalid_scope"
    status_code = 400


class AccessDenied(AJWTError):
    """A policy refused the request (for example a missing approval)."""

    error = "access_denied"
    status_code = 403


class InvalidToken(AJWTError):
    """The access token is malformed, forged, expired or revoked (RFC 6750 §3.1)."""

    error = "invalid_token"
    status_code = 401


class InvalidDPoPProof(AJWTError):
    """The DPoP proof is malformed, forged, replayed or not bound (RFC 9449 §7.1)."""

    error = "invalid_dpop_proof"
    status_code = 401


class UseDPoPNonce(AJWTError):
    """The server requires a fresh nonce in the proof (RFC 9449 §8, §9)."""

    error = "use_dpop_nonce"
    status_code = 401


class InsufficientScope(AJWTError):
    """The token is valid but the route's policy refuses it (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status_code = 403


class ServerError(AJWTError):
    """A dependency (database, Redis, JWKS endpoint) is unavailable; fail closed."""

    error = "temporarily_unavailable"
    status_code = 503


class NotFound(AJWTError):
    error = "not_found"
    status_code = 404


class SlowDown(AJWTError):
    """Too many failed attempts from one client: wait ``retry_after`` seconds (HTTP 429).

    ``slow_down`` is the registered OAuth error code for "ask less often" (RFC 8628 §3.5).

    >>> err = SlowDown(Reason.TOO_MANY_FAILED_ATTEMPTS, "wait", retry_after=30)
    >>> err.status_code, err.error, err.retry_after
    (429, 'slow_down', 30)
    """

    error = "slow_down"
    status_code = 429

    def __init__(self, reason: Reason, description: str, *, retry_after: int = 1) -> None:
        super().__init__(reason, description)
        self.retry_after = retry_after


class AgentContextError(AJWTError):
    """A request would leave the process without an acting agent (the shim refuses)."""

    error = "invalid_request"
    status_code = 400


class LedgerError(AJWTError):
    """A run ledger does not verify (DESIGN §8)."""

    error = "invalid_grant"
    status_code = 409


def error_from_oauth(body: object, status_code: int) -> AJWTError:
    """Rebuild the typed error from an OAuth error body received over HTTP.

    >>> err = error_from_oauth({"error": "invalid_grant", "error_description": "no",
    ...                         "ajwt_reason": "checksum_mismatch"}, 400)
    >>> type(err).__name__, err.reason
    ('InvalidGrant', <Reason.CHECKSUM_MISMATCH: 'checksum_mismatch'>)
    """
    fields = body if isinstance(body, dict) else {}
    code = fields.get("error")
    description = fields.get("error_description")
    try:
        reason = Reason(str(fields.get("ajwt_reason")))
    except ValueError:
        reason = Reason.MALFORMED_REQUEST
    classes: dict[str, type[AJWTError]] = {
        cls.error: cls
        for cls in (
            InvalidRequest,
            InvalidClient,
            InvalidGrant,
            UnauthorizedClient,
            UnsupportedGrantType,
            InvalidScope,
            InvalidTarget,
            AccessDenied,
            InvalidToken,
            InvalidDPoPProof,
            UseDPoPNonce,
            InsufficientScope,
            ServerError,
            NotFound,
            SlowDown,
        )
    }
    cls = classes.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = ServerError if status_code >= 500 else InvalidRequest
    text = description if isinstance(description, str) else f"HTTP {status_code}"
    return cls(reason, text)
