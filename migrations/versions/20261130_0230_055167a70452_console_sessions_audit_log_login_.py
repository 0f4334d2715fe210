"""console sessions, audit log, login failures, list indexes

The console's own tables, and the indexes its list pages need on the message log, transactions,
phone links and red flags (each filter with id last, for keyset pagination; a trigram index for
text search in message bodies on PostgreSQL).

`console_audit` is append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL,
enabled ALWAYS), and PUBLIC holds no such privileges.

On PostgreSQL the indexes on the busy tables (messages, transactions) are built CONCURRENTLY,
outside the migration's transaction, so webhooks keep writing while they build. Should one build
fail, PostgreSQL leaves an INVALID index behind: drop it and run the upgrade again.

Revision ID: 055167a70452
Revises: 404fcd53ea2d
Create Date: 2026-11-30 02:30:47.718986+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "055167a70452"
down_revision = "404fcd53ea2d"
branch_labels = None
depends_on = None

# (name, table, columns) of the indexes on tables the gateway writes to all the time.
BUSY_TABLE_INDEXES = (
    ("ix_messages_channel_id", "messages", ["channel", "id"]),
    ("ix_messages_direction_id", "messages", ["direction", "id"]),
    ("ix_messages_status_id", "messages", ["status", "id"]),
    ("ix_transactions_department_id", "transactions", ["department", "id"]),
    ("ix_transactions_material_id", "transactions", ["material", "id"]),
    ("ix_transactions_status_id", "transactions", ["status", "id"]),
)
AUDIT = "console_audit"


def _append_only_postgresql() -> None:
    op.execute(
        """
        CREATE FUNCTION console_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'table % is append-only (% refused)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {AUDIT}_append_only BEFORE UPDATE OR DELETE ON {AUDIT} "
        "FOR EACH ROW EXECUTE FUNCTION console_audit_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {AUDIT}_no_truncate BEFORE TRUNCATE ON {AUDIT} "
        "FOR EACH STATEMENT EXECUTE FUNCTION console_audit_refuse_change()"
    )
    op.execute(f"ALTER TABLE {AUDIT} ENABLE ALWAYS TRIGGER {AUDIT}_append_only")
    op.execute(f"ALTER TABLE {AUDIT} ENABLE ALWAYS TRIGGER {AUDIT}_no_truncate")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {AUDIT} FROM PUBLIC")


def _append_only_sqlite() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {AUDIT}_no_{action.lower()} BEFORE {action} ON {AUDIT} "
            f"BEGIN SELECT RAISE(ABORT, 'table {AUDIT} is append-only'); END"
        )


def upgrade() -> None:
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_login_failures")),
    )
    op.create_index(
        "ix_console_login_failures_key_at", "console_login_failures", ["key", "at"], unique=False
    )
    op.create_table(
        AUDIT,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=True),
        sa.Column("target_id", sa.String(length=80), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_console_audit_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit")),
    )
    op.create_index(
        "ix_console_audit_target_type_target_id", AUDIT, ["target_type", "target_id"], unique=False
    )
    op.create_index("ix_console_audit_user_name_id", AUDIT, ["user_name", "id"], unique=False)
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_console_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"], unique=False)
    op.create_index("ix_phone_links_phone", "phone_links", ["phone"], unique=False)
    op.create_index("ix_phone_links_state_id", "phone_links", ["state", "id"], unique=False)
    op.create_index("ix_red_flags_rule_id", "red_flags", ["rule", "id"], unique=False)
    op.create_index("ix_red_flags_status_id", "red_flags", ["status", "id"], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        _append_only_sqlite()
        for name, table, columns in BUSY_TABLE_INDEXES:
            op.create_index(name, table, columns, unique=False)
        op.create_index("ix_messages_body_trgm", "messages", ["body"], unique=False)
        return
    _append_only_postgresql()
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, table, columns in BUSY_TABLE_INDEXES:
            op.create_index(
                name, table, columns, unique=False, postgresql_concurrently=True, if_not_exists=True
            )
        op.create_index(
            "ix_messages_body_trgm",
            "messages",
            ["body"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"body": "gin_trgm_ops"},
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.execute("RESET lock_timeout")


def downgrade() -> None:
    op.drop_index("ix_messages_body_trgm", table_name="messages")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {AUDIT}_append_only ON {AUDIT}")
        op.execute(f"DROP TRIGGER {AUDIT}_no_truncate ON {AUDIT}")
        op.execute("DROP FUNCTION console_audit_refuse_change()")
    for name, table, _columns in reversed(BUSY_TABLE_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_red_flags_status_id", table_name="red_flags")
    op.drop_index("ix_red_flags_rule_id", table_name="red_flags")
    op.drop_index("ix_phone_links_state_id", table_name="phone_links")
    op.drop_index("ix_phone_links_phone", table_name="phone_links")
    op.drop_index("ix_console_sessions_user_id", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_index("ix_console_audit_user_name_id", table_name=AUDIT)
    op.drop_index("ix_console_audit_target_type_target_id", table_name=AUDIT)
    op.drop_table(AUDIT)
    op.drop_index("ix_console_login_failures_key_at", table_name="console_login_failures")
    op.drop_table("console_login_failures")
