"""One turn of a conversation: the inbound message, the phone's conversation row, and the replies.

Flows read and write `turn.data` (the conversation's JSON data) and call `turn.reply` /
`turn.notify`; the engine saves the data and returns the replies to the gateway.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session
from statemachine import StateMachine

from flows.messages import Channel, Choice, Inbound, Reply, Step, Touched
from flows.models import Conversation
from flows.speech import Speaker
from flows.store import update
from recpo.i18n import N_
from registry.models import Registrant
from registry.transactions import has_active_phone

BEGUN = "begun"  # the conversation data's key for the message that began a conversation
YES = N_("Yes")
NO = N_("No")


class Ledger(Protocol):
    """What flows need from the ledger."""

    def append(self, session: Session, kind: str, body: dict) -> Any: ...

    def commit(self, label: str, value: str) -> str: ...


@dataclass
class Turn:
    """Everything a flow needs to answer one message."""

    session: Session
    inbound: Inbound
    conversation: Conversation
    say: Speaker
    ledger: Ledger
    registrant: Registrant | None
    replies: list[Reply] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    touched: list[Touched] = field(default_factory=list)

    @property
    def now(self) -> dt.datetime:
        """When the message arrived."""
        return self.inbound.received_at

    @property
    def ussd(self) -> bool:
        """Whether this is a USSD session (menus of digits, 160-character screens)."""
        return self.inbound.channel is Channel.USSD

    def reply(self, text: str, choices: tuple[Choice, ...] = (), final: bool = True) -> None:
        """Answer the sender on the channel it wrote on."""
        self.replies.append(
            Reply(self.inbound.phone, text, self.inbound.channel, choices, final=final)
        )

    def touch(self, transaction: Any, step: Step, begun: int | None = None) -> None:
        """Say that this message acted on `transaction` (its messages are linked to it).

        `begun`: the message that began the conversation leading here (`BEGUN` in its data).
        """
        self.touched.append(Touched(transaction.id, step, begun))

    def yes_no(self) -> tuple[Choice, ...]:
        """The yes/no options: buttons on WhatsApp, numbers on USSD, none on SMS (text says it)."""
        if self.inbound.channel is Channel.WHATSAPP:
            return (Choice("SI", self.say.gettext(YES)), Choice("NO", self.say.gettext(NO)))
        if self.ussd:
            return (Choice("1", self.say.gettext(YES)), Choice("2", self.say.gettext(NO)))
        return ()

    def notify(self, registrant: Registrant, build: Any) -> None:
        """Send another party a message, in their language, on the channel they last used.

        `build` receives that party's `Speaker` and returns the text.
        """
        phone = has_active_phone(self.session, registrant)
        if phone is None:
            return
        if phone == self.inbound.phone:
            self.reply(build(self.say))
            return
        other = self.session.get(Conversation, phone)
        channel = Channel.SMS
        if other is not None and other.channel is Channel.WHATSAPP:
            channel = Channel.WHATSAPP
        self.replies.append(Reply(phone, build(Speaker(registrant.language.value)), channel))

    def load(self) -> None:
        """Read the conversation's data."""
        self.data = json.loads(self.conversation.data or "{}")

    def save(self, flow: str | None, state: str | None) -> None:
        """Write the conversation's flow, state and data back."""
        data = json.dumps(self.data if flow else {}, sort_keys=True)
        update(self.conversation, flow=flow, state=state, data=data)


class FlowMachine(StateMachine):
    """A conversation's state machine, rebuilt from its stored state without asking again.

    python-statemachine enters the start state when a machine is built, which would repeat the
    state's question on every message; `asking` is False while the stored state is restored.
    """

    def __init__(self, turn: Turn, start_value: str | None = None) -> None:
        self.turn = turn
        self.asking = start_value is None
        super().__init__(start_value=start_value)
        self.asking = True
