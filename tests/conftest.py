"""Fixtures on real services: a fresh PostgreSQL database migrated once, a savepoint per test.

PostgreSQL and Redis come from DATABASE_URL and REDIS_URL (`make test` sets them, starting servers
where none run). A test that needs a service and cannot reach it fails; it never skips.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from redis import Redis
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from gateway.dispatch import flush_relays
from migrations import upgrade
from recpo.app import create_app
from recpo.clock import FixedClock
from recpo.db import Database, make_engine
from recpo.runtime import EXTENSION_KEY as RUNTIME_KEY

NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)

AppFactory = Callable[[Mapping[str, Any]], Flask]  # the `make_app` fixture


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the tests with `make test`, which provides it")
    return value


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """Create a database on the test server, migrate it to head, and drop it afterwards."""
    server = make_url(_required_env("DATABASE_URL"))
    if server.get_backend_name() != "postgresql":
        pytest.fail(f"DATABASE_URL must name a PostgreSQL server, not {server.get_backend_name()}")
    name = f"recpo_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL unreachable at {server.host}:{server.port}: {exc}")
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's database, migrated once; each test runs in a rolled-back transaction."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture
def committing_database() -> Iterator[Database]:
    """A database of the test's own where work really commits (concurrency, tampering)."""
    with new_postgres_database() as url:
        database = Database.from_url(url)
        try:
            yield database
        finally:
            database.dispose()


@pytest.fixture(scope="session")
def engine(postgres_url: str) -> Iterator[Engine]:
    eng = make_engine(postgres_url)
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as conn:
        transaction = conn.begin()
        yield conn
        if transaction.is_active:
            transaction.rollback()


@pytest.fixture
def database(connection: Connection) -> Database:
    """The project's Database bound to the test's transaction (commits become savepoints)."""
    return Database(connection)


@pytest.fixture
def db_session(database: Database) -> Iterator[Session]:
    with database.sessionmaker() as session:
        yield session


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def redis_url() -> str:
    return _required_env("REDIS_URL")


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """The test Redis database, emptied before each test that uses it."""
    client = Redis.from_url(redis_url, socket_connect_timeout=3)
    # Earlier tests' apps may still hold outbox ids for RQ (their relays linger): in first.
    flush_relays()
    try:
        client.flushdb()
    except Exception as exc:
        pytest.fail(f"Redis unreachable: {exc}")
    yield client
    client.close()


@pytest.fixture
def instance_path(tmp_path: Path) -> Path:
    path = tmp_path / "instance"
    path.mkdir()
    return path


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """`create_app` for a test: the apps' Redis connections are closed when the test ends.

    An app left to the garbage collector is collected as a whole (apps are full of reference
    cycles), in no set order: a socket can be finalised before the connection that would have
    closed it, and its "unclosed socket" ResourceWarning then fails whatever test is running.
    """
    made: list[Flask] = []

    def make(config: Mapping[str, Any]) -> Flask:
        made.append(create_app(config))
        return made[-1]

    yield make
    flush_relays()  # the relays' waiting rows go to RQ while the connections are open
    for app in made:
        app.extensions[RUNTIME_KEY].close()


@pytest.fixture
def app(
    make_app: AppFactory,
    database: Database,
    redis: Redis,
    redis_url: str,
    clock: FixedClock,
    instance_path: Path,
) -> Flask:
    return make_app(
        {
            "DATABASE": database,
            "REDIS_URL": redis_url,
            "CLOCK": clock,
            "INSTANCE_PATH": str(instance_path),
            # The app talks to `database`; a command that opens its own engine must not reach
            # the server's real databases.
            "DATABASE_URL": "postgresql+psycopg://nobody@unused.invalid/unused",
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file, as the embedded default uses."""
    url = f"sqlite:///{tmp_path / 'recpo.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    database = Database.from_url(sqlite_url)
    yield database
    database.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request) -> Database:
    """The test's PostgreSQL transaction, or a migrated SQLite file: a test that takes it runs on
    both."""
    return request.getfixturevalue(
        "database" if request.param == "postgresql" else "sqlite_database"
    )


@pytest.fixture
def backend_session(backend: Database) -> Iterator[Session]:
    """A session in a transaction that the test may break; it is rolled back afterwards."""
    with backend.sessionmaker() as session:
        session.begin()
        yield session
        session.rollback()
