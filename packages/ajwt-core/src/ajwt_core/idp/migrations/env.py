"""Alembic environment for the IdP schema: run by :func:`ajwt_core.idp.migrate.upgrade`."""

from __future__ import annotations

from alembic import context

from ajwt_core.idp.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
