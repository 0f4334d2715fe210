"""Loading and locking a phone's conversation, so two messages from one phone never interleave."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from flows.messages import Channel
from flows.models import Conversation
from recpo.db import DriverStatement
from recpo.i18n import DEFAULT_LOCALE
from registry.models import Registrant
from registry.phones import active_registrant


@functools.cache
def _lock_statement(dialect: str) -> Any:
    """The upsert that creates or locks a conversation, loading it (built once per dialect)."""
    table = Conversation.__table__
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(
        phone=sa.bindparam("phone"),
        channel=sa.bindparam("channel", type_=table.c.channel.type),
        data="{}",
        lookups=0,
        updated_at=sa.bindparam("now", type_=table.c.updated_at.type),
    )
    # The conflict branch writes what the turn would write anyway (the channel the phone used,
    # the time), so a turn that changes nothing else needs no UPDATE of its own at the end.
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c.phone],
        set_={"channel": statement.excluded.channel, "updated_at": statement.excluded.updated_at},
    ).returning(*table.c)
    return DriverStatement(sa.select(Conversation).from_statement(upsert))


def lock_conversation(
    session: Session, phone: str, channel: Channel, now: dt.datetime
) -> Conversation:
    """Return the phone's conversation, created if new, locked until the transaction ends.

    One statement does both: an upsert, whose conflict branch takes the same row lock as
    SELECT ... FOR UPDATE, returning the row either way.
    """
    statement = _lock_statement(session.get_bind().dialect.name)
    conversation = statement.load(
        session, Conversation, {"phone": phone, "channel": channel, "now": now}
    )
    assert conversation is not None  # an upsert returns its row
    return conversation


def update(conversation: Conversation, **values: Any) -> None:
    """Set the conversation's columns whose values change.

    Assigning a column the value it has still marks the row modified, and the flush at commit
    then works through it for nothing: most messages change nothing but what the lock's upsert
    wrote already.
    """
    for name, value in values.items():
        if getattr(conversation, name) != value:
            setattr(conversation, name, value)


def speaks(registrant: Registrant | None, chosen: str | None) -> str:
    """The language to speak to a phone: its registrant's, else the one it chose (IDIOMA), else
    Spanish."""
    if registrant is not None:
        return registrant.language.value
    return chosen or DEFAULT_LOCALE


def locale_for(session: Session, phone: str) -> str:
    """The language the conversations speak to `phone` in, for text written outside a turn."""
    chosen = session.scalar(sa.select(Conversation.language).where(Conversation.phone == phone))
    return speaks(active_registrant(session, phone), chosen)
