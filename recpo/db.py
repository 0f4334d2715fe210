"""The database: one declarative base, the engine and sessions.

Every table in every package derives from `Base`, so Alembic sees one metadata with deterministic
constraint names. Timestamps are stored as UTC and always come back timezone-aware, on SQLite too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC; naive values are refused rather than guessed."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use recpo.clock")
        value = value.astimezone(dt.UTC)
        # SQLite keeps no zone: store the UTC wall time and re-attach UTC on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """The one declarative base of the project."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dt.datetime: UTCDateTime(),
        decimal.Decimal: sa.Numeric(18, 4),
    }


def str_enum(enum_cls: type, name: str, length: int = 20) -> sa.Enum:
    """Return a portable column type storing an enum's values as checked strings."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings this project relies on for each backend."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = sa.create_engine(url, **kwargs)
    _discard_dead_connections(engine)
    return engine


def _discard_dead_connections(engine: Engine) -> None:
    """Hand out no pooled connection the server has closed, without a round trip to find out.

    An idle connection in the pool has nothing to read: the server speaks only when asked. If its
    socket is readable (or hung up), the server has said goodbye — restarted, or the backend was
    terminated — and the pool replaces it before anyone uses it. This is `pool_pre_ping`'s job
    done with one `poll` system call instead of `BEGIN; SELECT 1; ROLLBACK` on every checkout,
    three round trips that cost as much as a webhook's own statements. (A peer that vanished
    without closing the socket is caught by neither; TCP keepalives and the statement's own error
    handle that.)
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            fileno = dbapi_connection.fileno()
        except Exception as exc:  # psycopg raises once it knows the connection is closed
            raise sa.exc.DisconnectionError(str(exc)) from exc
        poller = select.poll()
        poller.register(fileno, select.POLLIN | select.POLLPRI)
        if poller.poll(0):
            raise sa.exc.DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and defers locks; take over, and begin
    # every transaction IMMEDIATE so that two writers wait for each other instead of failing.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine (or a connection, in tests) and the sessions made from it."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.sessionmaker = sessionmaker(
            bind=bind, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    @classmethod
    def from_url(cls, url: str) -> Database:
        """Connect to the database at `url`."""
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        """Return the backend's name: 'postgresql' or 'sqlite'."""
        return self.bind.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session whose work commits on success and rolls back on any error."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Run a trivial query; raise if the database cannot be reached."""
        with self.sessionmaker() as session:
            session.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (after a fork, or on shutdown)."""
        if isinstance(self.bind, Engine):
            self.bind.dispose()
