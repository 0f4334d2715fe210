"""ledger witness cosignatures and status

The registry's record of witnessing (C2SP tlog-witness): each witness's verified cosignature per
checkpoint size, each witness's current standing (last cosigned size, last attempt, alarm), and
every refusal a witness answered with, kept after later attempts.

Revision ID: 7ac2acd3b5d2
Revises: af5bab243ee6
Create Date: 2026-11-30 02:58:00.000000+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "7ac2acd3b5d2"
down_revision = "af5bab243ee6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_cosignatures",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness_name", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "size", "witness_name", "key_id", name=op.f("pk_ledger_cosignatures")
        ),
    )
    op.create_table(
        "ledger_witness_refusals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("witness_name", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("old_size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_witness_refusals")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "ledger_witness_status",
        sa.Column("witness_name", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("cosigned_size", sa.BigInteger(), nullable=True),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("alarm", sa.Boolean(), nullable=False),
        sa.Column("alarm_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("witness_name", "key_id", name=op.f("pk_ledger_witness_status")),
    )


def downgrade() -> None:
    op.drop_table("ledger_witness_status")
    op.drop_table("ledger_witness_refusals")
    op.drop_table("ledger_cosignatures")
