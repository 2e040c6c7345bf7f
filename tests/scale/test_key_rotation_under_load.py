"""Issue 8: the IdP's signing key rotated while requests flow through two IdP workers and
two resource-server workers: no legitimate request fails, and the new key takes over."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest

from ajwt_core.idp.keystore import rotate_key_file
from tests.e2e.test_postgres_redis import postgres_url  # noqa: F401 - fixture
from tests.scale.idp_process import idp_process
from tests.scale.procs import running

pytestmark = [pytest.mark.heavy, pytest.mark.postgres]


def test_rotation_during_load_fails_no_request(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys.json"
    with idp_process(postgres_url, key_file, workers=2) as idp:

        def env(url: str) -> dict[str, str]:
            return {"AJWT_RS_ISSUER": idp.url, "AJWT_RS_AUDIENCE": url}

        with running("ajwt_demo.asgi:api_from_env", env, workers=2, ready_path="/health") as api:
            shim = idp.setup_client()
            admin = idp.admin()
            run = shim.start_run(admin.user_token("user:alice"), "vuln-patch")
            admin.close()
            failures: list[str] = []
            kids: set[str] = set()
            stop = threading.Event()

            def load() -> None:
                with (
                    httpx.Client(base_url=api.url, auth=shim.auth(), timeout=10) as http,
                    shim.acting("supervisor", tool="list_repos", run=run),
                ):
                    while not stop.is_set():
                        shim._tokens.clear()  # a fresh mint each time: every key is used
                        response = http.get("/repos")
                        if response.status_code != 200:
                            failures.append(response.text)
                        token = response.request.headers["Authorization"].removeprefix("DPoP ")
                        kids.add(jwt.get_unverified_header(token)["kid"])

            threads = [threading.Thread(target=load) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(2)
            # The resource servers refresh their JWKS at least every 5 s (ajwt_demo.asgi):
            # publish now, sign from 6 s on.
            new_kid = rotate_key_file(key_file, activate_after=6)
            time.sleep(10)
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert failures == []
    assert new_kid in kids and len(kids) == 2
