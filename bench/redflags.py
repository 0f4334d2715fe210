"""Benchmark the red-flag rules R1–R10 over 100,000 transactions on PostgreSQL.

    .venv/bin/python bench/redflags.py [--transactions N] [--sellers S] [--seed X]

Creates a fresh database on the server named by DATABASE_URL (the local server when unset, as
`make test` does), migrated to head and dropped at the end; seeds it with COPY: buyers, miners
with their REINFO registrations and phones (a few phones shared by three people), a reference price
per day, and N transactions spread over the last 30 days (doré, sponge, native gold, ore, some
mercury; some priced off the reference, some just below the structuring threshold, some declared
outside the seller's registrations, some from another seller's mining right, some sellers
suspended since). Then it runs the nightly
evaluation (`run_nightly`, the whole window, committed) and runs it again (nothing new may be
raised), and times the on-proposal evaluation of a sample of transactions (rolled back).

Measured, one JSON object per line: ``setup``; ``rule`` per rule (transactions in the window
evaluated per second, findings, new flags); ``nightly`` (all rules); ``nightly_again``;
``proposal`` (milliseconds per on-proposal evaluation); the last line is the summary against the
target: >= 5,000 transactions/s over all rules.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

# `python bench/redflags.py` puts bench/ first on sys.path, where bench/ledger.py would shadow the
# `ledger` package (which the migrations import); the project root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.support import fresh_database, libpq, postgres_server  # noqa: E402
from recpo.db import Database  # noqa: E402
from registry.identifiers import natural_person_ruc  # noqa: E402
from registry.models import Transaction  # noqa: E402
from registry.prices import pen_per_fine_gram  # noqa: E402
from registry.redflags import Thresholds, evaluate_proposal, run_nightly  # noqa: E402

TARGET_PER_S = 5_000
NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)
DAYS = 30
BUYERS = ("20131312955", "20131368829", "20295613620", "20100079501")
PLACES = (  # department, province, district, ubigeo (INEI)
    ("PUNO", "SAN ANTONIO DE PUTINA", "ANANEA", "211002"),
    ("PUNO", "SAN ANTONIO DE PUTINA", "PUTINA", "211001"),
    ("PUNO", "SANDIA", "CUYOCUYO", "211203"),
    ("MADRE DE DIOS", "MANU", "HUEPETUHE", "170204"),
    ("MADRE DE DIOS", "TAMBOPATA", "INAMBARI", "170102"),
    ("MADRE DE DIOS", "TAMBOPATA", "LABERINTO", "170104"),
    ("AREQUIPA", "CARAVELI", "CHALA", "040307"),
    ("AYACUCHO", "LUCANAS", "SANCOS", "050621"),
)
MATERIALS = ("dore",) * 45 + ("sponge",) * 25 + ("native",) * 15 + ("ore",) * 14 + ("mercury",)


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "redflags", **fields}, ensure_ascii=False), flush=True)


# --- seeding ------------------------------------------------------------------------------------


def _copy(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows) -> int:
    count = 0
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def seed(dsn: str, transactions: int, sellers: int, rng: random.Random) -> dict[str, int]:
    """COPY the registrants, registrations, phones, prices and transactions; return counts."""
    created = NOW - dt.timedelta(days=400)
    registrants = []
    for n, ruc in enumerate(BUYERS, start=1):
        registrants.append(
            (n, "plant", "ruc", ruc, f"PLANTA {n}", "es", "active", created, created)
        )
    first_seller = len(registrants) + 1
    seller_rucs: dict[int, str] = {}
    for n in range(sellers):
        ident, dni = first_seller + n, f"{40000000 + n:08d}"
        registrants.append(
            (ident, "miner", "dni", dni, f"MINERO {n}", "es", "active", created, created)
        )
        seller_rucs[ident] = natural_person_ruc(dni)
    # Each seller's registrations: one or two places; 3 % of sellers suspended since.
    places: dict[int, list[tuple[str, str, str, str]]] = {}
    rights: dict[int, list[str]] = {}
    reinfo = []
    for ident, ruc in seller_rucs.items():
        held = rng.sample(PLACES, 2 if rng.random() < 0.3 else 1)
        places[ident] = held
        rights[ident] = []
        status = "SUSPENDIDO" if rng.random() < 0.03 else "VIGENTE"
        for k, place in enumerate(held):
            codigo = f"{(ident * 7 + k) % 10**9:09d}"
            rights[ident].append(codigo)
            reinfo.append(
                (
                    ruc,
                    codigo,
                    f"MINERO {ident}",
                    f"DERECHO {codigo}",
                    *place,
                    status,
                    NOW.date(),
                    NOW,
                )
            )
    # One phone each; 1 % of the phones were also linked (revoked) to two other people.
    links = []
    for ident in seller_rucs:
        phone = f"+519{ident:08d}"
        links.append((ident, phone, "active", created, "bench", created))
        if rng.random() < 0.01:
            for other in rng.sample(list(seller_rucs), 2):
                if other != ident:
                    links.append((other, phone, "revoked", created, "bench", created))
    prices = {}
    for back in range(DAYS + 10):
        day = NOW.date() - dt.timedelta(days=back)
        lbma = Decimal(3300 + rng.randint(-60, 60))
        rate = Decimal("3.75") + Decimal(rng.randint(-20, 20)) / 1000
        prices[day] = (lbma, rate)
    seller_ids = list(seller_rucs)
    structurers = set(rng.sample(seller_ids, max(1, sellers // 100)))
    heavy = set(rng.sample(seller_ids, max(1, sellers // 200)))  # sell 20 times the usual

    def transaction_rows():
        start = NOW - dt.timedelta(days=DAYS) + dt.timedelta(minutes=1)
        span = (NOW - start).total_seconds()
        for ident in range(1, transactions + 1):
            at = start + dt.timedelta(seconds=rng.random() * span)
            seller = rng.choice(seller_ids)
            buyer = rng.randint(1, len(BUYERS))
            material = rng.choice(MATERIALS)
            k = rng.randrange(len(places[seller]))
            place = places[seller][k] if rng.random() > 0.01 else rng.choice(PLACES)
            # The right declared: the seller's own, but 1 % another seller's, 2 % none (older).
            codigo = rights[seller][k]
            if rng.random() < 0.01:
                codigo = rng.choice(rights[rng.choice(seller_ids)])
            elif rng.random() < 0.02:
                codigo = None
            lima_day = (at - dt.timedelta(hours=5)).date()
            lbma, rate = prices[lima_day]
            reference = pen_per_fine_gram(lbma, rate)
            if material == "mercury":
                quantity, unit, grade, fine = Decimal(rng.randint(1, 10)), "kg", None, None
                price = quantity * 900
            elif material == "ore":
                quantity, unit = Decimal(rng.randint(1, 30)), "t"
                grade = Decimal(rng.randint(3, 15))
                fine = quantity * grade
                price = (fine * reference * Decimal("0.6")).quantize(Decimal("0.01"))
            else:
                fine = Decimal(round(rng.lognormvariate(2.8, 0.9), 2)) + Decimal("0.5")
                if seller in heavy:
                    fine *= 20
                grade = Decimal(rng.randint(800, 950))
                quantity = (fine * 1000 / grade).quantize(Decimal("0.01"))
                fine = (quantity * grade / 1000).quantize(Decimal("0.01"))
                unit = "g"
                factor = Decimal(rng.randint(850, 970)) / 1000
                if rng.random() < 0.02:
                    factor = Decimal(rng.choice((500, 650, 1150, 1300))) / 1000
                price = (fine * reference * factor).quantize(Decimal("0.01"))
                if seller in structurers and rng.random() < 0.5:
                    price = Decimal(rng.randint(31_600, 34_900))
            status = rng.choices(("confirmed", "proposed", "disputed"), (95, 3, 2))[0]
            yield (
                ident,
                f"{ident % 1_000_000:06d}",
                "buyer",
                buyer,
                seller,
                seller_rucs[seller],
                codigo,
                material,
                quantity,
                unit,
                grade,
                fine,
                price,
                *place,
                status,
                at,
                at + dt.timedelta(hours=48),
                None if status == "proposed" else at + dt.timedelta(minutes=5),
            )

    with psycopg.connect(dsn) as conn:
        counts = {
            "registrants": _copy(
                conn,
                "registrants",
                (
                    "id",
                    "role",
                    "document_type",
                    "document_number",
                    "name",
                    "language",
                    "status",
                    "created_at",
                    "updated_at",
                ),
                registrants,
            )
        }
        counts["reinfo_registrations"] = _copy(
            conn,
            "reinfo_registrations",
            (
                "ruc",
                "codigo_unico",
                "holder_name",
                "mining_right",
                "department",
                "province",
                "district",
                "ubigeo",
                "status",
                "snapshot_date",
                "updated_at",
            ),
            reinfo,
        )
        counts["phone_links"] = _copy(
            conn,
            "phone_links",
            ("registrant_id", "phone", "state", "requested_at", "decided_by", "decided_at"),
            links,
        )
        counts["reference_prices"] = _copy(
            conn,
            "reference_prices",
            ("price_date", "lbma_usd_per_oz", "pen_per_usd", "updated_at"),
            [(day, lbma, rate, NOW) for day, (lbma, rate) in prices.items()],
        )
        counts["transactions"] = _copy(
            conn,
            "transactions",
            (
                "id",
                "code",
                "initiator",
                "buyer_id",
                "seller_id",
                "seller_ruc",
                "codigo_unico",
                "material",
                "quantity",
                "unit",
                "grade",
                "fine_gold_g",
                "price_pen",
                "department",
                "province",
                "district",
                "ubigeo",
                "status",
                "created_at",
                "expires_at",
                "decided_at",
            ),
            transaction_rows(),
        )
        for table in ("registrants", "transactions"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return counts


# --- measuring ----------------------------------------------------------------------------------


def nightly(database: Database) -> tuple[object, float]:
    started = time.perf_counter()
    with database.transaction() as session:
        report = run_nightly(session, NOW, DAYS, Thresholds())
    return report, time.perf_counter() - started


def proposals(database: Database, sample: int, rng: random.Random) -> list[float]:
    """Milliseconds of `evaluate_proposal` for `sample` transactions, each as if just proposed."""
    timings = []
    with database.sessionmaker() as session:
        ids = session.scalars(sa.select(Transaction.id).order_by(Transaction.id)).all()
        for ident in rng.sample(ids, min(sample, len(ids))):
            transaction = session.get(Transaction, ident)
            started = time.perf_counter()
            evaluate_proposal(session, transaction, NOW, Thresholds())
            timings.append((time.perf_counter() - started) * 1000)
        session.rollback()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--sellers", type=int, default=8_000)
    parser.add_argument("--proposals", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()
    server = postgres_server()
    rng = random.Random(args.seed)

    with fresh_database(server, "redflags") as url:
        started = time.perf_counter()
        counts = seed(libpq(url), args.transactions, args.sellers, rng)
        emit(
            measure="setup",
            **counts,
            seed_seconds=round(time.perf_counter() - started, 2),
            window_days=DAYS,
            python=sys.version.split()[0],
            server=make_url(server).render_as_string(hide_password=True).split("@")[-1],
        )
        database = Database.from_url(url)
        try:
            report, wall = nightly(database)
            for run in report.runs:
                emit(
                    measure="rule",
                    rule=run.rule,
                    evaluable=run.evaluable,
                    transactions=report.transactions,
                    found=run.found,
                    new=run.new,
                    seconds=round(run.seconds, 3),
                    transactions_per_s=round(report.transactions / run.seconds)
                    if run.evaluable
                    else None,
                )
            total_rate = report.transactions / wall
            emit(
                measure="nightly",
                transactions=report.transactions,
                new=report.new,
                seconds=round(wall, 3),
                transactions_per_s=round(total_rate),
            )
            again, again_wall = nightly(database)
            emit(
                measure="nightly_again",
                transactions=again.transactions,
                new=again.new,
                seconds=round(again_wall, 3),
                transactions_per_s=round(again.transactions / again_wall),
            )
            timings = proposals(database, args.proposals, rng)
            emit(
                measure="proposal",
                evaluations=len(timings),
                ms_p50=round(statistics.median(timings), 2),
                ms_p95=round(statistics.quantiles(timings, n=20)[-1], 2),
                ms_max=round(max(timings), 2),
            )
        finally:
            database.dispose()
        emit(
            measure="summary",
            transactions_per_s=round(total_rate),
            target_per_s=TARGET_PER_S,
            meets_target=total_rate >= TARGET_PER_S and again.new == 0,
            idempotent=again.new == 0,
        )


if __name__ == "__main__":
    main()
