"""Registrants, their phones, and the REINFO registrations of miners."""

from __future__ import annotations

import datetime as dt
import decimal
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from recpo.db import Base, str_enum
from registry.identifiers import DocumentType


class Role(enum.StrEnum):
    """What a registrant does in the gold chain."""

    MINER = "miner"
    PLANT = "plant"
    STOCKPILER = "stockpiler"
    REFINER = "refiner"
    TRADER = "trader"

    @property
    def is_buyer(self) -> bool:
        """Buyers hold a RECPO registration; miners sell to them."""
        return self is not Role.MINER


class Language(enum.StrEnum):
    """Languages a registrant can be spoken to in."""

    SPANISH = "es"
    QUECHUA = "qu"


class RegistrantStatus(enum.StrEnum):
    """Standing of a registrant with the registry itself (REINFO standing is separate)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class PhoneLinkState(enum.StrEnum):
    """Lifecycle of a phone's link to a registrant."""

    PENDING = "pending"
    ACTIVE = "active"
    REVOKED = "revoked"


class ReinfoStatus(enum.StrEnum):
    """Status of a registration in REINFO, as published."""

    VIGENTE = "VIGENTE"
    SUSPENDIDO = "SUSPENDIDO"
    EXCLUIDO = "EXCLUIDO"


class Registrant(Base):
    """A miner or a buyer known to the registry."""

    __tablename__ = "registrants"
    __table_args__ = (sa.UniqueConstraint("document_type", "document_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    document_type: Mapped[DocumentType] = mapped_column(
        str_enum(DocumentType, "document_type", length=5)
    )
    document_number: Mapped[str] = mapped_column(sa.String(12))
    name: Mapped[str] = mapped_column(sa.String(200))
    language: Mapped[Language] = mapped_column(
        str_enum(Language, "language", length=5), default=Language.SPANISH
    )
    recpo_number: Mapped[str | None] = mapped_column(sa.String(30))
    status: Mapped[RegistrantStatus] = mapped_column(
        str_enum(RegistrantStatus, "status"), default=RegistrantStatus.ACTIVE
    )
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    phones: Mapped[list[PhoneLink]] = relationship(
        back_populates="registrant", order_by="PhoneLink.id"
    )

    def __repr__(self) -> str:
        return f"<Registrant {self.id} {self.role} {self.document_type}>"


class PhoneLink(Base):
    """A phone number linked to a registrant; at most one active link per number."""

    __tablename__ = "phone_links"
    __table_args__ = (
        sa.Index(
            "uq_phone_links_active_phone",
            "phone",
            unique=True,
            postgresql_where=sa.text("state = 'active'"),
            sqlite_where=sa.text("state = 'active'"),
        ),
        sa.Index("ix_phone_links_registrant_id", "registrant_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    registrant_id: Mapped[int] = mapped_column(sa.ForeignKey("registrants.id"))
    phone: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[PhoneLinkState] = mapped_column(str_enum(PhoneLinkState, "state"))
    requested_at: Mapped[dt.datetime]
    decided_by: Mapped[str | None] = mapped_column(sa.String(80))
    decided_at: Mapped[dt.datetime | None]

    registrant: Mapped[Registrant] = relationship(back_populates="phones")


class ReinfoRegistration(Base):
    """One REINFO registration: a RUC working one mining right (código único)."""

    __tablename__ = "reinfo_registrations"
    __table_args__ = (
        sa.UniqueConstraint("ruc", "codigo_unico"),
        sa.Index("ix_reinfo_registrations_codigo_unico", "codigo_unico"),  # who holds a right
        sa.CheckConstraint("length(ruc) = 11", name="ruc_length"),
        sa.CheckConstraint("length(codigo_unico) = 9", name="codigo_unico_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ruc: Mapped[str] = mapped_column(sa.String(11))
    codigo_unico: Mapped[str] = mapped_column(sa.String(9))
    holder_name: Mapped[str] = mapped_column(sa.String(300))
    mining_right: Mapped[str] = mapped_column(sa.String(300))
    department: Mapped[str] = mapped_column(sa.String(100))
    province: Mapped[str] = mapped_column(sa.String(100))
    district: Mapped[str] = mapped_column(sa.String(100))
    ubigeo: Mapped[str | None] = mapped_column(sa.String(6))
    status: Mapped[ReinfoStatus] = mapped_column(str_enum(ReinfoStatus, "status"))
    snapshot_date: Mapped[dt.date]
    updated_at: Mapped[dt.datetime]


class StatusSource(enum.StrEnum):
    """What changed a status."""

    REINFO_IMPORT = "reinfo_import"  # a REINFO list (CLI or console upload)
    REGISTRANT_IMPORT = "registrant_import"  # a list of registrants (CLI or console upload)
    CONSOLE = "console"  # a DGFM user's decision in the console


class StatusChange(Base):
    """One change of a status, never updated: a REINFO registration's estado, or a registrant's
    own standing with the registry (exactly one of the two is named).

    `old_status` is None for the first status known (a registration's first import, a
    registrant's creation). Imports name the file and, for REINFO, the date of the list;
    console changes name the user and carry their note.

    `registration_id` is deliberately not a foreign key: the import writes it from the ids it
    has just given the rows (registrations are never deleted), and a key check on each history
    row (a row lock on each registration) would cost the REINFO import about a tenth of its speed.
    """

    __tablename__ = "status_changes"
    __table_args__ = (
        sa.CheckConstraint(
            "(registration_id IS NULL) <> (registrant_id IS NULL)", name="one_subject"
        ),
        # Partial: each row names one subject, and the other column's NULLs need no entries.
        sa.Index(
            "ix_status_changes_registration_id",
            "registration_id",
            postgresql_where=sa.text("registration_id IS NOT NULL"),
            sqlite_where=sa.text("registration_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_status_changes_registrant_id",
            "registrant_id",
            postgresql_where=sa.text("registrant_id IS NOT NULL"),
            sqlite_where=sa.text("registrant_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    registration_id: Mapped[int | None]  # reinfo_registrations.id (see above)
    registrant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("registrants.id"))
    old_status: Mapped[str | None] = mapped_column(sa.String(20))
    new_status: Mapped[str] = mapped_column(sa.String(20))
    changed_at: Mapped[dt.datetime]
    source: Mapped[StatusSource] = mapped_column(str_enum(StatusSource, "source"))
    snapshot_date: Mapped[dt.date | None]  # the REINFO list's date
    source_file: Mapped[str | None] = mapped_column(sa.String(200))
    changed_by: Mapped[str | None] = mapped_column(sa.String(80))  # console user
    note: Mapped[str | None] = mapped_column(sa.String(500))

    registration: Mapped[ReinfoRegistration | None] = relationship(
        primaryjoin="foreign(StatusChange.registration_id) == ReinfoRegistration.id",
        viewonly=True,
    )


class TransactionStatus(enum.StrEnum):
    """Where a transaction is: proposed by one party, then confirmed or rejected by the other."""

    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    DISPUTED = "disputed"  # the other party answered NO
    EXPIRED = "expired"  # nobody answered in time
    CANCELLED = "cancelled"  # withdrawn by the party who proposed it


class Initiator(enum.StrEnum):
    """Who declared the transaction first."""

    BUYER = "buyer"  # COMPRA: the seller confirms
    SELLER = "seller"  # VENTA: the buyer claims it with CODIGO and confirms


class Transaction(Base):
    """A purchase or sale of gold (or mercury, or ore) between a buyer and a seller."""

    __tablename__ = "transactions"
    __table_args__ = (
        sa.Index(
            "uq_transactions_open_code",
            "code",
            unique=True,
            postgresql_where=sa.text("status = 'proposed'"),
            sqlite_where=sa.text("status = 'proposed'"),
        ),
        sa.Index("ix_transactions_status_expires_at", "status", "expires_at"),
        sa.Index("ix_transactions_buyer_id", "buyer_id"),
        sa.Index("ix_transactions_seller_id", "seller_id"),
        sa.Index("ix_transactions_created_at", "created_at"),
        sa.CheckConstraint("length(codigo_unico) = 9", name="codigo_unico_length"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(6))
    initiator: Mapped[Initiator] = mapped_column(str_enum(Initiator, "initiator"))
    buyer_id: Mapped[int] = mapped_column(sa.ForeignKey("registrants.id"))
    seller_id: Mapped[int] = mapped_column(sa.ForeignKey("registrants.id"))
    seller_ruc: Mapped[str] = mapped_column(sa.String(11))
    # The mining right (REINFO código único) the seller declares the gold comes from; None on
    # transactions recorded before it was asked.
    codigo_unico: Mapped[str | None] = mapped_column(sa.String(9))
    material: Mapped[str] = mapped_column(sa.String(20))
    quantity: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(18, 4))
    unit: Mapped[str] = mapped_column(sa.String(4))
    grade: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(12, 4))
    fine_gold_g: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(18, 4))
    price_pen: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(16, 2))
    department: Mapped[str | None] = mapped_column(sa.String(100))
    province: Mapped[str | None] = mapped_column(sa.String(100))
    district: Mapped[str | None] = mapped_column(sa.String(100))
    ubigeo: Mapped[str | None] = mapped_column(sa.String(6))
    status: Mapped[TransactionStatus] = mapped_column(
        str_enum(TransactionStatus, "status"), default=TransactionStatus.PROPOSED
    )
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    decided_at: Mapped[dt.datetime | None]
    receipt_code: Mapped[str | None] = mapped_column(sa.String(16), unique=True)

    buyer: Mapped[Registrant] = relationship(foreign_keys=[buyer_id])
    seller: Mapped[Registrant] = relationship(foreign_keys=[seller_id])
    # The seller's REINFO registration of the declared right; None when it is not the seller's.
    declared_registration: Mapped[ReinfoRegistration | None] = relationship(
        primaryjoin="and_(foreign(Transaction.seller_ruc) == ReinfoRegistration.ruc, "
        "foreign(Transaction.codigo_unico) == ReinfoRegistration.codigo_unico)",
        viewonly=True,
    )


class FlagStatus(enum.StrEnum):
    """Review state of a red flag in the console."""

    OPEN = "open"
    IN_REVIEW = "in_review"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


class RedFlag(Base):
    """Something DGFM should look at: a refused attempt, a mercury trade, a dispute."""

    __tablename__ = "red_flags"
    __table_args__ = (
        sa.Index("ix_red_flags_status_created_at", "status", "created_at"),
        sa.Index("ix_red_flags_transaction_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(sa.String(20))  # e.g. R1, R7, DISPUTE
    reason: Mapped[str] = mapped_column(sa.String(300))  # English, for the console
    transaction_id: Mapped[int | None] = mapped_column(sa.ForeignKey("transactions.id"))
    phone: Mapped[str | None] = mapped_column(sa.String(16))
    document: Mapped[str | None] = mapped_column(sa.String(20))
    evidence: Mapped[str] = mapped_column(sa.Text, default="{}")  # JSON
    status: Mapped[FlagStatus] = mapped_column(
        str_enum(FlagStatus, "status"), default=FlagStatus.OPEN
    )
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
