"""Rendering replies in the recipient's language: gettext catalogs plus Babel number formats."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_decimal

from recpo.clock import LIMA
from recpo.i18n import translate, translations
from registry.materials import InvalidValue, Material

# Babel has no Quechua-specific number format that differs from Peru's Spanish one.
_BABEL_LOCALE = {"es": "es_PE", "qu": "qu_PE"}


class Speaker:
    """Says things in one locale."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in _BABEL_LOCALE else "es"

    def __call__(self, message: str, **params: object) -> str:
        """Translate `message` and fill its placeholders."""
        return translate(self.locale, message, **params)

    def gettext(self, message: str) -> str:
        """Translate without formatting."""
        return translations(self.locale).gettext(message)

    def number(self, value: Decimal) -> str:
        """Format a number as people here write it (1,250.5)."""
        return format_decimal(value, locale=_BABEL_LOCALE[self.locale])

    def money(self, value: Decimal) -> str:
        """Format soles with two decimals: S/ 5,400.00."""
        return "S/ " + format_decimal(value, format="#,##0.00", locale=_BABEL_LOCALE[self.locale])

    def date(self, when: dt.datetime) -> str:
        """Format the date in Lima, short: 30/11/2026."""
        return format_date(when.astimezone(LIMA).date(), "dd/MM/yyyy", locale="es_PE")

    def material(self, material: Material | str) -> str:
        """The material's name in this language."""
        return self.gettext(Material(material).label)

    def error(self, exc: InvalidValue) -> str:
        """Render a parsing or plausibility error in this language."""
        return exc.render(self.gettext)
