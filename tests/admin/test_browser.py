"""The console in a real browser: the system Chromium driven by Playwright against the real app.

The app runs on 127.0.0.1 in a background thread (werkzeug), on a database of its own where work
really commits, with the demo registrants and an admin account. Each test signs in afresh and
saves a screenshot of every page it visits under `test-artifacts/admin/`.

Chromium is the distribution's (`/usr/bin/chromium`; `make test` installs it when missing);
Playwright never downloads a browser. Without it these tests fail, saying how to install it; like
every test that needs a service, they never skip.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from admin.models import StaffRole
from admin.users import create_user
from flows.messages import Channel, Inbound
from gateway.ledger_api import EXTENSION_KEY as LOG_KEY
from gateway.ledger_api import WITNESSES_KEY
from gateway.models import Direction, Encoding, Message, Status
from gateway.service import current_gateway
from ledger.note import Signer, generate_signer_key
from ledger.witnesses import LedgerCosignature, WitnessRefusal, WitnessStatus, submit
from recpo.app import create_app
from recpo.db import Database
from registry.demo import seed_demo
from registry.identifiers import natural_person_ruc
from registry.models import (
    FlagStatus,
    Initiator,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    RegistrantStatus,
    ReinfoRegistration,
    Transaction,
    TransactionStatus,
)
from tests.admin.test_ledger_health import running_witness, serving
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


def seed_trade(database: Database, weeks: int = 12) -> int:
    """Confirmed transactions over the last `weeks` weeks (varied materials, regions and
    buyers) and some outbound messages that failed, for the dashboard; return how many."""
    rng = random.Random(2026)
    now = dt.datetime.now(dt.UTC)
    materials = [("dore", 850), ("native", 900), ("refined", 999), ("sponge", 700)]
    departments = ["PUNO", "MADRE DE DIOS", "AREQUIPA", "LA LIBERTAD", "AYACUCHO"]
    count = 0
    with database.transaction() as session:
        ids = dict(session.execute(sa.select(Registrant.document_number, Registrant.id)).all())
        buyers = [ids["20131312955"], ids["20100079501"]]
        sellers = [ids["45678912"], ids["41234567"]]
        for day in range(weeks * 7):
            for _ in range(rng.randint(0, 4) + (3 if day < 21 else 0)):
                material, grade = rng.choice(materials)
                grams = Decimal(rng.randint(500, 20000)) / 100
                at = now - dt.timedelta(days=day, minutes=rng.randint(0, 600))
                session.add(
                    Transaction(
                        code="000000",
                        initiator=Initiator.BUYER,
                        buyer_id=rng.choice(buyers),
                        seller_id=rng.choice(sellers),
                        seller_ruc="10456789124",
                        material=material,
                        quantity=grams,
                        unit="g",
                        grade=Decimal(grade),
                        fine_gold_g=(grams * grade / 1000).quantize(Decimal("0.01")),
                        price_pen=(grams * 280).quantize(Decimal("0.01")),
                        department=rng.choices(departments, weights=[5, 4, 3, 1, 1])[0],
                        status=TransactionStatus.CONFIRMED,
                        created_at=at,
                        expires_at=at + dt.timedelta(hours=48),
                        decided_at=at + dt.timedelta(minutes=5),
                    )
                )
                count += 1
        for rule, reason in [
            ("R1", "refused: RUC 10400000013 is SUSPENDED"),
            ("R1", "refused: RUC 10412345679 is not in REINFO"),
            ("R7", "mercury traded"),
        ]:
            session.add(
                RedFlag(rule=rule, reason=reason, evidence="{}", created_at=now, updated_at=now)
            )
        for i, (channel, status) in enumerate(
            [(Channel.SMS, Status.FAILED)] * 3
            + [(Channel.WHATSAPP, Status.UNDELIVERED)]
            + [(Channel.SMS, Status.DELIVERED)] * 20
        ):
            at = now - dt.timedelta(hours=30 - i)  # oldest first, as they would arrive
            session.add(
                Message(
                    channel=channel,
                    direction=Direction.OUT,
                    phone=JUANA,
                    body="Su compra fue registrada.",
                    status=status,
                    encoding=Encoding.GSM7,
                    segments=1,
                    created_at=at,
                    updated_at=at,
                )
            )
    return count


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
        assert page.locator("h1").inner_text() == "Panel"
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
        assert "1 010149108 Rinconada Uno" in page.locator(".bubble.theirs").last.inner_text()
        page.fill("form.compose input[name=text]", "1")  # her only mining right
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

    def test_dashboard(self, page, live_database):
        seed_trade(live_database)
        sign_in(page)
        assert page.locator("h1").inner_text() == "Panel"
        assert page.locator("svg.chart").count() == 4
        assert page.locator("#trade svg.chart rect.bar").count() == 2 * 12
        assert page.locator("#by-material tbody tr").count() == 4
        assert "MADRE DE DIOS" in page.locator("#by-department").inner_text()
        assert page.locator("#delivery tr.bad").count() == 2  # SMS and WhatsApp
        shot(page, "15-dashboard")

    def test_export_a_csv(self, page, live_app):
        phone_says(live_app, ROSA, "AYUDA")
        sign_in(page)
        page.click("nav.main >> text=Mensajes")
        page.select_option("select[name=channel]", "sms")
        page.select_option("select[name=direction]", "in")
        page.click("form.filters button[type=submit]")
        shot(page, "16-messages-filtered")
        with page.expect_download() as info:
            page.click("a.export-csv")
        download = info.value
        assert re.fullmatch(r"messages-\d{8}-\d{4}\.csv", download.suggested_filename)
        text = Path(download.path()).read_text(encoding="utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and {(r["channel"], r["direction"]) for r in rows} == {("sms", "in")}
        assert ROSA in {r["phone"] for r in rows}

    def test_ledger_health_verify_button(self, page, live_app):
        phone_says(live_app, BUYER, "VERIFICAR 1234567890123452")  # anything: the log is read
        sign_in(page)
        page.click("nav.main >> text=Registro verificable")
        assert page.locator("#verifier-key-text").inner_text().startswith("recpo")
        shot(page, "17-ledger")
        page.click("#verify-button")
        # The page reloads itself (every 3 s) while the run is going.
        page.wait_for_selector("#verdict.ok", timeout=60_000)
        assert "El registro es válido." in page.locator("#verdict").inner_text()
        assert page.locator("#runs tbody tr").count() >= 1
        shot(page, "18-ledger-verified")

    def test_upload_a_reinfo_file(self, page, tmp_path, live_database):
        good = natural_person_ruc("47000001")
        path = tmp_path / "reinfo-madre-de-dios.csv"
        path.write_text(
            "RUC;Nombre;Código Único;Derecho Minero;Departamento;Provincia;Distrito;Estado\r\n"
            f"{good};CONDORI MARIA;070000001;NUEVA ESPERANZA;MADRE DE DIOS;TAMBOPATA;"
            "INAMBARI;VIGENTE\r\n"
            "1234;SIN RUC;070000002;OTRO;MADRE DE DIOS;TAMBOPATA;INAMBARI;VIGENTE\r\n",
            encoding="utf-8",
        )
        sign_in(page)
        page.click("nav.main >> text=Cargas")
        page.set_input_files("#upload-reinfo input[type=file]", str(path))
        page.click("#upload-reinfo button[type=submit]")
        result = page.locator("#upload-result")
        assert result.locator("dd[data-field=inserted]").inner_text() == "1"
        assert result.locator("dd[data-field=rejected]").inner_text() == "1"
        shot(page, "19-upload-reinfo")
        with page.expect_download() as info:
            result.locator("a.report").click()
        report = Path(info.value.path()).read_text(encoding="utf-8")
        assert report.startswith("line,reason,row") and "1234;SIN RUC" in report
        with live_database.transaction() as session:
            stored = session.scalars(
                sa.select(ReinfoRegistration).where(ReinfoRegistration.ruc == good)
            ).one()
        assert (stored.codigo_unico, stored.department) == ("070000001", "MADRE DE DIOS")

    def test_create_an_api_token_and_use_it(self, page, base_url, live_database):
        sign_in(page)
        page.click("nav.main >> text=Tokens de API")
        page.fill("#create-token input[name=institution]", "SUNAT")
        page.check("#create-token input[value='transactions:read']")
        page.click("#create-token button[type=submit]")
        assert "Token creado para SUNAT." in page.locator(".flash.success").inner_text()
        secret = page.locator("#new-token-secret").inner_text().strip()
        assert secret.startswith("recpo_")
        shot(page, "20-api-token-created")

        def api(path: str) -> tuple[int, dict]:
            request = urllib.request.Request(
                f"{base_url}{path}", headers={"Authorization": f"Bearer {secret}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status, json.load(answer)
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)

        status, body = api("/api/v1/transactions?department=PUNO&limit=5")
        assert status == 200, body
        assert set(body) == {"data", "next_cursor"}
        status, body = api("/api/v1/flags")
        assert (status, body["required_scope"]) == (403, "flags:read")
        # The secret was shown once: the list shows only its prefix.
        page.goto("/admin/api-tokens")
        assert secret not in page.content()
        row = page.locator("#tokens tbody tr", has_text="SUNAT").first
        assert secret[:12] in row.inner_text()
        row.locator("button:has-text('Revocar')").click()
        assert "revocado" in page.locator(".flash.success").inner_text()
        shot(page, "21-api-token-revoked")
        assert api("/api/v1/transactions")[0] == 401

    def test_registrant_status_history_and_standing(self, page, tmp_path, live_database):
        pedro = natural_person_ruc("41234567")
        path = tmp_path / "reinfo-diciembre.csv"
        path.write_text(
            "RUC;Nombre;Código Único;Derecho Minero;Departamento;Provincia;Distrito;Estado\r\n"
            f"{pedro};HUAMAN CONDORI PEDRO;070012317;HUEPETUHE DOS;MADRE DE DIOS;MANU;"
            "HUEPETUHE;SUSPENDIDO\r\n",
            encoding="utf-8",
        )
        sign_in(page)
        page.click("nav.main >> text=Cargas")
        page.set_input_files("#upload-reinfo input[type=file]", str(path))
        page.click("#upload-reinfo button[type=submit]")
        assert page.locator("#upload-result dd[data-field=updated]").inner_text() == "1"
        page.goto("/admin/registrants?q=41234567")
        page.click("table.list >> text=Pedro Huamán Condori")
        history = page.locator("#status-history tbody tr")
        assert history.count() == 1
        row = history.first.inner_text()
        assert "070012317" in row and "VIGENTE" in row and "SUSPENDIDO" in row
        assert "reinfo-diciembre.csv" in row and "por admin" in row
        # The standing with the registry: suspended with a note, then restored.
        page.select_option("#standing-form select[name=status]", "suspended")
        page.fill("#standing-form textarea[name=note]", "Verificación de campo pendiente.")
        page.click("#standing-form button[type=submit]")
        assert page.locator(".flash.success").inner_text() == "Situación cambiada."
        page.select_option("#standing-form select[name=status]", "active")
        page.fill("#standing-form textarea[name=note]", "Verificación hecha: en regla.")
        page.click("#standing-form button[type=submit]")
        assert history.count() == 3
        newest = history.first.inner_text()
        assert "suspendido" in newest and "activo" in newest and "en regla" in newest
        shot(page, "22-registrant-status-history")
        with live_database.transaction() as session:
            registrant = session.scalars(
                sa.select(Registrant).where(Registrant.document_number == "41234567")
            ).one()
            assert registrant.status is RegistrantStatus.ACTIVE

    def test_the_messages_that_produced_a_transaction(self, page, live_app, live_database):
        phone_says(live_app, BUYER, "COMPRA 45678912 NATIVO 12G 900 3000")
        phone_says(live_app, BUYER, "SI")
        phone_says(live_app, JUANA, "SI")
        phone_says(live_app, JUANA, "1")  # her mining right
        with live_database.transaction() as session:
            transaction = session.scalars(  # the dashboard's seeded trade has code 000000
                sa.select(Transaction).where(
                    Transaction.material == "native", Transaction.code != "000000"
                )
            ).one()
        assert transaction.status is TransactionStatus.CONFIRMED
        sign_in(page)
        page.goto(f"/admin/transactions/{transaction.id}")
        rows = page.locator("#produced-by tbody tr")
        assert rows.count() == 2 + 2 + 1 + 3 + 2  # buyer's 2 and replies, seller's, receipts
        assert "COMPRA 45678912 NATIVO 12G 900 3000" in rows.first.inner_text()
        assert "propuesta" in rows.first.inner_text() and "comprador" in rows.first.inner_text()
        assert "confirmada" in rows.last.inner_text() and "vendedor" in rows.last.inner_text()
        page.locator("#produced-by").scroll_into_view_if_needed()
        shot(page, "23-transaction-messages")
        rows.first.locator("td").nth(4).locator("a").click()
        page.wait_for_url(re.compile(r"/admin/conversation"))
        assert page.locator(".bubble.mine", has_text="COMPRA 45678912 NATIVO").count() == 1

    def test_witnesses_on_the_ledger_page_and_an_alarm(
        self, browser, live_app, live_database, tmp_path
    ):
        log_verifier = live_app.extensions[LOG_KEY].signer.verifier()
        impostor = Signer.from_text(generate_signer_key(log_verifier.name)).verifier()
        with (
            running_witness(tmp_path, "sunat.test/witness", [log_verifier]) as (w1_url, w1_key),
            running_witness(tmp_path, "uif.test/witness", [impostor]) as (w2_url, w2_key),
        ):
            # The same registry (database, instance secrets, ledger key), with witnesses set.
            app = create_app(
                {
                    "DATABASE": live_database,
                    "INSTANCE_PATH": live_app.instance_path,
                    "REDIS_URL": "",
                    "LEDGER_WITNESSES": f"{w1_url} {w1_key}; {w2_url} {w2_key}",
                }
            )
            log = app.extensions[LOG_KEY]
            with live_database.transaction() as session:
                log.append(session, "test", {"witnessed": True})
            log.sequence(live_database)
            outcomes = submit(live_database, log, app.extensions[WITNESSES_KEY].witnesses)
            assert [o.result for o in outcomes] == ["cosigned", "refused"]
            context = None
            try:
                with serving(app) as url:
                    context = browser.new_context(
                        base_url=url, viewport={"width": 1280, "height": 900}
                    )
                    context.set_default_timeout(15_000)
                    tab = context.new_page()
                    sign_in(tab)
                    alarm = tab.locator(".alarm")
                    assert alarm.count() == 1
                    assert "uif.test/witness" in alarm.inner_text()
                    shot(tab, "24-dashboard-witness-alarm")
                    alarm.locator("a").click()
                    tab.wait_for_url(re.compile(r"/admin/ledger"))
                    assert "rechazó un checkpoint" in tab.locator(".alarm").inner_text()
                    rows = tab.locator("#witness-table tbody tr")
                    assert rows.count() == 2
                    assert "cosignando" in rows.first.inner_text()
                    assert "rechazado" in rows.last.inner_text()
                    assert tab.locator("#refusals tbody tr").count() == 1
                    shot(tab, "25-ledger-witnesses")
            finally:
                if context is not None:
                    context.close()
                # Leave the shared database as the other tests expect it: no witnesses.
                with live_database.transaction() as session:
                    for model in (WitnessStatus, WitnessRefusal, LedgerCosignature):
                        session.execute(sa.delete(model))
