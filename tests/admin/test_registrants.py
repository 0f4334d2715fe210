"""Registrants: search, detail with REINFO, and deciding ALTA requests for phone links."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from admin.models import AuditEntry, StaffRole
from flows.commands import ALTA_APPROVED
from gateway.models import Message, OutboxItem
from gateway.text import fold_for_sms
from recpo.i18n import translate
from registry.models import PhoneLink, PhoneLinkState

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
