"""Benchmark the console's list pages and dashboard at 1,000,000 messages and 100,000 transactions.

    .venv/bin/python bench/admin_lists.py [--messages N] [--transactions N] [--samples N]

Makes a fresh PostgreSQL database on the server named by DATABASE_URL (the local server when
unset, as `make test` does), migrates it, and loads it with COPY:

- 2,000 registrants (200 buyers with RUCs, 1,800 miners with DNIs), each with an active phone;
- `--messages` messages (default 1,000,000) over the last 180 days, in arrival order (ids grow
  with time), half inbound, half outbound (1 in 20 failed or undelivered), SMS/WhatsApp/USSD,
  on 20,000 phones, with a status history for every outbound one;
- `--transactions` transactions (default 100,000) over the last 365 days, 80 % confirmed,
  8 materials, 8 departments; 5,000 red flags;

then `VACUUM ANALYZE`, as autovacuum would. Each page is then requested through the Flask test
client with a signed-in admin (a user and a server-side session made as the tests make them):
3 warm-up requests, then `--samples` timed ones. One JSON line per page: p50, p95 and max in ms,
the target `p95 < 300 ms` and whether it passed; then, for information, how fast a CSV export of
the last week's messages streams; the last line is a summary. The database is
dropped at the end, whatever happened. Progress goes to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/admin_lists.py` puts bench/ first on sys.path, where bench/ledger.py would shadow
# the `ledger` package; the project root goes there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from decimal import Decimal  # noqa: E402
from urllib.parse import quote  # noqa: E402

import psycopg  # noqa: E402

from admin.auth import start_session  # noqa: E402
from admin.models import StaffRole  # noqa: E402
from admin.users import create_user  # noqa: E402
from admin.views.common import SESSION_TOKEN  # noqa: E402
from bench.support import fresh_database, libpq, postgres_server  # noqa: E402
from recpo.app import create_app  # noqa: E402
from recpo.db import Database  # noqa: E402
from registry.identifiers import natural_person_ruc, ruc_check_digit  # noqa: E402

TARGET_MS = 300.0
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PHONES = 20_000
BUYERS, MINERS = 200, 1800
FLAGS = 5_000
MATERIALS = ("dore", "native", "refined", "sponge", "ore", "tailings", "carbon", "mercury")
DEPARTMENTS = (
    *("PUNO", "MADRE DE DIOS", "AREQUIPA", "LA LIBERTAD", "AYACUCHO", "PIURA", "CUSCO"),
    "APURIMAC",
)
BODIES_IN = (
    "COMPRA {doc} DORE 25.5G 850 5400",
    "VENTA 20131312955 NATIVO 12G 900 2600",
    "SI",
    "NO",
    "AYUDA",
    "VERIFICAR {code}",
    "CODIGO 123456",
    "ALTA {doc}",
    "1",
    "2",
)
BODIES_OUT = (
    "Compra registrada: oro fino 21.68 g, S/ 5,400.00. Responda SI para confirmar.",
    "Codigo de constancia {code}. Verifique en recpo.gob.pe/r/{code}",
    "RECPO: comandos COMPRA, VENTA, VERIFICAR, ALTA, IDIOMA. Ayuda: AYUDA",
    "Su vendedor confirmo la transaccion.",
    "No se pudo registrar: el RUC no esta VIGENTE en REINFO.",
)


def note(message: str) -> None:
    print(f"[bench/admin_lists] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- loading --------------------------------------------------------------------------------------


def company_ruc(n: int) -> str:
    first10 = f"20{n:08d}"
    return first10 + str(ruc_check_digit(first10))


def load(url: str, messages: int, transactions: int, rng: random.Random) -> dict:
    """Fill the tables with COPY; return what the page URLs need (phones, documents, ids)."""
    phones = [f"+5198{n:07d}" for n in rng.sample(range(10_000_000), PHONES)]
    registrants = []  # (id, role, doc type, number, name, recpo)
    for i in range(BUYERS):
        registrants.append(
            (i + 1, "trader", "ruc", company_ruc(3_000_000 + i), f"Acopio {i} S.A.C.", f"R-{i}")
        )
    for i in range(MINERS):
        dni = f"{40_000_000 + i * 37:08d}"
        registrants.append((BUYERS + i + 1, "miner", "dni", dni, f"Minero {i} Quispe", None))
    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        with cur.copy(
            "COPY registrants (id, role, document_type, document_number, name, language,"
            " recpo_number, status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for rid, role, kind, number, name, recpo in registrants:
                copy.write_row((rid, role, kind, number, name, "es", recpo, "active", NOW, NOW))
        with cur.copy(
            "COPY phone_links (registrant_id, phone, state, requested_at, decided_by, decided_at)"
            " FROM STDIN"
        ) as copy:
            for (rid, *_rest), phone in zip(registrants, phones, strict=False):
                copy.write_row((rid, phone, "active", NOW, "bench", NOW))
            for i in range(50):  # ALTA requests waiting
                copy.write_row((BUYERS + i + 1, phones[-1 - i], "pending", NOW, None, None))
        cur.execute("SELECT setval('registrants_id_seq', %s)", (len(registrants),))
        note(f"registrants and phones in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        span = dt.timedelta(days=180).total_seconds()
        channels = ("sms",) * 6 + ("whatsapp",) * 3 + ("ussd",)
        outcomes = ("delivered",) * 17 + ("sent", "read", "failed", "undelivered")
        history = {
            "delivered": ("queued", "sent", "delivered"),
            "sent": ("queued", "sent"),
            "read": ("queued", "sent", "delivered", "read"),
            "failed": ("queued", "failed"),
            "undelivered": ("queued", "sent", "undelivered"),
        }
        events = []
        with cur.copy(
            "COPY messages (id, channel, direction, phone, body, provider_id, status, encoding,"
            " segments, simulated, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(1, messages + 1):
                at = NOW - dt.timedelta(seconds=span * (1 - i / messages))
                channel = rng.choice(channels)
                phone = phones[rng.randrange(PHONES)]
                inbound = i % 2 == 1
                code = f"{rng.randrange(10**16):016d}"
                if inbound:
                    body = rng.choice(BODIES_IN).format(
                        doc=f"{rng.randrange(10**8):08d}", code=code
                    )
                    status = "received"
                else:
                    body = rng.choice(BODIES_OUT).format(code=code)
                    status = rng.choice(outcomes)
                    events.append((i, status, at))
                copy.write_row(
                    (
                        i,
                        channel,
                        "in" if inbound else "out",
                        phone,
                        body,
                        f"{channel}-{i:012d}",
                        status,
                        "unicode" if channel == "whatsapp" else "gsm7",
                        1,
                        False,
                        at,
                        at,
                    )
                )
        with cur.copy("COPY message_events (message_id, status, at) FROM STDIN") as copy:
            for message_id, status, at in events:
                for step in history[status]:
                    copy.write_row((message_id, step, at))
        cur.execute("SELECT setval('messages_id_seq', %s)", (messages,))
        note(f"{messages:,} messages in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        span = dt.timedelta(days=365).total_seconds()
        statuses = ("confirmed",) * 16 + ("expired", "disputed", "cancelled", "proposed")
        with cur.copy(
            "COPY transactions (id, code, initiator, buyer_id, seller_id, seller_ruc, material,"
            " quantity, unit, grade, fine_gold_g, price_pen, department, province, district,"
            " status, created_at, expires_at, decided_at, receipt_code) FROM STDIN"
        ) as copy:
            for i in range(1, transactions + 1):
                at = NOW - dt.timedelta(seconds=span * (1 - i / transactions))
                status = rng.choice(statuses)
                material = rng.choice(MATERIALS)
                seller = rng.randrange(MINERS)
                grams = Decimal(rng.randrange(100, 50_000)) / 100
                fine = (
                    None
                    if material == "mercury"
                    else (grams * 850 / 1000).quantize(Decimal("0.01"))
                )
                copy.write_row(
                    (
                        i,
                        f"{i % 1_000_000:06d}",
                        "buyer",
                        1 + rng.randrange(BUYERS),
                        BUYERS + 1 + seller,
                        natural_person_ruc(registrants[BUYERS + seller][3]),
                        material,
                        grams,
                        "g",
                        Decimal(850),
                        fine,
                        (grams * 250).quantize(Decimal("0.01")),
                        rng.choice(DEPARTMENTS),
                        "PROVINCIA",
                        "DISTRITO",
                        status,
                        at,
                        at + dt.timedelta(hours=48),
                        None if status == "proposed" else at + dt.timedelta(minutes=7),
                        f"{i:016d}" if status == "confirmed" else None,
                    )
                )
        cur.execute("SELECT setval('transactions_id_seq', %s)", (transactions,))
        with cur.copy(
            "COPY red_flags (rule, reason, transaction_id, phone, document, evidence, status,"
            " created_at, updated_at) FROM STDIN"
        ) as copy:
            flagged = rng.sample(range(1, transactions + 1), min(FLAGS, transactions))
            for i in range(min(FLAGS, transactions)):
                at = NOW - dt.timedelta(seconds=span * (1 - i / FLAGS))
                copy.write_row(
                    (
                        rng.choice(("R1", "R1", "R2", "R4", "R7", "DISPUTE")),
                        "refused: RUC is SUSPENDED in REINFO",
                        flagged[i] if i % 2 else None,
                        phones[rng.randrange(PHONES)],
                        "DNI 45678912",
                        "{}",
                        rng.choice(("open", "open", "in_review", "resolved", "escalated")),
                        at,
                        at,
                    )
                )
        note(
            f"{transactions:,} transactions and {FLAGS:,} flags in {time.perf_counter() - t0:.1f} s"
        )
        conn.commit()
        conn.autocommit = True
        t0 = time.perf_counter()
        cur.execute("VACUUM ANALYZE")
        note(f"VACUUM ANALYZE in {time.perf_counter() - t0:.1f} s")
    return {
        "phone": phones[7],
        "buyer": registrants[5][3],
        "seller": registrants[BUYERS + 11][3],
        "miner_name": registrants[BUYERS + 123][4],
        "middle": messages // 2,
        "middle_t": transactions // 2,
    }


# --- measuring ------------------------------------------------------------------------------------


def pages(known: dict) -> list[tuple[str, str]]:
    """Every list page, with and without its filters, and the dashboard."""
    day = (NOW - dt.timedelta(days=90)).date().isoformat()
    week_ago = (NOW - dt.timedelta(days=7)).date().isoformat()
    phone = quote(known["phone"])
    return [
        ("dashboard", "/admin/"),
        ("dashboard_52_weeks", "/admin/?weeks=52"),
        ("messages", "/admin/messages"),
        ("messages_older_page", f"/admin/messages?before={known['middle']}"),
        ("messages_newer_page", f"/admin/messages?after={known['middle']}"),
        ("messages_channel", "/admin/messages?channel=ussd"),
        ("messages_direction_status", "/admin/messages?direction=out&status=failed"),
        ("messages_phone", f"/admin/messages?phone={phone}"),
        ("messages_one_day", f"/admin/messages?date_from={day}&date_to={day}"),
        ("messages_last_week", f"/admin/messages?date_from={week_ago}"),
        ("messages_text_common", "/admin/messages?q=COMPRA"),
        ("messages_text_rare", "/admin/messages?q=12345678"),
        ("messages_text_none", "/admin/messages?q=zzzqqq"),
        ("conversation", f"/admin/conversation?phone={phone}"),
        ("transactions", "/admin/transactions"),
        ("transactions_older_page", f"/admin/transactions?before={known['middle_t']}"),
        ("transactions_status", "/admin/transactions?status=disputed"),
        ("transactions_material", "/admin/transactions?material=mercury"),
        ("transactions_department", "/admin/transactions?department=CUSCO"),
        ("transactions_buyer", f"/admin/transactions?buyer={known['buyer']}"),
        ("transactions_seller", f"/admin/transactions?seller={known['seller']}"),
        ("transactions_flagged", "/admin/transactions?flagged=1"),
        ("transactions_one_day", f"/admin/transactions?date_from={day}&date_to={day}"),
        ("registrants", "/admin/registrants"),
        ("registrants_name", f"/admin/registrants?q={quote(known['miner_name'])}"),
        ("registrants_document", f"/admin/registrants?q={known['seller']}"),
        ("registrants_phone", f"/admin/registrants?q={phone}"),
        ("phone_links", "/admin/phone-links"),
        ("flags", "/admin/flags"),
        ("flags_open_rule", "/admin/flags?status=open&rule=R7"),
        ("audit_log", "/admin/audit"),
        ("ledger_health", "/admin/ledger"),
    ]


def measure(url: str, known: dict, samples: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as instance:
        database = Database.from_url(url)
        app = create_app({"DATABASE": database, "INSTANCE_PATH": instance, "REDIS_URL": ""})
        with database.transaction() as session:
            user = create_user(session, "bench", StaffRole.ADMIN, "bench password 123", NOW)
            token = start_session(session, user, NOW)
        client = app.test_client()
        with client.session_transaction() as cookie:
            cookie[SESSION_TOKEN] = token
        results = []
        for name, path in pages(known):
            for _ in range(3):
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
            timings = []
            for _ in range(samples):
                t0 = time.perf_counter()
                response = client.get(path)
                body = response.get_data()
                timings.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200 and body, path
            p95 = percentile(timings, 95)
            record = {
                "name": name,
                "url": path,
                "samples": samples,
                "p50_ms": round(percentile(timings, 50), 1),
                "p95_ms": round(p95, 1),
                "max_ms": round(max(timings), 1),
                "target": f"p95 < {TARGET_MS:.0f} ms",
                "pass": p95 < TARGET_MS,
            }
            print(json.dumps(record), flush=True)
            results.append(record)
        # Not a page: how fast an export streams (a gunicorn worker is busy meanwhile).
        week_ago = (NOW - dt.timedelta(days=7)).date().isoformat()
        t0 = time.perf_counter()
        response = client.get(f"/admin/messages.csv?date_from={week_ago}", buffered=False)
        rows = sum(chunk.count(b"\n") for chunk in response.response) - 1
        response.close()
        took = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "name": "export_messages_last_week",
                    "rows": rows,
                    "seconds": round(took, 2),
                    "rows_per_s": round(rows / took),
                    "target": None,
                    "pass": None,
                }
            ),
            flush=True,
        )
        database.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(20261130)
    with fresh_database(postgres_server(), "admin") as url:
        known = load(url, args.messages, args.transactions, rng)
        results = measure(url, known, args.samples)
    failed = [r["name"] for r in results if not r["pass"]]
    print(
        json.dumps(
            {
                "name": "summary",
                "messages": args.messages,
                "transactions": args.transactions,
                "pages": len(results),
                "worst_p95_ms": max(r["p95_ms"] for r in results),
                "target": f"every page p95 < {TARGET_MS:.0f} ms",
                "failed": failed,
                "pass": not failed,
            }
        ),
        flush=True,
    )
    sys.exit(0 if not failed else 1)


if __name__ == "__main__":
    main()
