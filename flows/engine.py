"""The entry point of the conversations: one inbound message in, replies out.

Text channels (SMS, WhatsApp) follow the grammar of DESIGN.md §4: a keyword always starts over
cleanly; anything else answers the question the conversation is on, or gets a short help. USSD
is a numbered menu with the same functions (root: 1 purchase, 2 sale, 3 confirm by code,
4 verify a receipt, 5 language, 6 help); a new session from a phone with a question pending asks
that question again, so a dropped session can be resumed.

    USSD *500#
    < RECPO                     > 1                    > 3
      1 Registrar compra        < DNI o RUC del        < Codigo de la
      2 Declarar venta            vendedor?              transaccion (6 digitos):
      3 Confirmar con codigo
      4 Verificar recibo
      5 Idioma
      6 Ayuda
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from flows import commands, confirm, trade
from flows.keywords import Command, split_command
from flows.messages import Answer, Channel, Choice, Inbound, Reply
from flows.speech import Speaker
from flows.store import lock_conversation, speaks, update
from flows.turn import BEGUN, Ledger, Turn
from recpo.i18n import N_
from registry import transactions
from registry.models import Language
from registry.phones import active_registrant

IDLE = dt.timedelta(minutes=30)

USSD_TITLE = N_("RECPO")
USSD_OPTIONS = (
    N_("Register purchase"),
    N_("Declare sale"),
    N_("Confirm with code"),
    N_("Verify receipt"),
    N_("Language"),
    N_("Help"),
)
USSD_ASK_CODE = N_("Transaction code (6 digits):")
USSD_ASK_RECEIPT = N_("Receipt number (16 digits):")
USSD_BAD_OPTION = N_("Choose 1 to 6.")


class Conversations:
    """Answers inbound messages; holds no state between calls (the database does)."""

    def __init__(self, ledger: Ledger | None = None, idle: dt.timedelta = IDLE) -> None:
        self.ledger = ledger
        self.idle = idle

    def handle(self, session: Session, inbound: Inbound) -> Answer:
        """Handle one inbound message inside the caller's transaction.

        Return the replies, and the transactions the message acted on.
        """
        conversation = lock_conversation(
            session, inbound.phone, inbound.channel, inbound.received_at
        )
        registrant = active_registrant(session, inbound.phone)
        locale = speaks(registrant, conversation.language)
        turn = Turn(
            session=session,
            inbound=inbound,
            conversation=conversation,
            say=Speaker(locale),
            ledger=self.ledger,
            registrant=registrant,
        )
        turn.load()
        if conversation.expires_at is not None and conversation.expires_at <= inbound.received_at:
            turn.save(None, None)  # abandoned long ago: start afresh
        if inbound.channel is Channel.USSD:
            self._ussd(turn)
        else:
            self._text(turn)
        # The lock's upsert wrote the channel and the time already.
        expires_at = inbound.received_at + self.idle if conversation.flow else None
        update(conversation, expires_at=expires_at)
        return Answer(turn.replies, turn.touched)

    # --- SMS and WhatsApp ------------------------------------------------------------------------

    def _text(self, turn: Turn) -> None:
        text = turn.inbound.choice_id or turn.inbound.text
        command, words = split_command(text)
        flow = turn.conversation.flow
        awaits_answer = flow is not None and (
            command is None or (command in {Command.YES, Command.NO} and not words)
        )
        if awaits_answer:
            self._continue(turn, text)
        elif command in {Command.PURCHASE, Command.SALE}:
            kind = trade.PURCHASE if command is Command.PURCHASE else trade.SALE
            self._start_trade(turn, kind, words)
        elif command is Command.CODE:
            self._start_claim(turn, words[0] if words else "")
        elif command in {Command.YES, Command.NO}:
            turn.save(None, None)
            confirm.answer(turn, command is Command.YES, words)
        elif command is Command.VERIFY:
            commands.verify(turn, " ".join(words))
        elif command is Command.HELP:
            commands.show_help(turn)
        elif command is Command.LANGUAGE:
            self._start(turn, "language", commands.LanguageFlow(turn))
        elif command in {Command.QUECHUA, Command.SPANISH}:
            turn.save(None, None)
            language = Language.QUECHUA if command is Command.QUECHUA else Language.SPANISH
            commands.set_language(turn, language)
        elif command is Command.REGISTER:
            commands.register(turn, words)
        elif command is Command.EXIT:
            turn.save(None, None)
            turn.reply(turn.say(commands.ENDED))
        else:
            turn.reply(turn.say(commands.UNKNOWN))

    # --- USSD -----------------------------------------------------------------------------------

    def _ussd(self, turn: Turn) -> None:
        conversation, inbound = turn.conversation, turn.inbound
        new_session = conversation.session_id != inbound.session_id
        conversation.session_id = inbound.session_id
        if new_session and not inbound.text:
            resumable = conversation.flow in {"purchase", "sale", "language"}
            if resumable or (conversation.flow, conversation.state) == ("claim", "right"):
                self._machine(turn).resume()  # a dropped session: ask the same question again
                return
            self._menu(turn)
            return
        flow = conversation.flow
        text = inbound.text
        if flow == "menu":
            self._menu_choice(turn, text.strip())
        elif flow == "ussd_code":
            turn.save(None, None)
            self._start_claim(turn, text.strip())
        elif flow == "ussd_verify":
            turn.save(None, None)
            commands.verify(turn, text)
        elif flow is not None:
            self._continue(turn, text)
        elif text:
            self._menu_choice(turn, text.strip())  # the session's opening screen was missed
        else:
            self._menu(turn)

    def _menu(self, turn: Turn) -> None:
        say = turn.say
        choices = tuple(Choice(str(n), say(o)) for n, o in enumerate(USSD_OPTIONS, start=1))
        turn.data = {}
        turn.save("menu", "root")
        turn.reply(say(USSD_TITLE), choices=choices, final=False)

    def _menu_choice(self, turn: Turn, choice: str) -> None:
        turn.save(None, None)
        if choice == "1":
            self._start_trade(turn, trade.PURCHASE, [])
        elif choice == "2":
            self._start_trade(turn, trade.SALE, [])
        elif choice == "3":
            turn.save("ussd_code", "code")
            turn.reply(turn.say(USSD_ASK_CODE), final=False)
        elif choice == "4":
            turn.save("ussd_verify", "receipt")
            turn.reply(turn.say(USSD_ASK_RECEIPT), final=False)
        elif choice == "5":
            self._start(turn, "language", commands.LanguageFlow(turn))
        elif choice == "6":
            commands.show_help(turn)
        else:
            self._menu(turn)
            turn.replies[-1] = Reply(
                turn.inbound.phone,
                turn.say(USSD_BAD_OPTION) + "\n" + turn.replies[-1].text,
                Channel.USSD,
                turn.replies[-1].choices,
                final=False,
            )

    # --- flows ----------------------------------------------------------------------------------

    def _start_trade(self, turn: Turn, kind: str, words: list[str]) -> None:
        refusal = transactions.may_declare(turn.registrant, kind == trade.SALE)
        if refusal is not None:
            turn.save(None, None)
            turn.reply(turn.say(refusal.reason, **refusal.params))
            return
        turn.data = {"kind": kind, BEGUN: turn.inbound.message_id}
        machine = trade.TradeFlow(turn, kind)
        if words:
            error = trade.read_one_line(turn, kind, words)
            if error is not None:
                turn.replies.clear()
                turn.save(None, None)
                turn.reply(error)
                return
            turn.replies.clear()
            machine.send("jump")
        self._save(turn, kind, machine)

    def _start_claim(self, turn: Turn, code: str) -> None:
        found = confirm.claim(turn, code)
        if found is None:
            turn.save(None, None)
            return
        turn.data = {"code": found.code, BEGUN: turn.inbound.message_id}
        turn.save("claim", "summary")

    def _start(self, turn: Turn, flow: str, machine: Any) -> None:
        turn.data = {}
        self._save(turn, flow, machine)

    def _machine(self, turn: Turn) -> Any:
        flow, state = turn.conversation.flow, turn.conversation.state
        if flow in {"purchase", "sale"}:
            return _Resumable(trade.TradeFlow(turn, flow, start_value=state), turn)
        if flow == "claim":
            return _Resumable(confirm.ClaimFlow(turn, start_value=state), turn)
        return _Resumable(commands.LanguageFlow(turn, start_value=state), turn)

    def _continue(self, turn: Turn, text: str) -> None:
        flow = turn.conversation.flow
        if flow == "menu":
            self._menu_choice(turn, text.strip())
            return
        machine = self._machine(turn).machine
        state = machine.current_state_value
        if flow in {"purchase", "sale"}:
            event = trade.read_answer(turn, flow, state, text, ussd=turn.ussd)
        elif flow == "claim" and state == "right":
            event = trade.read_right(turn, text)
        elif flow == "claim":
            event = {"reply": trade.yes_or_no(text)}
        else:
            event = {"text": text}
        machine.send("answer", **event)
        self._save(turn, flow, machine)

    def _save(self, turn: Turn, flow: str, machine: Any) -> None:
        if machine.is_terminated:
            turn.save(None, None)
        else:
            turn.save(flow, machine.current_state_value)


class _Resumable:
    """A flow machine rebuilt from the stored state, able to ask its current question again."""

    def __init__(self, machine: Any, turn: Turn) -> None:
        self.machine = machine
        self.turn = turn

    def resume(self) -> None:
        prompt = getattr(self.machine, f"on_enter_{self.machine.current_state_value}", None)
        if prompt is not None:
            prompt()
        else:
            self.turn.save(None, None)
