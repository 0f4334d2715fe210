"""The console in a real browser: the system Chromium driven by Playwright against the real app.

The app runs on 127.0.0.1 in a background thread (werkzeug), on a database of its own where work
really commits, with the demo registrants and an admin account. Each test signs in afresh and
saves a screenshot of every page it visits under `test-artifacts/admin/`.

Chromium is the distribution's (`/usr/bin/chromium`; `make test` installs it when missing);
Playwright never downloads a browser. Without it these tests fail, saying how to install it; like
every test that needs a service, they never skip.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from admin.models import StaffRole
from admin.users import create_user
from flows.messages import Channel, Inbound
from gateway.service import current_gateway
from recpo.app import create_app
from recpo.db import Database
from registry.demo import seed_demo
from registry.models import FlagStatus, PhoneLink, PhoneLinkState, RedFlag, Transaction
from tests.conftest import new_postgres_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"
ADMIN_PASSWORD = "console admin password"
BUYER = "+51987000001"
JUANA = "+51987000011"
ROSA = "+51987000013"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"{CHROMIUM} is missing: install the distribution's package (apt-get install chromium)"
    )
    pytest.fail(message)


@pytest.fixture(scope="module")
def live_database() -> Iterator[Database]:
    with new_postgres_database() as url:
        database = Database.from_url(url)
        now = dt.datetime.now(dt.UTC)
        with database.transaction() as session:
            seed_demo(session, now)
            create_user(session, "admin", StaffRole.ADMIN, ADMIN_PASSWORD, now)
        try:
            yield database
        finally:
            database.dispose()


@pytest.fixture(scope="module")
def live_app(live_database, tmp_path_factory) -> Flask:
    return create_app(
        {
            "DATABASE": live_database,
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
            "REDIS_URL": "",  # the embedded default: in-process sending, database throttle
        }
    )


@pytest.fixture(scope="module")
def base_url(live_app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, base_url) -> Iterator[object]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page) -> None:
    page.goto("/admin/")
    assert "/admin/login" in page.url
    page.fill("input[name=name]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


def phone_says(app: Flask, phone: str, text: str, channel: Channel = Channel.SMS) -> None:
    """A phone sends a message through the real gateway (as a provider's webhook would)."""
    with app.app_context():
        gateway = current_gateway()
        gateway.receive(
            Inbound(
                channel=channel,
                phone=phone,
                text=text,
                provider_id=f"test-{uuid.uuid4().hex}",
                received_at=gateway.clock.now(),
            )
        )


class TestConsoleInTheBrowser:
    def test_sign_in(self, page):
        page.goto("/admin/messages")
        assert "/admin/login?next=/admin/messages" in page.url
        shot(page, "01-login")
        page.fill("input[name=name]", "admin")
        page.fill("input[name=password]", "not the password")
        page.click("form.stack button[type=submit]")
        assert page.locator(".flash.error").inner_text() == "Usuario o contraseña incorrectos."
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(re.compile(r"/admin/messages$"))
        page.goto("/admin/")
        assert page.locator("h1").inner_text() == "Inicio"
        shot(page, "02-home")

    def test_find_a_conversation(self, page, live_app):
        phone_says(live_app, ROSA, "AYUDA")
        phone_says(live_app, ROSA, "<b>hola</b>")
        sign_in(page)
        page.click("nav.main >> text=Mensajes")
        page.fill("input[name=phone]", "987 000 013")
        page.click("form.filters button[type=submit]")
        rows = page.locator("table.list tbody tr")
        assert rows.count() >= 3
        assert page.locator("td.body", has_text="<b>hola</b>").count() == 1  # shown as text
        shot(page, "03-messages")
        page.locator("table.list tbody tr").first.locator("td").nth(4).locator("a").click()
        page.wait_for_url(re.compile(r"/admin/conversation"))
        bubbles = page.locator(".bubble")
        assert "AYUDA" in bubbles.first.inner_text()
        assert "mine" in (bubbles.first.get_attribute("class") or "")
        assert "theirs" in (bubbles.nth(1).get_attribute("class") or "")
        shot(page, "04-conversation")

    def test_approve_a_phone_link(self, page, live_app, live_database):
        new_phone = "+51987000077"
        phone_says(live_app, new_phone, "ALTA 41234567")  # Pedro asks from a new phone
        sign_in(page)
        page.click("nav.main >> text=Vínculos de teléfono")
        row = page.locator("table.list tbody tr", has_text=new_phone)
        assert "Pedro Huamán Condori" in row.inner_text()
        shot(page, "05-phone-links")
        row.locator("button", has_text="Aprobar").click()
        assert "Vínculo de teléfono aprobado." in page.locator(".flash.success").inner_text()
        shot(page, "06-phone-link-approved")
        with live_database.transaction() as session:
            link = session.scalars(sa.select(PhoneLink).where(PhoneLink.phone == new_phone)).one()
        assert (link.state, link.decided_by) == (PhoneLinkState.ACTIVE, "admin")

    def test_resolve_a_red_flag(self, page, live_app, live_database):
        # Rosa is SUSPENDED in REINFO: the purchase is refused and flagged.
        phone_says(live_app, BUYER, "COMPRA 40000001 DORE 10G 850 2000")
        sign_in(page)
        page.goto("/admin/flags?status=open")
        shot(page, "07-flags")
        page.locator("table.list tbody tr", has_text="R1").first.locator("a").first.click()
        assert '"standing": "suspended"' in page.locator("pre.json").inner_text()
        page.click("button:has-text('Tomar para revisión')")
        assert "Está revisando esta alerta." in page.locator(".flash.success").inner_text()
        note = "Vendedor suspendido en REINFO; comprador avisado."
        page.fill("textarea[name=note][required]", note)
        page.click("button:has-text('Resolver')")
        assert "Alerta resuelta." in page.locator(".flash.success").inner_text()
        shot(page, "08-flag-resolved")
        flag_id = int(page.url.rsplit("/", 1)[1])
        with live_database.transaction() as session:
            flag = session.get(RedFlag, flag_id)
        assert flag.status is FlagStatus.RESOLVED
        assert flag.note == note

    def test_simulator_end_to_end(self, page, live_database):
        sign_in(page)
        page.click("nav.main >> text=Simulador")
        page.fill("input[name=phone]", BUYER)
        page.select_option("select[name=channel]", "sms")
        page.click("form.filters button[type=submit]")
        page.fill("form.compose input[name=text]", "COMPRA 45678912 DORE 25.5G 850 5400")
        page.click("form.compose button[value=send]")
        assert "oro fino 21.68 g" in page.locator(".bubble.theirs").last.inner_text()
        page.fill("form.compose input[name=text]", "SI")
        page.click("form.compose button[value=send]")
        assert "Codigo" in page.locator(".bubble.theirs").last.inner_text()
        shot(page, "09-simulator-buyer")
        # The seller confirms from her own phone.
        page.goto(f"/admin/simulator?phone={JUANA.replace('+', '%2B')}&channel=sms")
        page.fill("form.compose input[name=text]", "SI")
        page.click("form.compose button[value=send]")
        shot(page, "10-simulator-seller")
        with live_database.transaction() as session:
            transaction = session.scalars(
                sa.select(Transaction).where(Transaction.material == "dore")
            ).one()
        page.goto(f"/admin/transactions/{transaction.id}")
        assert page.locator("strong.check").inner_text() == "verificada"
        shot(page, "11-transaction")
        page.goto("/admin/transactions")
        shot(page, "12-transactions")
        # USSD: dial, read the menu, pick help, the session ends.
        page.goto(f"/admin/simulator?phone={ROSA.replace('+', '%2B')}&channel=ussd")
        page.click("button[value=dial]")
        assert "CON" in page.locator(".ussd-screen .badge").inner_text()
        shot(page, "13-simulator-ussd")
        page.fill("form.compose input[name=text]", "6")
        page.click("form.compose button[value=send]")
        assert "END" in page.locator(".ussd-screen .badge").inner_text()

    def test_english_and_registrant(self, page):
        sign_in(page)
        page.goto("/admin/registrants?q=45678912&lang=en")
        page.click("table.list >> text=Juana Quispe Mamani")
        assert page.locator("h2", has_text="REINFO registrations").count() == 1
        shot(page, "14-registrant-en")
