"""Transactions (list and detail with the live ledger check) and the phone simulator."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from admin.models import AuditEntry, StaffRole
from gateway.models import Message
from registry.models import (
    Initiator,
    RedFlag,
    Transaction,
    TransactionStatus,
)
from tests.admin.conftest import add_message

BUYER = "+51987000001"  # Planta de Beneficio Oro Sur
JUANA = "+51987000011"  # speaks Quechua
PEDRO = "+51987000012"
ROSA = "+51987000013"
ROW = re.compile(r'href="/admin/transactions/(\d+)"')


def add_transaction(
    session,
    demo,
    at: dt.datetime,
    *,
    seller: str = "45678912",
    material: str = "dore",
    status: TransactionStatus = TransactionStatus.CONFIRMED,
    department: str = "PUNO",
) -> Transaction:
    transaction = Transaction(
        code="123456",
        initiator=Initiator.BUYER,
        buyer_id=demo["20131312955"],
        seller_id=demo[seller],
        seller_ruc="10456789124",
        material=material,
        quantity=Decimal("25.5"),
        unit="g",
        grade=Decimal("850"),
        fine_gold_g=Decimal("21.68"),
        price_pen=Decimal("5400.00"),
        department=department,
        status=status,
        created_at=at,
        expires_at=at + dt.timedelta(hours=48),
    )
    session.add(transaction)
    session.flush()
    return transaction


@pytest.fixture
def trades(database, clock, demo) -> dict[str, int]:
    now = clock.now()
    with database.transaction() as session:
        rows = {
            "dore_puno": add_transaction(session, demo, now - dt.timedelta(days=2)),
            "mercury": add_transaction(
                session, demo, now - dt.timedelta(days=1), material="mercury"
            ),
            "disputed": add_transaction(
                session,
                demo,
                now,
                seller="41234567",
                status=TransactionStatus.DISPUTED,
                department="MADRE DE DIOS",
            ),
        }
        session.add(
            RedFlag(
                rule="R7",
                reason="mercury",
                transaction_id=rows["mercury"].id,
                evidence="{}",
                created_at=now,
                updated_at=now,
            )
        )
        return {name: row.id for name, row in rows.items()}


class TestList:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", ["disputed", "mercury", "dore_puno"]),
            ("?status=disputed", ["disputed"]),
            ("?material=mercury", ["mercury"]),
            ("?department=madre+de+dios", ["disputed"]),
            ("?flagged=1", ["mercury"]),
            ("?seller=41234567", ["disputed"]),
            ("?seller=10456789124", ["mercury", "dore_puno"]),  # Juana by her RUC
            ("?buyer=20131312955&status=confirmed", ["mercury", "dore_puno"]),
            ("?buyer=99999999", []),
            ("?date_from=2026-11-28&date_to=2026-11-28", ["dore_puno"]),
        ],
    )
    def test_filters(self, client, as_role, trades, query, expected):
        as_role(StaffRole.AUDITOR)
        response = client.get("/admin/transactions" + query)
        assert response.status_code == 200
        shown = [int(i) for i in ROW.findall(response.get_data(as_text=True))]
        assert [i for i in shown if i in trades.values()] == [trades[n] for n in expected]

    def test_shows_material_in_spanish_and_numbers_as_in_peru(self, client, as_role, trades):
        as_role(StaffRole.AUDITOR)
        page = client.get("/admin/transactions").get_data(as_text=True)
        assert "mercurio" in page.lower()
        assert "5,400.00" in page

    def test_a_receipt_missing_from_the_ledger_is_not_verified(
        self, client, as_role, trades, database
    ):
        with database.transaction() as session:
            session.get(Transaction, trades["dore_puno"]).receipt_code = "1234567890123452"
        as_role(StaffRole.ANALYST)
        page = client.get(f"/admin/transactions/{trades['dore_puno']}").get_data(as_text=True)
        assert 'class="check missing"' in page

    @pytest.mark.parametrize(
        ("codigo", "shown"),
        [
            ("010149108", "010149108</span> · Rinconada Uno"),  # the seller's own, VIGENTE
            ("070012317", '070012317</span> <span class="warn">no registrado a nombre del'),
            (None, "no declarado"),
        ],
    )
    def test_the_detail_shows_the_declared_mining_right(
        self, client, as_role, trades, database, codigo, shown
    ):
        with database.transaction() as session:
            session.get(Transaction, trades["dore_puno"]).codigo_unico = codigo
        as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/transactions/{trades['dore_puno']}").get_data(as_text=True)
        right = page.split('id="mining-right">')[1].split("</dd>")[0]
        assert shown in right


def simulate(client, token: str, phone: str, text: str, channel: str = "sms", **extra):
    return client.post(
        "/admin/simulator",
        data={"csrf_token": token, "phone": phone, "channel": channel, "text": text, **extra},
    )


class TestSimulatorEndToEnd:
    def test_a_compra_one_line_entry_confirmed_lands_verified_in_the_ledger(
        self, client, as_role, demo, database
    ):
        token = as_role(StaffRole.ANALYST)
        response = simulate(client, token, BUYER, "COMPRA 45678912 DORE 25.5G 850 5400")
        assert response.status_code == 302
        page = client.get(response.location).get_data(as_text=True)
        assert "oro fino 21.68 g" in page
        simulate(client, token, BUYER, "SI")
        simulate(client, token, JUANA, "SI")
        simulate(client, token, JUANA, "1")  # her mining right, offered as option 1
        with database.transaction() as session:
            transaction = session.scalars(sa.select(Transaction)).one()
            simulated = session.scalars(sa.select(Message.simulated)).all()
            audited = session.scalars(
                sa.select(AuditEntry.action).where(AuditEntry.action == "simulator.send")
            ).all()
        assert transaction.status is TransactionStatus.CONFIRMED
        assert simulated and all(simulated)
        assert len(audited) == 4
        page = client.get(f"/admin/transactions/{transaction.id}").get_data(as_text=True)
        assert 'class="check verified"' in page
        assert "Índice en el registro" in page
        assert "Planta de Beneficio Oro Sur S.A.C." in page and "Juana Quispe Mamani" in page
        assert "COMPRA 45678912 DORE 25.5G 850 5400" in page  # the messages that produced it
        listed = client.get("/admin/messages?phone=%2B51987000001").get_data(as_text=True)
        assert "simulado" in listed

    def test_ussd_dial_answer_and_end(self, client, as_role, demo, database):
        token = as_role(StaffRole.ANALYST)
        simulate(client, token, ROSA, "", channel="ussd", action="dial")
        page = client.get(f"/admin/simulator?phone={ROSA}&channel=ussd").get_data(as_text=True)
        assert ">CON</span>" in page and "Registrar compra" in page
        simulate(client, token, ROSA, "6", channel="ussd")
        page = client.get(f"/admin/simulator?phone={ROSA}&channel=ussd").get_data(as_text=True)
        assert ">END</span>" in page
        assert "Marcar *500#" in page  # the session ended: dial again
        with database.transaction() as session:
            ids = session.scalars(
                sa.select(Message.provider_id)
                .where(Message.channel == "ussd", Message.direction == "in")
                .order_by(Message.id)
            ).all()
        assert [i.rsplit(":", 1)[1] for i in ids] == ["0", "1"]
        assert ids[0].rsplit(":", 1)[0] == ids[1].rsplit(":", 1)[0]

    def test_whatsapp(self, client, as_role, demo):
        token = as_role(StaffRole.ADMIN)
        simulate(client, token, JUANA, "AYUDA", channel="whatsapp")
        page = client.get(f"/admin/simulator?phone={JUANA}&channel=whatsapp").get_data(as_text=True)
        assert page.count('class="bubble') == 2

    def test_bad_phone_and_empty_text(self, client, as_role):
        token = as_role(StaffRole.ANALYST)
        response = simulate(client, token, "12", "AYUDA")
        assert response.status_code == 302
        response = simulate(client, token, BUYER, "  ")
        page = client.get(response.location).get_data(as_text=True)
        assert "Escriba primero un mensaje." in page


def produced_by_rows(page: str) -> list[str]:
    section = page.split('id="produced-by"')[1].split("</section>")[0]
    return re.findall(r"<tr class=\"step-[a-z]+\">(.*?)</tr>", section, re.S)


class TestMessagesThatProducedIt:
    STEPS = ("COMPRA", "<b>x</b>", "45678912", "6", "25,5 g", "850", "S/ 5 400", "SI")

    def trade(self, client, token) -> None:
        simulate(client, token, BUYER, "AYUDA")  # before the conversation: not part of it
        for text in self.STEPS:  # the second answer is wrong: asked again, still the same trade
            simulate(client, token, BUYER, text)
        simulate(client, token, JUANA, "SI")
        simulate(client, token, JUANA, "1")  # her mining right

    def test_both_parties_and_our_replies_oldest_first(self, client, as_role, demo, database):
        token = as_role(StaffRole.ANALYST)
        self.trade(client, token)
        with database.transaction() as session:
            transaction = session.scalars(sa.select(Transaction)).one()
            buyer_last = session.scalar(
                sa.select(sa.func.max(Message.id)).where(Message.phone == BUYER)
            )
        page = client.get(f"/admin/transactions/{transaction.id}").get_data(as_text=True)
        rows = produced_by_rows(page)
        # The buyer's 8 messages and 9 answers (the wrong one is explained, then asked again),
        # the seller asked, her 2 answers and our question, and the receipt to each.
        assert len(rows) == 8 + 9 + 1 + 3 + 2
        sent = [
            re.search(r'<td class="body">(.*?)</td>', row, re.S).group(1)
            for row in rows
            if 'class="dir-in"' in row
        ]
        assert sent == ["COMPRA", "&lt;b&gt;x&lt;/b&gt;", *self.STEPS[2:], "SI", "1"]
        assert "<b>" not in "".join(rows)  # shown as text
        first, last = rows[0], rows[-1]
        assert "propuesta" in first and "comprador" in first and "SMS" in first
        assert "simulado" in first and 'class="dir-in"' in first
        assert "confirmada" in last and 'class="dir-out"' in last
        parties = [re.findall(r"<td>([^<]*)</td>", row)[0] for row in rows]
        assert parties.count("vendedor") == 1 + 3 + 1
        assert all(
            ("vendedor" if JUANA in row else "comprador") == party
            for row, party in zip(rows, parties, strict=True)
        )
        assert BUYER in first  # analysts see whole numbers...
        # ... and each phone links to its conversation, ending at its last message here.
        conversation = f"/admin/conversation?phone=%2B51987000001&amp;before={buyer_last + 1}"
        assert conversation in first
        assert "Mensajes de las partes alrededor" not in page

    def test_a_message_links_back_to_its_transaction(self, client, as_role, demo, database):
        token = as_role(StaffRole.ANALYST)
        self.trade(client, token)
        with database.transaction() as session:
            transaction = session.scalars(sa.select(Transaction)).one()
            compra, ayuda = (
                session.scalar(
                    sa.select(Message.id).where(Message.phone == BUYER, Message.body == text)
                )
                for text in ("COMPRA", "AYUDA")
            )
        page = client.get(f"/admin/messages/{compra}").get_data(as_text=True)
        link = f'href="/admin/transactions/{transaction.id}">{transaction.code}</a>'
        assert link in page and "propuesta" in page
        # A message before the conversation that led to it belongs to no transaction.
        page = client.get(f"/admin/messages/{ayuda}").get_data(as_text=True)
        assert f"/admin/transactions/{transaction.id}" not in page

    def test_an_auditor_sees_masked_phones_and_links_by_message(
        self, client, as_role, demo, database
    ):
        self.trade(client, as_role(StaffRole.ANALYST))
        as_role(StaffRole.AUDITOR)
        with database.transaction() as session:
            transaction = session.scalars(sa.select(Transaction)).one()
        page = client.get(f"/admin/transactions/{transaction.id}").get_data(as_text=True)
        rows = produced_by_rows(page)
        assert rows and not any(BUYER in row or JUANA in row for row in rows)
        assert "+51******001" in rows[0] and "+51******011" in rows[-1]
        assert re.search(r"/admin/conversation\?message=\d+&amp;before=\d+", rows[0])

    def test_an_older_transaction_shows_the_parties_messages_around_it(
        self, client, as_role, trades, database, clock
    ):
        with database.transaction() as session:
            add_message(session, phone=PEDRO, body="<i>ya vendí</i>", at=clock.now())
        as_role(StaffRole.ANALYST)
        page = client.get(f"/admin/transactions/{trades['disputed']}").get_data(as_text=True)
        assert 'id="produced-by"' not in page and 'id="around"' in page
        assert "&lt;i&gt;ya vendí&lt;/i&gt;" in page
        assert "Esta transacción es anterior a los vínculos" in page

    def test_a_transaction_without_any_message(self, client, as_role, trades):
        as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/transactions/{trades['mercury']}").get_data(as_text=True)
        assert "No hay mensajes vinculados a esta transacción." in page
