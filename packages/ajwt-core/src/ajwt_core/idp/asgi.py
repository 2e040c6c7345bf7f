"""The IdP as an ASGI app factory configured by the environment, for uvicorn workers:
``uvicorn --factory ajwt_core.idp.asgi:app_from_env --workers N`` (``ajwt idp serve
--workers N`` hands its settings to the workers this way).

The settings are :meth:`IdPSettings.load`'s: a config file named by ``AJWT_IDP_CONFIG``,
then ``AJWT_IDP_<SETTING>`` variables (``AJWT_IDP_ISSUER`` is required; the older
``AJWT_IDP_DB`` and ``AJWT_ADMIN_TOKEN`` are read too). ``docs/operate.md`` lists them.
"""

from __future__ import annotations

from fastapi import FastAPI

from ajwt_core.errors import AJWTError, InvalidRequest
from ajwt_core.idp.admin_token import weakness
from ajwt_core.idp.app import create_app
from ajwt_core.idp.settings import IdPSettings


def settings_from_env() -> IdPSettings:
    """The IdP's settings from ``$AJWT_IDP_CONFIG`` and the environment; a missing or
    invalid setting, or a weak admin token, stops the worker with one line."""
    try:
        settings = IdPSettings.load()
    except AJWTError as exc:
        raise SystemExit(exc.description) from None
    why = weakness(settings.admin_token) if settings.admin_token else None
    if why is not None:
        raise SystemExit(f"AJWT_ADMIN_TOKEN is too weak: {why}")
    return settings


def app_from_env() -> FastAPI:
    try:
        return create_app(settings_from_env())
    except InvalidRequest as exc:  # a setting that cannot work, named in the message
        raise SystemExit(f"the IdP cannot start: {exc}") from None
