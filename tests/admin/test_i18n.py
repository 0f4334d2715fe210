"""The console speaks Spanish, switches to English on request, and its catalog is complete."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import admin
from admin.i18n import CATALOGS
from admin.models import StaffRole

ADMIN = Path(admin.__file__).resolve().parent


class TestLanguage:
    def test_spanish_by_default_and_english_on_request(self, client, as_role):
        as_role(StaffRole.ANALYST)
        page = client.get("/admin/messages").get_data(as_text=True)
        assert "Registro de mensajes" in page and '<html lang="es">' in page
        page = client.get("/admin/messages?lang=en").get_data(as_text=True)
        assert "Message log" in page and '<html lang="en">' in page
        # The choice sticks for the session.
        assert "Message log" in client.get("/admin/messages").get_data(as_text=True)
        assert "Registro de mensajes" in client.get("/admin/messages?lang=es").get_data(
            as_text=True
        )

    def test_the_login_page_switches_too(self, client):
        assert "Iniciar sesión" in client.get("/admin/login").get_data(as_text=True)
        assert "Sign in" in client.get("/admin/login?lang=en").get_data(as_text=True)

    def test_the_rest_of_the_service_is_untouched(self, client):
        client.get("/admin/login?lang=en")
        assert client.get("/healthz").status_code in (200, 503)


class TestCatalog:
    def test_every_console_message_has_a_spanish_translation(self):
        method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
        keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
        extracted = {
            message
            for _file, _line, message, _comments, _context in extract_from_dir(
                str(ADMIN), method_map=method_map, keywords=keywords
            )
        }
        assert len(extracted) > 200
        with (CATALOGS / "es" / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f)
        missing = sorted(m for m in extracted if not (catalog.get(m) and catalog.get(m).string))
        assert missing == []
        fuzzy = sorted(m.id for m in catalog if m.id and m.fuzzy)
        assert fuzzy == []
