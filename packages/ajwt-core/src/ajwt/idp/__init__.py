"""The A-JWT IdP service (extra ``idp``): FastAPI app, SQLAlchemy storage, uvicorn server."""

from ajwt.idp.app import create_app
from ajwt.idp.settings import IdPSettings

__all__ = ["IdPSettings", "create_app"]
