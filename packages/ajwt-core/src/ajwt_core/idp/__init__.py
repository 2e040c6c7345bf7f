"""The A-JWT IdP service (extra ``idp``): FastAPI app, SQLAlchemy storage, uvicorn server.

``create_app`` and ``IdPSettings`` are loaded on first use, so importing a submodule
that needs no web framework (``ajwt_core.idp.keystore``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ajwt_core.idp.app import create_app
    from ajwt_core.idp.settings import IdPSettings

__all__ = ["IdPSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ajwt_core._extras import needs_extra

        with needs_extra("idp", "the A-JWT IdP"):
            from ajwt_core.idp.app import create_app

        return create_app
    if name == "IdPSettings":
        from ajwt_core.idp.settings import IdPSettings

        return IdPSettings
    raise AttributeError(name)
