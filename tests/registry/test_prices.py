"""Tests for registry.prices: the reference price table (R8) and its CSV import, on PostgreSQL.

Every CSV is written into tmp_path as bytes, so each test says which encoding it uses.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from recpo.clock import FixedClock
from registry.imports import ImportSummary
from registry.prices import (
    FileRefused,
    ReferencePrice,
    import_prices,
    pen_per_fine_gram,
    reference_price,
)

HEADER = "Fecha;LBMA USD/oz;Tipo de cambio"
PRICES = ReferencePrice.__table__


def write_csv(tmp_path: Path, data: bytes, name: str = "precios.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def lines(*rows: str, encoding: str = "utf-8") -> bytes:
    return "".join(row + "\r\n" for row in rows).encode(encoding)


def counts(summary: ImportSummary) -> tuple[int, int, int, int]:
    return (summary.inserted, summary.updated, summary.unchanged, summary.rejected)


def stored(session: Session) -> dict[str, tuple[str, str]]:
    """Every stored price by ISO date: (LBMA, rate) as plain strings (read with Core)."""
    query = sa.select(PRICES).order_by(PRICES.c.price_date)
    return {
        row.price_date.isoformat(): (f"{row.lbma_usd_per_oz:f}", f"{row.pen_per_usd:f}")
        for row in session.execute(query)
    }


def read_report(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header == ["line", "reason", "row"]
    return rows


def run(session: Session, path: Path, clock: FixedClock, **kwargs) -> ImportSummary:
    return import_prices(session, path, now=clock.now(), **kwargs)


class TestReference:
    def test_soles_per_fine_gram(self):
        # LBMA ÷ 31.1034768 × PEN/USD (GLOSSARY "Materials").
        assert pen_per_fine_gram(Decimal("3110.34768"), Decimal("4")) == Decimal("400.0000")
        assert pen_per_fine_gram(Decimal("3300"), Decimal("3.75")) == Decimal("397.8655")

    def test_the_price_of_the_day_or_the_latest_earlier_one(self, db_session, clock):
        for day, lbma in ((dt.date(2026, 11, 27), "3300"), (dt.date(2026, 11, 30), "3350")):
            db_session.add(
                ReferencePrice(
                    price_date=day,
                    lbma_usd_per_oz=Decimal(lbma),
                    pen_per_usd=Decimal("3.75"),
                    updated_at=clock.now(),
                )
            )
        db_session.flush()
        assert reference_price(db_session, dt.date(2026, 11, 30)).lbma_usd_per_oz == 3350
        saturday = reference_price(db_session, dt.date(2026, 11, 28))
        assert saturday.price_date == dt.date(2026, 11, 27)
        assert saturday.pen_per_fine_gram == Decimal("397.8655")
        assert reference_price(db_session, dt.date(2026, 12, 4)).price_date.day == 30
        assert reference_price(db_session, dt.date(2026, 12, 8)) is None  # 8 days: too old
        assert reference_price(db_session, dt.date(2026, 11, 26)) is None  # nothing earlier


class TestImport:
    def test_a_good_file(self, db_session, clock, tmp_path):
        data = lines(
            HEADER,
            "2026-11-27;3300.50;3.752",
            "30/11/2026;3.350,25;3,7481",  # Excel in Spanish: decimal commas
            "2026-12-01; 3,401.00 ;3.75",
        )
        summary = run(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (3, 0, 0, 0)
        assert stored(db_session) == {
            "2026-11-27": ("3300.5000", "3.752000"),
            "2026-11-30": ("3350.2500", "3.748100"),
            "2026-12-01": ("3401.0000", "3.750000"),
        }
        row = db_session.get(ReferencePrice, dt.date(2026, 11, 27))
        assert (row.source, row.updated_at) == ("precios.csv", clock.now())

    def test_english_commas_and_latin1_headers(self, db_session, clock, tmp_path):
        english = lines("date,LBMA,PEN per USD", '2026-11-27,"3,300.50",3.752')
        assert counts(run(db_session, write_csv(tmp_path, english), clock)) == (1, 0, 0, 0)
        latin1 = lines("Día;Precio LBMA;T.C.", "28/11/2026;3310;3.76", encoding="latin-1")
        assert counts(run(db_session, write_csv(tmp_path, latin1), clock)) == (1, 0, 0, 0)
        assert set(stored(db_session)) == {"2026-11-27", "2026-11-28"}

    def test_importing_again_changes_nothing_and_a_correction_updates(
        self, db_session, clock, tmp_path
    ):
        path = write_csv(tmp_path, lines(HEADER, "2026-11-27;3300.5;3.752", "2026-11-28;3310;3.76"))
        assert counts(run(db_session, path, clock)) == (2, 0, 0, 0)
        assert counts(run(db_session, path, clock)) == (0, 0, 2, 0)
        corrected = write_csv(
            tmp_path, lines(HEADER, "2026-11-27;3300.50;3.752", "2026-11-28;3311;3.76"), "b.csv"
        )
        assert counts(run(db_session, corrected, clock)) == (0, 1, 1, 0)
        assert stored(db_session)["2026-11-28"] == ("3311.0000", "3.760000")
        assert db_session.get(ReferencePrice, dt.date(2026, 11, 28)).source == "b.csv"

    def test_each_bad_row_is_reported_with_its_line_and_reason(self, db_session, clock, tmp_path):
        report = tmp_path / "reports" / "prices.csv"
        data = lines(
            HEADER,
            "2026-11-27;3300;3.75",
            "2026-11-31;3300;3.75",
            "27.11.2026;3300;3.75",
            "2026-11-28;tres mil;3.75",
            "2026-11-29;3300;",
            "2026-11-30;33;3.75",
            "2026-12-01;3300000;3.75",
            "2026-12-02;3300;0.27",
            "2026-11-27;3301;3.75",
            "2026-12-03;3300;3.75;extra",
            "2026-12-04;NaN;3.75",
            "2026-12-05;3320;3.74",
        )
        summary = run(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (2, 0, 0, 10)
        assert str(summary) == (
            f"inserted 2, updated 0, unchanged 0, rejected 10 (rejected rows listed in {report})"
        )
        not_a_date = "is not a date (2026-11-30 or 30/11/2026)"
        lbma_bounds = "USD/oz is outside 100-20000: check the number"
        assert [row[:2] for row in read_report(report)] == [
            ["3", f"fecha '2026-11-31' {not_a_date}"],
            ["4", f"fecha '27.11.2026' {not_a_date}"],
            ["5", "LBMA USD/oz 'tres mil' is not a number"],
            ["6", "tipo de cambio is empty"],
            ["7", f"LBMA 33 {lbma_bounds}"],
            ["8", f"LBMA 3300000 {lbma_bounds}"],
            ["9", "tipo de cambio 0.27 PEN per USD is outside 1-10"],
            ["10", "the same fecha as line 2 (that line is kept)"],
            ["11", "expected 3 fields, found 4"],
            ["12", "LBMA USD/oz 'NaN' is not a number"],
        ]
        assert read_report(report)[0][2] == "2026-11-31;3300;3.75"
        assert stored(db_session) == {
            "2026-11-27": ("3300.0000", "3.750000"),
            "2026-12-05": ("3320.0000", "3.740000"),
        }

    def test_duplicates_are_found_across_batches(self, db_session, clock, tmp_path):
        data = lines(HEADER, "2026-11-27;3300;3.75", "2026-11-28;3300;3.75", "27/11/2026;3300;3.75")
        summary = run(db_session, write_csv(tmp_path, data), clock, batch_size=1)
        assert counts(summary) == (2, 0, 0, 1)

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"", "precios.csv is empty."),
            (b"PK\x03\x04rest-of-zip", "precios.csv is a spreadsheet workbook (.xlsx), not a CSV"),
            (
                lines("Fecha;Tipo de cambio", "2026-11-27;3.75"),
                "the header lacks the column(s) lbma",
            ),
            (lines("2026-11-27 3300 3.75"), "the first line has no commas or semicolons"),
        ],
    )
    def test_refused_before_anything_is_written(self, db_session, clock, tmp_path, data, message):
        report = tmp_path / "report.csv"
        with pytest.raises(FileRefused) as info:
            run(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert message in str(info.value)
        assert stored(db_session) == {}
        assert not report.exists()


class TestCommand:
    def test_import_prices(self, runner, database, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, "2026-11-27;3300;3.75", "2026-11-28;x;3.75"))
        report = tmp_path / "report.csv"
        result = runner.invoke(
            args=["registry", "import", "prices", str(path), "--report", str(report)]
        )
        assert result.exit_code == 0, result.output
        assert "precios.csv: inserted 1, updated 0, unchanged 0, rejected 1" in result.output
        assert [row[0] for row in read_report(report)] == ["3"]
        with database.transaction() as session:
            assert set(stored(session)) == {"2026-11-27"}

    def test_a_refused_file_imports_nothing(self, runner, tmp_path):
        path = write_csv(tmp_path, lines("Fecha;LBMA", "2026-11-27;3300"))
        result = runner.invoke(args=["registry", "import", "prices", str(path)])
        assert result.exit_code == 1
        assert "file refused, nothing imported: precios.csv: the header lacks" in result.output
