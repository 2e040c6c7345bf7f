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
| ``AJWT_IDP_LOCAL_USERS`` | ``0`` to refuse local user tokens |
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

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
        local_users=os.environ.get("AJWT_IDP_LOCAL_USERS", "1") != "0",
    )


def app_from_env() -> FastAPI:
    return create_app(settings_from_env())
