"""The dashboard: its figures against seeded transactions, flags and messages; the SVG charts."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from admin.charts import Bar, axis, column_chart, nice_step, row_chart
from admin.models import StaffRole
from admin.views.dashboard import (
    delivery_health,
    open_flags_by_rule,
    top_buyers,
    trade_by_week,
    week_starts,
)
from flows.messages import Channel
from gateway.models import Direction, Status
from recpo.app import create_app
from registry.demo import seed_demo
from registry.models import FlagStatus, Initiator, Registrant, Transaction, TransactionStatus
from tests.admin.conftest import add_flag, add_message, add_user, sign_in

# The tests' clock: Monday 2026-11-30, 10:00 in Lima (15:00 UTC). This week began at 05:00 UTC.
WEEK_START = dt.datetime(2026, 11, 30, 5, 0, tzinfo=dt.UTC)
PLANT = "20131312955"  # Planta de Beneficio Oro Sur
ACOPIO = "20100079501"  # Acopio Huepetuhe


def trade(
    session,
    demo,
    at: dt.datetime,
    grams: str | None,
    *,
    buyer: str = PLANT,
    material: str = "dore",
    department: str | None = "PUNO",
    status: TransactionStatus = TransactionStatus.CONFIRMED,
) -> Transaction:
    row = Transaction(
        code="123456",
        initiator=Initiator.BUYER,
        buyer_id=demo[buyer],
        seller_id=demo["45678912"],
        seller_ruc="10456789124",
        material=material,
        quantity=Decimal("10"),
        unit="g",
        grade=Decimal("850"),
        fine_gold_g=None if grams is None else Decimal(grams),
        price_pen=Decimal("2000.00"),
        department=department,
        status=status,
        created_at=at,
        expires_at=at + dt.timedelta(hours=48),
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def seeded(database, demo):
    """Trade over three weeks and some outside the range, flags, and messages of 10 days."""
    second = dt.timedelta(seconds=1)
    with database.transaction() as session:
        # This week (from Monday 00:00 in Lima, 05:00 UTC).
        trade(session, demo, WEEK_START, "10.50")
        trade(session, demo, WEEK_START + dt.timedelta(hours=3), "4.25", material="native")
        trade(session, demo, WEEK_START + dt.timedelta(hours=4), None, material="mercury")
        trade(session, demo, WEEK_START + dt.timedelta(hours=5), "100", department="MADRE DE DIOS")
        # Last week: one second before this week began, and on Tuesday.
        trade(session, demo, WEEK_START - second, "1.25", buyer=ACOPIO, department="AREQUIPA")
        trade(session, demo, WEEK_START - dt.timedelta(days=6), "3", department=None)
        # Three weeks ago.
        trade(session, demo, WEEK_START - dt.timedelta(days=20), "7", buyer=ACOPIO)
        # Not counted: not confirmed, or older than the 12 weeks, or older than 90 days.
        trade(session, demo, WEEK_START, "999", status=TransactionStatus.DISPUTED)
        trade(session, demo, WEEK_START, "999", status=TransactionStatus.PROPOSED)
        trade(session, demo, WEEK_START - dt.timedelta(weeks=11) - second, "500", buyer=ACOPIO)
        trade(session, demo, WEEK_START - dt.timedelta(days=95), "800", buyer=ACOPIO)

        now = WEEK_START + dt.timedelta(hours=10)
        for rule, status in [
            ("R1", FlagStatus.OPEN),
            ("R1", FlagStatus.OPEN),
            ("R7", FlagStatus.OPEN),
            ("R1", FlagStatus.RESOLVED),
            ("R4", FlagStatus.IN_REVIEW),
        ]:
            add_flag(session, at=now, rule=rule, status=status)

        def out(channel: Channel, status: Status, days_ago: float) -> None:
            add_message(
                session,
                channel=channel,
                direction=Direction.OUT,
                status=status,
                body="Codigo 123",
                at=now - dt.timedelta(days=days_ago),
            )

        out(Channel.SMS, Status.FAILED, 10)  # too old: before the 7 days
        out(Channel.WHATSAPP, Status.FAILED, 9)
        for _ in range(6):
            out(Channel.SMS, Status.DELIVERED, 2)
        out(Channel.SMS, Status.FAILED, 1)
        out(Channel.SMS, Status.UNDELIVERED, 1)
        out(Channel.WHATSAPP, Status.READ, 1)
        out(Channel.WHATSAPP, Status.UNDELIVERED, 0.5)
        add_message(session, channel=Channel.SMS, direction=Direction.IN, at=now)


class TestFigures:
    def test_weeks_start_on_monday_in_lima(self):
        assert week_starts(dt.date(2026, 11, 30), 3) == [
            dt.date(2026, 11, 16),
            dt.date(2026, 11, 23),
            dt.date(2026, 11, 30),
        ]
        assert week_starts(dt.date(2026, 12, 6), 1) == [dt.date(2026, 11, 30)]  # a Sunday

    def test_trade_by_week_material_and_department(self, db_session, seeded):
        trade_ = trade_by_week(db_session, week_starts(dt.date(2026, 11, 30), 12))
        weeks = {day: (t.transactions, t.fine_gold) for day, t in trade_.weeks}
        assert len(weeks) == 12
        assert weeks[dt.date(2026, 11, 30)] == (4, Decimal("114.75"))
        assert weeks[dt.date(2026, 11, 23)] == (2, Decimal("4.25"))
        assert weeks[dt.date(2026, 11, 9)] == (1, Decimal("7"))
        assert weeks[dt.date(2026, 9, 14)] == (0, Decimal(0))  # the first of the 12
        assert (trade_.total.transactions, trade_.total.fine_gold) == (7, Decimal("126"))
        assert [(m, t.transactions, t.fine_gold) for m, t in trade_.materials] == [
            ("dore", 5, Decimal("121.75")),
            ("native", 1, Decimal("4.25")),
            ("mercury", 1, Decimal(0)),
        ]
        assert [(d, t.transactions, t.fine_gold) for d, t in trade_.departments] == [
            ("MADRE DE DIOS", 1, Decimal("100")),
            ("PUNO", 4, Decimal("21.75")),
            ("—", 1, Decimal("3")),
            ("AREQUIPA", 1, Decimal("1.25")),
        ]

    def test_top_buyers_over_90_days(self, db_session, seeded, demo):
        buyers = top_buyers(db_session, WEEK_START + dt.timedelta(hours=10) - dt.timedelta(days=90))
        # The 500 g of 11 weeks ago count here (within 90 days); the 800 g of 95 days do not.
        assert [(b.registrant.document_number, b.transactions, b.fine_gold) for b in buyers] == [
            (ACOPIO, 3, Decimal("508.25")),
            (PLANT, 5, Decimal("117.75")),
        ]

    def test_open_flags_by_rule(self, db_session, seeded):
        assert open_flags_by_rule(db_session) == [("R1", 2), ("R7", 1)]

    def test_delivery_health_of_the_last_7_days(self, db_session, seeded, clock):
        health = {
            d.channel: d for d in delivery_health(db_session, clock.now() - dt.timedelta(days=7))
        }
        sms, whatsapp, ussd = health[Channel.SMS], health[Channel.WHATSAPP], health[Channel.USSD]
        assert (sms.outbound, sms.failed, sms.undelivered) == (8, 1, 1)
        assert sms.rate == pytest.approx(0.25)
        assert (whatsapp.outbound, whatsapp.failed, whatsapp.undelivered) == (2, 0, 1)
        assert (ussd.outbound, ussd.not_delivered, ussd.rate) == (0, 0, None)

    def test_nothing_to_show(self, db_session, clock):
        trade_ = trade_by_week(db_session, week_starts(dt.date(2026, 11, 30), 4))
        assert trade_.total.transactions == 0 and trade_.materials == []
        assert all(d.outbound == 0 for d in delivery_health(db_session, clock.now()))


def _row(page: str, section: str, key: str) -> list[str]:
    """The cells of the row `data-key=key` in the dashboard's section `section`."""
    part = page.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    row = re.search(rf'data-key="{re.escape(key)}"[^>]*>(.*?)</tr>', part, re.S).group(1)
    return [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


class TestPage:
    def test_every_role_sees_the_figures(self, client, as_role, seeded):
        as_role(StaffRole.AUDITOR)
        response = client.get("/admin/")
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert "<h1>Panel</h1>" in page
        assert _row(page, "by-material", "dore") == ["oro doré", "5", "121.75"]
        assert _row(page, "by-department", "MADRE DE DIOS") == ["MADRE DE DIOS", "1", "100.00"]
        assert _row(page, "open-flags", "R1") == ["R1", "2"]
        assert _row(page, "delivery", "sms")[:4] == ["SMS", "8", "1", "1"]
        assert _row(page, "delivery", "sms")[4] == "25.0 %"
        assert "Acopio Huepetuhe E.I.R.L." in page.split('id="top-buyers"')[1]
        # Four charts, drawn as SVG without inline styles (the CSP forbids them).
        assert page.count('<svg class="chart') == 4
        assert "style=" not in page
        by_week = page.split('id="by-week"')[1].split("</table>")[0]
        assert '<td>2026-11-30</td><td class="num">4</td><td class="num">114.75</td>' in by_week

    def test_weeks_can_be_chosen(self, client, as_role, seeded):
        as_role(StaffRole.ANALYST)

        def weeks_shown(query: str) -> int:
            page = client.get("/admin/" + query).get_data(as_text=True)
            return page.split('id="by-week"')[1].split("</table>")[0].count("<tr>") - 1

        assert weeks_shown("?weeks=4") == 4
        assert weeks_shown("?weeks=52") == 52
        assert weeks_shown("?weeks=1000") == 12  # not offered: the default

    def test_english(self, client, as_role, seeded):
        as_role(StaffRole.ADMIN)
        page = client.get("/admin/?lang=en").get_data(as_text=True)
        assert "<h1>Dashboard</h1>" in page and "Top buyers, last 90 days" in page


class TestCharts:
    def test_round_axis_ticks(self):
        assert [nice_step(v) for v in (0, 0.3, 1, 7, 11, 24, 26, 999)] == [
            1,
            0.5,
            1,
            10,
            20,
            50,
            50,
            1000,
        ]
        assert axis(41) == [0, 20, 40, 60]
        assert axis(3840) == [0, 1000, 2000, 3000, 4000]
        assert axis(0) == [0, 1]
        assert axis(4) == [0, 1, 2, 3, 4]

    def test_labels_are_escaped_and_bars_scaled(self):
        svg = str(
            row_chart([Bar("<script>x</script>", 50), Bar("B", 100)], "a & b", lambda v: f"{v:g}")
        )
        assert "<script>" not in svg and "&lt;script&gt;" in svg
        assert 'aria-label="a &amp; b"' in svg
        widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', svg)]
        assert widths[1] == pytest.approx(2 * widths[0])

    def test_column_chart_has_a_bar_and_a_title_per_value(self):
        svg = str(column_chart([Bar("01/12", 3, "three"), Bar("08/12", 0)], "t", str))
        assert svg.count("<rect") == 2 and "<title>three</title>" in svg


class TestOnTheEmbeddedDatabase:
    def test_dashboard_and_export_on_sqlite(self, sqlite_database, tmp_path, clock):
        app = create_app(
            {
                "DATABASE": sqlite_database,
                "INSTANCE_PATH": str(tmp_path),
                "REDIS_URL": "",
                "CLOCK": clock,
            }
        )
        with sqlite_database.transaction() as session:
            seed_demo(session, clock.now())
            demo = dict(session.execute(sa.select(Registrant.document_number, Registrant.id)).all())
            trade(session, demo, WEEK_START, "10.50")
            trade(session, demo, WEEK_START - dt.timedelta(seconds=1), "2", department="AREQUIPA")
        user = add_user(sqlite_database, "ana", StaffRole.ADMIN, clock.now())
        client = app.test_client()
        sign_in(client, sqlite_database, user, clock.now())
        page = client.get("/admin/").get_data(as_text=True)
        by_week = page.split('id="by-week"')[1].split("</table>")[0]
        assert '<td>2026-11-30</td><td class="num">1</td><td class="num">10.50</td>' in by_week
        assert '<td>2026-11-23</td><td class="num">1</td><td class="num">2.00</td>' in by_week
        assert _row(page, "by-department", "AREQUIPA") == ["AREQUIPA", "1", "2.00"]
        export = client.get("/admin/transactions.csv?department=AREQUIPA")
        assert export.get_data(as_text=True).count("\r\n") == 2  # the header and one row
