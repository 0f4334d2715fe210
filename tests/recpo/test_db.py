from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError

from recpo.clock import FixedClock, SystemClock, lima_date
from recpo.db import Base, Database, make_engine


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

    def test_connection_commits_or_rolls_back(self, backend: Database):
        # On SQLite its own transaction; bound to the test's PostgreSQL connection, a savepoint.
        with backend.connection() as connection:
            connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(RuntimeError), backend.connection() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("boom")
        with backend.transaction() as session:
            assert session.scalars(sa.text("SELECT x FROM t")).all() == [1]

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


class TestPooledConnections:
    """A pooled connection the server has closed is replaced before anyone uses it."""

    def _backend_pids(self, engine: sa.Engine, count: int) -> list[int]:
        # Check out `count` connections at once so the pool holds that many, then return them.
        connections = [engine.connect() for _ in range(count)]
        try:
            return [c.scalar(sa.text("SELECT pg_backend_pid()")) for c in connections]
        finally:
            for c in connections:
                c.close()

    def test_terminated_backends_are_replaced_at_checkout(self, postgres_url: str):
        engine = make_engine(postgres_url, pool_size=3)
        try:
            pids = self._backend_pids(engine, 3)
            killer = make_engine(postgres_url, poolclass=sa.pool.NullPool)
            with killer.connect() as conn:
                for pid in pids:
                    terminate = sa.text("SELECT pg_terminate_backend(:p, 5000)")
                    assert conn.scalar(terminate, {"p": pid})
            killer.dispose()
            # Every pooled connection is dead; none of these may fail or reuse one.
            new_pids = self._backend_pids(engine, 3)
            assert not set(new_pids) & set(pids)
            with engine.connect() as conn:
                assert conn.scalar(sa.text("SELECT 1")) == 1
        finally:
            engine.dispose()

    def test_healthy_connections_are_reused_without_a_ping(self, postgres_url: str):
        engine = make_engine(postgres_url, pool_size=1)
        statements: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        try:
            first = self._backend_pids(engine, 1)
            statements.clear()
            assert self._backend_pids(engine, 1) == first
            assert statements == ["SELECT pg_backend_pid()"]  # no SELECT 1 before it
        finally:
            engine.dispose()


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
