"""Declaring a trade: COMPRA (a buyer registers a purchase) and VENTA (a miner declares a sale).

On the phone, in Spanish (Quechua reads the same way, in Quechua):

    > COMPRA                          > VENTA
    < DNI o RUC del vendedor?         < RUC del comprador?
    > 45678912                        > 20131312955
                                      < Derecho minero de donde sale el
                                        oro: responda 1 para el suyo o
                                        escriba otro codigo unico.
                                        1 010149108 Rinconada Uno
                                      > 1
    < Material? 1 Mineral 2 Relave …  < Material? 1 Mineral 2 Relave …
    > 6                               > 6
    < Cantidad de dore (g o kg)?      < Cantidad de dore (g o kg)?
    > 25,5 g                          > 25.5
    < Ley en milesimas (ej. 850)?     < Ley en milesimas (ej. 850)?
    > 850                             > 850
    < Precio total en soles?          < Precio total en soles?
    > S/ 5 400                        > 5400
    < Compra: dore 25.5 g, 850 ‰,     < Venta: dore 25.5 g, 850 ‰, …
      oro fino 21.68 g, S/ 5,400.00.    SI para declarar, NO para cancelar.
      Vendedor DNI 45678912.          > SI
      SI para enviar, NO para cancelar. < Venta declarada. Dele al comprador el
    > SI                                codigo 482913 (vale 48 h).
    < Enviado al vendedor. Codigo 482913.

The seller declares the mining right (REINFO código único) the gold comes from: a miner in a
VENTA right after the buyer's RUC, the seller of a COMPRA after answering SI (`ask_right`, used
by flows.confirm). A seller with exactly one VIGENTE registration is offered it as option 1; any
other right may be typed (01-01491-08 or 010149108), and one that is not the seller's is accepted
and flagged for DGFM (red flag R2). In Quechua: "Maymanta quri hamun derecho minero: qampa
kaqpaq 1 kutichiy, utaq huk codigo unicota qillqay."

The seller of a COMPRA gets the summary with the code and answers SI 482913 / NO 482913; the
buyer of a VENTA sends CODIGO 482913, sees the summary and answers SI. One line does it all:
`COMPRA 45678912 DORE 25.5G 850 5400` jumps straight to the summary (a VENTA line may end with
the código único; without it a miner's only VIGENTE right is taken, and one with several is
asked). On USSD the same steps are numbered screens, and numbers are typed as digits only
(12,5 g = 125).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from statemachine import State

from flows import parsing
from flows.keywords import Command, split_command
from flows.messages import Choice, Step
from flows.turn import BEGUN, FlowMachine, Turn
from recpo.i18n import N_
from registry import transactions
from registry.identifiers import (
    Document,
    InvalidIdentifier,
    normalise_codigo_unico,
    parse_document,
    parse_ruc,
)
from registry.lookup import seller_ruc, vigente_rights
from registry.materials import (
    MATERIALS,
    GradeKind,
    InvalidValue,
    Material,
    Quantity,
    Unit,
    check_lot,
)
from registry.transactions import Goods, Refusal

PURCHASE, SALE = "purchase", "sale"

ASK_SELLER = N_("Seller's DNI or RUC?")
ASK_BUYER = N_("Buyer's RUC?")
ASK_RIGHT = N_("Código único of the mining right the gold comes from (9 digits)?")
ASK_RIGHT_DEFAULT = N_(
    "Mining right the gold comes from: reply 1 for yours, or type another código único."
)
RIGHT_NAME_SHOWN = 24  # characters of the mining right's name shown beside its code
ASK_MATERIAL = N_("Material?")
ASK_QUANTITY = N_("Quantity of %(material)s (%(units)s)?")
ASK_QUANTITY_USSD = N_(
    "Quantity of %(material)s in %(unit)s, digits only, last digit tenths (12.5 = 125):"
)
ASK_FINENESS = N_("Fineness in per mil (e.g. 850)?")
ASK_FINENESS_USSD = N_("Fineness in per mil, digits only (850; 999.9 = 9999):")
ASK_GRADE_GPT = N_("Grade in grams per tonne (e.g. 12)?")
ASK_PRICE = N_("Total price in soles?")
ASK_PRICE_USSD = N_("Total price in whole soles:")
SUMMARY_PURCHASE = N_(
    "Purchase: %(goods)s, %(price)s. Seller %(party)s. Reply SI to send it, NO to cancel."
)
SUMMARY_SALE = N_(
    "Sale: %(goods)s, %(price)s. Buyer RUC %(party)s. Reply SI to declare, NO to cancel."
)
ANSWER_YES_NO = N_("Reply SI or NO.")
CANCELLED = N_("Cancelled. Nothing was recorded.")
SENT_TO_SELLER = N_(
    "Sent to the seller to confirm. Code %(code)s. You will get the receipt when they confirm."
)
SELLER_ASKED = N_(
    "%(buyer)s registered buying from you: %(goods)s, %(price)s. "
    "Reply SI %(code)s to confirm or NO %(code)s to reject."
)
SALE_DECLARED = N_("Sale declared. Give the buyer this code: %(code)s (valid %(hours)s h).")
GOODS_WITH_FINE = N_("%(material)s %(quantity)s, %(grade)s, fine gold %(fine)s g")
GOODS_PLAIN = N_("%(material)s %(quantity)s")
ONE_LINE_FORMAT = N_(
    "Format: %(keyword)s <%(party)s> <material> <quantity><unit> <grade or -> <price>. "
    "E.g. %(example)s"
)
BAD_TOKEN = N_("%(problem)s (%(position)s)")
TOKEN_NAMES = {
    1: N_("2nd word"),
    2: N_("3rd word"),
    3: N_("4th word"),
    4: N_("5th word"),
    5: N_("6th word"),
    6: N_("7th word"),
}


class TradeFlow(FlowMachine):
    """One declaration, step by step; every answer is checked before the next question."""

    party = State(initial=True)
    right = State()
    material = State()
    quantity = State()
    grade = State()
    price = State()
    summary = State()
    done = State(final=True)

    answer = (
        party.to(right, cond=["valid", "selling"])
        | party.to(material, cond="valid")
        | party.to.itself(on="complain")
        | right.to(summary, cond=["valid", "lot_known"])
        | right.to(material, cond="valid")
        | right.to.itself(on="complain")
        | material.to(quantity, cond="valid")
        | material.to.itself(on="complain")
        | quantity.to(price, cond=["valid", "no_grade"])
        | quantity.to(grade, cond="valid")
        | quantity.to.itself(on="complain")
        | grade.to(price, cond="valid")
        | grade.to.itself(on="complain")
        | price.to(summary, cond="valid")
        | price.to.itself(on="complain")
        | summary.to(done, cond="said_yes", on="submit")
        | summary.to(done, cond="said_no", on="drop")
        | summary.to.itself(on="ask_yes_no")
    )
    # One-line entry: every value given at once (a sale's right may still have to be asked).
    jump = party.to(summary, cond="right_known") | party.to(right)

    def __init__(self, turn: Turn, kind: str, start_value: str | None = None) -> None:
        self.kind = kind
        super().__init__(turn, start_value)

    # --- conditions --------------------------------------------------------------------------

    def valid(self, error: str | None = None, **_: Any) -> bool:
        return error is None

    def selling(self, **_: Any) -> bool:
        return self.kind == SALE

    def lot_known(self, **_: Any) -> bool:
        return "price" in self.turn.data

    def right_known(self, **_: Any) -> bool:
        return self.kind == PURCHASE or bool(self.turn.data.get("codigo_unico"))

    def no_grade(self, **_: Any) -> bool:
        return Material(self.turn.data["material"]).grade_kind is GradeKind.NONE

    def said_yes(self, reply: str = "", **_: Any) -> bool:
        return reply == "yes"

    def said_no(self, reply: str = "", **_: Any) -> bool:
        return reply == "no"

    # --- prompts -----------------------------------------------------------------------------

    def on_enter_party(self, **_: Any) -> None:
        if not self.asking:
            return
        self.turn.reply(
            self.turn.say(ASK_SELLER if self.kind == PURCHASE else ASK_BUYER), final=False
        )

    def on_enter_right(self, **_: Any) -> None:
        if not self.asking:
            return
        ask_right(self.turn, _own_ruc(self.turn))

    def on_enter_material(self, **_: Any) -> None:
        if not self.asking:
            return
        say = self.turn.say
        choices = tuple(Choice(str(m.number), say.material(m)) for m in MATERIALS)
        self.turn.reply(say(ASK_MATERIAL), choices=choices, final=False)

    def on_enter_quantity(self, **_: Any) -> None:
        if not self.asking:
            return
        say, material = self.turn.say, Material(self.turn.data["material"])
        if self.turn.ussd:
            text = say(
                ASK_QUANTITY_USSD, material=say.material(material), unit=material.default_unit.value
            )
        else:
            units = ", ".join(u.value for u in material.units)
            text = say(ASK_QUANTITY, material=say.material(material), units=units)
        self.turn.reply(text, final=False)

    def on_enter_grade(self, **_: Any) -> None:
        if not self.asking:
            return
        material = Material(self.turn.data["material"])
        if material.grade_kind is GradeKind.FINENESS_PERMILLE:
            message = ASK_FINENESS_USSD if self.turn.ussd else ASK_FINENESS
        else:
            message = ASK_GRADE_GPT
        self.turn.reply(self.turn.say(message), final=False)

    def on_enter_price(self, **_: Any) -> None:
        if not self.asking:
            return
        self.turn.reply(self.turn.say(ASK_PRICE_USSD if self.turn.ussd else ASK_PRICE), final=False)

    def on_enter_summary(self, **_: Any) -> None:
        if not self.asking:
            return
        say, data = self.turn.say, self.turn.data
        message = SUMMARY_PURCHASE if self.kind == PURCHASE else SUMMARY_SALE
        text = say(
            message,
            goods=describe_goods(say, data),
            price=say.money(Decimal(data["price"])),
            party=data["party"],
        )
        self.turn.reply(text, choices=self.turn.yes_no(), final=False)

    # --- outcomes ----------------------------------------------------------------------------

    def complain(self, error: str | None = None, **_: Any) -> None:
        self.turn.reply(error or "", final=False)

    def ask_yes_no(self, **_: Any) -> None:
        self.turn.reply(self.turn.say(ANSWER_YES_NO), final=False)

    def drop(self, **_: Any) -> None:
        self.turn.reply(self.turn.say(CANCELLED))

    def submit(self, **_: Any) -> None:
        turn, data, say = self.turn, self.turn.data, self.turn.say
        goods = goods_of(data)
        if self.kind == PURCHASE:
            result = transactions.propose_purchase(
                turn.session, turn.inbound.phone, parse_document(data["party"]), goods, turn.now
            )
        else:
            result = transactions.propose_sale(
                turn.session,
                turn.inbound.phone,
                data["party"],
                goods,
                turn.now,
                codigo_unico=data.get("codigo_unico"),
            )
        if isinstance(result, Refusal):
            turn.reply(say(result.reason, **result.params))
            return
        turn.touch(result, Step.PROPOSED, data.get(BEGUN))
        if self.kind == PURCHASE:
            turn.reply(say(SENT_TO_SELLER, code=result.code))
            buyer = result.buyer
            turn.notify(
                result.seller,
                lambda other: other(
                    SELLER_ASKED,
                    buyer=buyer.name,
                    goods=describe_goods(other, data),
                    price=other.money(goods.price_pen),
                    code=result.code,
                ),
            )
        else:
            hours = int(transactions.DEFAULT_TTL.total_seconds() // 3600)
            turn.reply(say(SALE_DECLARED, code=result.code, hours=hours))


# --- parsing one answer ------------------------------------------------------------------------


def read_answer(turn: Turn, kind: str, state: str, text: str, ussd: bool) -> dict[str, Any]:
    """Parse the answer to the question of `state`; return the event's arguments.

    USSD answers are digits only: the last digit of a quantity is its tenths, prices are whole.
    """
    data, say = turn.data, turn.say
    try:
        if state == "party":
            data["party"] = _read_party(turn, kind, text)
        elif state == "right":
            data["codigo_unico"] = _read_right(turn, text)
        elif state == "material":
            data["material"] = parsing.parse_material(text).value
        elif state == "quantity":
            material = Material(data["material"])
            if ussd:
                quantity = Quantity(parsing.parse_ussd_decimal(text), material.default_unit)
            else:
                quantity = parsing.parse_quantity(text, material)
            data["quantity"], data["unit"] = str(quantity.value), quantity.unit.value
        elif state == "grade":
            material = Material(data["material"])
            if ussd and material.grade_kind is GradeKind.FINENESS_PERMILLE:
                grade = parsing.parse_ussd_fineness(text)
            else:
                grade = parsing.parse_grade(text, material)
            data["grade"] = str(grade) if grade is not None else None
        elif state == "price":
            price = (
                parsing.parse_ussd_decimal(text, decimals=0) if ussd else parsing.parse_price(text)
            )
            data["price"] = str(price)
            lot = _lot(data)
            data["fine"] = str(lot.fine_grams) if lot.fine_grams is not None else None
        elif state == "summary":
            return {"reply": yes_or_no(text)}
    except InvalidValue as exc:
        return {"error": say.error(exc)}
    except InvalidIdentifier as exc:
        return {"error": exc.render(say.gettext)}
    except _Refused as exc:
        return {"error": str(exc)}
    return {"error": None}


def _read_party(turn: Turn, kind: str, text: str) -> str:
    """The other party's document, checked now rather than after every other question."""
    if kind == PURCHASE:
        document = parse_document(text)
        checked = transactions.check_seller(turn.session, document, turn.now, turn.inbound.phone)
    else:
        document = parse_document(parse_ruc(text))
        checked = transactions.find_buyer(turn.session, document.number)
    if isinstance(checked, Refusal):
        raise _Refused(turn.say(checked.reason, **checked.params))
    return document.number


# --- the mining right ---------------------------------------------------------------------------


def ask_right(turn: Turn, ruc: str | None) -> None:
    """Ask which mining right the gold comes from; a seller's only VIGENTE right is option 1."""
    rights = vigente_rights(turn.session, ruc) if ruc else []
    if len(rights) != 1:
        turn.data.pop("default_right", None)
        turn.reply(turn.say(ASK_RIGHT), final=False)
        return
    [only] = rights
    turn.data["default_right"] = only.codigo_unico
    title = f"{only.codigo_unico} {' '.join(only.mining_right.split())[:RIGHT_NAME_SHOWN]}"
    turn.reply(turn.say(ASK_RIGHT_DEFAULT), choices=(Choice("1", title.strip()),), final=False)


def read_right(turn: Turn, text: str) -> dict[str, Any]:
    """Read the answer to `ask_right` into the data; return the event's arguments."""
    try:
        turn.data["codigo_unico"] = _read_right(turn, text)
    except InvalidIdentifier as exc:
        return {"error": exc.render(turn.say.gettext)}
    return {"error": None}


def _read_right(turn: Turn, text: str) -> str:
    default = turn.data.get("default_right")
    if default and text.strip() == "1":
        return default
    return normalise_codigo_unico(text)


def _own_ruc(turn: Turn) -> str | None:
    """The RUC under which the phone's registrant (a miner declaring a sale) is in REINFO."""
    me = turn.registrant
    return seller_ruc(Document(me.document_type, me.document_number)) if me else None


class _Refused(Exception):
    """The party named cannot trade; the message says why, in the user's language."""


def _lot(data: dict[str, Any]):
    material = Material(data["material"])
    quantity = Quantity(Decimal(data["quantity"]), Unit(data["unit"]))
    grade = Decimal(data["grade"]) if data.get("grade") else None
    return check_lot(material, quantity, grade, Decimal(data["price"]))


def yes_or_no(text: str) -> str:
    """Return "yes", "no" or "" for an answer to a SI/NO question (Quechua arí/manam too)."""
    command, _ = split_command(text)
    if command is Command.YES or text.strip() == "1":
        return "yes"
    if command is Command.NO or text.strip() == "2":
        return "no"
    return ""


def goods_data(transaction: Any) -> dict[str, Any]:
    """The conversation-data form of a stored transaction's goods (for `describe_goods`)."""
    return {
        "material": transaction.material,
        "quantity": str(transaction.quantity.normalize()),
        "unit": transaction.unit,
        "grade": str(transaction.grade.normalize()) if transaction.grade is not None else None,
        "fine": str(transaction.fine_gold_g.normalize())
        if transaction.fine_gold_g is not None
        else None,
    }


def goods_of(data: dict[str, Any]) -> Goods:
    """Build the registry's `Goods` from the conversation's data."""
    return Goods(
        material=data["material"],
        quantity=Decimal(data["quantity"]),
        unit=data["unit"],
        grade=Decimal(data["grade"]) if data.get("grade") else None,
        fine_gold_g=Decimal(data["fine"]) if data.get("fine") else None,
        price_pen=Decimal(data["price"]),
    )


def describe_goods(say: Any, data: dict[str, Any]) -> str:
    """Material, quantity, grade and fine gold, in the listener's language."""
    material = Material(data["material"])
    quantity = f"{say.number(Decimal(data['quantity']))} {data['unit']}"
    if data.get("fine") is None:
        return say(GOODS_PLAIN, material=say.material(material), quantity=quantity)
    # Fineness as "850/1000": the per-mil sign is not in the SMS alphabet (GSM-7).
    unit = "/1000" if material.grade_kind is GradeKind.FINENESS_PERMILLE else " g/t"
    grade = f"{say.number(Decimal(data['grade']))}{unit}"
    return say(
        GOODS_WITH_FINE,
        material=say.material(material),
        quantity=quantity,
        grade=grade,
        fine=say.number(Decimal(data["fine"])),
    )


def read_one_line(turn: Turn, kind: str, words: list[str]) -> str | None:
    """Fill the data from `<party> <material> <quantity><unit> <grade> <price>`; return an error."""
    say = turn.say
    if len(words) != 5 and not (kind == SALE and len(words) == 6):
        return _format_help(say, kind)
    steps = [("party", 0), ("material", 1), ("quantity", 2), ("grade", 3), ("price", 4)]
    if len(words) == 6:
        steps.append(("right", 5))
    for state, position in steps:
        text = words[position]
        if state == "grade" and Material(turn.data["material"]).grade_kind is GradeKind.NONE:
            if text != "-":
                return say(
                    BAD_TOKEN,
                    problem=say(N_("Mercury has no grade: write -")),
                    position=say.gettext(TOKEN_NAMES[position + 1]),
                )
            turn.data["grade"] = None
            continue
        parsed = read_answer(turn, kind, state, text, ussd=False)
        if parsed["error"] is not None:
            problem = parsed["error"]
            return (
                say(BAD_TOKEN, problem=problem, position=say.gettext(TOKEN_NAMES[position + 1]))
                + " "
                + _format_help(say, kind)
            )
    if kind == SALE and len(words) == 5:
        ruc = _own_ruc(turn)
        rights = vigente_rights(turn.session, ruc) if ruc else []
        if len(rights) == 1:  # no doubt where the gold comes from; else `jump` asks
            turn.data["codigo_unico"] = rights[0].codigo_unico
    return None


def _format_help(say: Any, kind: str) -> str:
    if kind == PURCHASE:
        return say(
            ONE_LINE_FORMAT,
            keyword="COMPRA",
            party=say.gettext(N_("DNI/RUC")),
            example="COMPRA 45678912 DORE 25.5G 850 5400",
        )
    return say(
        ONE_LINE_FORMAT,
        keyword="VENTA",
        party="RUC",
        example="VENTA 20131312955 DORE 25.5G 850 5400",
    )
