"""The path of one inbound message (DESIGN.md §3): one database transaction from log to outbox.

`receive` logs the message (unique on channel + provider id, so a retried webhook is recognised
and not processed again), lets the conversations handle it under the phone's conversation lock,
and writes every reply into the message log and the outbox — all in one transaction. Sending
happens after the commit, through the dispatcher.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flows.messages import Channel, Inbound, Reply
from gateway import text as wire
from gateway.models import (
    Direction,
    Encoding,
    Message,
    MessageEvent,
    OutboxItem,
    OutboxState,
    Status,
)
from recpo.db import Database
from registry.identifiers import mask_phone

log = logging.getLogger(__name__)


class Conversations(Protocol):
    """What the gateway needs from `flows`."""

    def handle(self, session: Session, inbound: Inbound) -> list[Reply]: ...


@dataclass
class Received:
    """What became of an inbound message."""

    message_id: int
    duplicate: bool
    outbox: list[int] = field(default_factory=list)  # outbound message ids to dispatch
    inline: Reply | None = None  # the reply rendered in the response itself (USSD)


def text_cost(channel: Channel, text: str) -> tuple[str, Encoding, int]:
    """Return the text as it will travel on `channel`, its encoding and segment count."""
    if channel is Channel.WHATSAPP:
        return text, Encoding.UNICODE, 1
    folded = wire.fold_for_sms(text)
    cost = wire.cost(folded)
    return folded, Encoding(cost.encoding.value), cost.segments


def receive(database: Database, conversations: Conversations, inbound: Inbound) -> Received:
    """Log, handle and answer one inbound message in one transaction."""
    with database.transaction() as session:
        message = _log_inbound(session, inbound)
        if message is None:
            return _duplicate(session, inbound)
        replies = conversations.handle(session, inbound)
        received = Received(message.id, duplicate=False)
        for reply in replies:
            inline = inbound.channel is Channel.USSD and reply.phone == inbound.phone
            out = _log_outbound(session, reply, inbound, message.id, inline)
            if inline:
                received.inline = Reply(
                    reply.phone, out.body, reply.channel, reply.choices, reply.final
                )
            else:
                received.outbox.append(out.id)
    log.info(
        "inbound %s message %s from %s: %d replies",
        inbound.channel.value,
        received.message_id,
        mask_phone(inbound.phone),
        len(replies),
    )
    return received


def _log_inbound(session: Session, inbound: Inbound) -> Message | None:
    now = inbound.received_at
    _, encoding, segments = text_cost(inbound.channel, inbound.text)
    message = Message(
        channel=inbound.channel,
        direction=Direction.IN,
        phone=inbound.phone,
        body=inbound.text,
        provider_id=inbound.provider_id,
        status=Status.RECEIVED,
        encoding=encoding,
        segments=segments,
        simulated=inbound.simulated,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        # The same provider message again (a retried or concurrent webhook): already handled.
        return None
    return message


def _duplicate(session: Session, inbound: Inbound) -> Received:
    original = session.scalars(
        sa.select(Message).where(
            Message.channel == inbound.channel, Message.provider_id == inbound.provider_id
        )
    ).one()
    log.info(
        "inbound %s message %s repeated; not processed again", inbound.channel.value, original.id
    )
    received = Received(original.id, duplicate=True)
    if inbound.channel is Channel.USSD:
        answer = session.scalars(
            sa.select(Message)
            .where(Message.in_reply_to == original.id, Message.phone == inbound.phone)
            .order_by(Message.id)
            .limit(1)
        ).one_or_none()
        if answer is not None:
            final = bool(answer.ends_session)
            received.inline = Reply(answer.phone, answer.body, answer.channel, final=final)
    return received


def _log_outbound(
    session: Session, reply: Reply, inbound: Inbound, in_reply_to: int, inline: bool
) -> Message:
    now = inbound.received_at
    body, encoding, segments = text_cost(reply.channel, reply.text)
    message = Message(
        channel=reply.channel,
        direction=Direction.OUT,
        phone=reply.phone,
        body=body,
        status=Status.SENT if inline else Status.QUEUED,
        encoding=encoding,
        segments=segments,
        choices=json.dumps([{"id": c.id, "title": c.title} for c in reply.choices])
        if reply.choices
        else None,
        in_reply_to=in_reply_to,
        ends_session=reply.final if inline else None,
        simulated=inbound.simulated,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    session.add(MessageEvent(message_id=message.id, status=message.status, at=now))
    if not inline:
        session.add(
            OutboxItem(
                message_id=message.id,
                state=OutboxState.PENDING,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return message
