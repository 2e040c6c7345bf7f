"""Every resource-server block of ``docs/resource-servers.md``, run as written.

Each block is saved as a module and served in its own process (uvicorn for the ASGI
apps, Werkzeug's server for Flask) against a development IdP; a shim configured by
``Shim.from_env`` calls it. A legitimate request passes with the right user, agent and
chain; a request without a token and a replayed one are refused with the OAuth body.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ajwt_core.checksum import AgentManifest
from ajwt_core.idp.dev import DevIdP, start_dev_idp
from ajwt_core.shim import Shim

DOC = Path(__file__).resolve().parents[2] / "docs" / "resource-servers.md"
WORKFLOW = {
    "id": "repos",
    "version": 1,
    "steps": {"list": {"agent": "lister", "tools": ["list_repos"], "scopes": ["repo:read"]}},
}
LISTER = AgentManifest.model_validate(
    {
        "agent_id": "lister",
        "prompt": {"template": "List the user's repositories."},
        "tools": [{"name": "list_repos", "description": "List repositories."}],
    }
)


def doc_block(heading: str) -> str:
    """The first ```python block under the ``## heading`` of the page."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, f"no python block under {heading!r}"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevIdP]:
    with start_dev_idp(tmp_path_factory.mktemp("dev"), workflows=[WORKFLOW]) as running:
        yield running


def serve_block(heading: str, idp: DevIdP, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    module = "rs_" + re.sub(r"\W+", "_", heading.lower()).strip("_")
    (tmp_path / f"{module}.py").write_text(doc_block(heading), encoding="utf-8")
    if heading.startswith("Flask"):
        serve = (
            f"from werkzeug.serving import run_simple; import {module}; "
            f"run_simple('127.0.0.1', {port}, {module}.app)"
        )
        command = [sys.executable, "-c", serve]
    else:
        command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port)]
        command += ["--host", "127.0.0.1", "--log-level", "warning"]
        if heading.startswith("Django"):
            command += ["--lifespan", "off"]
    env = os.environ | {
        "AJWT_IDP_URL": idp.url,
        "AJWT_AUDIENCE": url,
        "PYTHONPATH": str(tmp_path),
    }
    server = subprocess.Popen(  # noqa: S603
        command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise AssertionError(f"the {heading} app exited: {server.stderr.read()}")  # type: ignore[union-attr]
        try:
            httpx.get(url + "/repos", timeout=1)
            return server, url
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the {heading} app did not start"
            time.sleep(0.2)


@pytest.mark.parametrize(
    "heading", ["FastAPI", "Starlette (any ASGI app)", "Django (ASGI)", "Flask (WSGI)"]
)
def test_documented_resource_server_passes_a_shim_and_refuses_the_rest(
    heading: str, idp: DevIdP, tmp_path: Path
) -> None:
    server, url = serve_block(heading, idp, tmp_path)
    try:
        shim = Shim.from_env(idp.environ() | {"AJWT_AUDIENCE": url})
        shim.register(LISTER)
        run = shim.start_run(idp.user_token("user:alice"), "repos")
        sent: list[httpx.Request] = []
        with (
            httpx.Client(auth=shim.auth(), event_hooks={"request": [sent.append]}) as http,
            shim.run(run),
            shim.acting("lister", tool="list_repos"),
        ):
            response = http.get(url + "/repos")
        assert response.status_code == 200, response.text
        assert response.json() == {"user": "user:alice", "agent": "lister", "chain": ["lister"]}

        missing = httpx.get(url + "/repos")
        assert missing.status_code == 401
        assert missing.json()["ajwt_reason"] == "missing_token"
        assert missing.headers["www-authenticate"].startswith("DPoP")

        # The same token and proof again: a captured request cannot be replayed.
        captured = {k: sent[-1].headers[k] for k in ("authorization", "dpop")}
        replayed = httpx.get(url + "/repos", headers=captured)
        assert replayed.status_code == 401
        assert replayed.json()["error"] == "invalid_dpop_proof"
        assert replayed.json()["ajwt_reason"] == "replayed"
        shim.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
