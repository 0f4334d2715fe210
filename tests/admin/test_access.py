"""Who may reach what: sign-in, sessions, roles, CSRF, rate limits, and the audit log."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask import url_for

from admin.auth import ACCOUNT_LIMIT, ADDRESS_LIMIT, DatabaseThrottle
from admin.models import AuditEntry, ConsoleSession, StaffRole
from recpo.app import create_app
from tests.admin.conftest import CSRF, PASSWORD, sign_in

SAMPLE_ARGS = {
    "message_id": 1,
    "registrant_id": 1,
    "flag_id": 1,
    "transaction_id": 1,
    "link_id": 1,
    "user_id": 1,
    "token_id": 1,
    "step": "take",
    "_rest": "nowhere",
    "name": "reinfo-20261130T150000Z-abcdef.csv",
}
PUBLIC = {"admin.login", "admin.static"}


def console_urls(app, method: str) -> list[str]:
    """One URL per console endpoint that answers `method` (sample values for its arguments)."""
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("admin.") or rule.endpoint in PUBLIC:
                continue
            if method in rule.methods:
                args = {name: SAMPLE_ARGS[name] for name in rule.arguments}
                urls.append(url_for(rule.endpoint, **args))
    return sorted(set(urls))


def login_form(client, name: str, password: str, **extra):
    page = client.get("/admin/login").get_data(as_text=True)
    token = CSRF.search(page).group(1)
    return client.post(
        "/admin/login", data={"name": name, "password": password, "csrf_token": token, **extra}
    )


class TestWithoutSession:
    def test_every_console_page_redirects_to_login(self, app, client):
        urls = console_urls(app, "GET")
        assert "/admin/messages" in urls and "/admin/nowhere" in urls
        for url in urls:
            response = client.get(url)
            assert response.status_code == 302, url
            assert response.location.startswith("/admin/login?next="), url

    def test_every_post_redirects_to_login_and_changes_nothing(self, app, client):
        urls = console_urls(app, "POST")
        assert "/admin/phone-links/1/approve" in urls
        for url in urls:
            response = client.post(url, data={"note": "x"})
            assert response.status_code == 302, url
            assert response.location.startswith("/admin/login"), url

    def test_login_page_and_static_files_are_public(self, client):
        assert client.get("/admin/login").status_code == 200
        response = client.get("/admin/static/console.css")
        response.close()
        assert response.status_code == 200
        assert response.mimetype == "text/css"


class TestSignIn:
    def test_good_password_opens_a_session_and_goes_where_asked(self, client, accounts):
        response = login_form(client, "ana", PASSWORD, next="/admin/flags?status=open")
        assert response.status_code == 302
        assert response.location == "/admin/flags?status=open"
        assert client.get("/admin/flags").status_code == 200

    def test_wrong_password_is_refused(self, client, accounts):
        response = login_form(client, "ana", "wrong password here")
        assert response.status_code == 401
        assert "incorrectos" in response.get_data(as_text=True)
        assert client.get("/admin/").status_code == 302

    def test_unknown_and_deactivated_accounts_are_refused_alike(self, client, accounts, database):
        with database.transaction() as session:
            session.execute(sa.update(type(accounts[StaffRole.AUDITOR])).values(active=False))
        assert login_form(client, "nobody", PASSWORD).status_code == 401
        assert login_form(client, "rita", PASSWORD).status_code == 401

    @pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/elsewhere"])
    def test_next_never_leaves_the_console(self, client, accounts, target):
        response = login_form(client, "ana", PASSWORD, next=target)
        assert response.location == "/admin/"

    def test_cookie_flags(self, client, accounts):
        response = login_form(client, "ana", PASSWORD)
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # served over http here

    def test_cookie_is_secure_behind_https(self, database, clock, instance_path, accounts):
        app = create_app(
            {
                "DATABASE": database,
                "CLOCK": clock,
                "INSTANCE_PATH": str(instance_path),
                "REDIS_URL": "",
                "PUBLIC_BASE_URL": "https://recpo.example",
            }
        )
        client = app.test_client()
        response = login_form(client, "ana", PASSWORD)
        assert response.status_code == 302
        assert "Secure" in response.headers["Set-Cookie"]

    def test_signing_in_replaces_the_session(self, client, accounts):
        client.get("/admin/login")
        with client.session_transaction() as before:
            csrf_before = before["console_csrf"]
        login_form(client, "ana", PASSWORD)
        with client.session_transaction() as after:
            assert after["console_csrf"] != csrf_before
            assert after["console_session"]

    def test_logout_ends_the_session_on_the_server(self, client, accounts, database):
        login_form(client, "lucho", PASSWORD)
        with client.session_transaction() as cookie:
            stolen = dict(cookie)
        token = CSRF.search(client.get("/admin/").get_data(as_text=True)).group(1)
        assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
        with client.session_transaction() as cookie:
            cookie.update(stolen)  # a copy of the cookie taken before signing out
        assert client.get("/admin/").status_code == 302
        with database.transaction() as session:
            assert session.scalar(sa.select(ConsoleSession.ended_at)) is not None


@pytest.fixture
def app_without_redis(database, clock, instance_path):
    """The app as the embedded default runs it: no Redis, so the database counts failures."""
    return create_app(
        {
            "DATABASE": database,
            "CLOCK": clock,
            "INSTANCE_PATH": str(instance_path),
            "REDIS_URL": "",
        }
    )


class TestRateLimit:
    def test_an_account_is_locked_after_five_failures_even_for_the_right_password(
        self, app_without_redis, accounts
    ):
        client = app_without_redis.test_client()
        for _ in range(ACCOUNT_LIMIT.attempts):
            assert login_form(client, "ana", "not the password").status_code == 401
        response = login_form(client, "ana", PASSWORD)
        assert response.status_code == 429
        assert "Demasiados intentos" in response.get_data(as_text=True)
        # Another account from the same address is not locked.
        assert login_form(client, "lucho", PASSWORD).status_code == 302

    def test_the_lock_lifts_after_the_window(self, app_without_redis, accounts, clock):
        client = app_without_redis.test_client()
        for _ in range(ACCOUNT_LIMIT.attempts):
            login_form(client, "ana", "not the password")
        assert login_form(client, "ana", PASSWORD).status_code == 429
        clock.advance(ACCOUNT_LIMIT.window + dt.timedelta(seconds=1))
        assert login_form(client, "ana", PASSWORD).status_code == 302

    def test_an_address_is_limited_across_accounts(self, app_without_redis, accounts):
        client = app_without_redis.test_client()
        for i in range(ADDRESS_LIMIT.attempts):
            assert login_form(client, f"guess{i}", "not the password").status_code == 401
        assert login_form(client, "ana", PASSWORD).status_code == 429
        elsewhere = app_without_redis.test_client()
        elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.2"
        assert login_form(elsewhere, "ana", PASSWORD).status_code == 302

    def test_with_redis_every_process_shares_the_counts(
        self, app, client, accounts, redis, make_app
    ):
        other_process = make_app(
            {
                "DATABASE": app.extensions["recpo"].database,
                "REDIS_URL": app.extensions["recpo"].settings.redis_url,
                "CLOCK": app.extensions["recpo"].clock,
                "INSTANCE_PATH": app.instance_path,
            }
        ).test_client()
        for _ in range(ACCOUNT_LIMIT.attempts):
            assert login_form(client, "ana", "not the password").status_code == 401
        assert redis.keys("recpo:console:login:user:ana")
        assert login_form(other_process, "ana", PASSWORD).status_code == 429

    def test_database_throttle_counts_only_the_window_and_caps(self, database, clock):
        throttle = DatabaseThrottle(database)
        now = clock.now()
        for minutes in (20, 10, 5, 1):
            throttle.record("user:x", now - dt.timedelta(minutes=minutes))
        assert throttle.failures("user:x", now - dt.timedelta(minutes=15), cap=10) == 3
        assert throttle.failures("user:x", now - dt.timedelta(minutes=15), cap=2) == 2
        throttle.clear("user:x")
        assert throttle.failures("user:x", now - dt.timedelta(minutes=15), cap=10) == 0


class TestIdleTimeout:
    def test_idle_session_ends(self, client, as_role, clock, database):
        as_role(StaffRole.ANALYST)
        clock.advance(dt.timedelta(minutes=29))
        assert client.get("/admin/messages").status_code == 200
        clock.advance(dt.timedelta(minutes=29))  # active 29 minutes ago: still alive
        assert client.get("/admin/messages").status_code == 200
        clock.advance(dt.timedelta(minutes=31))
        response = client.get("/admin/messages")
        assert response.status_code == 302
        assert response.location.startswith("/admin/login")
        with database.transaction() as session:
            assert session.scalar(sa.select(ConsoleSession.ended_at)) is not None

    def test_deactivating_an_account_ends_its_sessions(
        self, app, client, as_role, accounts, database, clock
    ):
        as_role(StaffRole.ANALYST)
        admin = app.test_client()
        token = sign_in(admin, database, accounts[StaffRole.ADMIN], clock.now())
        analyst_id = accounts[StaffRole.ANALYST].id
        response = admin.post(
            f"/admin/users/{analyst_id}", data={"active": "0", "csrf_token": token}
        )
        assert response.status_code == 302
        assert client.get("/admin/messages").status_code == 302


class TestRoles:
    def test_an_auditor_gets_403_on_every_post(self, app, client, as_role, demo):
        token = as_role(StaffRole.AUDITOR)
        urls = [u for u in console_urls(app, "POST") if u != "/admin/logout"]
        assert len(urls) >= 8
        for url in urls:
            response = client.post(url, data={"csrf_token": token, "note": "x", "text": "x"})
            assert response.status_code == 403, url

    def test_an_auditor_reads_but_does_not_simulate_or_manage(self, client, as_role):
        as_role(StaffRole.AUDITOR)
        for url in ("/admin/", "/admin/messages", "/admin/flags", "/admin/transactions"):
            assert client.get(url).status_code == 200, url
        for url in ("/admin/simulator", "/admin/users", "/admin/audit"):
            assert client.get(url).status_code == 403, url

    def test_an_analyst_may_simulate_but_not_manage_users(self, client, as_role):
        as_role(StaffRole.ANALYST)
        assert client.get("/admin/simulator").status_code == 200
        assert client.get("/admin/users").status_code == 403
        assert client.get("/admin/audit").status_code == 403

    def test_an_auditor_may_sign_out(self, client, as_role):
        token = as_role(StaffRole.AUDITOR)
        assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
        assert client.get("/admin/").status_code == 302

    def test_unknown_page_is_404_when_signed_in(self, client, as_role):
        as_role(StaffRole.ANALYST)
        assert client.get("/admin/nowhere").status_code == 404


class TestCsrf:
    @pytest.mark.parametrize("token", [None, "", "forged-token"])
    def test_a_post_without_the_token_is_refused(self, client, as_role, demo, token):
        as_role(StaffRole.ADMIN)
        data = {"name": "eve", "role": "admin", "password": "long enough password"}
        if token is not None:
            data["csrf_token"] = token
        response = client.post("/admin/users", data=data)
        assert response.status_code == 400
        assert "eve" not in client.get("/admin/users").get_data(as_text=True)

    def test_login_needs_the_token_too(self, client, accounts):
        response = client.post("/admin/login", data={"name": "ana", "password": PASSWORD})
        assert response.status_code == 400

    def test_the_header_form_is_accepted(self, client, as_role):
        token = as_role(StaffRole.ADMIN)
        response = client.post(
            "/admin/users",
            data={"name": "eve", "role": "auditor", "password": "long enough password"},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 302


class TestUsers:
    def test_admin_creates_and_changes_users(self, client, as_role, database):
        token = as_role(StaffRole.ADMIN)
        response = client.post(
            "/admin/users",
            data={
                "name": "nora",
                "role": "auditor",
                "password": "long enough pw!",
                "csrf_token": token,
            },
            follow_redirects=True,
        )
        assert "nora" in response.get_data(as_text=True)
        response = client.post(
            "/admin/users",
            data={"name": "x", "role": "auditor", "password": "short", "csrf_token": token},
            follow_redirects=True,
        )
        assert "No se creó" in response.get_data(as_text=True)

    def test_admin_cannot_change_their_own_account(self, client, as_role, accounts):
        token = as_role(StaffRole.ADMIN)
        me = accounts[StaffRole.ADMIN].id
        response = client.post(
            f"/admin/users/{me}",
            data={"role": "auditor", "csrf_token": token},
            follow_redirects=True,
        )
        assert "No puede modificar su propia cuenta" in response.get_data(as_text=True)


class TestAuditLog:
    def test_sign_in_and_views_of_personal_data_are_recorded(
        self, client, accounts, database, demo
    ):
        login_form(client, "lucho", "wrong password!!")
        login_form(client, "lucho", PASSWORD)
        juana = demo["45678912"]
        client.get(f"/admin/registrants/{juana}")
        client.get("/admin/registrants?q=45678912")
        client.get("/admin/conversation?phone=%2B51987000011")
        with database.transaction() as session:
            rows = session.execute(
                sa.select(AuditEntry.user_name, AuditEntry.action, AuditEntry.target_id).order_by(
                    AuditEntry.id
                )
            ).all()
        assert rows == [
            ("lucho", "login.refused", "lucho"),
            ("lucho", "login", str(accounts[StaffRole.ANALYST].id)),
            ("lucho", "registrant.view", str(juana)),
            ("lucho", "registrants.search", None),
            ("lucho", "conversation.view", "+51987000011"),
        ]

    def test_admins_read_it(self, client, as_role, demo):
        as_role(StaffRole.ADMIN)
        client.get(f"/admin/registrants/{demo['45678912']}")
        page = client.get("/admin/audit?target_type=registrant").get_data(as_text=True)
        assert "Bitácora de auditoría" in page
        assert "registrant.view" in page

    def test_the_database_refuses_to_change_it(self, database):
        with database.transaction() as session:
            session.add(
                AuditEntry(
                    at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
                    user_name="x",
                    action="test",
                    detail="{}",
                )
            )
        for statement in (sa.update(AuditEntry).values(action="forged"), sa.delete(AuditEntry)):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # noqa: SIM117
                with database.transaction() as session:
                    session.execute(statement)

    def test_no_console_route_edits_it(self, app):
        for rule in app.url_map.iter_rules():
            if "audit" in rule.rule:
                assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule.rule
