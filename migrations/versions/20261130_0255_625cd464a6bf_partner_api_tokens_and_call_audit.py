"""partner API tokens and the audit log of API calls

`partner_tokens` keeps each partner institution's bearer tokens as SHA-256 hashes, with scopes,
revocation and last use. `partner_api_calls` records every call to /api/v1 and is append-only:
triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL, enabled ALWAYS), and PUBLIC holds
no such privileges.

Revision ID: 625cd464a6bf
Revises: 055167a70452
Create Date: 2026-11-30 02:55:19.384940+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "625cd464a6bf"
down_revision = "055167a70452"
branch_labels = None
depends_on = None

CALLS = "partner_api_calls"


def _append_only_postgresql() -> None:
    op.execute(
        """
        CREATE FUNCTION partner_api_calls_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'table % is append-only (% refused)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {CALLS}_append_only BEFORE UPDATE OR DELETE ON {CALLS} "
        "FOR EACH ROW EXECUTE FUNCTION partner_api_calls_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {CALLS}_no_truncate BEFORE TRUNCATE ON {CALLS} "
        "FOR EACH STATEMENT EXECUTE FUNCTION partner_api_calls_refuse_change()"
    )
    op.execute(f"ALTER TABLE {CALLS} ENABLE ALWAYS TRIGGER {CALLS}_append_only")
    op.execute(f"ALTER TABLE {CALLS} ENABLE ALWAYS TRIGGER {CALLS}_no_truncate")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {CALLS} FROM PUBLIC")


def _append_only_sqlite() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {CALLS}_no_{action.lower()} BEFORE {action} ON {CALLS} "
            f"BEGIN SELECT RAISE(ABORT, 'table {CALLS} is append-only'); END"
        )


def upgrade() -> None:
    op.create_table(
        "partner_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution", sa.String(length=120), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_prefix", sa.String(length=20), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_partner_tokens_token_hash")),
    )
    op.create_index(
        "ix_partner_tokens_institution", "partner_tokens", ["institution"], unique=False
    )
    op.create_table(
        CALLS,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("institution", sa.String(length=120), nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("endpoint", sa.String(length=300), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["partner_tokens.id"],
            name=op.f("fk_partner_api_calls_token_id_partner_tokens"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_api_calls")),
    )
    op.create_index("ix_partner_api_calls_at", CALLS, ["at"], unique=False)
    op.create_index("ix_partner_api_calls_token_id_id", CALLS, ["token_id", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _append_only_postgresql()
    else:
        _append_only_sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {CALLS}_append_only ON {CALLS}")
        op.execute(f"DROP TRIGGER {CALLS}_no_truncate ON {CALLS}")
        op.execute("DROP FUNCTION partner_api_calls_refuse_change()")
    op.drop_index("ix_partner_api_calls_token_id_id", table_name=CALLS)
    op.drop_index("ix_partner_api_calls_at", table_name=CALLS)
    op.drop_table(CALLS)
    op.drop_index("ix_partner_tokens_institution", table_name="partner_tokens")
    op.drop_table("partner_tokens")
