"""Signing in to the console: password checks, throttled attempts and server-side sessions.

- A session is a row in `console_sessions`; the browser's (signed, HttpOnly, SameSite=Lax)
  session cookie holds only its random token, and the table holds only the token's SHA-256. The
  server ends a session on logout, after `IDLE_TIMEOUT` without a request, after `MAX_AGE`, and
  when its account is deactivated; a copied cookie is then worth nothing.
- Failed sign-ins are counted per account and per client address over a sliding window; beyond
  the limit the password is not even checked. The counts live in Redis when it is configured
  (shared by every web process), else in the database.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from redis import Redis
from sqlalchemy.orm import Session

from admin.models import ConsoleSession, LoginFailure, User
from admin.users import hash_password, verify_password
from recpo.db import Database

IDLE_TIMEOUT = dt.timedelta(minutes=30)
MAX_AGE = dt.timedelta(hours=12)
# last_seen_at is written at most this often, so that reading pages costs no write each time.
TOUCH_INTERVAL = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Limit:
    """At most `attempts` failures per `window` for one key."""

    attempts: int
    window: dt.timedelta


ACCOUNT_LIMIT = Limit(attempts=5, window=dt.timedelta(minutes=15))
ADDRESS_LIMIT = Limit(attempts=20, window=dt.timedelta(minutes=15))


@functools.cache
def _dummy_hash() -> str:
    """A hash checked when the account does not exist, so the answer takes as long either way."""
    return hash_password(secrets.token_urlsafe(16))


class LoginThrottle(Protocol):
    """Counts failed sign-ins per key ("user:<name>", "addr:<address>")."""

    def failures(self, key: str, since: dt.datetime, cap: int) -> int:
        """Return the failures of `key` after `since`, counting no further than `cap`."""
        ...

    def record(self, key: str, now: dt.datetime) -> None:
        """Count one failure for `key`."""
        ...

    def clear(self, key: str) -> None:
        """Forget the failures of `key` (after a successful sign-in)."""
        ...


class DatabaseThrottle:
    """Failures as rows of `console_login_failures` (the embedded default, without Redis)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def failures(self, key: str, since: dt.datetime, cap: int) -> int:
        recent = (
            sa.select(LoginFailure.id)
            .where(LoginFailure.key == key, LoginFailure.at > since)
            .limit(cap)
            .subquery()
        )
        with self.database.transaction() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(recent)) or 0

    def record(self, key: str, now: dt.datetime) -> None:
        with self.database.transaction() as session:
            # Rows older than the longest window never count again: drop this key's.
            window = max(ACCOUNT_LIMIT.window, ADDRESS_LIMIT.window)
            session.execute(
                sa.delete(LoginFailure).where(
                    LoginFailure.key == key, LoginFailure.at < now - window
                )
            )
            session.add(LoginFailure(key=key, at=now))

    def clear(self, key: str) -> None:
        with self.database.transaction() as session:
            session.execute(sa.delete(LoginFailure).where(LoginFailure.key == key))


class RedisThrottle:
    """Failures as members of one sorted set per key, scored by time (shared by all processes)."""

    def __init__(self, redis: Redis, prefix: str = "recpo:console:login:") -> None:
        self.redis = redis
        self.prefix = prefix

    def failures(self, key: str, since: dt.datetime, cap: int) -> int:
        return min(self.redis.zcount(self.prefix + key, f"({since.timestamp()}", "+inf"), cap)

    def record(self, key: str, now: dt.datetime) -> None:
        window = max(ACCOUNT_LIMIT.window, ADDRESS_LIMIT.window)
        name = self.prefix + key
        stamp = now.timestamp()
        with self.redis.pipeline() as pipe:
            pipe.zremrangebyscore(name, "-inf", stamp - window.total_seconds())
            pipe.zadd(name, {f"{stamp}:{secrets.token_hex(4)}": stamp})
            pipe.expire(name, int(window.total_seconds()) + 60)
            pipe.execute()

    def clear(self, key: str) -> None:
        self.redis.delete(self.prefix + key)


def make_throttle(database: Database, redis: Redis | None) -> LoginThrottle:
    """Return the throttle for this deployment: Redis when configured, else the database."""
    return RedisThrottle(redis) if redis is not None else DatabaseThrottle(database)


class SignInRefused(Exception):
    """A sign-in that did not succeed; `throttled` when the password was not even checked."""

    def __init__(self, throttled: bool) -> None:
        super().__init__("throttled" if throttled else "wrong name or password")
        self.throttled = throttled


def _keys(name: str, address: str) -> list[tuple[str, Limit]]:
    return [(f"user:{name}"[:120], ACCOUNT_LIMIT), (f"addr:{address}"[:120], ADDRESS_LIMIT)]


def authenticate(
    database: Database,
    throttle: LoginThrottle,
    name: str,
    password: str,
    address: str,
    now: dt.datetime,
) -> User:
    """Return the active user with this name and password; raise `SignInRefused` otherwise."""
    name = name.strip().lower()
    keys = _keys(name, address)
    for key, limit in keys:
        if throttle.failures(key, now - limit.window, limit.attempts) >= limit.attempts:
            raise SignInRefused(throttled=True)
    with database.transaction() as session:
        user = session.scalars(sa.select(User).where(User.name == name)).one_or_none()
    if user is None:
        verify_password(User(password_hash=_dummy_hash()), password)
        ok = False
    else:
        ok = verify_password(user, password) and user.active
    if not ok:
        for key, _limit in keys:
            throttle.record(key, now)
        raise SignInRefused(throttled=False)
    throttle.clear(keys[0][0])
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User, now: dt.datetime) -> str:
    """Open a console session for `user`; return the token for the cookie."""
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(token_hash=_digest(token), user_id=user.id, created_at=now, last_seen_at=now)
    )
    return token


def resume_session(
    session: Session, token: str, now: dt.datetime, idle_timeout: dt.timedelta = IDLE_TIMEOUT
) -> User | None:
    """Return the user of a live session (and note the activity), or None.

    A session that has been idle too long, is too old, or whose account was deactivated is ended
    here, so that it cannot come back.
    """
    row = session.get(ConsoleSession, _digest(token))
    if row is None or row.ended_at is not None:
        return None
    user = row.user
    if now - row.last_seen_at > idle_timeout or now - row.created_at > MAX_AGE or not user.active:
        row.ended_at = now
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
    return user


def end_session(session: Session, token: str, now: dt.datetime) -> None:
    """End the session with this token (logout)."""
    row = session.get(ConsoleSession, _digest(token))
    if row is not None and row.ended_at is None:
        row.ended_at = now


def end_sessions_of(session: Session, user: User, now: dt.datetime) -> None:
    """End every open session of `user` (deactivated, or role changed)."""
    session.execute(
        sa.update(ConsoleSession)
        .where(ConsoleSession.user_id == user.id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=now)
    )
