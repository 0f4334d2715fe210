"""Uploads of REINFO and registrant files: the CLI's import, its report, refusals, sizes, access."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from admin.models import AuditEntry, StaffRole
from registry.identifiers import natural_person_ruc
from registry.models import PhoneLink, PhoneLinkState, Registrant, ReinfoRegistration

HEADER = "RUC;Nombre;CÓDIGO ÚNICO;Derecho Minero;Departamento;Provincia;Distrito;Estado"
RUC_A = natural_person_ruc("45678912")
RUC_B = natural_person_ruc("41234567")
GOOD_AND_BAD = "\r\n".join(
    [
        HEADER,
        f"{RUC_A};QUISPE MAMANI JUANA;010149108;RINCONADA UNO;PUNO;SAN ANTONIO DE PUTINA;ANANEA;"
        "VIGENTE",
        "12345;NADIE;010149109;NINGUNO;PUNO;PUNO;PUNO;VIGENTE",
        f"{RUC_B};HUAMAN CONDORI PEDRO;070012345;HUEPETUHE 7;MADRE DE DIOS;MANU;HUEPETUHE;"
        "SUSPENDIDO",
        "",
    ]
).encode("utf-8")
DONE = re.compile(r"/admin/uploads\?done=(\d+)$")
REPORT_LINK = re.compile(r'href="(/admin/uploads/reports/[^"]+)" class="report"')


def multipart(form: dict, file: bytes, name: str) -> dict:
    """A multipart body in memory (the test client would spool a large one to an unclosed
    temporary file)."""
    values = {**form, "file": FileStorage(io.BytesIO(file), filename=name, content_type="text/csv")}
    boundary, body = encode_multipart(values)
    return {"data": body, "content_type": f'multipart/form-data; boundary="{boundary}"'}


def upload(client, token: str, data: bytes, kind: str = "reinfo", name: str = "reinfo.csv", **form):
    if kind == "reinfo":
        form.setdefault("snapshot_date", "2026-11-30")
    return client.post(
        "/admin/uploads", **multipart({"csrf_token": token, "kind": kind, **form}, data, name)
    )


def registrations(database) -> list[tuple[str, str, str]]:
    with database.transaction() as session:
        return list(
            session.execute(
                sa.select(
                    ReinfoRegistration.ruc,
                    ReinfoRegistration.codigo_unico,
                    ReinfoRegistration.status,
                ).order_by(ReinfoRegistration.ruc)
            ).all()
        )


def audit_entries(database, prefix: str) -> list[AuditEntry]:
    with database.transaction() as session:
        return list(
            session.scalars(
                sa.select(AuditEntry)
                .where(AuditEntry.action.like(prefix + "%"))
                .order_by(AuditEntry.id)
            )
        )


class TestReinfo:
    def test_import_summary_and_report(self, client, as_role, database, instance_path):
        token = as_role(StaffRole.ANALYST)
        response = upload(client, token, GOOD_AND_BAD)
        assert response.status_code == 302
        assert DONE.search(response.location)
        page = client.get(response.location).get_data(as_text=True)
        result = page.split('id="upload-result"')[1].split("</section>")[0]
        figures = dict(re.findall(r'<dd data-field="(\w+)">(\d+)</dd>', result))
        assert figures == {"inserted": "2", "updated": "0", "unchanged": "0", "rejected": "1"}
        assert (
            "reinfo.csv importado: 2 nuevas, 0 actualizadas, 0 sin cambios, 1 rechazadas." in page
        )
        assert [(r, c, s.value) for r, c, s in registrations(database)] == [
            (RUC_B, "070012345", "SUSPENDIDO"),
            (RUC_A, "010149108", "VIGENTE"),
        ]
        (entry,) = audit_entries(database, "upload.reinfo")
        detail = json.loads(entry.detail)
        assert (entry.user_name, detail["file"], detail["snapshot_date"]) == (
            "lucho",
            "reinfo.csv",
            "2026-11-30",
        )
        assert (detail["inserted"], detail["rejected"]) == (2, 1)
        # The report, as the CLI writes it, under the instance folder.
        link = REPORT_LINK.search(result).group(1)
        assert (instance_path / "reports" / link.rsplit("/", 1)[1]).is_file()
        assert not any((instance_path / "uploads").iterdir())  # the upload itself is gone
        report = client.get(link)
        assert report.status_code == 200 and report.mimetype == "text/csv"
        assert "attachment" in report.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(report.get_data(as_text=True))))
        report.close()
        assert rows[0] == ["line", "reason", "row"]
        assert rows[1][0] == "3" and "RUC" in rows[1][1] and rows[1][2].startswith("12345;")
        assert [e.action for e in audit_entries(database, "upload.report")] == ["upload.report"]

    def test_the_same_file_again_changes_nothing(self, client, as_role, database):
        token = as_role(StaffRole.ADMIN)
        upload(client, token, GOOD_AND_BAD)
        page = client.get(upload(client, token, GOOD_AND_BAD).location).get_data(as_text=True)
        assert "0 nuevas, 0 actualizadas, 2 sin cambios, 1 rechazadas" in page
        assert page.count('class="report"') >= 2  # both uploads listed with their reports

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"PK\x03\x04 a workbook", "workbook \\(.xlsx\\), not a CSV file"),
            (b"Nombre;Estado\r\nJUANA;VIGENTE\r\n", "lacks the column\\(s\\) ruc"),
            (b"", "lista.xlsx is empty"),
        ],
    )
    def test_a_refused_file_changes_nothing(
        self, client, as_role, database, instance_path, data, reason
    ):
        token = as_role(StaffRole.ANALYST)
        response = upload(client, token, data, name="lista.xlsx")
        page = client.get(response.location).get_data(as_text=True)
        result = page.split('id="upload-result"')[1].split("</section>")[0]
        assert "Archivo rechazado; no se importó nada." in result
        assert re.search(reason, result)
        assert registrations(database) == []
        (entry,) = audit_entries(database, "upload.reinfo")
        assert entry.action == "upload.reinfo.refused"
        assert re.search(reason, json.loads(entry.detail)["reason"])
        assert not (instance_path / "reports").exists() or not any(
            (instance_path / "reports").iterdir()
        )

    def test_snapshot_date_must_not_be_in_the_future(self, client, as_role, database):
        token = as_role(StaffRole.ANALYST)
        response = upload(client, token, GOOD_AND_BAD, snapshot_date="2026-12-25")
        assert response.location == "/admin/uploads"
        assert "no futura" in client.get("/admin/uploads").get_data(as_text=True)
        assert registrations(database) == []

    def test_no_file(self, client, as_role):
        token = as_role(StaffRole.ANALYST)
        response = client.post("/admin/uploads", data={"csrf_token": token, "kind": "reinfo"})
        assert response.location == "/admin/uploads"
        assert "Elija un archivo CSV" in client.get("/admin/uploads").get_data(as_text=True)


class TestRegistrants:
    def test_registrants_and_their_phones(self, client, as_role, database):
        token = as_role(StaffRole.ANALYST)
        data = (
            b"role,document,name,phone,language\r\n"
            b"miner,47000001,Maria Condori,987 000 061,qu\r\n"
            b"miner,470,Too Short,987 000 062,es\r\n"
        )
        response = upload(client, token, data, kind="registrants", name="mineros.csv")
        page = client.get(response.location).get_data(as_text=True)
        assert "1 nuevas, 0 actualizadas, 0 sin cambios, 1 rechazadas" in page
        with database.transaction() as session:
            maria = session.scalars(
                sa.select(Registrant).where(Registrant.document_number == "47000001")
            ).one()
            link = session.scalars(
                sa.select(PhoneLink).where(PhoneLink.registrant_id == maria.id)
            ).one()
        assert (link.phone, link.state, link.decided_by) == (
            "+51987000061",
            PhoneLinkState.ACTIVE,
            "console:lucho",
        )


class TestAccessAndSize:
    def test_auditors_may_not_upload_or_read_reports(self, client, as_role, database):
        token = as_role(StaffRole.AUDITOR)
        assert client.get("/admin/uploads").status_code == 403
        assert upload(client, token, GOOD_AND_BAD).status_code == 403
        assert (
            client.get("/admin/uploads/reports/reinfo-20261130T150000Z-abcdef.csv").status_code
            == 403
        )
        assert registrations(database) == []
        assert "/admin/uploads" not in client.get("/admin/").get_data(as_text=True)

    def test_report_names_are_checked(self, client, as_role, instance_path):
        as_role(StaffRole.ADMIN)
        (instance_path / "secret_key.csv").write_text("x")
        for name in ("..%2Fsecret_key.csv", "secret_key.csv", "reinfo-x.csv"):
            assert client.get(f"/admin/uploads/reports/{name}").status_code == 404, name

    def test_files_over_1_mib_are_taken_here_only(self, client, as_role, database):
        token = as_role(StaffRole.ANALYST)
        row = f"{RUC_A};QUISPE MAMANI JUANA;{{:09d}};RINCONADA;PUNO;PUTINA;ANANEA;VIGENTE"
        rows = [row.format(i) for i in range(1, 20_000)]
        big = "\r\n".join([HEADER, *rows, ""]).encode()
        assert len(big) > 1024 * 1024
        response = upload(client, token, big)
        assert response.status_code == 302
        assert "19999 nuevas" in client.get(response.location).get_data(as_text=True).replace(
            ",", ""
        )
        # Any other form keeps the app's 1 MiB limit.
        response = client.post(
            "/admin/flags/1/take", data={"csrf_token": token, "note": "x" * (1024 * 1024 + 1)}
        )
        assert response.status_code == 413

    def test_the_upload_limit(self, app, client, as_role):
        app.config["CONSOLE_UPLOAD_MAX_BYTES"] = 2048
        token = as_role(StaffRole.ANALYST)
        assert upload(client, token, b"x" * 4096).status_code == 413

    def test_without_a_session_the_body_is_not_read(self, client):
        response = client.post(
            "/admin/uploads", **multipart({"kind": "reinfo"}, b"x" * (2 * 1024 * 1024), "big.csv")
        )
        assert response.status_code == 302
        assert response.location.startswith("/admin/login")
