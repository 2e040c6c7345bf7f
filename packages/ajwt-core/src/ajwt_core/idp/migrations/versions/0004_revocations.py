"""revocations: the record the IdP republishes to Redis, and its publishing outbox

Redis may lose what the IdP published (a restart without persistence); the database is
the source of truth, so every revocation is recorded here in the revoking transaction.
Existing revocations are copied in, as already published (the IdP republishes the
recent ones on start anyway).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ident", sa.String(length=128), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=False),
        sa.Column("published_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kind", "ident"),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocations_revoked_at"), ["revoked_at"], unique=False)
    op.execute(
        "INSERT INTO revocations (kind, ident, revoked_at, published_at) "
        "SELECT 'run', run_id, closed_at, closed_at FROM runs "
        "WHERE state = 'revoked' AND closed_at IS NOT NULL"
    )
    op.execute(
        "INSERT INTO revocations (kind, ident, revoked_at, published_at) "
        "SELECT 'intent', intent_id, closed_at, closed_at FROM runs "
        "WHERE state = 'intent_revoked' AND closed_at IS NOT NULL"
    )
    op.execute(
        "INSERT INTO revocations (kind, ident, revoked_at, published_at) "
        "SELECT 'agent', registration_id, revoked_at, revoked_at FROM agent_registrations "
        "WHERE revoked_at IS NOT NULL"
    )
    op.execute(
        "INSERT INTO revocations (kind, ident, revoked_at, published_at) "
        "SELECT 'client', client_id, revoked_at, revoked_at FROM clients "
        "WHERE revoked_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_revoked_at"))
    op.drop_table("revocations")
