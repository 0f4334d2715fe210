"""Loading and locking a phone's conversation, so two messages from one phone never interleave."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from flows.messages import Channel
from flows.models import Conversation


def lock_conversation(
    session: Session, phone: str, channel: Channel, now: dt.datetime
) -> Conversation:
    """Return the phone's conversation, created if new, locked until the transaction ends."""
    values = {"phone": phone, "channel": channel, "data": "{}", "lookups": 0, "updated_at": now}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Conversation).values(values).on_conflict_do_nothing())
    return session.scalars(
        sa.select(Conversation)
        .where(Conversation.phone == phone)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
