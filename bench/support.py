"""What every benchmark shares: JSON-line results, percentiles, and a scratch database."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for printing."""
    return round(seconds * 1000, 3)


class Report:
    """One benchmark's measurements, printed as JSON lines and kept for its summary.

    A target the issue states in absolute units on its reference machine (appends/s, entries/s,
    sends/s) is judged as stated (`target`, `pass`). When the same run measured the baseline the
    issue quotes for that machine, the target is also scaled by how this host's baseline compares
    (`host_scaled_target`, `host_scaled_pass`): machines here are shared and their speed varies
    several-fold between days, so only that second verdict says whether the code keeps the pace
    the issue asks for. The summary lists both.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.results: list[dict[str, Any]] = []

    def note(self, message: str) -> None:
        """Progress for the reader, on stderr (stdout stays machine-readable)."""
        print(f"[bench/{self.tag}] {message}", file=sys.stderr, flush=True)

    def emit(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: str | None = None,
        baseline_value: float | None = None,
        target: str | None = None,
        passed: bool | None = None,
        scaled_target: str | None = None,
        scaled_pass: bool | None = None,
        **extra: Any,
    ) -> None:
        """Print one measurement as a JSON line and remember it for the summary."""
        ratio = round(value / baseline_value, 3) if baseline_value else None
        record = {
            "name": name,
            "value": round(value, 3),
            "unit": unit,
            "baseline": baseline,
            "baseline_value": None if baseline_value is None else round(baseline_value, 3),
            "ratio": ratio,
            "target": target,
            "pass": passed,
            **(
                {"host_scaled_target": scaled_target, "host_scaled_pass": scaled_pass}
                if scaled_target is not None
                else {}
            ),
            **extra,
        }
        self.results.append(record)
        print(json.dumps(record, ensure_ascii=False), flush=True)

    def summary(self, quick: bool, began: float) -> dict[str, Any]:
        """Print and return the last line: which targets passed, as stated and host-scaled."""
        judged = [r for r in self.results if r["pass"] is not None]
        scaled = [r for r in judged if r.get("host_scaled_pass") is not None]
        record = {
            "name": "summary",
            "quick": quick,
            "cpus": os.cpu_count(),
            "seconds": round(time.perf_counter() - began, 1),
            "targets": len(judged),
            "passed": [r["name"] for r in judged if r["pass"]],
            "failed": [r["name"] for r in judged if not r["pass"]],
            "all_pass": all(r["pass"] for r in judged),
            # A failure above that is a pass here failed on this host's speed, not the code's.
            "host_scaled_passed": [r["name"] for r in scaled if r["host_scaled_pass"]],
            "host_scaled_failed": [r["name"] for r in scaled if not r["host_scaled_pass"]],
        }
        print(json.dumps(record), flush=True)
        return record


def scaled(target: float, reference_baseline: float, baseline: float) -> float:
    """`target` as it applies on a host whose baseline is `baseline`, where the issue's
    reference machine measured `reference_baseline`."""
    return target * baseline / reference_baseline


# --- databases --------------------------------------------------------------------------------

LOCAL_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_server() -> sa.URL:
    """The PostgreSQL server to benchmark on: DATABASE_URL (as `make bench` sets), else local."""
    url = make_url(os.environ.get("DATABASE_URL") or LOCAL_SERVER)
    if url.get_backend_name() != "postgresql":
        sys.exit(f"DATABASE_URL must name a PostgreSQL server, not {url.get_backend_name()}")
    return url


def libpq(url: sa.URL | str) -> str:
    """A plain libpq URL (no SQLAlchemy driver name) for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(server: sa.URL | str, tag: str) -> Iterator[str]:
    """Create and migrate a database of our own; drop it afterwards, whatever happened."""
    from migrations import upgrade

    logging.getLogger("alembic").setLevel(logging.WARNING)
    server = make_url(server)
    name = f"recpo_bench_{tag}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = libpq(server)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"[bench] dropped database {name}", file=sys.stderr, flush=True)
