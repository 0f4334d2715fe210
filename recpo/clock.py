"""The clock, injectable so that expiry and timestamps can be tested without sleeping."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

LIMA = ZoneInfo("America/Lima")


class Clock(Protocol):
    """Something that tells the time, always timezone-aware UTC."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """Return the current time in UTC."""
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that stands still until told to move (tests, simulations)."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware start")
        self._now = start.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        """Return the clock's current time."""
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        """Move the clock forward by `delta`."""
        self._now += delta

    def set(self, when: dt.datetime) -> None:
        """Jump to `when`."""
        self._now = when.astimezone(dt.UTC)


def lima_date(when: dt.datetime) -> dt.date:
    """Return the calendar date in Peru at instant `when`."""
    return when.astimezone(LIMA).date()
