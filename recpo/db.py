"""The database: one declarative base, the engine and sessions.

Every table in every package derives from `Base`, so Alembic sees one metadata with deterministic
constraint names. Timestamps are stored as UTC and always come back timezone-aware, on SQLite too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import select
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

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

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Yield a Core connection whose work commits on success and rolls back on any error.

        For work with no ORM objects, without a session's setup and bookkeeping. Bound to a
        connection (tests), the work is a savepoint of that connection's transaction, as a
        session's would be.
        """
        if isinstance(self.bind, Engine):
            with self.bind.begin() as connection:
                yield connection
        else:
            with self.bind.begin_nested():
                yield self.bind

    def ping(self) -> None:
        """Run a trivial query; raise if the database cannot be reached."""
        with self.sessionmaker() as session:
            session.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (after a fork, or on shutdown)."""
        if isinstance(self.bind, Engine):
            self.bind.dispose()


# --- the hot path on PostgreSQL ---------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class _Compiled:
    sql: bytes  # psycopg sends bytes as they are, and encodes a str on every call
    constants: dict[str, Any]  # binds that carry their own value, as the database takes them
    processors: dict[str, Callable[[Any], Any]]  # for the binds the caller fills


class DriverStatement:
    """A statement compiled once and, on PostgreSQL, run on psycopg's own cursor.

    For the few statements every webhook runs. Per execution SQLAlchemy's Core builds an
    execution context, processes binds and wraps the result, and the ORM then loads objects
    through its query machinery: measured here, about as much Python as psycopg's whole round
    trip for a Core statement, twice that for an ORM load. This runs the compiled SQL directly,
    with the same bind processing (precomputed per parameter), and either returns psycopg's rows
    as the database sent them (`rows`) or builds the one mapped object a row stands for, as a
    load would (`load`). Errors come back as SQLAlchemy's exceptions, and a connection found
    dead is invalidated, as `Connection.execute` does. Elsewhere (SQLite) the statement runs
    through SQLAlchemy unchanged, and `rows` returns values with the column types applied
    (psycopg's are the database's own: strings for enum columns), so callers that read more
    than ids and counts convert them as `load` does.

    psycopg prepares a statement on the server once it has run a few times, and the server may
    then keep one plan for any values. `planned_each_time=True` keeps it from that, for a
    statement whose best plan depends on its values or on a table's size: a plan made for any
    values while the table was small can stay in use, scanning it all, until the table is next
    analyzed.
    """

    def __init__(self, statement: sa.Executable, *, planned_each_time: bool = False) -> None:
        self.statement = statement
        self._prepare: bool | None = False if planned_each_time else None  # psycopg's default
        self._compiled: _Compiled | None = None
        self._names: tuple[str, ...] | None = None  # of the result's columns, once known
        self._loaders: dict[tuple[type, tuple[str, ...]], list[tuple[str, Any]]] = {}
        self._converters: list[Callable[[Any], Any] | None] | None = None  # for `typed_rows`

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Run the statement in the connection's transaction; return its rows."""
        if connection.dialect.name != "postgresql":
            result = connection.execute(self.statement, params)
            return result.all() if result.returns_rows else []
        rows, _ = self._run(connection, params)
        return rows

    def typed_rows(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """Run the statement; return its rows with each column's type applied, as SQLAlchemy
        returns them (enum members, not their strings; UTC datetimes)."""
        if connection.dialect.name != "postgresql":
            return self.rows(connection, params)
        rows, _ = self._run(connection, params)
        converters = self._converters
        if converters is None:
            dialect = connection.dialect
            converters = self._converters = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.exported_columns  # type: ignore[attr-defined]
            ]
        if not any(converters):
            return rows
        return [
            tuple(convert(v) if convert else v for convert, v in zip(converters, row, strict=True))
            for row in rows
        ]

    def load(self, session: Session, cls: type[T], params: Mapping[str, Any]) -> T | None:
        """Return the one `cls` the statement selects (or returns), or None.

        The statement's columns are `cls`'s own. As an ORM query would, it flushes the
        session's pending changes first (autoflush), so the row includes them. An object of that
        identity already in the session is returned with the row's values (as `populate_existing`
        would); a new one joins the session as loaded, so that only what the caller changes is
        flushed.
        """
        if session.autoflush:
            session.flush()
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            return session.scalars(
                self.statement, params, execution_options={"populate_existing": True}
            ).one_or_none()
        rows, names = self._run(connection, params)
        if not rows:
            return None
        (row,) = rows
        loader = self._loader(cls, names, connection.dialect)
        mapper = sa.inspect(cls)
        key = mapper.identity_key_from_primary_key(
            [row[names.index(column.name)] for column in mapper.primary_key]
        )
        existing = session.identity_map.get(key)
        instance = existing if existing is not None else mapper.class_manager.new_instance()
        for (attribute, processor), value in zip(loader, row, strict=True):
            set_committed_value(instance, attribute, processor(value) if processor else value)
        if existing is None:
            make_transient_to_detached(instance)
            session.add(instance)
        return instance

    def _run(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> tuple[list[tuple[Any, ...]], tuple[str, ...]]:
        compiled = self._compile(connection)
        values = dict(compiled.constants)
        for name, value in params.items():
            processor = compiled.processors.get(name)
            values[name] = processor(value) if processor is not None else value
        driver = connection.connection.driver_connection
        assert driver is not None
        try:
            with driver.cursor() as cursor:
                cursor.execute(compiled.sql, values, prepare=self._prepare)
                names = self._names
                if names is None:  # psycopg builds the description anew on each call: once
                    description = cursor.description
                    names = tuple(c.name for c in description) if description is not None else ()
                    self._names = names
                return (cursor.fetchall() if names else []), names
        except connection.dialect.loaded_dbapi.Error as exc:
            if connection.dialect.is_disconnect(exc, driver, None):
                connection.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                compiled.sql, values, exc, connection.dialect.loaded_dbapi.Error
            ) from exc

    def _compile(self, connection: Connection) -> _Compiled:
        if self._compiled is not None:
            return self._compiled
        dialect = connection.dialect
        compiled = self.statement.compile(dialect=dialect)
        constants: dict[str, Any] = {}
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            if bind.expanding:  # IN (...) lists are rendered per execution: not for this
                raise ValueError(f"{name}: expanding parameters cannot be compiled once")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                if processor is not None:
                    processors[name] = processor
            else:
                value = bind.effective_value
                constants[name] = processor(value) if processor is not None else value
        # Threads that compile at once build the same thing; either may stay.
        self._compiled = _Compiled(compiled.string.encode(), constants, processors)
        return self._compiled

    def _loader(self, cls: type, names: tuple[str, ...], dialect: Any) -> list[tuple[str, Any]]:
        """For each column of a row: the attribute it loads and its type's result processor."""
        loader = self._loaders.get((cls, names))
        if loader is None:
            mapper = sa.inspect(cls)
            table = mapper.local_table
            loader = []
            for name in names:
                column = table.c[name]
                attribute = mapper.get_property_by_column(column).key
                processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
                loader.append((attribute, processor))
            self._loaders[(cls, names)] = loader
        return loader
