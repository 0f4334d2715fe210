"""The services a running process shares: settings, database, Redis and clock.

`create_app` builds one `Runtime` and attaches it to the Flask app; code under a request reaches it
with `current_runtime()` and a request-scoped session with `request_session()`. Code outside Flask
(CLI commands, RQ jobs, benchmarks) builds a `Runtime` directly with `Runtime.from_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g
from redis import Redis
from sqlalchemy.orm import Session

from recpo.clock import Clock, SystemClock
from recpo.config import Settings
from recpo.db import Database
from recpo.redis import connect_redis

EXTENSION_KEY = "recpo"


@dataclass
class Runtime:
    """The shared services of one process."""

    settings: Settings
    database: Database
    redis: Redis | None
    clock: Clock

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        """Connect to what `settings` names."""
        return cls(
            settings=settings,
            database=Database.from_url(settings.database_url),
            redis=connect_redis(settings.redis_url),
            clock=clock or SystemClock(),
        )

    def init_app(self, app: Flask) -> None:
        """Attach to `app` and close each request's session when the request ends."""
        app.extensions[EXTENSION_KEY] = self
        app.teardown_appcontext(_close_request_session)

    def close(self) -> None:
        """Close the Redis connections now rather than when the client is collected (a later
        command would open new ones). The database is its creator's to dispose of."""
        if self.redis is not None:
            self.redis.close()


def current_runtime() -> Runtime:
    """Return the runtime of the current Flask app."""
    return current_app.extensions[EXTENSION_KEY]


def request_session() -> Session:
    """Return this request's session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = current_runtime().database.sessionmaker()
    return g.db_session


def _close_request_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
