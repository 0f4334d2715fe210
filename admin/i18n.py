"""The console's languages: Spanish by default, English on request (flask-babel, console only).

Console text is written in English in the code and templates (the msgids) and translated to
Spanish by `admin/translations/es/LC_MESSAGES/messages.po`, like the catalogs of the phone
conversations under `locales/`. The catalog is read from the `.po` file when first needed, so
there is no compile step and no `.mo` file in the tree. The chosen language lives in the Flask
session (`?lang=en` or `?lang=es` on any console URL switches it).
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, has_request_context, request, session
from flask_babel import Babel, Domain

from recpo.clock import LIMA
from recpo.i18n import translate

CATALOGS = Path(__file__).resolve().parent / "translations"
LANGUAGES = ("es", "en")
# Formats (numbers, dates) follow Peru for Spanish: 12,345.67 as Peruvians write it.
FORMAT_LOCALES = {"es": "es_PE", "en": "en"}
DEFAULT_LANGUAGE = "es"
SOURCE_LANGUAGE = "en"  # the msgids
SESSION_KEY = "console_lang"


@cache
def catalog(language: str) -> NullTranslations:
    """Return the console's translations into `language` (the msgids for English)."""
    path = CATALOGS / language / "LC_MESSAGES" / "messages.po"
    if language == SOURCE_LANGUAGE or not path.exists():
        return NullTranslations()
    with path.open("rb") as f:
        messages = read_po(f, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, messages, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain="messages")


class PoDomain(Domain):
    """A flask-babel domain read from the `.po` catalogs above."""

    def get_translations(self) -> NullTranslations:
        return catalog(console_language())


class ConsoleBabel(Babel):
    """flask-babel with the console's catalogs."""

    @property
    def domain_instance(self) -> Domain:
        return _DOMAIN


_DOMAIN = PoDomain(translation_directories=[str(CATALOGS)])


def console_language() -> str:
    """The language of this request's console pages."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    language = session.get(SESSION_KEY)
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def remember_language() -> None:
    """Switch the console's language when the URL asks for it (`?lang=en`)."""
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session[SESSION_KEY] = wanted


def domain_text(message: str) -> str:
    """Translate a message of the registry's own catalogs (material names) for the console."""
    language = console_language()
    return message if language == SOURCE_LANGUAGE else translate(language, message)


def init_babel(app: Flask) -> None:
    """Attach flask-babel to `app` for the console's templates."""
    if "babel" in app.extensions:
        return
    ConsoleBabel(
        app,
        locale_selector=lambda: FORMAT_LOCALES[console_language()],
        timezone_selector=lambda: LIMA.key,
        default_locale=DEFAULT_LANGUAGE,
        default_translation_directories=str(CATALOGS),
    )
