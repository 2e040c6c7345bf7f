"""The IdP as an ASGI app factory configured by environment variables, for uvicorn
workers: ``uvicorn --factory ajwt_core.idp.asgi:app_from_env --workers N``
(``ajwt idp serve --workers N`` sets these variables and runs exactly that).

| variable | meaning |
|---|---|
| ``AJWT_IDP_ISSUER`` | public base URL (required) |
| ``AJWT_IDP_DB`` | SQLAlchemy URL (SQLite for one worker; PostgreSQL for several) |
| ``AJWT_IDP_KEY_FILE`` | signing-key file shared by the workers |
| ``AJWT_ADMIN_TOKEN`` | administrator credential (refused if weak: ``admin_token.weakness``) |
| ``AJWT_IDP_REDIS_URL`` | Redis for the shared proof-replay cache and revocations |
| ``AJWT_IDP_TOKEN_LIFETIME`` | intent-token lifetime, seconds (≤ 300) |
| ``AJWT_IDP_LOCAL_USERS`` | ``0``/``1``: refuse/accept local user tokens (default: no upstream) |
| ``AJWT_IDP_UPSTREAM_ISSUER`` | the user's upstream OpenID provider (keys found by discovery) |
| ``AJWT_IDP_UPSTREAM_AUDIENCE`` | the ``aud`` of its access tokens (default: the IdP's issuer) |
| ``AJWT_IDP_UPSTREAM_CLIENT_ID`` | the client whose ID tokens root runs (unset: no ID tokens) |
| ``AJWT_IDP_UPSTREAM_JWKS_URL`` | its JWKS URL, instead of discovery |
| ``AJWT_IDP_UPSTREAM_SUBJECT_PREFIX`` | before an upstream ``sub`` (unset: ``<issuer>#``) |
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from ajwt_core.errors import InvalidRequest
from ajwt_core.idp.admin_token import weakness
from ajwt_core.idp.app import create_app
from ajwt_core.idp.settings import DEFAULT_DB_URL, IdPSettings
from ajwt_core.tokens import MAX_INTENT_LIFETIME


def settings_from_env() -> IdPSettings:
    issuer = os.environ.get("AJWT_IDP_ISSUER")
    if not issuer:
        raise SystemExit("AJWT_IDP_ISSUER must be set")
    key_file = os.environ.get("AJWT_IDP_KEY_FILE")
    admin_token = os.environ.get("AJWT_ADMIN_TOKEN") or None
    why = weakness(admin_token) if admin_token else None
    if why is not None:
        raise SystemExit(f"AJWT_ADMIN_TOKEN is too weak: {why}")
    return IdPSettings(
        issuer=issuer,
        db_url=os.environ.get("AJWT_IDP_DB", DEFAULT_DB_URL),
        admin_token=admin_token,
        key_file=Path(key_file) if key_file else None,
        redis_url=os.environ.get("AJWT_IDP_REDIS_URL") or None,
        token_lifetime=int(os.environ.get("AJWT_IDP_TOKEN_LIFETIME", MAX_INTENT_LIFETIME)),
        local_users=_flag(os.environ.get("AJWT_IDP_LOCAL_USERS")),
        upstream_issuer=os.environ.get("AJWT_IDP_UPSTREAM_ISSUER") or None,
        upstream_audience=os.environ.get("AJWT_IDP_UPSTREAM_AUDIENCE") or None,
        upstream_client_id=os.environ.get("AJWT_IDP_UPSTREAM_CLIENT_ID") or None,
        upstream_jwks_url=os.environ.get("AJWT_IDP_UPSTREAM_JWKS_URL") or None,
        # Unset means the default; set and empty means bare upstream subjects.
        upstream_subject_prefix=os.environ.get("AJWT_IDP_UPSTREAM_SUBJECT_PREFIX"),
    )


def _flag(value: str | None) -> bool | None:
    """``0``/``1`` (also ``false``/``true``, ``no``/``yes``); unset or empty: the default."""
    if not value:
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"AJWT_IDP_LOCAL_USERS must be 0 or 1, not {value!r}")


def app_from_env() -> FastAPI:
    try:
        return create_app(settings_from_env())
    except InvalidRequest as exc:  # a setting that cannot work, named in the message
        raise SystemExit(f"the IdP cannot start: {exc}") from None
