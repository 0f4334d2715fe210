"""Status history: written by the REINFO and registrant imports and by console decisions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from recpo.db import Database
from registry import history
from registry.identifiers import DocumentType
from registry.imports import import_registrants, import_reinfo
from registry.models import (
    Registrant,
    RegistrantStatus,
    ReinfoRegistration,
    Role,
    StatusChange,
    StatusSource,
)
from tests.registry.test_imports import (
    HEADER,
    RUC_A,
    RUC_B,
    RUC_C,
    SNAPSHOT,
    lines,
    reinfo_row,
    write_csv,
)

REG_HEADER = "role,document,name,phone,language"


def changes(session) -> list[tuple]:
    """Every status change as (RUC, código único or None, old, new, source, snapshot, file, by)."""
    query = (
        sa.select(
            ReinfoRegistration.ruc,
            ReinfoRegistration.codigo_unico,
            StatusChange.old_status,
            StatusChange.new_status,
            StatusChange.source,
            StatusChange.snapshot_date,
            StatusChange.source_file,
            StatusChange.changed_by,
        )
        .select_from(StatusChange)
        .outerjoin(ReinfoRegistration, ReinfoRegistration.id == StatusChange.registration_id)
        .order_by(StatusChange.id)
    )
    return [tuple(row) for row in session.execute(query)]


def reinfo(session, path: Path, now: dt.datetime, **kwargs):
    kwargs.setdefault("snapshot_date", SNAPSHOT)
    return import_reinfo(session, path, now=now, **kwargs)


class TestReinfoImport:
    FILE = (
        reinfo_row(RUC_A, "010149108"),
        reinfo_row(RUC_B, "070012317", status="SUSPENDIDO"),
        reinfo_row(RUC_B, "070012318", status="EXCLUIDO"),
    )

    def test_the_first_import_records_each_first_estado(self, db_session, clock, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, *self.FILE), "reinfo-2026-11.csv")
        reinfo(db_session, path, clock.now())
        first = ("reinfo_import", SNAPSHOT, "reinfo-2026-11.csv", None)
        assert changes(db_session) == [
            (RUC_A, "010149108", None, "VIGENTE", *first),
            (RUC_B, "070012317", None, "SUSPENDIDO", *first),
            (RUC_B, "070012318", None, "EXCLUIDO", *first),
        ]
        times = db_session.scalars(sa.select(StatusChange.changed_at)).all()
        assert set(times) == {clock.now()}

    def test_only_a_changed_estado_is_recorded_again(self, db_session, clock, tmp_path):
        reinfo(db_session, write_csv(tmp_path, lines(HEADER, *self.FILE), "a.csv"), clock.now())
        before = changes(db_session)
        # The same list, again and a month later: nothing changed, nothing recorded.
        reinfo(db_session, write_csv(tmp_path, lines(HEADER, *self.FILE), "b.csv"), clock.now())
        later = SNAPSHOT + dt.timedelta(days=30)
        reinfo(db_session, tmp_path / "b.csv", clock.now(), snapshot_date=later)
        assert changes(db_session) == before

        # A month on: A suspended, one of B's registrations back in force, a name corrected.
        clock.advance(dt.timedelta(days=31))
        newer = [
            reinfo_row(RUC_A, "010149108", status="SUSPENDIDO"),
            reinfo_row(RUC_B, "070012317", status="VIGENTE", name="CONDORI ANA"),
            reinfo_row(RUC_B, "070012318", status="EXCLUIDO", name="CONDORI ANA"),
        ]
        newest = later + dt.timedelta(days=31)
        path = write_csv(tmp_path, lines(HEADER, *newer), "c.csv")
        summary = reinfo(db_session, path, clock.now(), snapshot_date=newest, changed_by="ana")
        assert (summary.updated, summary.unchanged) == (3, 0)
        assert changes(db_session) == [
            *before,
            (RUC_A, "010149108", "VIGENTE", "SUSPENDIDO", "reinfo_import", newest, "c.csv", "ana"),
            (RUC_B, "070012317", "SUSPENDIDO", "VIGENTE", "reinfo_import", newest, "c.csv", "ana"),
        ]

    def test_an_older_list_changes_nothing_and_records_nothing(self, db_session, clock, tmp_path):
        reinfo(db_session, write_csv(tmp_path, lines(HEADER, *self.FILE)), clock.now())
        before = changes(db_session)
        old = [reinfo_row(RUC_A, "010149108", status="EXCLUIDO")]
        path = write_csv(tmp_path, lines(HEADER, *old), "old.csv")
        reinfo(db_session, path, clock.now(), snapshot_date=SNAPSHOT - dt.timedelta(days=60))
        assert changes(db_session) == before

    def test_the_file_is_named_as_the_caller_says(self, db_session, clock, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, self.FILE[0]), "upload-3f2a1c.csv")
        reinfo(db_session, path, clock.now(), source_file="REINFO noviembre.csv", changed_by="ana")
        [change] = changes(db_session)
        assert change[-2:] == ("REINFO noviembre.csv", "ana")

    def test_one_insert_per_batch_whatever_its_size(self, db_session, clock, tmp_path):
        rows = [reinfo_row(RUC_C, f"0401556{n:02d}") for n in range(10)]
        path = write_csv(tmp_path, lines(HEADER, *rows))
        statements: list[str] = []

        def seen(conn, cursor, statement, parameters, context, executemany):
            if "status_changes" in statement:
                statements.append(statement)

        engine = db_session.get_bind().engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            reinfo(db_session, path, clock.now(), batch_size=4)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert len(changes(db_session)) == 10
        assert len(statements) == 3  # batches of 4, 4 and 2 rows
        assert all(s.lstrip().startswith("INSERT INTO status_changes") for s in statements)
        assert all("unnest" in s for s in statements)

    def test_a_failed_import_leaves_no_history(self, database, clock, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, *self.FILE))
        with pytest.raises(RuntimeError), database.transaction() as session:
            reinfo(session, path, clock.now())
            raise RuntimeError("later step failed")
        with database.transaction() as session:
            assert changes(session) == []

    def test_on_sqlite(self, sqlite_database: Database, clock, tmp_path):
        with sqlite_database.transaction() as session:
            path = write_csv(tmp_path, lines(HEADER, *self.FILE), "a.csv")
            reinfo(session, path, clock.now(), batch_size=2)
        clock.advance(dt.timedelta(days=7))
        later = SNAPSHOT + dt.timedelta(days=7)
        with sqlite_database.transaction() as session:
            path = write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A, status="EXCLUIDO")), "b.csv")
            reinfo(session, path, clock.now(), snapshot_date=later)
        with sqlite_database.transaction() as session:
            found = changes(session)
            stored_at = session.scalars(
                sa.select(StatusChange.changed_at).order_by(StatusChange.id)
            ).all()
        assert [row[:4] for row in found] == [
            (RUC_A, "010149108", None, "VIGENTE"),
            (RUC_B, "070012317", None, "SUSPENDIDO"),
            (RUC_B, "070012318", None, "EXCLUIDO"),
            (RUC_A, "010149108", "VIGENTE", "EXCLUIDO"),
        ]
        assert found[-1][5:7] == (later, "b.csv")
        assert stored_at[-1] == clock.now()


class TestRegistrantImport:
    def test_a_new_registrant_starts_active_and_updates_record_nothing(
        self, db_session, clock, tmp_path
    ):
        data = lines(REG_HEADER, "miner,45678912,Juana Quispe,987654321,qu")
        path = write_csv(tmp_path, data, "mineros.csv")
        import_registrants(db_session, path, now=clock.now(), changed_by="lucho")
        renamed = lines(REG_HEADER, "miner,45678912,Juana Quispe Mamani,987654321,qu")
        path = write_csv(tmp_path, renamed, "mineros-2.csv")
        import_registrants(db_session, path, now=clock.now())
        juana = db_session.scalars(sa.select(Registrant)).one()
        [change] = db_session.scalars(sa.select(StatusChange)).all()
        assert (change.registrant_id, change.registration_id) == (juana.id, None)
        assert (change.old_status, change.new_status) == (None, "active")
        assert (change.source, change.source_file, change.changed_by) == (
            StatusSource.REGISTRANT_IMPORT,
            "mineros.csv",
            "lucho",
        )


def _registrant(session, now: dt.datetime, number: str = "45678912") -> Registrant:
    registrant = Registrant(
        role=Role.MINER,
        document_type=DocumentType.DNI,
        document_number=number,
        name="Juana Quispe",
        created_at=now,
        updated_at=now,
    )
    session.add(registrant)
    session.flush()
    return registrant


class TestConsoleStanding:
    def test_a_change_is_recorded_with_who_and_why(self, db_session, clock):
        juana = _registrant(db_session, clock.now())
        clock.advance(dt.timedelta(hours=2))
        change = history.change_standing(
            db_session,
            juana,
            RegistrantStatus.SUSPENDED,
            now=clock.now(),
            changed_by="ana",
            note="Investigación de la FEMA",
        )
        db_session.flush()
        assert juana.status is RegistrantStatus.SUSPENDED
        assert juana.updated_at == clock.now()
        assert (change.old_status, change.new_status, change.source) == (
            "active",
            "suspended",
            StatusSource.CONSOLE,
        )
        assert (change.changed_by, change.note) == ("ana", "Investigación de la FEMA")

    def test_the_same_standing_again_records_nothing(self, db_session, clock):
        juana = _registrant(db_session, clock.now())
        assert (
            history.change_standing(
                db_session,
                juana,
                RegistrantStatus.ACTIVE,
                now=clock.now(),
                changed_by="ana",
                note="x",
            )
            is None
        )
        assert db_session.scalars(sa.select(StatusChange)).all() == []

    def test_a_row_names_exactly_one_subject(self, db_session, clock):
        db_session.add(
            StatusChange(new_status="active", changed_at=clock.now(), source=StatusSource.CONSOLE)
        )
        with pytest.raises(sa.exc.IntegrityError, match="ck_status_changes_one_subject"):
            db_session.flush()


class TestHistoryOf:
    def test_newest_first_the_registrant_and_its_registrations_only(
        self, db_session, clock, tmp_path
    ):
        juana = _registrant(db_session, clock.now())
        other = _registrant(db_session, clock.now(), "41234567")
        file = [
            reinfo_row(RUC_A, "010149108"),
            reinfo_row(RUC_A, "010149109"),
            reinfo_row(RUC_B, "070012317"),
        ]
        reinfo(db_session, write_csv(tmp_path, lines(HEADER, *file)), clock.now())
        clock.advance(dt.timedelta(days=1))
        for registrant in (juana, other):
            history.change_standing(
                db_session,
                registrant,
                RegistrantStatus.SUSPENDED,
                now=clock.now(),
                changed_by="ana",
                note="x",
            )
        clock.advance(dt.timedelta(days=1))
        later = SNAPSHOT + dt.timedelta(days=2)
        changed = lines(HEADER, reinfo_row(RUC_A, "010149109", status="SUSPENDIDO"))
        reinfo(db_session, write_csv(tmp_path, changed, "b.csv"), clock.now(), snapshot_date=later)
        db_session.flush()

        ids = db_session.scalars(
            sa.select(ReinfoRegistration.id).where(ReinfoRegistration.ruc == RUC_A)
        ).all()
        found = history.history_of(db_session, juana.id, ids)
        assert [
            (c.registration.codigo_unico if c.registration else None, c.old_status, c.new_status)
            for c in found
        ] == [
            ("010149109", "VIGENTE", "SUSPENDIDO"),
            (None, "active", "suspended"),
            ("010149109", None, "VIGENTE"),  # the same instant: the later row first
            ("010149108", None, "VIGENTE"),
        ]
        assert len(history.history_of(db_session, juana.id, ids, limit=2)) == 2
        assert [c.registrant_id for c in history.history_of(db_session, other.id)] == [other.id]
