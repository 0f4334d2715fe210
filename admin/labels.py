"""Words the console shows for the registry's enum values (statuses, roles, channels).

The values are stored in English; each is shown through gettext, so the Spanish console says
"confirmada" where the database says "confirmed".
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

LABELS = {
    # message log
    "in": _l("inbound"),
    "out": _l("outbound"),
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "ussd": "USSD",
    "received": _l("received"),
    "queued": _l("queued"),
    "sent": _l("sent"),
    "delivered": _l("delivered"),
    "read": _l("read"),
    "failed": _l("failed"),
    "undelivered": _l("undelivered"),
    "gsm7": "GSM-7",
    "ucs2": "UCS-2",
    "unicode": "Unicode",
    "pending": _l("pending"),
    "sending": _l("sending"),
    "dead": _l("dead"),
    # transactions
    "proposed": _l("proposed"),
    "claimed": _l("claimed"),
    "confirmed": _l("confirmed"),
    "disputed": _l("disputed"),
    "expired": _l("expired"),
    "cancelled": _l("cancelled"),
    "buyer": _l("buyer"),
    "seller": _l("seller"),
    # registrants and phone links
    "miner": _l("miner"),
    "plant": _l("processing plant"),
    "stockpiler": _l("stockpiler"),
    "refiner": _l("refiner"),
    "trader": _l("trader"),
    "active": _l("active"),
    "suspended": _l("suspended"),
    "closed": _l("closed"),
    "revoked": _l("revoked"),
    "es": _l("Spanish"),
    "qu": _l("Quechua"),
    # red flags
    "open": _l("open"),
    "in_review": _l("in review"),
    "resolved": _l("resolved"),
    "escalated": _l("escalated"),
    # console roles
    "admin": _l("administrator"),
    "analyst": _l("analyst"),
    "auditor": _l("auditor"),
    # ledger checks
    "verified": _l("verified"),
    "unverified": _l("not verified"),
    "missing": _l("not in the ledger"),
    "none": _l("no receipt"),
}


def label(value: object) -> str:
    """The word to show for an enum value (its own text when there is none)."""
    key = getattr(value, "value", value)
    return str(LABELS.get(str(key), key))
