"""transaction message links

`transaction_messages` links a transaction to the messages of the conversations that proposed,
claimed, confirmed or rejected it (both parties' messages and the replies), written by the gateway
in the inbound message's own transaction. A new table: creating it locks nothing in use.

Revision ID: 5d0c7e1f9a42
Revises: 131b05fc19dd
Create Date: 2026-11-30 05:11:00.000000+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5d0c7e1f9a42"
down_revision = "131b05fc19dd"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transaction_messages",
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "step",
            sa.Enum(
                "proposed",
                "claimed",
                "confirmed",
                "disputed",
                name="step",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_transaction_messages_message_id_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_transaction_messages_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint(
            "transaction_id", "message_id", name=op.f("pk_transaction_messages")
        ),
    )
    op.create_index(
        "ix_transaction_messages_message_id", "transaction_messages", ["message_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_transaction_messages_message_id", table_name="transaction_messages")
    op.drop_table("transaction_messages")
