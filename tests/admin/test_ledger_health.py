"""Ledger health: size, checkpoint and key on the page; verification runs in the background;
the witnesses, with an alarm (here and on the dashboard) when one refuses a checkpoint."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from admin import verification
from admin.models import AuditEntry, LedgerVerification, StaffRole
from gateway.ledger_api import EXTENSION_KEY as LOG_KEY
from gateway.ledger_api import WITNESSES_KEY
from gateway.witness_server import create_witness_app
from ledger.cosignature import CosignatureSigner, generate_cosigner_key
from ledger.note import Signer, Verifier, generate_signer_key
from ledger.witness import Witness, WitnessStore
from ledger.witnesses import parse_witnesses, submit
from recpo.app import create_app
from recpo.clock import SystemClock
from tests.admin.conftest import add_user, sign_in

VERIFY = "/admin/ledger/verify"


def fill_ledger(app, database, entries: int = 40, batch: int = 10) -> None:
    """Append `entries` entries in batches, each batch sequenced and signed."""
    log = app.extensions[LOG_KEY]
    for start in range(0, entries, batch):
        with database.transaction() as session:
            for i in range(start, start + batch):
                log.append(session, "test", {"n": i})
        log.sequence(database)


def tamper(database, *statements: str) -> None:
    """Change ledger rows as a superuser could: switch the append-only triggers off first."""
    tables = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")
    with database.transaction() as session:
        for table in tables:
            session.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            session.connection().exec_driver_sql(statement)
        for table in tables:
            session.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def runs(database) -> list[LedgerVerification]:
    with database.transaction() as session:
        return list(session.scalars(sa.select(LedgerVerification).order_by(LedgerVerification.id)))


def wait_for_result(database, count: int, timeout: float = 60) -> LedgerVerification:
    """Wait until `count` runs exist and the newest has finished; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(database)
        if len(found) >= count and found[-1].finished_at is not None:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no finished verification after {timeout} s: {runs(database)}")


class TestPage:
    def test_size_checkpoint_age_and_key(self, app, client, as_role, database):
        fill_ledger(app, database, entries=12, batch=6)
        as_role(StaffRole.AUDITOR)
        page = client.get("/admin/ledger").get_data(as_text=True)
        assert '<dd id="tree-size">12</dd>' in page
        key = app.extensions[LOG_KEY].signer.verifier_text()
        assert f'<pre class="key" id="verifier-key-text">{key}</pre>' in page
        assert 'data-copy="#verifier-key-text"' in page
        note = page.split('id="checkpoint-note">')[1].split("</pre>")[0]
        assert note.split("\n")[1] == "12"  # the signed note: origin, size, root, signature
        assert "\u2014 " in note  # the signature line
        assert 'id="checkpoint-age"' in page
        assert "verify-button" not in page  # auditors read only
        assert client.post(VERIFY, data={"csrf_token": "x"}).status_code == 403

    def test_a_new_ledger(self, client, as_role):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/ledger").get_data(as_text=True)
        assert '<dd id="tree-size">0</dd>' in page
        assert "Aún no se ha firmado ningún checkpoint." in page
        assert 'id="verify-button"' in page

    def test_the_button_needs_the_csrf_token(self, client, as_role, database):
        as_role(StaffRole.ANALYST)
        assert client.post(VERIFY).status_code == 400
        assert runs(database) == []


class TestRunInline:
    """On the tests' single connection the run happens inside the request (no thread may share
    the connection); everything else is as in production."""

    def test_a_valid_ledger(self, app, client, as_role, database):
        fill_ledger(app, database)
        token = as_role(StaffRole.ANALYST)
        response = client.post(VERIFY, data={"csrf_token": token})
        assert response.status_code == 302 and response.location == "/admin/ledger"
        (run,) = runs(database)
        assert (run.ok, run.entries, run.checkpoints, run.problem) == (True, 40, 4, None)
        assert run.started_by == "lucho" and run.finished_at is not None
        page = client.get("/admin/ledger").get_data(as_text=True)
        assert "El registro es válido." in page
        assert "40 asientos y 4 checkpoints verificados." in page
        with database.transaction() as session:
            entry = session.scalars(
                sa.select(AuditEntry).where(AuditEntry.action == "ledger.verify")
            ).one()
        assert (entry.user_name, entry.target_id) == ("lucho", str(run.id))

    def test_one_run_at_a_time_and_lost_runs_are_closed(self, client, as_role, database, clock):
        token = as_role(StaffRole.ADMIN)
        with database.transaction() as session:
            session.add(
                LedgerVerification(started_at=clock.now(), started_by="ana", updated_at=clock.now())
            )
        page = client.get("/admin/ledger").get_data(as_text=True)
        assert 'id="verify-button" disabled' in page
        assert '<meta http-equiv="refresh"' in page  # the page follows the run
        client.post(VERIFY, data={"csrf_token": token})
        assert "Ya hay una verificación en curso" in client.get("/admin/ledger").get_data(
            as_text=True
        )
        assert len(runs(database)) == 1
        # Its process died: no heartbeat for longer than STALE_AFTER.
        with database.transaction() as session:
            session.execute(
                sa.update(LedgerVerification).values(
                    updated_at=clock.now() - verification.STALE_AFTER - dt.timedelta(seconds=1)
                )
            )
        page = client.get("/admin/ledger").get_data(as_text=True)
        assert "Perdida" in page and "disabled" not in page.split('id="verify-button"')[1][:20]
        client.post(VERIFY, data={"csrf_token": token})
        lost, new = runs(database)
        assert (lost.ok, lost.problem) == (None, verification.LOST)
        assert new.ok is True


@pytest.fixture
def live(committing_database, tmp_path):
    """An app on a database of its own, where the run's thread has connections of its own."""
    app = create_app(
        {"DATABASE": committing_database, "INSTANCE_PATH": str(tmp_path), "REDIS_URL": ""}
    )
    user = add_user(committing_database, "lucho", StaffRole.ANALYST, SystemClock().now())
    client = app.test_client()
    token = sign_in(client, committing_database, user, SystemClock().now())
    return app, client, token


class TestInTheBackground:
    def test_valid_then_tampered(self, live, committing_database):
        app, client, token = live
        fill_ledger(app, committing_database)
        assert client.post(VERIFY, data={"csrf_token": token}).status_code == 302
        run = wait_for_result(committing_database, 1)
        assert (run.ok, run.entries, run.checkpoints) == (True, 40, 4)
        assert "El registro es válido." in client.get("/admin/ledger").get_data(as_text=True)

        tamper(
            committing_database,
            "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
            " '\"n\":17', '\"n\":71'), 'UTF8') WHERE idx = 17",
        )
        client.post(VERIFY, data={"csrf_token": token})
        run = wait_for_result(committing_database, 2)
        assert run.ok is False
        assert run.problem.startswith("entry 17: ") and "leaf hash" in run.problem
        page = client.get("/admin/ledger?lang=en").get_data(as_text=True)
        verdict = page.split('id="verdict"')[1].split("</div>")[0]
        assert "The ledger is NOT valid." in verdict and "entry 17: " in verdict
        runs_table = page.split('id="runs"')[1]
        assert runs_table.count("NOT valid") == 1 and runs_table.count(">valid<") == 1

    def test_on_the_embedded_sqlite_database(self, sqlite_database, tmp_path):
        app = create_app(
            {"DATABASE": sqlite_database, "INSTANCE_PATH": str(tmp_path), "REDIS_URL": ""}
        )
        fill_ledger(app, sqlite_database, entries=20)
        user = add_user(sqlite_database, "ana", StaffRole.ADMIN, SystemClock().now())
        client = app.test_client()
        token = sign_in(client, sqlite_database, user, SystemClock().now())
        client.post(VERIFY, data={"csrf_token": token})
        run = wait_for_result(sqlite_database, 1)
        assert (run.ok, run.entries, run.checkpoints) == (True, 20, 2)
        with sqlite_database.transaction() as session:
            detail = session.scalars(
                sa.select(AuditEntry.detail).where(AuditEntry.action == "ledger.verify")
            ).one()
        assert json.loads(detail) == {}


# --- witnesses ----------------------------------------------------------------------------------


@contextmanager
def serving(wsgi_app) -> Iterator[str]:
    """Serve `wsgi_app` over HTTP on 127.0.0.1 in a thread; yield its URL."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@contextmanager
def running_witness(tmp_path: Path, name: str, log_keys: list[Verifier]) -> Iterator[tuple]:
    """A real witness (`recpo witness serve`'s app, its own SQLite store) over HTTP: (URL, key)."""
    signer = CosignatureSigner.from_text(generate_cosigner_key(name))
    store = WitnessStore.from_url(f"sqlite:///{tmp_path / (name.split('.')[0] + '.sqlite3')}")
    try:
        with serving(create_witness_app(Witness(signer, log_keys, store))) as url:
            yield url, signer.verifier_text()
    finally:
        store.dispose()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def witness_rows(page: str) -> dict[str, str]:
    table = page.split('id="witness-table"')[1].split("</table>")[0]
    return dict(re.findall(r'<tr class="[a-z]*" data-witness="([^"]+)">(.*?)</tr>', table, re.S))


class TestWitnesses:
    ORIGIN = "recpo.example/ledger"

    def test_cosigning_refusing_unreachable_and_former_witnesses(
        self, database, redis_url, clock, instance_path, tmp_path, make_app
    ):
        log_key = generate_signer_key(self.ORIGIN)
        ours = Signer.from_text(log_key).verifier()
        impostor = Signer.from_text(generate_signer_key(self.ORIGIN)).verifier()
        unreachable = CosignatureSigner.from_text(generate_cosigner_key("w3.test/witness"))
        with (
            running_witness(tmp_path, "w1.test/witness", [ours]) as (w1_url, w1_key),
            # w2 follows a log of the same name under another key: it refuses ours (403).
            running_witness(tmp_path, "w2.test/witness", [impostor]) as (w2_url, w2_key),
            running_witness(tmp_path, "w0.test/witness", [ours]) as (w0_url, w0_key),
        ):
            configured = "; ".join(
                [
                    f"{w1_url} {w1_key}",
                    f"{w2_url} {w2_key}",
                    f"http://127.0.0.1:{closed_port()} {unreachable.verifier_text()}",
                    f"http://127.0.0.1:{closed_port()} "
                    + CosignatureSigner.from_text(
                        generate_cosigner_key("w4.test/witness")
                    ).verifier_text(),
                ]
            )
            app = make_app(
                {
                    "DATABASE": database,
                    "REDIS_URL": redis_url,
                    "CLOCK": clock,
                    "INSTANCE_PATH": str(instance_path),
                    "DATABASE_URL": "postgresql+psycopg://nobody@unused.invalid/unused",
                    "LEDGER_SIGNING_KEY": log_key,
                    "LEDGER_WITNESSES": configured,
                }
            )
            log = app.extensions[LOG_KEY]
            fill_ledger(app, database, entries=12, batch=12)
            # A witness configured before (w0) cosigned size 12; it is no longer in the list.
            former = parse_witnesses(f"{w0_url} {w0_key}")
            assert [o.result for o in submit(database, log, former)] == ["cosigned"]
            clock.advance(dt.timedelta(minutes=10))
            fill_ledger(app, database, entries=5, batch=5)
            witnesses = app.extensions[WITNESSES_KEY].witnesses
            outcomes = submit(database, log, witnesses[:3], timeout=2)  # w4 never contacted
            assert [(o.witness, o.result, o.status) for o in outcomes] == [
                ("w1.test/witness", "cosigned", 200),
                ("w2.test/witness", "refused", 403),
                ("w3.test/witness", "unreachable", None),
            ]

            client = app.test_client()
            sign_in(
                client,
                database,
                add_user(database, "rita", StaffRole.AUDITOR, clock.now()),
                clock.now(),
            )
            page = client.get("/admin/ledger").get_data(as_text=True)
            rows = witness_rows(page)
            assert list(rows) == [
                "w1.test/witness",
                "w2.test/witness",
                "w3.test/witness",
                "w4.test/witness",
                "w0.test/witness",
            ]
            w1, w2, w3, w4, w0 = rows.values()
            assert w1_url in w1 and ">17<" in w1 and "cosignando" in w1
            assert "hace 0 s" in w1  # cosigned just now (the test clock stands still)
            assert "HTTP 200" in w1 and "por cosignar" not in w1
            assert ">—<" in w2 and "rechazado" in w2 and "HTTP 403" in w2
            assert "inalcanzable" in w3 and "ConnectionError" in w3
            assert "aún no contactado" in w4
            assert ">12<" in w0 and "5 por cosignar" in w0 and "ya no configurado" in w0

            [alarm] = re.findall(
                r'<div class="alarm" role="alert"[^>]*>(.*?)</div>\s*</div>', page, re.S
            )
            assert "El testigo w2.test/witness rechazó un checkpoint." in alarm
            assert "Rechazó el tamaño 17 (desde 0)" in alarm and "HTTP 403" in alarm
            refusals = page.split('id="refusals"')[1].split("</table>")[0]
            assert refusals.count("<tr><td") == 1 and "w2.test/witness" in refusals

            home = client.get("/admin/").get_data(as_text=True)
            assert 'data-witness="w2.test/witness"' in home
            assert "El testigo w2.test/witness rechazó un checkpoint." in home
            assert 'href="/admin/ledger#witnesses"' in home
            assert "w1.test/witness" not in home  # only alarms reach the dashboard

    def test_no_witness_configured(self, client, as_role):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/ledger").get_data(as_text=True)
        assert "No hay testigos configurados (LEDGER_WITNESSES)" in page
        assert 'class="alarm"' not in page
        assert 'class="alarm"' not in client.get("/admin/").get_data(as_text=True)
