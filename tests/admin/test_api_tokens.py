"""The console's API tokens page: everyone reads the list; only admins create and revoke, with the
secret shown once, every action audited, CSRF on every form, and the API honouring the result."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

from admin.models import AuditEntry, StaffRole
from registry.partners import PartnerToken, create_token, hash_token

SECRET = re.compile(r'<pre class="key" id="new-token-secret">(recpo_[A-Za-z0-9_-]{43})</pre>')


def create(client, csrf, institution="SUNAT", scopes=("transactions:read",)):
    return client.post(
        "/admin/api-tokens",
        data={"csrf_token": csrf, "institution": institution, "scope": list(scopes)},
    )


def tokens(database) -> list[PartnerToken]:
    with database.transaction() as session:
        return list(session.scalars(sa.select(PartnerToken).order_by(PartnerToken.id)))


def audit_entries(database, action: str) -> list[AuditEntry]:
    with database.transaction() as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


class TestList:
    @pytest.mark.parametrize("role", [StaffRole.ANALYST, StaffRole.AUDITOR])
    def test_analysts_and_auditors_see_the_list_without_forms(
        self, client, as_role, database, clock, role
    ):
        with database.transaction() as session:
            create_token(session, "SUNAT", "transactions:read,personal_data", clock.now(), "ana")
        as_role(role)
        page = client.get("/admin/api-tokens").get_data(as_text=True)
        assert "SUNAT" in page and "<code>personal_data</code>" in page
        assert 'id="create-token"' not in page and "Revocar" not in page
        assert "Solo los administradores crean y revocan tokens." in page
        assert 'href="/admin/api-tokens"' in page  # in the menu

    def test_the_list_shows_institution_scopes_created_last_use_and_revocation(
        self, client, as_role, database, clock
    ):
        with database.transaction() as session:
            used = create_token(session, "UIF-Perú", "flags:read", clock.now(), "ana").token
            used.last_used_at = clock.now() + dt.timedelta(hours=2)
            gone = create_token(session, "Contraloría", "aggregates:read", clock.now(), "cli")
            gone.token.revoked_at = clock.now() + dt.timedelta(hours=3)
        as_role(StaffRole.ADMIN)
        page = client.get("/admin/api-tokens?lang=en").get_data(as_text=True)
        row = page.split(f'id="token-{used.id}"')[1].split("</tr>")[0]
        assert "UIF-Perú" in row and "<code>flags:read</code>" in row
        assert "2026-11-30 10:00:00" in row and "2026-11-30 12:00:00" in row  # created, last used
        assert "Revoke" in row and ">ana<" in row
        revoked = page.split(f'id="token-{gone.token.id}"')[1].split("</tr>")[0]
        assert "revoked" in revoked and "2026-11-30 13:00:00" in revoked and "Revoke" not in revoked
        assert gone.secret not in page and used.token_hash not in page


class TestCreate:
    def test_the_secret_is_shown_once_and_works_on_the_api(self, client, as_role, database):
        csrf = as_role(StaffRole.ADMIN)
        response = create(client, csrf, "  SUNAT  ", ("transactions:read", "aggregates:read"))
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert "Token creado para SUNAT." in page
        secret = SECRET.search(page).group(1)
        [token] = tokens(database)
        assert token.token_hash == hash_token(secret) and secret not in token.token_hash
        assert (token.institution, token.scopes) == ("SUNAT", "aggregates:read transactions:read")
        assert token.created_by == "ana"
        # Never again: not on the list, not in the session cookie.
        assert secret not in client.get("/admin/api-tokens").get_data(as_text=True)
        with client.session_transaction() as cookie:
            assert secret not in json.dumps(dict(cookie), default=str)
        [entry] = audit_entries(database, "api_token.create")
        assert (entry.user_name, entry.target_type, entry.target_id) == (
            "ana",
            "partner_token",
            str(token.id),
        )
        assert json.loads(entry.detail) == {
            "institution": "SUNAT",
            "scopes": "aggregates:read transactions:read",
            "prefix": token.token_prefix,
        }
        assert secret not in entry.detail
        answer = client.get("/api/v1/transactions", headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        refused = client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 403  # not a scope it was given

    @pytest.mark.parametrize(
        ("institution", "scopes", "reason"),
        [
            ("   ", ("flags:read",), "indique el nombre de la institución"),
            ("X" * 121, ("flags:read",), "el nombre de la institución tiene más de 120"),
            ("SUNAT", (), "elija al menos un alcance"),
            ("SUNAT", ("flags:read", "ledger:write"), "alcance desconocido: ledger:write"),
        ],
    )
    def test_a_bad_form_creates_nothing_and_says_why(
        self, client, as_role, database, institution, scopes, reason
    ):
        csrf = as_role(StaffRole.ADMIN)
        response = create(client, csrf, institution, scopes)
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert reason in page and "No se creó" in page
        assert 'id="new-token"' not in page
        assert tokens(database) == [] and audit_entries(database, "api_token.create") == []

    @pytest.mark.parametrize("role", [StaffRole.ANALYST, StaffRole.AUDITOR])
    def test_only_admins_create(self, client, as_role, database, role):
        csrf = as_role(role)
        assert create(client, csrf).status_code == 403
        assert tokens(database) == []

    def test_without_the_csrf_token_nothing_is_created(self, client, as_role, database):
        as_role(StaffRole.ADMIN)
        assert create(client, "forged").status_code == 400
        assert create(client, "").status_code == 400
        assert tokens(database) == []


class TestRevoke:
    def test_revoked_tokens_are_refused_by_the_api(self, client, as_role, database, clock):
        with database.transaction() as session:
            new = create_token(session, "SUNAT", "transactions:read", clock.now(), "cli")
        bearer = {"Authorization": f"Bearer {new.secret}"}
        assert client.get("/api/v1/transactions", headers=bearer).status_code == 200
        csrf = as_role(StaffRole.ADMIN)
        response = client.post(
            f"/admin/api-tokens/{new.token.id}/revoke", data={"csrf_token": csrf}
        )
        assert response.status_code == 302
        page = client.get(response.location).get_data(as_text=True)
        assert f"Token {new.token.token_prefix} de SUNAT revocado." in page
        assert client.get("/api/v1/transactions", headers=bearer).status_code == 401
        [token] = tokens(database)
        assert token.revoked_at == clock.now()
        [entry] = audit_entries(database, "api_token.revoke")
        assert (entry.target_id, json.loads(entry.detail)) == (
            str(token.id),
            {"institution": "SUNAT", "prefix": token.token_prefix},
        )
        # Twice: nothing changes, nothing more is audited.
        again = client.post(f"/admin/api-tokens/{token.id}/revoke", data={"csrf_token": csrf})
        assert "Ese token ya estaba revocado." in client.get(again.location).get_data(as_text=True)
        assert [t.revoked_at for t in tokens(database)] == [clock.now()]
        assert len(audit_entries(database, "api_token.revoke")) == 1

    @pytest.mark.parametrize("role", [StaffRole.ANALYST, StaffRole.AUDITOR])
    def test_only_admins_revoke(self, client, as_role, database, clock, role):
        with database.transaction() as session:
            new = create_token(session, "SUNAT", "transactions:read", clock.now(), "cli")
        csrf = as_role(role)
        response = client.post(
            f"/admin/api-tokens/{new.token.id}/revoke", data={"csrf_token": csrf}
        )
        assert response.status_code == 403
        assert [t.revoked_at for t in tokens(database)] == [None]

    def test_without_the_csrf_token_nothing_is_revoked(self, client, as_role, database, clock):
        with database.transaction() as session:
            new = create_token(session, "SUNAT", "transactions:read", clock.now(), "cli")
        as_role(StaffRole.ADMIN)
        assert client.post(f"/admin/api-tokens/{new.token.id}/revoke").status_code == 400
        assert [t.revoked_at for t in tokens(database)] == [None]

    def test_an_unknown_token_is_404(self, client, as_role):
        csrf = as_role(StaffRole.ADMIN)
        assert (
            client.post("/admin/api-tokens/999/revoke", data={"csrf_token": csrf}).status_code
            == 404
        )
