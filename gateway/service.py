"""The gateway as the channel modules use it: receive an inbound message, dispatch the replies."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from flows.messages import Inbound
from gateway.dispatch import Dispatcher
from gateway.inbound import Conversations, Guard, Received, receive
from gateway.ratelimit import Limiter
from ledger.log import Log
from ledger.witnesses import BackgroundSubmitter
from recpo.clock import Clock
from recpo.config import Settings
from recpo.db import Database

EXTENSION_KEY = "recpo.gateway"


@dataclass
class Gateway:
    """Everything a channel module needs after it has verified and parsed a request."""

    settings: Settings
    database: Database
    conversations: Conversations
    dispatcher: Dispatcher
    clock: Clock
    limiter: Limiter
    log: Log
    witnesses: BackgroundSubmitter

    def receive(self, inbound: Inbound, guard: Guard | None = None) -> Received:
        """Handle one inbound message and hand its replies to the dispatcher after commit."""
        received = receive(self.database, self.conversations, inbound, self.limiter, guard)
        # Group commit: whoever holds the sequencer's lock takes every queued entry.
        if received.ledger_appended and self.log.sequence(self.database):
            self.witnesses.kick()
        if received.outbox:
            self.dispatcher.dispatch(received.outbox)
        return received


def current_gateway() -> Gateway:
    """Return the app's gateway."""
    return current_app.extensions[EXTENSION_KEY]
