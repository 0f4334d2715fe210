"""Provider senders: the one interface every channel's outbound API is wrapped in.

A sender takes an outbound message and returns the provider's message id, or raises
`RetryableSendError` (timeouts, 5xx, 429, throttling: try again later) or `PermanentSendError`
(invalid number, opted out: never retry). The console sender is the embedded default.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

import requests

from flows.messages import Channel, Choice
from recpo.config import Settings
from recpo.i18n import DEFAULT_LOCALE
from registry.identifiers import mask_phone

log = logging.getLogger(__name__)


class SendError(Exception):
    """A send that did not reach the provider, with a short reason (never a secret)."""


class RetryableSendError(SendError):
    """Try again later."""


class PermanentSendError(SendError):
    """Never try again."""


class WindowClosedError(PermanentSendError):
    """WhatsApp refused: the 24-hour customer-service window is closed (send it by SMS)."""


@dataclass(frozen=True)
class OutboundMessage:
    """What a sender needs: the message log id, where, what, and interactive options."""

    id: int
    channel: Channel
    phone: str
    text: str
    choices: tuple[Choice, ...] = ()
    segments: int = 1
    simulated: bool = False  # from the phone simulator: goes to the console, never a provider
    locale: str = DEFAULT_LOCALE  # for words a sender adds itself (WhatsApp's list button)


class Sender(Protocol):
    """Something that hands a message to a provider."""

    name: str

    def send(self, message: OutboundMessage) -> str:
        """Send `message`; return the provider's id for it."""
        ...


class ConsoleSender:
    """Logs outbound messages instead of sending them (the embedded default)."""

    name = "console"

    def send(self, message: OutboundMessage) -> str:
        """Log the message (phone masked; text at DEBUG only) and invent a provider id."""
        log.info(
            "console provider: %s message %s to %s (%d chars)",
            message.channel.value,
            message.id,
            mask_phone(message.phone),
            len(message.text),
        )
        log.debug("console provider: message %s text: %s", message.id, message.text)
        return f"console-{uuid.uuid4().hex}"


def build_senders(settings: Settings) -> dict[Channel, Sender]:
    """Choose each channel's sender from the settings: a provider when configured, else console.

    SMS goes through Twilio when its credentials are set. WhatsApp goes through the Cloud API
    when Meta's are set, else through Twilio's WhatsApp sender when that is configured. USSD
    replies travel inside the USSD response; a USSD outbox row (a notice to a USSD user) is
    sent as SMS.
    """
    from gateway.channels.twilio import TwilioSender
    from gateway.channels.whatsapp_cloud import MetaSender

    console = ConsoleSender()
    twilio = TwilioSender.from_settings(settings)
    meta = MetaSender.from_settings(settings)
    sms = twilio or console
    if meta is not None:
        whatsapp: Sender = meta
    elif twilio is not None and settings.twilio_whatsapp_from:
        whatsapp = twilio
    else:
        whatsapp = console
    return {Channel.SMS: sms, Channel.WHATSAPP: whatsapp, Channel.USSD: sms}


class RecordingSender:
    """Keeps what it was asked to send, failing on demand (tests and the simulator)."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self.failures: list[SendError] = []

    def send(self, message: OutboundMessage) -> str:
        """Record `message`, or raise the next queued failure."""
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return f"rec-{message.id}"


def read_environment_once(session: requests.Session, url: str) -> None:
    """Fix into `session` the proxy and CA settings the environment gives for `url`.

    requests reads them again for every request (the proxy variables, NO_PROXY matching, the CA
    bundle variables): a twentieth of a worker's Python per send. A sender calls one host, and a
    process's environment does not change under it, so they are read once, when it is built.
    """
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies = found["proxies"]
    session.verify = found["verify"]
    if found["cert"] is not None:
        session.cert = found["cert"]
    session.trust_env = False
