"""Registrants, their phones, and the REINFO registrations of miners."""

from __future__ import annotations

import datetime as dt
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
