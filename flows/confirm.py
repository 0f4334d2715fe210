"""Answering a transaction: SI/NO [code] from the party who must confirm, and CODIGO <code>.

    (seller, after a COMPRA)                (buyer, after a VENTA)
    < Planta Oro Sur registro que le        > CODIGO 482913
      compra: dore 25.5 g, … Responda       < Venta de Juana Quispe: dore 25.5 g, …
      SI 482913 o NO 482913.                  Responda SI para confirmar o NO.
    > SI                                    > ARI
    < Confirmado. Recibo 1234 5678 9012     < Confirmado. Recibo 1234 5678 9012
      3456.                                   3456.

A plain SI is enough when exactly one transaction waits for this phone. NO opens a dispute that
DGFM sees in the console. Confirmation writes the record into the ledger in the same database
transaction, and both parties get the same receipt code.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session
from statemachine import State

from flows.messages import Channel, Reply
from flows.speech import Speaker
from flows.trade import ANSWER_YES_NO, describe_goods, goods_data
from flows.turn import FlowMachine, Turn
from ledger.receipts import format_code
from recpo.i18n import N_
from registry import transactions
from registry.models import Transaction
from registry.transactions import Refusal

NOTHING_WAITING = N_("No transaction is waiting for your confirmation.")
SEVERAL_WAITING = N_("Several transactions wait: reply SI <code> or NO <code>. Codes: %(codes)s")
CODE_FORMAT = N_("A transaction code has 6 digits, e.g. CODIGO 482913.")
CLAIM_SUMMARY = N_("Sale by %(seller)s: %(goods)s, %(price)s. Reply SI to confirm or NO to reject.")
CONFIRMED = N_("Confirmed. Receipt %(receipt)s. Anyone can check it: VERIFICAR %(receipt)s")
REJECTED_BY_YOU = N_("Rejected. Transaction %(code)s goes to DGFM for review.")
REJECTED_BY_OTHER = N_("%(name)s rejected transaction %(code)s. DGFM will review it.")


def answer(turn: Turn, yes: bool, words: list[str]) -> None:
    """SI/NO [code]: confirm or reject what waits for this phone."""
    if words:
        code = words[0]
        if not (code.isascii() and code.isdigit() and len(code) == 6):
            turn.reply(turn.say(CODE_FORMAT))
            return
        found = transactions.find_open(turn.session, code, turn.inbound.phone, turn.now)
    else:
        waiting = transactions.awaiting(turn.session, turn.inbound.phone, turn.now)
        if not waiting:
            turn.reply(turn.say(NOTHING_WAITING))
            return
        if len(waiting) > 1:
            codes = ", ".join(t.code for t in waiting)
            turn.reply(turn.say(SEVERAL_WAITING, codes=codes))
            return
        found = waiting[0]
    if isinstance(found, Refusal):
        turn.reply(turn.say(found.reason, **found.params))
        return
    decide(turn, found, yes)


def decide(turn: Turn, transaction: Transaction, yes: bool) -> None:
    """Confirm (ledger, receipt to both) or reject (dispute, both told) the transaction."""
    if yes:
        receipt = format_code(
            transactions.confirm(turn.session, transaction, turn.ledger, turn.now)
        )
        for party in (transaction.buyer, transaction.seller):
            turn.notify(party, lambda say: say(CONFIRMED, receipt=receipt))
        return
    transactions.dispute(turn.session, transaction, turn.inbound.phone, turn.now)
    turn.reply(turn.say(REJECTED_BY_YOU, code=transaction.code))
    me = turn.registrant
    other = (
        transaction.seller
        if me is not None and me.id == transaction.buyer_id
        else transaction.buyer
    )
    name = me.name if me is not None else turn.inbound.phone
    turn.notify(other, lambda say: say(REJECTED_BY_OTHER, name=name, code=transaction.code))


class ClaimFlow(FlowMachine):
    """CODIGO <code>: the buyer sees a declared sale's summary, then answers SI or NO."""

    summary = State(initial=True)
    done = State(final=True)

    answer = summary.to(done, cond="decided", on="settle") | summary.to.itself(on="ask_again")

    def decided(self, reply: str = "", **_: object) -> bool:
        return reply in {"yes", "no"}

    def settle(self, reply: str = "", **_: object) -> None:
        found = transactions.find_open(
            self.turn.session, self.turn.data["code"], self.turn.inbound.phone, self.turn.now
        )
        if isinstance(found, Refusal):
            self.turn.reply(self.turn.say(found.reason, **found.params))
            return
        decide(self.turn, found, reply == "yes")

    def ask_again(self, **_: object) -> None:
        self.turn.reply(self.turn.say(ANSWER_YES_NO), final=False)


def claim(turn: Turn, code: str) -> Transaction | None:
    """CODIGO <code>: show the transaction waiting for this phone's answer; return it if any."""
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        turn.reply(turn.say(CODE_FORMAT))
        return None
    found = transactions.find_open(turn.session, code, turn.inbound.phone, turn.now)
    if isinstance(found, Refusal):
        turn.reply(turn.say(found.reason, **found.params))
        return None
    say = turn.say
    turn.reply(
        say(
            CLAIM_SUMMARY,
            seller=found.seller.name,
            buyer=found.buyer.name,
            goods=describe_goods(say, goods_data(found)),
            price=say.money(found.price_pen),
        ),
        choices=turn.yes_no(),
        final=False,
    )
    return found


EXPIRED_NOTICE = N_("Transaction %(code)s expired without an answer. Nothing was recorded.")


def expire(session: Session, now: dt.datetime) -> list[Reply]:
    """Expire unanswered transactions; return a notice for each party, in their language."""
    notices = []
    for transaction in transactions.expire_due(session, now):
        for party in (transaction.buyer, transaction.seller):
            phone = transactions.has_active_phone(session, party)
            if phone is None:
                continue
            say = Speaker(party.language.value)
            notices.append(Reply(phone, say(EXPIRED_NOTICE, code=transaction.code), Channel.SMS))
    return notices
