import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.receipts import (
    CODE_LENGTH,
    CodeStatus,
    check_code,
    check_digit_ok,
    damm_check_digit,
    format_code,
    normalise_code,
    receipt_code,
    receipt_code_matches,
)

KEY = b"k" * 32
LEAF = hashlib.sha256(b"\x00entry").digest()


def test_damm_known_vector():
    assert damm_check_digit("572") == "4"
    assert check_digit_ok("5724")
    assert not check_digit_ok("5723")
    assert not check_digit_ok("5274")


def test_check_digit_rejects_non_digits():
    assert not check_digit_ok("")
    assert not check_digit_ok("0")  # a lone check digit protects nothing
    assert not check_digit_ok("57 24")
    assert not check_digit_ok("\u0665\u0667\u0662\u0664")  # Arabic-Indic digits
    with pytest.raises(ValueError):
        damm_check_digit("57a")


def test_receipt_code_shape_and_determinism():
    code = receipt_code(KEY, LEAF)
    assert len(code) == CODE_LENGTH == 16
    assert code.isascii() and code.isdigit()
    assert check_digit_ok(code)
    assert receipt_code(KEY, LEAF) == code
    # Pinned: codes already handed out must stay valid, so the derivation must never change.
    assert code == "4728480403535184"


def test_mac_depends_on_key_leaf_and_attempt():
    code = receipt_code(KEY, LEAF)
    assert receipt_code(b"K" * 32, LEAF) != code
    assert receipt_code(KEY, hashlib.sha256(b"other").digest()) != code
    assert receipt_code(KEY, LEAF, attempt=1) != code
    assert len({receipt_code(KEY, LEAF, attempt=a) for a in range(20)}) == 20


def test_receipt_code_arguments_are_checked():
    with pytest.raises(ValueError):
        receipt_code(b"short", LEAF)
    with pytest.raises(ValueError):
        receipt_code(KEY, LEAF[:31])
    with pytest.raises(ValueError):
        receipt_code(KEY, LEAF, attempt=256)


def test_receipt_code_matches():
    code = receipt_code(KEY, LEAF, attempt=3)
    assert receipt_code_matches(KEY, LEAF, format_code(code), attempt=3)
    assert not receipt_code_matches(KEY, LEAF, code, attempt=0)
    assert not receipt_code_matches(b"K" * 32, LEAF, code, attempt=3)


codes = st.builds(
    receipt_code,
    st.binary(min_size=16, max_size=64),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 255),
)
digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=30).map(
    lambda s: s + damm_check_digit(s)
)


@settings(max_examples=300)
@given(code=codes | digit_strings)
def test_every_single_digit_error_is_caught(code):
    assert check_digit_ok(code)
    for i, ch in enumerate(code):
        for d in "0123456789":
            if d != ch:
                assert not check_digit_ok(code[:i] + d + code[i + 1 :]), (code, i, d)


@settings(max_examples=300)
@given(code=codes | digit_strings)
def test_every_adjacent_swap_is_caught(code):
    for i in range(len(code) - 1):
        a, b = code[i], code[i + 1]
        if a != b:
            assert not check_digit_ok(code[:i] + b + a + code[i + 2 :]), (code, i)


@settings(max_examples=100)
@given(code=codes)
def test_format_and_normalise_round_trip(code):
    formatted = format_code(code)
    assert formatted == " ".join([code[0:4], code[4:8], code[8:12], code[12:16]])
    assert normalise_code(formatted) == code
    assert normalise_code(formatted.replace(" ", "-")) == code
    assert check_code("  " + formatted.replace(" ", " - ") + "\n").code == code


def test_normalise_tolerates_spaces_and_dashes():
    assert normalise_code("1234 5678-9012\u20133456") == "1234567890123456"
    assert normalise_code("1234\u00a05678\t9012  3456") == "1234567890123456"
    assert normalise_code("12a4") == "12a4"


def test_check_code_statuses():
    code = receipt_code(KEY, LEAF)
    good = check_code(format_code(code))
    assert good.status is CodeStatus.WELL_FORMED and good.ok and good.code == code

    typo = code[:5] + str((int(code[5]) + 1) % 10) + code[6:]
    assert check_code(typo).status is CodeStatus.TYPO
    assert not check_code(typo).ok
    swapped = next(
        code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        for i in range(15)
        if code[i] != code[i + 1]
    )
    assert check_code(swapped).status is CodeStatus.TYPO

    for text in ["", code[:-1], code + "0", code[:-1] + "x", "VERIFICAR", "1234 5678 9012 345"]:
        assert check_code(text).status is CodeStatus.MALFORMED, text
