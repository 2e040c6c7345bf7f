"""``Shim.from_env``: the app's code holds no secret; each variable is read, and a
missing one is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.shim import Shim, secret_from_env

BASE = {"AJWT_IDP_URL": "http://127.0.0.1:9/", "AJWT_CLIENT_ID": "app"}


def test_secret_audience_and_master_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    shim = Shim.from_env(
        BASE
        | {
            "AJWT_CLIENT_SECRET_FILE": str(secret_file),
            "AJWT_AUDIENCE": "http://127.0.0.1:8001",
            "AJWT_SHIM_SECRET": "ab" * 32,
        }
    )
    assert (shim.idp_url, shim.client_id, shim.default_audience) == (
        "http://127.0.0.1:9",
        "app",
        "http://127.0.0.1:8001",
    )
    assert shim._client_secret == "s3cret"
    assert shim._master == bytes.fromhex("ab" * 32)
    # Keys derived from a given master secret are the same in every process.
    other = Shim.from_env(BASE | {"AJWT_CLIENT_SECRET": "x", "AJWT_SHIM_SECRET": "ab" * 32})
    assert other._master == shim._master
    # Options given in code win over the environment.
    assert (
        Shim.from_env(
            BASE | {"AJWT_CLIENT_SECRET": "x"}, default_audience="http://a"
        ).default_audience
        == "http://a"
    )


def test_private_key_jwt_from_a_pem_file(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "client.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    shim = Shim.from_env(BASE | {"AJWT_CLIENT_KEY_FILE": str(pem), "AJWT_CLIENT_KEY_ID": "k1"})
    assert shim._client_key is not None and shim._client_key_id == "k1"
    pem.write_text("not a key")
    with pytest.raises(InvalidRequest) as info:
        Shim.from_env(BASE | {"AJWT_CLIENT_KEY_FILE": str(pem)})
    assert info.value.reason == Reason.INVALID_KEY


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "AJWT_IDP_URL"),
        ({"AJWT_IDP_URL": "http://127.0.0.1:9"}, "AJWT_CLIENT_ID"),
        (BASE, "AJWT_CLIENT_SECRET"),
        (BASE | {"AJWT_CLIENT_SECRET_FILE": "/no/such/file"}, "AJWT_CLIENT_SECRET_FILE"),
    ],
)
def test_a_missing_variable_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Shim.from_env(environ)
    assert info.value.reason == Reason.MISSING_PARAMETER
    assert named in info.value.description


@pytest.mark.parametrize("secret", ["zz" * 32, "ab" * 8])
def test_a_bad_master_secret_is_refused(secret: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Shim.from_env(BASE | {"AJWT_CLIENT_SECRET": "x", "AJWT_SHIM_SECRET": secret})
    assert info.value.reason == Reason.INVALID_KEY


def test_secret_from_env_reads_the_value_or_its_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJ.x.y\n")
    assert secret_from_env("AJWT_USER_TOKEN", {"AJWT_USER_TOKEN_FILE": str(token)}) == "eyJ.x.y"
    assert secret_from_env("AJWT_USER_TOKEN", {}) is None
