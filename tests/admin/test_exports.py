"""CSV export of the filtered lists: streamed in keyset batches, filtered, masked, audited."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from admin.models import AuditEntry, StaffRole
from admin.views import exports
from flows.messages import Channel
from gateway.models import Direction, Status
from registry.identifiers import mask_phone
from registry.models import FlagStatus, Initiator, RedFlag, Transaction, TransactionStatus
from tests.admin.conftest import add_flag, add_message

ROSA = "+51987000013"
JUANA = "+51987000011"


def read_csv(response) -> list[dict[str, str]]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # Excel reads UTF-8 with this mark
    return list(csv.DictReader(io.StringIO(text[1:])))


@pytest.fixture
def log(database, clock) -> list[int]:
    """Eight messages: five SMS of Rosa, two WhatsApp of Juana, one formula-looking body."""
    now = clock.now()
    ids = []
    with database.transaction() as session:
        for i in range(5):
            ids.append(
                add_message(
                    session, phone=ROSA, body=f"AYUDA {i}", at=now - dt.timedelta(minutes=10 - i)
                ).id
            )
        for i in range(2):
            ids.append(
                add_message(
                    session,
                    phone=JUANA,
                    channel=Channel.WHATSAPP,
                    direction=Direction.OUT,
                    status=Status.DELIVERED,
                    events=(Status.QUEUED, Status.SENT, Status.DELIVERED),
                    body=f"Codigo {i}",
                    at=now - dt.timedelta(minutes=4 - i),
                ).id
            )
        ids.append(add_message(session, phone=ROSA, body='=HYPERLINK("http://x")', at=now).id)
    return ids


class TestMessages:
    def test_streamed_csv_with_the_page_filters(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        response = client.get("/admin/messages.csv?channel=sms&direction=in")
        assert response.status_code == 200
        assert response.is_streamed
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith(
            'attachment; filename="messages-2026'
        )
        assert response.headers["Cache-Control"] == "no-store"
        rows = read_csv(response)
        assert [int(r["id"]) for r in rows] == [log[7], *reversed(log[:5])]  # newest first
        assert {r["phone"] for r in rows} == {ROSA}  # analysts see whole numbers
        assert rows[-1]["body"] == "AYUDA 0"
        assert rows[-1]["created_at"] == "2026-11-30T09:50:00-05:00"  # Peru time
        assert rows[-1]["channel"] == "sms" and rows[-1]["direction"] == "in"

    def test_auditors_export_with_phones_masked(self, client, as_role, log):
        as_role(StaffRole.AUDITOR)
        response = client.get(f"/admin/messages.csv?phone={JUANA.replace('+', '%2B')}")
        rows = read_csv(response)
        assert [int(r["id"]) for r in rows] == [log[6], log[5]]
        assert {r["phone"] for r in rows} == {mask_phone(JUANA)}
        assert JUANA not in response.get_data(as_text=True)
        assert rows[0]["status_history"] == "queued > sent > delivered"

    def test_formulas_are_not_run_by_spreadsheets(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        rows = read_csv(client.get("/admin/messages.csv?q=HYPERLINK"))
        assert [r["body"] for r in rows] == ['\'=HYPERLINK("http://x")']
        assert exports.cell("+51987000011") == "+51987000011"
        assert exports.cell("-12.5") == "-12.5"
        assert exports.cell("@SUM(A1)") == "'@SUM(A1)"
        assert exports.cell(Decimal("21.68")) == "21.68"
        assert exports.cell(None) == "" and exports.cell(True) == "yes"

    def test_rows_come_in_keyset_batches_as_the_client_reads(
        self, client, as_role, log, database, monkeypatch
    ):
        monkeypatch.setattr(exports, "BATCH", 3)
        as_role(StaffRole.ANALYST)
        statements: list[str] = []

        def spy(_conn, _cursor, statement, _params, _context, _many):
            if "FROM messages" in statement and "message_events" not in statement:
                statements.append(statement)

        engine = database.bind.engine
        event.listen(engine, "before_cursor_execute", spy)
        try:
            response = client.get("/admin/messages.csv", buffered=False)
            chunks = iter(response.response)
            assert next(chunks).startswith(b"\xef\xbb\xbfid,created_at")  # the header first
            assert statements == []  # no row read yet
            body = b"".join(chunks).decode()
            response.close()
        finally:
            event.remove(engine, "before_cursor_execute", spy)
        ids = [int(line.split(",")[0]) for line in body.splitlines() if line[:1].isdigit()]
        assert ids == sorted(log, reverse=True)  # all 8, none twice
        assert len(statements) == 3  # 3 + 3 + 2 rows
        assert all("LIMIT" in s and "ORDER BY messages.id DESC" in s for s in statements)
        assert "messages.id <" not in statements[0] and "messages.id <" in statements[1]

    def test_every_export_is_audited_with_its_filters(self, client, as_role, log, database):
        as_role(StaffRole.AUDITOR)
        client.get("/admin/messages.csv?channel=whatsapp&status=delivered").get_data()
        with database.transaction() as session:
            entry = session.scalars(
                sa.select(AuditEntry).where(AuditEntry.action == "export.messages")
            ).one()
        assert (entry.user_name, entry.target_type, entry.target_id) == (
            "rita",
            "export",
            "messages",
        )
        assert json.loads(entry.detail) == {
            "filters": {"channel": "whatsapp", "status": "delivered"}
        }

    def test_the_list_links_to_its_export_with_its_filters(self, client, as_role, log):
        as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/messages?channel=sms&before={log[7]}").get_data(as_text=True)
        link = re.search(r'href="([^"]+)" class="export-csv"', page).group(1)
        assert html.unescape(link) == "/admin/messages.csv?channel=sms"


@pytest.fixture
def trades(database, clock, demo) -> dict[str, int]:
    now = clock.now()
    rows = {}
    with database.transaction() as session:
        for name, material, seller, department in [
            ("gold", "dore", "45678912", "PUNO"),
            ("mercury", "mercury", "41234567", "MADRE DE DIOS"),
        ]:
            t = Transaction(
                code="123456",
                initiator=Initiator.BUYER,
                buyer_id=demo["20131312955"],
                seller_id=demo[seller],
                seller_ruc="10456789124",
                material=material,
                quantity=Decimal("25.5"),
                unit="g",
                grade=Decimal("850"),
                fine_gold_g=Decimal("21.68") if material == "dore" else None,
                price_pen=Decimal("5400.00"),
                department=department,
                status=TransactionStatus.CONFIRMED,
                created_at=now,
                expires_at=now + dt.timedelta(hours=48),
            )
            session.add(t)
            session.flush()
            rows[name] = t.id
        session.add(
            RedFlag(
                rule="R7",
                reason="mercury",
                transaction_id=rows["mercury"],
                evidence="{}",
                created_at=now,
                updated_at=now,
            )
        )
    return rows


class TestOtherLists:
    def test_transactions(self, client, as_role, trades):
        as_role(StaffRole.AUDITOR)
        rows = read_csv(client.get("/admin/transactions.csv"))
        assert [int(r["id"]) for r in rows] == [trades["mercury"], trades["gold"]]
        gold = rows[1]
        assert gold["buyer_document"] == "RUC 20131312955"
        assert gold["buyer_name"] == "Planta de Beneficio Oro Sur S.A.C."
        assert gold["seller_name"] == "Juana Quispe Mamani"
        assert (gold["fine_gold_g"], gold["price_pen"], gold["red_flags"]) == (
            "21.6800",
            "5400.00",
            "",
        )
        assert rows[0]["red_flags"] == "R7"
        flagged = read_csv(client.get("/admin/transactions.csv?flagged=1&material=mercury"))
        assert [int(r["id"]) for r in flagged] == [trades["mercury"]]
        assert read_csv(client.get("/admin/transactions.csv?department=AREQUIPA")) == []

    @pytest.mark.parametrize(
        ("role", "phone"), [(StaffRole.ANALYST, JUANA), (StaffRole.AUDITOR, mask_phone(JUANA))]
    )
    def test_registrants_with_their_phones(self, client, as_role, demo, role, phone):
        as_role(role)
        rows = read_csv(client.get("/admin/registrants.csv?q=quispe"))
        assert [(r["name"], r["document_type"], r["document_number"]) for r in rows] == [
            ("Juana Quispe Mamani", "DNI", "45678912")
        ]
        assert rows[0]["active_phones"] == phone
        assert len(read_csv(client.get("/admin/registrants.csv"))) == len(demo)

    @pytest.mark.parametrize(
        ("role", "phone"), [(StaffRole.ADMIN, ROSA), (StaffRole.AUDITOR, mask_phone(ROSA))]
    )
    def test_flags(self, client, as_role, database, clock, role, phone):
        with database.transaction() as session:
            keep = add_flag(session, at=clock.now(), rule="R1", phone=ROSA).id
            add_flag(session, at=clock.now(), rule="R7")
            add_flag(session, at=clock.now(), rule="R1", status=FlagStatus.RESOLVED)
        as_role(role)
        rows = read_csv(client.get("/admin/flags.csv?status=open&rule=R1"))
        assert [(int(r["id"]), r["phone"], r["status"]) for r in rows] == [(keep, phone, "open")]
