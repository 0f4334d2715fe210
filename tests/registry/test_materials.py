"""Tests for registry.materials: the material table, quantities, fine gold and sanity bounds."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.materials import (
    MATERIALS,
    PRICE_PER_FINE_GRAM_CEILING,
    PRICE_PER_FINE_GRAM_FLOOR,
    GradeKind,
    InvalidValue,
    Lot,
    Material,
    Quantity,
    Unit,
    check_grade,
    check_lot,
    check_price,
    check_quantity,
    fine_gold_grams,
    price_per_fine_gram,
)

D = Decimal
M = Material


def g(value: str) -> Quantity:
    return Quantity(D(value), Unit.G)


def kg(value: str) -> Quantity:
    return Quantity(D(value), Unit.KG)


def t(value: str) -> Quantity:
    return Quantity(D(value), Unit.T)


def rejection(func, *args) -> InvalidValue:
    with pytest.raises(InvalidValue) as info:
        func(*args)
    return info.value


class TestMaterialTable:
    def test_fixed_order_numbers_and_keys(self):
        assert [(m.number, m.value) for m in MATERIALS] == [
            (1, "ore"),
            (2, "tailings"),
            (3, "mercury"),
            (4, "carbon"),
            (5, "sponge"),
            (6, "dore"),
            (7, "refined"),
            (8, "native"),
        ]
        assert list(Material) == list(MATERIALS)

    @pytest.mark.parametrize(
        ("material", "keywords"),
        [
            (M.ORE, ("MINERAL", "BROZA")),
            (M.TAILINGS, ("RELAVE", "RELAVES")),
            (M.MERCURY, ("MERCURIO", "AZOGUE")),
            (M.CARBON, ("CARBON",)),
            (M.SPONGE, ("REFOGADO", "ESPONJA")),
            (M.DORE, ("DORE",)),
            (M.REFINED, ("REFINADO",)),
            (M.NATIVE, ("NATIVO", "PEPITA", "PEPITAS")),
        ],
    )
    def test_keywords(self, material, keywords):
        assert material.keywords == keywords

    def test_keywords_are_unique_upper_case_ascii(self):
        every = [k for m in MATERIALS for k in m.keywords]
        assert len(every) == len(set(every))
        assert all(k.isascii() and k.isupper() for k in every)

    @pytest.mark.parametrize(
        ("material", "units", "kind"),
        [
            (M.ORE, (Unit.T, Unit.KG), GradeKind.GRAMS_PER_TONNE),
            (M.TAILINGS, (Unit.T, Unit.KG), GradeKind.GRAMS_PER_TONNE),
            (M.MERCURY, (Unit.KG, Unit.G), GradeKind.NONE),
            (M.CARBON, (Unit.KG, Unit.T), GradeKind.GRAMS_PER_TONNE),
            (M.SPONGE, (Unit.G, Unit.KG), GradeKind.FINENESS_PERMILLE),
            (M.DORE, (Unit.G, Unit.KG), GradeKind.FINENESS_PERMILLE),
            (M.REFINED, (Unit.G, Unit.KG), GradeKind.FINENESS_PERMILLE),
            (M.NATIVE, (Unit.G, Unit.KG), GradeKind.FINENESS_PERMILLE),
        ],
    )
    def test_units_and_grade_kind(self, material, units, kind):
        assert material.units == units
        assert material.default_unit == units[0]
        assert material.grade_kind is kind

    def test_only_mercury_is_controlled(self):
        assert [m for m in MATERIALS if m.controlled] == [M.MERCURY]

    def test_from_number(self):
        assert Material.from_number(6) is M.DORE
        with pytest.raises(ValueError):
            Material.from_number(9)


class TestQuantity:
    @pytest.mark.parametrize(
        ("label", "quantity", "grams", "kilograms", "tonnes"),
        [
            ("grams", g("25.5"), D("25.5"), D("0.0255"), D("0.0000255")),
            ("kilograms", kg("1.5"), D("1500"), D("1.5"), D("0.0015")),
            ("tonnes", t("2"), D("2000000"), D("2000"), D("2")),
        ],
    )
    def test_conversions(self, label, quantity, grams, kilograms, tonnes):
        assert (quantity.grams, quantity.kilograms, quantity.tonnes) == (grams, kilograms, tonnes)

    def test_to_another_unit(self):
        assert kg("1.5").to(Unit.G) == g("1500")
        assert g("250").to(Unit.KG) == kg("0.25")

    def test_value_must_be_decimal(self):
        with pytest.raises(TypeError):
            Quantity(25.5, Unit.G)  # type: ignore[arg-type]

    def test_unit_string_becomes_unit(self):
        assert Quantity(D(1), "kg").unit is Unit.KG  # type: ignore[arg-type]

    def test_str(self):
        assert str(g("25.5")) == "25.5 g"


class TestFineGold:
    @pytest.mark.parametrize(
        ("label", "material", "quantity", "grade", "fine"),
        [
            ("doré 25.5 g at 850: 21.675 half-even up", M.DORE, g("25.5"), D(850), "21.68"),
            (
                "sponge 1.25 g at 500: 0.625 rounds half-even down",
                M.SPONGE,
                g("1.25"),
                D(500),
                "0.62",
            ),
            ("refined 1 kg at 999.9", M.REFINED, kg("1"), D("999.9"), "999.90"),
            ("native 10 g at 18k", M.NATIVE, g("10"), D("750.00"), "7.50"),
            ("ore 2 t at 12 g/t", M.ORE, t("2"), D(12), "24.00"),
            ("ore 500 kg at 12 g/t", M.ORE, kg("500"), D(12), "6.00"),
            ("tailings 10 t at 0.85 g/t", M.TAILINGS, t("10"), D("0.85"), "8.50"),
            ("carbon 250 kg at 3000 g/t", M.CARBON, kg("250"), D(3000), "750.00"),
        ],
    )
    def test_fine_gold(self, label, material, quantity, grade, fine):
        result = fine_gold_grams(material, quantity, grade)
        assert result == D(fine)
        assert str(result) == fine  # always two decimals

    def test_mercury_has_no_fine_gold(self):
        assert fine_gold_grams(M.MERCURY, kg("2"), None) is None

    def test_gold_product_needs_a_grade(self):
        with pytest.raises(ValueError):
            fine_gold_grams(M.DORE, g("1"), None)

    def test_price_per_fine_gram(self):
        assert price_per_fine_gram(D(5400), D("21.68")) == D("249.08")
        with pytest.raises(ValueError):
            price_per_fine_gram(D(1), D(0))

    @given(grams=st.integers(1, 10**7), grade=st.integers(500, 999))
    def test_fineness_never_exceeds_the_gross_weight(self, grams, grade):
        fine = fine_gold_grams(M.DORE, Quantity(D(grams) / 100, Unit.G), D(grade))
        assert fine is not None
        assert 0 <= fine <= D(grams) / 100


class TestCheckQuantity:
    @pytest.mark.parametrize(
        ("label", "material", "quantity"),
        [
            ("doré in grams", M.DORE, g("25.5")),
            ("doré in kg, at the ceiling", M.DORE, kg("100")),
            ("ore in tonnes, at the ceiling", M.ORE, t("1000")),
            ("ore in kg", M.ORE, kg("800")),
            ("mercury in grams", M.MERCURY, g("500")),
            ("carbon in tonnes", M.CARBON, t("1.5")),
            ("0.01 g is the finest weight", M.NATIVE, g("0.01")),
        ],
    )
    def test_accepted(self, label, material, quantity):
        assert check_quantity(material, quantity) == quantity

    @pytest.mark.parametrize(
        ("label", "material", "quantity", "reason", "params"),
        [
            (
                "doré in tonnes",
                M.DORE,
                t("1"),
                "is weighed in %(units)s",
                {"material": M.DORE, "units": "g, kg", "unit": "t"},
            ),
            ("ore in grams", M.ORE, g("500"), "is weighed in", {"units": "t, kg", "unit": "g"}),
            ("zero", M.DORE, g("0"), "greater than zero", {"quantity": "0 g"}),
            ("negative", M.DORE, g("-1"), "greater than zero", {"quantity": "-1 g"}),
            ("finer than 0.01 g", M.DORE, g("25.555"), "0.01 g", {"quantity": "25.555 g"}),
            ("doré above 100 kg", M.DORE, kg("100.5"), "too much", {"max": "100 kg"}),
            ("ore above 1000 t", M.ORE, t("1001"), "too much", {"max": "1000 t"}),
            ("sponge above 20 kg", M.SPONGE, kg("25"), "too much", {"max": "20 kg"}),
        ],
    )
    def test_rejected(self, label, material, quantity, reason, params):
        exc = rejection(check_quantity, material, quantity)
        assert reason in exc.reason
        assert params.items() <= exc.params.items()


class TestCheckGrade:
    @pytest.mark.parametrize(
        ("label", "material", "grade"),
        [
            ("mercury none", M.MERCURY, None),
            ("doré lowest", M.DORE, D(500)),
            ("doré highest", M.DORE, D("999.9")),
            ("refined lowest", M.REFINED, D(995)),
            ("refined highest", M.REFINED, D("999.99")),
            ("ore small", M.ORE, D("0.01")),
            ("ore highest", M.ORE, D(2000)),
            ("carbon highest", M.CARBON, D(20000)),
            ("trailing zeros are not decimals", M.DORE, D("850.000")),
        ],
    )
    def test_accepted(self, label, material, grade):
        assert check_grade(material, grade) == grade

    @pytest.mark.parametrize(
        ("label", "material", "grade", "reason", "params"),
        [
            ("mercury with a grade", M.MERCURY, D(1), "has no grade", {"material": M.MERCURY}),
            ("doré without", M.DORE, None, "fineness of %(material)s is missing", {}),
            ("ore without", M.ORE, None, "grade of %(material)s is missing", {}),
            ("zero", M.DORE, D(0), "greater than zero", {"grade": D(0)}),
            ("negative", M.ORE, D(-3), "greater than zero", {"grade": D(-3)}),
            ("three decimals", M.ORE, D("1.125"), "too many decimals", {"grade": D("1.125")}),
            (
                "doré percent typed as ‰",
                M.DORE,
                D(85),
                "between %(min)s and %(max)s",
                {"min": D(500), "max": D("999.9"), "grade": D(85)},
            ),
            ("doré 1000", M.DORE, D(1000), "between", {"grade": D(1000)}),
            ("refined 990", M.REFINED, D(990), "between", {"min": D(995)}),
            ("ore 2500 g/t", M.ORE, D(2500), "at most %(max)s g/t", {"max": D(2000)}),
            ("carbon 20001 g/t", M.CARBON, D(20001), "at most", {"max": D(20000)}),
        ],
    )
    def test_rejected(self, label, material, grade, reason, params):
        exc = rejection(check_grade, material, grade)
        assert reason in exc.reason
        assert params.items() <= exc.params.items()

    def test_fineness_reason_renders_the_percent_sign(self):
        assert "850 means 85 % gold" in str(rejection(check_grade, M.DORE, D(85)))


class TestCheckPrice:
    def test_accepted(self):
        assert check_price(D("5400.50")) == D("5400.50")

    @pytest.mark.parametrize(
        ("label", "price", "reason"),
        [
            ("zero", D(0), "greater than zero"),
            ("negative", D(-5), "greater than zero"),
            ("three decimals", D("10.505"), "more than 2 decimals"),
        ],
    )
    def test_rejected(self, label, price, reason):
        exc = rejection(check_price, price)
        assert reason in exc.reason
        assert exc.params == {"price": price}


class TestCheckLot:
    def test_25_5_g_dore_at_850_for_5400_soles(self):
        lot = check_lot(M.DORE, g("25.5"), D(850), D(5400))
        assert lot == Lot(M.DORE, g("25.5"), D(850), D(5400), D("21.68"))
        assert lot.price_per_fine_gram == D("249.08")

    def test_40_kg_dore_bar_for_10_soles_names_the_price(self):
        exc = rejection(check_lot, M.DORE, kg("40"), D(850), D(10))
        assert "below S/ %(floor)s" in exc.reason
        assert exc.params == {
            "price": D(10),
            "fine": D("34000.00"),
            "per_gram": D("0.00"),
            "floor": PRICE_PER_FINE_GRAM_FLOOR,
        }
        assert str(exc).startswith("The price S/ 10 for 34000.00 g of fine gold")

    def test_price_in_thousands_too_high(self):
        exc = rejection(check_lot, M.DORE, g("2.5"), D(850), D(5400))
        assert "above S/ %(ceiling)s" in exc.reason
        assert exc.params["ceiling"] == PRICE_PER_FINE_GRAM_CEILING
        assert exc.params["fine"] == D("2.12")  # 2.125 half-even
        assert exc.params["per_gram"] == D("2547.17")

    @pytest.mark.parametrize(
        ("label", "material", "quantity", "grade", "price"),
        [
            ("ore 2 t at 12 g/t", M.ORE, t("2"), D(12), D(6000)),
            ("carbon 250 kg at 3000 g/t", M.CARBON, kg("250"), D(3000), D(250000)),
            ("refined 1 kg", M.REFINED, kg("1"), D("999.9"), D(430000)),
            ("floor itself", M.DORE, g("100"), D(1000) - D("0.1"), D("4999.50")),
            ("mercury 2 kg", M.MERCURY, kg("2"), None, D(1200)),
        ],
    )
    def test_plausible_lots(self, label, material, quantity, grade, price):
        lot = check_lot(material, quantity, grade, price)
        assert lot.material is material

    def test_mercury_lot_has_no_fine_gold(self):
        lot = check_lot(M.MERCURY, kg("2"), None, D(1200))
        assert (lot.fine_grams, lot.price_per_fine_gram) == (None, None)

    @pytest.mark.parametrize(
        ("label", "quantity", "price", "reason"),
        [
            ("mercury for 5 soles", kg("2"), D(5), "below S/ %(floor)s per kg"),
            ("mercury price typed in céntimos", kg("1"), D(120000), "above S/ %(ceiling)s per kg"),
        ],
    )
    def test_mercury_price_bounds(self, label, quantity, price, reason):
        exc = rejection(check_lot, M.MERCURY, quantity, None, price)
        assert reason in exc.reason
        assert exc.params["price"] == price

    def test_less_than_a_hundredth_of_a_gram_of_fine_gold(self):
        exc = rejection(check_lot, M.ORE, kg("0.5"), D("0.01"), D(1))
        assert "less than 0.01 g of fine gold" in exc.reason

    def test_each_value_is_checked_first(self):
        assert "is weighed in" in rejection(check_lot, M.DORE, t("1"), D(850), D(1)).reason
        assert "between" in rejection(check_lot, M.DORE, g("1"), D(85), D(300)).reason
        assert "greater than zero" in rejection(check_lot, M.DORE, g("1"), D(850), D(0)).reason


class TestInvalidValue:
    def test_material_params_render_by_translated_label(self):
        exc = rejection(check_quantity, M.DORE, t("1"))
        assert str(exc) == "gold doré is weighed in g, kg, not in t."
        spanish = {
            "%(material)s is weighed in %(units)s, not in %(unit)s.": (
                "El %(material)s se pesa en %(units)s, no en %(unit)s."
            ),
            "gold doré": "oro doré",
        }
        assert exc.render(lambda s: spanish.get(s, s)) == "El oro doré se pesa en g, kg, no en t."

    def test_survives_pickling(self):
        exc = rejection(check_lot, M.DORE, kg("40"), D(850), D(10))
        copy = pickle.loads(pickle.dumps(exc))
        assert (copy.reason, copy.params, str(copy)) == (exc.reason, exc.params, str(exc))

    def test_is_a_value_error(self):
        assert issubclass(InvalidValue, ValueError)
