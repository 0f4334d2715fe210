"""transactions and red flags

Revision ID: 404fcd53ea2d
Revises: 790e158f1dc5
Create Date: 2026-11-30 02:21:53.763439+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "404fcd53ea2d"
down_revision = "790e158f1dc5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column(
            "initiator",
            sa.Enum(
                "buyer",
                "seller",
                name="initiator",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("buyer_id", sa.Integer(), nullable=False),
        sa.Column("seller_id", sa.Integer(), nullable=False),
        sa.Column("seller_ruc", sa.String(length=11), nullable=False),
        sa.Column("material", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("unit", sa.String(length=4), nullable=False),
        sa.Column("grade", sa.Numeric(precision=12, scale=4), nullable=True),
        sa.Column("fine_gold_g", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("price_pen", sa.Numeric(precision=16, scale=2), nullable=False),
        sa.Column("department", sa.String(length=100), nullable=True),
        sa.Column("province", sa.String(length=100), nullable=True),
        sa.Column("district", sa.String(length=100), nullable=True),
        sa.Column("ubigeo", sa.String(length=6), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "proposed",
                "confirmed",
                "disputed",
                "expired",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("receipt_code", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["buyer_id"], ["registrants.id"], name=op.f("fk_transactions_buyer_id_registrants")
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"], ["registrants.id"], name=op.f("fk_transactions_seller_id_registrants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("receipt_code", name=op.f("uq_transactions_receipt_code")),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_buyer_id", ["buyer_id"], unique=False)
        batch_op.create_index("ix_transactions_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_transactions_seller_id", ["seller_id"], unique=False)
        batch_op.create_index(
            "ix_transactions_status_expires_at", ["status", "expires_at"], unique=False
        )
        batch_op.create_index(
            "uq_transactions_open_code",
            ["code"],
            unique=True,
            postgresql_where=sa.text("status = 'proposed'"),
            sqlite_where=sa.text("status = 'proposed'"),
        )

    op.create_table(
        "red_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("phone", sa.String(length=16), nullable=True),
        sa.Column("document", sa.String(length=20), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "in_review",
                "resolved",
                "escalated",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_red_flags_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_red_flags")),
    )
    with op.batch_alter_table("red_flags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_red_flags_status_created_at", ["status", "created_at"], unique=False
        )
        batch_op.create_index("ix_red_flags_transaction_id", ["transaction_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("red_flags", schema=None) as batch_op:
        batch_op.drop_index("ix_red_flags_transaction_id")
        batch_op.drop_index("ix_red_flags_status_created_at")

    op.drop_table("red_flags")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_transactions_open_code",
            postgresql_where=sa.text("status = 'proposed'"),
            sqlite_where=sa.text("status = 'proposed'"),
        )
        batch_op.drop_index("ix_transactions_status_expires_at")
        batch_op.drop_index("ix_transactions_seller_id")
        batch_op.drop_index("ix_transactions_created_at")
        batch_op.drop_index("ix_transactions_buyer_id")

    op.drop_table("transactions")
