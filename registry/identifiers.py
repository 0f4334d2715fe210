"""Parsing and validation of Peruvian identifiers: pure functions, no database.

Every parser takes text as a person typed it and returns the canonical form, or raises
`InvalidIdentifier` whose `.reason` (marked with `N_`, English, `%(name)s` placeholders) and
`.params` say what is wrong; `str(exc)` is the rendered English text.

Formats (canonical form in brackets):

- RUC (SUNAT) [11 ASCII digits]: prefix 10 (natural person: ``10`` + DNI + check digit), 15, 17
  or 20; the last digit is a check digit: weights 5,4,3,2,7,6,5,4,3,2 over the first ten digits,
  ``r = 11 - (sum mod 11)``, r = 10 -> 0, r = 11 -> 1.
- DNI (RENIEC) [8 digits, leading zeros kept]: the card's separate verification character is not
  required; if it is typed after a hyphen ("45678912-3") the input is rejected with a hint rather
  than guessed at.
- Carné de extranjería, CE [9 digits; older cards: 6 to 12 letters and digits, upper-cased]. The
  lower bound of 6 for the older cards is our choice, not a published rule.
- Document types carry their SUNAT catálogo 06 code: DNI "1", CE "4", RUC "6" (strings, because the
  catalogue also has letter codes such as "A").
- Código único of a mining right (INGEMMET) [9 digits]: written with hyphens (``01-01491-08``) or
  without the leading zero (``10149108``); it has no check digit, so only its shape is checked here.
- Phone numbers [E.164]: Peruvian mobiles are ``+51`` + ``9`` + 8 digits. Landlines and other
  non-mobile Peruvian numbers are rejected. Foreign numbers written with ``+`` or ``00`` are
  accepted when libphonenumber says they are mobile, or "fixed line or mobile" where the numbering
  plan cannot tell (USA, Canada): foreign buyers register with their own phones.

Identifier input may have surrounding whitespace and internal spaces, dots and hyphens (also the
Unicode dashes and no-break spaces phone keyboards produce), and non-ASCII decimal digits
(e.g. full-width) are read as digits. Phone reasons never repeat the number, so they are safe to
log; `mask_phone` is what logs should show of a phone number.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from recpo.i18n import N_

__all__ = [
    "CE_MAX_LENGTH",
    "CE_MIN_LENGTH",
    "RUC_PREFIXES",
    "Document",
    "DocumentType",
    "InvalidIdentifier",
    "dni_from_ruc",
    "mask_phone",
    "natural_person_ruc",
    "normalise_codigo_unico",
    "parse_ce",
    "parse_dni",
    "parse_document",
    "parse_phone",
    "parse_ruc",
    "ruc_check_digit",
]

RUC_PREFIXES = ("10", "15", "17", "20")
RUC_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
CE_MIN_LENGTH = 6
CE_MAX_LENGTH = 12

_DIGITS = frozenset("0123456789")
_ALNUM_ANY_CASE = frozenset(string.digits + string.ascii_letters)
# Separators people type inside numbers: whitespace, dots, hyphens and the dashes/spaces that
# phone keyboards and copy-paste substitute for them.
_SEPARATORS = frozenset(" \t\n\r.-\u00a0\u2007\u202f\u2010\u2011\u2012\u2013\u2014\u2212")
_SHOWN_MAX = 20  # longest user text repeated in a reason (reasons may end up in an SMS)
_BAD_CHARS_MAX = 5


class InvalidIdentifier(ValueError):
    """An identifier that cannot be accepted.

    `reason` is the untranslated English message (marked with `N_`), `params` fills its
    `%(name)s` placeholders; `str(exc)` is the rendered English text and `render(gettext)` renders
    it in another language.
    """

    def __init__(self, reason: str, params: Mapping[str, object] | None = None) -> None:
        self.reason = reason
        self.params: dict[str, object] = dict(params or {})
        super().__init__(self.render())

    def render(self, translate: Callable[[str], str] | None = None) -> str:
        template = translate(self.reason) if translate is not None else self.reason
        return template % self.params

    def __reduce__(self):  # keep reason and params across pickling (worker queues)
        return (self.__class__, (self.reason, self.params))


# --- helpers --------------------------------------------------------------------------------


def _require_str(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    return text


def _ascii_digits(text: str) -> str:
    """Replace every Unicode decimal digit (full-width, Arabic-Indic, ...) by its ASCII digit."""
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text
    )


def _compact(text: str) -> str:
    """Strip, read digits as ASCII, and drop separators."""
    return "".join(c for c in _ascii_digits(text.strip()) if c not in _SEPARATORS)


def _shown(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "..."


def _bad_chars(text: str, allowed: frozenset[str]) -> str:
    """The distinct characters of `text` outside `allowed`, quoted, e.g. "'O', 'l'"; '' if none."""
    seen: list[str] = []
    for c in text:
        if c not in allowed and c not in seen:
            seen.append(c)
    shown = ", ".join(f"'{c}'" for c in seen[:_BAD_CHARS_MAX])
    return shown + (", ..." if len(seen) > _BAD_CHARS_MAX else "")


# --- document types -------------------------------------------------------------------------


class DocumentType(StrEnum):
    """Identity documents accepted from sellers and buyers."""

    DNI = "dni"
    RUC = "ruc"
    CE = "ce"

    @property
    def sunat_code(self) -> str:
        """Code in SUNAT catálogo 06 ("Tipo de documento de identidad")."""
        return _SUNAT_CODES[self]

    @property
    def label(self) -> str:
        """Short label as printed on documents and receipts (not translated: it is an acronym)."""
        return self.name

    @classmethod
    def from_sunat_code(cls, code: str | int) -> DocumentType:
        for member, member_code in _SUNAT_CODES.items():
            if member_code == str(code).strip():
                return member
        raise ValueError(f"no supported document type has SUNAT catálogo 06 code {code!r}")


_SUNAT_CODES = {DocumentType.DNI: "1", DocumentType.CE: "4", DocumentType.RUC: "6"}


@dataclass(frozen=True, slots=True)
class Document:
    """A validated identity document; `number` is always canonical (normalised on creation)."""

    type: DocumentType
    number: str

    def __post_init__(self) -> None:
        doc_type = DocumentType(self.type)
        object.__setattr__(self, "type", doc_type)
        object.__setattr__(self, "number", _PARSERS[doc_type](self.number))

    @property
    def display(self) -> str:
        """E.g. "DNI 45678912", "RUC 20131312955", "CE 001234567"."""
        return f"{self.type.label} {self.number}"

    def __str__(self) -> str:
        return self.display


# --- RUC ------------------------------------------------------------------------------------


def ruc_check_digit(first10: str) -> int:
    """Check digit of a RUC from its first ten digits (exactly 10 ASCII digits, no separators)."""
    _require_str(first10)
    if not first10 or set(first10) - _DIGITS:
        raise InvalidIdentifier(
            N_("The RUC check digit is computed from 10 digits; %(value)s is not 10 digits."),
            {"value": _shown(first10)},
        )
    if len(first10) != 10:
        raise InvalidIdentifier(
            N_("The RUC check digit is computed from 10 digits; %(value)s has %(count)d."),
            {"value": _shown(first10), "count": len(first10)},
        )
    total = sum(int(d) * w for d, w in zip(first10, RUC_WEIGHTS, strict=True))
    r = 11 - total % 11
    return {10: 0, 11: 1}.get(r, r)


def parse_ruc(text: str) -> str:
    """Validate a RUC and return its 11 digits."""
    value = _compact(_require_str(text))
    if not value:
        raise InvalidIdentifier(N_("The RUC is empty; a RUC has 11 digits."))
    if bad := _bad_chars(value, _DIGITS):
        raise InvalidIdentifier(
            N_("A RUC is made of digits only; %(value)s contains %(chars)s."),
            {"value": _shown(text), "chars": bad},
        )
    if len(value) != 11:
        raise InvalidIdentifier(
            N_("A RUC has 11 digits; %(value)s has %(count)d."),
            {"value": _shown(value), "count": len(value)},
        )
    if value[:2] not in RUC_PREFIXES:
        raise InvalidIdentifier(
            N_("A RUC must start with 10, 15, 17 or 20; %(value)s starts with %(prefix)s."),
            {"value": value, "prefix": value[:2]},
        )
    expected = ruc_check_digit(value[:10])
    if int(value[10]) != expected:
        raise InvalidIdentifier(
            N_(
                "The RUC check digit is wrong: %(value)s ends in %(found)s, expected %(expected)d."
                " One of its digits is probably mistyped."
            ),
            {"value": value, "found": value[10], "expected": expected},
        )
    return value


# --- DNI ------------------------------------------------------------------------------------

# "45678912-3", "45.678.912 - K": a DNI followed by the card's verification character.
_DNI_WITH_CHECK = re.compile(
    r"(?P<dni>\d[\d.\s]*\d)\s*[-\u2010-\u2014\u2212]\s*(?P<check>[0-9A-Za-z])"
)


def _dni_check_hint(text: str) -> InvalidIdentifier | None:
    match = _DNI_WITH_CHECK.fullmatch(_ascii_digits(text.strip()))
    if match is None:
        return None
    dni = _compact(match["dni"])
    if len(dni) != 8:
        return None
    return InvalidIdentifier(
        N_(
            "A DNI has 8 digits: enter %(dni)s without the verification character %(check)s"
            " that follows it on the card."
        ),
        {"dni": dni, "check": match["check"].upper()},
    )


def parse_dni(text: str) -> str:
    """Validate a DNI and return its 8 digits (leading zeros kept)."""
    value = _compact(_require_str(text))
    if not value:
        raise InvalidIdentifier(N_("The DNI is empty; a DNI has 8 digits."))
    if hint := _dni_check_hint(text):
        raise hint
    if bad := _bad_chars(value, _DIGITS):
        raise InvalidIdentifier(
            N_("A DNI is made of digits only; %(value)s contains %(chars)s."),
            {"value": _shown(text), "chars": bad},
        )
    if len(value) != 8:
        raise InvalidIdentifier(
            N_("A DNI has 8 digits; %(value)s has %(count)d."),
            {"value": _shown(value), "count": len(value)},
        )
    return value


def natural_person_ruc(dni: str) -> str:
    """The RUC of a natural person with this DNI: ``10`` + DNI + check digit."""
    first10 = "10" + parse_dni(dni)
    return first10 + str(ruc_check_digit(first10))


def dni_from_ruc(ruc: str) -> str | None:
    """The DNI inside a natural person's RUC (prefix 10); None for other valid RUCs."""
    value = parse_ruc(ruc)
    return value[2:10] if value.startswith("10") else None


# --- carné de extranjería -------------------------------------------------------------------


def parse_ce(text: str) -> str:
    """Validate a carné de extranjería number: 9 digits, or 6-12 letters/digits on older cards."""
    value = _compact(_require_str(text))
    if not value:
        raise InvalidIdentifier(
            N_(
                "The carné de extranjería number is empty; it has 9 digits"
                " (older cards: up to 12 letters and digits)."
            )
        )
    if bad := _bad_chars(value, _ALNUM_ANY_CASE):
        raise InvalidIdentifier(
            N_(
                "A carné de extranjería number has only letters and digits;"
                " %(value)s contains %(chars)s."
            ),
            {"value": _shown(text), "chars": bad},
        )
    value = value.upper()  # only ASCII letters are left, so this cannot change the length
    if not CE_MIN_LENGTH <= len(value) <= CE_MAX_LENGTH:
        raise InvalidIdentifier(
            N_(
                "A carné de extranjería number has 9 digits (older cards: %(min)d to %(max)d"
                " letters and digits); %(value)s has %(count)d."
            ),
            {
                "value": _shown(value),
                "count": len(value),
                "min": CE_MIN_LENGTH,
                "max": CE_MAX_LENGTH,
            },
        )
    return value


_PARSERS: dict[DocumentType, Callable[[str], str]] = {
    DocumentType.DNI: parse_dni,
    DocumentType.RUC: parse_ruc,
    DocumentType.CE: parse_ce,
}

_INFERRED = {8: DocumentType.DNI, 9: DocumentType.CE, 11: DocumentType.RUC}


def parse_document(text: str, type: DocumentType | None = None) -> Document:
    """Parse a DNI, RUC or CE; without `type`, infer it from the digit count (8 DNI, 9 CE, 11 RUC).

    Inference only looks at all-digit input: an older alphanumeric carné needs ``type=CE``.
    """
    _require_str(text)
    if type is not None:
        return Document(DocumentType(type), text)
    value = _compact(text)
    if not value:
        raise InvalidIdentifier(
            N_(
                "Nothing was entered; expected a DNI (8 digits), a carné de extranjería"
                " (9 digits) or a RUC (11 digits)."
            )
        )
    if hint := _dni_check_hint(text):  # "45678912-3" must not be read as a 9-digit CE
        raise hint
    if bad := _bad_chars(value, _DIGITS):
        raise InvalidIdentifier(
            N_(
                "Expected a DNI (8 digits), a carné de extranjería (9 digits) or a RUC"
                " (11 digits); %(value)s contains %(chars)s."
            ),
            {"value": _shown(text), "chars": bad},
        )
    if len(value) not in _INFERRED:
        raise InvalidIdentifier(
            N_(
                "Expected a DNI (8 digits), a carné de extranjería (9 digits) or a RUC"
                " (11 digits); %(value)s has %(count)d digits."
            ),
            {"value": _shown(value), "count": len(value)},
        )
    doc_type = _INFERRED[len(value)]
    return Document(doc_type, value)


# --- código único ---------------------------------------------------------------------------


def normalise_codigo_unico(text: str) -> str:
    """Código único of a mining right as 9 digits.

    ``01-01491-08`` and ``10149108`` both give ``010149108``.
    """
    value = _compact(_require_str(text))
    if not value:
        raise InvalidIdentifier(N_("The código único is empty; it has 9 digits, e.g. 01-01491-08."))
    if bad := _bad_chars(value, _DIGITS):
        raise InvalidIdentifier(
            N_("A código único is made of digits only; %(value)s contains %(chars)s."),
            {"value": _shown(text), "chars": bad},
        )
    if len(value) not in (8, 9):
        raise InvalidIdentifier(
            N_(
                "A código único has 9 digits (8 if the leading zero is left out);"
                " %(value)s has %(count)d."
            ),
            {"value": _shown(value), "count": len(value)},
        )
    return value.zfill(9)


# --- phone numbers --------------------------------------------------------------------------

_PHONE_ALLOWED = _DIGITS | _SEPARATORS | frozenset("()")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_PE_MOBILE = re.compile(r"9[0-9]{8}")


def parse_phone(text: str, region: str | None = "PE") -> str:
    """A mobile phone number in E.164 (``+51987654321``).

    National numbers are read in `region`; numbers with ``+`` or ``00`` may be of any country.
    Only mobiles are accepted (see the module docstring). Reasons never repeat the number.
    """
    if isinstance(text, str) and isinstance(region, str | None):
        return _parse_phone_cached(text, region)
    return _parse_phone(text, region)  # refuses the input with the usual reason


# Every message parses its sender's number, and a conversation is several messages from one
# phone: libphonenumber's parse and checks were 4% of a webhook's Python. Valid numbers only are
# kept (lru_cache does not keep a call that raised), so refusals cost what they always did.
_PHONE_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=_PHONE_CACHE_SIZE)
def _parse_phone_cached(text: str, region: str | None) -> str:
    return _parse_phone(text, region)


def _parse_phone(text: str, region: str | None) -> str:
    raw = _ascii_digits(_require_str(text)).strip()
    if not raw:
        raise InvalidIdentifier(N_("The phone number is empty."))
    body = raw[1:] if raw.startswith("+") else raw
    if bad := _bad_chars(body, _PHONE_ALLOWED):
        raise InvalidIdentifier(
            N_("A phone number has only digits, spaces and a leading +; not allowed: %(chars)s."),
            {"chars": bad},
        )
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidIdentifier(
                N_("The country code is not valid; write the number as + and the country code.")
            ) from None
        raise InvalidIdentifier(
            N_("This is not a phone number: it has too few digits.")
            if exc.error_type
            in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD)
            else N_("This is not a phone number.")
        ) from None
    national = phonenumbers.national_significant_number(number)
    peruvian = number.country_code == 51
    if not phonenumbers.is_valid_number(number):
        if peruvian and national.startswith("9"):
            raise InvalidIdentifier(
                N_(
                    "A Peruvian mobile number has 9 digits starting with 9;"
                    " %(count)d digits were entered (not counting +51)."
                ),
                {"count": len(national)},
            )
        if peruvian:
            raise InvalidIdentifier(
                N_(
                    "This is not a valid Peruvian phone number;"
                    " a mobile number has 9 digits starting with 9."
                )
            )
        raise InvalidIdentifier(
            N_("This is not a valid phone number for country code +%(country_code)d."),
            {"country_code": number.country_code},
        )
    kind = phonenumbers.number_type(number)
    if kind not in _MOBILE_TYPES or (peruvian and not _PE_MOBILE.fullmatch(national)):
        if peruvian and kind == PhoneNumberType.FIXED_LINE:
            raise InvalidIdentifier(
                N_(
                    "This is a landline, not a mobile number; enter a mobile number"
                    " (9 digits starting with 9)."
                )
            )
        raise InvalidIdentifier(
            N_(
                "This is not a mobile number (country code +%(country_code)d);"
                " enter a mobile number."
            ),
            {"country_code": number.country_code},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_E164 = re.compile(r"\+[0-9]{4,15}")


def mask_phone(e164: str) -> str:
    """A phone number for logs: country code and last 3 digits, e.g. ``+51******321``.

    Never raises. Input that is not a recognisable E.164 number keeps only its last 3 digits, and
    only if it has at least 7 digits; shorter input is fully masked.
    """
    text = _ascii_digits(str(e164)).strip()
    if _E164.fullmatch(text):
        # Country calling codes are prefix-free and 1-3 digits long: the first prefix that is
        # one is the code (as libphonenumber finds it, without parsing the whole number).
        for length in (1, 2, 3):
            if int(text[1 : 1 + length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                rest = text[1 + length :]
                if len(rest) > 3:
                    return text[: 1 + length] + "*" * (len(rest) - 3) + rest[-3:]
                break
    digits = [c for c in text if c in _DIGITS]
    if len(digits) < 7:
        return "*" * len(digits)
    return "*" * (len(digits) - 3) + "".join(digits[-3:])
