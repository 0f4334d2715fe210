"""status history

`status_changes` keeps every change of a REINFO registration's estado (written by the REINFO
import: a registration's first estado and each change) and of a registrant's own standing (its
creation by the registrant import, and console decisions); rows are never updated. Each row names
exactly one subject, and each subject column has a partial index without the other's NULLs.
`registration_id` is not a foreign key (the import writes it from the ids it has just given; a
key check per row would slow the import). A new table: creating it locks nothing in use.

Revision ID: 131b05fc19dd
Revises: c2b1de312512
Create Date: 2026-11-30 05:10:07.590146+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "131b05fc19dd"
down_revision = "c2b1de312512"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=True),
        sa.Column("registrant_id", sa.Integer(), nullable=True),
        sa.Column("old_status", sa.String(length=20), nullable=True),
        sa.Column("new_status", sa.String(length=20), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "reinfo_import",
                "registrant_import",
                "console",
                name="source",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("snapshot_date", sa.Date(), nullable=True),
        sa.Column("source_file", sa.String(length=200), nullable=True),
        sa.Column("changed_by", sa.String(length=80), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "(registration_id IS NULL) <> (registrant_id IS NULL)",
            name=op.f("ck_status_changes_one_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["registrant_id"],
            ["registrants.id"],
            name=op.f("fk_status_changes_registrant_id_registrants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_changes")),
    )
    for column in ("registrant_id", "registration_id"):
        op.create_index(
            f"ix_status_changes_{column}",
            "status_changes",
            [column],
            unique=False,
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
        )


def downgrade() -> None:
    for column in ("registration_id", "registrant_id"):
        op.drop_index(f"ix_status_changes_{column}", table_name="status_changes")
    op.drop_table("status_changes")
