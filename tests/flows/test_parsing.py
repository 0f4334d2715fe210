"""Tests for flows.parsing: numbers, prices, quantities, grades, materials and USSD answers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.parsing import (
    USSD_FINENESS_PROMPT,
    USSD_TENTHS_PROMPT,
    parse_grade,
    parse_material,
    parse_number,
    parse_price,
    parse_quantity,
    parse_ussd_decimal,
    parse_ussd_fineness,
)
from registry.materials import InvalidValue, Material, Quantity, Unit, check_grade, check_lot

D = Decimal
M = Material

AMBIGUOUS = "is ambiguous"
MISPLACED = "in the wrong places"
NOT_A_NUMBER = "is not a number: it contains"
NEGATIVE = "is negative"
EMPTY = "Nothing was entered"


def rejection(func, *args, **kwargs) -> InvalidValue:
    with pytest.raises(InvalidValue) as info:
        func(*args, **kwargs)
    return info.value


def assert_rejected(func, args, reason, params, **kwargs):
    exc = rejection(func, *args, **kwargs)
    assert reason in exc.reason, exc.reason
    assert params.items() <= exc.params.items(), exc.params
    str(exc)  # renders without a formatting error


class TestParseNumber:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            ("plain integer", "5400", "5400"),
            ("decimal comma", "25,5", "25.5"),
            ("decimal point", "25.5", "25.5"),
            ("two decimals, comma", "999,99", "999.99"),
            ("points for thousands, comma for decimals", "1.250,5", "1250.5"),
            ("commas for thousands, point for decimals", "1,250.5", "1250.5"),
            ("several thousands groups and decimals", "1.250.000,75", "1250000.75"),
            ("space for thousands", "5 400", "5400"),
            ("space for thousands, decimal comma", "1 250,5", "1250.5"),
            ("space for thousands, decimal point with 3 digits", "1 250.500", "1250.500"),
            ("no-break space for thousands", "5\u00a0400", "5400"),
            ("narrow no-break space", "1\u202f250\u202f000", "1250000"),
            ("repeated points are thousands", "1.250.000", "1250000"),
            ("repeated commas are thousands", "1,250,000", "1250000"),
            ("leading zero then 3 digits is a decimal", "0,850", "0.850"),
            ("four integer digits then 3 is a decimal", "1250.500", "1250.500"),
            ("four decimals cannot be thousands", "0.9999", "0.9999"),
            ("surrounding whitespace", "  25,5 ", "25.5"),
            ("full-width digits and comma", "２５，５", "25.5"),
            ("zero is a number", "0", "0"),
        ],
    )
    def test_accepted(self, label, text, expected):
        result = parse_number(text)
        assert result == D(expected)
        assert str(result) == expected

    @pytest.mark.parametrize(
        ("label", "text", "reason", "params"),
        [
            ("ambiguous point", "1.250", AMBIGUOUS, {"value": "1.250", "whole": "1250"}),
            ("ambiguous comma", "1,250", AMBIGUOUS, {"whole": "1250"}),
            ("ambiguous 12.500", "12.500", AMBIGUOUS, {"whole": "12500"}),
            ("ambiguous 250,000", "250,000", AMBIGUOUS, {"whole": "250000"}),
            ("empty", "", EMPTY, {}),
            ("blank", "   ", EMPTY, {}),
            ("negative", "-5", NEGATIVE, {"value": "-5"}),
            ("negative with a unicode minus", "\u22125,5", NEGATIVE, {}),
            ("letters", "25x", NOT_A_NUMBER, {"chars": "'x'"}),
            ("letter O for zero", "5O0", NOT_A_NUMBER, {"chars": "'O'"}),
            ("currency sign outside money", "S/ 5", NOT_A_NUMBER, {"chars": "'S', '/'"}),
            ("exponent", "1e5", NOT_A_NUMBER, {"chars": "'e'"}),
            ("two decimal points", "1.2.3", MISPLACED, {"value": "1.2.3"}),
            ("two decimal commas after a point", "1.250,5,3", MISPLACED, {}),
            ("comma before point twice", "1,2.5", MISPLACED, {}),
            ("thousands group of 2", "1.25.000", MISPLACED, {}),
            ("thousands group of 4 after space", "1 2500", MISPLACED, {}),
            ("space between digits", "12 5", MISPLACED, {}),
            ("leading separator", ",5", MISPLACED, {}),
            ("trailing separator", "25.", MISPLACED, {}),
            ("doubled separator", "25,,5", MISPLACED, {}),
            ("mixed thousands separators", "1.250 000", MISPLACED, {}),
            ("mixed grouping before the decimal", "1 250.000,5", MISPLACED, {}),
            ("first group with a leading zero", "01.250.000", MISPLACED, {}),
            ("too many digits", "1" * 19, "too many digits", {"max": 18}),
        ],
    )
    def test_rejected(self, label, text, reason, params):
        assert_rejected(parse_number, (text,), reason, params)

    def test_long_input_is_truncated_in_the_reason(self):
        exc = rejection(parse_number, "x" * 100)
        assert exc.params["value"] == "x" * 20 + "..."

    def test_not_a_string(self):
        with pytest.raises(TypeError):
            parse_number(25)  # type: ignore[arg-type]


class TestParseNumberMoney:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            ("one point then 3 digits is thousands", "1.250", "1250"),
            ("one comma then 3 digits is thousands", "5,400", "5400"),
            ("2 decimals are céntimos", "5400.50", "5400.50"),
            ("S/ with a space", "S/ 5 400", "5400"),
            ("S/ without a space", "S/5400", "5400"),
            ("S/. with points", "S/. 5.400,00", "5400.00"),
            ("lower case s/", "s/ 1.250", "1250"),
            ("soles after", "5400 soles", "5400"),
            ("Soles capitalised", "5 400 Soles", "5400"),
            ("PEN", "PEN 5400", "5400"),
        ],
    )
    def test_accepted(self, label, text, expected):
        result = parse_number(text, money=True)
        assert result == D(expected)
        assert str(result) == expected

    @pytest.mark.parametrize(
        ("label", "text", "reason", "params"),
        [
            ("dollar sign", "$ 1500", "not dollars", {"value": "$ 1500"}),
            ("US$", "US$ 1500", "not dollars", {}),
            ("dólares", "1500 dólares", "not dollars", {}),
            ("only the currency", "S/", EMPTY, {}),
            ("negative after S/", "S/ -5", NEGATIVE, {}),
            ("letters", "S/ cinco mil", NOT_A_NUMBER, {}),
        ],
    )
    def test_rejected(self, label, text, reason, params):
        assert_rejected(parse_number, (text,), reason, params, money=True)


def group(digits: str, sep: str) -> str:
    head = len(digits) % 3 or 3
    return sep.join([digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)])


# (thousands separator, decimal separator) of each Peruvian style; "" is no grouping.
STYLES = [("", "."), ("", ","), (".", ","), (",", "."), (" ", ","), (" ", ".")]


@st.composite
def peruvian_numbers(draw):
    """(text, value, ambiguous): a number with at most 2 decimals in one Peruvian style."""
    whole = draw(st.integers(0, 10**12))
    places = draw(st.sampled_from([0, 1, 2]))
    fraction = str(draw(st.integers(0, 10**places - 1))).zfill(places) if places else ""
    thousands, decimal = draw(st.sampled_from(STYLES))
    text = group(str(whole), thousands) if thousands else str(whole)
    if fraction:
        text += decimal + fraction
    value = D(f"{whole}.{fraction}" if fraction else str(whole))
    # One point or comma then three digits, nothing else: 1.250 or 250,000.
    ambiguous = thousands in (".", ",") and not fraction and 1000 <= whole < 10**6
    return text, value, ambiguous


class TestRoundTrip:
    @given(peruvian_numbers())
    def test_money_round_trips_in_every_style(self, case):
        text, value, _ = case
        assert parse_number(text, money=True) == value

    @given(peruvian_numbers())
    def test_non_money_round_trips_unless_ambiguous(self, case):
        text, value, ambiguous = case
        if ambiguous:
            exc = rejection(parse_number, text)
            assert AMBIGUOUS in exc.reason
            assert exc.params["whole"] == str(value)
        else:
            assert parse_number(text) == value

    @given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False))
    def test_str_of_a_decimal_round_trips(self, value):
        assert parse_number(str(value)) == value


class TestParsePrice:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            ("plain", "5400", D(5400)),
            ("S/ with space groups", "S/ 5 400", D(5400)),
            ("thousands with a point", "S/ 1.250", D(1250)),
            ("Peruvian decimals", "S/. 1.250,50", D("1250.50")),
        ],
    )
    def test_accepted(self, label, text, expected):
        assert parse_price(text) == expected

    @pytest.mark.parametrize(
        ("label", "text", "reason", "params"),
        [
            ("zero", "0", "greater than zero", {"price": D(0)}),
            ("zero with S/", "S/ 0,00", "greater than zero", {}),
            ("three decimals", "5400.505", "more than 2 decimals", {"price": D("5400.505")}),
            ("negative", "-5400", NEGATIVE, {}),
            ("dollars", "US$ 100", "not dollars", {}),
        ],
    )
    def test_rejected(self, label, text, reason, params):
        assert_rejected(parse_price, (text,), reason, params)


class TestParseMaterial:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            *[(f"number {m.number}", str(m.number), m) for m in M],
            ("number with spaces", " 6 ", M.DORE),
            ("MINERAL", "MINERAL", M.ORE),
            ("broza", "broza", M.ORE),
            ("relave", "Relave", M.TAILINGS),
            ("relaves", "RELAVES", M.TAILINGS),
            ("mercurio", "mercurio", M.MERCURY),
            ("azogue", "AZOGUE", M.MERCURY),
            ("carbón with accent", "Carbón", M.CARBON),
            ("refogado", "REFOGADO", M.SPONGE),
            ("esponja", "esponja", M.SPONGE),
            ("DORE", "DORE", M.DORE),
            ("doré with accent", "doré", M.DORE),
            ("DORÉ upper-case accent", "DORÉ", M.DORE),
            ("refinado", "Refinado", M.REFINED),
            ("nativo", "NATIVO", M.NATIVE),
            ("pepita", "pepita", M.NATIVE),
            ("pepitas", "PEPITAS", M.NATIVE),
        ],
    )
    def test_accepted(self, label, text, expected):
        assert parse_material(text) is expected

    @pytest.mark.parametrize(
        ("label", "text", "reason", "params"),
        [
            ("empty", "", "material is missing", {"max": 8}),
            ("zero", "0", "There is no material", {"value": "0", "max": 8}),
            ("nine", "9", "There is no material", {"value": "9"}),
            ("unknown word", "PLATA", "is not a material", {"value": "PLATA"}),
            ("English key", "ore", "is not a material", {}),
        ],
    )
    def test_rejected(self, label, text, reason, params):
        assert_rejected(parse_material, (text,), reason, params)


class TestParseQuantity:
    @pytest.mark.parametrize(
        ("label", "text", "material", "expected"),
        [
            ("grams glued, upper case", "25.5G", M.DORE, Quantity(D("25.5"), Unit.G)),
            ("decimal comma and space", "25,5 g", M.DORE, Quantity(D("25.5"), Unit.G)),
            ("gr", "25,5gr", M.NATIVE, Quantity(D("25.5"), Unit.G)),
            ("grs.", "25,5 grs.", M.SPONGE, Quantity(D("25.5"), Unit.G)),
            ("gramos", "12 gramos", M.SPONGE, Quantity(D(12), Unit.G)),
            ("kg glued", "2kg", M.DORE, Quantity(D(2), Unit.KG)),
            ("kilos", "1,5 kilos", M.REFINED, Quantity(D("1.5"), Unit.KG)),
            ("KG upper", "2 KG", M.MERCURY, Quantity(D(2), Unit.KG)),
            ("tonnes", "1.5 t", M.ORE, Quantity(D("1.5"), Unit.T)),
            ("TM", "3 TM", M.ORE, Quantity(D(3), Unit.T)),
            ("TMH (wet)", "3 TMH", M.ORE, Quantity(D(3), Unit.T)),
            ("TMS (dry)", "3TMS", M.TAILINGS, Quantity(D(3), Unit.T)),
            ("toneladas", "12 toneladas", M.TAILINGS, Quantity(D(12), Unit.T)),
            ("ore in kg", "800 kg", M.ORE, Quantity(D(800), Unit.KG)),
            ("carbon in t", "1,5 t", M.CARBON, Quantity(D("1.5"), Unit.T)),
            ("mercury in flasks", "2 frascos", M.MERCURY, Quantity(D("69.0"), Unit.KG)),
            ("one flask", "1 frasco", M.MERCURY, Quantity(D("34.5"), Unit.KG)),
            ("bare: ore in t", "2", M.ORE, Quantity(D(2), Unit.T)),
            ("bare: tailings in t", "10", M.TAILINGS, Quantity(D(10), Unit.T)),
            ("bare: mercury in kg", "2", M.MERCURY, Quantity(D(2), Unit.KG)),
            ("bare: carbon in kg", "250", M.CARBON, Quantity(D(250), Unit.KG)),
            ("bare: doré in g", "25,5", M.DORE, Quantity(D("25.5"), Unit.G)),
            ("thousands with space", "1 250 g", M.DORE, Quantity(D(1250), Unit.G)),
            ("Peruvian full form", "1.250,5 g", M.DORE, Quantity(D("1250.5"), Unit.G)),
        ],
    )
    def test_accepted(self, label, text, material, expected):
        assert parse_quantity(text, material) == expected

    @pytest.mark.parametrize(
        ("label", "text", "material", "reason", "params"),
        [
            ("empty", "", M.DORE, "quantity is missing", {"unit": "g"}),
            ("unit only", "kg", M.DORE, "is not a quantity", {"value": "kg"}),
            ("unknown unit", "25 oz", M.DORE, "not a unit of weight", {"unit": "oz"}),
            ("unit for the wrong material", "1 t", M.DORE, "is weighed in", {"unit": "t"}),
            ("grams of ore", "500 g", M.ORE, "is weighed in", {"units": "t, kg"}),
            ("flasks of gold", "2 frascos", M.DORE, "Only mercury", {"material": M.DORE}),
            ("ambiguous kg", "1.250 kg", M.DORE, AMBIGUOUS, {"whole": "1250"}),
            ("zero", "0 g", M.DORE, "greater than zero", {"quantity": "0 g"}),
            ("negative", "-5 g", M.DORE, NEGATIVE, {}),
            ("40 kg of native gold", "40 kg", M.NATIVE, "too much", {"max": "20 kg"}),
            ("doré over 100 kg", "150 kg", M.DORE, "too much", {"max": "100 kg"}),
            ("ore over 1000 t", "1500 t", M.ORE, "too much", {"max": "1000 t"}),
            ("finer than the scale", "25,555 g", M.DORE, AMBIGUOUS, {}),
            ("finer than the scale, 4 decimals", "1,2345 g", M.DORE, "0.01 g", {}),
            ("two decimal points", "25.5.5 g", M.DORE, MISPLACED, {}),
        ],
    )
    def test_rejected(self, label, text, material, reason, params):
        assert_rejected(parse_quantity, (text, material), reason, params)


class TestParseGrade:
    @pytest.mark.parametrize(
        ("label", "text", "material", "expected"),
        [
            ("doré ‰ bare", "850", M.DORE, D(850)),
            ("doré ‰ sign", "850‰", M.DORE, D(850)),
            ("doré ‰ sign spaced", "850 ‰", M.DORE, D(850)),
            ("refined decimal comma", "999,9", M.REFINED, D("999.9")),
            ("refined two decimals", "999.99", M.REFINED, D("999.99")),
            ("fraction", "0.85", M.DORE, D(850)),
            ("fraction with 3 digits", "0,850", M.DORE, D(850)),
            ("refined as a fraction", "0.9999", M.REFINED, D("999.9")),
            ("percent", "85%", M.DORE, D(850)),
            ("percent with decimals", "99,99 %", M.REFINED, D("999.9")),
            ("18 karats", "18k", M.DORE, D(750)),
            ("18 karats upper", "18K", M.NATIVE, D(750)),
            ("22 karats rounds to 0.01 ‰", "22 kt", M.SPONGE, D("916.67")),
            ("quilates", "21 quilates", M.NATIVE, D(875)),
            ("ore bare", "12", M.ORE, D(12)),
            ("ore g/t", "12 g/t", M.ORE, D(12)),
            ("ore gpt", "12gpt", M.ORE, D(12)),
            ("ore g/TM", "12 g/TM", M.ORE, D(12)),
            ("ore gr/t", "8,5 gr/t", M.ORE, D("8.5")),
            ("tailings ppm", "0,85 ppm", M.TAILINGS, D("0.85")),
            ("carbon high", "3 500 g/t", M.CARBON, D(3500)),
        ],
    )
    def test_accepted(self, label, text, material, expected):
        assert parse_grade(text, material) == expected

    @pytest.mark.parametrize("text", ["-", "", " ", "0", "\u2014"])
    def test_mercury_takes_no_grade(self, text):
        assert parse_grade(text, M.MERCURY) is None

    @pytest.mark.parametrize(
        ("label", "text", "material", "reason", "params"),
        [
            ("mercury with a grade", "850", M.MERCURY, "has no grade", {"material": M.MERCURY}),
            ("doré dash", "-", M.DORE, "fineness of %(material)s is missing", {}),
            ("ore empty", "", M.ORE, "grade of %(material)s is missing", {}),
            ("doré 85 without %", "85", M.DORE, "between", {"grade": D(85)}),
            ("doré 1000", "1000", M.DORE, "between", {"grade": D(1000)}),
            ("refined 990", "990", M.REFINED, "between", {"min": D(995)}),
            ("10 karats is too low", "10k", M.DORE, "between", {"grade": D("416.67")}),
            ("24 karats says too little", "24k", M.REFINED, "karats go up to 24", {}),
            ("zero", "0", M.DORE, "greater than zero", {}),
            ("negative", "-850", M.DORE, NEGATIVE, {}),
            ("g/t for doré", "850 g/t", M.DORE, "not g/t", {"material": M.DORE}),
            ("‰ for ore", "12‰", M.ORE, "not a fineness", {"material": M.ORE}),
            ("karats for ore", "18k", M.ORE, "not a fineness", {}),
            ("ore too rich", "2500 g/t", M.ORE, "at most", {"max": D(2000)}),
            ("unknown suffix for doré", "850 ley", M.DORE, "is not a fineness", {}),
            ("unknown suffix for ore", "12 oz/t", M.ORE, "is not a grade", {}),
            ("suffix only", "k", M.DORE, "is not a fineness", {}),
            ("ambiguous", "1.250 g/t", M.ORE, AMBIGUOUS, {}),
            ("four decimals", "850,1255‰", M.DORE, "too many decimals", {}),
            ("three decimals are ambiguous", "850.125‰", M.DORE, AMBIGUOUS, {}),
        ],
    )
    def test_rejected(self, label, text, material, reason, params):
        assert_rejected(parse_grade, (text, material), reason, params)


class TestUssd:
    @pytest.mark.parametrize(
        ("label", "digits", "decimals", "expected"),
        [
            ("12,5 g typed 125", "125", 1, "12.5"),
            ("12 g typed 120", "120", 1, "12.0"),
            ("0,5 typed 5", "5", 1, "0.5"),
            ("leading zero", "05", 1, "0.5"),
            ("whole soles", "5400", 0, "5400"),
            ("two decimals", "12345", 2, "123.45"),
            ("full-width digits", "１２５", 1, "12.5"),
            ("spaces around", " 125 ", 1, "12.5"),
            ("zero is read; the checks reject it", "0", 1, "0.0"),
        ],
    )
    def test_decimal_accepted(self, label, digits, decimals, expected):
        result = parse_ussd_decimal(digits, decimals)
        assert result == D(expected)
        assert str(result) == expected

    @pytest.mark.parametrize(
        ("label", "digits", "reason", "params"),
        [
            ("empty", "", "Nothing was entered", {}),
            ("star", "12*5", "digits only", {"chars": "'*'"}),
            ("hash", "125#", "digits only", {"chars": "'#'"}),
            ("comma", "12,5", "digits only", {"chars": "','"}),
            ("space", "12 5", "digits only", {"chars": "' '"}),
            ("too long", "1" * 19, "too many digits", {}),
        ],
    )
    def test_decimal_rejected(self, label, digits, reason, params):
        assert_rejected(parse_ussd_decimal, (digits,), reason, params)

    def test_negative_decimals_is_a_programming_error(self):
        with pytest.raises(ValueError):
            parse_ussd_decimal("1", -1)

    @pytest.mark.parametrize(
        ("label", "digits", "expected"),
        [
            ("850", "850", "850"),
            ("999,9 typed 9999", "9999", "999.9"),
            ("999,99 typed 99999", "99999", "999.99"),
            ("short answers are whole ‰", "85", "85"),
        ],
    )
    def test_fineness(self, label, digits, expected):
        assert str(parse_ussd_fineness(digits)) == expected

    def test_short_fineness_is_caught_by_the_grade_check(self):
        exc = rejection(check_grade, M.DORE, parse_ussd_fineness("85"))
        assert "between" in exc.reason

    def test_slip_of_a_whole_gram_answer_is_caught_by_the_price_bounds(self):
        # The miner types 12 meaning 12 g of doré at 850 for S/ 4,600: it reads 1.2 g.
        quantity = Quantity(parse_ussd_decimal("12"), M.DORE.default_unit)
        exc = rejection(check_lot, M.DORE, quantity, D(850), D(4600))
        assert "above S/ %(ceiling)s" in exc.reason

    @pytest.mark.parametrize("material", list(M))
    def test_prompt_fits_a_ussd_screen(self, material):
        text = USSD_TENTHS_PROMPT % {"material": material.label, "unit": material.default_unit}
        assert len(text) <= 160
        assert len(USSD_FINENESS_PROMPT) <= 160


class TestOneLineTokens:
    def test_the_issue_example_parses_token_by_token(self):
        # COMPRA 45678912 DORE 25.5G 850 5400
        material = parse_material("DORE")
        lot = check_lot(
            material,
            parse_quantity("25.5G", material),
            parse_grade("850", material),
            parse_price("5400"),
        )
        assert (lot.fine_grams, lot.price_per_fine_gram) == (D("21.68"), D("249.08"))

    def test_mercury_line_with_a_dash(self):
        # COMPRA 45678912 MERCURIO 2KG - 1200
        material = parse_material("MERCURIO")
        lot = check_lot(
            material,
            parse_quantity("2KG", material),
            parse_grade("-", material),
            parse_price("1200"),
        )
        assert lot.fine_grams is None
        assert lot.material.controlled
