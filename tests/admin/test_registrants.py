"""Registrants: search, detail with REINFO and status history, standing, and deciding ALTA
requests for phone links."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

from admin.models import AuditEntry, StaffRole
from flows.commands import ALTA_APPROVED
from gateway.models import Direction, Message, OutboxItem
from gateway.text import fold_for_sms
from recpo.i18n import translate
from registry.identifiers import natural_person_ruc
from registry.models import (
    PhoneLink,
    PhoneLinkState,
    Registrant,
    RegistrantStatus,
    StatusChange,
)
from registry.transactions import REGISTRANT_SUSPENDED
from tests.admin.test_transactions import simulate
from tests.admin.test_uploads import HEADER as UPLOAD_HEADER
from tests.admin.test_uploads import upload

NEW_PHONE = "+51987000099"
JUANA_PHONE = "+51987000011"


def names_listed(response) -> list[str]:
    return re.findall(r'href="/admin/registrants/\d+">([^<]+)</a>', response.get_data(as_text=True))


class TestSearch:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("quispe", ["Juana Quispe Mamani"]),
            ("45678912", ["Juana Quispe Mamani"]),
            ("10456789124", ["Juana Quispe Mamani"]),  # her natural-person RUC
            ("20131312955", ["Planta de Beneficio Oro Sur S.A.C."]),
            ("987 000 012", ["Pedro Huamán Condori"]),
            ("+51987000013", ["Rosa Ccori Apaza"]),
            ("nadie", []),
            ("%", []),
        ],
    )
    def test_by_name_document_or_phone(self, client, as_role, demo, query, expected):
        as_role(StaffRole.AUDITOR)
        response = client.get("/admin/registrants", query_string={"q": query})
        assert response.status_code == 200
        assert names_listed(response) == expected

    def test_without_a_query_lists_the_newest(self, client, as_role, demo):
        as_role(StaffRole.AUDITOR)
        listed = names_listed(client.get("/admin/registrants"))
        assert listed[0] == "Rosa Ccori Apaza" and len(listed) == 5


class TestDetail:
    def test_shows_reinfo_registrations_and_phones(self, client, as_role, demo):
        as_role(StaffRole.ANALYST)
        page = client.get(f"/admin/registrants/{demo['41234567']}").get_data(as_text=True)
        assert "Huepetuhe Dos" in page and "Huepetuhe Tres" in page
        assert "VIGENTE" in page and "EXCLUIDO" in page
        assert "+51987000012" in page

    def test_auditor_sees_the_phone_masked(self, client, as_role, demo):
        as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/registrants/{demo['41234567']}").get_data(as_text=True)
        assert "+51987000012" not in page
        assert "+51******012" in page
        assert "Aprobar" not in page and "Revocar" not in page

    def test_unknown_is_404(self, client, as_role):
        as_role(StaffRole.ANALYST)
        assert client.get("/admin/registrants/999999999").status_code == 404


@pytest.fixture
def pending(database, clock, demo) -> int:
    """Pedro asked with ALTA to link a new phone."""
    with database.transaction() as session:
        link = PhoneLink(
            registrant_id=demo["41234567"],
            phone=NEW_PHONE,
            state=PhoneLinkState.PENDING,
            requested_at=clock.now() - dt.timedelta(hours=2),
        )
        session.add(link)
        session.flush()
        return link.id


def link_row(database, link_id: int) -> PhoneLink:
    with database.transaction() as session:
        return session.get(PhoneLink, link_id)


class TestPhoneLinks:
    def test_pending_requests_are_listed(self, client, as_role, pending):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/phone-links").get_data(as_text=True)
        assert NEW_PHONE in page and "Pedro Huamán Condori" in page
        assert f"/admin/phone-links/{pending}/approve" in page

    def test_approving_activates_the_link(self, client, as_role, pending, database, clock):
        token = as_role(StaffRole.ANALYST)
        response = client.post(
            f"/admin/phone-links/{pending}/approve",
            data={"csrf_token": token},
            follow_redirects=True,
        )
        assert "Vínculo de teléfono aprobado." in response.get_data(as_text=True)
        link = link_row(database, pending)
        assert link.state is PhoneLinkState.ACTIVE
        assert link.decided_by == "lucho"
        assert link.decided_at == clock.now()
        with database.transaction() as session:
            action = session.scalar(
                sa.select(AuditEntry.action).where(AuditEntry.target_id == str(pending))
            )
        assert action == "phone_link.approve"

    def test_approval_tells_the_phone_in_its_language(self, client, as_role, pending, database):
        token = as_role(StaffRole.ANALYST)
        client.post(f"/admin/phone-links/{pending}/approve", data={"csrf_token": token})
        with database.transaction() as session:
            notice = session.scalars(sa.select(Message).where(Message.phone == NEW_PHONE)).one()
            queued = session.get(OutboxItem, notice.id)
        expected = translate("es", ALTA_APPROVED, name="Pedro Huamán Condori")
        assert notice.body == fold_for_sms(expected)
        assert queued is not None  # in the outbox, sent like any other message

    def test_rejection_sends_nothing(self, client, as_role, pending, database):
        token = as_role(StaffRole.ANALYST)
        client.post(f"/admin/phone-links/{pending}/reject", data={"csrf_token": token})
        with database.transaction() as session:
            assert session.scalars(sa.select(Message).where(Message.phone == NEW_PHONE)).all() == []

    def test_rejecting(self, client, as_role, pending, database):
        token = as_role(StaffRole.ADMIN)
        client.post(f"/admin/phone-links/{pending}/reject", data={"csrf_token": token})
        link = link_row(database, pending)
        assert (link.state, link.decided_by) == (PhoneLinkState.REVOKED, "ana")

    def test_a_phone_active_for_another_registrant_is_not_approved(
        self, client, as_role, demo, database, clock
    ):
        with database.transaction() as session:
            link = PhoneLink(
                registrant_id=demo["41234567"],
                phone=JUANA_PHONE,  # Juana's, active
                state=PhoneLinkState.PENDING,
                requested_at=clock.now(),
            )
            session.add(link)
        token = as_role(StaffRole.ANALYST)
        response = client.post(
            f"/admin/phone-links/{link.id}/approve",
            data={"csrf_token": token},
            follow_redirects=True,
        )
        page = response.get_data(as_text=True)
        assert "No aprobado: este teléfono ya está activo para Juana Quispe Mamani" in page
        assert "DNI 45678912" in page
        assert link_row(database, link.id).state is PhoneLinkState.PENDING

    def test_a_decided_link_is_not_decided_again(self, client, as_role, pending):
        token = as_role(StaffRole.ANALYST)
        client.post(f"/admin/phone-links/{pending}/reject", data={"csrf_token": token})
        response = client.post(
            f"/admin/phone-links/{pending}/approve",
            data={"csrf_token": token},
            follow_redirects=True,
        )
        assert "ya decidió" in response.get_data(as_text=True)

    def test_revoking_frees_the_phone_for_a_new_request(
        self, client, as_role, demo, database, clock
    ):
        with database.transaction() as session:
            juana = session.scalars(
                sa.select(PhoneLink).where(PhoneLink.phone == JUANA_PHONE)
            ).one()
            request = PhoneLink(
                registrant_id=demo["41234567"],
                phone=JUANA_PHONE,
                state=PhoneLinkState.PENDING,
                requested_at=clock.now(),
            )
            session.add(request)
        token = as_role(StaffRole.ANALYST)
        client.post(f"/admin/phone-links/{juana.id}/revoke", data={"csrf_token": token})
        client.post(f"/admin/phone-links/{request.id}/approve", data={"csrf_token": token})
        assert link_row(database, juana.id).state is PhoneLinkState.REVOKED
        assert link_row(database, request.id).state is PhoneLinkState.ACTIVE

    def test_auditor_cannot_approve(self, client, as_role, pending, database):
        token = as_role(StaffRole.AUDITOR)
        response = client.post(f"/admin/phone-links/{pending}/approve", data={"csrf_token": token})
        assert response.status_code == 403
        assert link_row(database, pending).state is PhoneLinkState.PENDING


# --- status history and standing ------------------------------------------------------------------

PLANTA_PHONE = "+51987000001"  # Planta de Beneficio Oro Sur (a buyer)


def history_section(page: str) -> str:
    return page.split('id="status-history"')[1].split("</section>")[0]


def standing(client, token: str, registrant_id: int, status: str, note: str):
    return client.post(
        f"/admin/registrants/{registrant_id}/standing",
        data={"csrf_token": token, "status": status, "note": note},
    )


class TestStatusHistory:
    def test_an_uploaded_reinfo_list_shows_who_changed_what(self, client, as_role, demo):
        token = as_role(StaffRole.ANALYST)
        pedro = natural_person_ruc("41234567")
        data = "\r\n".join(
            [
                UPLOAD_HEADER,
                f"{pedro};HUAMAN CONDORI PEDRO;070012317;HUEPETUHE DOS;MADRE DE DIOS;MANU;"
                "HUEPETUHE;SUSPENDIDO",
                f"{pedro};HUAMAN CONDORI PEDRO;070012319;HUEPETUHE CUATRO;MADRE DE DIOS;MANU;"
                "HUEPETUHE;VIGENTE",
            ]
        ).encode()
        assert upload(client, token, data, name="<b>reinfo-dic</b>.csv").status_code == 302

        page = client.get(f"/admin/registrants/{demo['41234567']}").get_data(as_text=True)
        body = history_section(page).split("<tbody>")[1]
        rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
        assert len(rows) == 2
        # The same instant: the registration inserted after the update comes first.
        assert "070012319" in rows[0] and ">VIGENTE<" in rows[0] and "—" in rows[0]
        assert "070012317" in rows[1]
        assert re.search(r">VIGENTE</span>\s*→\s*<span[^>]*>SUSPENDIDO<", rows[1])
        for row in rows:
            assert "Lista del REINFO del 2026-11-30" in row and "por lucho" in row
            assert "&lt;b&gt;reinfo-dic&lt;/b&gt;.csv" in row and "<b>" not in row
        # Juana's page shows none of it.
        other = client.get(f"/admin/registrants/{demo['45678912']}").get_data(as_text=True)
        assert "Aún no se ha registrado ningún cambio de estado." in history_section(other)


class TestStanding:
    def test_an_analyst_suspends_with_a_note_and_the_buyer_can_no_longer_buy(
        self, client, as_role, demo, database, clock
    ):
        token = as_role(StaffRole.ANALYST)
        planta = demo["20131312955"]
        response = standing(client, token, planta, "suspended", "Fiscalía: <b>carpeta 12</b>")
        assert response.status_code == 302
        page = client.get(response.location).get_data(as_text=True)
        assert "Situación cambiada." in page
        section = history_section(page)
        assert "Situación ante el registro" in section and "Consola" in section
        assert "activo" in section and "suspendido" in section and "por lucho" in section
        assert "Fiscalía: &lt;b&gt;carpeta 12&lt;/b&gt;" in section
        with database.transaction() as session:
            assert session.get(Registrant, planta).status is RegistrantStatus.SUSPENDED
            [change] = session.scalars(sa.select(StatusChange)).all()
            entry = session.scalars(
                sa.select(AuditEntry).where(AuditEntry.action == "registrant.standing")
            ).one()
        assert (change.old_status, change.new_status, change.changed_at) == (
            "active",
            "suspended",
            clock.now(),
        )
        assert (entry.user_name, entry.target_id) == ("lucho", str(planta))
        assert json.loads(entry.detail) == {
            "note": "Fiscalía: <b>carpeta 12</b>",
            "previous": "active",
            "status": "suspended",
        }

        simulate(client, token, PLANTA_PHONE, "COMPRA 45678912 DORE 25.5G 850 5400")
        with database.transaction() as session:
            reply = session.scalars(
                sa.select(Message.body)
                .where(Message.phone == PLANTA_PHONE, Message.direction == Direction.OUT)
                .order_by(Message.id.desc())
            ).first()
        assert reply == fold_for_sms(translate("es", REGISTRANT_SUSPENDED))

        standing(client, token, planta, "active", "Archivado.")
        with database.transaction() as session:
            assert session.get(Registrant, planta).status is RegistrantStatus.ACTIVE
            assert session.scalar(sa.select(sa.func.count()).select_from(StatusChange)) == 2

    @pytest.mark.parametrize(
        ("status", "note", "message"),
        [
            ("suspended", "  ", "Para cambiar la situación de un registrado se requiere una nota."),
            ("banned", "x", "Elija una situación."),
            ("active", "x", "El registrado ya tiene esa situación; no se cambió nada."),
            ("closed", "x" * 501, "La nota es demasiado larga (como máximo 500 caracteres)."),
        ],
    )
    def test_refused_or_idle_changes_record_nothing(
        self, client, as_role, demo, database, status, note, message
    ):
        token = as_role(StaffRole.ADMIN)
        response = standing(client, token, demo["45678912"], status, note)
        page = client.get(response.location).get_data(as_text=True)
        assert message in page
        with database.transaction() as session:
            assert session.scalars(sa.select(StatusChange)).all() == []
            assert session.get(Registrant, demo["45678912"]).status is RegistrantStatus.ACTIVE

    def test_an_auditor_sees_no_form_and_cannot_post(self, client, as_role, demo, database):
        token = as_role(StaffRole.AUDITOR)
        page = client.get(f"/admin/registrants/{demo['45678912']}").get_data(as_text=True)
        assert 'id="standing-form"' not in page
        assert standing(client, token, demo["45678912"], "closed", "x").status_code == 403
        with database.transaction() as session:
            assert session.get(Registrant, demo["45678912"]).status is RegistrantStatus.ACTIVE

    def test_unknown_registrant_is_404(self, client, as_role):
        token = as_role(StaffRole.ANALYST)
        assert standing(client, token, 999999999, "closed", "x").status_code == 404
