"""Runs started by a user of panva's certified ``oidc-provider`` (issue 16), on 127.0.0.1.

The provider (``tests/interop/oidc_provider/provider.mjs``, installed with ``npm ci`` from
the committed lock file, as ``test_spec_node.py`` installs ``jose``) has one public
client and its own development login pages; the test logs ``alice`` in through them with
httpx (authorization code + PKCE S256, no browser), asking for the A-JWT IdP as the
resource so that the access token is an RFC 9068 JWT, and starts runs with:

* the ID token and the access token, at an IdP configured from the command line and the
  environment (discovery at ``/.well-known/openid-configuration``);
* a token signed by a key the provider published after the IdP fetched its keys;
* a token, at an IdP started while the provider was down (503, then 201 once it is up).

Skipped locally without node or the npm registry; required in CI
(``AJWT_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ajwt_core.errors import AccessDenied, InvalidGrant, Reason, ServerError
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_core.tokens import ID_TOKEN_TYPE_URI
from ajwt_core.workflow import reference_workflow
from tests.interop.node_packages import install, node_and_npm

HERE = Path(__file__).resolve().parent
PROVIDER_DIR = HERE / "oidc_provider"
AJWT = Path(sys.executable).with_name("ajwt")
CLIENT_ID = "ajwt-app"
REDIRECT_URI = "http://127.0.0.1/callback"  # never visited: the code is read from Location
#: The resource the app asks the provider for: the A-JWT IdP (the access token's aud).
RESOURCE = "https://ajwt-idp.example/"
ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _signing_keys() -> list[dict[str, Any]]:
    """An RSA key (RS256: ID tokens) and a P-256 key (ES256: access tokens), private."""
    tag = secrets.token_hex(3)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return [
        jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
        | {"kid": f"rsa-{tag}", "alg": "RS256", "use": "sig"},
        jwt.algorithms.ECAlgorithm.to_jwk(ec_key, as_dict=True)
        | {"kid": f"ec-{tag}", "alg": "ES256", "use": "sig"},
    ]


class OidcProvider:
    """``node provider.mjs`` on a fixed port, so it can be stopped and started again."""

    def __init__(self, node: str, script: Path, workdir: Path) -> None:
        self.node = node
        self.script = script
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = _signing_keys()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        config = self.workdir / "provider.json"
        config.write_text(
            json.dumps(
                {
                    "issuer": self.issuer,
                    "port": self.port,
                    "client_id": CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "resource": RESOURCE,
                    "jwks": {"keys": self.keys},
                }
            )
        )
        self.process = subprocess.Popen(  # noqa: S603 - node from PATH, fixed arguments
            [self.node, str(self.script), str(config)],
            cwd=self.script.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()  # "ready", or EOF if it died
        if ready != "ready":
            self.stop()
            raise AssertionError(f"oidc-provider did not start: {self.stderr_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def stderr_tail(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        with contextlib.suppress(ValueError):
            return self.process.stderr.read()[-2000:]
        return ""

    def rotate(self) -> tuple[str, str]:
        """New keys first (they sign from the restart on), the old ones still published."""
        self.keys = _signing_keys() + self.keys
        self.stop()
        self.start()
        return self.keys[0]["kid"], self.keys[1]["kid"]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def login(self, user: str) -> dict[str, Any]:
        """Sign ``user`` in through the provider's own pages: the token response."""
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        state = secrets.token_urlsafe(8)
        with httpx.Client(base_url=self.issuer, timeout=10) as browser:
            answer = browser.get(
                "/auth",
                params={
                    "client_id": CLIENT_ID,
                    "response_type": "code",
                    "redirect_uri": REDIRECT_URI,
                    "scope": "openid runs:start",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    "state": state,
                    "nonce": secrets.token_urlsafe(8),
                    "resource": RESOURCE,
                },
            )
            # Login, then consent: each a form posted to the interaction, then a resume.
            for form in (
                {"prompt": "login", "login": user, "password": "x"},
                {"prompt": "consent"},
            ):
                assert answer.status_code in (302, 303), answer.text[:500]
                interaction = answer.headers["location"]
                assert browser.get(interaction).status_code == 200
                submitted = browser.post(interaction, data=form)
                assert submitted.status_code in (302, 303), submitted.text[:500]
                answer = browser.get(submitted.headers["location"])
            callback = httpx.URL(answer.headers["location"])
            assert str(callback).startswith(REDIRECT_URI), callback
            assert callback.params["state"] == state
            tokens = browser.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": callback.params["code"],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                    "client_id": CLIENT_ID,
                    "resource": RESOURCE,
                },
            )
        assert tokens.status_code == 200, tokens.text
        result: dict[str, Any] = tokens.json()
        return result


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    node, npm = node_and_npm("the oidc-provider interoperability test")
    target = install(npm, PROVIDER_DIR, "oidc-provider")
    # ES modules resolve "oidc-provider" from the script's own folder: it lives there.
    script = target / f"provider.{os.getpid()}.mjs"
    shutil.copy2(PROVIDER_DIR / "provider.mjs", script)
    running = OidcProvider(node, script, tmp_path_factory.mktemp("oidc-provider"))
    running.start()
    try:
        yield running
    finally:
        running.stop()
        script.unlink(missing_ok=True)


@contextlib.contextmanager
def idp_from_cli(tmp_path: Path, provider: OidcProvider) -> Iterator[str]:
    """``ajwt idp serve`` with the upstream from the environment and the command line;
    yielded once it answers (whether or not the provider does)."""
    port = free_port()
    env = {
        **os.environ,
        "AJWT_ADMIN_TOKEN": ADMIN_TOKEN,
        "AJWT_IDP_UPSTREAM_ISSUER": provider.issuer,
        "AJWT_IDP_UPSTREAM_CLIENT_ID": CLIENT_ID,
    }
    command = [
        str(AJWT), "idp", "serve", "--port", str(port), "--upstream-audience", RESOURCE,
        "--db", f"sqlite+aiosqlite:///{tmp_path}/idp.db", "--key-file", str(tmp_path / "k.json"),
    ]  # fmt: skip
    server = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (
                f"the IdP exited: {server.stderr and server.stderr.read()}"
            )
            try:
                httpx.get(base + "/.well-known/jwks.json", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the IdP did not start"
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def idp_in_process(tmp_path: Path, provider: OidcProvider, **settings: Any) -> Iterator[str]:
    """The IdP in this process (uvicorn in a thread), started whether or not the
    provider answers."""
    server = BackgroundServer()
    configured = IdPSettings(
        issuer=server.url,
        db_url=f"sqlite+aiosqlite:///{tmp_path}/idp.db",
        admin_token=ADMIN_TOKEN,
        upstream_issuer=provider.issuer,
        upstream_client_id=CLIENT_ID,
        upstream_audience=RESOURCE,
        **settings,
    )
    server.start(create_app(configured))
    try:
        yield server.url
    finally:
        server.close()


def shim_for(base: str) -> Shim:
    admin = AdminClient(base, ADMIN_TOKEN)
    try:
        with contextlib.suppress(Exception):  # registered already by an earlier test
            admin.register_workflow(reference_workflow().canonical())
        client = admin.register_client(scopes=["repo:read"])
    finally:
        admin.close()
    return Shim(base, client["client_id"], client_secret=client["client_secret"])


def start_with_id_token(shim: Shim, tokens: dict[str, Any]) -> str:
    run = shim.start_run(tokens["id_token"], "vuln-patch", subject_token_type=ID_TOKEN_TYPE_URI)
    return run.initiated_by


def test_runs_start_from_its_id_token_and_its_access_token(
    provider: OidcProvider, tmp_path: Path
) -> None:
    tokens = provider.login("alice")
    # What the provider sends, as issued (not as this project would have written them).
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
    assert jwt.get_unverified_header(tokens["id_token"]).get("typ") in (None, "JWT")
    with idp_from_cli(tmp_path, provider) as base:
        shim = shim_for(base)
        by_id_token = start_with_id_token(shim, tokens)
        by_access_token = shim.start_run(tokens["access_token"], "vuln-patch").initiated_by
        # One user, whichever token: namespaced by the provider's issuer.
        assert by_id_token == by_access_token == f"{provider.issuer}#alice"
        # Each token only as what it is.
        with pytest.raises(InvalidGrant) as info:
            start_with_id_token(shim, {"id_token": tokens["access_token"]})
        assert info.value.reason == Reason.WRONG_TYPE
        # Local users are off by default once an upstream is configured.
        admin = AdminClient(base, ADMIN_TOKEN)
        with pytest.raises(AccessDenied) as denied:
            admin.user_token("alice")
        admin.close()
        assert denied.value.reason == Reason.LOCAL_USERS_DISABLED


def test_a_key_added_at_the_provider_is_used_without_restarting_the_idp(
    provider: OidcProvider, tmp_path: Path
) -> None:
    with idp_in_process(tmp_path, provider, upstream_min_refresh=1.0) as base:
        shim = shim_for(base)
        assert start_with_id_token(shim, provider.login("alice")) == f"{provider.issuer}#alice"
        fetched = time.monotonic()
        new_rsa, new_ec = provider.rotate()
        tokens = provider.login("bob")
        assert jwt.get_unverified_header(tokens["id_token"])["kid"] == new_rsa
        assert jwt.get_unverified_header(tokens["access_token"])["kid"] == new_ec
        time.sleep(max(0.0, fetched + 1.1 - time.monotonic()))  # past min_refresh
        assert start_with_id_token(shim, tokens) == f"{provider.issuer}#bob"
        run = shim.start_run(tokens["access_token"], "vuln-patch")
        assert run.initiated_by == f"{provider.issuer}#bob"


def test_the_idp_starts_while_the_provider_is_down(provider: OidcProvider, tmp_path: Path) -> None:
    tokens = provider.login("carol")
    provider.stop()
    try:
        with idp_in_process(tmp_path, provider) as base:
            shim = shim_for(base)
            with pytest.raises(ServerError) as info:
                start_with_id_token(shim, tokens)
            assert info.value.reason == Reason.SERVICE_UNAVAILABLE
            provider.start()
            deadline = time.monotonic() + 10
            while True:  # the IdP asks the provider again after Retry-After (2 s)
                try:
                    assert start_with_id_token(shim, tokens) == f"{provider.issuer}#carol"
                    break
                except ServerError:
                    assert time.monotonic() < deadline, "the IdP never used the provider"
                    time.sleep(0.5)
    finally:
        if not provider.running:
            provider.start()
