"""The entry point of the conversations: one inbound message in, replies out.

The conversations of DESIGN.md §4 (purchase, sale, confirmation, verification, language) are built
on this entry point; until they are, every message gets the help text, and USSD the root menu.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from flows.messages import Channel, Inbound, Reply
from flows.store import lock_conversation
from recpo.i18n import DEFAULT_LOCALE, N_, translate

HELP = N_(
    "RECPO: send COMPRA to register a purchase, VENTA to declare a sale, "
    "VERIFICAR <receipt> to check a receipt, IDIOMA to change language."
)
USSD_MENU = N_(
    "RECPO\n1 Register purchase\n2 Declare sale\n3 Confirm by code\n4 Verify receipt\n"
    "5 Language\n6 Help"
)


class Conversations:
    """Answers inbound messages; holds no state between calls (the database does)."""

    def handle(self, session: Session, inbound: Inbound) -> list[Reply]:
        """Handle one inbound message inside the caller's transaction; return the replies."""
        conversation = lock_conversation(
            session, inbound.phone, inbound.channel, inbound.received_at
        )
        conversation.channel = inbound.channel
        conversation.updated_at = inbound.received_at
        locale = DEFAULT_LOCALE
        if inbound.channel is Channel.USSD and not inbound.text:
            return [
                Reply(inbound.phone, translate(locale, USSD_MENU), inbound.channel, final=False)
            ]
        return [Reply(inbound.phone, translate(locale, HELP), inbound.channel)]
