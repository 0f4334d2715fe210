"""Console accounts for DGFM staff."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.models import Message
from recpo.db import Base, str_enum
from registry.models import PhoneLink, RedFlag, Transaction


class StaffRole(enum.StrEnum):
    """What a console user may do."""

    ADMIN = "admin"  # everything, manages users
    ANALYST = "analyst"  # reviews and resolves, approves phone links
    AUDITOR = "auditor"  # reads only


class User(Base):
    """A console account; the password is kept only as a memory-hard hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole, "role"))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime]


class ConsoleSession(Base):
    """A signed-in console session; the browser's cookie holds only the token it is keyed on.

    Keeping sessions here (not only in the signed cookie) is what lets the server end them: on
    logout, after the idle timeout, or when the account is deactivated.
    """

    __tablename__ = "console_sessions"
    __table_args__ = (sa.Index("ix_console_sessions_user_id", "user_id"),)

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # SHA-256 hex
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """A failed sign-in, counted per account and per client address (without Redis)."""

    __tablename__ = "console_login_failures"
    __table_args__ = (sa.Index("ix_console_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(120))  # "user:<name>" or "addr:<address>"
    at: Mapped[dt.datetime]


class AuditEntry(Base):
    """One console action or view of personal data: who, what, when, on what.

    Append-only: the console only inserts, and the database refuses UPDATE and DELETE.
    """

    __tablename__ = "console_audit"
    __table_args__ = (
        sa.Index("ix_console_audit_user_name_id", "user_name", "id"),
        sa.Index("ix_console_audit_target_type_target_id", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    at: Mapped[dt.datetime]
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    user_name: Mapped[str] = mapped_column(sa.String(80))
    action: Mapped[str] = mapped_column(sa.String(40))  # e.g. "phone_link.approve"
    target_type: Mapped[str | None] = mapped_column(sa.String(40))
    target_id: Mapped[str | None] = mapped_column(sa.String(80))
    detail: Mapped[str] = mapped_column(sa.Text, default="{}")  # JSON
    address: Mapped[str | None] = mapped_column(sa.String(64))


# Indexes the console's list pages need on other packages' tables: every list is ordered by id
# (keyset pagination), so each filter gets an index that ends in id.
CONSOLE_INDEXES = (
    sa.Index("ix_messages_channel_id", Message.__table__.c.channel, Message.__table__.c.id),
    sa.Index("ix_messages_direction_id", Message.__table__.c.direction, Message.__table__.c.id),
    sa.Index("ix_messages_status_id", Message.__table__.c.status, Message.__table__.c.id),
    sa.Index(
        "ix_messages_body_trgm",
        Message.__table__.c.body,
        postgresql_using="gin",
        postgresql_ops={"body": "gin_trgm_ops"},
    ),  # on SQLite (the embedded default) a plain index, which text search does not use
    sa.Index(
        "ix_transactions_status_id", Transaction.__table__.c.status, Transaction.__table__.c.id
    ),
    sa.Index(
        "ix_transactions_material_id", Transaction.__table__.c.material, Transaction.__table__.c.id
    ),
    sa.Index(
        "ix_transactions_department_id",
        Transaction.__table__.c.department,
        Transaction.__table__.c.id,
    ),
    sa.Index("ix_phone_links_phone", PhoneLink.__table__.c.phone),
    sa.Index("ix_phone_links_state_id", PhoneLink.__table__.c.state, PhoneLink.__table__.c.id),
    sa.Index("ix_red_flags_status_id", RedFlag.__table__.c.status, RedFlag.__table__.c.id),
    sa.Index("ix_red_flags_rule_id", RedFlag.__table__.c.rule, RedFlag.__table__.c.id),
)


class LedgerVerification(Base):
    """One run of `verify_log` started from the console's ledger page.

    The run itself happens in a background thread of whichever web process was asked; keeping its
    state here lets every web process show it. `updated_at` is the run's heartbeat (written as
    entries are checked): a run whose heartbeat stops was lost with its process.
    `ok` is True (valid), False (a problem was found) or None with `finished_at` set (the run
    could not finish; `problem` says why).
    """

    __tablename__ = "ledger_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime]
    started_by: Mapped[str] = mapped_column(sa.String(80))
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    entries: Mapped[int | None] = mapped_column(sa.BigInteger)
    checkpoints: Mapped[int | None] = mapped_column(sa.BigInteger)
    ok: Mapped[bool | None]
    problem: Mapped[str | None] = mapped_column(sa.Text)
