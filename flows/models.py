"""Conversation state, one row per phone, locked while a message from that phone is handled."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flows.messages import Channel
from recpo.db import Base, str_enum


class Conversation(Base):
    """Where one phone is in its conversation; survives restarts."""

    __tablename__ = "conversations"

    phone: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, "channel"))
    flow: Mapped[str | None] = mapped_column(sa.String(40))
    state: Mapped[str | None] = mapped_column(sa.String(40))
    data: Mapped[str] = mapped_column(sa.Text, default="{}")
    session_id: Mapped[str | None] = mapped_column(sa.String(80))
    language: Mapped[str | None] = mapped_column(sa.String(5))  # for phones of no registrant
    lookups: Mapped[int] = mapped_column(default=0)  # receipt checks in the current window
    lookups_since: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
