"""Receipt codes: 16 digits, 15 from a keyed MAC of the leaf hash plus a Damm check digit.

The 15 MAC digits carry about 49.8 bits, so codes cannot be guessed or forged without the key.
Codes are not guaranteed unique: the store keeps them in a unique column, and on a collision
the caller retries with `attempt=1, 2, ...` (the attempt byte enters the MAC input) and stores
the attempt it used alongside the code.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass

CODE_LENGTH = 16
MAC_DIGITS = CODE_LENGTH - 1
_DOMAIN = b"ledger/receipt/v1\x00"
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]+")

# Damm's order-10 weakly totally anti-symmetric quasigroup (row = interim digit, column = next).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def _damm(digits: str) -> int:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


def damm_check_digit(digits: str) -> str:
    """Return the Damm check digit to append to the ASCII decimal string `digits`."""
    if not _DIGITS.fullmatch(digits):
        raise ValueError("Damm check digits are defined for ASCII decimal digits only")
    return str(_damm(digits))


def check_digit_ok(code: str) -> bool:
    """Return whether `code` (ASCII digits, check digit last) passes the Damm check."""
    return bool(_DIGITS.fullmatch(code)) and len(code) >= 2 and _damm(code) == 0


def receipt_code(secret: bytes, leaf_hash: bytes, attempt: int = 0) -> str:
    """Return the 16-digit receipt code for the entry with `leaf_hash` (unformatted)."""
    if len(secret) < 16:
        raise ValueError("receipt secret must be at least 16 bytes")
    if len(leaf_hash) != 32:
        raise ValueError("leaf hash must be 32 bytes")
    if not 0 <= attempt <= 255:
        raise ValueError("attempt must be between 0 and 255")
    mac = hmac.new(secret, _DOMAIN + bytes([attempt]) + leaf_hash, hashlib.sha256).digest()
    # 128 bits reduced mod 10**15: the bias is below 2**-78, far beyond what matters.
    body = str(int.from_bytes(mac[:16], "big") % 10**MAC_DIGITS).zfill(MAC_DIGITS)
    return body + damm_check_digit(body)


def receipt_code_matches(secret: bytes, leaf_hash: bytes, code: str, attempt: int = 0) -> bool:
    """Return whether `code` is the receipt code of `leaf_hash` under `secret` and `attempt`."""
    return hmac.compare_digest(receipt_code(secret, leaf_hash, attempt), normalise_code(code))


def normalise_code(text: str) -> str:
    """Strip spaces and hyphens (ASCII or Unicode) from a typed code."""
    return _SEPARATORS.sub("", text)


def format_code(code: str) -> str:
    """Return `code` in groups of four digits separated by spaces."""
    code = normalise_code(code)
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


class CodeStatus(enum.Enum):
    """What a typed receipt code looks like before any lookup."""

    MALFORMED = "malformed"  # wrong length or not digits: not a receipt code at all
    TYPO = "typo"  # right shape but the check digit fails: almost surely mistyped
    WELL_FORMED = "well-formed"  # passes the check digit: look it up


@dataclass(frozen=True)
class CodeCheck:
    """The result of `check_code`: the status and the normalised code."""

    status: CodeStatus
    code: str

    @property
    def ok(self) -> bool:
        """Return whether the code is well formed."""
        return self.status is CodeStatus.WELL_FORMED


def check_code(text: str) -> CodeCheck:
    """Normalise typed text and classify it as malformed, a typo or a well-formed code."""
    code = normalise_code(text)
    if len(code) != CODE_LENGTH or not _DIGITS.fullmatch(code):
        return CodeCheck(CodeStatus.MALFORMED, code)
    if not check_digit_ok(code):
        return CodeCheck(CodeStatus.TYPO, code)
    return CodeCheck(CodeStatus.WELL_FORMED, code)
