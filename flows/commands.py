"""Short exchanges: VERIFICAR, ALTA, IDIOMA, AYUDA, SALIR.

> VERIFICAR 1234 5678 9012 3456
< Recibo 1234 5678 9012 3456: dore 25.5 g, 30/11/2026, ANANEA (PUNO), confirmado,
  registro 41 del libro.
> VERIFICAR 1234 5678 9012 3465
< 1234 5678 9012 3465 parece mal escrito: revise los digitos.
> ALTA 45678912
< Pedido recibido. La DGFM revisara su alta.
> IDIOMA                               > RUNASIMI
< Idioma? 1 Castellano 2 Runasimi      < (from now on, in Quechua)
> 2
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from statemachine import State

from flows.messages import Channel, Choice, Reply
from flows.speech import Speaker
from flows.turn import FlowMachine, Turn
from ledger import log as ledger_log
from ledger.models import Entry
from ledger.receipts import CodeStatus, check_code, format_code
from recpo.i18n import N_
from registry.identifiers import InvalidIdentifier, parse_document
from registry.models import Language, PhoneLink, PhoneLinkState, Registrant

HELP = N_(
    "RECPO: COMPRA to register a purchase, VENTA to declare a sale, SI/NO to answer, "
    "CODIGO <code> to claim a sale, VERIFICAR <receipt>, IDIOMA, SALIR."
)
UNKNOWN = N_("Not understood. Send COMPRA, VENTA, VERIFICAR <receipt> or AYUDA for help.")
ENDED = N_("Ended. Nothing pending was recorded.")
RECEIPT_MALFORMED = N_("A receipt has 16 digits, e.g. VERIFICAR 1234 5678 9012 3456.")
RECEIPT_TYPO = N_("%(code)s looks mistyped: check the digits.")
RECEIPT_UNKNOWN = N_("There is no receipt %(code)s.")
RECEIPT_PENDING = N_("Receipt %(code)s: %(goods)s, recorded; being added to the ledger.")
RECEIPT_FOUND = N_(
    "Receipt %(code)s: %(goods)s, %(date)s, %(region)s, confirmed, ledger entry %(index)s."
)
TOO_MANY_LOOKUPS = N_("Too many checks from this phone. Try again in an hour.")
ALTA_FORMAT = N_("Send ALTA and your DNI or RUC, e.g. ALTA 45678912.")
ALTA_ALREADY = N_("This phone is already registered.")
ALTA_PENDING = N_("Your request is already waiting for DGFM.")
ALTA_UNKNOWN = N_("%(document)s is not registered. Ask DGFM to register you first.")
ALTA_RECEIVED = N_("Request received. DGFM will review it and confirm by message.")
ALTA_APPROVED = N_("RECPO: this phone is now registered for %(name)s. Send AYUDA for help.")
ASK_LANGUAGE = N_("Language?")
LANGUAGE_SET = N_("Language saved.")
LANGUAGE_NAMES = {Language.SPANISH: "Castellano", Language.QUECHUA: "Runasimi"}

LOOKUP_WINDOW = dt.timedelta(hours=1)
LOOKUPS_PER_WINDOW = 10


def show_help(turn: Turn) -> None:
    """AYUDA."""
    turn.reply(turn.say(HELP))


def verify(turn: Turn, text: str) -> None:
    """VERIFICAR <receipt>: anyone, registered or not; a few checks an hour per phone."""
    say = turn.say
    conversation = turn.conversation
    since = conversation.lookups_since
    if since is None or turn.now - since >= LOOKUP_WINDOW:
        conversation.lookups, conversation.lookups_since = 0, turn.now
    if conversation.lookups >= LOOKUPS_PER_WINDOW:
        turn.reply(say(TOO_MANY_LOOKUPS))
        return
    conversation.lookups += 1
    checked = check_code(text)
    if checked.status is CodeStatus.MALFORMED:
        turn.reply(say(RECEIPT_MALFORMED))
        return
    shown = format_code(checked.code)
    if checked.status is CodeStatus.TYPO:
        turn.reply(say(RECEIPT_TYPO, code=shown))
        return
    found = ledger_log.find_receipt(turn.session, checked.code)
    if found is None:
        turn.reply(say(RECEIPT_UNKNOWN, code=shown))
        return
    if not isinstance(found, Entry):
        body = json.loads(found.body)
        turn.reply(say(RECEIPT_PENDING, code=shown, goods=_goods(turn, body)))
        return
    body = json.loads(found.entry)["body"]
    place = body.get("district") or "-"
    if body.get("department"):
        place = f"{place} ({body['department']})"
    date = dt.datetime.fromisoformat(body.get("confirmed_at") or found.sequenced_at.isoformat())
    turn.reply(
        say(
            RECEIPT_FOUND,
            code=shown,
            goods=_goods(turn, body),
            date=say.date(date),
            region=place,
            index=found.idx,
        )
    )


def _goods(turn: Turn, body: dict) -> str:
    say = turn.say
    quantity = f"{say.number(Decimal(body['quantity']))} {body['unit']}"
    return f"{say.material(body['material'])} {quantity}"


def register(turn: Turn, words: list[str]) -> None:
    """ALTA <DNI|RUC>: ask to link this phone; a DGFM analyst approves it in the console."""
    say = turn.say
    if not words:
        turn.reply(say(ALTA_FORMAT))
        return
    try:
        document = parse_document(" ".join(words))
    except InvalidIdentifier as exc:
        turn.reply(exc.render(say.gettext) + " " + say(ALTA_FORMAT))
        return
    if turn.registrant is not None:  # the phone's registrant in good standing, found for this turn
        turn.reply(say(ALTA_ALREADY))
        return
    registrant = (
        turn.session.query(Registrant)
        .filter_by(document_type=document.type, document_number=document.number)
        .one_or_none()
    )
    if registrant is None:
        turn.reply(say(ALTA_UNKNOWN, document=document.display))
        return
    pending = (
        turn.session.query(PhoneLink)
        .filter_by(
            registrant_id=registrant.id, phone=turn.inbound.phone, state=PhoneLinkState.PENDING
        )
        .first()
    )
    if pending is not None:
        turn.reply(say(ALTA_PENDING))
        return
    turn.session.add(
        PhoneLink(
            registrant_id=registrant.id,
            phone=turn.inbound.phone,
            state=PhoneLinkState.PENDING,
            requested_at=turn.now,
        )
    )
    turn.reply(say(ALTA_RECEIVED))


def approval_notice(registrant: Registrant, phone: str) -> Reply:
    """The message telling a phone that DGFM approved its ALTA request, in its language."""
    say = Speaker(registrant.language.value)
    return Reply(phone, say(ALTA_APPROVED, name=registrant.name), Channel.SMS)


def set_language(turn: Turn, language: Language) -> None:
    """Remember the phone's language: on its registrant, or on the conversation."""
    if turn.registrant is not None:
        turn.registrant.language = language
    turn.conversation.language = language.value
    turn.say = type(turn.say)(language.value)
    turn.reply(turn.say(LANGUAGE_SET))


class LanguageFlow(FlowMachine):
    """IDIOMA: a numbered choice of language."""

    choose = State(initial=True)
    done = State(final=True)

    answer = choose.to(done, cond="valid", on="apply") | choose.to.itself(on="ask_again")

    def on_enter_choose(self, **_: object) -> None:
        if self.asking:
            self.ask()

    def ask(self) -> None:
        choices = tuple(
            Choice(str(n), name) for n, name in enumerate(LANGUAGE_NAMES.values(), start=1)
        )
        self.turn.reply(self.turn.say(ASK_LANGUAGE), choices=choices, final=False)

    def valid(self, text: str = "", **_: object) -> bool:
        return text.strip() in {"1", "2"}

    def apply(self, text: str = "", **_: object) -> None:
        set_language(turn=self.turn, language=list(LANGUAGE_NAMES)[int(text.strip()) - 1])

    def ask_again(self, **_: object) -> None:
        self.ask()
