"""Reading query parameters strictly: unknown, repeated or malformed parameters are a 400.

Dates are calendar days in Peru (America/Lima, UTC-5 all year): ``from=2026-11-23&to=2026-11-29``
selects what happened from Monday 00:00 to Sunday 24:00 Lima time, both days included.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from flask import request

from gateway.partner_api.core import invalid
from recpo.clock import LIMA

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_ID = 2**31 - 1  # ids are 32-bit integers
_UBIGEO = re.compile(r"[0-9]{2}(?:[0-9]{2}){0,2}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Query:
    """The request's query string, checked against the parameters an endpoint knows."""

    def __init__(self, known: Iterable[str]) -> None:
        self.values: dict[str, str] = {}
        known = set(known)
        for name, values in request.args.lists():
            if name not in known:
                expected = ", ".join(sorted(known)) or "none"
                raise invalid(name, f"unknown parameter (this endpoint takes: {expected})")
            if len(values) > 1:
                raise invalid(name, "given more than once")
            value = values[0]
            if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
                raise invalid(name, "contains control characters")
            self.values[name] = value

    def text(self, name: str, max_length: int = 100) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        value = " ".join(value.split())
        if not value:
            raise invalid(name, "is empty")
        if len(value) > max_length:
            raise invalid(name, f"is longer than {max_length} characters")
        return value

    def choice(self, name: str, choices: Iterable[str], default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        allowed = list(choices)
        if value not in allowed:
            raise invalid(name, f"must be one of {', '.join(allowed)}")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.values.get(name)
        if value is None:
            return None
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise invalid(name, "must be true or false")

    def date(self, name: str, required: bool = False) -> dt.date | None:
        value = self.values.get(name)
        if value is None:
            if required:
                raise invalid(name, "is required (a date, YYYY-MM-DD)")
            return None
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise invalid(name, "must be a date written YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise invalid(name, f"{value} is not a calendar date") from None

    def date_range(self, required: bool = False) -> DateRange:
        start, end = self.date("from", required), self.date("to", required)
        if start is not None and end is not None and start > end:
            raise invalid("from", "must not be after 'to'")
        return DateRange(start, end)

    def limit(self) -> int:
        value = self.values.get("limit")
        if value is None:
            return DEFAULT_LIMIT
        if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_LIMIT:
            raise invalid("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        return int(value)

    def ubigeo(self) -> str | None:
        value = self.values.get("ubigeo")
        if value is None:
            return None
        if not _UBIGEO.fullmatch(value):
            raise invalid("ubigeo", "must be 2 (department), 4 (province) or 6 (district) digits")
        return value

    def cursor(self, kind: str) -> int | None:
        value = self.values.get("cursor")
        if value is None:
            return None
        after = decode_cursor(kind, value)
        if after is None:
            raise invalid("cursor", "is not a cursor this endpoint gave out")
        return after


@dataclass(frozen=True)
class DateRange:
    """Calendar days in Lima, both ends included; either end may be open."""

    start: dt.date | None
    end: dt.date | None

    @property
    def start_utc(self) -> dt.datetime | None:
        if self.start is None:
            return None
        return dt.datetime.combine(self.start, dt.time.min, tzinfo=LIMA).astimezone(dt.UTC)

    @property
    def end_utc(self) -> dt.datetime | None:
        """The first instant after the range (exclusive), or None when unbounded."""
        if self.end is None or self.end == dt.date.max:
            return None
        following = self.end + dt.timedelta(days=1)
        return dt.datetime.combine(following, dt.time.min, tzinfo=LIMA).astimezone(dt.UTC)

    def where(self, column: object) -> list:
        clauses = []
        if (start := self.start_utc) is not None:
            clauses.append(column >= start)
        if (end := self.end_utc) is not None:
            clauses.append(column < end)
        return clauses


def encode_cursor(kind: str, last_id: int) -> str:
    """An opaque cursor: where the next page starts, for one kind of list."""
    return base64.urlsafe_b64encode(f"{kind}:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, text: str) -> int | None:
    if not _CURSOR.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, number = raw.partition(":")
    if prefix != kind or not re.fullmatch(r"[0-9]{1,10}", number) or int(number) > MAX_ID:
        return None
    return int(number)
