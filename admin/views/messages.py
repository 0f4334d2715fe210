"""The message log: every message in and out, one message with its history, one phone's thread.

Lists are keyset-paginated on the message id (newest first) and every filter has an index ending
in id (see `admin.models.CONSOLE_INDEXES`), so a page costs the same at a million rows as at ten.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import abort, flash, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from admin.i18n import domain_text
from admin.views.common import (
    audited_view,
    bp,
    date_arg,
    date_range,
    enum_arg,
    int_arg,
    keyset_page,
    like_pattern,
)
from flows.messages import Channel
from gateway.models import Direction, Message, OutboxItem, Status, TransactionMessage
from recpo.runtime import request_session
from registry.identifiers import InvalidIdentifier, parse_phone
from registry.models import Transaction
from registry.phones import active_registrant

MIN_SEARCH = 3  # the trigram index needs three characters


def phone_arg(name: str = "phone") -> str | None:
    """The phone of a filter in E.164, or None; a number that cannot be read is said so."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_phone(raw, region="PE")
    except InvalidIdentifier as exc:
        flash(_("Phone filter ignored: %(reason)s", reason=exc.render(domain_text)), "error")
        return None


def list_statement(filters: dict) -> sa.Select:
    """The message log's query for these filters (ordered and limited by the pager)."""
    statement = sa.select(Message)
    if filters.get("phone"):
        statement = statement.where(Message.phone == filters["phone"])
    for name in ("channel", "direction", "status"):
        if filters.get(name) is not None:
            statement = statement.where(getattr(Message, name) == filters[name])
    statement = statement.where(
        *date_range(Message.created_at, filters.get("date_from"), filters.get("date_to"))
    )
    if filters.get("q"):
        statement = statement.where(Message.body.ilike(like_pattern(filters["q"]), escape="\\"))
    return statement


def filters_from_args() -> dict:
    """The message log's filters from the query string (what cannot be used is said so)."""
    filters = {
        "phone": phone_arg(),
        "channel": enum_arg("channel", Channel),
        "direction": enum_arg("direction", Direction),
        "status": enum_arg("status", Status),
        "date_from": date_arg("date_from"),
        "date_to": date_arg("date_to"),
        "q": request.args.get("q", "").strip()[:100],
    }
    if filters["q"] and len(filters["q"]) < MIN_SEARCH:
        flash(_("Text search needs at least %(n)d characters.", n=MIN_SEARCH), "error")
        filters["q"] = ""
    return filters


@bp.get("/messages")
def messages() -> ResponseReturnValue:
    """The message log with filters: phone, channel, direction, status, dates and text."""
    filters = filters_from_args()
    statement = list_statement(filters).options(selectinload(Message.events))
    if filters["phone"]:
        audited_view("messages.search", "phone", filters["phone"])
    page = keyset_page(
        request_session(), statement, Message.id, int_arg("before"), int_arg("after")
    )
    return render_template(
        "admin/messages.html",
        page=page,
        filters=filters,
        channels=list(Channel),
        directions=list(Direction),
        statuses=list(Status),
    )


@bp.get("/messages/<int:message_id>")
def message(message_id: int) -> ResponseReturnValue:
    """One message: every field, its status history and its outbox state."""
    db = request_session()
    found = db.get(Message, message_id)
    if found is None:
        abort(404)
    audited_view("message.view", "message", found.id)
    choices = json.loads(found.choices) if found.choices else []
    # The transactions this message helped propose, claim, confirm or reject.
    transactions = db.execute(
        sa.select(Transaction.id, Transaction.code, TransactionMessage.step)
        .join(TransactionMessage, TransactionMessage.transaction_id == Transaction.id)
        .where(TransactionMessage.message_id == found.id)
        .order_by(Transaction.id)
    ).all()
    return render_template(
        "admin/message.html",
        message=found,
        choices=choices,
        outbox=db.get(OutboxItem, found.id),
        reply_to=db.get(Message, found.in_reply_to) if found.in_reply_to else None,
        transactions=transactions,
    )


@bp.get("/conversation")
def conversation() -> ResponseReturnValue:
    """One phone's messages as its screen shows them (`?phone=` or `?message=<id>`)."""
    db = request_session()
    phone = phone_arg()
    if phone is None and (message_id := int_arg("message")) is not None:
        phone = db.scalar(sa.select(Message.phone).where(Message.id == message_id))
    if phone is None:
        abort(404)
    audited_view("conversation.view", "phone", phone)
    page = keyset_page(
        db,
        sa.select(Message).where(Message.phone == phone),
        Message.id,
        int_arg("before"),
        int_arg("after"),
    )
    return render_template(
        "admin/conversation.html",
        phone=phone,
        page=page,
        thread=list(reversed(page.rows)),
        registrant=active_registrant(db, phone),
    )
