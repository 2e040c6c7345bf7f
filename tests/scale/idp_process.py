"""An IdP in worker processes (uvicorn), configured like ``ajwt idp serve --workers``."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from ajwt_core.idp.admin import AdminClient
from ajwt_core.idp.keystore import load_signing_keys
from ajwt_core.shim import Shim
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifests
from tests.scale.procs import ServerProcess, free_port

ADMIN = "scale-admin-" + secrets.token_urlsafe(32)


class IdPProcess:
    def __init__(self, db_url: str, key_file: Path, *, workers: int, redis_url: str = "") -> None:
        load_signing_keys(key_file)  # created once, before the workers start
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {
            "AJWT_IDP_ISSUER": self.url,
            "AJWT_IDP_DB": db_url,
            "AJWT_IDP_KEY_FILE": str(key_file),
            "AJWT_ADMIN_TOKEN": ADMIN,
            "AJWT_IDP_REDIS_URL": redis_url,
        }
        self._workers = workers
        self.process: ServerProcess | None = None

    def start(self) -> None:
        self.process = ServerProcess(
            "ajwt_core.idp.asgi:app_from_env", self._env, workers=self._workers, port=self.port
        )
        self.process.start("/.well-known/jwks.json")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def admin(self) -> AdminClient:
        return AdminClient(self.url, ADMIN)

    def setup_client(self) -> Shim:
        admin = self.admin()
        admin.register_workflow(reference_workflow().canonical())
        client = admin.register_client(scopes=["repo:read", "repo:write", "advisories:read"])
        admin.close()
        shim = Shim(self.url, client["client_id"], client_secret=client["client_secret"])
        shim.register_many(reference_manifests())
        return shim


@contextlib.contextmanager
def idp_process(db_url: str, key_file: Path, *, workers: int) -> Iterator[IdPProcess]:
    idp = IdPProcess(db_url, key_file, workers=workers)
    idp.start()
    try:
        yield idp
    finally:
        idp.stop()
