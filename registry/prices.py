"""Reference gold prices by date, for red flag R8, and their CSV import.

One row per date: the LBMA Gold Price in US dollars per troy ounce and the exchange rate in soles
per US dollar (BCRP/SBS). The reference in soles per gram of fine gold is

    soles per fine gram = LBMA USD/oz ÷ 31.1034768 × PEN per USD        (GLOSSARY "Materials")

A transaction is compared with the price of its date in Lima or, on weekends and holidays when
neither is published, with the latest earlier one (see `registry.redflags.Thresholds`).

The import follows the house style of `registry.imports`: the file is refused as a whole when it
is not a CSV with the expected header (nothing is written); a bad row is rejected with its line
and reason in the report and never aborts the import; running the same file twice changes nothing.
Columns (header in any case, with or without accents; `,` `;` or tab separated):

- ``fecha`` / ``date``: ``2026-11-30`` or ``30/11/2026``;
- ``lbma usd/oz`` / ``lbma`` / ``precio lbma``: e.g. ``2650.35`` or ``2.650,35``;
- ``pen por usd`` / ``tipo de cambio`` / ``tc``: e.g. ``3.752`` or ``3,752``.

Values outside coarse bounds (LBMA 100 to 20,000 USD/oz, 1 to 10 PEN per USD) are rejected: they
are typing errors (a price in thousands, a rate inverted), not prices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from recpo.db import Base
from registry.csvfiles import Column, CsvTable, FileRefused, Row
from registry.imports import BATCH_SIZE, ImportSummary, RowRejected

__all__ = [
    "PRICE_COLUMNS",
    "TROY_OUNCE_G",
    "FileRefused",
    "ReferencePrice",
    "import_prices",
    "pen_per_fine_gram",
    "reference_price",
]

TROY_OUNCE_G = Decimal("31.1034768")  # grams in a troy ounce
LBMA_BOUNDS = (Decimal(100), Decimal(20_000))  # USD per troy ounce
RATE_BOUNDS = (Decimal(1), Decimal(10))  # PEN per USD

Progress = Callable[[int], None]


class ReferencePrice(Base):
    """The reference gold price of one date: LBMA USD/oz and PEN per USD."""

    __tablename__ = "reference_prices"

    price_date: Mapped[dt.date] = mapped_column(primary_key=True)
    lbma_usd_per_oz: Mapped[Decimal] = mapped_column(sa.Numeric(12, 4))
    pen_per_usd: Mapped[Decimal] = mapped_column(sa.Numeric(10, 6))
    source: Mapped[str | None] = mapped_column(sa.String(200))  # the file it came from
    updated_at: Mapped[dt.datetime]

    @property
    def pen_per_fine_gram(self) -> Decimal:
        """Soles per gram of fine gold at this date's LBMA price and exchange rate."""
        return pen_per_fine_gram(self.lbma_usd_per_oz, self.pen_per_usd)


def pen_per_fine_gram(lbma_usd_per_oz: Decimal, pen_per_usd: Decimal) -> Decimal:
    """Soles per gram of fine gold, to 0.0001: LBMA ÷ 31.1034768 × rate."""
    return (Decimal(lbma_usd_per_oz) / TROY_OUNCE_G * Decimal(pen_per_usd)).quantize(
        Decimal("0.0001")
    )


def reference_price(session: Session, day: dt.date, max_age_days: int = 7) -> ReferencePrice | None:
    """Return the price of `day`, else the latest earlier one at most `max_age_days` older."""
    return session.scalars(
        sa.select(ReferencePrice)
        .where(
            ReferencePrice.price_date <= day,
            ReferencePrice.price_date >= day - dt.timedelta(days=max_age_days),
        )
        .order_by(ReferencePrice.price_date.desc())
        .limit(1)
    ).first()


# --- CSV import ---------------------------------------------------------------------------------

PRICE_COLUMNS = (
    Column("date", ("fecha", "date", "dia")),
    Column(
        "lbma",
        (
            "lbma usd oz",
            "lbma",
            "lbma usd",
            "precio lbma",
            "lbma pm",
            "usd oz",
            "usd per oz",
            "gold usd oz",
        ),
    ),
    Column(
        "rate",
        (
            "pen por usd",
            "pen per usd",
            "tipo de cambio",
            "tc",
            "t c",
            "tipo cambio",
            "usd pen",
            "exchange rate",
            "soles por dolar",
        ),
    ),
)


def _date(text: str) -> dt.date:
    for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return dt.datetime.strptime(text, pattern).date()  # noqa: DTZ007 - a calendar date
        except ValueError:
            continue
    raise RowRejected(f"fecha {text!r} is not a date (2026-11-30 or 30/11/2026)")


def _number(text: str, label: str) -> Decimal:
    """Read `2650.35`, `2,650.35`, `2650,35` or `2.650,35`: the last separator is the decimal."""
    cleaned = text.replace(" ", "").replace("\u00a0", "")
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif cleaned.count(",") == 1:
        cleaned = cleaned.replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise RowRejected(f"{label} {text!r} is not a number") from None
    if not value.is_finite():
        raise RowRejected(f"{label} {text!r} is not a number")
    return value


def _price_values(row: Row) -> tuple[dt.date, Decimal, Decimal]:
    values = {}
    for key, label in (("date", "fecha"), ("lbma", "LBMA USD/oz"), ("rate", "tipo de cambio")):
        if not row.values.get(key):
            raise RowRejected(f"{label} is empty")
        values[key] = row.values[key]
    day = _date(values["date"])
    lbma = _number(values["lbma"], "LBMA USD/oz")
    rate = _number(values["rate"], "tipo de cambio")
    low, high = LBMA_BOUNDS
    if not low <= lbma <= high:
        raise RowRejected(f"LBMA {lbma} USD/oz is outside {low}-{high}: check the number")
    low, high = RATE_BOUNDS
    if not low <= rate <= high:
        raise RowRejected(f"tipo de cambio {rate} PEN per USD is outside {low}-{high}")
    return day, lbma.quantize(Decimal("0.0001")), rate.quantize(Decimal("0.000001"))


def import_prices(
    session: Session,
    path: Path,
    *,
    now: dt.datetime,
    report_path: Path | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportSummary:
    """Upsert the reference prices in `path` (date, LBMA USD/oz, PEN per USD)."""
    if now.tzinfo is None:
        raise ValueError("naive datetime given as `now`; use recpo.clock")
    summary = ImportSummary(report_path=report_path)
    first_lines: dict[dt.date, int] = {}  # one entry per date: a few thousand at most
    table = ReferencePrice.__table__
    connection = session.connection()
    with CsvTable(path, PRICE_COLUMNS) as csv_table:
        try:
            batch: list[Row] = []
            for row in csv_table.rows():
                batch.append(row)
                if len(batch) >= batch_size:
                    _price_batch(connection, table, batch, path, now, first_lines, summary)
                    batch = []
                    if progress:
                        progress(summary.rows)
            if batch:
                _price_batch(connection, table, batch, path, now, first_lines, summary)
                if progress:
                    progress(summary.rows)
        finally:
            summary.close()
    return summary


def _price_batch(
    connection: sa.Connection,
    table: sa.Table,
    batch: list[Row],
    path: Path,
    now: dt.datetime,
    first_lines: dict[dt.date, int],
    summary: ImportSummary,
) -> None:
    parsed: dict[dt.date, tuple[Decimal, Decimal]] = {}
    for row in batch:
        try:
            if row.problem:
                raise RowRejected(row.problem)
            day, lbma, rate = _price_values(row)
        except RowRejected as exc:
            summary.reject(row, str(exc))
            continue
        first = first_lines.setdefault(day, row.line)
        if first != row.line:
            summary.reject(row, f"the same fecha as line {first} (that line is kept)")
            continue
        parsed[day] = (lbma, rate)
    if not parsed:
        return
    existing = {
        r.price_date: (r.lbma_usd_per_oz, r.pen_per_usd)
        for r in connection.execute(
            sa.select(table.c.price_date, table.c.lbma_usd_per_oz, table.c.pen_per_usd).where(
                table.c.price_date.in_(list(parsed))
            )
        )
    }
    inserts, updates = [], []
    for day, (lbma, rate) in parsed.items():
        old = existing.get(day)
        values = {
            "price_date": day,
            "lbma_usd_per_oz": lbma,
            "pen_per_usd": rate,
            "source": path.name[:200],
            "updated_at": now,
        }
        if old is None:
            inserts.append(values)
            summary.inserted += 1
        elif (Decimal(old[0]), Decimal(old[1])) != (lbma, rate):
            updates.append({**values, "b_date": day})
            summary.updated += 1
        else:
            summary.unchanged += 1
    if inserts:
        connection.execute(table.insert(), inserts)
    if updates:
        connection.execute(
            table.update()
            .where(table.c.price_date == sa.bindparam("b_date"))
            .values(
                lbma_usd_per_oz=sa.bindparam("lbma_usd_per_oz"),
                pen_per_usd=sa.bindparam("pen_per_usd"),
                source=sa.bindparam("source"),
                updated_at=sa.bindparam("updated_at"),
            ),
            updates,
        )
