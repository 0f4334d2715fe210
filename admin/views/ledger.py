"""Ledger health (`/admin/ledger`): size, newest checkpoint and its age, the verifier key, and
a full verification run in the background (see `admin.verification`)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin import audit, verification
from admin.views.common import REVIEWERS, bp, current_user, now, requires
from gateway.ledger_api import current_log
from ledger import log as ledger_log
from recpo.runtime import current_runtime, request_session

# A checkpoint older than this while entries wait to be signed deserves a warning.
CHECKPOINT_WARN_SECONDS = 3600


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
    return render_template(
        "admin/ledger.html",
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
