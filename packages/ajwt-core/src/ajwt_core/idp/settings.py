"""IdP configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ajwt_core.idp.throttle import FailureThrottle
from ajwt_core.keys import SigningKeySet
from ajwt_core.tokens import MAX_CLIENT_ASSERTION_LIFETIME, MAX_INTENT_LIFETIME

DEFAULT_DB_URL = "sqlite+aiosqlite:///ajwt-idp.db"


@dataclass
class IdPSettings:
    """Everything an IdP instance needs; the CLI and tests build one of these.

    ``issuer`` is the public base URL (``iss`` of every token). The signing keys come
    from ``signing_keys`` or are loaded from / generated into ``key_file`` (mode 0600).
    The user's subject token is accepted from this IdP's own local user tokens
    (``local_users``) and/or from an upstream OpenID provider (``upstream_*``): its
    RFC 9068 access tokens for ``upstream_audience`` and its ID tokens for
    ``upstream_client_id``, verified with its JWKS (``upstream_jwks``, else fetched from
    ``upstream_jwks_url``, else found by discovery at the issuer). Local users are on by
    default without an upstream and off by default with one.
    """

    issuer: str
    db_url: str = DEFAULT_DB_URL
    admin_token: str | None = None
    key_file: Path | None = None
    signing_keys: SigningKeySet | None = None
    token_lifetime: int = MAX_INTENT_LIFETIME
    registration_lifetime: int = 24 * 3600
    #: ``None``: on unless an upstream issuer is configured.
    local_users: bool | None = None
    upstream_issuer: str | None = None
    #: The ``aud`` of the upstream's access tokens (default: this IdP's issuer).
    upstream_audience: str | None = None
    upstream_jwks: dict[str, Any] | None = None
    upstream_jwks_url: str | None = None
    #: The upstream client whose ID tokens root runs (their ``aud``); none: no ID tokens.
    upstream_client_id: str | None = None
    #: Put before an upstream user's ``sub`` (default ``<upstream issuer>#``); ``""`` keeps
    #: it bare, which needs ``local_users`` off (DESIGN §12).
    upstream_subject_prefix: str | None = None
    #: Least seconds between two fetches of the upstream JWKS for an unknown ``kid``.
    upstream_min_refresh: float = 30.0
    accepted_shim_checksums: list[str] = field(default_factory=list)
    #: Redis for many workers: the proof replay cache, and revocations published to
    #: resource servers (``ajwt:revoked:<kind>:<id>``).
    redis_url: str | None = None
    #: The prefix of every Redis key; resource servers reading them use the same one.
    redis_prefix: str = "ajwt:"
    #: Seconds between checks that Redis still holds the published revocations (and
    #: publications of those committed while it was unreachable).
    revocation_sync_interval: float = 1.0
    max_body_bytes: int = 1 << 20
    #: Failed admin authentication per client address (default: 10 a minute, then 429).
    admin_throttle: FailureThrottle | None = None
    #: Longest ``private_key_jwt`` assertion accepted (``exp - iat``, seconds). Its
    #: ``jti`` is remembered until it expires; authlib's default lifetime is 3600 s.
    client_assertion_max_lifetime: int = MAX_CLIENT_ASSERTION_LIFETIME
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.issuer = self.issuer.rstrip("/")
        self.token_lifetime = min(self.token_lifetime, MAX_INTENT_LIFETIME)

    @property
    def accepts_local_users(self) -> bool:
        """Whether local user tokens are issued and accepted (``local_users`` resolved)."""
        return self.local_users if self.local_users is not None else not self.upstream_issuer

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"
