"""index the ledger by (run_id, kind)

Every mint reads the run's completed steps, approvals and delegations; with only the
(run_id, seq) primary key that read scanned the run's whole ledger, so a run's mints got
slower with every token it had been issued.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_entries_run_id_kind", "ledger_entries", ["run_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_run_id_kind", table_name="ledger_entries")
