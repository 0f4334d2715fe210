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

The seller of a COMPRA first declares the mining right the gold comes from (`trade.ask_right`):

    > SI 482913
    < Derecho minero de donde sale el oro: responda 1 para el suyo o escriba otro codigo unico.
      1 010149108 Rinconada Uno
    > 1
    < Confirmado. Recibo 1234 5678 9012 3456.

or at once: ``SI 482913 01-01491-08``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session
from statemachine import State

from flows.messages import Channel, Reply, Step
from flows.speech import Speaker
from flows.trade import ANSWER_YES_NO, ask_right, describe_goods, goods_data
from flows.turn import BEGUN, FlowMachine, Turn
from ledger.receipts import format_code
from recpo.i18n import N_
from registry import transactions
from registry.identifiers import InvalidIdentifier, normalise_codigo_unico
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
    """SI/NO [code]: confirm or reject what waits for this phone.

    ``SI <code> <código único>`` also names the mining right, for a seller who knows it.
    """
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
    decide(turn, found, yes, " ".join(words[1:]))


def decide(
    turn: Turn, transaction: Transaction, yes: bool, right: str = "", begun: int | None = None
) -> None:
    """Confirm (ledger, receipt to both) or reject (dispute, both told) the transaction.

    The seller of a purchase is asked for the mining right first: the conversation moves to the
    claim flow's `right` question, and confirmation follows the answer. `begun`: the message that
    began the conversation leading to this answer (a CODIGO, or the SI before the right), if any.
    """
    if yes and transactions.needs_right(transaction):
        try:
            code = normalise_codigo_unico(right) if right else None
        except InvalidIdentifier as exc:
            turn.reply(exc.render(turn.say.gettext), final=False)
            code = None
        if code is None:
            turn.data = {"code": transaction.code, BEGUN: begun or turn.inbound.message_id}
            ask_right(turn, transaction.seller_ruc)
            turn.save("claim", "right")
            return
        transactions.declare_right(turn.session, transaction, code, turn.now)
    turn.touch(transaction, Step.CONFIRMED if yes else Step.DISPUTED, begun)
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
    """CODIGO <code>: the party who must answer sees the summary, then answers SI or NO.

    A seller confirming a purchase then names the mining right (`right`) before it is confirmed.
    """

    summary = State(initial=True)
    right = State()
    done = State(final=True)

    answer = (
        summary.to(right, cond=["said_yes", "needs_right"])
        | summary.to(done, cond="decided", on="settle")
        | summary.to.itself(on="ask_again")
        | right.to(done, cond="valid", on="settle_with_right")
        | right.to.itself(on="complain")
    )

    def decided(self, reply: str = "", **_: object) -> bool:
        return reply in {"yes", "no"}

    def said_yes(self, reply: str = "", **_: object) -> bool:
        return reply == "yes"

    def valid(self, error: str | None = None, **_: object) -> bool:
        return error is None

    def needs_right(self, **_: object) -> bool:
        found = self._find()
        return not isinstance(found, Refusal) and transactions.needs_right(found)

    def on_enter_right(self, **_: object) -> None:
        if not self.asking:
            return
        found = self._find()
        ask_right(self.turn, None if isinstance(found, Refusal) else found.seller_ruc)

    def settle_with_right(self, **_: object) -> None:
        found = self._find()
        if isinstance(found, Refusal):
            self.turn.reply(self.turn.say(found.reason, **found.params))
            return
        if found.codigo_unico is None:
            code = self.turn.data["codigo_unico"]
            transactions.declare_right(self.turn.session, found, code, self.turn.now)
        decide(self.turn, found, True, begun=self.turn.data.get(BEGUN))

    def complain(self, error: str | None = None, **_: object) -> None:
        self.turn.reply(error or "", final=False)

    def _find(self) -> Transaction | Refusal:
        return transactions.find_open(
            self.turn.session, self.turn.data["code"], self.turn.inbound.phone, self.turn.now
        )

    def settle(self, reply: str = "", **_: object) -> None:
        found = self._find()
        if isinstance(found, Refusal):
            self.turn.reply(self.turn.say(found.reason, **found.params))
            return
        decide(self.turn, found, reply == "yes", begun=self.turn.data.get(BEGUN))

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
    turn.touch(found, Step.CLAIMED)
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


def expire(session: Session, now: dt.datetime) -> list[tuple[int, Reply]]:
    """Expire unanswered transactions; return a notice for each party, in their language, with
    the id of the transaction it is about."""
    notices = []
    for transaction in transactions.expire_due(session, now):
        for party in (transaction.buyer, transaction.seller):
            phone = transactions.has_active_phone(session, party)
            if phone is None:
                continue
            say = Speaker(party.language.value)
            notice = Reply(phone, say(EXPIRED_NOTICE, code=transaction.code), Channel.SMS)
            notices.append((transaction.id, notice))
    return notices
