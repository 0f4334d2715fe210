"""Tests for registry.imports: the REINFO list and registrant lists, on real databases.

Every CSV is written into tmp_path as bytes, so each test says which encoding it uses.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from recpo.clock import FixedClock
from recpo.db import Database
from registry.identifiers import DocumentType, natural_person_ruc
from registry.imports import FileRefused, ImportSummary, import_registrants, import_reinfo
from registry.models import (
    Language,
    PhoneLink,
    PhoneLinkState,
    Registrant,
    ReinfoRegistration,
    ReinfoStatus,
    Role,
)

SNAPSHOT = dt.date(2026, 11, 30)
HEADER = "RUC;Nombre;CÓDIGO ÚNICO;Derecho Minero;Departamento;Provincia;Distrito;Estado"
REINFO = ReinfoRegistration.__table__

# Natural-person RUCs of miners, and company RUCs for buyers (SUNAT examples).
RUC_A = natural_person_ruc("45678912")  # 10456789124
RUC_B = natural_person_ruc("41234567")
RUC_C = natural_person_ruc("40000001")
COMPANY_RUCS = ("20131312955", "20131368829", "20295613620", "20100079501")


def write_csv(tmp_path: Path, data: bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def lines(*rows: str, encoding: str = "utf-8", bom: bool = False) -> bytes:
    data = "".join(row + "\r\n" for row in rows).encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def reinfo_row(
    ruc: str,
    codigo: str = "010149108",
    name: str = "QUISPE MAMANI JUANA",
    status: str = "VIGENTE",
    right: str = "RINCONADA UNO",
    place: tuple[str, str, str] = ("PUNO", "SAN ANTONIO DE PUTINA", "ANANEA"),
    sep: str = ";",
) -> str:
    return sep.join([ruc, name, codigo, right, *place, status])


def counts(summary: ImportSummary) -> tuple[int, int, int, int]:
    return (summary.inserted, summary.updated, summary.unchanged, summary.rejected)


def reinfo_rows(session: Session) -> list[dict]:
    """Every stored registration as a dict, ordered by key (read with Core: never stale)."""
    query = sa.select(REINFO).order_by(REINFO.c.ruc, REINFO.c.codigo_unico)
    return [dict(row) for row in session.execute(query).mappings()]


def read_report(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header == ["line", "reason", "row"]
    return rows


def run_reinfo(session: Session, path: Path, clock: FixedClock, **kwargs) -> ImportSummary:
    kwargs.setdefault("snapshot_date", SNAPSHOT)
    return import_reinfo(session, path, now=clock.now(), **kwargs)


def ctids(session: Session) -> dict[tuple[str, str], str]:
    """PostgreSQL's physical row versions: any UPDATE, even to equal values, changes them."""
    query = sa.text("SELECT ruc, codigo_unico, ctid::text FROM reinfo_registrations")
    return {(r, c): ctid for r, c, ctid in session.execute(query)}


class TestReinfoHeaderAndEncoding:
    @pytest.mark.parametrize(
        "header",
        [
            HEADER,
            "ruc;NOMBRE;codigo unico;DERECHO MINERO;departamento;PROVINCIA;distrito;ESTADO",
            " Ruc ; Nombre ; Código Único ; Derecho minero ; Departamento ; Provincia ;"
            " Distrito ; Estado ",
            "RUC;NOMBRE;CODIGO_UNICO;DERECHO_MINERO;DEPARTAMENTO;PROVINCIA;DISTRITO;ESTADO",
        ],
    )
    def test_header_matched_ignoring_case_accents_and_spacing(
        self, db_session, clock, tmp_path, header
    ):
        path = write_csv(tmp_path, lines(header, reinfo_row(RUC_A)))
        summary = run_reinfo(db_session, path, clock)
        assert counts(summary) == (1, 0, 0, 0)
        [row] = reinfo_rows(db_session)
        assert row["ruc"] == RUC_A
        assert row["codigo_unico"] == "010149108"
        assert row["holder_name"] == "QUISPE MAMANI JUANA"
        assert row["mining_right"] == "RINCONADA UNO"
        assert (row["department"], row["province"], row["district"]) == (
            "PUNO",
            "SAN ANTONIO DE PUTINA",
            "ANANEA",
        )
        assert row["status"] is ReinfoStatus.VIGENTE
        assert row["ubigeo"] is None
        assert row["snapshot_date"] == SNAPSHOT
        assert row["updated_at"] == clock.now()

    def test_columns_found_in_any_order(self, db_session, clock, tmp_path):
        data = lines(
            "Estado;Distrito;Provincia;Departamento;Derecho Minero;Código Único;Nombre;RUC",
            f"SUSPENDIDO;HUEPETUHE;MANU;MADRE DE DIOS;HUEPETUHE DOS;070012317;CONDORI ANA;{RUC_B}",
        )
        run_reinfo(db_session, write_csv(tmp_path, data), clock)
        [row] = reinfo_rows(db_session)
        assert (row["ruc"], row["codigo_unico"], row["holder_name"]) == (
            RUC_B,
            "070012317",
            "CONDORI ANA",
        )
        assert (row["mining_right"], row["department"], row["province"], row["district"]) == (
            "HUEPETUHE DOS",
            "MADRE DE DIOS",
            "MANU",
            "HUEPETUHE",
        )
        assert row["status"] is ReinfoStatus.SUSPENDIDO

    @pytest.mark.parametrize("sep", [";", ","])
    def test_comma_or_semicolon(self, db_session, clock, tmp_path, sep):
        data = lines(
            HEADER.replace(";", sep),
            reinfo_row(RUC_A, "010149108", sep=sep),
            reinfo_row(
                RUC_B,
                "070012317",
                name='"HUAMÁN, PEDRO"' if sep == "," else "HUAMÁN, PEDRO",
                sep=sep,
            ),
        )
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (2, 0, 0, 0)
        assert [r["holder_name"] for r in reinfo_rows(db_session)] == [
            "HUAMÁN, PEDRO",
            "QUISPE MAMANI JUANA",
        ]

    @pytest.mark.parametrize(
        ("encoding", "bom"),
        [("utf-8", True), ("utf-8", False), ("latin-1", False)],
        ids=["utf-8-bom", "utf-8", "latin-1"],
    )
    def test_encodings_store_accented_names_exactly(
        self, db_session, clock, tmp_path, encoding, bom
    ):
        data = lines(
            HEADER,
            reinfo_row(RUC_A, "010149108", name="PEÑA ÑAUPARI JOSÉ", right="SEÑOR DE QOYLLURIT'I"),
            reinfo_row(
                RUC_B, "070012317", name="ÁVILA MUÑOZ ÚRSULA", place=("PUNO", "PUNO", "ACORA")
            ),
            encoding=encoding,
            bom=bom,
        )
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (2, 0, 0, 0)
        rows = reinfo_rows(db_session)
        assert [(r["holder_name"], r["mining_right"]) for r in rows] == [
            ("ÁVILA MUÑOZ ÚRSULA", "RINCONADA UNO"),
            ("PEÑA ÑAUPARI JOSÉ", "SEÑOR DE QOYLLURIT'I"),
        ]

    @pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
    def test_latin1_line_inside_a_utf8_file(self, db_session, clock, tmp_path, bom):
        data = (
            lines(HEADER, reinfo_row(RUC_A, "010149108", name="MUÑOZ QUISPE"), bom=bom)
            + lines(reinfo_row(RUC_B, "070012317", name="PEÑA CONDORI"), encoding="latin-1")
            + lines(reinfo_row(RUC_C, "040155607", name="ÁVILA APAZA"))
        )
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (3, 0, 0, 0)
        assert {r["ruc"]: r["holder_name"] for r in reinfo_rows(db_session)} == {
            RUC_A: "MUÑOZ QUISPE",
            RUC_B: "PEÑA CONDORI",
            RUC_C: "ÁVILA APAZA",
        }

    def test_latin1_line_after_the_first_64_kib_of_a_utf8_file(self, db_session, clock, tmp_path):
        filler = [reinfo_row(natural_person_ruc(f"{i:08d}"), name="MUÑOZ") for i in range(1, 800)]
        data = lines(HEADER, *filler) + lines(
            reinfo_row(RUC_B, "070012317", name="PEÑA CONDORI"), encoding="latin-1"
        )
        assert len(data) > 64 * 1024
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (800, 0, 0, 0)
        names = {r["ruc"]: r["holder_name"] for r in reinfo_rows(db_session)}
        assert names[RUC_B] == "PEÑA CONDORI"
        assert set(names.values()) == {"MUÑOZ", "PEÑA CONDORI"}

    @pytest.mark.parametrize(
        "written", ["010149108", "01-01491-08", "10149108", "1-01491-08", " 01.01491.08 "]
    )
    def test_codigo_unico_stored_as_nine_digits(self, db_session, clock, tmp_path, written):
        path = write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A, written)))
        run_reinfo(db_session, path, clock)
        assert [r["codigo_unico"] for r in reinfo_rows(db_session)] == ["010149108"]

    def test_codigo_unico_spellings_are_one_registration(self, db_session, clock, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A, "01-01491-08")))
        run_reinfo(db_session, path, clock)
        path = write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A, "10149108")), "again.csv")
        summary = run_reinfo(db_session, path, clock)
        assert counts(summary) == (0, 0, 1, 0)
        assert len(reinfo_rows(db_session)) == 1

    def test_statuses_in_any_case_and_gender(self, db_session, clock, tmp_path):
        written = ["VIGENTE", "vigente", "Suspendido", "SUSPENDIDA", "excluido", "Excluida"]
        data = lines(
            HEADER,
            *(reinfo_row(RUC_A, f"0100000{i:02d}", status=s) for i, s in enumerate(written)),
        )
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (6, 0, 0, 0)
        assert [r["status"] for r in reinfo_rows(db_session)] == [
            ReinfoStatus.VIGENTE,
            ReinfoStatus.VIGENTE,
            ReinfoStatus.SUSPENDIDO,
            ReinfoStatus.SUSPENDIDO,
            ReinfoStatus.EXCLUIDO,
            ReinfoStatus.EXCLUIDO,
        ]

    def test_optional_ubigeo_column(self, db_session, clock, tmp_path):
        report = tmp_path / "report.csv"
        data = lines(
            HEADER + ";Ubigeo",
            reinfo_row(RUC_A, "010149108") + ";211002",
            reinfo_row(RUC_B, "040155607", place=("AREQUIPA", "CARAVELI", "CHALA")) + ";40307",
            reinfo_row(RUC_C, "070012317") + ";",
            reinfo_row(RUC_C, "070012318") + ";21100X",
            reinfo_row(RUC_C, "070012319") + ";2110021",
            reinfo_row(RUC_C, "070012320") + ";２１１００２",  # full-width digits
        )
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (3, 0, 0, 3)
        assert {(r["ruc"], r["codigo_unico"]): r["ubigeo"] for r in reinfo_rows(db_session)} == {
            (RUC_A, "010149108"): "211002",
            (RUC_B, "040155607"): "040307",
            (RUC_C, "070012317"): None,
        }
        assert [row[:2] for row in read_report(report)] == [
            ["5", "ubigeo '21100X' is not a 6-digit INEI code"],
            ["6", "ubigeo '2110021' is not a 6-digit INEI code"],
            ["7", "ubigeo '２１１００２' is not a 6-digit INEI code"],
        ]


class TestReinfoRejections:
    def test_each_bad_row_is_reported_with_its_line_and_reason(self, db_session, clock, tmp_path):
        report = tmp_path / "reports" / "reinfo.csv"
        short = ";".join(reinfo_row(RUC_B, "070012320").split(";")[:7])
        data = lines(
            HEADER,  # line 1
            reinfo_row(RUC_A, "010149108"),  # 2: good
            reinfo_row("20131312956", "010149109"),  # 3: check digit
            reinfo_row(RUC_A, "01-0149"),  # 4: código único too short
            reinfo_row(RUC_A, "01O149108"),  # 5: letter O in the código único
            reinfo_row(RUC_B, "070012317", status="ACTIVO"),  # 6: unknown estado
            reinfo_row(RUC_B, "070012318", place=("PUNO", "PUTINA", "")),  # 7: empty distrito
            short,  # 8: 7 fields
            "",  # 9: blank, skipped
            reinfo_row(RUC_B, "070012319"),  # 10: good
            reinfo_row(RUC_C, "040155607") + ";extra",  # 11: 9 fields
            reinfo_row(RUC_C, "040155608", name="   "),  # 12: empty nombre
            f'{RUC_C};"CCORI" APAZA;040155609;CHALA NORTE;AREQUIPA;CARAVELI;CHALA;VIGENTE',  # 13
            reinfo_row(RUC_C, "040155610") + ";;",  # 14: good, empty trailing fields
        )
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (3, 0, 0, 9)
        assert summary.rows == 12
        assert str(summary) == (
            f"inserted 3, updated 0, unchanged 0, rejected 9 (rejected rows listed in {report})"
        )
        assert [(r["ruc"], r["codigo_unico"]) for r in reinfo_rows(db_session)] == [
            (RUC_C, "040155610"),
            (RUC_B, "070012319"),
            (RUC_A, "010149108"),
        ]
        assert read_report(report) == [
            [
                "3",
                "The RUC check digit is wrong: 20131312956 ends in 6, expected 5."
                " One of its digits is probably mistyped.",
                reinfo_row("20131312956", "010149109"),
            ],
            [
                "4",
                "A código único has 9 digits (8 if the leading zero is left out); 010149 has 6.",
                reinfo_row(RUC_A, "01-0149"),
            ],
            [
                "5",
                "A código único is made of digits only; 01O149108 contains 'O'.",
                reinfo_row(RUC_A, "01O149108"),
            ],
            [
                "6",
                "estado 'ACTIVO' is not one of VIGENTE, SUSPENDIDO, EXCLUIDO",
                reinfo_row(RUC_B, "070012317", status="ACTIVO"),
            ],
            [
                "7",
                "distrito is empty",
                reinfo_row(RUC_B, "070012318", place=("PUNO", "PUTINA", "")),
            ],
            ["8", "expected 8 fields, found 7", short],
            ["11", "expected 8 fields, found 9", reinfo_row(RUC_C, "040155607") + ";extra"],
            ["12", "nombre is empty", reinfo_row(RUC_C, "040155608", name="   ")],
            ["13", "unreadable CSV line: ';' expected after '\"'", ""],
        ]

    def test_rejections_are_counted_without_a_report(self, db_session, clock, tmp_path):
        data = lines(HEADER, reinfo_row("20131312956"), reinfo_row(RUC_A))
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (1, 0, 0, 1)
        assert summary.report_path is None
        assert str(summary) == "inserted 1, updated 0, unchanged 0, rejected 1"
        assert list(tmp_path.iterdir()) == [tmp_path / "list.csv"]

    def test_no_report_file_when_nothing_is_rejected(self, db_session, clock, tmp_path):
        report = tmp_path / "report.csv"
        summary = run_reinfo(
            db_session,
            write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A))),
            clock,
            report_path=report,
        )
        assert counts(summary) == (1, 0, 0, 0)
        assert not report.exists()

    def test_nul_byte_past_the_sniffed_start_rejects_only_its_row(
        self, db_session, clock, tmp_path
    ):
        filler = [reinfo_row(natural_person_ruc(f"{i:08d}")) for i in range(1, 800)]
        data = lines(HEADER, *filler, reinfo_row(RUC_A, name="QUISPE\x00MAMANI"), reinfo_row(RUC_B))
        assert data.index(b"\x00") > 64 * 1024
        report = tmp_path / "report.csv"
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (800, 0, 0, 1)
        assert [row[:2] for row in read_report(report)] == [
            ["801", "the line contains a NUL character: this part of the file is not text"]
        ]
        assert RUC_B in {r["ruc"] for r in reinfo_rows(db_session)}

    def test_line_numbers_count_physical_lines(self, db_session, clock, tmp_path):
        data = lines(
            HEADER,
            reinfo_row(RUC_A, "010149108"),  # 2
            f'{RUC_A};"QUISPE\r\nMAMANI";010149109;RINCONADA;PUNO;PUTINA;ANANEA;VIGENTE',  # 3-4
            "",  # 5
            reinfo_row(RUC_B, status="ACTIVO"),  # 6
            f'{RUC_B};"CONDORI\r\nAPAZA";070012317;HUEPETUHE;MADRE DE DIOS;MANU;;VIGENTE',  # 7-8
            reinfo_row(RUC_C, "1234567"),  # 9
        )
        report = tmp_path / "report.csv"
        summary = run_reinfo(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (2, 0, 0, 3)
        assert [row[:2] for row in read_report(report)] == [
            ["6", "estado 'ACTIVO' is not one of VIGENTE, SUSPENDIDO, EXCLUIDO"],
            ["7", "distrito is empty"],
            [
                "9",
                "A código único has 9 digits (8 if the leading zero is left out); 1234567 has 7.",
            ],
        ]

    def test_database_error_in_bulk_insert_is_sqlalchemys(self, db_session):
        from registry.imports import _insert

        row = {"ruc": "1045678912", "codigo_unico": "010149108", "holder_name": "X"}
        row |= {"mining_right": "", "department": "PUNO", "province": "P", "district": "D"}
        row |= {"ubigeo": None, "status": ReinfoStatus.VIGENTE, "snapshot_date": SNAPSHOT}
        row |= {"updated_at": dt.datetime(2026, 11, 30, 15, tzinfo=dt.UTC)}
        with pytest.raises(sa.exc.IntegrityError, match="ck_reinfo_registrations_ruc_length"):
            _insert(db_session.connection(), REINFO, [row])


class TestReinfoIdempotence:
    FILE = (
        reinfo_row(RUC_A, "010149108"),
        reinfo_row(RUC_B, "070012317", status="SUSPENDIDO"),
        reinfo_row(RUC_B, "070012318", status="EXCLUIDO"),
        reinfo_row(RUC_C, "040155607"),
    )

    def test_same_file_twice_changes_nothing(self, db_session, clock, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, *self.FILE))
        first = run_reinfo(db_session, path, clock)
        assert counts(first) == (4, 0, 0, 0)
        before, versions = reinfo_rows(db_session), ctids(db_session)
        clock.advance(dt.timedelta(hours=1))

        second = run_reinfo(db_session, path, clock)

        assert counts(second) == (0, 0, 4, 0)
        assert reinfo_rows(db_session) == before
        assert {r["updated_at"] for r in before} == {clock.now() - dt.timedelta(hours=1)}
        assert ctids(db_session) == versions  # not a single row was rewritten

    def test_changed_estado_is_updated(self, db_session, clock, tmp_path):
        run_reinfo(db_session, write_csv(tmp_path, lines(HEADER, *self.FILE)), clock)
        first_now = clock.now()
        clock.advance(dt.timedelta(days=7))
        changed = [*self.FILE]
        changed[0] = reinfo_row(RUC_A, "010149108", status="SUSPENDIDO")
        later = SNAPSHOT + dt.timedelta(days=7)

        path = write_csv(tmp_path, lines(HEADER, *changed), "later.csv")
        summary = run_reinfo(db_session, path, clock, snapshot_date=later)

        assert counts(summary) == (0, 1, 3, 0)
        rows = {(r["ruc"], r["codigo_unico"]): r for r in reinfo_rows(db_session)}
        assert rows[RUC_A, "010149108"]["status"] is ReinfoStatus.SUSPENDIDO
        assert rows[RUC_A, "010149108"]["updated_at"] == clock.now()
        assert {r["snapshot_date"] for r in rows.values()} == {later}
        others = [r for key, r in rows.items() if key != (RUC_A, "010149108")]
        assert {r["updated_at"] for r in others} == {first_now}

    def test_correction_within_the_same_snapshot_is_updated(self, db_session, clock, tmp_path):
        run_reinfo(db_session, write_csv(tmp_path, lines(HEADER, *self.FILE)), clock)
        clock.advance(dt.timedelta(minutes=5))
        fixed = [reinfo_row(RUC_A, "010149108", name="QUISPE MAMANI JUANA ROSA"), *self.FILE[1:]]
        summary = run_reinfo(db_session, write_csv(tmp_path, lines(HEADER, *fixed), "b.csv"), clock)
        assert counts(summary) == (0, 1, 3, 0)
        row = reinfo_rows(db_session)[-1]
        assert (row["ruc"], row["holder_name"], row["updated_at"]) == (
            RUC_A,
            "QUISPE MAMANI JUANA ROSA",
            clock.now(),
        )

    def test_older_snapshot_never_overwrites_a_newer_one(self, db_session, clock, tmp_path):
        run_reinfo(db_session, write_csv(tmp_path, lines(HEADER, *self.FILE)), clock)
        before, versions = reinfo_rows(db_session), ctids(db_session)
        clock.advance(dt.timedelta(hours=1))
        old = [reinfo_row(RUC_A, "010149108", status="EXCLUIDO", name="OTRO"), *self.FILE[1:]]

        path = write_csv(tmp_path, lines(HEADER, *old), "old.csv")
        summary = run_reinfo(db_session, path, clock, snapshot_date=SNAPSHOT - dt.timedelta(1))

        assert counts(summary) == (0, 0, 4, 0)
        assert reinfo_rows(db_session) == before
        assert ctids(db_session) == versions

    def test_older_snapshot_still_inserts_registrations_not_held(self, db_session, clock, tmp_path):
        run_reinfo(db_session, write_csv(tmp_path, lines(HEADER, self.FILE[0])), clock)
        earlier = SNAPSHOT - dt.timedelta(days=30)
        path = write_csv(tmp_path, lines(HEADER, *self.FILE), "old.csv")
        summary = run_reinfo(db_session, path, clock, snapshot_date=earlier)
        assert counts(summary) == (3, 0, 1, 0)
        assert [r["snapshot_date"] for r in reinfo_rows(db_session)] == [
            earlier,
            earlier,
            earlier,
            SNAPSHOT,
        ]

    def test_newer_snapshot_with_same_content_bumps_only_the_snapshot_date(
        self, db_session, clock, tmp_path
    ):
        path = write_csv(tmp_path, lines(HEADER, *self.FILE))
        run_reinfo(db_session, path, clock)
        first_now = clock.now()
        clock.advance(dt.timedelta(days=30))
        newer = SNAPSHOT + dt.timedelta(days=30)

        summary = run_reinfo(db_session, path, clock, snapshot_date=newer)

        assert counts(summary) == (0, 0, 4, 0)
        rows = reinfo_rows(db_session)
        assert {r["snapshot_date"] for r in rows} == {newer}
        assert {r["updated_at"] for r in rows} == {first_now}

    def test_duplicate_key_in_file_keeps_the_first_line(self, db_session, clock, tmp_path):
        report = tmp_path / "report.csv"
        data = lines(
            HEADER,
            reinfo_row(RUC_A, "010149108", status="VIGENTE"),  # 2
            reinfo_row(RUC_B, "070012317"),  # 3
            reinfo_row(RUC_A, "01-01491-08", status="SUSPENDIDO"),  # 4: same key as line 2
            reinfo_row(RUC_A, "010149108", status="VIGENTE"),  # 5: same again, same content
        )
        path = write_csv(tmp_path, data)

        first = run_reinfo(db_session, path, clock, report_path=report)

        assert counts(first) == (2, 0, 0, 2)
        assert [(r["ruc"], r["status"]) for r in reinfo_rows(db_session)] == [
            (RUC_B, ReinfoStatus.VIGENTE),
            (RUC_A, ReinfoStatus.VIGENTE),
        ]
        reason = "the same RUC and código único as line 2 (that line is kept)"
        assert [row[:2] for row in read_report(report)] == [["4", reason], ["5", reason]]
        versions = ctids(db_session)
        clock.advance(dt.timedelta(hours=1))

        second = run_reinfo(db_session, path, clock)

        assert counts(second) == (0, 0, 2, 2)
        assert ctids(db_session) == versions


class TestReinfoRefusedFiles:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"", "list.csv is empty."),
            (b" \r\n\r\n", "list.csv is empty."),
            (
                b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40,
                "list.csv is a spreadsheet workbook (.xlsx), not a CSV file: save it as CSV"
                " (comma or semicolon separated) and import that.",
            ),
            (
                b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40,
                "list.csv is an old Excel workbook (.xls), not a CSV file:"
                " save it as CSV and import that.",
            ),
            (
                b"RUC;Nombre\r\n" + b"\x00\x01\x02binary\x00",
                "list.csv is a binary file, not a CSV text file.",
            ),
            (
                lines("RUC;Nombre;Código único;Departamento;Provincia;Distrito", reinfo_row(RUC_A)),
                "list.csv: the header lacks the column(s) derecho minero, estado;"
                " found: RUC, Nombre, Código único, Departamento, Provincia, Distrito.",
            ),
            (
                lines("listado de mineros", "10456789124 QUISPE VIGENTE"),
                "list.csv: the first line has no commas or semicolons;"
                " a CSV file starts with a header row naming its columns.",
            ),
        ],
        ids=["empty", "blank", "xlsx", "xls", "nul-bytes", "missing-columns", "no-delimiters"],
    )
    def test_refused_before_anything_is_written(self, db_session, clock, tmp_path, data, message):
        report = tmp_path / "report.csv"
        with pytest.raises(FileRefused) as info:
            run_reinfo(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert str(info.value) == message
        assert db_session.scalar(sa.select(sa.func.count()).select_from(REINFO)) == 0
        assert not report.exists()

    def test_missing_file_is_refused(self, db_session, clock, tmp_path):
        with pytest.raises(FileRefused, match=r"^cannot read .*nowhere\.csv: No such file"):
            run_reinfo(db_session, tmp_path / "nowhere.csv", clock)

    def test_header_only_imports_nothing(self, db_session, clock, tmp_path):
        summary = run_reinfo(db_session, write_csv(tmp_path, lines(HEADER)), clock)
        assert counts(summary) == (0, 0, 0, 0)
        assert reinfo_rows(db_session) == []


class TestReinfoBatches:
    def test_batch_boundaries_are_invisible(self, db_session, clock, tmp_path):
        report = tmp_path / "report.csv"
        data = lines(
            HEADER,
            *(reinfo_row(RUC_A, f"0100000{i:02d}") for i in range(1, 5)),  # lines 2-5
            reinfo_row(RUC_B, "070012317"),  # 6
            reinfo_row("20131312956"),  # 7: rejected
            reinfo_row(RUC_A, "010000002", status="EXCLUIDO"),  # 8: duplicate of line 3
            reinfo_row(RUC_C, "040155607"),  # 9
            reinfo_row(RUC_C, "040155608"),  # 10
            reinfo_row(RUC_B, "070012317"),  # 11: duplicate of line 6
        )
        path = write_csv(tmp_path, data)
        seen: list[int] = []

        summary = run_reinfo(
            db_session, path, clock, batch_size=3, progress=seen.append, report_path=report
        )

        assert seen == [3, 6, 9, 10]
        assert counts(summary) == (7, 0, 0, 3)
        rows = reinfo_rows(db_session)
        assert len(rows) == 7
        assert {r["status"] for r in rows} == {ReinfoStatus.VIGENTE}
        assert [row[0] for row in read_report(report)] == ["7", "8", "11"]
        assert read_report(report)[1][1] == (
            "the same RUC and código único as line 3 (that line is kept)"
        )

        # The same file in one batch or in many gives the same counts, and re-running it
        # rewrites nothing.
        versions = ctids(db_session)
        again = run_reinfo(db_session, path, clock, batch_size=3)
        assert counts(again) == (0, 0, 7, 3)
        assert ctids(db_session) == versions
        whole = run_reinfo(db_session, path, clock, batch_size=1000)
        assert counts(whole) == (0, 0, 7, 3)


# --- registrants ------------------------------------------------------------------------------

REG_HEADER = "role,document,name,phone,language"


def registrants(session: Session) -> list[Registrant]:
    query = sa.select(Registrant).order_by(Registrant.id).execution_options(populate_existing=True)
    return list(session.scalars(query))


def phone_links(session: Session) -> list[tuple[str, str, PhoneLinkState, str | None]]:
    query = (
        sa.select(
            Registrant.document_number, PhoneLink.phone, PhoneLink.state, PhoneLink.decided_by
        )
        .join(PhoneLink.registrant)
        .order_by(PhoneLink.id)
    )
    return [tuple(row) for row in session.execute(query)]


def run_registrants(session: Session, path: Path, clock: FixedClock, **kwargs) -> ImportSummary:
    return import_registrants(session, path, now=clock.now(), **kwargs)


def add_registrant(session: Session, clock: FixedClock, document: str, phone: str) -> Registrant:
    registrant = Registrant(
        role=Role.MINER,
        document_type=DocumentType.DNI,
        document_number=document,
        name="Otra Persona",
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    session.add(registrant)
    session.add(
        PhoneLink(
            registrant=registrant,
            phone=phone,
            state=PhoneLinkState.ACTIVE,
            requested_at=clock.now(),
            decided_by="console:admin",
            decided_at=clock.now(),
        )
    )
    session.flush()
    return registrant


class TestRegistrantRows:
    def test_roles_in_english_and_spanish(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER,
            "miner,45678912,Juana Quispe,987654301,es",
            "Minero,41234567,Pedro Huamán,987654302,es",
            f"PLANTA DE BENEFICIO,{COMPANY_RUCS[0]},Planta Oro Sur SAC,987654303,es",
            f"acopiador,{COMPANY_RUCS[1]},Acopio Huepetuhe,987654304,es",
            f"Refinería,{COMPANY_RUCS[2]},Refinadora Andina,987654305,es",
            f"fundición,{COMPANY_RUCS[3]},Fundición del Sur,987654306,es",
            f"comercializador,{natural_person_ruc('42000001')},Rosa Apaza,987654307,es",
            f"trader,{natural_person_ruc('42000002')},Luis Mamani,987654308,es",
            f"plant,{natural_person_ruc('42000003')},Planta Chala,987654309,es",
            f"stockpiler,{natural_person_ruc('42000004')},Acopio Chala,987654310,es",
            f"refiner,{natural_person_ruc('42000005')},Refinería Chala,987654311,es",
            f"jefe,{natural_person_ruc('42000006')},Nadie,987654312,es",
        )
        report = tmp_path / "report.csv"
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (11, 0, 0, 1)
        assert [r.role for r in registrants(db_session)] == [
            Role.MINER,
            Role.MINER,
            Role.PLANT,
            Role.STOCKPILER,
            Role.REFINER,
            Role.REFINER,
            Role.TRADER,
            Role.TRADER,
            Role.PLANT,
            Role.STOCKPILER,
            Role.REFINER,
        ]
        assert [row[:2] for row in read_report(report)] == [
            ["13", "role 'jefe' is not one of miner, plant, stockpiler, refiner, trader"]
        ]

    def test_spanish_header_and_semicolons(self, db_session, clock, tmp_path):
        data = lines(
            "Rol;Documento;Nombre;Teléfono;Idioma;Notas",
            "minero;45678912;Juana Quispe Mamani;987 654 321;qu;vive en Ananea",
            encoding="latin-1",
        )
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (1, 0, 0, 0)
        [juana] = registrants(db_session)
        assert (juana.role, juana.name, juana.language) == (
            Role.MINER,
            "Juana Quispe Mamani",
            Language.QUECHUA,
        )

    def test_document_type_inferred_from_digits(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER,
            "miner,45678912,Juana Quispe,,es",
            f"miner,{natural_person_ruc('41234567')},Pedro Huamán,,es",
            "miner,001234567,Ana Silva,,es",
            "miner,4567891,Corto,,es",
            "miner,45678912-3,Con Dígito,,es",
        )
        report = tmp_path / "report.csv"
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (3, 0, 0, 2)
        assert [(r.document_type, r.document_number) for r in registrants(db_session)] == [
            (DocumentType.DNI, "45678912"),
            (DocumentType.RUC, natural_person_ruc("41234567")),
            (DocumentType.CE, "001234567"),
        ]
        assert [row[:2] for row in read_report(report)] == [
            [
                "5",
                "Expected a DNI (8 digits), a carné de extranjería (9 digits) or a RUC"
                " (11 digits); 4567891 has 7 digits.",
            ],
            [
                "6",
                "A DNI has 8 digits: enter 45678912 without the verification character 3"
                " that follows it on the card.",
            ],
        ]
        assert phone_links(db_session) == []

    def test_buyer_must_register_with_its_ruc(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER,
            "plant,45678912,Planta de Juana,987654321,es",
            "trader,001234567,Comercial Extranjero,987654322,es",
            f"plant,{COMPANY_RUCS[0]},Planta Oro Sur,987654323,es",
        )
        report = tmp_path / "report.csv"
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (1, 0, 0, 2)
        assert [row[:2] for row in read_report(report)] == [
            ["2", "a plant registers with its RUC, not a DNI"],
            ["3", "a trader registers with its RUC, not a CE"],
        ]
        assert [r.document_number for r in registrants(db_session)] == [COMPANY_RUCS[0]]
        assert phone_links(db_session) == [
            (COMPANY_RUCS[0], "+51987654323", PhoneLinkState.ACTIVE, "import")
        ]

    @pytest.mark.parametrize(
        ("written", "language"),
        [
            ("es", Language.SPANISH),
            ("ES", Language.SPANISH),
            ("", Language.SPANISH),
            ("Español", Language.SPANISH),
            ("castellano", Language.SPANISH),
            ("qu", Language.QUECHUA),
            ("Quechua", Language.QUECHUA),
            ("QUECHUA", Language.QUECHUA),
            ("Runa Simi", Language.QUECHUA),
        ],
    )
    def test_languages(self, db_session, clock, tmp_path, written, language):
        data = lines(REG_HEADER, f"miner,45678912,Juana Quispe,987654321,{written}")
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (1, 0, 0, 0)
        assert [r.language for r in registrants(db_session)] == [language]

    def test_unknown_language_rejected(self, db_session, clock, tmp_path):
        report = tmp_path / "report.csv"
        data = lines(REG_HEADER, "miner,45678912,Juana Quispe,987654321,aymara")
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (0, 0, 0, 1)
        assert [row[:2] for row in read_report(report)] == [
            ["2", "language 'aymara' is not es (Spanish) or qu (Quechua)"]
        ]
        assert registrants(db_session) == []

    def test_recpo_number_only_for_buyers(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER + ",RECPO Number",
            f"plant,{COMPANY_RUCS[0]},Planta Oro Sur,987654301,es,RECPO-0001",
            f"trader,{COMPANY_RUCS[1]},Comercial Sin Número,987654302,es,",
            "miner,45678912,Juana Quispe,987654303,qu,RECPO-0003",
        )
        report = tmp_path / "report.csv"
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (2, 0, 0, 1)
        assert [(r.document_number, r.recpo_number) for r in registrants(db_session)] == [
            (COMPANY_RUCS[0], "RECPO-0001"),
            (COMPANY_RUCS[1], None),
        ]
        assert [row[:2] for row in read_report(report)] == [
            ["4", "only buyers have a RECPO number"]
        ]

    def test_empty_required_field_and_wrong_field_count(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER,
            "miner,45678912,,987654301,es",
            ",41234567,Pedro Huamán,987654302,es",
            "miner,40000001,Rosa Ccori,987654303",
            "miner,40000002,Ana Apaza,987654304,es",
        )
        report = tmp_path / "report.csv"
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (1, 0, 0, 3)
        assert [row[:2] for row in read_report(report)] == [
            ["2", "name is empty"],
            ["3", "role is empty"],
            ["4", "expected 5 fields, found 4"],
        ]


class TestRegistrantPhones:
    def test_phone_normalised_and_linked_active(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER,
            "miner,45678912,Juana Quispe,987 654 321,qu",
            "miner,41234567,Pedro Huamán,+51 987-654-322,es",
            "miner,40000001,Rosa Ccori,0051987654323,es",
            "miner,40000002,Sin Teléfono,,es",
        )
        summary = run_registrants(
            db_session, write_csv(tmp_path, data), clock, decided_by="import:list.csv"
        )
        assert counts(summary) == (4, 0, 0, 0)
        assert phone_links(db_session) == [
            ("45678912", "+51987654321", PhoneLinkState.ACTIVE, "import:list.csv"),
            ("41234567", "+51987654322", PhoneLinkState.ACTIVE, "import:list.csv"),
            ("40000001", "+51987654323", PhoneLinkState.ACTIVE, "import:list.csv"),
        ]
        link = db_session.scalars(sa.select(PhoneLink).order_by(PhoneLink.id)).first()
        assert (link.requested_at, link.decided_at) == (clock.now(), clock.now())
        juana = registrants(db_session)[0]
        assert (juana.created_at, juana.updated_at) == (clock.now(), clock.now())

    def test_invalid_phone_rejected(self, db_session, clock, tmp_path):
        data = lines(REG_HEADER, "miner,45678912,Juana Quispe,014567890,es")
        report = tmp_path / "report.csv"
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)
        assert counts(summary) == (0, 0, 0, 1)
        assert [row[:2] for row in read_report(report)] == [
            [
                "2",
                "This is a landline, not a mobile number; enter a mobile number"
                " (9 digits starting with 9).",
            ]
        ]
        assert registrants(db_session) == []

    def test_phone_active_for_another_registrant(self, db_session, clock, tmp_path):
        other = add_registrant(db_session, clock, "49999999", "+51987654321")
        data = lines(
            REG_HEADER,
            "miner,45678912,Juana Quispe,987654321,es",
            "miner,41234567,Pedro Huamán,987654322,es",
        )
        report = tmp_path / "report.csv"

        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, report_path=report)

        assert counts(summary) == (1, 0, 0, 1)
        assert [row[:2] for row in read_report(report)] == [
            ["2", "the phone is already linked to another registrant"]
        ]
        assert [r.document_number for r in registrants(db_session)] == ["49999999", "41234567"]
        assert phone_links(db_session) == [
            ("49999999", "+51987654321", PhoneLinkState.ACTIVE, "console:admin"),
            ("41234567", "+51987654322", PhoneLinkState.ACTIVE, "import"),
        ]
        # The caller's own objects are still usable in its session.
        assert [link.phone for link in other.phones] == ["+51987654321"]

    def test_existing_registrant_changing_name_keeps_its_phone(self, db_session, clock, tmp_path):
        add_registrant(db_session, clock, "45678912", "+51987654321")
        clock.advance(dt.timedelta(days=1))
        data = lines(REG_HEADER, "miner,45678912,Juana Quispe,987654321,es")
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (0, 1, 0, 0)
        [juana] = registrants(db_session)
        assert (juana.name, juana.updated_at) == ("Juana Quispe", clock.now())
        assert len(phone_links(db_session)) == 1

    def test_revoked_or_pending_link_elsewhere_does_not_block(self, db_session, clock, tmp_path):
        other = add_registrant(db_session, clock, "49999999", "+51987000000")
        for state in (PhoneLinkState.REVOKED, PhoneLinkState.PENDING):
            db_session.add(
                PhoneLink(
                    registrant=other,
                    phone="+51987654321",
                    state=state,
                    requested_at=clock.now(),
                )
            )
        db_session.flush()
        data = lines(REG_HEADER, "miner,45678912,Juana Quispe,987654321,es")
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock)
        assert counts(summary) == (1, 0, 0, 0)
        active = db_session.execute(
            sa.select(Registrant.document_number)
            .join(PhoneLink.registrant)
            .where(PhoneLink.phone == "+51987654321", PhoneLink.state == PhoneLinkState.ACTIVE)
        ).scalars()
        assert list(active) == ["45678912"]

    def test_same_phone_twice_in_the_file(self, db_session, clock, tmp_path):
        data = lines(
            REG_HEADER,
            "miner,45678912,Juana Quispe,987654321,es",  # 2
            "miner,41234567,Pedro Huamán,+51987654321,es",  # 3: another registrant
            "miner,45678912,Juana Quispe,987 654 321,es",  # 4: the same registrant again
        )
        report = tmp_path / "report.csv"
        summary = run_registrants(
            db_session, write_csv(tmp_path, data), clock, report_path=report, batch_size=2
        )
        assert counts(summary) == (1, 0, 1, 1)
        assert [row[:2] for row in read_report(report)] == [
            ["3", "the phone is given to another registrant earlier in the file"]
        ]
        assert [r.document_number for r in registrants(db_session)] == ["45678912"]
        assert phone_links(db_session) == [
            ("45678912", "+51987654321", PhoneLinkState.ACTIVE, "import")
        ]


class TestRegistrantIdempotence:
    FILE = (
        REG_HEADER + ",recpo_number",
        "miner,45678912,Juana Quispe,987654321,qu,",
        f"plant,{COMPANY_RUCS[0]},Planta Oro Sur,987654322,es,RECPO-0001",
        "miner,41234567,Pedro Huamán,,es,",
    )

    def test_reimport_changes_nothing(self, db_session, clock, tmp_path):
        path = write_csv(tmp_path, lines(*self.FILE))
        assert counts(run_registrants(db_session, path, clock)) == (3, 0, 0, 0)
        first_now = clock.now()
        clock.advance(dt.timedelta(days=1))

        summary = run_registrants(db_session, path, clock)

        assert counts(summary) == (0, 0, 3, 0)
        assert {r.updated_at for r in registrants(db_session)} == {first_now}
        assert len(phone_links(db_session)) == 2

    def test_changed_fields_are_updated(self, db_session, clock, tmp_path):
        run_registrants(db_session, write_csv(tmp_path, lines(*self.FILE)), clock)
        clock.advance(dt.timedelta(days=1))
        data = lines(
            self.FILE[0],
            "miner,45678912,Juana Quispe Mamani,987654321,qu,",
            f"plant,{COMPANY_RUCS[0]},Planta Oro Sur,987654322,es,RECPO-0009",
            "miner,41234567,Pedro Huamán,987654323,quechua,",
        )
        summary = run_registrants(db_session, write_csv(tmp_path, data, "b.csv"), clock)
        assert counts(summary) == (0, 3, 0, 0)
        juana, planta, pedro = registrants(db_session)
        assert (juana.name, juana.updated_at) == ("Juana Quispe Mamani", clock.now())
        assert planta.recpo_number == "RECPO-0009"
        assert pedro.language is Language.QUECHUA
        assert phone_links(db_session)[-1] == (
            "41234567",
            "+51987654323",
            PhoneLinkState.ACTIVE,
            "import",
        )


class TestCallersSession:
    def test_callers_objects_stay_in_its_session(self, db_session, clock, tmp_path):
        mine = add_registrant(db_session, clock, "49999999", "+51987000000")
        data = lines(REG_HEADER, *(f"miner,4000000{i},Minero {i},98765432{i},es" for i in range(5)))
        summary = run_registrants(db_session, write_csv(tmp_path, data), clock, batch_size=2)
        assert counts(summary) == (5, 0, 0, 0)

        mine.name = "Cambiado Después"
        db_session.flush()

        stored = db_session.execute(
            sa.select(Registrant.name).where(Registrant.document_number == "49999999")
        ).scalar_one()
        assert stored == "Cambiado Después"

    def test_reinfo_refuses_a_naive_now(self, db_session, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A)))
        with pytest.raises(ValueError, match="naive datetime"):
            import_reinfo(db_session, path, snapshot_date=SNAPSHOT, now=dt.datetime(2026, 11, 30))
        assert reinfo_rows(db_session) == []


# --- SQLite (the embedded backend of `make run`) and transactions --------------------------------


class TestOnSqlite:
    def test_reinfo(self, sqlite_database: Database, clock, tmp_path):
        data = lines(
            HEADER,
            reinfo_row(RUC_A, "01-01491-08", name="PEÑA QUISPE"),
            reinfo_row(RUC_B, "070012317", status="EXCLUIDO"),
            reinfo_row("20131312956"),
            encoding="latin-1",
        )
        path = write_csv(tmp_path, data)
        with sqlite_database.transaction() as session:
            summary = run_reinfo(session, path, clock, batch_size=2)
        assert counts(summary) == (2, 0, 0, 1)
        clock.advance(dt.timedelta(hours=1))
        with sqlite_database.transaction() as session:
            assert counts(run_reinfo(session, path, clock)) == (0, 0, 2, 1)
        with sqlite_database.transaction() as session:
            rows = reinfo_rows(session)
        assert [(r["ruc"], r["codigo_unico"], r["holder_name"], r["status"]) for r in rows] == [
            (RUC_B, "070012317", "QUISPE MAMANI JUANA", ReinfoStatus.EXCLUIDO),
            (RUC_A, "010149108", "PEÑA QUISPE", ReinfoStatus.VIGENTE),
        ]
        assert {r["updated_at"] for r in rows} == {clock.now() - dt.timedelta(hours=1)}
        assert {r["snapshot_date"] for r in rows} == {SNAPSHOT}

    def test_registrants(self, sqlite_database: Database, clock, tmp_path):
        data = lines(
            "rol;documento;nombre;telefono;idioma",
            "minero;45678912;Juana Quispe;987654321;qu",
            f"planta;{COMPANY_RUCS[0]};Planta Oro Sur;987654322;es",
            "minero;41234567;Pedro Huamán;987654321;es",
        )
        path = write_csv(tmp_path, data)
        with sqlite_database.transaction() as session:
            summary = run_registrants(session, path, clock)
        assert counts(summary) == (2, 0, 0, 1)
        with sqlite_database.transaction() as session:
            assert counts(run_registrants(session, path, clock)) == (0, 0, 2, 1)
            assert phone_links(session) == [
                ("45678912", "+51987654321", PhoneLinkState.ACTIVE, "import"),
                (COMPANY_RUCS[0], "+51987654322", PhoneLinkState.ACTIVE, "import"),
            ]
            assert [r.updated_at for r in registrants(session)] == [clock.now()] * 2


class TestAtomicity:
    @pytest.fixture(params=["postgresql", "sqlite"])
    def any_database(self, request) -> Database:
        name = "database" if request.param == "postgresql" else "sqlite_database"
        return request.getfixturevalue(name)

    def test_failure_after_reinfo_import_leaves_nothing(self, any_database, clock, tmp_path):
        path = write_csv(tmp_path, lines(HEADER, reinfo_row(RUC_A), reinfo_row(RUC_B)))
        with (
            pytest.raises(RuntimeError, match="later step failed"),
            any_database.transaction() as session,
        ):
            summary = run_reinfo(session, path, clock, batch_size=1)
            assert summary.inserted == 2
            raise RuntimeError("later step failed")
        with any_database.transaction() as session:
            assert reinfo_rows(session) == []

    def test_failure_after_registrant_import_leaves_nothing(self, any_database, clock, tmp_path):
        data = lines(REG_HEADER, "miner,45678912,Juana Quispe,987654321,qu")
        path = write_csv(tmp_path, data)
        with (
            pytest.raises(RuntimeError, match="later step failed"),
            any_database.transaction() as session,
        ):
            assert run_registrants(session, path, clock).inserted == 1
            raise RuntimeError("later step failed")
        with any_database.transaction() as session:
            assert registrants(session) == []
            assert session.scalar(sa.select(sa.func.count()).select_from(PhoneLink)) == 0
