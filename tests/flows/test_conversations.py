"""The conversations as phones meet them: the real flows, registry and ledger on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from flows import commands, confirm, engine, trade
from flows.engine import Conversations
from flows.messages import Channel, Inbound, Reply
from flows.models import Conversation
from flows.speech import Speaker
from ledger import log as ledger_log
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from ledger.receipts import format_code, normalise_code
from registry import transactions
from registry.demo import seed_demo
from registry.identifiers import natural_person_ruc
from registry.lookup import Standing
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
ES, QU = Speaker("es"), Speaker("qu")  # the buyers and strangers speak Spanish, Juana Quechua
DORE = {"material": "dore", "quantity": "25.5", "unit": "g", "grade": "850", "fine": "21.68"}
FORMAT_HELP = ES(
    trade.ONE_LINE_FORMAT,
    keyword="COMPRA",
    party=ES.gettext("DNI/RUC"),
    example="COMPRA 45678912 DORE 25.5G 850 5400",
)


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
    [digits] = set(re.findall(r"\b\d{4} \d{4} \d{4} \d{4}\b", text))  # shown twice
    return normalise_code(digits)


class TestPurchase:
    def test_step_by_step_then_the_seller_confirms(self, phones, db_session, database, log):
        assert phones.send(BUYER, "compra")[0].text == ES(trade.ASK_SELLER)
        assert phones.send(BUYER, "45.678.912")[0].text == ES(trade.ASK_MATERIAL)
        assert phones.send(BUYER, "6")[0].text == ES(
            trade.ASK_QUANTITY, material=ES.material("dore"), units="g, kg"
        )
        assert phones.send(BUYER, "25,5 g")[0].text == ES(trade.ASK_FINENESS)
        assert phones.send(BUYER, "850")[0].text == ES(trade.ASK_PRICE)
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
        assert phones.last_to(JUANA) == QU(confirm.CONFIRMED, receipt=format_code(receipt))
        assert phones.last_to(BUYER) == ES(confirm.CONFIRMED, receipt=format_code(receipt))
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
        assert answer == ES(
            commands.RECEIPT_FOUND,
            code=format_code(receipt),
            goods=f"{ES.material('dore')} 25.5 g",
            date="30/11/2026",
            region="ANANEA (PUNO)",
            index=0,
        )

    def test_one_line_entry_jumps_to_the_summary(self, phones):
        summary = phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")[0].text
        assert "21.68" in summary
        assert summary == ES(
            trade.SUMMARY_PURCHASE,
            goods=trade.describe_goods(ES, DORE),
            price=ES.money(Decimal(5400)),
            party="45678912",
        )
        phones.send(BUYER, "SI")
        assert "SI " in phones.last_to(JUANA)

    def test_a_line_with_a_word_missing_gets_the_format(self, phones, db_session):
        assert phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850")[0].text == FORMAT_HELP
        assert _transactions(db_session) == []

    @pytest.mark.parametrize(
        ("line", "word"),
        [
            ("COMPRA 4567891 DORE 25.5G 850 5400", 1),
            ("COMPRA 45678912 PLATA 25.5G 850 5400", 2),
            ("COMPRA 45678912 DORE 25.5X 850 5400", 3),
            ("COMPRA 45678912 DORE 25.5G 1200 5400", 4),
            ("COMPRA 45678912 DORE 40KG 850 10", 5),
        ],
    )
    def test_a_malformed_line_names_the_wrong_word(self, phones, db_session, line, word):
        answer = phones.send(BUYER, line)[0].text
        assert f"({ES.gettext(trade.TOKEN_NAMES[word])}) " in answer
        assert answer.endswith(" " + FORMAT_HELP)
        assert _transactions(db_session) == []

    def test_suspended_seller_is_refused_and_flagged(self, phones, db_session):
        phones.send(BUYER, "COMPRA")
        answer = phones.send(BUYER, "40000001")[0].text
        reason = transactions.STANDING_REASONS[Standing.SUSPENDED]
        assert answer == ES(reason, ruc=natural_person_ruc("40000001"))
        flags = db_session.scalars(sa.select(RedFlag)).all()
        assert [f.rule for f in flags] == ["R1"]
        assert _transactions(db_session) == []

    def test_a_phone_that_is_not_a_buyer_is_told_at_once(self, phones):
        assert phones.send(STRANGER, "COMPRA")[0].text == ES(transactions.NOT_A_BUYER)
        assert phones.send(JUANA, "COMPRA")[0].text == QU(transactions.NOT_A_BUYER)

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
        assert phones.last_to(JUANA) == QU(confirm.REJECTED_BY_YOU, code=code)
        rejected = ES(confirm.REJECTED_BY_OTHER, name="Juana Quispe Mamani", code=code)
        assert phones.last_to(BUYER) == rejected
        assert db_session.scalars(sa.select(RedFlag.rule)).all() == ["DISPUTE"]

    def test_cancel_at_the_summary_records_nothing(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        assert phones.send(BUYER, "manam")[0].text == ES(trade.CANCELLED)
        assert _transactions(db_session) == []

    def test_a_bad_answer_is_explained_and_the_question_stays(self, phones):
        phones.send(BUYER, "COMPRA")
        phones.send(BUYER, "45678912")
        phones.send(BUYER, "6")
        answer = phones.send(BUYER, "-3 g")[0].text
        # An explanation, not the next question.
        assert answer == ES("%(value)s is negative; enter a number greater than zero.", value="-3")
        assert phones.send(BUYER, "25.5")[0].text == ES(trade.ASK_FINENESS)


class TestSale:
    def test_declared_sale_claimed_and_confirmed_by_the_buyer(self, phones, db_session):
        phones.send(PEDRO, "VENTA")
        phones.send(PEDRO, "20131312955")
        phones.send(PEDRO, "1")
        phones.send(PEDRO, "2 t")
        phones.send(PEDRO, "12 g/t")
        summary = phones.send(PEDRO, "8000")[0].text
        ore = {"material": "ore", "quantity": "2", "unit": "t", "grade": "12", "fine": "24"}
        assert "24" in summary  # 2 t at 12 g/t: 24 g fine gold
        goods, price = trade.describe_goods(ES, ore), ES.money(Decimal(8000))
        assert summary == ES(trade.SUMMARY_SALE, goods=goods, price=price, party="20131312955")
        declared = phones.send(PEDRO, "SI")[0].text
        code = _code(declared)
        assert declared == ES(trade.SALE_DECLARED, code=code, hours=48)
        claim = phones.send(BUYER, f"CODIGO {code}")[0].text
        seller = "Pedro Huamán Condori"
        assert claim == ES(confirm.CLAIM_SUMMARY, seller=seller, goods=goods, price=price)
        replies = phones.send(BUYER, "SI")
        assert {r.phone for r in replies} == {BUYER, PEDRO}
        [transaction] = _transactions(db_session)
        assert transaction.status is TransactionStatus.CONFIRMED

    def test_sale_to_an_unknown_buyer_is_refused_at_once(self, phones):
        phones.send(PEDRO, "VENTA")
        answer = phones.send(PEDRO, "20295613620")[0].text
        assert answer == ES(transactions.BUYER_UNKNOWN, ruc="20295613620")

    def test_the_miner_cannot_confirm_their_own_sale(self, phones):
        phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500")
        code = _code(phones.send(PEDRO, "SI")[0].text)
        assert phones.send(PEDRO, f"SI {code}")[0].text == ES(transactions.NOT_YOURS, code=code)


class TestGrammar:
    def test_unknown_input_gets_a_short_help(self, phones):
        assert phones.send(STRANGER, "hola")[0].text == ES(commands.UNKNOWN)

    def test_a_keyword_starts_over(self, phones):
        phones.send(BUYER, "COMPRA")
        phones.send(BUYER, "45678912")
        assert phones.send(BUYER, "COMPRA")[0].text == ES(trade.ASK_SELLER)

    def test_salir_abandons(self, phones, db_session):
        phones.send(BUYER, "COMPRA")
        assert phones.send(BUYER, "SALIR")[0].text == ES(commands.ENDED)
        assert db_session.get(Conversation, BUYER).flow is None

    def test_conversations_expire_after_inactivity(self, phones):
        phones.send(BUYER, "COMPRA")
        phones.clock.advance(dt.timedelta(minutes=31))
        assert phones.send(BUYER, "45678912")[0].text == ES(commands.UNKNOWN)

    def test_idioma_is_remembered_on_the_registrant(self, phones, db_session):
        phones.send(PEDRO, "IDIOMA")
        phones.send(PEDRO, "2")
        db_session.expire_all()
        pedro = db_session.scalars(
            sa.select(Registrant).where(Registrant.document_number == "41234567")
        ).one()
        assert pedro.language is Language.QUECHUA

    def test_alta_asks_for_approval_and_grants_nothing(self, phones, db_session):
        assert phones.send(STRANGER, "ALTA 40000001")[0].text == ES(commands.ALTA_RECEIVED)
        link = db_session.scalars(sa.select(PhoneLink).where(PhoneLink.phone == STRANGER)).one()
        assert link.state is PhoneLinkState.PENDING
        assert phones.send(STRANGER, "COMPRA")[0].text == ES(transactions.NOT_A_BUYER)

    def test_verify_typo_and_unknown(self, phones):
        typo = phones.send(STRANGER, "VERIFICAR 1234 5678 9012 3456")[0].text
        assert typo == ES(commands.RECEIPT_TYPO, code="1234 5678 9012 3456")
        assert phones.send(STRANGER, "VERIFICAR 12")[0].text == ES(commands.RECEIPT_MALFORMED)


class TestUssd:
    def _ussd(self, phones, phone: str, session: str, text: str) -> Reply:
        return phones.send(phone, text, Channel.USSD, session_id=session)[0]

    def test_purchase_with_digits_only(self, phones, db_session):
        menu = self._ussd(phones, BUYER, "s1", "")
        assert not menu.final
        first = menu.choices[0]
        assert (first.id, first.title) == ("1", ES(engine.USSD_OPTIONS[0]))
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
