"""Notices the registry starts itself: unanswered transactions expire, and both parties are told."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from flows.confirm import EXPIRED_NOTICE
from flows.engine import Conversations
from flows.messages import Channel, Inbound, Step
from gateway.inbound import receive
from gateway.models import Message, OptOut, OutboxItem, Status, TransactionMessage
from gateway.notices import expire_transactions
from gateway.text import fold_for_sms
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from recpo.i18n import translate
from registry.demo import seed_demo
from registry.models import Transaction, TransactionStatus

BUYER, JUANA = "+51987000001", "+51987000011"


def _propose(database, clock) -> Transaction:
    log = Log(
        "recpo.test/ledger",
        Signer.from_text(generate_signer_key("recpo.test/ledger")),
        b"s" * 32,
        clock,
    )
    conversations = Conversations(ledger=log)
    for n, text in enumerate(("COMPRA 45678912 DORE 25.5G 850 5400", "SI")):
        receive(database, conversations, Inbound(Channel.SMS, BUYER, text, f"N{n}", clock.now()))


def _expiry_links(db_session, transaction_id: int) -> set[int]:
    return set(
        db_session.scalars(
            sa.select(TransactionMessage.message_id).where(
                TransactionMessage.transaction_id == transaction_id,
                TransactionMessage.step == Step.EXPIRED,
            )
        )
    )


def test_expired_transactions_notify_both_parties(database, db_session, clock):
    seed_demo(db_session, clock.now())
    db_session.commit()
    _propose(database, clock)
    dispatched: list[int] = []
    assert expire_transactions(database, dispatched.extend, clock.now()) == 0
    clock.advance(dt.timedelta(hours=49))
    assert expire_transactions(database, dispatched.extend, clock.now()) == 2
    transaction = db_session.scalars(sa.select(Transaction)).one()
    db_session.refresh(transaction)
    assert transaction.status is TransactionStatus.EXPIRED
    notices = {
        m.phone: m for m in db_session.scalars(sa.select(Message).where(Message.id.in_(dispatched)))
    }
    assert set(notices) == {BUYER, JUANA}
    expected = {
        lang: fold_for_sms(translate(lang, EXPIRED_NOTICE, code=transaction.code))
        for lang in ("es", "qu")
    }
    assert notices[BUYER].body == expected["es"]
    assert notices[JUANA].body == expected["qu"]  # Juana reads Quechua
    assert all(db_session.get(OutboxItem, i) is not None for i in dispatched)
    # On the transaction's page, beside the messages that proposed it.
    assert _expiry_links(db_session, transaction.id) == set(dispatched)
    assert expire_transactions(database, dispatched.extend, clock.now()) == 0  # once only


def test_an_opted_out_party_gets_nothing(database, db_session, clock):
    seed_demo(db_session, clock.now())
    db_session.commit()
    _propose(database, clock)
    db_session.add(OptOut(phone=JUANA, channel=Channel.SMS, opted_out_at=clock.now()))
    db_session.commit()
    clock.advance(dt.timedelta(hours=49))
    dispatched: list[int] = []
    assert expire_transactions(database, dispatched.extend, clock.now()) == 1
    to_juana = db_session.scalars(
        sa.select(Message).where(Message.phone == JUANA).order_by(Message.id.desc())
    ).first()
    assert to_juana.status is Status.FAILED
    transaction = db_session.scalars(sa.select(Transaction)).one()
    assert _expiry_links(db_session, transaction.id) == {*dispatched, to_juana.id}
