"""USSD through Africa's Talking: the callback is the conversation (DESIGN.md §3, §4).

Africa's Talking POSTs `/ussd` (form-encoded) for every step of a session:

    sessionId=ATUid_5f1c...&serviceCode=*500#&phoneNumber=+51987654321&networkCode=71606&text=1*6

`text` holds every answer of the session so far, joined with `*` (empty when the session starts);
the conversations only need the newest one. The answer is the HTTP response itself, plain text
starting `CON ` (show the screen and wait for an answer) or `END ` (show it and close the session):
there is no separate send. Aggregators give about 15 s per reply and enforce 160 GSM-7 characters
per screen, so every screen is folded and, if still too long, cut here before it reaches the phone.

Verbs: `verify` (our service code, the fields present), `parse` (an `Inbound` for the newest
answer), `render` / `render_screen` (the `CON`/`END` body). Each step's provider id is
`<sessionId>:<number of answers>`, so a retried callback is a duplicate and gets the stored screen
back. A session belongs to the phone that started it; a new session from the same phone carries on
its conversation, which is kept per phone by `flows`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Mapping

import sqlalchemy as sa
from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from flows.messages import Channel, Inbound, Reply
from flows.store import locale_for
from gateway import text as wire
from gateway.models import Direction, Message
from gateway.service import current_gateway
from recpo.db import Database, DriverStatement
from recpo.i18n import DEFAULT_LOCALE, N_, translate
from registry.identifiers import InvalidIdentifier, mask_phone, parse_phone

log = logging.getLogger(__name__)

bp = Blueprint("ussd", __name__)

CONTENT_TYPE = "text/plain; charset=utf-8"
ELLIPSIS = "..."
# Message.provider_id holds 80 characters: the session id, a colon and the step number.
_SESSION_ID = re.compile(r"[\x21-\x7e]{1,64}")
# Sessions die within minutes (GLOSSARY "Text on the wire"); looking back this far for the phone
# that owns a session bounds the search to recent rows of the message log.
SESSION_LIFETIME = dt.timedelta(hours=1)
MAX_STEPS = 100  # a callback's text is short: no real session has more answers than this

NO_REPLY = N_("RECPO: there is nothing to show now. Please try again later.")
OTHER_PHONE = N_("RECPO: this session belongs to another phone. Dial again to start your own.")


class Rejected(Exception):
    """A callback refused before it reaches the conversations: HTTP status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- verify ---------------------------------------------------------------------------------------


def verify(form: Mapping[str, str], service_code: str) -> None:
    """Refuse a callback that is malformed (400) or for another service code (404)."""
    for name in ("sessionId", "serviceCode", "phoneNumber"):
        if not form.get(name, "").strip():
            raise Rejected(400, f"missing {name}")
    if not _SESSION_ID.fullmatch(form["sessionId"]):
        raise Rejected(400, "sessionId must be 1 to 64 visible ASCII characters")
    if form["serviceCode"].strip() != service_code:
        raise Rejected(404, "unknown serviceCode")


# --- parse ----------------------------------------------------------------------------------------


def answers(text: str) -> list[str]:
    """Split the cumulative `text` of a callback into the session's answers (none at the start)."""
    return text.split("*") if text else []


def parse(form: Mapping[str, str], now: dt.datetime) -> Inbound:
    """Turn a verified callback into the `Inbound` of its newest answer."""
    try:
        phone = parse_phone(form["phoneNumber"], region=None)
    except InvalidIdentifier:
        raise Rejected(400, "phoneNumber is not a mobile number in international form") from None
    session_id = form["sessionId"]
    parts = answers(form.get("text", ""))
    return Inbound(
        channel=Channel.USSD,
        phone=phone,
        text=wire.normalise_inbound(parts[-1] if parts else ""),
        provider_id=f"{session_id}:{len(parts)}",
        received_at=now,
        session_id=session_id,
    )


@functools.cache
def _other_phone_statement(dialect: str) -> DriverStatement:
    """The look-up `owned_by_another_phone` runs, built once per dialect.

    The session's step ids are one array parameter on PostgreSQL (`= ANY`), elsewhere an IN list
    rendered for each session's length. The server plans it for each callback's values: with one
    plan kept for any values, made while the log was small, it filtered every USSD message in the
    log instead of probing the index for each step.
    """
    messages = Message.__table__
    if dialect == "postgresql":
        steps = messages.c.provider_id == sa.any_(
            sa.bindparam("steps", type_=postgresql.ARRAY(messages.c.provider_id.type))
        )
    else:
        steps = messages.c.provider_id.in_(sa.bindparam("steps", expanding=True))
    return DriverStatement(
        sa.select(messages.c.id)
        .where(
            messages.c.channel == Channel.USSD,
            steps,
            messages.c.direction == Direction.IN,
            messages.c.created_at >= sa.bindparam("since", type_=messages.c.created_at.type),
            messages.c.phone != sa.bindparam("phone", type_=messages.c.phone.type),
        )
        .limit(1),
        planned_each_time=True,
    )


def owned_by_another_phone(session: Session, inbound: Inbound) -> bool:
    """True if the message log shows this USSD session used from a different phone.

    The session's steps are logged as `<sessionId>:<step>`, so its earlier steps (and this one,
    which a duplicate from another phone would otherwise be answered from) are found by equality
    on the (channel, provider id) index: a handful of index probes, however busy the log is.
    """
    assert inbound.session_id is not None and inbound.provider_id is not None
    step = int(inbound.provider_id.rsplit(":", 1)[1])
    numbers = {*range(min(step, MAX_STEPS) + 1), step}
    params = {
        "steps": [f"{inbound.session_id}:{n}" for n in sorted(numbers)],
        "since": inbound.received_at - SESSION_LIFETIME,
        "phone": inbound.phone,
    }
    statement = _other_phone_statement(session.get_bind().dialect.name)
    return bool(statement.rows(session.connection(), params))


# --- render ---------------------------------------------------------------------------------------


def fit_screen(text: str, limit: int = wire.USSD_LIMIT) -> str:
    """Return `text` as a USSD screen can show it: GSM-7, at most `limit` septets.

    Text is folded as for SMS; a character with no GSM-7 fold becomes `?`. A screen still too long
    is cut at the last word boundary that leaves room for a trailing `...`.
    """
    screen = wire.fold_for_sms(text)
    if not wire.is_gsm7(screen):
        log.warning("USSD screen has characters outside GSM-7; replaced with '?'")
        screen = "".join(ch if wire.is_gsm7(ch) else "?" for ch in screen)
    length = wire.ussd_length(screen)
    if length <= limit:
        return screen
    log.warning("USSD screen of %d septets cut to fit %d", length, limit)
    room = limit - wire.ussd_length(ELLIPSIS)
    end, used = 0, 0
    for ch in screen:
        used += wire.ussd_length(ch)
        if used > room:
            break
        end += 1
    head = screen[:end]
    if not screen[end].isspace():
        # Mid-word: go back to the last whitespace, unless the whole head is a single word.
        boundary = max(head.rfind(" "), head.rfind("\n"))
        if boundary > 0:
            head = head[:boundary]
    return head.rstrip() + ELLIPSIS


def render_screen(reply: Reply | None, locale: str = DEFAULT_LOCALE) -> str:
    """Return the exact response body for `reply`: `CON <screen>` or `END <screen>`.

    Without a reply, the session ends with an apology in `locale`.
    """
    if reply is None:
        return "END " + fit_screen(translate(locale, NO_REPLY))
    return ("END " if reply.final else "CON ") + fit_screen(reply.text)


def render(reply: Reply | None, locale: str = DEFAULT_LOCALE) -> Response:
    """Return the HTTP response carrying `reply` to the phone."""
    return Response(render_screen(reply, locale), status=200, content_type=CONTENT_TYPE)


def _locale_of(database: Database, phone: str) -> str:
    """The phone's language for screens no flow wrote (rare paths: a query of their own)."""
    with database.transaction() as session:
        return locale_for(session, phone)


# --- the callback ---------------------------------------------------------------------------------


@bp.post("/ussd")
def callback() -> ResponseReturnValue:
    """Answer one step of a USSD session with the next screen."""
    gateway = current_gateway()
    form = request.form
    try:
        verify(form, gateway.settings.ussd_service_code)
        inbound = parse(form, gateway.clock.now())
    except Rejected as exc:
        return Response(exc.reason + "\n", status=exc.status, content_type=CONTENT_TYPE)
    # The ownership check runs in the message's own transaction: one BEGIN/COMMIT, not two.
    received = gateway.receive(inbound, guard=owned_by_another_phone)
    if received.refused:
        log.warning(
            "USSD session %s used from %s, which did not start it; refused",
            inbound.session_id,
            mask_phone(inbound.phone),
        )
        locale = _locale_of(gateway.database, inbound.phone)
        return Response(
            "END " + fit_screen(translate(locale, OTHER_PHONE)),
            status=200,
            content_type=CONTENT_TYPE,
        )
    if received.inline is None:
        log.warning(
            "USSD message %s from %s has no screen to show; ending the session",
            received.message_id,
            mask_phone(inbound.phone),
        )
        return render(None, _locale_of(gateway.database, inbound.phone))
    return render(received.inline)
