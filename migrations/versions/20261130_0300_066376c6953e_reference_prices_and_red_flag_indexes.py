"""reference prices and red flag indexes

`reference_prices` holds the LBMA gold price (USD per troy ounce) and the PEN/USD rate by date,
the reference of red flag R8. `uq_red_flags_transaction_id_rule` allows one flag per transaction
and rule R1-R10 (the rules are idempotent); the two transaction indexes serve the rules' reads of
a seller's and a buyer's recent history on every proposal.

Revision ID: 066376c6953e
Revises: 7ac2acd3b5d2
Create Date: 2026-11-30 03:00:11.624790+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "066376c6953e"
down_revision = "7ac2acd3b5d2"
branch_labels = None
depends_on = None

ONE_PER_RULE = (
    "transaction_id IS NOT NULL AND rule IN "
    "('R1', 'R2', 'R3', 'R4', 'R5', 'R6', 'R7', 'R8', 'R9', 'R10')"
)


def upgrade() -> None:
    op.create_table(
        "reference_prices",
        sa.Column("price_date", sa.Date(), nullable=False),
        sa.Column("lbma_usd_per_oz", sa.Numeric(precision=12, scale=4), nullable=False),
        sa.Column("pen_per_usd", sa.Numeric(precision=10, scale=6), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("price_date", name=op.f("pk_reference_prices")),
    )
    with op.batch_alter_table("red_flags", schema=None) as batch_op:
        batch_op.create_index(
            "uq_red_flags_transaction_id_rule",
            ["transaction_id", "rule"],
            unique=True,
            postgresql_where=sa.text(ONE_PER_RULE),
            sqlite_where=sa.text(ONE_PER_RULE),
        )

    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transactions_buyer_id_created_at", ["buyer_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_transactions_seller_ruc_created_at", ["seller_ruc", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_seller_ruc_created_at")
        batch_op.drop_index("ix_transactions_buyer_id_created_at")

    with op.batch_alter_table("red_flags", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_red_flags_transaction_id_rule",
            postgresql_where=sa.text(ONE_PER_RULE),
            sqlite_where=sa.text(ONE_PER_RULE),
        )

    op.drop_table("reference_prices")
