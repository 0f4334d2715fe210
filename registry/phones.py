"""What the registry knows about a phone number."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from registry.models import Language, PhoneLink, PhoneLinkState, Registrant

_ACTIVE_REGISTRANT = (
    sa.select(Registrant)
    .join(PhoneLink, PhoneLink.registrant_id == Registrant.id)
    .where(PhoneLink.phone == sa.bindparam("phone"), PhoneLink.state == PhoneLinkState.ACTIVE)
)


def active_registrant(session: Session, phone: str) -> Registrant | None:
    """Return the registrant this phone is actively linked to, if any."""
    return session.scalars(_ACTIVE_REGISTRANT, {"phone": phone}).one_or_none()


def language_for(session: Session, phone: str) -> Language:
    """Return the language to speak to this phone in (Spanish when unknown)."""
    registrant = active_registrant(session, phone)
    return registrant.language if registrant else Language.SPANISH
