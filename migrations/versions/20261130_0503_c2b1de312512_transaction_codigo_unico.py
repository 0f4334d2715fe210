"""transaction código único

`transactions.codigo_unico` is the mining right (REINFO código único, 9 digits) the seller
declares the gold comes from; red flag R2 checks it against the seller's registrations. Nullable:
transactions recorded before it was asked have none. On PostgreSQL the column is added without a
rewrite and its check is added NOT VALID, then validated without blocking writers.
`ix_reinfo_registrations_codigo_unico` finds who holds a mining right (R2's evidence, and whether
a right's code would name a natural person).

Revision ID: c2b1de312512
Revises: 066376c6953e
Create Date: 2026-11-30 05:03:00.000000+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c2b1de312512"
down_revision = "066376c6953e"
branch_labels = None
depends_on = None

CHECK = "ck_transactions_codigo_unico_length"


def upgrade() -> None:
    op.create_index(
        "ix_reinfo_registrations_codigo_unico",
        "reinfo_registrations",
        ["codigo_unico"],
        unique=False,
    )
    column = sa.Column("codigo_unico", sa.String(length=9), nullable=True)
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("transactions", column)
        op.execute(
            f"ALTER TABLE transactions ADD CONSTRAINT {CHECK} "
            "CHECK (length(codigo_unico) = 9) NOT VALID"
        )
        op.execute(f"ALTER TABLE transactions VALIDATE CONSTRAINT {CHECK}")
        return
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.add_column(column)
        batch_op.create_check_constraint("codigo_unico_length", "length(codigo_unico) = 9")


def downgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CHECK), type_="check")
        batch_op.drop_column("codigo_unico")
    op.drop_index("ix_reinfo_registrations_codigo_unico", table_name="reinfo_registrations")
