"""The SMS/USSD text budget: GSM-7 membership (3GPP TS 23.038), folding and segment counts."""

from __future__ import annotations

import math
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.text import (
    _BASIC_TABLE,
    _FOLDS,
    GSM7_BASIC,
    GSM7_EXTENSION,
    Encoding,
    TextCost,
    cost,
    encoding_of,
    fits_ussd,
    fold_for_sms,
    is_gsm7,
    normalise_inbound,
    segments,
    ussd_length,
)

EMOJI = "😀"  # U+1F600, outside the BMP: two UTF-16 code units

GSM7_TEXT = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION))
SPANISH_LETTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-()\n"
    "áéíóúüñÁÉÍÓÚÜÑ¿¡ºª°«»\u00a0"
)
# Every Latin-1 letter except those with no Latin decomposition (eth, thorn, micro sign).
LATIN1_LETTERS = "".join(
    ch
    for ch in map(chr, range(0x20, 0x100))
    if unicodedata.category(ch).startswith("L") and ch not in "ÐðÞþµ"
)


class TestAlphabet:
    def test_basic_table_has_127_characters_plus_escape(self):
        assert len(_BASIC_TABLE) == 128
        assert len(GSM7_BASIC) == 127
        assert "\x1b" not in GSM7_BASIC

    def test_extension_table(self):
        assert set("^{}\\[~]|€\f") == GSM7_EXTENSION
        assert not GSM7_BASIC & GSM7_EXTENSION

    @pytest.mark.parametrize("ch", list("éÉñÑüÜ¿¡àòùìèÄÖÅÆßØ'@£$¥Δ\n\r"))
    def test_in_basic_set(self, ch):
        assert ch in GSM7_BASIC
        assert encoding_of(ch) is Encoding.GSM7
        assert cost(ch).units == 1

    @pytest.mark.parametrize("ch", list("áíóúÁÍÓÚ°ºª’‘ʼ“”`\tç…–"))
    def test_not_gsm7(self, ch):
        assert not is_gsm7(ch)
        assert encoding_of(ch) is Encoding.UCS2

    @pytest.mark.parametrize("ch", sorted(GSM7_EXTENSION))
    def test_extension_characters_count_two_septets(self, ch):
        assert cost(ch) == TextCost(Encoding.GSM7, 2, 1)
        assert ussd_length(ch) == 2

    def test_one_non_gsm_character_makes_the_whole_message_ucs2(self):
        text = "Su registro está activo"
        assert cost(text) == TextCost(Encoding.UCS2, len(text), 1)
        assert encoding_of(text.replace("á", "a")) is Encoding.GSM7

    def test_encoding_values(self):
        assert Encoding.GSM7 == "gsm7"
        assert Encoding.UCS2 == "ucs2"

    def test_fold_table_only_touches_non_gsm_characters(self):
        assert not set(_FOLDS) & (GSM7_BASIC | GSM7_EXTENSION)
        assert all(is_gsm7(v) for v in _FOLDS.values())


class TestNormaliseInbound:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Arí niy’", "Arí niy'"),
            ("ch’aska ʼallin‘ ´ari` ", "ch'aska 'allin' 'ari'"),
            ("  Hola,\t\tqué\n\ntal\u00a0\u00a0 amigo  ", "Hola, qué tal amigo"),
            ("SÍ Confirmo", "SÍ Confirmo"),  # case and accents left to the keyword matcher
            ("Transacción", "Transacción"),
            ("Transaccio\u0301n", "Transacción"),  # NFC composes
            ("\u202f\u2003", ""),
            ("", ""),
        ],
    )
    def test_examples(self, raw, expected):
        assert normalise_inbound(raw) == expected

    @given(st.text())
    def test_idempotent(self, text):
        once = normalise_inbound(text)
        assert normalise_inbound(once) == once

    @given(st.text())
    def test_no_whitespace_runs_or_edges(self, text):
        out = normalise_inbound(text)
        assert out == out.strip()
        assert "  " not in out
        assert all(ch == " " or not ch.isspace() for ch in out)
        assert not set("’ʼ‘´`") & set(out)


class TestFoldForSms:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Transacción N° 123: ¿confirma?", "Transaccion Nro. 123: ¿confirma?"),
            ("Nº 5, N.º 6, n° 7, N.° 8", "Nro. 5, Nro. 6, nro. 7, Nro. 8"),
            ("ÁREA ÍNDICE ÓRGANO ÚLTIMO", "AREA INDICE ORGANO ULTIMO"),
            ("¡Envío rápido! Pingüino, niño, café", "¡Envio rapido! Pingüino, niño, café"),
            ("Arí niy’", "Ari niy'"),
            (
                "Ama qunqankichu: ch’aska, ʼallinʼ, ‘wasi’",
                "Ama qunqankichu: ch'aska, 'allin', 'wasi'",
            ),
            ("“Oro” — ley 0.999 – ok…", '"Oro" - ley 0.999 - ok...'),
            ("«Sí»", '"Si"'),
            ("1.º puesto, 2.ª vez, 25°", "1.o puesto, 2.a vez, 25o"),
            ("10\u00a0g\u202fde\u2009oro", "10 g de oro"),
            ("co\u00adope\u200bra", "coopera"),
            ("ﬁrma Ｓ/ 100", "firma S/ 100"),
            ("Façade ôtre", "Facade otre"),
            ("ÀÈÌÒÙàèìòù ÄÖÅÆßØ", "ÀÈÌÒÙàèìòù ÄÖÅÆßØ".replace("ÀÈÌÒÙ", "AEIOU")),
            ("Transaccio\u0301n", "Transaccion"),  # decomposed input
            ("Precio: 5 €", "Precio: 5 €"),  # extension character is GSM-7: kept
            ("Hola", "Hola"),
            ("", ""),
        ],
    )
    def test_examples(self, raw, expected):
        assert fold_for_sms(raw) == expected

    @pytest.mark.parametrize("raw", ["Gracias " + EMOJI, "αβγ", "金", "©", "×"])
    def test_characters_without_a_fold_are_kept(self, raw):
        out = fold_for_sms(raw)
        assert out == raw
        assert encoding_of(out) is Encoding.UCS2

    def test_fraction_folds_through_its_decomposition(self):
        assert fold_for_sms("½ kg") == "1/2 kg"

    def test_spanish_message_becomes_single_gsm_segment(self):
        text = "Su transacción N° 4512 quedó registrada. ¿Está conforme? Responda SÍ o NO."
        assert cost(text).encoding is Encoding.UCS2
        folded = fold_for_sms(text)
        assert folded == (
            "Su transaccion Nro. 4512 quedo registrada. ¿Esta conforme? Responda SI o NO."
        )
        assert cost(folded) == TextCost(Encoding.GSM7, len(folded), 1)

    @given(st.text(alphabet=SPANISH_LETTERS))
    def test_spanish_text_folds_to_gsm7(self, text):
        assert is_gsm7(fold_for_sms(text))

    @given(st.text(alphabet=LATIN1_LETTERS + " ,.;:¿?¡!'\"-ºª°«»\u00a0"))
    def test_latin1_letters_fold_to_gsm7(self, text):
        assert is_gsm7(fold_for_sms(text))

    @given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION)))
    def test_gsm7_text_is_unchanged(self, text):
        assert fold_for_sms(text) == text

    @given(st.text(alphabet=SPANISH_LETTERS + LATIN1_LETTERS + "’ʼ‘“”…–—\u0301\u0308"))
    def test_idempotent_on_latin_text(self, text):
        once = fold_for_sms(text)
        assert fold_for_sms(once) == once

    @given(st.text())
    def test_idempotent_on_any_text(self, text):
        once = fold_for_sms(text)
        assert fold_for_sms(once) == once


class TestGsm7Segments:
    @pytest.mark.parametrize(
        ("text", "units", "parts"),
        [
            ("", 0, 1),
            ("a", 1, 1),
            ("a" * 160, 160, 1),
            ("a" * 161, 161, 2),
            ("a" * 153 * 2, 306, 2),
            ("a" * (153 * 2 + 1), 307, 3),
            ("a" * 153 * 3, 459, 3),
            ("a" * (153 * 3 + 1), 460, 4),
            # extension characters count 2 against the single-message 160
            ("a" * 158 + "€", 160, 1),
            ("a" * 159 + "€", 161, 2),
            ("{" * 80, 160, 1),
            ("{" * 81, 162, 2),
            # an ESC+char pair ending exactly at 153 fits in part 1
            ("a" * 151 + "€" + "a" * 153, 306, 2),
            # an ESC+char pair that would straddle 153 moves to part 2, which then overflows
            ("a" * 152 + "€" + "a" * 152, 306, 3),
            ("a" * 152 + "€" + "a" * 151, 305, 2),
            ("a" * 152 + "[]", 156, 1),  # under 160: no concatenation, nothing to split
            ("a" * 152 + "[]" + "a" * 5, 161, 2),
        ],
    )
    def test_boundaries(self, text, units, parts):
        assert cost(text) == TextCost(Encoding.GSM7, units, parts)
        assert segments(text) == parts

    @given(GSM7_TEXT)
    def test_at_least_one_and_at_least_the_naive_count(self, text):
        c = cost(text)
        assert c.segments >= 1
        if c.units > 160:
            assert c.segments >= math.ceil(c.units / 153)
            # one lost septet at most per boundary
            assert c.segments <= math.ceil(c.units / 152)
        else:
            assert c.segments == 1

    @given(st.text(alphabet=sorted(GSM7_BASIC)))
    def test_basic_only_matches_the_textbook_formula(self, text):
        n = len(text)
        assert segments(text) == (1 if n <= 160 else math.ceil(n / 153))

    @given(GSM7_TEXT, st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)))
    def test_monotone_in_length(self, text, extra):
        assert segments(text + extra) >= segments(text)
        assert segments(extra + text) >= segments(text)


class TestUcs2Segments:
    @pytest.mark.parametrize(
        ("text", "units", "parts"),
        [
            ("á", 1, 1),
            (EMOJI, 2, 1),
            ("á" * 70, 70, 1),
            ("á" * 71, 71, 2),
            ("á" * 67 * 2, 134, 2),
            ("á" * (67 * 2 + 1), 135, 3),
            (EMOJI * 35, 70, 1),
            (EMOJI * 36, 72, 2),
            ("a" * 69 + EMOJI, 71, 2),
            # a surrogate pair ending exactly at 67 fits in part 1
            ("á" * 65 + EMOJI + "á" * 67, 134, 2),
            # a surrogate pair that would straddle 67 moves to part 2, which then overflows
            ("á" * 66 + EMOJI + "á" * 66, 134, 3),
        ],
    )
    def test_boundaries(self, text, units, parts):
        assert cost(text) == TextCost(Encoding.UCS2, units, parts)
        assert segments(text) == parts

    def test_extension_characters_count_one_in_ucs2(self):
        assert cost("á€") == TextCost(Encoding.UCS2, 2, 1)

    @given(st.text(min_size=1).map(lambda s: s + "á"))
    def test_units_are_utf16_code_units(self, text):
        c = cost(text)
        assert c.encoding is Encoding.UCS2
        assert c.units == len(text.encode("utf-16-le")) // 2
        assert c.segments >= max(1, math.ceil(c.units / 67) if c.units > 70 else 1)


class TestUssd:
    @pytest.mark.parametrize(
        ("text", "length", "fits"),
        [
            ("", 0, True),
            ("a" * 160, 160, True),
            ("a" * 161, 161, False),
            ("a" * 158 + "€", 160, True),
            ("a" * 159 + "|", 161, False),
            ("1. Registrar venta\n2. Consultar N° ", None, False),
            ("Transacción", None, False),
        ],
    )
    def test_default_limit(self, text, length, fits):
        assert fits_ussd(text) is fits
        if length is None:
            with pytest.raises(ValueError, match="not GSM-7"):
                ussd_length(text)
        else:
            assert ussd_length(text) == length

    def test_custom_limit(self):
        assert fits_ussd("a" * 182, limit=182)
        assert not fits_ussd("a" * 183, limit=182)

    def test_folded_menu_fits(self):
        menu = fold_for_sms("1. Registrar transacción\n2. Consultar N° de registro\n3. Ayuda")
        assert menu == "1. Registrar transaccion\n2. Consultar Nro. de registro\n3. Ayuda"
        assert fits_ussd(menu)
        assert ussd_length(menu) == len(menu)
