"""In-process IdP and resource server (ASGI, no sockets) for the fuzz tests."""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ajwt_core.demo.api import create_api
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.models import ClientRegistration
from ajwt_core.keys import SigningKeySet
from ajwt_core.rs import Verifier
from ajwt_core.workflow import reference_workflow
from tests.services import require_heavy

ISSUER = "http://idp.fuzz"
ADMIN = "fuzz-admin-" + secrets.token_hex(8)


@dataclass
class FuzzTargets:
    idp: Any
    rs: Any
    client_basic: str
    secrets: list[str]


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> FuzzTargets:
    require_heavy()
    keys = SigningKeySet.generate()
    db = Path(tmp_path_factory.mktemp("fuzz")) / "idp.db"
    app = create_app(
        IdPSettings(issuer=ISSUER, db_url=f"sqlite:///{db}", admin_token=ADMIN, signing_keys=keys)
    )
    idp = app.state.idp

    async def prepare() -> tuple[str, str]:
        await idp.db.create_schema()
        await idp.register_workflow(reference_workflow().canonical())
        client = await idp.register_client(ClientRegistration(scopes=["repo:read"]))
        assert client.client_secret is not None
        return client.client_id, client.client_secret

    client_id, secret = asyncio.run(prepare())
    verifier = Verifier(issuer=ISSUER, audience="http://api.fuzz", keys=keys.verification_keys())
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return FuzzTargets(
        idp=app,
        rs=create_api(verifier, base_url="http://fuzz").asgi,  # the Host the fuzz client sends
        client_basic=basic,
        secrets=[ADMIN, secret],
    )
