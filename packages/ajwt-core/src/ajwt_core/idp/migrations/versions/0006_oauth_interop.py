"""clients.resources (who may introspect what, RFC 7662) and idp_secrets (the key of
the opaque workflow names of privacy mode)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))
    op.create_table(
        "idp_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("idp_secrets")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("resources")
