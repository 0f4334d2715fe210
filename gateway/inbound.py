"""The path of one inbound message (DESIGN.md §3): one database transaction from log to outbox.

`receive` logs the message (unique on channel + provider id, so a retried webhook is recognised
and not processed again), lets the conversations handle it under the phone's conversation lock,
writes every reply into the message log and the outbox, and links the messages to the
transactions the conversation acted on — all in one transaction. Sending happens after the
commit, through the dispatcher.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from flows.messages import Answer, Channel, Inbound, Reply, Touched
from flows.store import locale_for
from gateway import optout
from gateway import text as wire
from gateway.metrics import INBOUND, RATE_LIMITED
from gateway.models import (
    Direction,
    Encoding,
    Message,
    MessageEvent,
    OptOut,
    OutboxItem,
    OutboxState,
    Status,
    TransactionMessage,
)
from gateway.ratelimit import INBOUND_PER_PHONE, Limiter, Rate
from ledger.log import appended
from recpo.db import Database, DriverStatement
from recpo.i18n import N_, translate
from registry.identifiers import mask_phone

log = logging.getLogger(__name__)

WHATSAPP_WINDOW = dt.timedelta(hours=24)
NOTICE_RATE = Rate(count=1, period=60, burst=1)
SLOW_DOWN = N_("RECPO: too many messages. Wait a minute and send your message again.")


class Guard(Protocol):
    """A channel's check, in the message's own transaction, that refuses it before it is logged."""

    def __call__(self, session: Session, inbound: Inbound) -> bool: ...


class Conversations(Protocol):
    """What the gateway needs from `flows`."""

    def handle(self, session: Session, inbound: Inbound) -> Answer: ...


@dataclass
class Received:
    """What became of an inbound message."""

    message_id: int
    duplicate: bool
    outbox: list[int] = field(default_factory=list)  # outbound message ids to dispatch
    inline: Reply | None = None  # the reply rendered in the response itself (USSD)
    ledger_appended: bool = False  # entries were queued: sequence them after the commit
    refused: bool = False  # the channel's guard refused it: not logged, not handled


@functools.lru_cache(maxsize=4096)  # replies repeat (help, prompts); folding is per character
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
    guard: Guard | None = None,
) -> Received:
    """Log, handle and answer one inbound message in one transaction.

    A `guard` that returns True refuses the message: nothing is written and `refused` is set.
    """
    with database.transaction() as session:
        if guard is not None and guard(session, inbound):
            return Received(0, duplicate=False, refused=True)
        logged = _log_inbound(session, inbound)
        if logged is None:
            INBOUND.labels(inbound.channel.value, "duplicate").inc()
            return _duplicate(session, inbound)
        message_id, opted_out = logged
        INBOUND.labels(inbound.channel.value, "accepted").inc()
        replies, proceed = ([], True)
        # Phones this transaction has found not opted out: no need to look again for each reply.
        receiving: set[str] = set()
        if inbound.channel is not Channel.USSD:  # USSD is a session the phone itself opened
            replies, proceed = _opt_out_step(session, inbound, opted_out)
            if proceed:
                receiving.add(inbound.phone)
        if proceed and limiter is not None and _flooding(session, inbound, limiter):
            replies, proceed = _slow_down(session, inbound, limiter), False
        exempt = len(replies)  # opt-out confirmations go even to a phone that just opted out
        touched: list[Touched] = []
        if proceed:
            answer = conversations.handle(session, replace(inbound, message_id=message_id))
            replies += answer.replies
            touched = answer.touched
        received = Received(message_id, duplicate=False, ledger_appended=appended(session))
        logged = [message_id]
        for position, reply in enumerate(replies):
            inline = inbound.channel is Channel.USSD and reply.phone == inbound.phone
            if not inline:
                reply = _route(session, reply, inbound)
            blocked = (
                not inline
                and position >= exempt
                and reply.phone not in receiving
                and optout.is_opted_out(session, reply.phone)
            )
            out_id, body = _log_outbound(session, reply, inbound, message_id, inline, blocked)
            logged.append(out_id)
            if blocked:
                continue
            if inline:
                received.inline = Reply(
                    reply.phone, body, reply.channel, reply.choices, reply.final
                )
            else:
                received.outbox.append(out_id)
        if touched:
            _link_transactions(session, inbound, logged, touched)
    log.info(
        "inbound %s message %s from %s: %d replies",
        inbound.channel.value,
        received.message_id,
        mask_phone(inbound.phone),
        len(replies),
    )
    return received


def _opt_out_step(session: Session, inbound: Inbound, opted_out: bool) -> tuple[list[Reply], bool]:
    """`optout.handle`, without its work for the usual message: no stop word, phone not opted out.

    For that message `optout.handle` answers nothing and lets the conversations run; whether the
    phone opted out came back with the logged message, and `optout.handle` would also look up
    the phone's language for replies it does not make.
    """
    if not opted_out and optout.first_word(inbound.text) not in optout.STOP_WORDS:
        return [], True
    return optout.handle(session, inbound)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


_MESSAGES = Message.__table__
_EVENTS = MessageEvent.__table__
_OUTBOX = OutboxItem.__table__
_INBOUND_COLUMNS = (
    *("channel", "direction", "phone", "body", "provider_id", "status", "encoding", "segments"),
    *("simulated", "created_at", "updated_at"),
)
_OUTBOUND_COLUMNS = (
    *("channel", "direction", "phone", "body", "status", "encoding", "segments", "choices"),
    *("in_reply_to", "ends_session", "simulated", "created_at", "updated_at"),
)


@dataclass(frozen=True)
class _Statements:
    """The statements of the inbound path, built once (building them costs more than running)."""

    # INSERT ... ON CONFLICT DO NOTHING RETURNING id, and whether the phone opted out (as
    # `optout.is_opted_out` looks it up): one round trip for both.
    log_inbound: DriverStatement
    # PostgreSQL: the reply, its event and its outbox row in one statement (one round trip).
    log_reply_queued: DriverStatement | None = None
    log_reply: DriverStatement | None = None  # ... without an outbox row
    # Elsewhere: one statement each.
    insert_message: Any = None
    insert_event: Any = None
    insert_outbox: Any = None


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    opt_outs = OptOut.__table__
    opted_out = sa.exists().where(opt_outs.c.phone == sa.bindparam("phone"))
    log_inbound = (
        insert(_MESSAGES)
        .values({name: sa.bindparam(name) for name in _INBOUND_COLUMNS})
        .on_conflict_do_nothing()
        .returning(_MESSAGES.c.id, opted_out)
    )
    message_values = {name: sa.bindparam(name) for name in _OUTBOUND_COLUMNS}
    pending = sa.literal(OutboxState.PENDING, _OUTBOX.c.state.type)
    if dialect != "postgresql":
        return _Statements(
            DriverStatement(log_inbound),
            insert_message=sa.insert(_MESSAGES).values(message_values).returning(_MESSAGES.c.id),
            insert_event=sa.insert(_EVENTS).values(
                message_id=sa.bindparam("message_id"),
                status=sa.bindparam("status"),
                detail=sa.bindparam("detail"),
                at=sa.bindparam("created_at"),
            ),
            insert_outbox=sa.insert(_OUTBOX).values(
                message_id=sa.bindparam("message_id"),
                state=pending,
                attempts=0,
                next_attempt_at=sa.bindparam("created_at"),
                created_at=sa.bindparam("created_at"),
            ),
        )
    message = (
        sa.insert(_MESSAGES)
        .values(message_values)
        .returning(_MESSAGES.c.id, _MESSAGES.c.status, _MESSAGES.c.created_at)
        .cte("new_message")
    )
    event = sa.insert(_EVENTS).from_select(
        ["message_id", "status", "detail", "at"],
        sa.select(
            message.c.id,
            message.c.status,
            sa.bindparam("detail", type_=_EVENTS.c.detail.type),
            message.c.created_at,
        ),
    )
    queued = (
        sa.insert(_OUTBOX)
        .from_select(
            ["message_id", "state", "attempts", "next_attempt_at", "created_at"],
            sa.select(
                message.c.id,
                pending,
                sa.literal(0, sa.Integer),
                message.c.created_at,
                message.c.created_at,
            ),
        )
        .add_cte(event.cte("new_event"))
        .returning(_OUTBOX.c.message_id)
    )
    return _Statements(
        DriverStatement(log_inbound),
        log_reply_queued=DriverStatement(queued),
        log_reply=DriverStatement(event.returning(_EVENTS.c.message_id)),
    )


_LINKS = TransactionMessage.__table__


@functools.cache
def _link_statements(dialect: str) -> tuple[Any, Any]:
    """The inserts of `_link_transactions`: given rows, and a conversation's earlier messages."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    given = insert(_LINKS).on_conflict_do_nothing()
    # The phone's messages since the one that began the conversation, on the (phone, id) index:
    # what it sent, and the replies to that (all to this phone: nobody else hears of a trade
    # until it is proposed). Other messages to the phone meanwhile (a notice about another
    # transaction) are not replies to it and stay out.
    since = (
        _MESSAGES.c.phone == sa.bindparam("phone"),
        _MESSAGES.c.id >= sa.bindparam("first_id"),
        _MESSAGES.c.id < sa.bindparam("message_id"),
    )
    asked = sa.select(_MESSAGES.c.id).where(*since, _MESSAGES.c.direction == Direction.IN)
    earlier = sa.select(
        sa.bindparam("transaction_id", type_=_LINKS.c.transaction_id.type),
        _MESSAGES.c.id,
        sa.bindparam("step", type_=_LINKS.c.step.type),
    ).where(
        *since,
        sa.or_(_MESSAGES.c.direction == Direction.IN, _MESSAGES.c.in_reply_to.in_(asked)),
    )
    before = (
        insert(_LINKS)
        .from_select(["transaction_id", "message_id", "step"], earlier)
        .on_conflict_do_nothing()
    )
    return given, before


def _link_transactions(
    session: Session, inbound: Inbound, logged: list[int], touched: list[Touched]
) -> None:
    """Link the transactions the message acted on to it, its replies (`logged`: the message's id
    first) and, where a conversation led to it, that conversation's earlier messages."""
    given, before = _link_statements(_dialect(session))
    connection = session.connection()
    connection.execute(
        given,
        [
            {"transaction_id": t.transaction_id, "message_id": m, "step": t.step}
            for t in touched
            for m in logged
        ],
    )
    for t in touched:
        if t.first_message_id is not None and t.first_message_id < logged[0]:
            connection.execute(
                before,
                {
                    "transaction_id": t.transaction_id,
                    "step": t.step,
                    "phone": inbound.phone,
                    "first_id": t.first_message_id,
                    "message_id": logged[0],
                },
            )


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
    locale = locale_for(session, inbound.phone)
    return [Reply(inbound.phone, translate(locale, SLOW_DOWN), inbound.channel)]


def _log_inbound(session: Session, inbound: Inbound) -> tuple[int, bool] | None:
    """Log the message; return its id and whether the phone opted out.

    Return None if this provider message is already logged.
    """
    now = inbound.received_at
    _, encoding, segments = text_cost(inbound.channel, inbound.text)
    # The same provider message again (a retried or concurrent webhook) conflicts with the unique
    # (channel, provider_id) index and inserts nothing: it was already handled. A concurrent
    # duplicate waits here until the first one's transaction ends.
    params = {
        "channel": inbound.channel,
        "direction": Direction.IN,
        "phone": inbound.phone,
        "body": inbound.text,
        "provider_id": inbound.provider_id,
        "status": Status.RECEIVED,
        "encoding": encoding,
        "segments": segments,
        "simulated": inbound.simulated,
        "created_at": now,
        "updated_at": now,
    }
    rows = _statements(_dialect(session)).log_inbound.rows(session.connection(), params)
    return (rows[0][0], bool(rows[0][1])) if rows else None


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
) -> tuple[int, str]:
    """Log the reply, its first event and (unless inline or blocked) its outbox row.

    Return the message id and the body as logged (folded for SMS).
    """
    now = inbound.received_at
    if reply.choices and reply.channel is not Channel.WHATSAPP:
        # Only WhatsApp has buttons: elsewhere the choices are part of the text.
        reply = Reply(
            reply.phone,
            wire.with_choices(reply.text, reply.choices),
            reply.channel,
            (),
            reply.final,
        )
    body, encoding, segments = text_cost(reply.channel, reply.text)
    status = Status.FAILED if blocked else Status.SENT if inline else Status.QUEUED
    values = {
        "channel": reply.channel,
        "direction": Direction.OUT,
        "phone": reply.phone,
        "body": body,
        "status": status,
        "encoding": encoding,
        "segments": segments,
        "choices": json.dumps([{"id": c.id, "title": c.title} for c in reply.choices])
        if reply.choices
        else None,
        "in_reply_to": in_reply_to,
        "ends_session": reply.final if inline else None,
        "simulated": inbound.simulated,
        "created_at": now,
        "updated_at": now,
    }
    values["detail"] = "the phone opted out (BAJA)" if blocked else None
    queue = not inline and not blocked
    statements = _statements(_dialect(session))
    if statements.log_reply is not None:
        statement = statements.log_reply_queued if queue else statements.log_reply
        assert statement is not None
        (row,) = statement.rows(session.connection(), values)
        return row[0], body
    connection = session.connection()
    message_id = connection.execute(statements.insert_message, values).scalar_one()
    values["message_id"] = message_id
    connection.execute(statements.insert_event, values)
    if queue:
        connection.execute(statements.insert_outbox, values)
    return message_id, body
