"""Verifying the whole ledger from the console: `verify_log` in a background thread.

The console's button starts a run with `start`: a row in `ledger_verifications` is written first
(so every web process shows the run), then a plain daemon thread of this process runs
`ledger.verify.verify_log` and writes the outcome to the row. Not an RQ job: the embedded default
has no Redis, and the run needs only a database connection, not the outbox's queue.

- One run at a time: `start` takes a table lock (PostgreSQL; SQLite's writers are serialised
  anyway) before looking for an unfinished run, and refuses to start another.
- The run reads one consistent snapshot (PostgreSQL: REPEATABLE READ, READ ONLY; SQLite: a
  deferred read transaction on a connection of its own, which in WAL mode blocks no writer), so
  entries appended meanwhile neither disturb it nor are blocked by it.
- Its heartbeat (`updated_at`, with the entries checked so far) is written as it goes; a run
  whose heartbeat stopped for `STALE_AFTER` was lost with its process (a restart, a killed
  worker) and is closed as such when someone looks, so that a new run can start.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from admin.models import LedgerVerification
from ledger.note import Verifier
from ledger.verify import verify_log
from recpo.clock import Clock
from recpo.db import Database

log = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(minutes=30)
HEARTBEAT_SECONDS = 2.0
LOST = "the run stopped without a result (its web process ended); start it again"


class AlreadyRunning(Exception):
    """A verification is running already: who started it, and when."""

    def __init__(self, started_by: str, started_at: dt.datetime) -> None:
        super().__init__(started_by, started_at)
        self.started_by = started_by
        self.started_at = started_at


def _single_connection(database: Database) -> bool:
    """True when the database is one connection (tests): no other thread may use it."""
    return isinstance(database.bind, sa.Connection)


def close_lost_runs(session: Session, now: dt.datetime) -> None:
    """Finish the runs whose heartbeat stopped long ago (their thread died with its process)."""
    session.execute(
        sa.update(LedgerVerification)
        .where(
            LedgerVerification.finished_at.is_(None),
            LedgerVerification.updated_at < now - STALE_AFTER,
        )
        .values(finished_at=now, ok=None, problem=LOST)
    )


def latest_runs(session: Session, limit: int = 10) -> list[LedgerVerification]:
    """The newest runs, newest first."""
    return list(
        session.scalars(
            sa.select(LedgerVerification).order_by(LedgerVerification.id.desc()).limit(limit)
        )
    )


def start(
    database: Database,
    verifier: Verifier,
    origin: str,
    clock: Clock,
    started_by: str,
    *,
    on_start: Callable[[Session, LedgerVerification], None] | None = None,
    background: bool = True,
) -> LedgerVerification:
    """Record a new run and start it; raise `AlreadyRunning` while another one is unfinished.

    `on_start(session, run)` runs in the transaction that records the run (the audit entry).
    With `background` (the default) the run happens in a daemon thread and this returns at once;
    on a database that is a single connection (the tests' savepoints) it always runs inline.
    """
    now = clock.now()
    with database.transaction() as session:
        if database.dialect == "postgresql":
            # Two clicks in two web processes: the second waits here, then sees the first run.
            session.execute(sa.text("LOCK TABLE ledger_verifications IN SHARE ROW EXCLUSIVE MODE"))
        close_lost_runs(session, now)
        running = session.scalars(
            sa.select(LedgerVerification)
            .where(LedgerVerification.finished_at.is_(None))
            .order_by(LedgerVerification.id.desc())
            .limit(1)
        ).first()
        if running is not None:
            raise AlreadyRunning(running.started_by, running.started_at)
        run = LedgerVerification(started_at=now, started_by=started_by[:80], updated_at=now)
        session.add(run)
        session.flush()
        if on_start is not None:
            on_start(session, run)
    if background and not _single_connection(database):
        thread = threading.Thread(
            target=run_verification,
            args=(database, run.id, verifier, origin, clock),
            name=f"ledger-verify-{run.id}",
            daemon=True,
        )
        thread.start()
    else:
        run_verification(database, run.id, verifier, origin, clock)
    return run


@contextmanager
def snapshot(database: Database) -> Iterator[Session]:
    """A read-only session on one consistent snapshot that holds no write lock."""
    bind = database.bind
    if _single_connection(database):
        with database.transaction() as session:
            yield session
        return
    if database.dialect == "postgresql":
        with database.sessionmaker() as session, session.begin():
            session.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            yield session
        return
    # SQLite: the app's engine begins every transaction IMMEDIATE (a write lock). Read through a
    # connection of our own that begins a deferred transaction instead.
    engine = sa.create_engine(bind.url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN DEFERRED")

    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def run_verification(
    database: Database, run_id: int, verifier: Verifier, origin: str, clock: Clock
) -> None:
    """Verify the log and write the outcome to run `run_id` (never raises)."""
    inline = _single_connection(database)
    last_beat = [time.monotonic()]

    def heartbeat(entries: int) -> None:
        if inline or time.monotonic() - last_beat[0] < HEARTBEAT_SECONDS:
            return
        last_beat[0] = time.monotonic()
        with database.transaction() as session:
            session.execute(
                sa.update(LedgerVerification)
                .where(LedgerVerification.id == run_id)
                .values(updated_at=clock.now(), entries=entries)
            )

    values: dict[str, Any]
    try:
        with snapshot(database) as session:
            report = verify_log(session, verifier, origin, progress=heartbeat)
        values = {
            "entries": report.entries,
            "checkpoints": report.checkpoints,
            "ok": report.ok,
            "problem": None if report.ok else str(report.problem),
        }
        log.info(
            "ledger verification %d: %s (%d entries, %d checkpoints)",
            run_id,
            "valid" if report.ok else f"NOT valid: {report.problem}",
            report.entries,
            report.checkpoints,
        )
    except Exception as exc:
        log.exception("ledger verification %d could not finish", run_id)
        values = {"ok": None, "problem": f"could not finish: {type(exc).__name__}: {exc}"[:2000]}
    try:
        moment = clock.now()
        with database.transaction() as session:
            session.execute(
                sa.update(LedgerVerification)
                .where(LedgerVerification.id == run_id)
                .values(finished_at=moment, updated_at=moment, **values)
            )
    except Exception:
        log.exception("ledger verification %d: the outcome could not be stored", run_id)
