"""What passes between the gateway and the conversations: an inbound message and the replies.

The gateway parses each provider's request into an `Inbound`; flows answer with an `Answer`: the
`Reply` objects, already rendered in the recipient's language, and the transactions the message
proposed, claimed, confirmed or rejected (`Touched`), which the gateway links to the messages of
the conversation. Neither side knows the other's details.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


class Channel(enum.StrEnum):
    """How a phone reaches the registry."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    USSD = "ussd"


@dataclass(frozen=True)
class Choice:
    """One option of a reply a phone can pick (WhatsApp buttons and list rows).

    Where a channel has no buttons the options are listed as `<id> <title>` lines, so the id is
    what the phone types back: keep it short, a number for menus.
    """

    id: str
    title: str


@dataclass(frozen=True)
class Inbound:
    """One message from a phone, as the conversations see it."""

    channel: Channel
    phone: str  # E.164
    text: str  # normalised: NFC, ASCII apostrophes, single spaces, stripped
    provider_id: str
    received_at: dt.datetime
    session_id: str | None = None  # USSD session
    choice_id: str | None = None  # the id of an interactive reply (WhatsApp)
    simulated: bool = False
    message_id: int | None = None  # its id in the message log, once the gateway logged it


@dataclass(frozen=True)
class Reply:
    """A message to send: to the sender now, or to another party."""

    phone: str
    text: str
    channel: Channel
    choices: tuple[Choice, ...] = ()
    final: bool = True  # USSD: END (True) or CON (False)


class Step(enum.StrEnum):
    """What one turn of a conversation did to a transaction."""

    PROPOSED = "proposed"  # COMPRA or VENTA submitted
    CLAIMED = "claimed"  # CODIGO: the buyer took up a declared sale
    CONFIRMED = "confirmed"  # SI from the party who had to answer
    DISPUTED = "disputed"  # NO from that party
    EXPIRED = "expired"  # nobody answered in time: the notices telling both parties


@dataclass(frozen=True)
class Touched:
    """A transaction one inbound message acted on.

    The message and its replies belong to the transaction; so do the phone's earlier messages
    (and their replies) from `first_message_id` on, the message (its `Inbound.message_id`) that
    began the conversation that led to this one.
    """

    transaction_id: int
    step: Step
    first_message_id: int | None = None


@dataclass
class Answer:
    """What the conversations make of one inbound message."""

    replies: list[Reply] = field(default_factory=list)
    touched: list[Touched] = field(default_factory=list)
