"""Registrants (search and detail, status history, standing) and the phone links they ask for
with ALTA."""

from __future__ import annotations

import enum
import re
from typing import TypeVar

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin import audit
from admin.views.common import (
    REVIEWERS,
    audited_view,
    back_to,
    bp,
    current_user,
    enum_arg,
    int_arg,
    keyset_page,
    like_pattern,
    now,
    requires,
)
from flows.commands import approval_notice
from gateway.notices import queue_notices
from gateway.service import current_gateway
from recpo.runtime import current_runtime, request_session
from registry import history
from registry.identifiers import (
    DocumentType,
    InvalidIdentifier,
    dni_from_ruc,
    natural_person_ruc,
    parse_phone,
)
from registry.models import (
    PhoneLink,
    PhoneLinkState,
    Registrant,
    RegistrantStatus,
    ReinfoRegistration,
    Transaction,
)

RECENT_TRANSACTIONS = 20
MAX_STANDING_NOTE = 500
E = TypeVar("E", bound=enum.Enum)
_DIGITS = re.compile(r"[0-9]+")


def documents_for(digits: str) -> list[tuple[DocumentType, str]]:
    """The documents a run of digits may be: a DNI and its RUC, a RUC and its DNI, a CE."""
    try:
        if len(digits) == 8:
            return [(DocumentType.DNI, digits), (DocumentType.RUC, natural_person_ruc(digits))]
        if len(digits) == 11:
            found = [(DocumentType.RUC, digits)]
            if dni := dni_from_ruc(digits):
                found.append((DocumentType.DNI, dni))
            return found
    except InvalidIdentifier:
        return [(DocumentType.RUC, digits)] if len(digits) == 11 else []
    if len(digits) == 9:
        return [(DocumentType.CE, digits)]
    return []


def search_conditions(query: str) -> list[sa.ColumnElement[bool]]:
    """What a search for `query` matches: a document, a phone number, or a name."""
    conditions: list[sa.ColumnElement[bool]] = []
    compact = re.sub(r"[\s.\-]", "", query)
    if _DIGITS.fullmatch(compact.lstrip("+")):
        if documents := documents_for(compact.lstrip("+")):
            conditions.append(
                sa.tuple_(Registrant.document_type, Registrant.document_number).in_(documents)
            )
        try:
            phone = parse_phone(query, region="PE")
        except InvalidIdentifier:
            phone = None
        if phone:
            conditions.append(
                Registrant.id.in_(
                    sa.select(PhoneLink.registrant_id).where(PhoneLink.phone == phone)
                )
            )
    else:
        conditions.append(Registrant.name.ilike(like_pattern(query), escape="\\"))
    return conditions


def query_arg() -> str:
    """The registrant search typed in the query string (`q`)."""
    return request.args.get("q", "").strip()[:100]


def list_statement(query: str) -> sa.Select:
    """The registrant list's query for a search (ordered and limited by the pager)."""
    statement = sa.select(Registrant)
    if query:
        conditions = search_conditions(query)
        statement = statement.where(sa.or_(*conditions) if conditions else sa.false())
    return statement


@bp.get("/registrants")
def registrants() -> ResponseReturnValue:
    """Search registrants by name, document (DNI, RUC, CE) or phone number."""
    query = query_arg()
    statement = list_statement(query)
    if query:
        audited_view("registrants.search", "query", None, query=query)
    page = keyset_page(
        request_session(), statement, Registrant.id, int_arg("before"), int_arg("after")
    )
    return render_template("admin/registrants.html", page=page, query=query)


def registrant_ruc(registrant: Registrant) -> str | None:
    """The RUC REINFO knows this registrant by (a DNI holder's natural-person RUC)."""
    if registrant.document_type is DocumentType.RUC:
        return registrant.document_number
    if registrant.document_type is DocumentType.DNI:
        return natural_person_ruc(registrant.document_number)
    return None


@bp.get("/registrants/<int:registrant_id>")
def registrant(registrant_id: int) -> ResponseReturnValue:
    """One registrant: identity, phones, REINFO registrations, status history, transactions."""
    db = request_session()
    found = db.get(Registrant, registrant_id)
    if found is None:
        abort(404)
    audited_view("registrant.view", "registrant", found.id)
    ruc = registrant_ruc(found)
    registrations = (
        db.scalars(
            sa.select(ReinfoRegistration)
            .where(ReinfoRegistration.ruc == ruc)
            .order_by(ReinfoRegistration.codigo_unico)
        ).all()
        if ruc
        else []
    )
    transactions = sorted(
        [
            *db.scalars(
                sa.select(Transaction)
                .where(Transaction.buyer_id == found.id)
                .order_by(Transaction.id.desc())
                .limit(RECENT_TRANSACTIONS)
            ),
            *db.scalars(
                sa.select(Transaction)
                .where(Transaction.seller_id == found.id)
                .order_by(Transaction.id.desc())
                .limit(RECENT_TRANSACTIONS)
            ),
        ],
        key=lambda t: t.id,
        reverse=True,
    )[:RECENT_TRANSACTIONS]
    changes = history.history_of(db, found.id, [r.id for r in registrations])
    return render_template(
        "admin/registrant.html",
        registrant=found,
        ruc=ruc,
        registrations=registrations,
        transactions=transactions,
        changes=changes,
        history_limit=history.HISTORY_LIMIT,
        standings=list(RegistrantStatus),
        max_note=MAX_STANDING_NOTE,
    )


@bp.post("/registrants/<int:registrant_id>/standing")
@requires(*REVIEWERS)
def registrant_standing(registrant_id: int) -> ResponseReturnValue:
    """Suspend, close or restore a registrant's standing with the registry, saying why.

    A registrant not active may neither buy nor sell (`registry.transactions`); the change goes
    into the status history with the user and the note, and into the audit log.
    """
    here = url_for("admin.registrant", registrant_id=registrant_id)
    wanted = enum_form("status", RegistrantStatus)
    note = request.form.get("note", "").strip()
    if wanted is None:
        flash(_("Choose a standing."), "error")
        return redirect(here)
    if not note:
        flash(_("A note is required to change a registrant's standing."), "error")
        return redirect(here)
    if len(note) > MAX_STANDING_NOTE:
        flash(_("The note is too long (at most %(n)d characters).", n=MAX_STANDING_NOTE), "error")
        return redirect(here)
    user = current_user()
    with current_runtime().database.transaction() as db:
        found = db.get(Registrant, registrant_id, with_for_update=True)
        if found is None:
            abort(404)
        previous = found.status
        change = history.change_standing(
            db, found, wanted, now=now(), changed_by=user.name, note=note
        )
        if change is not None:
            audit.record(
                db,
                "registrant.standing",
                "registrant",
                found.id,
                previous=previous.value,
                status=wanted.value,
                note=note,
            )
    if change is None:
        flash(_("The registrant already has that standing; nothing was changed."), "info")
    else:
        flash(_("Standing changed."), "success")
    return redirect(here)


def enum_form(name: str, enum_cls: type[E]) -> E | None:
    """An enum value posted in a form field (None when missing or not a value of `enum_cls`)."""
    try:
        return enum_cls(request.form.get(name, "").strip())
    except ValueError:
        return None


# --- phone links ------------------------------------------------------------------------------


@bp.get("/phone-links")
def phone_links() -> ResponseReturnValue:
    """Phone links by state; pending ones are ALTA requests waiting for a decision."""
    state = enum_arg("state", PhoneLinkState)
    if "state" not in request.args:
        state = PhoneLinkState.PENDING
    db = request_session()
    statement = sa.select(PhoneLink).join(PhoneLink.registrant)
    if state is not None:
        statement = statement.where(PhoneLink.state == state)
    page = keyset_page(db, statement, PhoneLink.id, int_arg("before"), int_arg("after"))
    phones = {link.phone for link in page.rows}
    holders = {
        link.phone: link
        for link in db.scalars(
            sa.select(PhoneLink).where(
                PhoneLink.phone.in_(phones), PhoneLink.state == PhoneLinkState.ACTIVE
            )
        )
    }
    return render_template(
        "admin/phone_links.html",
        page=page,
        state=state,
        states=list(PhoneLinkState),
        holders=holders,
    )


class Conflict(Exception):
    """The phone is already active for a registrant."""

    def __init__(self, registrant_id: int) -> None:
        super().__init__(registrant_id)
        self.registrant_id = registrant_id


def _decide(link_id: int, action: str, wanted: PhoneLinkState, from_state: PhoneLinkState) -> str:
    """Move a link from `from_state` to `wanted`; return the page to go back to."""
    user = current_user()
    database = current_runtime().database
    try:
        with database.transaction() as db:
            link = db.get(PhoneLink, link_id, with_for_update=True)
            if link is None:
                abort(404)
            back = url_for("admin.registrant", registrant_id=link.registrant_id)
            if link.state is not from_state:
                flash(_("This phone link was already decided by someone else."), "error")
                return back
            if wanted is PhoneLinkState.ACTIVE:
                holder = db.scalars(
                    sa.select(PhoneLink).where(
                        PhoneLink.phone == link.phone,
                        PhoneLink.state == PhoneLinkState.ACTIVE,
                        PhoneLink.id != link.id,
                    )
                ).first()
                if holder is not None:
                    raise Conflict(holder.registrant_id)
            link.state = wanted
            link.decided_by = user.name
            link.decided_at = now()
            audit.record(db, action, "phone_link", link.id, registrant_id=link.registrant_id)
            db.flush()  # the unique index on active phones decides a race between two analysts
            notices = []
            if wanted is PhoneLinkState.ACTIVE and from_state is PhoneLinkState.PENDING:
                # The ALTA reply promised a message: it goes with the approval, or not at all.
                registrant = db.get(Registrant, link.registrant_id)
                notices = queue_notices(db, [approval_notice(registrant, link.phone)], now())
    except (Conflict, sa.exc.IntegrityError) as exc:
        with database.transaction() as db:
            holder_registrant = (
                db.get(Registrant, exc.registrant_id) if isinstance(exc, Conflict) else None
            )
            audit.record(db, action + ".refused", "phone_link", link_id, reason="phone active")
        if holder_registrant is not None:
            flash(
                _(
                    "Not approved: this phone is already active for %(name)s (%(document)s)."
                    " Revoke that link first.",
                    name=holder_registrant.name,
                    document=f"{holder_registrant.document_type.label}"
                    f" {holder_registrant.document_number}",
                ),
                "error",
            )
        else:
            flash(_("Not approved: this phone is already active for another registrant."), "error")
        return back_to(url_for("admin.phone_links"))
    if notices:
        current_gateway().dispatcher.dispatch(notices)
    messages = {
        PhoneLinkState.ACTIVE: _("Phone link approved."),
        PhoneLinkState.REVOKED: _("Phone link rejected.")
        if from_state is PhoneLinkState.PENDING
        else _("Phone link revoked."),
    }
    flash(messages[wanted], "success")
    return back_to(back)


@bp.post("/phone-links/<int:link_id>/approve")
@requires(*REVIEWERS)
def approve_link(link_id: int) -> ResponseReturnValue:
    """Approve an ALTA request: the phone now speaks for the registrant."""
    return redirect(
        _decide(link_id, "phone_link.approve", PhoneLinkState.ACTIVE, PhoneLinkState.PENDING)
    )


@bp.post("/phone-links/<int:link_id>/reject")
@requires(*REVIEWERS)
def reject_link(link_id: int) -> ResponseReturnValue:
    """Reject an ALTA request."""
    return redirect(
        _decide(link_id, "phone_link.reject", PhoneLinkState.REVOKED, PhoneLinkState.PENDING)
    )


@bp.post("/phone-links/<int:link_id>/revoke")
@requires(*REVIEWERS)
def revoke_link(link_id: int) -> ResponseReturnValue:
    """Revoke an active link (a lost phone, or to free the number for someone else)."""
    return redirect(
        _decide(link_id, "phone_link.revoke", PhoneLinkState.REVOKED, PhoneLinkState.ACTIVE)
    )
