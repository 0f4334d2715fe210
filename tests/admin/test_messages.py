"""The message log: filters, keyset pages, masking by role, escaping, conversations, plans."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from admin.models import StaffRole
from admin.views import messages as views
from admin.views.common import PAGE_SIZE
from flows.messages import Channel
from gateway.models import Direction, Status
from tests.admin.conftest import add_message

JUANA = "+51987000011"
PEDRO = "+51987000012"
ROW_ID = re.compile(r'href="/admin/messages/(\d+)"')


def shown_ids(response) -> list[int]:
    return [int(i) for i in ROW_ID.findall(response.get_data(as_text=True))]


@pytest.fixture
def log(database, clock) -> dict[str, object]:
    """A small log: Juana's SMS thread, Pedro on WhatsApp, a failed outbound, a USSD session."""
    start = clock.now() - dt.timedelta(days=3)
    with database.transaction() as session:
        rows = {
            "juana_in": add_message(session, phone=JUANA, body="COMPRA", at=start),
            "juana_out": add_message(
                session,
                phone=JUANA,
                body="¿DNI o RUC del vendedor?",
                direction=Direction.OUT,
                status=Status.DELIVERED,
                at=start + dt.timedelta(seconds=5),
                provider_id="SM0001",
                events=(Status.QUEUED, Status.SENT, Status.DELIVERED),
            ),
            "pedro_in": add_message(
                session,
                phone=PEDRO,
                body="VENTA 20131312955",
                channel=Channel.WHATSAPP,
                at=start + dt.timedelta(days=1),
            ),
            "failed": add_message(
                session,
                phone=PEDRO,
                body="Codigo 123456",
                direction=Direction.OUT,
                status=Status.FAILED,
                at=start + dt.timedelta(days=2),
                events=(Status.QUEUED, Status.FAILED),
            ),
            "ussd": add_message(
                session,
                phone=JUANA,
                body="",
                channel=Channel.USSD,
                at=start + dt.timedelta(days=2, hours=1),
                simulated=True,
            ),
        }
        return {name: row.id for name, row in rows.items()}


class TestFilters:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", ["ussd", "failed", "pedro_in", "juana_out", "juana_in"]),
            ("?channel=whatsapp", ["pedro_in"]),
            ("?direction=out", ["failed", "juana_out"]),
            ("?status=failed", ["failed"]),
            ("?phone=987000012", ["failed", "pedro_in"]),
            ("?phone=%2B51+987+000+011&channel=sms", ["juana_out", "juana_in"]),
            ("?q=venta", ["pedro_in"]),
            ("?q=DNI+o+RUC", ["juana_out"]),
            ("?q=100%25", []),  # a literal %, not a wildcard
            ("?date_from=2026-11-29&date_to=2026-11-29", ["ussd", "failed"]),
            ("?date_to=2026-11-27", ["juana_out", "juana_in"]),
            ("?channel=fax", ["ussd", "failed", "pedro_in", "juana_out", "juana_in"]),
        ],
    )
    def test_filter(self, client, as_role, log, query, expected):
        as_role(StaffRole.ANALYST)
        response = client.get("/admin/messages" + query)
        assert response.status_code == 200
        ids = [i for i in shown_ids(response) if i in log.values()]
        assert ids == [log[name] for name in expected]

    def test_a_phone_that_cannot_be_read_is_said_so(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/messages?phone=12ab").get_data(as_text=True)
        assert "Filtro de teléfono ignorado" in page

    def test_status_history_and_simulated_mark(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/messages").get_data(as_text=True)
        assert "en cola → enviado → entregado" in page
        assert "simulado" in page
        assert "SM0001" in page


class TestPaging:
    @pytest.fixture
    def many(self, database, clock) -> list[int]:
        with database.transaction() as session:
            return [
                add_message(
                    session, body=f"mensaje {n}", at=clock.now() + dt.timedelta(seconds=n)
                ).id
                for n in range(PAGE_SIZE * 2 + 20)
            ]

    def test_keyset_pages_walk_the_whole_log_both_ways(self, client, as_role, many):
        as_role(StaffRole.AUDITOR)
        newest_first = list(reversed(many))
        first = client.get("/admin/messages?phone=%2B51987000011")
        assert shown_ids(first) == newest_first[:PAGE_SIZE]
        older = re.search(r'href="([^"]+)" rel="next"', first.get_data(as_text=True)).group(1)
        second = client.get(older.replace("&amp;", "&"))
        assert shown_ids(second) == newest_first[PAGE_SIZE : 2 * PAGE_SIZE]
        third_url = re.search(r'href="([^"]+)" rel="next"', second.get_data(as_text=True)).group(1)
        third = client.get(third_url.replace("&amp;", "&"))
        assert shown_ids(third) == newest_first[2 * PAGE_SIZE :]
        assert 'rel="next"' not in third.get_data(as_text=True)
        newer = re.search(r'href="([^"]+)" rel="prev"', third.get_data(as_text=True)).group(1)
        back = client.get(newer.replace("&amp;", "&"))
        assert shown_ids(back) == newest_first[PAGE_SIZE : 2 * PAGE_SIZE]

    def test_no_query_counts_the_table(self, app, client, as_role, many, engine):
        as_role(StaffRole.ANALYST)
        statements: list[str] = []

        def capture(_conn, _cursor, statement, *_args):
            statements.append(statement)

        sa.event.listen(engine, "before_cursor_execute", capture)
        try:
            client.get("/admin/messages?status=received&channel=sms")
        finally:
            sa.event.remove(engine, "before_cursor_execute", capture)
        listed = [s for s in statements if "FROM messages" in s]
        assert listed
        assert not any("count(" in s.lower() for s in listed)
        assert all("OFFSET" not in s for s in statements)


class TestPrivacy:
    def test_auditors_see_phones_masked(self, client, as_role, log):
        as_role(StaffRole.AUDITOR)
        page = client.get("/admin/messages").get_data(as_text=True)
        assert JUANA not in page
        assert "+51******011" in page
        # Their links to a conversation name a message, not the number.
        assert f"/admin/conversation?message={log['juana_in']}" in page

    def test_analysts_see_whole_phones(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/messages").get_data(as_text=True)
        assert JUANA in page

    def test_html_in_a_body_is_shown_as_text(self, client, as_role, database, clock):
        with database.transaction() as session:
            evil = add_message(
                session, body='<script>alert("x")</script><b>hola</b>', at=clock.now()
            )
        as_role(StaffRole.ANALYST)
        for url in (
            "/admin/messages",
            f"/admin/messages/{evil.id}",
            f"/admin/conversation?message={evil.id}",
        ):
            page = client.get(url).get_data(as_text=True)
            assert '<script>alert("x")</script>' not in page, url
            assert (
                "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;hola&lt;/b&gt;" in page
            ), url

    def test_pages_are_not_cached_and_not_framed(self, client, as_role):
        as_role(StaffRole.ANALYST)
        response = client.get("/admin/messages")
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


class TestDetailAndConversation:
    def test_detail_shows_history_and_sending(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        page = client.get(f"/admin/messages/{log['failed']}").get_data(as_text=True)
        assert "Historial de estados" in page
        assert page.count('class="badge b-failed"') >= 2  # the status and its event
        assert client.get("/admin/messages/999999999").status_code == 404

    def test_conversation_reads_like_the_phone(self, client, as_role, log):
        as_role(StaffRole.ANALYST)
        page = client.get(f"/admin/conversation?phone={JUANA}").get_data(as_text=True)
        bubbles = re.findall(r'<div class="bubble (mine|theirs)', page)
        assert bubbles == ["mine", "theirs", "mine"]  # oldest first, the phone's own on the right
        assert page.index("COMPRA") < page.index("DNI o RUC del vendedor")
        assert "Codigo 123456" not in page  # Pedro's

    def test_conversation_by_message_for_auditors(self, client, as_role, log):
        as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/conversation?message={log['pedro_in']}").get_data(as_text=True)
        assert "VENTA 20131312955" in page
        assert PEDRO not in page
        assert client.get("/admin/conversation").status_code == 404


class TestQueryPlans:
    """Each list filter is served by an index in id order: no sort, no scan of the table."""

    @pytest.mark.parametrize(
        ("filters", "index"),
        [
            ({}, "pk_messages"),
            ({"channel": Channel.USSD}, "ix_messages_channel_id"),
            ({"direction": Direction.OUT}, "ix_messages_direction_id"),
            ({"status": Status.FAILED}, "ix_messages_status_id"),
            ({"phone": JUANA}, "ix_messages_phone_id"),
        ],
    )
    def test_plan(self, db_session, filters, index):
        statement = (
            views.list_statement(filters)
            .where(sa.column("id") < 10**12)
            .order_by(sa.text("id DESC"))
            .limit(PAGE_SIZE + 1)
        )
        sql = statement.compile(db_session.get_bind(), compile_kwargs={"literal_binds": True})
        # A test table is tiny: forbid what the planner would only choose because of that. If no
        # index served the filter in id order, the plan would still have to sort or scan.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            db_session.execute(sa.text(f"SET LOCAL {setting} = off"))
        plan = "\n".join(db_session.scalars(sa.text(f"EXPLAIN {sql}")))
        assert index in plan, plan
        assert "Sort" not in plan, plan
        assert "Seq Scan" not in plan, plan

    def test_text_search_uses_the_trigram_index(self, db_session):
        sql = (
            views.list_statement({"q": "vendedor"})
            .order_by(sa.text("id DESC"))
            .limit(PAGE_SIZE + 1)
            .compile(db_session.get_bind(), compile_kwargs={"literal_binds": True})
        )
        db_session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        db_session.execute(sa.text("SET LOCAL enable_indexscan = off"))  # the pk walk
        plan = "\n".join(db_session.scalars(sa.text(f"EXPLAIN {sql}")))
        assert "ix_messages_body_trgm" in plan, plan
