"""Red flags: the review queue, one flag with its evidence, and the review steps.

open -> in_review (take) -> resolved (with a note) or escalated; an escalated flag can still be
resolved. Each step is written to the audit log, which is also the flag's history.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin import audit
from admin.models import AuditEntry
from admin.views.common import (
    REVIEWERS,
    audited_view,
    bp,
    choice_arg,
    current_user,
    enum_arg,
    int_arg,
    keyset_page,
    now,
    requires,
)
from recpo.runtime import current_runtime, request_session
from registry.models import FlagStatus, RedFlag, Transaction

MAX_NOTE = 2000
# Which states each review step starts from.
STEPS = {
    "take": ({FlagStatus.OPEN}, FlagStatus.IN_REVIEW),
    "escalate": ({FlagStatus.OPEN, FlagStatus.IN_REVIEW}, FlagStatus.ESCALATED),
    "resolve": (
        {FlagStatus.OPEN, FlagStatus.IN_REVIEW, FlagStatus.ESCALATED},
        FlagStatus.RESOLVED,
    ),
}


def known_rules() -> list[str]:
    """The rules flags have been raised under (a small set: read from the index)."""
    return list(
        request_session().scalars(sa.select(RedFlag.rule).distinct().order_by(RedFlag.rule))
    )


def filters_from_args(rules: list[str]) -> tuple[FlagStatus | None, str | None]:
    """The queue's filters from the query string: status and rule."""
    return enum_arg("status", FlagStatus), choice_arg("rule", rules)


def list_statement(status: FlagStatus | None, rule: str | None) -> sa.Select:
    """The queue's query for these filters (ordered and limited by the pager)."""
    statement = sa.select(RedFlag)
    if status is not None:
        statement = statement.where(RedFlag.status == status)
    if rule is not None:
        statement = statement.where(RedFlag.rule == rule)
    return statement


@bp.get("/flags")
def flags() -> ResponseReturnValue:
    """The queue of red flags, newest first, by status and rule."""
    rules = known_rules()
    status, rule = filters_from_args(rules)
    statement = list_statement(status, rule)
    page = keyset_page(
        request_session(), statement, RedFlag.id, int_arg("before"), int_arg("after")
    )
    return render_template(
        "admin/flags.html",
        page=page,
        status=status,
        rule=rule,
        statuses=list(FlagStatus),
        rules=rules,
    )


@bp.get("/flags/<int:flag_id>")
def flag(flag_id: int) -> ResponseReturnValue:
    """One flag: reason, evidence, the transaction it is about, and its review history."""
    db = request_session()
    found = db.get(RedFlag, flag_id)
    if found is None:
        abort(404)
    audited_view("flag.view", "flag", found.id)
    try:
        evidence = json.dumps(json.loads(found.evidence), indent=2, ensure_ascii=False)
    except ValueError:
        evidence = found.evidence
    entries = db.scalars(
        sa.select(AuditEntry)
        .where(
            AuditEntry.target_type == "flag",
            AuditEntry.target_id == str(found.id),
            AuditEntry.action.like("flag.%"),
            AuditEntry.action != "flag.view",
        )
        .order_by(AuditEntry.id)
    ).all()
    history = [{"entry": e, "detail": json.loads(e.detail)} for e in entries]
    transaction = db.get(Transaction, found.transaction_id) if found.transaction_id else None
    return render_template(
        "admin/flag.html",
        flag=found,
        evidence=evidence,
        history=history,
        transaction=transaction,
        steps=STEPS,
    )


@bp.post("/flags/<int:flag_id>/<any(take, escalate, resolve):step>")
@requires(*REVIEWERS)
def review_flag(flag_id: int, step: str) -> ResponseReturnValue:
    """Take a flag into review, escalate it, or resolve it with a note."""
    note = request.form.get("note", "").strip()
    here = url_for("admin.flag", flag_id=flag_id)
    if step == "resolve" and not note:
        flash(_("A note is required to resolve a flag."), "error")
        return redirect(here)
    if len(note) > MAX_NOTE:
        flash(_("The note is too long (at most %(n)d characters).", n=MAX_NOTE), "error")
        return redirect(here)
    allowed_from, to = STEPS[step]
    with current_runtime().database.transaction() as db:
        found = db.get(RedFlag, flag_id, with_for_update=True)
        if found is None:
            abort(404)
        if found.status not in allowed_from:
            flash(_("This flag has moved on meanwhile; nothing was changed."), "error")
            return redirect(here)
        previous = found.status
        found.status = to
        found.updated_at = now()
        if note:
            found.note = note
        audit.record(
            db,
            f"flag.{step}",
            "flag",
            found.id,
            previous=previous.value,
            status=to.value,
            note=note or None,
            by=current_user().name,
        )
    messages = {
        "take": _("You are reviewing this flag."),
        "escalate": _("Flag escalated."),
        "resolve": _("Flag resolved."),
    }
    flash(messages[step], "success")
    return redirect(here)
