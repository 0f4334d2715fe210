"""What the registry knows about a phone number."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from recpo.db import DriverStatement
from registry.models import PhoneLink, PhoneLinkState, Registrant

# Asked for every inbound message: run without the ORM's query machinery (recpo.db).
_ACTIVE_REGISTRANT = DriverStatement(
    sa.select(Registrant)
    .join(PhoneLink, PhoneLink.registrant_id == Registrant.id)
    .where(PhoneLink.phone == sa.bindparam("phone"), PhoneLink.state == PhoneLinkState.ACTIVE)
)


def active_registrant(session: Session, phone: str) -> Registrant | None:
    """Return the registrant this phone is actively linked to, if any."""
    return _ACTIVE_REGISTRANT.load(session, Registrant, {"phone": phone})
