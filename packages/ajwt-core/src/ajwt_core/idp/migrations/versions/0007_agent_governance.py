"""agent governance: per-client registration policy, agent checksums and their versions

- ``clients.agent_policy``: ``open`` (any checksum registers, as before), ``pinned``
  (only checksums an administrator registered) or ``approval`` (a new checksum waits for
  an administrator). A client created with ``allow_runtime_registration = false`` (whose
  agents could never register: there was no admin endpoint) becomes ``pinned``.
- ``agent_checksums``: every checksum each client's agent has had, numbered: an agent's
  version is now the version of its checksum, kept by key rotations and restarts. The
  existing registrations are numbered so (first seen, version 1; next checksum, 2...).
- ``agent_registrations``: the unique (client, agent, version) goes (registrations of one
  checksum share its version); an index on the same columns keeps the mint's lookup.

Chained after 0004 (another branch writes 0005; the merge re-chains).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_REGISTRATIONS = sa.table(
    "agent_registrations",
    sa.column("registration_id", sa.String),
    sa.column("client_id", sa.String),
    sa.column("agent_id", sa.String),
    sa.column("version", sa.Integer),
    sa.column("checksum", sa.String),
    sa.column("manifest", sa.JSON),
    sa.column("created_at", sa.BigInteger),
)


def _drop_old_unique(batch_op: object, bind: sa.engine.Connection) -> None:
    for constraint in sa.inspect(bind).get_unique_constraints("agent_registrations"):
        if sorted(constraint["column_names"]) == ["agent_id", "client_id", "version"]:
            name = constraint.get("name") or "uq_agent_registrations_client_id_agent_id_version"
            batch_op.drop_constraint(name, type_="unique")  # type: ignore[attr-defined]


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agent_policy", sa.String(length=16), server_default="open", nullable=False)
        )
    op.execute("UPDATE clients SET agent_policy = 'pinned' WHERE NOT allow_runtime_registration")

    op.create_table(
        "agent_checksums",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=128), nullable=False),
        sa.Column("checksum", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"]),
        sa.PrimaryKeyConstraint("client_id", "agent_id", "checksum"),
        sa.UniqueConstraint("client_id", "agent_id", "version"),
    )

    # Number the checksums each agent has had, in the order they were first registered,
    # and give every registration its checksum's version.
    rows = bind.execute(
        sa.select(_REGISTRATIONS).order_by(
            _REGISTRATIONS.c.client_id,
            _REGISTRATIONS.c.agent_id,
            _REGISTRATIONS.c.version,
        )
    ).all()
    versions: dict[tuple[str, str, str], int] = {}
    counters: dict[tuple[str, str], int] = {}
    checksums: list[dict[str, object]] = []
    for row in rows:
        key = (row.client_id, row.agent_id, row.checksum)
        if key not in versions:
            counter = counters.get((row.client_id, row.agent_id), 0) + 1
            counters[(row.client_id, row.agent_id)] = counter
            versions[key] = counter
            checksums.append(
                {
                    "client_id": row.client_id,
                    "agent_id": row.agent_id,
                    "checksum": row.checksum,
                    "version": counter,
                    "status": "allowed",
                    "manifest": row.manifest,
                    "source": "runtime",
                    "created_at": row.created_at,
                    "decided_at": None,
                    "decided_by": None,
                }
            )

    with op.batch_alter_table(
        "agent_registrations",
        schema=None,
        naming_convention={"uq": "uq_%(table_name)s_%(column_0_N_name)s"},
    ) as batch_op:
        _drop_old_unique(batch_op, bind)
        batch_op.create_index(
            "ix_agent_registrations_client_agent",
            ["client_id", "agent_id", "version"],
            unique=False,
        )

    if checksums:
        op.bulk_insert(sa.table("agent_checksums", *_checksum_columns()), checksums)
    for row in rows:
        version = versions[(row.client_id, row.agent_id, row.checksum)]
        if version != row.version:
            bind.execute(
                sa.update(_REGISTRATIONS)
                .where(_REGISTRATIONS.c.registration_id == row.registration_id)
                .values(version=version)
            )


def _checksum_columns() -> list[sa.ColumnClause[object]]:
    return [
        sa.column("client_id", sa.String),
        sa.column("agent_id", sa.String),
        sa.column("checksum", sa.String),
        sa.column("version", sa.Integer),
        sa.column("status", sa.String),
        sa.column("manifest", sa.JSON),
        sa.column("source", sa.String),
        sa.column("created_at", sa.BigInteger),
        sa.column("decided_at", sa.BigInteger),
        sa.column("decided_by", sa.String),
    ]


def downgrade() -> None:
    # Registration versions are renumbered per registration again, so the old unique
    # constraint holds.
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_REGISTRATIONS).order_by(
            _REGISTRATIONS.c.client_id,
            _REGISTRATIONS.c.agent_id,
            _REGISTRATIONS.c.created_at,
            _REGISTRATIONS.c.registration_id,
        )
    ).all()
    counters: dict[tuple[str, str], int] = {}
    for row in rows:
        counter = counters.get((row.client_id, row.agent_id), 0) + 1
        counters[(row.client_id, row.agent_id)] = counter
        bind.execute(
            sa.update(_REGISTRATIONS)
            .where(_REGISTRATIONS.c.registration_id == row.registration_id)
            .values(version=counter)
        )
    with op.batch_alter_table("agent_registrations", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_registrations_client_agent")
        batch_op.create_unique_constraint(
            "uq_agent_registrations_client_id_agent_id_version",
            ["client_id", "agent_id", "version"],
        )
    op.drop_table("agent_checksums")
    # Not a batch (which would recreate ``clients``, a table others reference): SQLite
    # 3.35+ drops a column in place.
    op.drop_column("clients", "agent_policy")
