"""The path of one inbound message (DESIGN.md §3): one database transaction from log to outbox.

`receive` logs the message (unique on channel + provider id, so a retried webhook is recognised
and not processed again), lets the conversations handle it under the phone's conversation lock,
and writes every reply into the message log and the outbox — all in one transaction. Sending
happens after the commit, through the dispatcher.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flows.messages import Channel, Inbound, Reply
from gateway import optout
from gateway import text as wire
from gateway.metrics import INBOUND, RATE_LIMITED
from gateway.models import (
    Direction,
    Encoding,
    Message,
    MessageEvent,
    OutboxItem,
    OutboxState,
    Status,
)
from gateway.ratelimit import INBOUND_PER_PHONE, Limiter, Rate
from recpo.db import Database
from recpo.i18n import N_, translate
from registry.identifiers import mask_phone
from registry.phones import language_for

log = logging.getLogger(__name__)

WHATSAPP_WINDOW = dt.timedelta(hours=24)
NOTICE_RATE = Rate(count=1, period=60, burst=1)
SLOW_DOWN = N_("RECPO: too many messages. Wait a minute and send your message again.")


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


def receive(
    database: Database,
    conversations: Conversations,
    inbound: Inbound,
    limiter: Limiter | None = None,
) -> Received:
    """Log, handle and answer one inbound message in one transaction."""
    with database.transaction() as session:
        message = _log_inbound(session, inbound)
        if message is None:
            INBOUND.labels(inbound.channel.value, "duplicate").inc()
            return _duplicate(session, inbound)
        INBOUND.labels(inbound.channel.value, "accepted").inc()
        replies, proceed = ([], True)
        if inbound.channel is not Channel.USSD:  # USSD is a session the phone itself opened
            replies, proceed = optout.handle(session, inbound)
        if proceed and limiter is not None and _flooding(session, inbound, limiter):
            replies, proceed = _slow_down(session, inbound, limiter), False
        exempt = len(replies)  # opt-out confirmations go even to a phone that just opted out
        if proceed:
            replies += conversations.handle(session, inbound)
        received = Received(message.id, duplicate=False)
        for position, reply in enumerate(replies):
            inline = inbound.channel is Channel.USSD and reply.phone == inbound.phone
            if not inline:
                reply = _route(session, reply, inbound)
            blocked = (
                not inline and position >= exempt and optout.is_opted_out(session, reply.phone)
            )
            out = _log_outbound(session, reply, inbound, message.id, inline, blocked)
            if blocked:
                continue
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


def _flooding(session: Session, inbound: Inbound, limiter: Limiter) -> bool:
    if inbound.channel is Channel.USSD:
        return False
    return limiter.wait(f"in:{inbound.phone}", INBOUND_PER_PHONE) > 0


def _slow_down(session: Session, inbound: Inbound, limiter: Limiter) -> list[Reply]:
    """The message stays logged but is not handled; the phone is told once a minute."""
    RATE_LIMITED.labels("in", inbound.channel.value).inc()
    log.warning("inbound from %s over the rate limit; not handled", mask_phone(inbound.phone))
    if limiter.wait(f"in-notice:{inbound.phone}", NOTICE_RATE) > 0:
        return []
    locale = language_for(session, inbound.phone).value
    return [Reply(inbound.phone, translate(locale, SLOW_DOWN), inbound.channel)]


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


def _route(session: Session, reply: Reply, inbound: Inbound) -> Reply:
    """Send WhatsApp replies by SMS when the phone's 24-hour WhatsApp window is closed."""
    if reply.channel is not Channel.WHATSAPP:
        return reply
    if inbound.channel is Channel.WHATSAPP and reply.phone == inbound.phone:
        return reply
    last = session.scalar(
        sa.select(sa.func.max(Message.created_at)).where(
            Message.phone == reply.phone,
            Message.channel == Channel.WHATSAPP,
            Message.direction == Direction.IN,
        )
    )
    if last is not None and inbound.received_at - last < WHATSAPP_WINDOW:
        return reply
    return as_sms(reply)


def as_sms(reply: Reply) -> Reply:
    """Return the reply as a plain SMS, its choices (if any) numbered in the text."""
    return Reply(
        reply.phone, wire.with_choices(reply.text, reply.choices), Channel.SMS, (), reply.final
    )


def _log_outbound(
    session: Session,
    reply: Reply,
    inbound: Inbound,
    in_reply_to: int,
    inline: bool,
    blocked: bool = False,
) -> Message:
    now = inbound.received_at
    body, encoding, segments = text_cost(reply.channel, reply.text)
    status = Status.SENT if inline else Status.QUEUED
    message = Message(
        channel=reply.channel,
        direction=Direction.OUT,
        phone=reply.phone,
        body=body,
        status=Status.FAILED if blocked else status,
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
    detail = "the phone opted out (BAJA)" if blocked else None
    session.add(MessageEvent(message_id=message.id, status=message.status, detail=detail, at=now))
    if not inline and not blocked:
        session.add(
            OutboxItem(
                message_id=message.id,
                state=OutboxState.PENDING,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return message
