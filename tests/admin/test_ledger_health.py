"""Ledger health: size, checkpoint and key on the page; verification runs in the background."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import sqlalchemy as sa

from admin import verification
from admin.models import AuditEntry, LedgerVerification, StaffRole
from gateway.ledger_api import EXTENSION_KEY as LOG_KEY
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
