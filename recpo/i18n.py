"""Gettext plumbing for user-facing text.

Code marks a message with `N_` where it is defined and translates it where it is shown, in the
recipient's locale: a reason produced by `registry` is rendered later for a Spanish or a
Quechua phone. Catalogs are the `.po` files under `locales/<lang>/LC_MESSAGES/messages.po`,
read with Babel when first needed (no compile step); English msgids are the fallback.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_PATH = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LOCALE = "es"


def N_(message: str) -> str:
    """Mark a message for extraction without translating it here."""
    return message


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """Return the catalog for `locale` (falling back to the msgids when there is none)."""
    path = LOCALES_PATH / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def translate(locale: str, message: str, **params: object) -> str:
    """Translate `message` into `locale` and fill its `%(name)s` placeholders."""
    text = translations(locale).gettext(message)
    return text % params if params else text
