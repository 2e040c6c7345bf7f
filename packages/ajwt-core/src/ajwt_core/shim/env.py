"""The shim's configuration from the environment, so an app's code holds no secrets.

``Shim.from_env()`` reads these variables (``ajwt dev`` and ``ajwt client create
--env-file`` write them):

- ``AJWT_IDP_URL``: the IdP's issuer URL (required);
- ``AJWT_CLIENT_ID``: the OAuth client id (required);
- ``AJWT_CLIENT_SECRET``: its secret (``client_secret_basic``); or
  ``AJWT_CLIENT_KEY_FILE``: a PEM private key (P-256 or Ed25519, ``private_key_jwt``),
  with ``AJWT_CLIENT_KEY_ID``, the key's ``kid`` at the IdP (optional with one key);
- ``AJWT_AUDIENCE``: the default audience, the API the agents call (optional);
- ``AJWT_SHIM_SECRET``: the master secret of the agents' PoP keys, hex, at least 64
  digits (optional: random per process, so keys live as long as the process).

Every ``X`` that is a secret may instead be given as ``X_FILE``, the path of a file
holding it (mode 0600), so the secret never sits in the environment of every child
process; :func:`secret_from_env` reads either.

>>> env = {"AJWT_IDP_URL": "http://127.0.0.1:9", "AJWT_CLIENT_ID": "app",
...        "AJWT_CLIENT_SECRET": "s3cret", "AJWT_AUDIENCE": "http://127.0.0.1:8"}
>>> shim_options(env)["default_audience"]
'http://127.0.0.1:8'
>>> shim_options({})
Traceback (most recent call last):
ajwt_core.errors.InvalidRequest: AJWT_IDP_URL is not set: the IdP's URL (ajwt dev prints it)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ajwt_core.errors import InvalidRequest, Reason

IDP_URL_ENV: Final = "AJWT_IDP_URL"
CLIENT_ID_ENV: Final = "AJWT_CLIENT_ID"
CLIENT_SECRET_ENV: Final = "AJWT_CLIENT_SECRET"
CLIENT_KEY_FILE_ENV: Final = "AJWT_CLIENT_KEY_FILE"
CLIENT_KEY_ID_ENV: Final = "AJWT_CLIENT_KEY_ID"
AUDIENCE_ENV: Final = "AJWT_AUDIENCE"
SHIM_SECRET_ENV: Final = "AJWT_SHIM_SECRET"
USER_TOKEN_ENV: Final = "AJWT_USER_TOKEN"


def secret_from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``name``, or the stripped contents of the file ``name + "_FILE"``
    names; None if neither is set.

    >>> secret_from_env("AJWT_USER_TOKEN", {"AJWT_USER_TOKEN": "eyJ..."})
    'eyJ...'
    """
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value:
        return value
    path = env.get(name + "_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise InvalidRequest(
            Reason.MISSING_PARAMETER,
            f"{name}_FILE names {path!r}, which cannot be read: "
            f"{exc.strerror or type(exc).__name__}",
        ) from None


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name)
    if not value:
        raise InvalidRequest(Reason.MISSING_PARAMETER, f"{name} is not set: {what}")
    return value


def shim_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of :class:`~ajwt_core.shim.Shim` the environment gives."""
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {
        "idp_url": _required(env, IDP_URL_ENV, "the IdP's URL (ajwt dev prints it)"),
        "client_id": _required(env, CLIENT_ID_ENV, "the OAuth client id (ajwt client create)"),
    }
    client_secret = secret_from_env(CLIENT_SECRET_ENV, env)
    key_file = env.get(CLIENT_KEY_FILE_ENV)
    if client_secret:
        options["client_secret"] = client_secret
    elif key_file:
        options["client_key"] = _client_key(key_file)
        options["client_key_id"] = env.get(CLIENT_KEY_ID_ENV) or None
    else:
        raise InvalidRequest(
            Reason.MISSING_PARAMETER,
            f"set {CLIENT_SECRET_ENV} (or {CLIENT_SECRET_ENV}_FILE) or {CLIENT_KEY_FILE_ENV} "
            "to authenticate the client",
        )
    options["default_audience"] = env.get(AUDIENCE_ENV) or None
    master = secret_from_env(SHIM_SECRET_ENV, env)
    if master and master.startswith("file:"):  # the older spelling of AJWT_SHIM_SECRET_FILE
        master = secret_from_env(SHIM_SECRET_ENV, {SHIM_SECRET_ENV + "_FILE": master[5:]})
    try:
        # Random per process unless given: the agents' keys then live as long as it.
        options["master_secret"] = bytes.fromhex(master) if master else secrets.token_bytes(32)
    except ValueError:
        raise InvalidRequest(
            Reason.INVALID_KEY, f"{SHIM_SECRET_ENV} must be hexadecimal (at least 64 digits)"
        ) from None
    if len(options["master_secret"]) < 32:
        raise InvalidRequest(
            Reason.INVALID_KEY, f"{SHIM_SECRET_ENV} must be at least 32 bytes (64 hex digits)"
        )
    return options


def _client_key(path: str) -> Any:
    """The client's private key (PEM, EC P-256 or Ed25519) for ``private_key_jwt``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from ajwt_core.keys import PopKey

    try:
        private = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise InvalidRequest(
            Reason.INVALID_KEY,
            f"{CLIENT_KEY_FILE_ENV} {path!r} is not a readable, unencrypted PEM private key",
        ) from None
    if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) or (
        isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name != "secp256r1"
    ):
        raise InvalidRequest(
            Reason.INVALID_KEY, f"{CLIENT_KEY_FILE_ENV} must hold a P-256 or Ed25519 key"
        )
    return PopKey(private)
