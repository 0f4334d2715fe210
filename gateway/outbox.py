"""Sending outbound messages from the outbox: claim, send, record; retries and reconciling.

Every outbound message is an outbox row written in the same transaction as the inbound message
that caused it, so nothing is lost when a process or Redis dies: jobs only carry outbox ids, and
`reconcile` re-dispatches any row whose job was lost.

A row is sent at most once unless a worker dies between the provider accepting the message and
our recording that (one HTTP round trip): `claim` hands the row to one worker for a lease, and a
row whose lease ran out while SENDING is sent again — that case is logged as a possible duplicate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from flows.messages import Channel, Choice, Reply
from flows.store import locale_for
from gateway.inbound import as_sms, text_cost
from gateway.metrics import OUTBOUND, RATE_LIMITED
from gateway.models import (
    Direction,
    Message,
    MessageEvent,
    OutboxItem,
    OutboxState,
    Status,
    advances,
)
from gateway.ratelimit import OUTBOUND_PER_CHANNEL, Limiter
from gateway.senders import (
    ConsoleSender,
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    Sender,
    WindowClosedError,
)
from recpo.clock import Clock
from recpo.db import Database, DriverStatement
from recpo.i18n import DEFAULT_LOCALE

log = logging.getLogger(__name__)

SIMULATED = ConsoleSender()
MAX_ATTEMPTS = 6
# How long a worker may hold a row while sending; longer than any provider call's timeout.
LEASE = dt.timedelta(seconds=int(os.environ.get("OUTBOX_LEASE_SECONDS", "60")))
BASE_DELAY = dt.timedelta(seconds=2)
MAX_DELAY = dt.timedelta(minutes=10)
RECONCILE_AFTER = dt.timedelta(seconds=30)


def backoff(attempt: int, rng: Callable[[], float] = random.random) -> dt.timedelta:
    """Return the wait before retry `attempt` (1-based): doubling, with jitter in its upper half."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** (attempt - 1)))
    return ceiling * (0.5 + rng() / 2)


@dataclass(frozen=True)
class SendResult:
    """What one call to `send_item` did."""

    message_id: int
    outcome: str  # "sent", "retry", "paced", "dead", "fallback", "skipped"
    retry_at: dt.datetime | None = None
    fallback_id: int | None = None  # the SMS that replaces a refused WhatsApp message


# The statements of the sending path, built once (building one costs more than running it).
_OUTBOX = OutboxItem.__table__
_MESSAGES = Message.__table__
_CLAIM_READ = (
    sa.select(
        _OUTBOX.c.state,
        _OUTBOX.c.next_attempt_at,
        _OUTBOX.c.claimed_until,
        _MESSAGES.c.channel,
        _MESSAGES.c.phone,
        _MESSAGES.c.body,
        _MESSAGES.c.choices,
        _MESSAGES.c.segments,
        _MESSAGES.c.simulated,
    )
    .join(_MESSAGES, _MESSAGES.c.id == _OUTBOX.c.message_id)
    .where(_OUTBOX.c.message_id == sa.bindparam("row_id"))
    .with_for_update(of=_OUTBOX)
)
_CLAIM_WRITE = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.message_id == sa.bindparam("row_id"))
    .values(
        state=sa.literal(OutboxState.SENDING, _OUTBOX.c.state.type),
        claimed_until=sa.bindparam("until", type_=_OUTBOX.c.claimed_until.type),
        attempts=_OUTBOX.c.attempts + 1,
    )
)
# SENT moves a message forward from these statuses (a status callback may have come first).
_BEFORE_SENT = tuple(status for status in Status if advances(status, Status.SENT))
# (OR of equalities, not IN: an IN list is rendered per execution, and these are compiled once.)
_MOVES = sa.or_(*(_MESSAGES.c.status == status for status in _BEFORE_SENT))
_SENT_OUTBOX = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.message_id == sa.bindparam("row_id"))
    .values(
        state=sa.literal(OutboxState.SENT, _OUTBOX.c.state.type),
        claimed_until=None,
        last_error=None,
    )
)
_SENT_MESSAGE = (
    sa.update(_MESSAGES)
    .where(_MESSAGES.c.id == sa.bindparam("row_id"))
    .values(
        provider_id=sa.bindparam("sid", type_=_MESSAGES.c.provider_id.type),
        status=sa.case(
            (_MOVES, sa.literal(Status.SENT, _MESSAGES.c.status.type)), else_=_MESSAGES.c.status
        ),
        updated_at=sa.case(
            (_MOVES, sa.bindparam("now", type_=_MESSAGES.c.updated_at.type)),
            else_=_MESSAGES.c.updated_at,
        ),
    )
)
_SENT_EVENT = sa.insert(MessageEvent.__table__).values(
    message_id=sa.bindparam("row_id"),
    status=sa.literal(Status.SENT, MessageEvent.__table__.c.status.type),
    detail=sa.bindparam("sender", type_=MessageEvent.__table__.c.detail.type),
    at=sa.bindparam("now", type_=MessageEvent.__table__.c.at.type),
)
# PostgreSQL: the three in one statement (one round trip).
_SENT_AT_ONCE = _SENT_EVENT.add_cte(_SENT_OUTBOX.cte("sent_outbox")).add_cte(
    _SENT_MESSAGE.cte("sent_message")
)
_DUE_NOW = (
    sa.select(_OUTBOX.c.message_id)
    .where(
        _OUTBOX.c.state == OutboxState.PENDING,
        _OUTBOX.c.next_attempt_at <= sa.bindparam("now", type_=_OUTBOX.c.next_attempt_at.type),
        _OUTBOX.c.message_id.not_in(sa.bindparam("exclude", expanding=True)),
    )
    .order_by(_OUTBOX.c.next_attempt_at)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)


# Run on psycopg's cursor on PostgreSQL (recpo.db.DriverStatement): a worker spends its Python on
# these few statements and the provider's client, and SQLAlchemy's per-execution layer and an ORM
# session were a third of it.
_CLAIM_READ_RUN = DriverStatement(_CLAIM_READ)
_CLAIM_WRITE_RUN = DriverStatement(_CLAIM_WRITE)
_SENT_AT_ONCE_RUN = DriverStatement(_SENT_AT_ONCE)


def claim(database: Database, message_id: int, now: dt.datetime) -> OutboundMessage | None:
    """Take the row for sending if it is due and nobody holds it; return what to send."""
    with database.connection() as connection:
        rows = _CLAIM_READ_RUN.typed_rows(connection, {"row_id": message_id})
        if not rows:
            return None
        (row,) = rows
        state, next_at, claimed_until, channel, phone, body, choices, segments, simulated = row
        due = state is OutboxState.PENDING and next_at <= now
        stale = state is OutboxState.SENDING and (claimed_until is None or claimed_until <= now)
        if not (due or stale):
            return None
        if stale:
            log.warning(
                "outbox %s: a worker died while sending it; sending again "
                "(a duplicate if the provider had accepted the first attempt)",
                message_id,
            )
        _CLAIM_WRITE_RUN.rows(connection, {"row_id": message_id, "until": now + LEASE})
    buttons = tuple(Choice(**c) for c in json.loads(choices or "[]"))
    # Only interactive messages (WhatsApp) get words from the sender: look the language up for
    # those alone, once the row is ours.
    if buttons:
        with database.transaction() as session:
            locale = locale_for(session, phone)
    else:
        locale = DEFAULT_LOCALE
    return OutboundMessage(message_id, channel, phone, body, buttons, segments, simulated, locale)


def send_item(
    database: Database,
    senders: Mapping[Channel, Sender],
    message_id: int,
    clock: Clock,
    limiter: Limiter | None = None,
) -> SendResult:
    """Send one outbox row if it is due; record the outcome."""
    outbound = claim(database, message_id, clock.now())
    if outbound is None:
        return SendResult(message_id, "skipped")
    result = _send_claimed(database, senders, outbound, clock, limiter)
    OUTBOUND.labels(outbound.channel.value, result.outcome).inc()
    return result


def _send_claimed(
    database: Database,
    senders: Mapping[Channel, Sender],
    outbound: OutboundMessage,
    clock: Clock,
    limiter: Limiter | None,
) -> SendResult:
    message_id = outbound.id
    if limiter is not None:
        wait = limiter.wait(
            f"out:{outbound.channel.value}", OUTBOUND_PER_CHANNEL, outbound.segments
        )
        if wait > 0:
            return _pace(database, message_id, clock, wait)
    # The simulator's messages never reach a real phone, whatever providers are configured.
    sender = SIMULATED if outbound.simulated else senders[outbound.channel]
    try:
        provider_id = sender.send(outbound)
    except WindowClosedError as exc:
        return _fall_back_to_sms(database, message_id, clock, str(exc))
    except PermanentSendError as exc:
        return _record_failure(database, message_id, clock, str(exc), permanent=True)
    except RetryableSendError as exc:
        return _record_failure(database, message_id, clock, str(exc), permanent=False)
    _record_sent(database, message_id, provider_id, sender.name, clock.now())
    return SendResult(message_id, "sent")


def _record_sent(
    database: Database, message_id: int, provider_id: str, sender: str, now: dt.datetime
) -> None:
    """Record that the provider accepted the message: outbox row, message status, event."""
    params = {"row_id": message_id, "sid": provider_id, "sender": sender, "now": now}
    with database.connection() as connection:
        if connection.dialect.name == "postgresql":
            _SENT_AT_ONCE_RUN.rows(connection, params)
            return
        connection.execute(_SENT_OUTBOX, params)
        connection.execute(_SENT_MESSAGE, params)
        connection.execute(_SENT_EVENT, params)


def _pace(database: Database, message_id: int, clock: Clock, wait: float) -> SendResult:
    """Hand the row back until the channel's rate allows it; this is not a failed attempt."""
    RATE_LIMITED.labels("out", "outbox").inc()
    with database.transaction() as session:
        item = session.get(OutboxItem, message_id, with_for_update=True)
        item.state = OutboxState.PENDING
        item.claimed_until = None
        item.attempts -= 1
        item.next_attempt_at = clock.now() + dt.timedelta(seconds=wait)
        return SendResult(message_id, "paced", item.next_attempt_at)


def _record_failure(
    database: Database, message_id: int, clock: Clock, reason: str, permanent: bool
) -> SendResult:
    now = clock.now()
    with database.transaction() as session:
        item = session.get(OutboxItem, message_id, with_for_update=True)
        item.last_error = reason[:300]
        item.claimed_until = None
        if permanent or item.attempts >= MAX_ATTEMPTS:
            item.state = OutboxState.DEAD
            item.message.status = Status.FAILED
            item.message.updated_at = now
            session.add(
                MessageEvent(
                    message_id=message_id, status=Status.FAILED, detail=reason[:200], at=now
                )
            )
            log.warning(
                "outbox %s: giving up after %d attempts: %s", message_id, item.attempts, reason
            )
            return SendResult(message_id, "dead")
        item.state = OutboxState.PENDING
        item.next_attempt_at = now + backoff(item.attempts)
        log.info("outbox %s: attempt %d failed (%s); retrying", message_id, item.attempts, reason)
        return SendResult(message_id, "retry", item.next_attempt_at)


def _fall_back_to_sms(database: Database, message_id: int, clock: Clock, reason: str) -> SendResult:
    now = clock.now()
    with database.transaction() as session:
        item = session.get(OutboxItem, message_id, with_for_update=True)
        original = item.message
        choices = tuple(Choice(**c) for c in json.loads(original.choices or "[]"))
        reply = as_sms(Reply(original.phone, original.body, Channel.WHATSAPP, choices))
        body, encoding, segments = text_cost(Channel.SMS, reply.text)
        sms = Message(
            channel=Channel.SMS,
            direction=Direction.OUT,
            phone=original.phone,
            body=body,
            status=Status.QUEUED,
            encoding=encoding,
            segments=segments,
            in_reply_to=original.in_reply_to,
            simulated=original.simulated,
            created_at=now,
            updated_at=now,
        )
        session.add(sms)
        session.flush()
        session.add(MessageEvent(message_id=sms.id, status=Status.QUEUED, at=now))
        session.add(
            OutboxItem(
                message_id=sms.id, state=OutboxState.PENDING, next_attempt_at=now, created_at=now
            )
        )
        item.state = OutboxState.DEAD
        item.claimed_until = None
        item.last_error = reason[:300]
        original.status = Status.FAILED
        original.updated_at = now
        session.add(
            MessageEvent(
                message_id=message_id,
                status=Status.FAILED,
                detail=f"WhatsApp window closed; sent by SMS as message {sms.id}",
                at=now,
            )
        )
        log.info("outbox %s: WhatsApp window closed; falling back to SMS %s", message_id, sms.id)
        return SendResult(message_id, "fallback", fallback_id=sms.id)


def due_now(
    database: Database, now: dt.datetime, limit: int, exclude: Collection[int] = ()
) -> list[int]:
    """Return up to `limit` rows waiting for an attempt that is due now, oldest first.

    Their jobs may still be queued behind the caller's: a worker with spare hands sends them now
    (each is claimed as usual, so the job that comes later finds it sent and skips it).
    """
    params = {"now": now, "limit": limit, "exclude": list(exclude)}
    with database.transaction() as session:
        return list(session.connection().scalars(_DUE_NOW, params))


def due_items(database: Database, now: dt.datetime, limit: int = 500) -> list[int]:
    """Return outbox rows that should be with a worker now but may not be (lost jobs, retries)."""
    with database.transaction() as session:
        return list(
            session.scalars(
                sa.select(OutboxItem.message_id)
                .where(
                    sa.or_(
                        sa.and_(
                            OutboxItem.state == OutboxState.PENDING,
                            OutboxItem.next_attempt_at <= now - RECONCILE_AFTER,
                        ),
                        sa.and_(
                            OutboxItem.state == OutboxState.SENDING,
                            OutboxItem.claimed_until <= now,
                        ),
                    )
                )
                .order_by(OutboxItem.next_attempt_at)
                .limit(limit)
            )
        )


def apply_status(
    database: Database,
    channel: Channel,
    provider_id: str,
    status: Status,
    detail: str | None,
    now: dt.datetime,
) -> bool:
    """Record a provider's status callback; statuses only move forward. Return whether it did."""
    with database.transaction() as session:
        message = session.scalars(
            sa.select(Message)
            .where(Message.channel == channel, Message.provider_id == provider_id)
            .with_for_update()
        ).one_or_none()
        if message is None:
            log.info("status %s for unknown %s message; ignored", status.value, channel.value)
            return False
        session.add(MessageEvent(message_id=message.id, status=status, detail=detail, at=now))
        if not advances(message.status, status):
            return False
        message.status = status
        message.updated_at = now
        return True
