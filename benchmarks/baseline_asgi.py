"""The plain-OAuth baseline (``ajwt_demo.baseline``) as uvicorn app factories, so
that ``bench_e2e`` can run it in separate processes, as it runs the IdP and the A-JWT
resource server:

    uvicorn --factory benchmarks.baseline_asgi:token_server_from_env
    uvicorn --factory benchmarks.baseline_asgi:bearer_api_from_env

| variable | meaning |
|---|---|
| ``AJWT_BASELINE_ISSUER`` | the token server's URL (the ``iss`` of its tokens) |
| ``AJWT_BASELINE_KEY_FILE`` | PEM of the token-signing key; the API reads its public half |
| ``AJWT_BASELINE_CLIENT_ID`` | the one client the token server knows (token server) |
| ``AJWT_BASELINE_CLIENT_SECRET`` | that client's secret (token server) |
| ``AJWT_BASELINE_SCOPES`` | space-separated scopes of that client (token server) |
| ``AJWT_BASELINE_AUDIENCE`` | the API's own URL (the ``aud`` it accepts; API) |
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ajwt_core.keys import SigningKey
from ajwt_demo.api import create_bearer_api
from ajwt_demo.baseline import BaselineAuthServer, BaselineClient


def _signing_key() -> SigningKey:
    return SigningKey.from_pem(Path(os.environ["AJWT_BASELINE_KEY_FILE"]).read_bytes())


def token_server_from_env() -> Any:
    """The client-credentials token endpoint with one registered client."""
    server = BaselineAuthServer(issuer=os.environ["AJWT_BASELINE_ISSUER"], key=_signing_key())
    client_id = os.environ["AJWT_BASELINE_CLIENT_ID"]
    secret = os.environ["AJWT_BASELINE_CLIENT_SECRET"]
    # Stored as BaselineAuthServer.register stores it (a SHA-256 of the secret); the
    # secret is chosen by the parent process, which has to know it.
    server.clients[client_id] = BaselineClient(
        client_id,
        hashlib.sha256(secret.encode()).hexdigest(),
        os.environ.get("AJWT_BASELINE_SCOPES", "").split(),
    )
    return server.app()


def bearer_api_from_env() -> Any:
    """The reference API behind pyjwt Bearer verification (scopes only)."""
    return create_bearer_api(
        issuer=os.environ["AJWT_BASELINE_ISSUER"],
        audience=os.environ["AJWT_BASELINE_AUDIENCE"].rstrip("/"),
        key=_signing_key().public_key,
    ).asgi
