"""Benchmark the REINFO import on PostgreSQL against baselines measured in the same run.

    .venv/bin/python bench/reinfo_import.py [--rows N] [--batch-size B]

Generates a REINFO-like CSV (semicolons, Latin-1 names, valid RUCs, about 1.6 registrations per
RUC, códigos únicos written in the usual three ways) and a fresh database on the server named by
DATABASE_URL (the local server when unset, as `make test` does); the database is dropped at the end.

Measured, one JSON object per line:

- ``csv_parse``: reading and splitting the file with `csv.reader` alone (the floor for any
  importer);
- ``raw_insert``: the same rows, already parsed, inserted with psycopg ``executemany`` in one
  transaction (the floor for any writer);
- ``import_first``: `import_reinfo` into the empty table (every row inserted), committed;
- ``import_again``: the same file once more (every row unchanged, nothing written);
- ``memory``: `import_reinfo` of N/10 and of N rows, each in a child process that rolls back,
  reporting its peak RSS and the peak of Python allocations (tracemalloc) during the import.

The last line is a summary against the target: >= 20,000 rows/s, memory flat in the file size.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

# `python bench/reinfo_import.py` puts bench/ first on sys.path, where bench/ledger.py would shadow
# the `ledger` package (which the migrations import); the project root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.support import fresh_database, libpq, postgres_server  # noqa: E402
from recpo.db import Database  # noqa: E402
from registry.identifiers import normalise_codigo_unico, ruc_check_digit  # noqa: E402
from registry.imports import BATCH_SIZE, ImportSummary, import_reinfo  # noqa: E402

TARGET_ROWS_PER_S = 20_000
SNAPSHOT = dt.date(2026, 11, 30)
NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)
HEADER = ["RUC", "Nombre", "Código Único", "Derecho Minero", "Departamento", "Provincia"]
HEADER += ["Distrito", "Estado", "Ubigeo"]

SURNAMES = (
    *("QUISPE", "MAMANI", "CONDORI", "HUAMÁN", "APAZA", "CCORI", "TICONA", "PEÑA", "MUÑOZ"),
    *("ÑAUPARI", "CHOQUEHUANCA", "YUPANQUI", "HUANCA", "COAQUIRA", "CALLATA", "GUTIÉRREZ"),
    *("RAMÍREZ", "NÚÑEZ", "LÓPEZ", "PÉREZ", "CÁCERES", "ZÚÑIGA", "QUIÑONES"),
)
GIVEN = (
    *("JUANA", "PEDRO", "ROSA", "JOSÉ", "MARÍA", "ÁNGEL", "INÉS", "RAÚL", "SÓCRATES", "LUCÍA"),
    *("MOISÉS", "ÑUSTA", "EFRAÍN"),
)
RIGHTS = ("RINCONADA", "ANANEA", "HUEPETUHE", "INAMBARI", "LABERINTO", "CHALA", "SEÑOR DE QOYLLUR")
PLACES = (  # department, province, district, ubigeo (INEI)
    ("PUNO", "SAN ANTONIO DE PUTINA", "ANANEA", "211002"),
    ("MADRE DE DIOS", "MANU", "HUEPETUHE", "170204"),
    ("MADRE DE DIOS", "TAMBOPATA", "INAMBARI", "170102"),
    ("MADRE DE DIOS", "TAMBOPATA", "LABERINTO", "170104"),
    ("AREQUIPA", "CARAVELÍ", "CHALA", "040307"),
)
STATUSES = ("VIGENTE",) * 85 + ("SUSPENDIDO",) * 12 + ("EXCLUIDO",) * 3
REGISTRATIONS_PER_RUC = (1,) * 60 + (2,) * 25 + (3,) * 10 + (4,) * 3 + (6,) * 2  # mean 1.6


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "reinfo_import", **fields}, ensure_ascii=False), flush=True)


# --- the file --------------------------------------------------------------------------------


def _ruc(rng: random.Random, used: set[str]) -> str:
    while True:
        if rng.random() < 0.9:  # natural persons: 10 + DNI
            first10 = f"10{rng.randrange(10_000_000, 80_000_000):08d}"
        else:
            first10 = f"20{rng.randrange(10**8):08d}"
        if first10 not in used:
            used.add(first10)
            return first10 + str(ruc_check_digit(first10))


def _codigo(serial: int, rng: random.Random) -> str:
    digits = f"{serial:09d}"
    style = rng.random()
    if style < 0.3:  # 01-01491-08
        return f"{digits[:2]}-{digits[2:7]}-{digits[7:]}"
    if style < 0.5 and digits[0] == "0":  # the leading zero left out
        return digits[1:]
    return digits


def generate(path: Path, rows: int, seed: int = 59489062) -> int:
    """Write `rows` REINFO rows as a semicolon-separated Latin-1 CSV; return how many RUCs."""
    rng = random.Random(seed)
    used: set[str] = set()
    serial = 10_000_000  # códigos únicos are distinct across the file
    with path.open("w", encoding="latin-1", newline="") as file:
        writer = csv.writer(file, delimiter=";", lineterminator="\r\n")
        writer.writerow(HEADER)
        written = 0
        while written < rows:
            ruc = _ruc(rng, used)
            if ruc.startswith("10"):
                name = f"{rng.choice(SURNAMES)} {rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
            else:
                name = f"MINERA {rng.choice(SURNAMES)} {rng.choice(RIGHTS)} S.A.C."
            for _ in range(min(rng.choice(REGISTRATIONS_PER_RUC), rows - written)):
                serial += rng.randrange(1, 50)
                department, province, district, ubigeo = rng.choice(PLACES)
                right = f"{rng.choice(RIGHTS)} {rng.randrange(1, 300)}"
                status = rng.choice(STATUSES)
                codigo = _codigo(serial, rng)
                writer.writerow(
                    [ruc, name, codigo, right, department, province, district, status, ubigeo]
                )
                written += 1
    return len(used)


# --- the database ----------------------------------------------------------------------------


def count_rows(dsn: str, snapshot: dt.date | None = None) -> int:
    query = "SELECT count(*) FROM reinfo_registrations"
    with psycopg.connect(dsn) as conn:
        if snapshot is None:
            return conn.execute(query).fetchone()[0]
        return conn.execute(query + " WHERE snapshot_date = %s", (snapshot,)).fetchone()[0]


# --- measurements ----------------------------------------------------------------------------


def parse_baseline(path: Path) -> list[list[str]]:
    with path.open(encoding="latin-1", newline="") as file:
        reader = csv.reader(file, delimiter=";")
        next(reader)
        return list(reader)


def raw_insert(dsn: str, rows: list[list[str]]) -> float:
    """Insert the parsed rows with executemany in one transaction; return rows/s."""
    params = [
        (
            r[0],
            normalise_codigo_unico(r[2]),
            r[1],
            r[3],
            r[4],
            r[5],
            r[6],
            r[8],
            r[7],
            SNAPSHOT,
            NOW,
        )
        for r in rows
    ]
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO reinfo_registrations (ruc, codigo_unico, holder_name, mining_right,"
            " department, province, district, ubigeo, status, snapshot_date, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            params,
        )
    seconds = time.perf_counter() - started
    emit(measure="raw_insert", **_rate(len(params), seconds))
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE status_changes, reinfo_registrations")
    return len(params) / seconds


def timed_import(
    url: str, path: Path, batch_size: int, snapshot: dt.date
) -> tuple[ImportSummary, float]:
    """Import `path` in one committed transaction; return the summary and the seconds taken."""
    database = Database.from_url(url)
    try:
        database.ping()  # connect before the clock starts
        started = time.perf_counter()
        with database.transaction() as session:
            summary = import_reinfo(
                session, path, snapshot_date=snapshot, now=NOW, batch_size=batch_size
            )
        return summary, time.perf_counter() - started
    finally:
        database.dispose()


def _rate(rows: int, seconds: float) -> dict[str, object]:
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def _summary_fields(summary: ImportSummary) -> dict[str, int]:
    return {k: getattr(summary, k) for k in ("inserted", "updated", "unchanged", "rejected")}


def _rss_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, in KiB, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child_memory(url: str, path: Path, batch_size: int, trace: bool) -> None:
    """In a child process: import `path`, roll back, print peak memory as JSON.

    The peak RSS is reset just before the import (``/proc/self/clear_refs``), so it covers the
    import alone, not the interpreter start-up (nor the parent, whose peak `ru_maxrss` inherits).
    """
    database = Database.from_url(url)
    database.ping()  # connect and warm up before measuring
    if trace:
        tracemalloc.start()
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = _rss_kib("VmRSS")
    session = database.sessionmaker()
    session.begin()
    summary = import_reinfo(session, path, snapshot_date=SNAPSHOT, now=NOW, batch_size=batch_size)
    session.rollback()
    session.close()
    result = {"rows": summary.rows, "rss_before_kib": rss_before, "rss_peak_kib": _rss_kib("VmHWM")}
    if trace:
        result["traced_peak_kib"] = tracemalloc.get_traced_memory()[1] // 1024
    database.dispose()
    print(json.dumps(result))


def measure_memory(url: str, path: Path, rows: int, batch_size: int) -> dict[str, int]:
    results: dict[str, int] = {}
    for trace in (True, False):  # RSS from the run without tracemalloc, which adds its own
        command = [sys.executable, __file__, "--child", url, str(path), str(batch_size)]
        output = subprocess.run(
            [*command, "--trace"] if trace else command,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results |= json.loads(output.splitlines()[-1])
    emit(
        measure="memory",
        rows=rows,
        rss_peak_mib=round(results["rss_peak_kib"] / 1024, 1),
        rss_import_mib=round((results["rss_peak_kib"] - results["rss_before_kib"]) / 1024, 1),
        traced_peak_mib=round(results["traced_peak_kib"] / 1024, 2),
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    server = postgres_server()

    with (
        tempfile.TemporaryDirectory(prefix="reinfo-bench-") as tmp,
        fresh_database(server, "reinfo") as url,
    ):
        big, small = Path(tmp) / "reinfo.csv", Path(tmp) / "reinfo-small.csv"
        rucs = generate(big, args.rows)
        generate(small, args.rows // 10)  # the same generator: the first tenth of `big`
        emit(
            measure="setup",
            rows=args.rows,
            registrations_per_ruc=round(args.rows / rucs, 2),
            file_mib=round(big.stat().st_size / 2**20, 1),
            batch_size=args.batch_size,
            python=sys.version.split()[0],
            server=make_url(server).render_as_string(hide_password=True).split("@")[-1],
        )

        started = time.perf_counter()
        parsed = parse_baseline(big)
        parse_rate = len(parsed) / (time.perf_counter() - started)
        emit(measure="csv_parse", **_rate(len(parsed), len(parsed) / parse_rate))
        raw_rate = raw_insert(libpq(url), parsed)
        del parsed

        # Memory of the first import (every row inserted), in children that roll back.
        small_mem = measure_memory(url, small, args.rows // 10, args.batch_size)
        big_mem = measure_memory(url, big, args.rows, args.batch_size)
        assert count_rows(libpq(url)) == 0

        first, seconds = timed_import(url, big, args.batch_size, SNAPSHOT)
        emit(measure="import_first", **_rate(first.rows, seconds), **_summary_fields(first))
        first_rate = first.rows / seconds
        assert first.inserted == args.rows == count_rows(libpq(url)), first

        again, seconds = timed_import(url, big, args.batch_size, SNAPSHOT)
        emit(measure="import_again", **_rate(again.rows, seconds), **_summary_fields(again))
        again_rate = again.rows / seconds
        assert again.unchanged == args.rows, again

        # The usual monthly case: a newer list, mostly the same; every row's snapshot_date moves.
        newer = SNAPSHOT + dt.timedelta(days=30)
        bumped, seconds = timed_import(url, big, args.batch_size, newer)
        emit(measure="import_newer_list", **_rate(bumped.rows, seconds), **_summary_fields(bumped))
        assert bumped.unchanged == args.rows == count_rows(libpq(url), newer), bumped

    extra_rows = args.rows - args.rows // 10
    traced_growth = (big_mem["traced_peak_kib"] - small_mem["traced_peak_kib"]) * 1024
    emit(
        measure="summary",
        target_rows_per_s=TARGET_ROWS_PER_S,
        import_first_rows_per_s=round(first_rate),
        import_again_rows_per_s=round(again_rate),
        import_first_vs_raw_insert=round(first_rate / raw_rate, 2),
        import_first_vs_csv_parse=round(first_rate / parse_rate, 3),
        rss_growth_mib=round((big_mem["rss_peak_kib"] - small_mem["rss_peak_kib"]) / 1024, 1),
        traced_growth_bytes_per_extra_row=round(traced_growth / extra_rows, 1),
        meets_speed=min(first_rate, again_rate) >= TARGET_ROWS_PER_S,
        # Flat: less than a pointer's worth of memory kept per additional row.
        memory_flat=traced_growth / extra_rows < 8,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_memory(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), "--trace" in sys.argv)
    else:
        main()
