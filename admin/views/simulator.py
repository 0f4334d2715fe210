"""The phone simulator: type as a phone would, on SMS, WhatsApp or USSD, and read the replies.

Messages go through the real gateway (`Gateway.receive`): the real conversations run and the real
message log is written, every row marked simulated. A USSD session lives in the browser's console
session (its id and the number of answers so far), as Africa's Talking would keep it.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin import audit
from admin.i18n import domain_text
from admin.views.common import REVIEWERS, bp, requires
from flows.messages import Channel, Inbound
from gateway.models import Direction, Message
from gateway.service import current_gateway
from gateway.text import normalise_inbound
from recpo.runtime import current_runtime, request_session
from registry.demo import REGISTRANTS
from registry.identifiers import InvalidIdentifier, parse_phone
from registry.phones import active_registrant

USSD_SESSION = "console_sim_ussd"
THREAD_LENGTH = 40
MAX_TEXT = 500


def _channel(value: str | None) -> Channel:
    try:
        return Channel(value or "sms")
    except ValueError:
        return Channel.SMS


def _ussd_session(phone: str) -> dict | None:
    current = session.get(USSD_SESSION)
    return current if current and current.get("phone") == phone else None


@bp.get("/simulator")
@requires(*REVIEWERS)
def simulator() -> ResponseReturnValue:
    """The simulated phone: its recent messages on the chosen channel and a keypad."""
    channel = _channel(request.args.get("channel"))
    phone = None
    if raw := request.args.get("phone", "").strip():
        try:
            phone = parse_phone(raw, region="PE")
        except InvalidIdentifier as exc:
            flash(exc.render(domain_text), "error")
    thread: list[Message] = []
    screen = None
    registrant = None
    db = request_session()
    if phone:
        registrant = active_registrant(db, phone)
        thread = list(
            reversed(
                db.scalars(
                    sa.select(Message)
                    .where(Message.phone == phone, Message.channel == channel)
                    .order_by(Message.id.desc())
                    .limit(THREAD_LENGTH)
                ).all()
            )
        )
        ussd = _ussd_session(phone)
        if channel is Channel.USSD and thread and thread[-1].direction is Direction.OUT:
            screen = thread[-1]
            if ussd is None and not screen.ends_session:
                screen = None  # a screen of a session this browser no longer holds
    return render_template(
        "admin/simulator.html",
        phone=phone,
        channel=channel,
        channels=list(Channel),
        thread=thread,
        screen=screen,
        ussd=_ussd_session(phone) if phone else None,
        registrant=registrant,
        demo_phones=[(row[5], row[3]) for row in REGISTRANTS],
        service_code=current_gateway().settings.ussd_service_code,
    )


@bp.post("/simulator")
@requires(*REVIEWERS)
def simulate() -> ResponseReturnValue:
    """Send one message (or dial, or hang up) as the phone, through the real gateway."""
    form = request.form
    channel = _channel(form.get("channel"))
    try:
        phone = parse_phone(form.get("phone", ""), region="PE")
    except InvalidIdentifier as exc:
        flash(exc.render(domain_text), "error")
        return redirect(url_for("admin.simulator", channel=channel.value))
    back = redirect(url_for("admin.simulator", phone=phone, channel=channel.value))
    action = form.get("action", "send")
    text = form.get("text", "")[:MAX_TEXT]
    gateway = current_gateway()
    session_id = None
    if channel is Channel.USSD:
        if action == "hangup":
            session.pop(USSD_SESSION, None)
            return back
        ussd = _ussd_session(phone)
        if action == "dial" or ussd is None:
            ussd = {"phone": phone, "id": f"sim-{uuid.uuid4().hex[:16]}", "answers": 0}
            text = ""
        else:
            ussd["answers"] += 1
        session[USSD_SESSION] = ussd
        session_id = ussd["id"]
        provider_id = f"{session_id}:{ussd['answers']}"
    else:
        if not text.strip():
            flash(_("Type a message first."), "error")
            return back
        provider_id = f"sim-{uuid.uuid4().hex}"
    inbound = Inbound(
        channel=channel,
        phone=phone,
        text=normalise_inbound(text),
        provider_id=provider_id,
        received_at=gateway.clock.now(),
        session_id=session_id,
        simulated=True,
    )
    received = gateway.receive(inbound)
    if channel is Channel.USSD and (received.inline is None or received.inline.final):
        session.pop(USSD_SESSION, None)
    with current_runtime().database.transaction() as db:
        audit.record(
            db,
            "simulator.send",
            "message",
            received.message_id,
            phone=phone,
            channel=channel.value,
            replies=len(received.outbox) + (1 if received.inline else 0),
        )
    return back
