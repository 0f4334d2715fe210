"""One inbound message = one transaction: log, conversation step, outbox rows and the links to
the transactions it acted on commit together."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from flows.engine import Conversations
from flows.messages import Channel, Inbound
from flows.models import Conversation
from gateway.inbound import receive
from gateway.models import (
    Direction,
    Encoding,
    Message,
    OutboxItem,
    OutboxState,
    Status,
    TransactionMessage,
)
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from recpo.db import Database
from registry.demo import seed_demo
from registry.models import Transaction, TransactionStatus

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


# --- the messages that produced a transaction ----------------------------------------------------

BUYER = "+51987000001"  # Planta de Beneficio Oro Sur
JUANA = "+51987000011"  # sells; her only VIGENTE right is option 1
PEDRO = "+51987000012"
ORIGIN = "recpo.test/ledger"


class Phones:
    """Phones writing through `receive`, a minute apart, each message with its own provider id."""

    def __init__(self, database: Database, log: Log) -> None:
        self.database = database
        self.conversations = Conversations(ledger=log)
        self.at = NOW
        self.count = 0

    def send(self, phone: str, text: str, channel: Channel = Channel.SMS, **kw) -> int:
        self.count += 1
        self.at += dt.timedelta(minutes=1)
        inbound = Inbound(channel, phone, text, f"SM{self.count}", self.at, **kw)
        return receive(self.database, self.conversations, inbound).message_id


@pytest.fixture
def phones(database, db_session, clock) -> Phones:
    seed_demo(db_session, clock.now())
    db_session.commit()
    log = Log(ORIGIN, Signer.from_text(generate_signer_key(ORIGIN)), b"s" * 32, clock)
    return Phones(database, log)


def linked(session, transaction_id: int) -> list[tuple[str, str, str, str]]:
    """(phone, direction, step, body of an inbound message or '') of each linked message."""
    rows = session.execute(
        sa.select(Message.phone, Message.direction, TransactionMessage.step, Message.body)
        .join(TransactionMessage, TransactionMessage.message_id == Message.id)
        .where(TransactionMessage.transaction_id == transaction_id)
        .order_by(Message.id)
    )
    return [
        (phone, direction.value, step.value, body if direction is Direction.IN else "")
        for phone, direction, step, body in rows
    ]


class TestTransactionLinks:
    def test_a_purchase_step_by_step_then_confirmed_with_the_right(self, phones, db_session):
        phones.send(BUYER, "AYUDA")  # before: not part of it
        for text in ("COMPRA", "45678912", "6", "25,5 g", "850", "S/ 5 400", "SI"):
            phones.send(BUYER, text)
        phones.send(JUANA, "AYUDA")  # the seller asks for help first: not part of it
        phones.send(JUANA, "SI")  # she is asked for her mining right...
        phones.send(JUANA, "1")  # ... and names it: confirmed
        phones.send(BUYER, "AYUDA")  # after: not part of it
        transaction = db_session.scalars(sa.select(Transaction)).one()
        assert transaction.status is TransactionStatus.CONFIRMED

        proposed = [
            (BUYER, direction, "proposed", text if direction == "in" else "")
            for text in ("COMPRA", "45678912", "6", "25,5 g", "850", "S/ 5 400", "SI")
            for direction in ("in", "out")
        ]
        proposed.append((JUANA, "out", "proposed", ""))  # the seller asked to confirm
        confirmed = [
            (JUANA, "in", "confirmed", "SI"),
            (JUANA, "out", "confirmed", ""),  # which mining right?
            (JUANA, "in", "confirmed", "1"),
            (BUYER, "out", "confirmed", ""),  # the receipt, to both
            (JUANA, "out", "confirmed", ""),
        ]
        assert linked(db_session, transaction.id) == proposed + confirmed

    def test_a_declared_sale_claimed_and_confirmed(self, phones, db_session):
        phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500")
        phones.send(PEDRO, "SI")
        transaction = db_session.scalars(sa.select(Transaction)).one()
        phones.send(BUYER, f"CODIGO {transaction.code}")
        phones.send(BUYER, "SI")
        db_session.expire_all()
        assert transaction.status is TransactionStatus.CONFIRMED
        assert [row[1:] for row in linked(db_session, transaction.id)] == [
            ("in", "proposed", "VENTA 20131312955 DORE 10G 900 2500"),
            ("out", "proposed", ""),  # the summary
            ("in", "proposed", "SI"),
            ("out", "proposed", ""),  # the code to hand over
            ("in", "claimed", f"CODIGO {transaction.code}"),
            ("out", "claimed", ""),  # the buyer sees the summary
            ("in", "confirmed", "SI"),
            ("out", "confirmed", ""),  # the receipt, to both
            ("out", "confirmed", ""),
        ]

    def test_a_rejection_links_the_no_and_both_notices(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        transaction = db_session.scalars(sa.select(Transaction)).one()
        phones.send(JUANA, f"NO {transaction.code}")
        db_session.expire_all()
        assert transaction.status is TransactionStatus.DISPUTED
        assert linked(db_session, transaction.id)[-3:] == [
            (JUANA, "in", "disputed", f"NO {transaction.code}"),
            (JUANA, "out", "disputed", ""),
            (BUYER, "out", "disputed", ""),
        ]

    def test_an_abandoned_conversation_before_the_one_that_proposed_stays_out(
        self, phones, db_session
    ):
        phones.send(BUYER, "COMPRA")
        phones.send(BUYER, "45678912")
        phones.send(BUYER, "SALIR")
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        transaction = db_session.scalars(sa.select(Transaction)).one()
        bodies = [row[3] for row in linked(db_session, transaction.id) if row[1] == "in"]
        assert bodies == ["COMPRA 45678912 DORE 25.5G 850 5400", "SI"]

    def test_a_retried_webhook_links_nothing_more(self, phones, database, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        transaction = db_session.scalars(sa.select(Transaction)).one()
        before = linked(db_session, transaction.id)
        again = Inbound(Channel.SMS, BUYER, "SI", f"SM{phones.count}", phones.at)
        assert receive(database, phones.conversations, again).duplicate
        assert linked(db_session, transaction.id) == before

    def test_ussd_screens_are_linked_too(self, phones, db_session):
        ussd = {"channel": Channel.USSD, "session_id": "AT1"}
        for text in ("", "1", "45678912", "6", "255", "850", "5400", "1"):
            phones.send(BUYER, text, **ussd)
        transaction = db_session.scalars(sa.select(Transaction)).one()
        rows = linked(db_session, transaction.id)
        # From the menu choice "1" (the conversation began there) to the confirmation "1".
        assert [row[3] for row in rows if row[1] == "in"] == [
            "1",
            "45678912",
            "6",
            "255",
            "850",
            "5400",
            "1",
        ]
        assert rows[-1] == (JUANA, "out", "proposed", "")  # the seller is asked by SMS

    def test_on_the_embedded_sqlite_database(self, sqlite_database, clock):
        with sqlite_database.transaction() as session:
            seed_demo(session, clock.now())
        log = Log(ORIGIN, Signer.from_text(generate_signer_key(ORIGIN)), b"s" * 32, clock)
        phones = Phones(sqlite_database, log)
        for text in ("COMPRA", "45678912", "DORE", "25.5 g", "850", "5400", "SI"):
            phones.send(BUYER, text)
        phones.send(JUANA, "SI")
        phones.send(JUANA, "1")
        with sqlite_database.transaction() as session:
            transaction = session.scalars(sa.select(Transaction)).one()
            rows = linked(session, transaction.id)
        assert transaction.status is TransactionStatus.CONFIRMED
        assert [row[3] for row in rows if row[1] == "in"] == [
            "COMPRA",
            "45678912",
            "DORE",
            "25.5 g",
            "850",
            "5400",
            "SI",
            "SI",
            "1",
        ]
        assert len(rows) == 7 * 2 + 1 + 3 + 2
