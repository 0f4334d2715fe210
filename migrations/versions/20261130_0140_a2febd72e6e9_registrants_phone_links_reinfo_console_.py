"""registrants, phone links, REINFO, console users

Revision ID: a2febd72e6e9
Revises:
Create Date: 2026-11-30 01:40:55.616996+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a2febd72e6e9"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registrants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "miner",
                "plant",
                "stockpiler",
                "refiner",
                "trader",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "document_type",
            sa.Enum(
                "dni",
                "ruc",
                "ce",
                name="document_type",
                native_enum=False,
                create_constraint=True,
                length=5,
            ),
            nullable=False,
        ),
        sa.Column("document_number", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "language",
            sa.Enum(
                "es", "qu", name="language", native_enum=False, create_constraint=True, length=5
            ),
            nullable=False,
        ),
        sa.Column("recpo_number", sa.String(length=30), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "suspended",
                "closed",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrants")),
        sa.UniqueConstraint(
            "document_type",
            "document_number",
            name=op.f("uq_registrants_document_type_document_number"),
        ),
    )
    op.create_table(
        "reinfo_registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ruc", sa.String(length=11), nullable=False),
        sa.Column("codigo_unico", sa.String(length=9), nullable=False),
        sa.Column("holder_name", sa.String(length=300), nullable=False),
        sa.Column("mining_right", sa.String(length=300), nullable=False),
        sa.Column("department", sa.String(length=100), nullable=False),
        sa.Column("province", sa.String(length=100), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("ubigeo", sa.String(length=6), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "VIGENTE",
                "SUSPENDIDO",
                "EXCLUIDO",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(codigo_unico) = 9", name=op.f("ck_reinfo_registrations_codigo_unico_length")
        ),
        sa.CheckConstraint("length(ruc) = 11", name=op.f("ck_reinfo_registrations_ruc_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reinfo_registrations")),
        sa.UniqueConstraint(
            "ruc", "codigo_unico", name=op.f("uq_reinfo_registrations_ruc_codigo_unico")
        ),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "analyst",
                "auditor",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "phone_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registrant_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "active",
                "revoked",
                name="state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=80), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["registrant_id"],
            ["registrants.id"],
            name=op.f("fk_phone_links_registrant_id_registrants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_links")),
    )
    with op.batch_alter_table("phone_links", schema=None) as batch_op:
        batch_op.create_index("ix_phone_links_registrant_id", ["registrant_id"], unique=False)
        batch_op.create_index(
            "uq_phone_links_active_phone",
            ["phone"],
            unique=True,
            postgresql_where=sa.text("state = 'active'"),
            sqlite_where=sa.text("state = 'active'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("phone_links", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_phone_links_active_phone",
            postgresql_where=sa.text("state = 'active'"),
            sqlite_where=sa.text("state = 'active'"),
        )
        batch_op.drop_index("ix_phone_links_registrant_id")

    op.drop_table("phone_links")
    op.drop_table("users")
    op.drop_table("reinfo_registrations")
    op.drop_table("registrants")
