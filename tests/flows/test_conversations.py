"""The conversations as phones meet them: the real flows, registry and ledger on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from flows.engine import Conversations
from flows.messages import Channel, Inbound, Reply
from flows.models import Conversation
from ledger import log as ledger_log
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from ledger.receipts import normalise_code
from registry.demo import seed_demo
from registry.models import (
    Language,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    Transaction,
    TransactionStatus,
)

BUYER = "+51987000001"  # Planta de Beneficio Oro Sur, RUC 20131312955
JUANA = "+51987000011"  # miner, DNI 45678912, VIGENTE, speaks Quechua
PEDRO = "+51987000012"  # miner, DNI 41234567, VIGENTE
ROSA = "+51987000013"  # miner, DNI 40000001, SUSPENDIDO
STRANGER = "+51999888777"
ORIGIN = "recpo.test/ledger"


class Phones:
    """Send messages as phones would; keep every reply."""

    def __init__(self, database, conversations, clock) -> None:
        self.database = database
        self.conversations = conversations
        self.clock = clock
        self.count = 0
        self.sent: list[Reply] = []

    def send(self, phone: str, text: str, channel: Channel = Channel.SMS, **kw) -> list[Reply]:
        self.count += 1
        inbound = Inbound(channel, phone, text, f"M{self.count}", self.clock.now(), **kw)
        with self.database.transaction() as session:
            replies = self.conversations.handle(session, inbound)
        self.sent.extend(replies)
        self.clock.advance(dt.timedelta(seconds=5))
        return replies

    def last_to(self, phone: str) -> str:
        return [r for r in self.sent if r.phone == phone][-1].text


@pytest.fixture
def log(clock) -> Log:
    return Log(ORIGIN, Signer.from_text(generate_signer_key(ORIGIN)), b"s" * 32, clock)


@pytest.fixture
def phones(database, db_session, log, clock) -> Phones:
    seed_demo(db_session, clock.now())
    db_session.commit()
    return Phones(database, Conversations(ledger=log), clock)


def _transactions(db_session) -> list[Transaction]:
    db_session.expire_all()
    return list(db_session.scalars(sa.select(Transaction).order_by(Transaction.id)))


def _code(text: str) -> str:
    return next(
        word.strip(".,")
        for word in text.split()
        if word.strip(".,").isdigit() and len(word.strip(".,")) == 6
    )


def _receipt(text: str) -> str:
    digits = text.split("Receipt ")[1].split(".")[0]
    return normalise_code(digits)


class TestPurchase:
    def test_step_by_step_then_the_seller_confirms(self, phones, db_session, database, log):
        assert "DNI or RUC" in phones.send(BUYER, "compra")[0].text
        assert "Material" in phones.send(BUYER, "45.678.912")[0].text
        assert "Quantity of gold dor" in phones.send(BUYER, "6")[0].text
        assert "Fineness" in phones.send(BUYER, "25,5 g")[0].text
        assert "price" in phones.send(BUYER, "850")[0].text
        summary = phones.send(BUYER, "S/ 5 400")[0].text
        assert "25.5 g" in summary and "850" in summary and "21.68" in summary
        assert "5,400.00" in summary
        replies = phones.send(BUYER, "SI")
        assert {r.phone for r in replies} == {BUYER, JUANA}
        code = _code(phones.last_to(BUYER))
        assert f"SI {code}" in phones.last_to(JUANA)
        [transaction] = _transactions(db_session)
        assert (transaction.status, transaction.code) == (TransactionStatus.PROPOSED, code)
        assert transaction.district == "ANANEA"

        replies = phones.send(JUANA, "Arí")
        assert {r.phone for r in replies} == {BUYER, JUANA}
        receipt = _receipt(phones.last_to(JUANA))
        assert _receipt(phones.last_to(BUYER)) == receipt
        [transaction] = _transactions(db_session)
        assert transaction.status is TransactionStatus.CONFIRMED
        assert transaction.receipt_code == receipt
        assert log.sequence(database) == 1
        entry = ledger_log.find_receipt(db_session, receipt)
        body = json.loads(entry.entry)["body"]
        assert (body["material"], body["quantity"], body["fine_gold_g"]) == (
            "dore",
            "25.5",
            "21.68",
        )
        # Identifiers appear only as commitments.
        assert "45678912" not in entry.entry.decode() and "20131312955" not in entry.entry.decode()

        # Anyone can check the receipt.
        answer = phones.send(STRANGER, f"VERIFICAR {receipt}")[0].text
        assert "gold dor" in answer and "ANANEA" in answer and "ledger entry 0" in answer

    def test_one_line_entry_jumps_to_the_summary(self, phones):
        summary = phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")[0].text
        assert "Purchase:" in summary and "21.68" in summary
        phones.send(BUYER, "SI")
        assert "SI " in phones.last_to(JUANA)

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ("COMPRA 45678912 DORE 25.5G 850", "Format: COMPRA"),
            ("COMPRA 4567891 DORE 25.5G 850 5400", "2nd word"),
            ("COMPRA 45678912 PLATA 25.5G 850 5400", "3rd word"),
            ("COMPRA 45678912 DORE 25.5X 850 5400", "4th word"),
            ("COMPRA 45678912 DORE 25.5G 1200 5400", "5th word"),
            ("COMPRA 45678912 DORE 40KG 850 10", "6th word"),
        ],
    )
    def test_a_malformed_line_names_the_wrong_word(self, phones, db_session, line, expected):
        answer = phones.send(BUYER, line)[0].text
        assert expected in answer
        assert _transactions(db_session) == []

    def test_suspended_seller_is_refused_and_flagged(self, phones, db_session):
        phones.send(BUYER, "COMPRA")
        answer = phones.send(BUYER, "40000001")[0].text
        assert "SUSPENDED" in answer
        flags = db_session.scalars(sa.select(RedFlag)).all()
        assert [f.rule for f in flags] == ["R1"]
        assert _transactions(db_session) == []

    def test_a_phone_that_is_not_a_buyer_is_told_at_once(self, phones):
        assert "not registered to an active buyer" in phones.send(STRANGER, "COMPRA")[0].text
        assert "not registered to an active buyer" in phones.send(JUANA, "COMPRA")[0].text

    def test_mercury_is_accepted_and_flagged(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 MERCURIO 2kg - 900")
        phones.send(BUYER, "SI")
        flags = db_session.scalars(sa.select(RedFlag.rule)).all()
        assert flags == ["R7"]

    def test_no_from_the_seller_opens_a_dispute(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        code = _code(phones.last_to(BUYER))
        phones.send(JUANA, f"NO {code}")
        [transaction] = _transactions(db_session)
        assert transaction.status is TransactionStatus.DISPUTED
        assert "rejected" in phones.last_to(BUYER)
        assert db_session.scalars(sa.select(RedFlag.rule)).all() == ["DISPUTE"]

    def test_cancel_at_the_summary_records_nothing(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        assert "Cancelled" in phones.send(BUYER, "manam")[0].text
        assert _transactions(db_session) == []

    def test_a_bad_answer_is_explained_and_the_question_stays(self, phones):
        phones.send(BUYER, "COMPRA")
        phones.send(BUYER, "45678912")
        phones.send(BUYER, "6")
        answer = phones.send(BUYER, "-3 g")[0].text
        assert "Quantity" not in answer  # an explanation, not the next question
        assert "Fineness" in phones.send(BUYER, "25.5")[0].text


class TestSale:
    def test_declared_sale_claimed_and_confirmed_by_the_buyer(self, phones, db_session):
        phones.send(PEDRO, "VENTA")
        phones.send(PEDRO, "20131312955")
        phones.send(PEDRO, "1")
        phones.send(PEDRO, "2 t")
        phones.send(PEDRO, "12 g/t")
        summary = phones.send(PEDRO, "8000")[0].text
        assert "Sale:" in summary and "24" in summary  # 2 t at 12 g/t: 24 g fine gold
        code = _code(phones.send(PEDRO, "SI")[0].text)
        claim = phones.send(BUYER, f"CODIGO {code}")[0].text
        assert "Pedro" in claim
        replies = phones.send(BUYER, "SI")
        assert {r.phone for r in replies} == {BUYER, PEDRO}
        [transaction] = _transactions(db_session)
        assert transaction.status is TransactionStatus.CONFIRMED

    def test_sale_to_an_unknown_buyer_is_refused_at_once(self, phones):
        phones.send(PEDRO, "VENTA")
        assert "not a registered buyer" in phones.send(PEDRO, "20295613620")[0].text

    def test_the_miner_cannot_confirm_their_own_sale(self, phones):
        phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500")
        code = _code(phones.send(PEDRO, "SI")[0].text)
        assert "not waiting for this phone" in phones.send(PEDRO, f"SI {code}")[0].text


class TestGrammar:
    def test_unknown_input_gets_a_short_help(self, phones):
        assert "AYUDA" in phones.send(STRANGER, "hola")[0].text

    def test_a_keyword_starts_over(self, phones):
        phones.send(BUYER, "COMPRA")
        phones.send(BUYER, "45678912")
        assert "DNI or RUC" in phones.send(BUYER, "COMPRA")[0].text

    def test_salir_abandons(self, phones, db_session):
        phones.send(BUYER, "COMPRA")
        assert "Ended" in phones.send(BUYER, "SALIR")[0].text
        assert db_session.get(Conversation, BUYER).flow is None

    def test_conversations_expire_after_inactivity(self, phones):
        phones.send(BUYER, "COMPRA")
        phones.clock.advance(dt.timedelta(minutes=31))
        assert "AYUDA" in phones.send(BUYER, "45678912")[0].text

    def test_idioma_is_remembered_on_the_registrant(self, phones, db_session):
        phones.send(PEDRO, "IDIOMA")
        phones.send(PEDRO, "2")
        db_session.expire_all()
        pedro = db_session.scalars(
            sa.select(Registrant).where(Registrant.document_number == "41234567")
        ).one()
        assert pedro.language is Language.QUECHUA

    def test_alta_asks_for_approval_and_grants_nothing(self, phones, db_session):
        assert "DGFM will review" in phones.send(STRANGER, "ALTA 40000001")[0].text
        link = db_session.scalars(sa.select(PhoneLink).where(PhoneLink.phone == STRANGER)).one()
        assert link.state is PhoneLinkState.PENDING
        assert "not registered to an active buyer" in phones.send(STRANGER, "COMPRA")[0].text

    def test_verify_typo_and_unknown(self, phones):
        assert "mistyped" in phones.send(STRANGER, "VERIFICAR 1234 5678 9012 3456")[0].text
        assert "16 digits" in phones.send(STRANGER, "VERIFICAR 12")[0].text


class TestUssd:
    def _ussd(self, phones, phone: str, session: str, text: str) -> Reply:
        return phones.send(phone, text, Channel.USSD, session_id=session)[0]

    def test_purchase_with_digits_only(self, phones, db_session):
        menu = self._ussd(phones, BUYER, "s1", "")
        assert not menu.final
        first = menu.choices[0]
        assert (first.id, first.title) == ("1", "Register purchase")
        self._ussd(phones, BUYER, "s1", "1")
        self._ussd(phones, BUYER, "s1", "45678912")
        self._ussd(phones, BUYER, "s1", "6")
        self._ussd(phones, BUYER, "s1", "255")  # 25.5 g: the last digit is the tenths
        self._ussd(phones, BUYER, "s1", "850")
        summary = self._ussd(phones, BUYER, "s1", "5400")
        assert "25.5 g" in summary.text and not summary.final
        done = self._ussd(phones, BUYER, "s1", "1")
        assert done.final
        [transaction] = _transactions(db_session)
        assert str(transaction.quantity.normalize()) == "25.5"
