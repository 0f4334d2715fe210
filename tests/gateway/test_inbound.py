"""One inbound message = one transaction: log, conversation step, outbox rows commit together."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from flows.engine import Conversations
from flows.messages import Channel, Inbound
from flows.models import Conversation
from gateway.inbound import receive
from gateway.models import Direction, Encoding, Message, OutboxItem, OutboxState, Status
from recpo.db import Database

NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)


def _inbound(text: str = "hola", provider_id: str = "SM1", **kw) -> Inbound:
    values = {"channel": Channel.SMS, "phone": "+51987000011", "received_at": NOW}
    values.update(kw)
    return Inbound(text=text, provider_id=provider_id, **values)


def _count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


class TestReceive:
    def test_logs_answers_and_queues_in_one_go(self, database, db_session):
        received = receive(database, Conversations(), _inbound("AYUDA"))
        assert not received.duplicate
        assert len(received.outbox) == 1
        inbound = db_session.get(Message, received.message_id)
        assert (inbound.direction, inbound.status, inbound.body) == (
            Direction.IN,
            Status.RECEIVED,
            "AYUDA",
        )
        reply = db_session.get(Message, received.outbox[0])
        assert reply.direction is Direction.OUT
        assert reply.status is Status.QUEUED
        assert reply.in_reply_to == inbound.id
        assert reply.phone == "+51987000011"
        assert reply.encoding is Encoding.GSM7
        assert reply.segments >= 1
        item = db_session.get(OutboxItem, reply.id)
        assert item.state is OutboxState.PENDING
        assert db_session.get(Conversation, "+51987000011") is not None

    def test_retried_webhook_is_not_processed_twice(self, database, db_session):
        first = receive(database, Conversations(), _inbound())
        again = receive(database, Conversations(), _inbound())
        assert again.duplicate
        assert again.message_id == first.message_id
        assert again.outbox == []
        assert _count(db_session, Message) == 2  # one inbound, one reply
        assert _count(db_session, OutboxItem) == 1

    def test_same_id_on_another_channel_is_another_message(self, database, db_session):
        receive(database, Conversations(), _inbound())
        other = receive(database, Conversations(), _inbound(channel=Channel.WHATSAPP))
        assert not other.duplicate
        assert _count(db_session, OutboxItem) == 2

    def test_whatsapp_replies_keep_unicode(self, database, db_session):
        received = receive(database, Conversations(), _inbound(channel=Channel.WHATSAPP))
        reply = db_session.get(Message, received.outbox[0])
        assert reply.encoding is Encoding.UNICODE

    def test_ussd_reply_is_inline_and_not_queued(self, database, db_session):
        received = receive(
            database,
            Conversations(),
            _inbound("", provider_id="ATs1:0", channel=Channel.USSD, session_id="ATs1"),
        )
        assert received.outbox == []
        assert received.inline is not None
        assert received.inline.final is False
        logged = db_session.scalars(
            sa.select(Message).where(Message.direction == Direction.OUT)
        ).one()
        assert logged.ends_session is False
        assert logged.status is Status.SENT
        assert _count(db_session, OutboxItem) == 0
        # A retried callback gets the same screen back, without a second step.
        again = receive(
            database,
            Conversations(),
            _inbound("", provider_id="ATs1:0", channel=Channel.USSD, session_id="ATs1"),
        )
        assert again.duplicate
        assert again.inline.text == received.inline.text
        assert again.inline.final is False

    def test_a_failing_conversation_step_leaves_nothing(self, database, db_session):
        class Broken(Conversations):
            def handle(self, session, inbound):
                super().handle(session, inbound)
                raise RuntimeError("bug in a flow")

        with pytest.raises(RuntimeError):
            receive(database, Broken(), _inbound())
        assert _count(db_session, Message) == 0
        assert _count(db_session, Conversation) == 0
        # The provider retries the webhook later; the message is then handled normally.
        assert not receive(database, Conversations(), _inbound()).duplicate


class TestConcurrency:
    def test_concurrent_duplicates_are_processed_once(self, committing_database: Database):
        results, errors = [], []
        barrier = threading.Barrier(8)

        def deliver() -> None:
            try:
                barrier.wait()
                results.append(receive(committing_database, Conversations(), _inbound()))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(r.duplicate for r in results) == [False] + [True] * 7
        with committing_database.transaction() as session:
            assert _count(session, Message) == 2
            assert _count(session, OutboxItem) == 1

    def test_messages_from_one_phone_are_serialised(self, committing_database: Database):
        # Many messages from one phone at once: every one is logged and answered, none lost.
        errors = []
        barrier = threading.Barrier(10)

        def deliver(i: int) -> None:
            try:
                barrier.wait()
                receive(committing_database, Conversations(), _inbound(f"m{i}", f"SM{i}"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with committing_database.transaction() as session:
            assert _count(session, OutboxItem) == 10
            assert _count(session, Conversation) == 1
