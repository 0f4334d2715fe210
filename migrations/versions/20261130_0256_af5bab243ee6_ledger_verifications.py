"""ledger verifications

Runs of `verify_log` started from the console's ledger page (`admin.models.LedgerVerification`):
the run happens in a background thread of one web process, and its state lives here so that every
web process shows it.

Revision ID: af5bab243ee6
Revises: 625cd464a6bf
Create Date: 2026-11-30 02:56:27.758199+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "af5bab243ee6"
down_revision = "625cd464a6bf"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=80), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entries", sa.BigInteger(), nullable=True),
        sa.Column("checkpoints", sa.BigInteger(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_verifications")),
    )


def downgrade() -> None:
    op.drop_table("ledger_verifications")
