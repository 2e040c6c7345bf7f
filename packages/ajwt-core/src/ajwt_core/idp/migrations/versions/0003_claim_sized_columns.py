"""widen the single-use jti columns to what the claims allow

A client assertion's ``jti`` may be 512 characters (the claim limit) and a delegation's
stored key is ``<jkt>:<jti>`` (43 + 1 + 512); both columns were VARCHAR(256), so a valid
assertion with a long ``jti`` failed on PostgreSQL with a 500. SQLite does not enforce
VARCHAR lengths; the batch operation keeps its schema equal to the models.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CLAIM = 512
_DELEGATION_KEY = 43 + 1 + _CLAIM


def upgrade() -> None:
    with op.batch_alter_table("used_client_assertions") as batch_op:
        batch_op.alter_column(
            "jti", existing_type=sa.String(length=256), type_=sa.String(length=_CLAIM)
        )
    with op.batch_alter_table("delegations") as batch_op:
        batch_op.alter_column(
            "jti", existing_type=sa.String(length=256), type_=sa.String(length=_DELEGATION_KEY)
        )


def downgrade() -> None:
    # Rows longer than 256 characters would not fit: a downgrade refuses them (PostgreSQL
    # raises) rather than truncate an identifier that guards against replay.
    with op.batch_alter_table("delegations") as batch_op:
        batch_op.alter_column(
            "jti", existing_type=sa.String(length=_DELEGATION_KEY), type_=sa.String(length=256)
        )
    with op.batch_alter_table("used_client_assertions") as batch_op:
        batch_op.alter_column(
            "jti", existing_type=sa.String(length=_CLAIM), type_=sa.String(length=256)
        )
