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
from flows.messages import Channel, Choice, Inbound, Reply, Step, Touched
from flows.models import Conversation
from flows.speech import Speaker
from ledger import log as ledger_log
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from ledger.receipts import format_code, normalise_code
from registry import transactions
from registry.demo import seed_demo
from registry.identifiers import DocumentType, natural_person_ruc
from registry.lookup import Standing
from registry.models import (
    Language,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    ReinfoRegistration,
    ReinfoStatus,
    Role,
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
JUANAS_RIGHT = Choice("1", "010149108 Rinconada Uno")  # her only VIGENTE registration
PEDROS_RIGHT = Choice("1", "070012317 Huepetuhe Dos")  # his other one is EXCLUIDO
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
        self.touched: list[Touched] = []

    def send(self, phone: str, text: str, channel: Channel = Channel.SMS, **kw) -> list[Reply]:
        self.count += 1
        inbound = Inbound(channel, phone, text, f"M{self.count}", self.clock.now(), **kw)
        with self.database.transaction() as session:
            answer = self.conversations.handle(session, inbound)
        replies = answer.replies
        self.touched.extend(answer.touched)
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

        # The seller names the mining right: her only VIGENTE one is option 1.
        [question] = phones.send(JUANA, "Arí")
        assert (question.text, question.choices) == (QU(trade.ASK_RIGHT_DEFAULT), (JUANAS_RIGHT,))
        assert not question.final
        replies = phones.send(JUANA, "1")
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
        # Identifiers appear only as commitments; so does the right of a natural person.
        assert "45678912" not in entry.entry.decode() and "20131312955" not in entry.entry.decode()
        assert transaction.codigo_unico == "010149108"
        assert "010149108" not in entry.entry.decode()
        assert body["codigo_unico"] is None
        assert body["codigo_unico_commitment"] == log.commit("codigo_unico", "010149108")

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

    def test_the_answer_names_what_each_message_did_to_the_transaction(self, phones, db_session):
        """The gateway links the messages from these (tests/gateway/test_inbound.py)."""
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        assert phones.touched == []  # the summary: nothing proposed yet
        phones.send(BUYER, "SI")
        [transaction] = _transactions(db_session)
        phones.send(JUANA, "NO")
        assert [(t.transaction_id, t.step) for t in phones.touched] == [
            (transaction.id, Step.PROPOSED),
            (transaction.id, Step.DISPUTED),
        ]

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
        [question] = phones.send(PEDRO, "20131312955")
        assert (question.text, question.choices) == (ES(trade.ASK_RIGHT_DEFAULT), (PEDROS_RIGHT,))
        assert phones.send(PEDRO, "1")[0].text == ES(trade.ASK_MATERIAL)
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
        replies = phones.send(BUYER, "SI")  # the buyer is not asked for the right
        assert {r.phone for r in replies} == {BUYER, PEDRO}
        [transaction] = _transactions(db_session)
        assert transaction.status is TransactionStatus.CONFIRMED
        assert transaction.codigo_unico == "070012317"

    def test_sale_to_an_unknown_buyer_is_refused_at_once(self, phones):
        phones.send(PEDRO, "VENTA")
        answer = phones.send(PEDRO, "20295613620")[0].text
        assert answer == ES(transactions.BUYER_UNKNOWN, ruc="20295613620")

    def test_the_miner_cannot_confirm_their_own_sale(self, phones):
        phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500")
        code = _code(phones.send(PEDRO, "SI")[0].text)
        assert phones.send(PEDRO, f"SI {code}")[0].text == ES(transactions.NOT_YOURS, code=code)


class TestMiningRight:
    """The seller declares the código único the gold comes from; R2 checks it against REINFO."""

    def test_a_malformed_code_is_explained_in_the_sellers_language(self, phones):
        phones.send(JUANA, "VENTA")
        phones.send(JUANA, "20131312955")
        [error, again] = phones.send(JUANA, "0101491")
        assert error.text == QU(
            "A código único has 9 digits (8 if the leading zero is left out); %(value)s has "
            "%(count)d.",
            value="0101491",
            count=7,
        )
        assert again.text == QU(trade.ASK_RIGHT_DEFAULT)  # the question stays
        error = phones.send(JUANA, "01-0149-1O8")[0].text
        assert error == QU(
            "A código único is made of digits only; %(value)s contains %(chars)s.",
            value="01-0149-1O8",
            chars="'O'",
        )
        assert phones.send(JUANA, "01-01491-08")[0].text == QU(trade.ASK_MATERIAL)

    def test_another_holders_right_is_accepted_and_flagged(self, phones, db_session):
        phones.send(PEDRO, "VENTA")
        phones.send(PEDRO, "20131312955")
        phones.send(PEDRO, "10149108")  # Juana's right, without the leading zero
        for answer in ("6", "10", "900", "3400"):
            phones.send(PEDRO, answer)
        phones.send(PEDRO, "SI")
        [transaction] = _transactions(db_session)
        assert transaction.codigo_unico == "010149108"
        assert transaction.district == "HUEPETUHE"  # not his right: the place of his own
        flag = db_session.scalars(sa.select(RedFlag).where(RedFlag.rule == "R2")).one()
        assert flag.transaction_id == transaction.id
        assert json.loads(flag.evidence)["other_holders"] == [
            {"ruc": natural_person_ruc("45678912"), "status": "VIGENTE"}
        ]

    def test_a_seller_with_several_rights_types_it(self, phones, db_session):
        add_right(db_session, natural_person_ruc("45678912"), "010149109", "PUTINA", "211001")
        phones.send(JUANA, "VENTA")
        [question] = phones.send(JUANA, "20131312955")
        assert (question.text, question.choices) == (QU(trade.ASK_RIGHT), ())
        error = phones.send(JUANA, "1")[0].text  # no option 1 to pick
        assert error == QU(
            "A código único has 9 digits (8 if the leading zero is left out); %(value)s has "
            "%(count)d.",
            value="1",
            count=1,
        )
        phones.send(JUANA, "010149109")
        for answer in ("6", "10", "900", "3400", "SI"):
            phones.send(JUANA, answer)
        [transaction] = _transactions(db_session)
        assert (transaction.codigo_unico, transaction.district) == ("010149109", "PUTINA")
        assert db_session.scalars(sa.select(RedFlag.rule)).all() == []

    def test_one_line_sale_takes_the_only_right_or_a_seventh_word(self, phones, db_session):
        phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500")
        assert phones.send(PEDRO, "SI")[0].text.startswith(ES(trade.SALE_DECLARED)[:10])
        summary = phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500 07-00123-18")[0].text
        assert summary.startswith(ES(trade.SUMMARY_SALE)[:5])
        phones.send(PEDRO, "SI")
        bad = phones.send(PEDRO, "VENTA 20131312955 DORE 10G 900 2500 7001231")[0].text
        assert f"({ES.gettext(trade.TOKEN_NAMES[6])}) " in bad
        first, second = _transactions(db_session)
        assert (first.codigo_unico, second.codigo_unico) == ("070012317", "070012318")
        # His EXCLUIDO right: R2 (the seller is still VIGENTE through the other one).
        flags = db_session.execute(sa.select(RedFlag.transaction_id, RedFlag.rule)).all()
        assert [tuple(f) for f in flags] == [(second.id, "R2")]

    def test_one_line_sale_asks_a_seller_with_several_rights(self, phones, db_session):
        add_right(db_session, natural_person_ruc("45678912"), "010149109")
        answer = phones.send(JUANA, "VENTA 20131312955 DORE 10G 900 2500")[0].text
        assert answer == QU(trade.ASK_RIGHT)
        assert phones.send(JUANA, "010149108")[0].text.startswith(QU(trade.SUMMARY_SALE)[:5])

    def test_a_purchase_is_only_asked_of_the_seller_and_no_needs_none(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        code = _code(phones.last_to(BUYER))
        phones.send(JUANA, f"NO {code}")
        [transaction] = _transactions(db_session)
        assert (transaction.status, transaction.codigo_unico) == (TransactionStatus.DISPUTED, None)

    def test_the_seller_of_a_purchase_may_name_anothers_right(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        code = _code(phones.last_to(BUYER))
        assert phones.send(JUANA, f"SI {code}")[0].text == QU(trade.ASK_RIGHT_DEFAULT)
        assert phones.send(JUANA, "SALIR")[0].text == QU(commands.ENDED)
        [transaction] = _transactions(db_session)
        assert transaction.status is TransactionStatus.PROPOSED  # nothing confirmed yet
        phones.send(JUANA, f"SI {code}")
        replies = phones.send(JUANA, "070012317")  # Pedro's right
        assert {r.phone for r in replies} == {BUYER, JUANA}
        [transaction] = _transactions(db_session)
        assert (transaction.status, transaction.codigo_unico) == (
            TransactionStatus.CONFIRMED,
            "070012317",
        )
        assert transaction.district == "ANANEA"
        rules = db_session.scalars(
            sa.select(RedFlag.rule).where(RedFlag.transaction_id == transaction.id)
        ).all()
        assert rules == ["R2"]

    def test_the_seller_may_name_the_right_with_the_answer(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        code = _code(phones.last_to(BUYER))
        [error, question] = phones.send(JUANA, f"SI {code} 0101")
        assert error.text == QU(
            "A código único has 9 digits (8 if the leading zero is left out); %(value)s has "
            "%(count)d.",
            value="0101",
            count=4,
        )
        assert question.text == QU(trade.ASK_RIGHT_DEFAULT)
        replies = phones.send(JUANA, f"ARI {code} 01-01491-08")
        assert {r.phone for r in replies} == {BUYER, JUANA}
        [transaction] = _transactions(db_session)
        assert (transaction.status, transaction.codigo_unico) == (
            TransactionStatus.CONFIRMED,
            "010149108",
        )

    def test_a_companys_right_goes_into_the_ledger_as_it_is(
        self, phones, db_session, database, log
    ):
        company = "20100070970"
        add_right(db_session, company, "050004511", "SANCOS", "050621")
        db_session.add(
            Registrant(
                role=Role.MINER,
                document_type=DocumentType.RUC,
                document_number=company,
                name="Minera Sancos S.A.C.",
                language=Language.SPANISH,
                created_at=phones.clock.now(),
                updated_at=phones.clock.now(),
                phones=[
                    PhoneLink(
                        phone="+51987000031",
                        state=PhoneLinkState.ACTIVE,
                        requested_at=phones.clock.now(),
                    )
                ],
            )
        )
        db_session.commit()
        phones.send("+51987000031", "VENTA 20131312955 DORE 10G 900 2500")
        code = _code(phones.send("+51987000031", "SI")[0].text)
        phones.send(BUYER, f"CODIGO {code}")
        phones.send(BUYER, "SI")
        log.sequence(database)
        [transaction] = _transactions(db_session)
        body = json.loads(ledger_log.find_receipt(db_session, transaction.receipt_code).entry)
        assert body["body"]["codigo_unico"] == "050004511"
        assert body["body"]["codigo_unico_commitment"] is None


def add_right(session, ruc: str, codigo: str, district: str = "PUTINA", ubigeo: str = "211001"):
    """Give `ruc` one more VIGENTE registration (in the province of the demo's Ananea)."""
    session.add(
        ReinfoRegistration(
            ruc=ruc,
            codigo_unico=codigo,
            holder_name="HOLDER",
            mining_right=f"Derecho {district.title()}",
            department="PUNO" if ubigeo.startswith("21") else "AYACUCHO",
            province="SAN ANTONIO DE PUTINA" if ubigeo.startswith("21") else "LUCANAS",
            district=district,
            ubigeo=ubigeo,
            status=ReinfoStatus.VIGENTE,
            snapshot_date=dt.date(2026, 11, 30),
            updated_at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
        )
    )
    session.commit()


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

    def test_alta_from_a_registered_phone_changes_nothing(self, phones, db_session):
        def links():
            return db_session.scalars(sa.select(PhoneLink).where(PhoneLink.phone == BUYER)).all()

        before = [(link.registrant_id, link.state) for link in links()]
        assert phones.send(BUYER, "ALTA 45678912")[0].text == ES(commands.ALTA_ALREADY)
        db_session.expire_all()
        assert [(link.registrant_id, link.state) for link in links()] == before

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

    def test_the_seller_confirms_by_code_and_names_the_right_with_one_key(self, phones, db_session):
        phones.send(BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        phones.send(BUYER, "SI")
        code = _code(phones.last_to(BUYER))
        self._ussd(phones, JUANA, "s2", "")
        self._ussd(phones, JUANA, "s2", "3")
        self._ussd(phones, JUANA, "s2", code)  # the summary
        question = self._ussd(phones, JUANA, "s2", "1")  # 1 = yes
        assert (question.text, question.choices) == (QU(trade.ASK_RIGHT_DEFAULT), (JUANAS_RIGHT,))
        assert not question.final
        # The session drops; dialling again asks the same question.
        again = self._ussd(phones, JUANA, "s3", "")
        assert (again.text, again.choices, again.final) == (question.text, question.choices, False)
        [done] = [
            r for r in phones.send(JUANA, "1", Channel.USSD, session_id="s3") if r.phone == JUANA
        ]
        assert done.final and done.text == QU(
            confirm.CONFIRMED, receipt=format_code(_transactions(db_session)[0].receipt_code)
        )
        [transaction] = _transactions(db_session)
        assert (transaction.status, transaction.codigo_unico) == (
            TransactionStatus.CONFIRMED,
            "010149108",
        )
