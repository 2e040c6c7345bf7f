"""runs.subject_issuer: the issuer that vouched for the run's user

A run's ``subject`` alone does not say which issuer it came from (a local user and an
upstream user may both be ``alice``); from this revision the IdP records the issuer of
the user's token with the run. Runs started before stay NULL: which issuer vouched for
them was not recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_issuer", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("subject_issuer")
