"""What the registry knows about a phone number."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from registry.models import PhoneLink, PhoneLinkState, Registrant

_ACTIVE_REGISTRANT = (
    sa.select(Registrant)
    .join(PhoneLink, PhoneLink.registrant_id == Registrant.id)
    .where(PhoneLink.phone == sa.bindparam("phone"), PhoneLink.state == PhoneLinkState.ACTIVE)
)


def active_registrant(session: Session, phone: str) -> Registrant | None:
    """Return the registrant this phone is actively linked to, if any."""
    return session.scalars(_ACTIVE_REGISTRANT, {"phone": phone}).one_or_none()
