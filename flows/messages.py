"""What passes between the gateway and the conversations: an inbound message and the replies.

The gateway parses each provider's request into an `Inbound`; flows answer with `Reply` objects,
already rendered in the recipient's language. Neither side knows the other's details.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Reply:
    """A message to send: to the sender now, or to another party."""

    phone: str
    text: str
    channel: Channel
    choices: tuple[Choice, ...] = ()
    final: bool = True  # USSD: END (True) or CON (False)
