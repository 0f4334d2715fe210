"""Parsers for the values a person types in a purchase or sale: pure functions, no database.

Each parser reads one token (or one USSD answer) and returns a value, or raises
`registry.materials.InvalidValue` (reason marked with `N_`, ``%(name)s`` params), so the caller of a
one-line entry such as ``COMPRA 45678912 DORE 25.5G 850 5400`` knows which token is wrong. The
parsers that take a material also run its checks (`check_quantity`, `check_grade`, `check_price`);
the checks across values (price per fine gram) are `registry.materials.check_lot`.

Numbers (`parse_number`), as written in Peru:

- ``25,5`` and ``25.5``: one separator followed by 1, 2 or 4+ digits is the decimal separator.
- ``1.250,5`` and ``1,250.5``: with both a point and a comma, the last one is the decimal
  separator and the other separates thousands (groups of three).
- ``1 250`` and ``5 400``, ``1 250,5``: spaces separate thousands; a point or comma after them is
  the decimal separator.
- ``1.250.000`` and ``1,250,000``: the same separator more than once separates thousands.
- **Ambiguity rule**: one point or comma followed by exactly three digits, after 1 to 3 digits
  that do not start with 0 (``1.250``, ``12,500``), could be thousands or decimals. A weight or a
  grade is rejected, asking for the number without the separator (``1250``) or with one or two
  decimals. Money (``money=True``, `parse_price`) reads it as thousands: soles have two decimals
  (céntimos), so ``S/ 1.250`` can only be S/ 1250. ``0.850`` and ``1250.500`` are not ambiguous
  (no thousands group starts with 0 or has four digits): they are decimals.
- Money may start with ``S/``, ``S/.`` or ``PEN`` and end with ``soles`` or ``PEN``; dollars are
  refused with a reason. Negative numbers, letters, several decimal separators and misplaced
  thousands separators are refused. Full-width and other Unicode digits are read as digits.

Quantities (`parse_quantity`): a number and a unit, with or without a space: ``g``, ``gr``,
``grs``, ``gramos``; ``kg``, ``kilos``; ``t``, ``tm``, ``tmh``, ``tms``, ``toneladas`` (wet and dry
tonnes are both read as tonnes: humidity is not recorded here); for mercury also ``frascos``
(flasks of 34.5 kg). A bare number is in the material's default unit: tonnes for ore and
tailings, kg for mercury and carbon, grams for the gold products (`Material.default_unit`).

Grades (`parse_grade`): gold products take a fineness in ‰: ``850``, ``850‰``, ``999,9``; a
fraction below 1 is read as a fraction (``0.85`` is 850 ‰), a percentage as such (``85%`` is
850 ‰), karats by 1000 × k / 24 rounded to 0.01 ‰ (``18k`` is 750 ‰, ``22k`` 916.67 ‰; ``24k`` is
refused: it does not say whether the gold is 999 or 999.9). Ore, tailings and carbon take grams per
tonne: ``12``, ``12 g/t``, ``12gpt``, ``12 g/TM``, ``12 ppm``. Mercury takes ``-`` or nothing.

USSD answers are digits only: Africa's Talking joins a session's answers with ``*`` and ``#`` ends
the input on most phones, so neither can be a decimal separator, and some keypads cannot send a
space. Design: **the last digit is the tenths**, as on the POS terminals where an amount is typed
from the right: the quantity screen says "12,5 g = 125, 12 g = 120" (`USSD_TENTHS_PROMPT`), and
`parse_ussd_decimal("125")` is 12.5. The confirmation screen repeats the weight in words and
digits (``12,5 g``) so a slip such as ``12`` (read 1,2 g) is caught; the price-per-fine-gram bounds
of `check_lot` catch most of the rest. Prices on USSD are whole soles (``decimals=0``).
Fineness on USSD (`parse_ussd_fineness`): the first three digits are whole ‰ and any more are
decimals, so ``850`` is 850 ‰ and ``9999`` is 999.9 ‰ (every valid fineness has 3 whole digits).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_EVEN, Decimal

from recpo.i18n import N_
from registry.materials import (
    GRADE_STEP,
    MATERIALS,
    MERCURY_FLASK_KG,
    GradeKind,
    InvalidValue,
    Material,
    Quantity,
    Unit,
    check_grade,
    check_price,
    check_quantity,
)

__all__ = [
    "USSD_FINENESS_PROMPT",
    "USSD_TENTHS_PROMPT",
    "parse_grade",
    "parse_material",
    "parse_number",
    "parse_price",
    "parse_quantity",
    "parse_ussd_decimal",
    "parse_ussd_fineness",
]

# Screen texts for the USSD design above (each fits 160 characters once filled).
USSD_TENTHS_PROMPT = N_(
    "Weight of %(material)s in %(unit)s. Type the tenths digit last, without a comma:"
    " 12,5 %(unit)s = 125; 12 %(unit)s = 120"
)
USSD_FINENESS_PROMPT = N_("Fineness in thousandths, digits only: 850 = 850; 999,9 = 9999")

_MAX_DIGITS = 18  # far beyond any real value; keeps Decimal arithmetic exact
_SHOWN_MAX = 20  # longest user text repeated in a reason (reasons may end up in an SMS)
_BAD_CHARS_MAX = 5
_DIGITS = frozenset("0123456789")
_NUMBER_CHARS = _DIGITS | frozenset(".,")
_MINUS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")
_SPACE_RUN = re.compile(r"\s+")

# Money marks, matched on folded (NFKD, accent-free) text.
_MONEY_PREFIX = re.compile(r"^(?:s\s*/\s*\.?|pen)\s*", re.IGNORECASE)
_MONEY_SUFFIX = re.compile(r"\s*(?:soles|sol|pen)\.?$", re.IGNORECASE)
_DOLLARS = re.compile(r"\$|\b(?:usd|dolar|dolares)\b", re.IGNORECASE)

_UNITS: dict[str, Unit | None] = {  # None: a mercury flask
    "g": Unit.G,
    "gr": Unit.G,
    "grs": Unit.G,
    "gramo": Unit.G,
    "gramos": Unit.G,
    "kg": Unit.KG,
    "kgs": Unit.KG,
    "kilo": Unit.KG,
    "kilos": Unit.KG,
    "kilogramo": Unit.KG,
    "kilogramos": Unit.KG,
    "t": Unit.T,
    "tn": Unit.T,
    "tm": Unit.T,
    "tmh": Unit.T,
    "tms": Unit.T,
    "ton": Unit.T,
    "tonelada": Unit.T,
    "toneladas": Unit.T,
    "frasco": None,
    "frascos": None,
}

_PERMILLE = frozenset({"‰", "o/oo", "permil", "por mil"})
_PERCENT = frozenset({"%", "por ciento"})
_KARATS = frozenset({"k", "kt", "kts", "quilate", "quilates"})
_GRAMS_PER_TONNE = re.compile(r"(?:g|gr|grs|gramos?)\s*/\s*(?:t|tm|tn|tms|tmh|ton)|gpt|ppm")
_KARAT_MAX = Decimal(24)
_NO_GRADE = frozenset({"", "-", "--", "0"})


# --- helpers --------------------------------------------------------------------------------


def _require_str(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    return text


def _fold(text: str) -> str:
    """Compatibility-decompose, drop accents, read every Unicode digit as ASCII, one space."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(
        str(unicodedata.decimal(c))
        if c.isdecimal() and not c.isascii()
        else ("-" if c in _MINUS else c)
        for c in text
        if not unicodedata.combining(c)
    )
    return _SPACE_RUN.sub(" ", text).strip()


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


def _misplaced(shown: str) -> InvalidValue:
    return InvalidValue(
        N_(
            "%(value)s is not a number that can be read: its points, commas or spaces are in the"
            " wrong places. Write it with digits and at most one decimal comma, e.g. 1250,5."
        ),
        {"value": shown},
    )


def _grouped(groups: list[str]) -> bool:
    """Thousands groups: the first of 1 to 3 digits not starting with 0, then groups of 3."""
    first, rest = groups[0], groups[1:]
    return 1 <= len(first) <= 3 and first[0] != "0" and all(len(g) == 3 for g in rest)


# --- numbers --------------------------------------------------------------------------------


def parse_number(text: str, *, money: bool = False) -> Decimal:
    """Read a non-negative number written the Peruvian ways (see the module docstring)."""
    shown = _shown(_require_str(text))
    value = _fold(text)
    if money:
        if _DOLLARS.search(value):
            raise InvalidValue(
                N_("Prices are in soles (S/), not dollars; convert %(value)s to soles."),
                {"value": shown},
            )
        value = _MONEY_SUFFIX.sub("", _MONEY_PREFIX.sub("", value))
    if not value:
        raise InvalidValue(N_("Nothing was entered; expected a number."))
    if value[0] == "-":
        raise InvalidValue(
            N_("%(value)s is negative; enter a number greater than zero."), {"value": shown}
        )
    if bad := _bad_chars(value, _NUMBER_CHARS | {" "}):
        raise InvalidValue(
            N_("%(value)s is not a number: it contains %(chars)s."),
            {"value": shown, "chars": bad},
        )
    parts = re.split(r"([ .,])", value)
    groups, seps = parts[0::2], parts[1::2]
    if not all(groups):  # leading, trailing or doubled separator
        raise _misplaced(shown)
    marks = [s for s in seps if s != " "]
    fraction = ""
    if not marks:
        whole = groups
    elif len(set(marks)) == 2 or marks.count(marks[0]) == 1:
        # The last point or comma is the decimal separator: it must come last and only once.
        decimal_sep = marks[-1]
        if seps[-1] != decimal_sep or marks.count(decimal_sep) != 1:
            raise _misplaced(shown)
        grouping = set(seps[:-1])
        if len(grouping) > 1:
            raise _misplaced(shown)
        whole, fraction = groups[:-1], groups[-1]
        if (
            len(whole) == 1
            and len(fraction) == 3
            and 1 <= len(whole[0]) <= 3
            and whole[0][0] != "0"
        ):
            if not money:
                raise InvalidValue(
                    N_(
                        "%(value)s is ambiguous: the point or comma could separate thousands or"
                        " decimals. Write thousands without it (%(whole)s) and decimals with one"
                        " or two digits (e.g. 12,5)."
                    ),
                    {"value": shown, "whole": whole[0] + fraction},
                )
            whole, fraction = [whole[0], fraction], ""  # soles have two decimals: thousands
    else:  # the same point or comma several times: thousands separators, no decimals
        if len(set(seps)) != 1:
            raise _misplaced(shown)
        whole = groups
    if len(whole) > 1 and not _grouped(whole):
        raise _misplaced(shown)
    digits = "".join(whole)
    if len(digits) + len(fraction) > _MAX_DIGITS:
        raise InvalidValue(
            N_("%(value)s has too many digits (at most %(max)d)."),
            {"value": shown, "max": _MAX_DIGITS},
        )
    return Decimal(f"{digits}.{fraction}" if fraction else digits)


def parse_price(text: str) -> Decimal:
    """A total price in soles: ``5400``, ``S/ 5 400``, ``S/. 5.400,00``, ``5400 soles``."""
    return check_price(parse_number(text, money=True))


# --- materials, quantities, grades ----------------------------------------------------------

_KEYWORDS = {keyword: material for material in MATERIALS for keyword in material.keywords}


def parse_material(text: str) -> Material:
    """A material by its menu number (1-8) or keyword (``DORE``, ``relaves``, ``Carbón``)."""
    shown = _shown(_require_str(text))
    value = _fold(text).upper()
    if not value:
        raise InvalidValue(
            N_("The material is missing: send its number, 1 to %(max)d, or a word such as DORE."),
            {"max": len(MATERIALS)},
        )
    if value.isdigit():
        number = int(value)
        if 1 <= number <= len(MATERIALS):
            return Material.from_number(number)
        raise InvalidValue(
            N_("There is no material %(value)s; choose 1 to %(max)d."),
            {"value": shown, "max": len(MATERIALS)},
        )
    if material := _KEYWORDS.get(value):
        return material
    raise InvalidValue(
        N_(
            "%(value)s is not a material; send its number 1 to %(max)d or a word: MINERAL,"
            " RELAVE, MERCURIO, CARBON, REFOGADO, DORE, REFINADO, NATIVO."
        ),
        {"value": shown, "max": len(MATERIALS)},
    )


def _split_suffix(folded: str) -> tuple[str, str]:
    """Split "25.5 g" / "25,5G" / "18k" into the number and what follows it (lower case)."""
    match = re.match(r"-?[0-9.,\s]*", folded)
    end = match.end() if match else 0
    return folded[:end].strip(), folded[end:].strip().lower()


def parse_quantity(text: str, material: Material) -> Quantity:
    """A weight of `material`: ``25.5G``, ``25,5 g``, ``2kg``, ``1.5 t``, ``3 TMH``, ``2``."""
    material = Material(material)
    shown = _shown(_require_str(text))
    folded = _fold(text)
    if not folded:
        raise InvalidValue(
            N_("The quantity is missing, e.g. 25.5 %(unit)s."), {"unit": str(material.default_unit)}
        )
    number_text, unit_text = _split_suffix(folded)
    unit_key = unit_text.rstrip(".")
    if not number_text:
        raise InvalidValue(
            N_("%(value)s is not a quantity; write a number and a unit, e.g. 25.5 %(unit)s."),
            {"value": shown, "unit": str(material.default_unit)},
        )
    if unit_key and unit_key not in _UNITS:
        raise InvalidValue(
            N_("%(unit)s is not a unit of weight that can be used here; use g, kg or t."),
            {"unit": _shown(unit_text)},
        )
    number = parse_number(number_text)
    if unit_key and _UNITS[unit_key] is None:  # flasks
        if material is not Material.MERCURY:
            raise InvalidValue(
                N_("Only mercury is counted in flasks; weigh %(material)s in %(units)s."),
                {"material": material, "units": ", ".join(str(u) for u in material.units)},
            )
        quantity = Quantity(number * MERCURY_FLASK_KG, Unit.KG)
    else:
        quantity = Quantity(number, _UNITS[unit_key] if unit_key else material.default_unit)
    return check_quantity(material, quantity)


def parse_grade(text: str, material: Material) -> Decimal | None:
    """The grade of `material`: fineness in ‰, g/t, or None for mercury (see module docstring)."""
    material = Material(material)
    shown = _shown(_require_str(text))
    folded = _fold(text).lower()
    kind = material.grade_kind
    if kind is GradeKind.NONE:
        if folded in _NO_GRADE:
            return None
        raise InvalidValue(
            N_("%(material)s has no grade; send - in its place."), {"material": material}
        )
    if folded in ("", "-", "--"):
        return check_grade(material, None)  # raises: the grade is missing
    number_text, suffix = _split_suffix(folded)
    if not number_text:
        raise _not_a_grade(material, shown)
    is_gpt = bool(_GRAMS_PER_TONNE.fullmatch(suffix))
    if kind is GradeKind.GRAMS_PER_TONNE:
        if suffix and not is_gpt:
            if suffix in _PERMILLE | _PERCENT | _KARATS:
                raise InvalidValue(
                    N_(
                        "The grade of %(material)s is in grams of gold per tonne (e.g. 12 g/t),"
                        " not a fineness."
                    ),
                    {"material": material},
                )
            raise _not_a_grade(material, shown)
        return check_grade(material, parse_number(number_text))
    # Fineness in ‰.
    if is_gpt:
        raise InvalidValue(
            N_("The grade of %(material)s is its fineness in ‰ (e.g. 850), not g/t."),
            {"material": material},
        )
    number = parse_number(number_text)
    if not suffix or suffix in _PERMILLE:
        grade = number * 1000 if not suffix and 0 < number < 1 else number
    elif suffix in _PERCENT:
        grade = number * 10
    elif suffix in _KARATS:
        if number >= _KARAT_MAX:
            raise InvalidValue(
                N_(
                    "%(value)s does not say how pure the gold is (karats go up to 24);"
                    " send its fineness in ‰, e.g. 999.9."
                ),
                {"value": shown},
            )
        grade = (number * 1000 / _KARAT_MAX).quantize(GRADE_STEP, rounding=ROUND_HALF_EVEN)
    else:
        raise _not_a_grade(material, shown)
    return check_grade(material, grade)


def _not_a_grade(material: Material, shown: str) -> InvalidValue:
    if material.grade_kind is GradeKind.FINENESS_PERMILLE:
        return InvalidValue(
            N_("%(value)s is not a fineness; send it in ‰ (e.g. 850) or in karats (e.g. 18k)."),
            {"value": shown},
        )
    return InvalidValue(
        N_("%(value)s is not a grade; send grams of gold per tonne, e.g. 12 or 12 g/t."),
        {"value": shown},
    )


# --- USSD -----------------------------------------------------------------------------------


def _ussd_digits(text: str) -> str:
    shown = _shown(_require_str(text))
    value = _fold(text)
    if not value:
        raise InvalidValue(N_("Nothing was entered; enter digits only."))
    if bad := _bad_chars(value, _DIGITS):
        raise InvalidValue(
            N_("Enter digits only, without a point or comma; %(value)s contains %(chars)s."),
            {"value": shown, "chars": bad},
        )
    if len(value) > _MAX_DIGITS:
        raise InvalidValue(
            N_("%(value)s has too many digits (at most %(max)d)."),
            {"value": shown, "max": _MAX_DIGITS},
        )
    return value


def parse_ussd_decimal(digits: str, decimals: int = 1) -> Decimal:
    """A USSD answer whose last `decimals` digits are the decimals: ``125`` is 12.5.

    Only the number is read; check it with `check_quantity` / `check_price` (zero is returned).
    """
    if decimals < 0:
        raise ValueError("decimals must not be negative")
    return Decimal(int(_ussd_digits(digits))).scaleb(-decimals)


def parse_ussd_fineness(digits: str) -> Decimal:
    """A USSD fineness: three whole ‰ digits, then decimals (``850``, ``9999`` is 999.9).

    Only the number is read; check it with `check_grade`.
    """
    value = _ussd_digits(digits)
    whole, fraction = value[:3], value[3:]
    return Decimal(f"{whole}.{fraction}" if fraction else whole)
