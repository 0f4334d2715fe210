from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError

from recpo.clock import FixedClock, SystemClock, lima_date
from recpo.db import Base, Database


class TestDatabase:
    def test_transaction_commits(self, sqlite_database: Database):
        with sqlite_database.transaction() as session:
            session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            session.execute(sa.text("INSERT INTO t VALUES (1)"))
        with sqlite_database.transaction() as session:
            assert session.scalar(sa.text("SELECT count(*) FROM t")) == 1

    def test_transaction_rolls_back_on_error(self, sqlite_database: Database):
        with sqlite_database.transaction() as session:
            session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        with pytest.raises(RuntimeError), sqlite_database.transaction() as session:
            session.execute(sa.text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("boom")
        with sqlite_database.transaction() as session:
            assert session.scalar(sa.text("SELECT count(*) FROM t")) == 0

    def test_sqlite_savepoints_work(self, sqlite_database: Database):
        with sqlite_database.transaction() as session:
            session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            session.execute(sa.text("INSERT INTO t VALUES (1)"))
            nested = session.begin_nested()
            session.execute(sa.text("INSERT INTO t VALUES (2)"))
            nested.rollback()
            assert session.scalar(sa.text("SELECT count(*) FROM t")) == 1

    def test_sqlite_enforces_foreign_keys(self, sqlite_database: Database):
        with sqlite_database.transaction() as session:
            assert session.scalar(sa.text("PRAGMA foreign_keys")) == 1

    def test_dialects(self, database: Database, sqlite_database: Database):
        assert database.dialect == "postgresql"
        assert sqlite_database.dialect == "sqlite"

    def test_naming_convention_gives_deterministic_names(self):
        names = {
            c.name
            for table in Base.metadata.tables.values()
            for c in table.constraints
            if c.name is not None
        }
        assert "pk_registrants" in names
        assert "uq_registrants_document_type_document_number" in names
        assert "fk_phone_links_registrant_id_registrants" in names
        assert "ck_reinfo_registrations_ruc_length" in names


class TestClock:
    def test_system_clock_is_aware_utc(self):
        now = SystemClock().now()
        assert now.tzinfo is dt.UTC

    def test_fixed_clock_moves_only_when_told(self):
        clock = FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        assert clock.now() == clock.now()
        clock.advance(dt.timedelta(hours=2))
        assert clock.now() == dt.datetime(2026, 1, 1, 2, tzinfo=dt.UTC)

    def test_fixed_clock_refuses_naive(self):
        with pytest.raises(ValueError, match="timezone"):
            FixedClock(dt.datetime(2026, 1, 1))

    def test_lima_date_crosses_midnight(self):
        # 03:00 UTC is still the previous evening in Lima (UTC-5).
        assert lima_date(dt.datetime(2026, 11, 30, 3, tzinfo=dt.UTC)) == dt.date(2026, 11, 29)
        lima = dt.datetime(2026, 11, 30, 8, tzinfo=ZoneInfo("America/Lima"))
        assert lima_date(lima) == dt.date(2026, 11, 30)


def test_naive_datetime_is_refused(db_session):
    from registry.models import Registrant, Role

    db_session.add(
        Registrant(
            role=Role.MINER,
            document_type="dni",
            document_number="45678912",
            name="X",
            created_at=dt.datetime(2026, 1, 1),
            updated_at=dt.datetime(2026, 1, 1),
        )
    )
    with pytest.raises(StatementError, match="naive datetime"):
        db_session.flush()
