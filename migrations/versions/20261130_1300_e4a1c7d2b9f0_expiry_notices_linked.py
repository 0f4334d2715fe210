"""expiry notices linked to their transaction

`transaction_messages.step` also takes `expired`: the notices telling both parties that a
transaction expired unanswered are linked to it, beside the messages that proposed it. Only the
column's check changes. On PostgreSQL the new check is added NOT VALID and validated without
blocking writers, then the old one dropped; SQLite rebuilds the table.

Revision ID: e4a1c7d2b9f0
Revises: 5d0c7e1f9a42
Create Date: 2026-11-30 13:00:00.000000+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e4a1c7d2b9f0"
down_revision = "5d0c7e1f9a42"
branch_labels = None
depends_on = None

BEFORE = ("proposed", "claimed", "confirmed", "disputed")
AFTER = (*BEFORE, "expired")
CHECK = "ck_transaction_messages_step"


def _step(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="step", native_enum=False, create_constraint=True, length=20)


def _change(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        listed = ", ".join(f"'{value}'" for value in new)
        op.execute(
            f"ALTER TABLE transaction_messages ADD CONSTRAINT {CHECK}_new "
            f"CHECK (step IN ({listed})) NOT VALID"
        )
        op.execute(f"ALTER TABLE transaction_messages VALIDATE CONSTRAINT {CHECK}_new")
        op.execute(f"ALTER TABLE transaction_messages DROP CONSTRAINT {CHECK}")
        op.execute(f"ALTER TABLE transaction_messages RENAME CONSTRAINT {CHECK}_new TO {CHECK}")
        return
    with op.batch_alter_table("transaction_messages", schema=None) as batch_op:
        batch_op.alter_column(
            "step", existing_type=_step(old), type_=_step(new), existing_nullable=False
        )


def upgrade() -> None:
    _change(BEFORE, AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM transaction_messages WHERE step = 'expired'")
    _change(AFTER, BEFORE)
