"""Tests for registry.identifiers: RUC, DNI, CE, código único and phone numbers."""

from __future__ import annotations

import dataclasses
import pickle
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from registry.identifiers import (
    Document,
    DocumentType,
    InvalidIdentifier,
    dni_from_ruc,
    mask_phone,
    natural_person_ruc,
    normalise_codigo_unico,
    parse_ce,
    parse_dni,
    parse_document,
    parse_phone,
    parse_ruc,
    ruc_check_digit,
)

REAL_RUCS = ["20131312955", "20131368829", "20295613620", "20100079501"]
WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def reference_check_digit(first10: str) -> int:
    """SUNAT's rule written differently: (11 - sum mod 11) mod 10 maps 10 -> 0 and 11 -> 1."""
    return (11 - sum(int(d) * w for d, w in zip(first10, WEIGHTS, strict=True)) % 11) % 10


def rejection(func, *args) -> InvalidIdentifier:
    with pytest.raises(InvalidIdentifier) as info:
        func(*args)
    return info.value


digits = st.text(alphabet="0123456789", min_size=8, max_size=8)
ruc_first10 = st.builds(lambda p, d: p + d, st.sampled_from(["10", "15", "17", "20"]), digits)


class TestInvalidIdentifier:
    def test_is_a_value_error_with_rendered_english_text(self):
        exc = InvalidIdentifier(
            "A RUC has 11 digits; %(value)s has %(count)d.", {"value": "1", "count": 1}
        )
        assert isinstance(exc, ValueError)
        assert str(exc) == "A RUC has 11 digits; 1 has 1."
        assert exc.reason == "A RUC has 11 digits; %(value)s has %(count)d."
        assert exc.params == {"value": "1", "count": 1}

    def test_render_translates_the_template_then_fills_params(self):
        english = "A DNI has 8 digits; %(value)s has %(count)d."
        spanish = {english: "Un DNI tiene 8 dígitos; %(value)s tiene %(count)d."}
        exc = rejection(parse_dni, "1234567")
        assert (
            exc.render(lambda msg: spanish.get(msg, msg))
            == "Un DNI tiene 8 dígitos; 1234567 tiene 7."
        )

    def test_user_text_with_percent_signs_is_not_interpreted(self):
        exc = rejection(parse_dni, "%(count)d%s")
        assert "%(count)d%s" in str(exc)

    def test_survives_pickling_with_reason_and_params(self):
        exc = rejection(parse_ruc, "20131312954")
        copy = pickle.loads(pickle.dumps(exc))
        assert (copy.reason, copy.params, str(copy)) == (exc.reason, exc.params, str(exc))

    def test_long_input_is_truncated_in_the_reason(self):
        exc = rejection(parse_dni, "1" * 200)
        assert exc.params["value"] == "1" * 20 + "..."
        assert exc.params["count"] == 200


class TestRuc:
    @pytest.mark.parametrize("ruc", REAL_RUCS)
    def test_real_rucs_are_accepted(self, ruc):
        assert parse_ruc(ruc) == ruc
        assert ruc_check_digit(ruc[:10]) == int(ruc[10])

    @pytest.mark.parametrize("ruc", REAL_RUCS)
    def test_every_wrong_last_digit_is_rejected_with_the_check_digit_reason(self, ruc):
        for wrong in sorted(set("0123456789") - {ruc[10]}):
            exc = rejection(parse_ruc, ruc[:10] + wrong)
            assert "check digit is wrong" in exc.reason
            assert exc.params == {
                "value": ruc[:10] + wrong,
                "found": wrong,
                "expected": int(ruc[10]),
            }
            assert f"expected {ruc[10]}" in str(exc)

    @pytest.mark.parametrize(
        ("label", "text"),
        [
            ("trailing space", "20131312955 "),
            ("surrounding whitespace", "\t 20131312955\n"),
            ("dots", "20.131.312.955"),
            ("hyphens", "20-13131295-5"),
            ("internal spaces", "20 131 312 955"),
            ("full-width digits", "２０１３１３１２９５５"),
        ],
    )
    def test_separators_and_whitespace_as_typed_on_phones(self, label, text):
        assert parse_ruc(text) == "20131312955", label

    def test_prefix_must_be_10_15_17_or_20(self):
        # 3013131295 + its correct check digit: only the prefix is wrong.
        ruc = "3013131295" + str(reference_check_digit("3013131295"))
        exc = rejection(parse_ruc, ruc)
        assert "must start with 10, 15, 17 or 20" in exc.reason
        assert exc.params == {"value": ruc, "prefix": "30"}

    @pytest.mark.parametrize(("text", "count"), [("2013131295", 10), ("201313129550", 12)])
    def test_length_reason_gives_the_count(self, text, count):
        exc = rejection(parse_ruc, text)
        assert exc.reason == "A RUC has 11 digits; %(value)s has %(count)d."
        assert exc.params == {"value": text, "count": count}

    def test_letters_are_named(self):
        exc = rejection(parse_ruc, "2013131295O")
        assert "digits only" in exc.reason
        assert exc.params["chars"] == "'O'"

    @pytest.mark.parametrize("text", ["", "   ", " . - "])
    def test_empty(self, text):
        assert "empty" in rejection(parse_ruc, text).reason

    def test_non_string_is_a_programming_error(self):
        with pytest.raises(TypeError):
            parse_ruc(20131312955)

    @pytest.mark.parametrize("text", ["123456789", "12345678901", "12345678O9", "1234 567890"])
    def test_check_digit_needs_exactly_ten_digits(self, text):
        assert "computed from 10 digits" in rejection(ruc_check_digit, text).reason

    @given(ruc_first10)
    def test_check_digit_matches_an_independent_formulation(self, first10):
        assert ruc_check_digit(first10) == reference_check_digit(first10)

    @given(ruc_first10)
    @example("2013131295")
    @example("1000000009")  # r = 10 -> 0
    @example("1700000000")  # r = 11 -> 1
    def test_computed_digit_validates_and_every_other_digit_is_rejected(self, first10):
        check = ruc_check_digit(first10)
        assert 0 <= check <= 9
        assert parse_ruc(first10 + str(check)) == first10 + str(check)
        for wrong in set(range(10)) - {check}:
            exc = rejection(parse_ruc, f"{first10}{wrong}")
            assert exc.params["expected"] == check

    @pytest.mark.parametrize(
        ("first10", "check"),
        [
            ("1500000000", 8),  # 1*5 + 5*4 = 25; 25 mod 11 = 3; 11 - 3 = 8
            ("1000000009", 0),  # 1*5 + 9*2 = 23; 23 mod 11 = 1; 11 - 1 = 10 -> 0
            ("1700000000", 1),  # 1*5 + 7*4 = 33; 33 mod 11 = 0; 11 - 0 = 11 -> 1
        ],
    )
    def test_hand_computed_vectors_including_r_10_and_r_11(self, first10, check):
        assert ruc_check_digit(first10) == check


class TestDni:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("45678912", "45678912"),
            ("01234567", "01234567"),
            ("00000001", "00000001"),
            ("45.678.912", "45678912"),
            (" 45 678 912 ", "45678912"),
            ("45\u00a0678\u00a0912", "45678912"),
        ],
    )
    def test_accepted(self, text, expected):
        assert parse_dni(text) == expected

    @pytest.mark.parametrize(("text", "count"), [("4567891", 7), ("456789123", 9), ("0123456", 7)])
    def test_a_dni_has_8_digits(self, text, count):
        exc = rejection(parse_dni, text)
        assert exc.reason == "A DNI has 8 digits; %(value)s has %(count)d."
        assert exc.params == {"value": text, "count": count}
        assert str(exc) == f"A DNI has 8 digits; {text} has {count}."

    @pytest.mark.parametrize(
        ("text", "check"), [("45678912-3", "3"), ("45.678.912 - k", "K"), ("45678912–3", "3")]
    )
    def test_verification_character_gets_a_hint_not_a_silent_drop(self, text, check):
        exc = rejection(parse_dni, text)
        assert "without the verification character" in exc.reason
        assert exc.params == {"dni": "45678912", "check": check}

    def test_letters(self):
        exc = rejection(parse_dni, "4567891l")
        assert "digits only" in exc.reason
        assert exc.params["chars"] == "'l'"

    def test_empty(self):
        assert rejection(parse_dni, "").reason == "The DNI is empty; a DNI has 8 digits."

    def test_natural_person_ruc_known_vector(self):
        # 1045678912: 5*1 + 3*4 + 2*5 + 7*6 + 6*7 + 5*8 + 4*9 + 3*1 + 2*2 = 194
        # 194 mod 11 = 7; 11 - 7 = 4.
        assert natural_person_ruc("45678912") == "10456789124"
        assert natural_person_ruc("45.678.912") == "10456789124"

    @given(digits)
    def test_natural_person_ruc_parses_and_dni_from_ruc_inverts_it(self, dni):
        ruc = natural_person_ruc(dni)
        assert parse_ruc(ruc) == ruc
        assert ruc.startswith("10")
        assert ruc[2:10] == dni
        assert dni_from_ruc(ruc) == dni

    @pytest.mark.parametrize("ruc", REAL_RUCS)
    def test_dni_from_company_ruc_is_none(self, ruc):
        assert dni_from_ruc(ruc) is None

    def test_dni_from_invalid_ruc_raises(self):
        assert "check digit" in rejection(dni_from_ruc, "10456789125").reason

    def test_natural_person_ruc_rejects_a_bad_dni(self):
        assert rejection(natural_person_ruc, "4567891").params["count"] == 7


class TestCe:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("001234567", "001234567"),
            ("001 234 567", "001234567"),
            ("ab1234567", "AB1234567"),  # older alphanumeric card, upper-cased
            ("N-123456", "N123456"),
            ("123456789012", "123456789012"),
            ("123456", "123456"),
        ],
    )
    def test_accepted(self, text, expected):
        assert parse_ce(text) == expected

    @pytest.mark.parametrize(("text", "count"), [("12345", 5), ("1234567890123", 13)])
    def test_length(self, text, count):
        exc = rejection(parse_ce, text)
        assert "has 9 digits (older cards: 6 to 12" in str(exc)
        assert exc.params["count"] == count

    @pytest.mark.parametrize(
        ("text", "chars"), [("12345ß", "'ß'"), ("123456ı", "'ı'"), ("1234/5678", "'/'")]
    )
    def test_non_ascii_letters_are_not_smuggled_in_by_upper_casing(self, text, chars):
        # "ß".upper() == "SS" and "ı".upper() == "I": the check must run before upper-casing.
        exc = rejection(parse_ce, text)
        assert exc.params["chars"] == chars

    def test_empty(self):
        assert "empty" in rejection(parse_ce, " ").reason


class TestDocumentType:
    @pytest.mark.parametrize(
        ("doc_type", "code"),
        [(DocumentType.DNI, "1"), (DocumentType.CE, "4"), (DocumentType.RUC, "6")],
    )
    def test_sunat_catalogo_06_codes(self, doc_type, code):
        assert doc_type.sunat_code == code
        assert DocumentType.from_sunat_code(code) is doc_type
        assert DocumentType.from_sunat_code(int(code)) is doc_type

    def test_unsupported_code(self):
        with pytest.raises(ValueError, match="catálogo 06"):
            DocumentType.from_sunat_code("7")  # passport: not accepted here

    def test_values(self):
        assert [t.value for t in DocumentType] == ["dni", "ruc", "ce"]


class TestDocument:
    def test_display(self):
        assert str(Document(DocumentType.RUC, "20131312955")) == "RUC 20131312955"
        assert Document(DocumentType.DNI, "01234567").display == "DNI 01234567"
        assert str(Document(DocumentType.CE, "001234567")) == "CE 001234567"

    def test_number_is_normalised_on_construction(self):
        doc = Document(DocumentType.DNI, " 45.678.912 ")
        assert doc.number == "45678912"
        assert doc == Document(DocumentType.DNI, "45678912")

    def test_string_type_is_coerced(self):
        assert Document("ruc", "20131312955").type is DocumentType.RUC

    def test_invalid_number_cannot_be_constructed(self):
        with pytest.raises(InvalidIdentifier, match="check digit"):
            Document(DocumentType.RUC, "20131312954")

    def test_frozen(self):
        doc = Document(DocumentType.DNI, "45678912")
        with pytest.raises(dataclasses.FrozenInstanceError):
            doc.number = "00000000"


class TestParseDocument:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            ("DNI", "45678912", Document(DocumentType.DNI, "45678912")),
            (
                "DNI with dots as typed on phones",
                "45.678.912",
                Document(DocumentType.DNI, "45678912"),
            ),
            ("DNI with leading zero", "01234567", Document(DocumentType.DNI, "01234567")),
            ("DNI full-width digits", "４５６７８９１２", Document(DocumentType.DNI, "45678912")),
            ("RUC with trailing space", "20131312955 ", Document(DocumentType.RUC, "20131312955")),
            ("RUC with hyphens", "20-13131295-5", Document(DocumentType.RUC, "20131312955")),
            ("natural person RUC", "10456789124", Document(DocumentType.RUC, "10456789124")),
            ("CE, 9 digits", "001234567", Document(DocumentType.CE, "001234567")),
            ("CE with spaces", " 001 234 567 ", Document(DocumentType.CE, "001234567")),
        ],
    )
    def test_inference(self, label, text, expected):
        doc = parse_document(text)
        assert (doc.type, doc.number) == (expected.type, expected.number), label

    @pytest.mark.parametrize(
        ("label", "text", "reason_part", "params"),
        [
            ("empty", "  ", "Nothing was entered", {}),
            (
                "10 digits",
                "4567891234",
                "RUC (11 digits); %(value)s has %(count)d",
                {"value": "4567891234", "count": 10},
            ),
            (
                "12 digits",
                "201313129551",
                "has %(count)d digits",
                {"value": "201313129551", "count": 12},
            ),
            ("7 digits", "4567891", "has %(count)d digits", {"value": "4567891", "count": 7}),
            (
                "words",
                "DNI 45678912",
                "contains %(chars)s",
                {"value": "DNI 45678912", "chars": "'D', 'N', 'I'"},
            ),
            ("commas", "45,678,912", "contains %(chars)s", {"value": "45,678,912", "chars": "','"}),
            (
                "RUC with wrong check digit",
                "20131312954",
                "check digit is wrong",
                {"value": "20131312954", "found": "4", "expected": 5},
            ),
            (
                "RUC with wrong prefix",
                "30131312955",
                "must start with 10, 15, 17 or 20",
                {"value": "30131312955", "prefix": "30"},
            ),
            (
                "DNI with check character is not a CE",
                "45678912-3",
                "verification character",
                {"dni": "45678912", "check": "3"},
            ),
        ],
    )
    def test_rejections_say_what_was_expected(self, label, text, reason_part, params):
        exc = rejection(parse_document, text)
        assert reason_part in exc.reason, label
        assert exc.params == params, label

    def test_generic_reason_lists_the_three_documents(self):
        text = str(rejection(parse_document, "4567891234"))
        assert "DNI (8 digits)" in text
        assert "carné de extranjería (9 digits)" in text
        assert "RUC (11 digits)" in text

    def test_explicit_type_is_used(self):
        assert parse_document("ab1234567", DocumentType.CE) == Document(
            DocumentType.CE, "AB1234567"
        )
        exc = rejection(parse_document, "45678912", DocumentType.RUC)
        assert exc.params == {"value": "45678912", "count": 8}
        assert "RUC has 11 digits" in exc.reason

    def test_alphanumeric_ce_needs_an_explicit_type(self):
        assert "contains" in rejection(parse_document, "AB1234567").reason


class TestCodigoUnico:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            ("hyphenated", "01-01491-08", "010149108"),
            ("without the leading zero", "10149108", "010149108"),
            ("hyphenated without the leading zero", "1-01491-08", "010149108"),
            ("canonical", "010149108", "010149108"),
            ("surrounding spaces", " 010149108 ", "010149108"),
            ("spaces and dots", "01 01491.08", "010149108"),
            ("nine digits not starting with zero", "720001234", "720001234"),
        ],
    )
    def test_normalisation(self, label, text, expected):
        assert normalise_codigo_unico(text) == expected, label

    @pytest.mark.parametrize(("text", "count"), [("0101491", 7), ("01-01491-089", 10)])
    def test_length(self, text, count):
        exc = rejection(normalise_codigo_unico, text)
        assert "9 digits (8 if the leading zero is left out)" in exc.reason
        assert exc.params["count"] == count

    def test_letters(self):
        exc = rejection(normalise_codigo_unico, "01-0149I-08")
        assert exc.params == {"value": "01-0149I-08", "chars": "'I'"}

    def test_empty(self):
        assert "empty" in rejection(normalise_codigo_unico, "--").reason


class TestPhone:
    @pytest.mark.parametrize(
        ("label", "text", "expected"),
        [
            ("national mobile", "987654321", "+51987654321"),
            ("+51 with spaces", "+51 987 654 321", "+51987654321"),
            ("00 international prefix", "0051987654321", "+51987654321"),
            ("51 without +", "51987654321", "+51987654321"),
            ("hyphens", "987-654-321", "+51987654321"),
            ("surrounding whitespace", " 987654321\n", "+51987654321"),
            ("foreign mobile, UK", "+44 7911 123456", "+447911123456"),
            ("foreign mobile, Colombia", "+57 321 1234567", "+573211234567"),
            ("foreign fixed-or-mobile, USA", "+1 201 555 0123", "+12015550123"),
        ],
    )
    def test_valid(self, label, text, expected):
        assert parse_phone(text) == expected, label

    @pytest.mark.parametrize(
        ("label", "text", "reason_part", "params"),
        [
            ("Lima landline with trunk 0", "014567890", "landline, not a mobile number", {}),
            ("landline with parentheses", "(01) 456-7890", "landline, not a mobile number", {}),
            ("landline in + form", "+51 1 4567890", "landline, not a mobile number", {}),
            ("too short", "98765432", "9 digits starting with 9", {"count": 8}),
            ("too long", "9876543210", "9 digits starting with 9", {"count": 10}),
            ("toll free", "+51 800 12345", "not a mobile number", {"country_code": 51}),
            ("foreign landline", "+44 20 7946 0958", "not a mobile number", {"country_code": 44}),
            ("foreign invalid", "+44 12345", "not a valid phone number", {"country_code": 44}),
            ("unknown country code", "+999 123456", "country code is not valid", {}),
            ("letter l for 1", "98765432l", "not allowed", {"chars": "'l'"}),
            (
                "channel prefix is the caller's job",
                "whatsapp:+51987654321",
                "not allowed",
                {"chars": "'w', 'h', 'a', 't', 's', ..."},
            ),
            ("empty", " ", "empty", {}),
        ],
    )
    def test_rejected(self, label, text, reason_part, params):
        exc = rejection(parse_phone, text)
        assert reason_part in exc.reason, label
        assert exc.params == params, label

    def test_other_region_reads_national_numbers_there(self):
        assert parse_phone("321 1234567", region="CO") == "+573211234567"

    @settings(deadline=None)
    @given(
        st.text(alphabet="0123456789", min_size=4, max_size=15), st.sampled_from(["", "+", "00"])
    )
    def test_reasons_never_repeat_the_number(self, number, prefix):
        try:
            parse_phone(prefix + number)
        except InvalidIdentifier as exc:
            assert number not in str(exc)

    @settings(deadline=None)
    @given(st.text(alphabet="0123456789", min_size=8, max_size=8))
    def test_every_9_plus_8_digits_result_is_e164(self, rest):
        # Either a valid +519XXXXXXXX, or a reason; never some other shape.
        try:
            result = parse_phone("9" + rest)
        except InvalidIdentifier as exc:
            assert exc.reason
        else:
            assert result == "+519" + rest


class TestMaskPhone:
    @pytest.mark.parametrize(
        ("e164", "masked"),
        [
            ("+51987654321", "+51******321"),
            ("+447911123456", "+44*******456"),
            ("+12015550123", "+1*******123"),
            ("whatsapp:+51987654321", "********321"),
            ("987654321", "******321"),
            ("12", "**"),
            ("", ""),
        ],
    )
    def test_examples(self, e164, masked):
        assert mask_phone(e164) == masked

    @given(st.text(alphabet="0123456789", min_size=8, max_size=8))
    def test_peruvian_mobiles(self, rest):
        assert mask_phone("+519" + rest) == "+51******" + rest[-3:]

    @settings(deadline=None)
    @given(
        st.one_of(
            st.from_regex(r"\+[1-9]\d{3,14}", fullmatch=True),  # \d: any script's digits
            st.text(alphabet="+0123456789 -()abc:"),
        )
    )
    @example("+51987654321")
    @example("+1")
    def test_never_exposes_more_than_the_last_3_digits(self, text):
        masked = mask_phone(text)
        typed = "".join(str(int(c)) for c in text if c.isdecimal())  # any script's digits
        country = re.match(r"\+(\d+)", masked)
        shown = re.sub(r"\D", "", masked[country.end() :] if country else masked)
        if country:
            assert typed.startswith(country[1])
        assert len(shown) <= 3
        assert typed.endswith(shown)
        assert masked.count("*") == len(typed) - len(shown) - (len(country[1]) if country else 0)
