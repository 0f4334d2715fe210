"""Ledger health (`/admin/ledger`): size, newest checkpoint and its age, the verifier key, the
witnesses, and a full verification run in the background (see `admin.verification`).

Witnesses (`LEDGER_WITNESSES`, `ledger.witnesses`): each configured witness with the size it last
cosigned and when, and how the last submission went. A witness that refused a checkpoint (it
caught the log rewriting or forking its history, or it no longer accepts our signature) raises an
alarm shown here and on the dashboard until it cosigns again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa
from flask import current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from admin import audit, verification
from admin.views.common import REVIEWERS, bp, current_user, now, requires
from gateway.ledger_api import WITNESSES_KEY, current_log
from ledger import log as ledger_log
from ledger.witnesses import WitnessRefusal, WitnessStatus, refusals, witness_statuses
from recpo.runtime import current_runtime, request_session

# A checkpoint older than this while entries wait to be signed deserves a warning.
CHECKPOINT_WARN_SECONDS = 3600
RECENT_REFUSALS = 10


@dataclass(frozen=True)
class Witness:
    """One witness as the ledger page shows it: configured, or known from an earlier setting."""

    name: str
    url: str
    key: str | None  # its verifier key (None: no longer configured)
    status: WitnessStatus | None  # None: never contacted yet
    refusal: WitnessRefusal | None = None  # the refusal that raised its alarm, if raised

    @property
    def configured(self) -> bool:
        return self.key is not None

    @property
    def alarm(self) -> bool:
        return self.status is not None and self.status.alarm


def witness_board(db: Session) -> list[Witness]:
    """The configured witnesses in their configured order, then those no longer configured."""
    statuses = {(s.witness_name, s.key_id): s for s in witness_statuses(db)}
    board = [
        Witness(w.name, w.url, w.verifier.text(), statuses.pop((w.name, w.key_id), None))
        for w in current_app.extensions[WITNESSES_KEY].witnesses
    ]
    board += [Witness(s.witness_name, s.url, None, s) for s in statuses.values()]
    return [
        replace(w, refusal=last_refusal(db, w.status)) if w.alarm and w.status else w for w in board
    ]


def last_refusal(db: Session, status: WitnessStatus) -> WitnessRefusal | None:
    """The newest refusal by the witness of `status`."""
    return db.scalars(
        sa.select(WitnessRefusal)
        .where(
            WitnessRefusal.witness_name == status.witness_name,
            WitnessRefusal.key_id == status.key_id,
        )
        .order_by(WitnessRefusal.id.desc())
        .limit(1)
    ).first()


def witness_alarms(db: Session) -> list[WitnessStatus]:
    """Witnesses whose last answer was a refusal (few rows: one per witness ever configured)."""
    return [s for s in witness_statuses(db) if s.alarm]


@bp.get("/ledger")
def ledger() -> ResponseReturnValue:
    """The ledger's size and newest checkpoint, the verifier key, and verification runs."""
    db = request_session()
    moment = now()
    size = ledger_log.tree_size(db)
    try:
        head = ledger_log.latest_checkpoint(db)
    except ledger_log.NotFound:
        head = None
    runs = verification.latest_runs(db)
    running = next((r for r in runs if r.finished_at is None), None)
    if running is not None and moment - running.updated_at > verification.STALE_AFTER:
        running = None  # shown as lost; the next start closes it
    log = current_log()
    witnesses = witness_board(db)
    return render_template(
        "admin/ledger.html",
        witnesses=witnesses,
        alarms=[w for w in witnesses if w.alarm],
        refusals=refusals(db, limit=RECENT_REFUSALS),
        size=size,
        head=head,
        unsigned=size - head.size if head else size,
        stale_checkpoint=head is not None
        and size > head.size
        and (moment - head.signed_at).total_seconds() > CHECKPOINT_WARN_SECONDS,
        origin=log.origin,
        verifier_key=log.signer.verifier_text(),
        runs=runs,
        running=running,
        latest=runs[0] if runs else None,
        lost_after=verification.STALE_AFTER,
    )


@bp.post("/ledger/verify")
@requires(*REVIEWERS)
def verify_ledger() -> ResponseReturnValue:
    """Start a full verification of the stored log in the background."""
    runtime = current_runtime()
    log = current_log()
    user = current_user()
    try:
        verification.start(
            runtime.database,
            log.signer.verifier(),
            log.origin,
            runtime.clock,
            user.name,
            on_start=lambda db, run: audit.record(
                db, "ledger.verify", "ledger_verification", run.id
            ),
        )
    except verification.AlreadyRunning as exc:
        flash(
            _("A verification is already running (started by %(name)s).", name=exc.started_by),
            "info",
        )
        return redirect(url_for("admin.ledger"))
    flash(_("Verification started. This page shows the result when it is done."), "success")
    return redirect(url_for("admin.ledger"))
