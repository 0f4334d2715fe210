"""Benchmark the verifiable log on PostgreSQL; print one JSON object per measurement.

Run as `.venv/bin/python bench/ledger.py [--quick]` with DATABASE_URL naming a PostgreSQL server
(`make bench` sets it). Every figure is printed next to a baseline measured in the same run on the
same machine, so the ratio means something anywhere:

1. appends/s with 1, 8, 32 and 64 concurrent writers (append + commit + `Log.sequence`, i.e. until
   the entry is in the tree) next to raw single-row INSERT + COMMIT at the same concurrency;
2. end-to-end append latency at a steady, paced 1,000 appends/s, and at that rate scaled to this
   host (by its raw commits/s at 32 writers against the 6,000 of the issue's reference machine);
3. `verify_log` entries/s next to plain SHA-256 over the same bytes streamed from the same table;
4. inclusion-proof latency at 1,000,000 entries (bulk-loaded with COPY), direct and over HTTP.

The benchmark makes its own databases (CREATE DATABASE + migrations) and drops them at the end,
even on error. Progress goes to stderr, results to stdout; the last line is a summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/ledger.py` puts bench/ first on sys.path, where this file would shadow the
# `ledger` package; the project root goes there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.support import (  # noqa: E402
    Report,
    fresh_database,
    libpq,
    ms,
    percentile,
    postgres_server,
    scaled,
)
from ledger import merkle  # noqa: E402
from ledger.entries import make_entry  # noqa: E402
from ledger.log import Log, climb, frontier_root, inclusion_proof  # noqa: E402
from ledger.models import Entry  # noqa: E402
from ledger.note import Checkpoint, Signer, generate_signer_key, sign_note  # noqa: E402
from ledger.verify import verify_log  # noqa: E402
from recpo.clock import SystemClock  # noqa: E402
from recpo.db import Database, make_engine  # noqa: E402

ORIGIN = "recpo.bench/ledger"
WRITER_LEVELS = (1, 8, 32, 64)
TARGET_WRITERS = 32
TARGET_RATIO = 0.5
STEADY_RATE = 1000
STEADY_THREADS = 32  # enough that the pacing never waits for a free thread
TARGET_STEADY_P99_MS = 50.0
TARGET_VERIFY_RATE = 250_000
# What the reference 2-core machine measures, for the host-scaled targets (support.Report).
REFERENCE_RAW_COMMITS_PER_S = 6000  # single-row INSERT commits/s at 32 writers
REFERENCE_SHA256_PER_S = 700_000  # plain SHA-256 over the stored entries, streamed
TARGET_PROOF_P99_MS = 20.0
PROOF_CALLS = 2000

REPORT = Report("ledger")
RESULTS = REPORT.results
note = REPORT.note
emit = REPORT.emit


# --- databases ------------------------------------------------------------------------------


def new_log() -> Log:
    signer = Signer.from_text(generate_signer_key(ORIGIN))
    return Log(ORIGIN, signer, secrets.token_bytes(32), SystemClock())


# --- 1. appends/s against raw INSERT commits ------------------------------------------------


def run_closed_loop(
    threads: int, duration: float, op: Callable[[int], None], database: Database
) -> tuple[float, list[float]]:
    """Run `op` in a loop on `threads` threads for `duration` s; return (elapsed, latencies)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)
    deadline = [math.inf]

    def worker(w: int) -> None:
        mine = latencies[w]
        try:
            database.ping()  # open this thread's connection before the clock starts
            ready.wait()
            while time.perf_counter() < deadline[0]:
                t0 = time.perf_counter()
                op(w)
                mine.append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.abort()

    pool = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    start = time.perf_counter()
    deadline[0] = start + duration
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed, [x for per in latencies for x in per]


def interleaved(
    threads: int,
    duration: float,
    slices: int,
    ops: dict[str, Callable[[int], None]],
    database: Database,
) -> dict[str, tuple[float, list[float]]]:
    """Alternate the `ops` in `slices` turns each, `duration` s in all per op.

    Other work on the machine then weighs on each op alike, which keeps their ratio honest.
    Returns op name -> (ops/s, latencies).
    """
    elapsed = dict.fromkeys(ops, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(slices):
        for name, op in ops.items():
            spent, lat = run_closed_loop(threads, duration / slices, op, database)
            elapsed[name] += spent
            latencies[name] += lat
    return {name: (len(latencies[name]) / elapsed[name], latencies[name]) for name in ops}


def ledger_counts(database: Database) -> tuple[int, int, int]:
    """Return (sequenced entries, signed checkpoints, queued entries)."""
    with database.transaction() as session:
        return session.execute(
            sa.text(
                "SELECT (SELECT size FROM ledger_state), "
                "(SELECT count(*) FROM ledger_checkpoints), (SELECT count(*) FROM ledger_queue)"
            )
        ).one()


def raw_inserts(database: Database) -> Callable[[int], None]:
    """The baseline: one single-row INSERT and its COMMIT (into a table made for it)."""
    counter = itertools.count()
    raw_insert = sa.text("INSERT INTO bench_raw (body, at) VALUES (:body, now())")
    with database.transaction() as session:
        session.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, "
                "body bytea NOT NULL, at timestamptz NOT NULL)"
            )
        )

    def raw(w: int) -> None:
        n = next(counter)
        with database.transaction() as session:
            session.execute(raw_insert, {"body": b'{"n":%d,"w":%d}' % (n, w)})

    return raw


def raw_commit_rate(url: str, writers: int, duration: float) -> float:
    """Raw INSERT commits/s with `writers` threads, for a run that did not measure appends."""
    database = Database(make_engine(url, pool_size=writers + 4, max_overflow=4))
    try:
        raw = raw_inserts(database)
        note(f"raw INSERT commits, {writers} writers, {duration} s (to scale the steady rate)")
        elapsed, latencies = run_closed_loop(writers, duration, raw, database)
        return len(latencies) / elapsed
    finally:
        database.dispose()


def bench_appends(
    url: str, duration: float, slices: int, levels: tuple[int, ...]
) -> dict[int, float]:
    """Measure appends/s next to raw commits/s at each level; return writers -> raw commits/s."""
    database = Database(make_engine(url, pool_size=max(levels) + 4, max_overflow=8))
    log = new_log()
    counter = itertools.count()
    raw_rates: dict[int, float] = {}
    try:
        raw = raw_inserts(database)

        def append(w: int) -> None:
            n = next(counter)
            with database.transaction() as session:
                log.append(session, "bench", {"n": n, "w": w})
            log.sequence(database)

        for writers in levels:
            note(
                f"appends: {writers} writer(s), raw INSERT and the log in {slices} alternating "
                f"slices, {duration} s each in all"
            )
            size0, checkpoints0, _ = ledger_counts(database)
            results = interleaved(writers, duration, slices, {"raw": raw, "log": append}, database)
            (raw_rate, raw_lat), (rate, lat) = results["raw"], results["log"]
            raw_rates[writers] = raw_rate
            size, checkpoints, queued = ledger_counts(database)
            # Every append returned only once sequenced: the tree grew by exactly that many.
            if queued or size - size0 != len(lat):
                raise RuntimeError(
                    f"{len(lat)} appends but the tree grew by {size - size0}, {queued} left queued"
                )
            is_target = writers == TARGET_WRITERS
            emit(
                f"appends_per_s_{writers}_writers",
                rate,
                "appends/s",
                baseline=f"raw_insert_commits_per_s_{writers}_writers",
                baseline_value=raw_rate,
                target=f"ratio >= {TARGET_RATIO}" if is_target else None,
                passed=(rate >= TARGET_RATIO * raw_rate) if is_target else None,
                writers=writers,
                appends=len(lat),
                p50_ms=ms(percentile(lat, 50)),
                p99_ms=ms(percentile(lat, 99)),
                baseline_p50_ms=ms(percentile(raw_lat, 50)),
                baseline_p99_ms=ms(percentile(raw_lat, 99)),
                batches=checkpoints - checkpoints0,
                mean_batch=round(len(lat) / max(1, checkpoints - checkpoints0), 1),
            )
    finally:
        database.dispose()
    return raw_rates


# --- 2. latency at a steady rate ------------------------------------------------------------


def bench_steady(url: str, duration: float, raw_rate: float) -> None:
    """Append latency at the issue's steady 1,000 appends/s, and at that rate scaled to this
    host (1,000 x this host's raw commits/s at 32 writers / the reference machine's 6,000)."""
    absolute = steady_latencies(url, duration, STEADY_RATE, STEADY_THREADS)
    host_rate = min(STEADY_RATE, round(scaled(STEADY_RATE, REFERENCE_RAW_COMMITS_PER_S, raw_rate)))
    at_host = (
        absolute
        if host_rate == STEADY_RATE
        else steady_latencies(url, duration, host_rate, STEADY_THREADS)
    )
    p99 = absolute["p99_ms"]
    emit(
        "append_latency_p99_at_steady_rate",
        p99,
        "ms",
        target=f"p99 < {TARGET_STEADY_P99_MS} ms",
        passed=p99 < TARGET_STEADY_P99_MS,
        scaled_target=(
            f"p99 < {TARGET_STEADY_P99_MS} ms at {host_rate} appends/s "
            f"({STEADY_RATE} x {raw_rate:.0f} / {REFERENCE_RAW_COMMITS_PER_S} raw commits/s "
            f"at {TARGET_WRITERS} writers)"
        ),
        scaled_pass=at_host["p99_ms"] < TARGET_STEADY_P99_MS,
        **absolute,
        host_scaled={"offered_rate": host_rate, **at_host},
    )


def steady_latencies(
    url: str, duration: float, rate: int, threads: int, warmup: float = 1.0
) -> dict[str, Any]:
    """Append at a paced `rate` from `threads` threads; return the latency figures."""
    database = Database(make_engine(url, pool_size=threads + 4, max_overflow=4))
    log = new_log()
    skipped = int(rate * warmup)  # the first second warms connections and statement caches
    total = skipped + int(rate * duration)
    slots = itertools.count()
    commit_to_seq: list[float] = []
    start_to_seq: list[float] = []
    due_to_seq: list[float] = []
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)
    t0 = [0.0]

    def worker() -> None:
        try:
            database.ping()
            ready.wait()
            while (k := next(slots)) < total:
                due = t0[0] + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                with database.transaction() as session:
                    log.append(session, "bench", {"slot": k})
                committed = time.perf_counter()
                log.sequence(database)
                done = time.perf_counter()
                if k < skipped:
                    continue
                # list.append is atomic under the GIL
                commit_to_seq.append(done - committed)
                start_to_seq.append(done - began)
                due_to_seq.append(done - due)
        except BaseException as exc:
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.abort()

    try:
        note(f"steady: {rate} appends/s for {warmup} + {duration} s on {threads} threads")
        size0, _, _ = ledger_counts(database)
        pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        t0[0] = time.perf_counter() + 0.05
        ready.wait()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0[0]
        if errors:
            raise errors[0]
        size, _, queued = ledger_counts(database)
        if queued or size - size0 != total:
            raise RuntimeError(f"{total} appends but the tree grew by {size - size0}")
        return {
            "offered_rate": rate,
            "achieved_rate": round(total / elapsed, 1),
            "threads": threads,
            "appends": len(start_to_seq),
            "p50_ms": ms(percentile(start_to_seq, 50)),
            "p99_ms": ms(percentile(start_to_seq, 99)),
            "max_ms": ms(max(start_to_seq)),
            "commit_to_sequenced_p50_ms": ms(percentile(commit_to_seq, 50)),
            "commit_to_sequenced_p99_ms": ms(percentile(commit_to_seq, 99)),
            "scheduled_to_sequenced_p99_ms": ms(percentile(due_to_seq, 99)),
        }
    finally:
        database.dispose()


# --- 3. verification rate -------------------------------------------------------------------


def bench_verify(url: str, count: int) -> None:
    database = Database(make_engine(url))
    log = new_log()
    chunk = 5000
    try:
        note(f"verify: building {count} entries through Log.append + Log.sequence")
        began = time.perf_counter()
        for first in range(0, count, chunk):
            with database.transaction() as session:
                for n in range(first, min(count, first + chunk)):
                    log.append(session, "bench", {"n": n, "note": "verification benchmark"})
            log.sequence(database, batch=chunk)
        note(f"verify: built in {time.perf_counter() - began:.1f} s")

        def plain_hash() -> tuple[int, float]:
            with database.transaction() as session:
                t = time.perf_counter()
                hashed = 0
                rows = session.execute(
                    sa.select(Entry.entry).order_by(Entry.idx).execution_options(yield_per=5000)
                )
                for (data,) in rows:
                    hashlib.sha256(b"\x00" + bytes(data)).digest()
                    hashed += 1
                return hashed, time.perf_counter() - t

        def verify() -> tuple[int, float]:
            with database.transaction() as session:
                t = time.perf_counter()
                report = verify_log(session, log.signer.verifier(), ORIGIN)
                elapsed = time.perf_counter() - t
            if not report.ok or report.entries != count:
                raise RuntimeError(f"verification failed: {report}")
            return report.entries, elapsed

        best_hash = best_verify = 0.0
        for _ in range(2):
            n, t = plain_hash()
            best_hash = max(best_hash, n / t)
            n, t = verify()
            best_verify = max(best_verify, n / t)
        host_target = scaled(TARGET_VERIFY_RATE, REFERENCE_SHA256_PER_S, best_hash)
        emit(
            "verify_entries_per_s",
            best_verify,
            "entries/s",
            baseline="sha256_streamed_entries_per_s",
            baseline_value=best_hash,
            target=f">= {TARGET_VERIFY_RATE} entries/s",
            passed=best_verify >= TARGET_VERIFY_RATE,
            scaled_target=(
                f">= {host_target:.0f} entries/s ({TARGET_VERIFY_RATE} x {best_hash:.0f} / "
                f"{REFERENCE_SHA256_PER_S} SHA-256 entries/s)"
            ),
            scaled_pass=best_verify >= host_target,
            entries=count,
        )
    finally:
        database.dispose()


# --- 4. inclusion proofs at 1M entries ------------------------------------------------------


def bulk_load(url: str, count: int, log: Log, checkpoint_every: int = 100_000) -> bytes:
    """Fill the ledger tables with `count` entries by COPY; return the root."""
    now = dt.datetime.now(dt.UTC)
    leaves: list[bytes] = []
    checkpoints: list[tuple[int, bytes, str, dt.datetime]] = []

    def sign(size: int, root: bytes) -> None:
        text = sign_note(Checkpoint(ORIGIN, size, root).body(), log.signer)
        checkpoints.append((size, root, text, now))

    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cur:
        prev: bytes | None = None
        frontier: dict[int, bytes] = {}
        with cur.copy(
            "COPY ledger_entries (idx, entry, leaf_hash, kind, receipt_code, queue_id, "
            "sequenced_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                data = make_entry("bench", {"n": i, "note": "proof benchmark"}, prev)
                prev = merkle.leaf_hash(data)
                leaves.append(prev)
                copy.write_row((i, data, prev, "bench", None, i + 1, now))
        note(f"proof: {count} entries copied, now the nodes")
        with cur.copy("COPY ledger_nodes (level, idx, hash) FROM STDIN") as copy:
            for i, leaf in enumerate(leaves):
                for row in climb(frontier, i, leaf):
                    copy.write_row(row)
                if (i + 1) % checkpoint_every == 0 or i + 1 == count:
                    sign(i + 1, frontier_root(frontier))
        with cur.copy("COPY ledger_checkpoints (size, root, note, signed_at) FROM STDIN") as copy:
            for row in checkpoints:
                copy.write_row(row)
        cur.execute(
            "UPDATE ledger_state SET size = %s, last_leaf_hash = %s WHERE id = 1", (count, prev)
        )
        cur.execute("SELECT setval('ledger_queue_id_seq', %s)", (count,))
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE ledger_entries")
        cur.execute("VACUUM ANALYZE ledger_nodes")
        cur.execute("VACUUM ANALYZE ledger_checkpoints")
    return checkpoints[-1][1]


def bench_proofs(url: str, count: int, calls: int) -> None:
    log = new_log()
    note(f"proof: bulk-loading {count} entries with COPY")
    began = time.perf_counter()
    root = bulk_load(url, count, log)
    note(f"proof: loaded in {time.perf_counter() - began:.1f} s")
    database = Database.from_url(url)
    rng = random.Random(20261130)
    try:
        with database.transaction() as session:
            leaves = dict(
                session.execute(
                    sa.select(Entry.idx, Entry.leaf_hash).where(Entry.idx.in_([0, count - 1]))
                ).all()
            )
        for index in (0, count - 1):
            with database.transaction() as session:
                path = inclusion_proof(session, index, count)
            if not merkle.verify_inclusion(bytes(leaves[index]), index, count, path, root):
                raise RuntimeError(f"the proof of entry {index} does not verify")

        def direct(index: int) -> None:
            with database.transaction() as session:
                inclusion_proof(session, index, count)

        times = time_calls(direct, count, calls, rng)
        p99 = percentile(times, 99)
        emit(
            "inclusion_proof_p99_ms",
            p99 * 1000,
            "ms",
            target=f"p99 < {TARGET_PROOF_P99_MS} ms",
            passed=p99 * 1000 < TARGET_PROOF_P99_MS,
            entries=count,
            calls=len(times),
            p50_ms=ms(percentile(times, 50)),
            p99_ms=ms(p99),
            max_ms=ms(max(times)),
        )

        from recpo.app import create_app

        with tempfile.TemporaryDirectory() as tmp:
            app = create_app({"DATABASE": database, "INSTANCE_PATH": tmp, "REDIS_URL": ""})
            client = app.test_client()

            def http(index: int) -> None:
                response = client.get(f"/ledger/proof/inclusion?index={index}&size={count}")
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.get_data()!r}")
                response.get_json()

            times = time_calls(http, count, calls, rng)
        p99 = percentile(times, 99)
        emit(
            "inclusion_proof_http_p99_ms",
            p99 * 1000,
            "ms",
            target=f"p99 < {TARGET_PROOF_P99_MS} ms",
            passed=p99 * 1000 < TARGET_PROOF_P99_MS,
            entries=count,
            calls=len(times),
            p50_ms=ms(percentile(times, 50)),
            p99_ms=ms(p99),
            max_ms=ms(max(times)),
        )
    finally:
        database.dispose()


def time_calls(
    call: Callable[[int], None], count: int, calls: int, rng: random.Random
) -> list[float]:
    for _ in range(50):  # warm the connection and the code paths
        call(rng.randrange(count))
    times = []
    for _ in range(calls):
        index = rng.randrange(count)
        t = time.perf_counter()
        call(index)
        times.append(time.perf_counter() - t)
    return times


# --- main -----------------------------------------------------------------------------------


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that drops the databases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs and smaller logs")
    parser.add_argument("--duration", type=float, help="seconds per append measurement")
    parser.add_argument("--verify-entries", type=int, help="entries in the verification log")
    parser.add_argument("--proof-entries", type=int, help="entries in the proof log")
    parser.add_argument("--only", choices=["appends", "steady", "verify", "proof"], action="append")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    duration = args.duration or (1.5 if args.quick else 5.0)
    verify_entries = args.verify_entries or (20_000 if args.quick else 200_000)
    proof_entries = args.proof_entries or (100_000 if args.quick else 1_000_000)
    only = set(args.only or ["appends", "steady", "verify", "proof"])
    signal.signal(signal.SIGTERM, _terminate)
    server = postgres_server()
    began = time.perf_counter()
    if "appends" in only or "steady" in only:
        with fresh_database(server, "append") as url:
            raw_rates = {}
            if "appends" in only:
                raw_rates = bench_appends(url, duration, 3 if args.quick else 5, WRITER_LEVELS)
            if "steady" in only:
                raw_rate = raw_rates.get(TARGET_WRITERS) or raw_commit_rate(
                    url, TARGET_WRITERS, duration
                )
                bench_steady(url, 2.0 if args.quick else 5.0, raw_rate)
    if "verify" in only:
        with fresh_database(server, "verify") as url:
            bench_verify(url, verify_entries)
    if "proof" in only:
        with fresh_database(server, "proof") as url:
            bench_proofs(url, proof_entries, PROOF_CALLS)
    summary = REPORT.summary(args.quick, began)
    return 1 if args.strict and not summary["all_pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
