"""An embedded A-JWT deployment on 127.0.0.1: a real IdP and the reference API.

Used by the tests, every adapter's example and the demo: each starts its own servers
(uvicorn in background threads), registers the reference workflow, and gets shims for
fresh clients with the four reference agents registered.

    stack = start_stack(Path(tmp) / "idp.db")
    shim = stack.shim()
    run = stack.start_run(shim)
    ...
    stack.close()
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.rs import (
    IdPFeedSource,
    IdPRevocationChecker,
    JWKSCache,
    RevocationFeed,
    Verifier,
)
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Run, Shim
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifests
from ajwt_demo.api import ReferenceApi, create_api, strict_routes

ADMIN_TOKEN = "admin-" + secrets.token_hex(16)
REFERENCE_SCOPES = ["repo:read", "repo:write", "advisories:read"]


class CountingShim(Shim):
    """A shim that counts its requests to the IdP, sync and async, by the last segment of
    the path (``token``, ``complete``, ``batch``, ``runs``…): ``sent``."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sent: collections.Counter[str] = collections.Counter()

    def _roundtrip_sync(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        self.sent[request.url.path.rsplit("/", 1)[-1]] += 1
        return super()._roundtrip_sync(client, request)

    async def _roundtrip_async(
        self, client: httpx.AsyncClient, request: httpx.Request
    ) -> httpx.Response:
        self.sent[request.url.path.rsplit("/", 1)[-1]] += 1
        return await super()._roundtrip_async(client, request)


@dataclass
class Stack:
    idp_url: str
    rs_url: str
    admin: AdminClient
    api: ReferenceApi
    idp_app: Any
    servers: list[BackgroundServer] = field(default_factory=list)

    def new_client(self, scopes: list[str] | None = None, **kw: Any) -> dict[str, Any]:
        return self.admin.register_client(
            "app-" + secrets.token_hex(6), scopes=scopes or REFERENCE_SCOPES, **kw
        )

    def new_shim(self, scopes: list[str] | None = None, **kw: Any) -> CountingShim:
        """A shim for a fresh client, no agent registered (the app registers its own),
        counting its requests to the IdP."""
        client = self.new_client(scopes)
        return CountingShim(
            self.idp_url, client["client_id"], client_secret=client["client_secret"], **kw
        )

    def shim(self, scopes: list[str] | None = None, **kw: Any) -> Shim:
        """A shim for a fresh client with the four reference agents registered."""
        client = self.new_client(scopes)
        shim = Shim(self.idp_url, client["client_id"], client_secret=client["client_secret"], **kw)
        shim.register_many(reference_manifests())
        return shim

    def start_run(self, shim: Shim, user: str = "user:alice") -> Run:
        return shim.start_run(self.admin.user_token(user), "vuln-patch", intent="patch CVEs")

    def close(self) -> None:
        self.admin.close()
        for server in reversed(self.servers):
            server.close()


def start_stack(
    db_path: Path,
    *,
    db_url: str | None = None,
    strict: bool = False,
    revocation_feed: bool = False,
    feed_interval: float = 0.1,
    token_lifetime: int | None = None,
) -> Stack:
    """Start the IdP and the reference API. ``strict``: the API also requires the shim
    checksums the IdP publishes (``/.well-known/ajwt-shims``) on every route.

    The API asks the IdP's run-status endpoint on every request, so a test sees a
    revocation at once; ``revocation_feed``: it follows the IdP's revocation feed as a
    deployed resource server does (no IdP call per request; a revocation takes effect
    within ``feed_interval`` seconds, 0.1 by default here, 0.5 for a deployed resource
    server). ``token_lifetime``: the IdP's intent-token lifetime in
    seconds (default: its own)."""
    idp_server = BackgroundServer()
    settings = IdPSettings(
        issuer=idp_server.url,
        db_url=db_url or f"sqlite+aiosqlite:///{db_path}",
        admin_token=ADMIN_TOKEN,
    )
    if token_lifetime is not None:
        settings = settings.model_copy(update={"token_lifetime": token_lifetime})
    idp_app = create_app(settings)
    idp_server.start(idp_app)
    admin = AdminClient(idp_server.url, ADMIN_TOKEN)
    admin.register_workflow(reference_workflow().canonical())

    rs_server = BackgroundServer()
    accepted: list[str] = []
    if strict:
        published = httpx.get(idp_server.url + "/.well-known/ajwt-shims", timeout=10).json()
        accepted = [value.removeprefix("sha256=") for value in published["accepted"]]
    verifier = Verifier(
        issuer=idp_server.url,
        audience=rs_server.url,
        keys=JWKSCache(idp_server.url + "/.well-known/jwks.json", min_refresh=1.0),
        revocation=(
            RevocationFeed(IdPFeedSource(idp_server.url, interval=feed_interval))
            if revocation_feed
            else IdPRevocationChecker(idp_server.url, ttl=0.0)
        ),
        accepted_shims=accepted,
    )
    api = create_api(verifier, routes=strict_routes() if strict else None)
    rs_server.start(api.asgi)
    return Stack(
        idp_url=idp_server.url,
        rs_url=rs_server.url,
        admin=admin,
        api=api,
        idp_app=idp_app,
        servers=[idp_server, rs_server],
    )
