"""The message log (every message in and out, with its status history), the outbox, and the
links between messages and the transactions their conversations acted on."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flows.messages import Channel, Step
from recpo.db import Base, str_enum


class Direction(enum.StrEnum):
    """Which way a message travelled."""

    IN = "in"
    OUT = "out"


class Status(enum.StrEnum):
    """Where a message is; outbound statuses only move forward (see `advances`)."""

    RECEIVED = "received"  # inbound
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"

    @property
    def final(self) -> bool:
        """Failed and undelivered never change again."""
        return self in {Status.FAILED, Status.UNDELIVERED}


_RANK = {Status.QUEUED: 0, Status.SENT: 1, Status.DELIVERED: 2, Status.READ: 3}


def advances(current: Status, new: Status) -> bool:
    """Return whether moving from `current` to `new` is a step forward."""
    if current.final or current is Status.RECEIVED:
        return False
    if new.final:
        return current is not Status.READ
    return _RANK.get(new, -1) > _RANK.get(current, -1)


class Encoding(enum.StrEnum):
    """How a message's text travels on the wire."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"
    UNICODE = "unicode"  # WhatsApp: full Unicode, no SMS segments


class Message(Base):
    """One message in the log, inbound or outbound."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.Index(
            "uq_messages_channel_provider_id",
            "channel",
            "provider_id",
            unique=True,
            postgresql_where=sa.text("provider_id IS NOT NULL"),
            sqlite_where=sa.text("provider_id IS NOT NULL"),
        ),
        sa.Index("ix_messages_phone_id", "phone", "id"),
        sa.Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, "channel"))
    direction: Mapped[Direction] = mapped_column(str_enum(Direction, "direction", length=3))
    phone: Mapped[str] = mapped_column(sa.String(16))
    body: Mapped[str] = mapped_column(sa.Text)
    provider_id: Mapped[str | None] = mapped_column(sa.String(80))
    status: Mapped[Status] = mapped_column(str_enum(Status, "status"))
    encoding: Mapped[Encoding] = mapped_column(str_enum(Encoding, "encoding", length=8))
    segments: Mapped[int] = mapped_column(sa.SmallInteger)
    choices: Mapped[str | None] = mapped_column(sa.Text)  # JSON [{"id", "title"}], WhatsApp
    in_reply_to: Mapped[int | None] = mapped_column(sa.ForeignKey("messages.id"))
    ends_session: Mapped[bool | None]  # USSD screens: END (true) or CON (false)
    simulated: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    events: Mapped[list[MessageEvent]] = relationship(order_by="MessageEvent.id")


class MessageEvent(Base):
    """One step in a message's status history (provider callbacks, send attempts)."""

    __tablename__ = "message_events"
    __table_args__ = (sa.Index("ix_message_events_message_id", "message_id"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id"))
    status: Mapped[Status] = mapped_column(str_enum(Status, "status"))
    detail: Mapped[str | None] = mapped_column(sa.String(200))
    at: Mapped[dt.datetime]


class OutboxState(enum.StrEnum):
    """Where an outbound message is in sending."""

    PENDING = "pending"  # waiting for a worker (first try or a retry after next_attempt_at)
    SENDING = "sending"  # claimed by a worker until claimed_until
    SENT = "sent"  # the provider accepted it
    DEAD = "dead"  # permanent error or attempts exhausted


class OutboxItem(Base):
    """The sending state of one outbound message."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),)

    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id"), primary_key=True)
    state: Mapped[OutboxState] = mapped_column(str_enum(OutboxState, "state"))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime]
    claimed_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[dt.datetime]

    message: Mapped[Message] = relationship()


class TransactionMessage(Base):
    """A message of a conversation that proposed, claimed, confirmed or rejected a transaction.

    Written in the inbound message's own database transaction: the message, its replies (to
    every party) and the earlier messages of the conversation that led to it; and with the
    notices telling both parties the transaction expired unanswered (step `expired`).
    """

    __tablename__ = "transaction_messages"
    __table_args__ = (sa.Index("ix_transaction_messages_message_id", "message_id"),)

    transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("transactions.id"), primary_key=True)
    message_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("messages.id"),
        primary_key=True,
    )
    step: Mapped[Step] = mapped_column(str_enum(Step, "step"))


class OptOut(Base):
    """A phone that asked not to receive messages (BAJA/PARA/STOP) until it says ALTA/START."""

    __tablename__ = "opt_outs"

    phone: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, "channel"))
    opted_out_at: Mapped[dt.datetime]
