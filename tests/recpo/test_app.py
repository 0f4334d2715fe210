from __future__ import annotations

from flask import request

from recpo.app import CookieSessions


class TestCookieSessions:
    """The console's signed-cookie sessions, opened without a serializer when there is no cookie."""

    def _open(self, app, cookie: str | None = None):
        headers = {"Cookie": f"{app.session_interface.get_cookie_name(app)}={cookie}"}
        with app.test_request_context("/", headers=headers if cookie is not None else {}):
            return app.session_interface.open_session(app, request)

    def test_the_app_uses_them(self, app):
        assert isinstance(app.session_interface, CookieSessions)

    def test_no_cookie_is_a_new_empty_session(self, app):
        session = self._open(app)
        assert dict(session) == {}
        assert not session.modified
        assert self._open(app, "") == {}

    def test_a_signed_cookie_is_read(self, app):
        cookie = app.session_interface.get_signing_serializer(app).dumps({"language": "qu"})
        assert dict(self._open(app, cookie)) == {"language": "qu"}

    def test_a_tampered_cookie_is_a_new_empty_session(self, app):
        cookie = app.session_interface.get_signing_serializer(app).dumps({"language": "qu"})
        assert dict(self._open(app, cookie[:-2] + "xx")) == {}

    def test_a_webhook_answer_sets_no_cookie(self, client):
        response = client.get("/healthz")
        assert "Set-Cookie" not in response.headers
