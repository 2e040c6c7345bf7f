"""Issue 12 §6: ``ajwt idp retire-key`` for a compromised signing key. The key leaves the
JWKS, the IdP refuses what it signed within a second (its workers reload the key file),
and a resource server refuses it after its next JWKS refresh; the replacement signs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from ajwt_core.errors import AJWTError, InvalidToken, Reason
from ajwt_core.idp import IdPSettings, create_app
from ajwt_core.idp.admin import AdminClient
from ajwt_core.idp.keystore import load_signing_keys, retire_key_file, rotate_key_file
from ajwt_core.rs.jwks import JWKSCache
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Shim
from ajwt_core.tokens import decode_intent_token, encode_intent_token
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifests
from tests.support import AUDIENCE, ISSUER, NOW, ClaimsFactory

ADMIN_TOKEN = secrets.token_urlsafe(32)


@dataclass
class FileKeyedIdP:
    url: str
    key_file: Path
    admin: AdminClient
    shim: Shim


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[FileKeyedIdP]:
    """An IdP serving its signing keys from a key file, as ``ajwt idp serve`` does."""
    server = BackgroundServer()
    key_file = tmp_path / "keys.json"
    settings = IdPSettings(
        issuer=server.url,
        db_url=f"sqlite+aiosqlite:///{tmp_path}/idp.db",
        admin_token=ADMIN_TOKEN,
        key_file=key_file,
    )
    server.start(create_app(settings))
    admin = AdminClient(server.url, ADMIN_TOKEN)
    admin.register_workflow(reference_workflow().canonical())
    client = admin.register_client(scopes=["repo:read", "repo:write", "advisories:read"])
    shim = Shim(server.url, client["client_id"], client_secret=client["client_secret"])
    shim.register_many(reference_manifests())
    yield FileKeyedIdP(server.url, key_file, admin, shim)
    admin.close()
    server.close()


def reloaded() -> None:
    time.sleep(1.2)  # the IdP re-reads a changed key file at most once a second


def test_idp_refuses_a_user_token_of_a_retired_key(idp: FileKeyedIdP) -> None:
    old_user_token = idp.admin.user_token("user:alice")
    old_kid = load_signing_keys(idp.key_file).active.kid
    replacement = retire_key_file(idp.key_file, old_kid, replace=True)
    reloaded()

    with pytest.raises(AJWTError) as refused:
        idp.shim.start_run(old_user_token, "vuln-patch")
    assert refused.value.reason == Reason.UNKNOWN_KID
    # The replacement key signs from now on, and what it signs is accepted.
    new_user_token = idp.admin.user_token("user:alice")
    assert idp.shim.start_run(new_user_token, "vuln-patch").run_id
    assert replacement in {k.kid for k in load_signing_keys(idp.key_file).keys}


def test_idp_refuses_an_intent_token_of_a_retired_key(idp: FileKeyedIdP) -> None:
    run = idp.shim.start_run(idp.admin.user_token("user:alice"), "vuln-patch")
    audience = "http://127.0.0.1:9"
    with idp.shim.acting("supervisor", tool="list_repos", run=run) as context:
        idp.shim.token(context, audience)  # signed by the key about to be retired
    retire_key_file(idp.key_file, load_signing_keys(idp.key_file).active.kid, replace=True)
    reloaded()

    with pytest.raises(AJWTError) as refused:
        idp.shim.complete("supervisor", "triage", run=run)
    assert refused.value.reason == Reason.UNKNOWN_KID
    # A token from the replacement key completes the step.
    idp.shim._tokens.clear()
    with idp.shim.acting("supervisor", tool="list_repos", run=run) as context:
        idp.shim.token(context, audience)
    assert idp.shim.complete("supervisor", "triage", run=run)


def test_a_rotated_key_signs_after_its_activation_and_retiring_the_old_one_is_safe(
    idp: FileKeyedIdP,
) -> None:
    old_kid = load_signing_keys(idp.key_file).active.kid
    new_kid = rotate_key_file(idp.key_file, activate_after=0)
    reloaded()
    retire_key_file(idp.key_file, old_kid)  # not active any more: no replacement needed
    reloaded()
    run = idp.shim.start_run(idp.admin.user_token("user:alice"), "vuln-patch")
    with idp.shim.acting("supervisor", tool="list_repos", run=run) as context:
        issued = idp.shim.token(context, "http://127.0.0.1:9")
    assert jwt.get_unverified_header(issued.token)["kid"] == new_kid


async def test_a_resource_server_refuses_a_retired_key_after_its_jwks_refresh(
    idp: FileKeyedIdP, make_claims: ClaimsFactory
) -> None:
    cache = JWKSCache(idp.url + "/.well-known/jwks.json", min_refresh=0)
    await cache.refresh()
    retired = load_signing_keys(idp.key_file).active
    token = encode_intent_token(make_claims(), retired)
    options = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    assert decode_intent_token(token, cache.keys, **options).jti == "jti-1"

    replacement_kid = retire_key_file(idp.key_file, retired.kid, replace=True)
    reloaded()
    assert await cache.refresh()  # the keys changed
    with pytest.raises(InvalidToken) as refused:
        decode_intent_token(token, cache.keys, **options)
    assert refused.value.reason == Reason.UNKNOWN_KID
    replacement = next(k for k in load_signing_keys(idp.key_file).keys if k.kid == replacement_kid)
    fresh = encode_intent_token(make_claims(), replacement)
    assert decode_intent_token(fresh, cache.keys, **options).jti == "jti-1"
