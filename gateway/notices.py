"""Messages the registry starts itself (no inbound message to answer): expiry notices and the like.

They take the same road as replies: logged, given an outbox row in the caller's transaction,
dispatched after the commit. A phone that opted out gets nothing (the message is logged as failed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from flows import confirm
from flows.messages import Reply, Step
from gateway import optout
from gateway.inbound import text_cost
from gateway.models import (
    Direction,
    Message,
    MessageEvent,
    OutboxItem,
    OutboxState,
    Status,
    TransactionMessage,
)
from recpo.db import Database


def queue_notices(session: Session, replies: Iterable[Reply], now: dt.datetime) -> list[int]:
    """Log each notice with its outbox row; return the ids to dispatch after the commit."""
    queued = []
    for reply in replies:
        message_id, sendable = _log_notice(session, reply, now)
        if sendable:
            queued.append(message_id)
    return queued


def _log_notice(session: Session, reply: Reply, now: dt.datetime) -> tuple[int, bool]:
    """Log one notice, with its outbox row unless the phone opted out; return its id and whether
    it goes out."""
    body, encoding, segments = text_cost(reply.channel, reply.text)
    blocked = optout.is_opted_out(session, reply.phone)
    message = Message(
        channel=reply.channel,
        direction=Direction.OUT,
        phone=reply.phone,
        body=body,
        status=Status.FAILED if blocked else Status.QUEUED,
        encoding=encoding,
        segments=segments,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    detail = "the phone opted out (BAJA)" if blocked else None
    session.add(MessageEvent(message_id=message.id, status=message.status, detail=detail, at=now))
    if not blocked:
        session.add(
            OutboxItem(
                message_id=message.id,
                state=OutboxState.PENDING,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return message.id, not blocked


def expire_transactions(
    database: Database, dispatch: Callable[[list[int]], None], now: dt.datetime
) -> int:
    """Expire unanswered transactions and tell both parties; return how many notices went.

    Each notice is linked to its transaction (step `expired`), as the messages of the
    conversations that proposed it are, even one not sent because the phone opted out.
    """
    queued = []
    with database.transaction() as session:
        for transaction_id, notice in confirm.expire(session, now):
            message_id, sendable = _log_notice(session, notice, now)
            session.add(
                TransactionMessage(
                    transaction_id=transaction_id, message_id=message_id, step=Step.EXPIRED
                )
            )
            if sendable:
                queued.append(message_id)
    if queued:
        dispatch(queued)
    return len(queued)
