"""Materials traded under RECPO, their units and grades, and the fine-gold arithmetic: pure, no DB.

The eight materials, in the fixed order of the numbered menus (GLOSSARY "Materials"):

====  ========  =====================  ===============  =========================================
 no.  key       one-line keywords      units (default)  grade
====  ========  =====================  ===============  =========================================
 1    ore       MINERAL, BROZA         **t**, kg        g/t, above 0 up to 2,000
 2    tailings  RELAVE, RELAVES        **t**, kg        g/t, above 0 up to 2,000
 3    mercury   MERCURIO, AZOGUE       **kg**, g        none (a controlled input: every record is
                                                        a compliance flag, red flag R7)
 4    carbon    CARBON                 **kg**, t        g of gold per t of carbon, above 0 up to
                                                        20,000
 5    sponge    REFOGADO, ESPONJA      **g**, kg        fineness 500 to 999.9 ‰
 6    dore      DORE                   **g**, kg        fineness 500 to 999.9 ‰
 7    refined   REFINADO               **g**, kg        fineness 995 to 999.99 ‰
 8    native    NATIVO, PEPITA(S)      **g**, kg        fineness 500 to 999.9 ‰
====  ========  =====================  ===============  =========================================

Keywords are matched upper-case and without accents (``carbón`` is ``CARBON``, ``Doré`` is
``DORE``); the first keyword of each material is the one help texts show.

Fine gold: gross grams × fineness / 1000 for the gold products; tonnes × g/t for ore, tailings and
carbon; none for mercury. It is rounded to 0.01 g, half to even (``ROUND_HALF_EVEN``, Decimal's
default: no bias up or down over many records), e.g. 25.5 g at 850 ‰ is 21.675 -> 21.68 g and
1.25 g at 500 ‰ is 0.625 -> 0.62 g.

The bounds below are **coarse sanity bounds** against typing errors (a misplaced separator, a
quantity typed in the wrong unit, a price in thousands): they reject what cannot be a real trade.
They are not the R8 red-flag rule, which compares prices with the LBMA reference and flags rather
than rejects. Gold traded at about S/ 300-500 per fine gram in 2026; the floor and ceiling per fine
gram leave room for heavy discounts and for a price that doubles. [I]

Errors are `InvalidValue`, in the house style of `registry.identifiers.InvalidIdentifier`: `reason`
is English marked with `N_`, `params` fills its ``%(name)s`` placeholders. A `Material` in `params`
is rendered by its (translated) label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum, StrEnum

from recpo.i18n import N_

__all__ = [
    "FINE_GOLD_STEP",
    "GRADE_STEP",
    "MATERIALS",
    "MERCURY_FLASK_KG",
    "MONEY_STEP",
    "PRICE_PER_FINE_GRAM_CEILING",
    "PRICE_PER_FINE_GRAM_FLOOR",
    "PRICE_PER_KG_MERCURY_CEILING",
    "PRICE_PER_KG_MERCURY_FLOOR",
    "QUANTITY_STEP_GRAMS",
    "GradeKind",
    "InvalidValue",
    "Lot",
    "Material",
    "MaterialSpec",
    "Quantity",
    "Unit",
    "check_grade",
    "check_lot",
    "check_price",
    "check_quantity",
    "fine_gold_grams",
    "price_per_fine_gram",
]

FINE_GOLD_STEP = Decimal("0.01")  # fine gold is stated to 0.01 g
MONEY_STEP = Decimal("0.01")  # soles have two decimals (céntimos)
QUANTITY_STEP_GRAMS = Decimal("0.01")  # scales weigh to 0.01 g: finer quantities are typos
GRADE_STEP = Decimal("0.01")  # 999.99 ‰, 0.25 g/t
MERCURY_FLASK_KG = Decimal("34.5")  # the traditional mercury flask ("frasco")

# Coarse sanity bounds, in soles (see the module docstring): not the R8 red-flag rule.
PRICE_PER_FINE_GRAM_FLOOR = Decimal("50")
PRICE_PER_FINE_GRAM_CEILING = Decimal("2000")
# Mercury has no fine gold; its price per kg is bounded just as coarsely. [I]
PRICE_PER_KG_MERCURY_FLOOR = Decimal("10")
PRICE_PER_KG_MERCURY_CEILING = Decimal("20000")


class InvalidValue(ValueError):
    """A quantity, grade, price or material that cannot be accepted.

    `reason` is the untranslated English message (marked with `N_`), `params` fills its
    `%(name)s` placeholders; `str(exc)` is the rendered English text and `render(gettext)` renders
    it in another language (a `Material` parameter is shown by its translated label).
    """

    def __init__(self, reason: str, params: Mapping[str, object] | None = None) -> None:
        self.reason = reason
        self.params: dict[str, object] = dict(params or {})
        super().__init__(self.render())

    def render(self, translate: Callable[[str], str] | None = None) -> str:
        tr = translate if translate is not None else (lambda s: s)
        params = {
            name: tr(value.label) if isinstance(value, Material) else value
            for name, value in self.params.items()
        }
        return tr(self.reason) % params

    def __reduce__(self):  # keep reason and params across pickling (worker queues)
        return (self.__class__, (self.reason, self.params))


# --- units and quantities -------------------------------------------------------------------


class Unit(StrEnum):
    """Units of weight; the value is the symbol, the same in Spanish and Quechua."""

    G = "g"
    KG = "kg"
    T = "t"

    @property
    def grams(self) -> Decimal:
        """How many grams one of this unit is."""
        return _GRAMS[self]


_GRAMS = {Unit.G: Decimal(1), Unit.KG: Decimal(1000), Unit.T: Decimal(1_000_000)}


@dataclass(frozen=True, slots=True)
class Quantity:
    """A weight: a Decimal and its unit (conversions are exact)."""

    value: Decimal
    unit: Unit

    def __post_init__(self) -> None:
        if not isinstance(self.value, Decimal):
            raise TypeError(f"Quantity.value must be a Decimal, got {type(self.value).__name__}")
        object.__setattr__(self, "unit", Unit(self.unit))

    def to(self, unit: Unit) -> Quantity:
        """The same weight in another unit."""
        unit = Unit(unit)
        return Quantity(self.value * self.unit.grams / unit.grams, unit)

    @property
    def grams(self) -> Decimal:
        return self.value * self.unit.grams

    @property
    def kilograms(self) -> Decimal:
        return self.grams / _GRAMS[Unit.KG]

    @property
    def tonnes(self) -> Decimal:
        return self.grams / _GRAMS[Unit.T]

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


# --- materials ------------------------------------------------------------------------------


class GradeKind(Enum):
    """How a material's grade is stated."""

    FINENESS_PERMILLE = "permille"  # ‰ of gold in the gross weight
    GRAMS_PER_TONNE = "g/t"  # grams of gold per tonne of material
    NONE = "none"


@dataclass(frozen=True, slots=True)
class MaterialSpec:
    """What is known about one material: menu number, keywords, units, grade and bounds."""

    number: int
    label: str  # English, marked with N_; translated where shown
    keywords: tuple[str, ...]  # upper-case ASCII; the first is the one help texts show
    units: tuple[Unit, ...]  # the first is the default for a bare number
    grade_kind: GradeKind
    grade_min: Decimal | None  # inclusive; None: only "above zero"
    grade_max: Decimal | None  # inclusive
    max_quantity: Quantity  # in one transaction
    controlled: bool = False


class Material(StrEnum):
    """The materials, in the fixed order of the numbered menus."""

    ORE = "ore"
    TAILINGS = "tailings"
    MERCURY = "mercury"
    CARBON = "carbon"
    SPONGE = "sponge"
    DORE = "dore"
    REFINED = "refined"
    NATIVE = "native"

    @property
    def spec(self) -> MaterialSpec:
        return _SPECS[self]

    @property
    def number(self) -> int:
        """Number in the menus, 1 to 8."""
        return _SPECS[self].number

    @property
    def label(self) -> str:
        """English name marked with N_ (translate where shown)."""
        return _SPECS[self].label

    @property
    def keywords(self) -> tuple[str, ...]:
        return _SPECS[self].keywords

    @property
    def units(self) -> tuple[Unit, ...]:
        return _SPECS[self].units

    @property
    def default_unit(self) -> Unit:
        return _SPECS[self].units[0]

    @property
    def grade_kind(self) -> GradeKind:
        return _SPECS[self].grade_kind

    @property
    def controlled(self) -> bool:
        """A controlled input (mercury: Minamata convention, SUNAT bienes fiscalizados)."""
        return _SPECS[self].controlled

    @classmethod
    def from_number(cls, number: int) -> Material:
        for material in MATERIALS:
            if material.number == number:
                return material
        raise ValueError(f"no material has number {number!r}")


_GPT_MAX = Decimal("2000")
_SPECS: dict[Material, MaterialSpec] = {
    Material.ORE: MaterialSpec(
        1,
        N_("gold ore"),
        ("MINERAL", "BROZA"),
        (Unit.T, Unit.KG),
        GradeKind.GRAMS_PER_TONNE,
        None,
        _GPT_MAX,
        Quantity(Decimal(1000), Unit.T),
    ),
    Material.TAILINGS: MaterialSpec(
        2,
        N_("tailings"),
        ("RELAVE", "RELAVES"),
        (Unit.T, Unit.KG),
        GradeKind.GRAMS_PER_TONNE,
        None,
        _GPT_MAX,
        Quantity(Decimal(1000), Unit.T),
    ),
    Material.MERCURY: MaterialSpec(
        3,
        N_("mercury"),
        ("MERCURIO", "AZOGUE"),
        (Unit.KG, Unit.G),
        GradeKind.NONE,
        None,
        None,
        Quantity(Decimal(1000), Unit.KG),
        controlled=True,
    ),
    Material.CARBON: MaterialSpec(
        4,
        N_("activated carbon"),
        ("CARBON",),
        (Unit.KG, Unit.T),
        GradeKind.GRAMS_PER_TONNE,
        None,
        Decimal("20000"),
        Quantity(Decimal(50), Unit.T),
    ),
    Material.SPONGE: MaterialSpec(
        5,
        N_("sponge gold"),
        ("REFOGADO", "ESPONJA"),
        (Unit.G, Unit.KG),
        GradeKind.FINENESS_PERMILLE,
        Decimal("500"),
        Decimal("999.9"),
        Quantity(Decimal(20), Unit.KG),
    ),
    Material.DORE: MaterialSpec(
        6,
        N_("gold doré"),
        ("DORE",),
        (Unit.G, Unit.KG),
        GradeKind.FINENESS_PERMILLE,
        Decimal("500"),
        Decimal("999.9"),
        Quantity(Decimal(100), Unit.KG),
    ),
    Material.REFINED: MaterialSpec(
        7,
        N_("refined gold"),
        ("REFINADO",),
        (Unit.G, Unit.KG),
        GradeKind.FINENESS_PERMILLE,
        Decimal("995"),
        Decimal("999.99"),
        Quantity(Decimal(100), Unit.KG),
    ),
    Material.NATIVE: MaterialSpec(
        8,
        N_("native gold"),
        ("NATIVO", "PEPITA", "PEPITAS"),
        (Unit.G, Unit.KG),
        GradeKind.FINENESS_PERMILLE,
        Decimal("500"),
        Decimal("999.9"),
        Quantity(Decimal(20), Unit.KG),
    ),
}

MATERIALS: tuple[Material, ...] = tuple(sorted(Material, key=lambda m: _SPECS[m].number))


# --- checks ---------------------------------------------------------------------------------


def _units_text(material: Material) -> str:
    return ", ".join(str(u) for u in material.units)


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_quantity(material: Material, quantity: Quantity) -> Quantity:
    """Return `quantity` if it is a plausible weight of `material` in one transaction."""
    material = Material(material)
    if quantity.unit not in material.units:
        raise InvalidValue(
            N_("%(material)s is weighed in %(units)s, not in %(unit)s."),
            {"material": material, "units": _units_text(material), "unit": str(quantity.unit)},
        )
    if quantity.value <= 0:
        raise InvalidValue(
            N_("The quantity must be greater than zero; %(quantity)s was entered."),
            {"quantity": str(quantity)},
        )
    if _places(quantity.grams) > _places(QUANTITY_STEP_GRAMS):
        raise InvalidValue(
            N_("%(quantity)s is more precise than 0.01 g; round it to what the scale shows."),
            {"quantity": str(quantity)},
        )
    ceiling = material.spec.max_quantity
    if quantity.grams > ceiling.grams:
        raise InvalidValue(
            N_(
                "%(quantity)s of %(material)s is too much for one transaction (at most"
                " %(max)s); check the quantity and its unit."
            ),
            {"quantity": str(quantity), "material": material, "max": str(ceiling)},
        )
    return quantity


def check_grade(material: Material, grade: Decimal | None) -> Decimal | None:
    """Return `grade` if it is valid for `material` (‰, g/t, or None for mercury)."""
    material = Material(material)
    spec = material.spec
    if spec.grade_kind is GradeKind.NONE:
        if grade is not None:
            raise InvalidValue(
                N_("%(material)s has no grade; send - in its place."), {"material": material}
            )
        return None
    if grade is None:
        if spec.grade_kind is GradeKind.FINENESS_PERMILLE:
            raise InvalidValue(
                N_("The fineness of %(material)s is missing, in ‰ (e.g. 850)."),
                {"material": material},
            )
        raise InvalidValue(
            N_("The grade of %(material)s is missing, in g/t (e.g. 12)."), {"material": material}
        )
    if grade <= 0:
        raise InvalidValue(
            N_("The grade must be greater than zero; %(grade)s was entered."), {"grade": grade}
        )
    if _places(grade) > _places(GRADE_STEP):
        raise InvalidValue(
            N_("The grade %(grade)s has too many decimals; at most 2."), {"grade": grade}
        )
    low = spec.grade_min
    high = spec.grade_max
    if (low is not None and grade < low) or (high is not None and grade > high):
        if spec.grade_kind is GradeKind.FINENESS_PERMILLE:
            raise InvalidValue(
                N_(
                    "The fineness of %(material)s is between %(min)s and %(max)s ‰;"
                    " %(grade)s was entered. Fineness is in thousandths: 850 means 85 %% gold."
                ),
                {"material": material, "min": low, "max": high, "grade": grade},
            )
        raise InvalidValue(
            N_("The grade of %(material)s is at most %(max)s g/t; %(grade)s was entered."),
            {"material": material, "max": high, "grade": grade},
        )
    return grade


def check_price(price: Decimal) -> Decimal:
    """Return `price` (total, in soles) if it is above zero with at most 2 decimals."""
    if price <= 0:
        raise InvalidValue(
            N_("The price must be greater than zero; S/ %(price)s was entered."), {"price": price}
        )
    if _places(price) > _places(MONEY_STEP):
        raise InvalidValue(
            N_("The price S/ %(price)s has more than 2 decimals (céntimos)."), {"price": price}
        )
    return price


# --- fine gold ------------------------------------------------------------------------------


def fine_gold_grams(
    material: Material, quantity: Quantity, grade: Decimal | None
) -> Decimal | None:
    """Grams of fine gold in `quantity` of `material` at `grade`, to 0.01 g; None for mercury.

    Arithmetic only: validate with `check_quantity` and `check_grade` (or `check_lot`) first.
    """
    kind = Material(material).grade_kind
    if kind is GradeKind.NONE:
        return None
    if grade is None:
        raise ValueError(f"{material} needs a grade to compute its fine gold")
    if kind is GradeKind.FINENESS_PERMILLE:
        fine = quantity.grams * grade / 1000
    else:
        fine = quantity.tonnes * grade
    return fine.quantize(FINE_GOLD_STEP, rounding=ROUND_HALF_EVEN)


def price_per_fine_gram(price: Decimal, fine_grams: Decimal) -> Decimal:
    """Soles per gram of fine gold, to the céntimo (half to even)."""
    if fine_grams <= 0:
        raise ValueError("fine_grams must be greater than zero")
    return (price / fine_grams).quantize(MONEY_STEP, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Lot:
    """A checked material, quantity, grade and total price, with its fine gold."""

    material: Material
    quantity: Quantity
    grade: Decimal | None
    price: Decimal
    fine_grams: Decimal | None

    @property
    def price_per_fine_gram(self) -> Decimal | None:
        if self.fine_grams is None:
            return None
        return price_per_fine_gram(self.price, self.fine_grams)


def check_lot(material: Material, quantity: Quantity, grade: Decimal | None, price: Decimal) -> Lot:
    """Check each value and that the price fits the gold in the lot; return the `Lot`.

    The price per fine gram must lie within `PRICE_PER_FINE_GRAM_FLOOR` and `..._CEILING`
    (mercury: the price per kg within `PRICE_PER_KG_MERCURY_FLOOR` and `..._CEILING`).
    """
    material = Material(material)
    check_quantity(material, quantity)
    check_grade(material, grade)
    check_price(price)
    fine = fine_gold_grams(material, quantity, grade)
    lot = Lot(material, quantity, grade, price, fine)
    if fine is None:
        per_kg = (price / quantity.kilograms).quantize(MONEY_STEP, rounding=ROUND_HALF_EVEN)
        if per_kg < PRICE_PER_KG_MERCURY_FLOOR:
            raise InvalidValue(
                N_(
                    "S/ %(price)s for %(quantity)s of %(material)s is S/ %(per_kg)s per kg,"
                    " below S/ %(floor)s per kg; check the price and the quantity."
                ),
                {
                    "price": price,
                    "quantity": str(quantity),
                    "material": material,
                    "per_kg": per_kg,
                    "floor": PRICE_PER_KG_MERCURY_FLOOR,
                },
            )
        if per_kg > PRICE_PER_KG_MERCURY_CEILING:
            raise InvalidValue(
                N_(
                    "S/ %(price)s for %(quantity)s of %(material)s is S/ %(per_kg)s per kg,"
                    " above S/ %(ceiling)s per kg; check the price and the quantity."
                ),
                {
                    "price": price,
                    "quantity": str(quantity),
                    "material": material,
                    "per_kg": per_kg,
                    "ceiling": PRICE_PER_KG_MERCURY_CEILING,
                },
            )
        return lot
    if fine <= 0:
        raise InvalidValue(
            N_(
                "%(quantity)s of %(material)s at grade %(grade)s holds less than 0.01 g of fine"
                " gold; check the quantity and the grade."
            ),
            {"quantity": str(quantity), "material": material, "grade": grade},
        )
    per_gram = price_per_fine_gram(price, fine)
    if per_gram < PRICE_PER_FINE_GRAM_FLOOR:
        raise InvalidValue(
            N_(
                "The price S/ %(price)s for %(fine)s g of fine gold is S/ %(per_gram)s per fine"
                " gram, below S/ %(floor)s; check the price, the quantity and the grade."
            ),
            {
                "price": price,
                "fine": fine,
                "per_gram": per_gram,
                "floor": PRICE_PER_FINE_GRAM_FLOOR,
            },
        )
    if per_gram > PRICE_PER_FINE_GRAM_CEILING:
        raise InvalidValue(
            N_(
                "The price S/ %(price)s for %(fine)s g of fine gold is S/ %(per_gram)s per fine"
                " gram, above S/ %(ceiling)s; check the price, the quantity and the grade."
            ),
            {
                "price": price,
                "fine": fine,
                "per_gram": per_gram,
                "ceiling": PRICE_PER_FINE_GRAM_CEILING,
            },
        )
    return lot
