"""Opting out of messages (BAJA, PARA, STOP) and back in (ALTA, START).

This is messaging hygiene, handled at the edge before any conversation: an opted-out phone gets
one confirmation and then nothing more until it opts back in. `ALTA <document>` both opts back
in and still reaches the conversations, where it asks to link the phone to a registrant.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flows.messages import Inbound, Reply
from flows.store import locale_for
from gateway.models import OptOut
from recpo.i18n import N_, translate

STOP_WORDS = frozenset({"BAJA", "PARA", "STOP"})
START_WORDS = frozenset({"ALTA", "START"})

OPTED_OUT = N_("RECPO: you will not receive more messages. To receive them again send ALTA.")
OPTED_IN = N_("RECPO: you will receive messages again. Send AYUDA for help.")
STILL_OPTED_OUT = N_("RECPO: this phone asked not to receive messages. Send ALTA to resume.")


def first_word(text: str) -> str:
    """Return the first word, upper case, without accents ("alta" and "Álta" are "ALTA")."""
    word = text.split(" ", 1)[0] if text else ""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def is_opted_out(session: Session, phone: str) -> bool:
    """Return whether `phone` asked not to receive messages."""
    return session.get(OptOut, phone) is not None


def handle(session: Session, inbound: Inbound) -> tuple[list[Reply], bool]:
    """Apply opt-out keywords; return the replies and whether the conversations should run."""
    word = first_word(inbound.text)
    opted_out = is_opted_out(session, inbound.phone)
    locale = locale_for(session, inbound.phone)
    if word in STOP_WORDS and inbound.text.strip().upper() == word:
        if not opted_out:
            session.add(
                OptOut(
                    phone=inbound.phone, channel=inbound.channel, opted_out_at=inbound.received_at
                )
            )
        return [Reply(inbound.phone, translate(locale, OPTED_OUT), inbound.channel)], False
    if not opted_out:
        return [], True
    if word in START_WORDS:
        session.execute(sa.delete(OptOut).where(OptOut.phone == inbound.phone))
        has_more = len(inbound.text.split()) > 1
        if has_more:
            return [], True  # ALTA <document>: the conversations take it from here
        return [Reply(inbound.phone, translate(locale, OPTED_IN), inbound.channel)], False
    return [Reply(inbound.phone, translate(locale, STILL_OPTED_OUT), inbound.channel)], False
