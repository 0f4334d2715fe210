"""The SMS/USSD text budget: GSM-7 membership, folding, and segment counts (pure functions).

Alphabet (3GPP TS 23.038, GSM 7-bit default alphabet and its extension table):

* The 128 basic characters cost 1 septet each. Besides ASCII letters, digits and most ASCII
  punctuation they include `é É ñ Ñ ü Ü ¿ ¡ à è ì ò ù Ç Ä Ö Å Æ ß Ø ä ö å æ ø £ ¥ § ¤` and the
  Greek capitals `Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ`. LF and CR are basic characters.
* The extension characters `^ { } \\ [ ~ ] | €` and form feed cost 2 septets (ESC + character).
* Not GSM-7: `á í ó ú Á Í Ó Ú ° º ª`, curly quotes `’ ‘ “ ”`, `ʼ`, the backtick and tab. One such
  character makes the whole SMS go as UCS-2.

Segments (`cost`, `segments`):

* GSM-7: units are septets. Up to 160 units is 1 segment; above that, parts of at most 153 septets,
  packed greedily, and an ESC+character pair is never split across two parts (so a text can need
  one more part than ceil(units / 153)).
* UCS-2: units are UTF-16 code units (a character outside the BMP, such as most emoji, counts 2).
  Up to 70 units is 1 segment; above that, parts of at most 67 units, never splitting a surrogate
  pair.
* The empty text is 1 segment.

USSD (`ussd_length`, `fits_ussd`): screens must be GSM-7; the length is in septets (extension
characters count 2) and the default limit is 160 (182 in theory, but aggregators enforce 160).

Inbound (`normalise_inbound`): Unicode NFC; the apostrophe variants `’ ʼ ‘ ´ ` ` (and `‛ ʻ ′`)
become ASCII `'` (Quechua is written with it); every run of whitespace (including no-break spaces,
tabs and newlines) becomes one space; leading and trailing space is stripped. Case and accents are
kept (the keyword matcher folds those).

Outbound (`fold_for_sms`): NFC, then `N°`, `Nº`, `N.º`, `N.°` (and lower-case `n`) become `Nro.`;
then each character (with any combining marks that follow it) that is not GSM-7 is folded:
`á í ó ú` and capitals lose the accent (é ñ ü ¿ ¡ are kept, being GSM-7); curly and other
apostrophes become `'`; `“ ” „ « »` become `"`; dashes and the minus sign become `-`; `…` becomes
`...`; `º` becomes `o`, `ª` becomes `a`, and the degree sign `°` also becomes `o` (one simple rule
rather than guessing between ordinal and degree); no-break and other spaces and tab become a space;
soft hyphen and zero-width spaces are dropped; anything else whose compatibility decomposition
(NFKD) without combining marks is GSM-7 is replaced by it (`ç`→`c`, `ﬁ`→`fi`, `½`→`1/2`, full-width
letters to ASCII). A character with no fold is kept and the message goes as UCS-2: that is allowed,
not an error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from flows.messages import Choice

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTIPART",
    "GSM7_SINGLE",
    "UCS2_MULTIPART",
    "UCS2_SINGLE",
    "USSD_LIMIT",
    "Encoding",
    "TextCost",
    "cost",
    "encoding_of",
    "fits_ussd",
    "fold_for_sms",
    "is_gsm7",
    "normalise_inbound",
    "segments",
    "ussd_length",
]

GSM7_SINGLE = 160
GSM7_MULTIPART = 153
UCS2_SINGLE = 70
UCS2_MULTIPART = 67
USSD_LIMIT = 160

# The basic set in code order 0x00-0x7F; 0x1B is the escape to the extension table, not a character.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_BASIC: frozenset[str] = frozenset(_BASIC_TABLE) - {"\x1b"}
# Extension table: form feed 0x0A, ^ 0x14, { 0x28, } 0x29, \ 0x2F, [ 0x3C, ~ 0x3D, ] 0x3E, | 0x40,
# € 0x65. Each is sent as ESC + code, so costs 2 septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")
_GSM7 = GSM7_BASIC | GSM7_EXTENSION


class Encoding(StrEnum):
    """How an SMS body goes on the wire."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class TextCost:
    """Encoding, size in units (septets for GSM-7, UTF-16 code units for UCS-2) and SMS parts."""

    encoding: Encoding
    units: int
    segments: int


def is_gsm7(text: str) -> bool:
    """True if every character of `text` is in the GSM-7 basic set or its extension table."""
    return all(ch in _GSM7 for ch in text)


def encoding_of(text: str) -> Encoding:
    """GSM7 if the whole text is GSM-7, else UCS2."""
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def _septets(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _parts(widths: list[int], single: int, multipart: int) -> int:
    """Parts needed for items of these widths: 1 if the total fits `single`, else greedy packing
    into parts of `multipart` units, never splitting an item."""
    if sum(widths) <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > multipart:
            parts += 1
            used = 0
        used += width
    return parts


def cost(text: str) -> TextCost:
    """Encoding, units and segment count of `text` sent as one (possibly concatenated) SMS."""
    if is_gsm7(text):
        widths = [_septets(ch) for ch in text]
        return TextCost(Encoding.GSM7, sum(widths), _parts(widths, GSM7_SINGLE, GSM7_MULTIPART))
    widths = [_utf16_units(ch) for ch in text]
    return TextCost(Encoding.UCS2, sum(widths), _parts(widths, UCS2_SINGLE, UCS2_MULTIPART))


def segments(text: str) -> int:
    """Number of SMS parts `text` takes (at least 1)."""
    return cost(text).segments


def ussd_length(text: str) -> int:
    """Length of `text` on a USSD screen in GSM-7 septets (extension characters count 2).

    Raises ValueError if the text is not GSM-7: USSD screens cannot show it (fold it first).
    """
    if not is_gsm7(text):
        raise ValueError("text is not GSM-7; fold_for_sms it before sending over USSD")
    return sum(_septets(ch) for ch in text)


def fits_ussd(text: str, limit: int = USSD_LIMIT) -> bool:
    """True if `text` is GSM-7 and at most `limit` septets long."""
    return is_gsm7(text) and ussd_length(text) <= limit


# --- inbound --------------------------------------------------------------------------------------

_APOSTROPHES = "’ʼ‘´`‛ʻ′"
_TO_ASCII_APOSTROPHE = str.maketrans(dict.fromkeys(_APOSTROPHES, "'"))


def normalise_inbound(text: str) -> str:
    """NFC, apostrophe variants to `'`, whitespace runs to one space, stripped.

    Case and accents are kept: the keyword matcher folds those.
    """
    text = unicodedata.normalize("NFC", text).translate(_TO_ASCII_APOSTROPHE)
    return " ".join(text.split())


# --- outbound -------------------------------------------------------------------------------------

_NUMERO = re.compile(r"(?<!\w)([Nn])\.?[°º]")

_FOLDS: dict[str, str] = {
    **dict.fromkeys(_APOSTROPHES + "‚", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
    "‰": "/1000",
    "º": "o",
    "ª": "a",
    "°": "o",
    "⁄": "/",
    "•": "-",
    "\t": " ",
    "\u2028": "\n",
    "\u2029": "\n",
    **dict.fromkeys("\u00ad\u200b\u2060\ufeff", ""),
}


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")


def _clusters(text: str) -> list[str]:
    """Split into a base character plus the combining marks that follow it."""
    out: list[str] = []
    for ch in text:
        if out and _is_mark(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _fold_cluster(cluster: str) -> str:
    if is_gsm7(cluster):
        return cluster
    base = cluster[0]
    if base in _FOLDS:
        return _FOLDS[base]
    if unicodedata.category(base) == "Zs":
        return " "
    plain = "".join(
        _FOLDS.get(ch, ch) for ch in unicodedata.normalize("NFKD", cluster) if not _is_mark(ch)
    )
    return plain if plain and is_gsm7(plain) else cluster


def fold_for_sms(text: str) -> str:
    """Fold outbound Spanish/Quechua text to GSM-7 where Spanish allows (see module docstring).

    Characters with no fold are kept; the result is then UCS-2, which is allowed.
    """
    text = _NUMERO.sub(lambda m: m.group(1) + "ro.", unicodedata.normalize("NFC", text))
    return "".join(_fold_cluster(cluster) for cluster in _clusters(text))


def with_choices(text: str, choices: Sequence[Choice]) -> str:
    """Return `text` with its choices listed as `<id> <title>` lines, for channels without buttons.

    A choice's id is what the phone types back (DESIGN: numeric menus), so it leads each line.
    """
    if not choices:
        return text
    options = "\n".join(f"{choice.id} {choice.title}" for choice in choices)
    return f"{text}\n{options}" if text else options
