"""Partner institutions' API tokens: every role sees the list; admins create and revoke them.

These are the tokens of ``recpo api create-token`` (`registry.partners`): hashed, scoped,
revocable. A new token's secret is shown once, in the answer to the form that created it (never
redirected through the session cookie, never stored: only its SHA-256 is kept), so the admin
copies it there and then. Creating and revoking are audited with the institution, the scopes and
the token's prefix; a revoked token is refused by /api/v1 from its next call.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from admin import audit
from admin.models import StaffRole
from admin.views.common import bp, current_user, now, requires
from recpo.runtime import current_runtime, request_session
from registry import partners
from registry.partners import PartnerToken

# What each scope grants, for the form (the names are those of the README and the OpenAPI).
SCOPE_HELP = {
    partners.TRANSACTIONS_READ: _l("list and read transactions: goods, place, time, status"),
    partners.REGISTRANTS_READ: _l("registry status and REINFO standing of a DNI, RUC or CE"),
    partners.FLAGS_READ: _l("list red flags"),
    partners.AGGREGATES_READ: _l("volumes by region, material and ISO week"),
    partners.PERSONAL_DATA: _l(
        "with the scopes above, also names, document numbers, phones and a flag's evidence"
    ),
}
INSTITUTION_MAX = 120


def _page(created: partners.NewToken | None = None, form: dict | None = None) -> str:
    tokens = request_session().scalars(sa.select(PartnerToken).order_by(PartnerToken.id.desc()))
    return render_template(
        "admin/api_tokens.html",
        tokens=tokens.all(),
        scopes=SCOPE_HELP,
        created=created,
        form=form or {"institution": "", "scopes": []},
        base_url=current_runtime().settings.public_base_url,
    )


@bp.get("/api-tokens")
def api_tokens() -> ResponseReturnValue:
    """Every partner token: institution, scopes, created, last used, revoked."""
    return _page()


@bp.post("/api-tokens")
@requires(StaffRole.ADMIN)
def create_api_token() -> ResponseReturnValue:
    """Create a token; the answer shows its secret, once."""
    institution = " ".join(request.form.get("institution", "").split())
    scopes = [s for s in request.form.getlist("scope") if s]
    form = {"institution": institution, "scopes": scopes}
    problem = None
    if not institution:
        problem = _("give the institution's name")
    elif len(institution) > INSTITUTION_MAX:
        problem = _("the institution's name is longer than %(n)d characters", n=INSTITUTION_MAX)
    elif not scopes:
        problem = _("choose at least one scope")
    elif unknown := sorted(set(scopes) - set(SCOPE_HELP)):
        problem = _("unknown scope %(scope)s", scope=", ".join(unknown))
    if problem is not None:
        flash(_("Not created: %(reason)s", reason=problem), "error")
        return _page(form=form), 400
    with current_runtime().database.transaction() as db:
        new = partners.create_token(db, institution, scopes, now(), created_by=current_user().name)
        audit.record(
            db,
            "api_token.create",
            "partner_token",
            new.token.id,
            institution=new.token.institution,
            scopes=new.token.scopes,
            prefix=new.token.token_prefix,
        )
    flash(_("Token created for %(institution)s.", institution=new.token.institution), "success")
    return _page(created=new)


@bp.post("/api-tokens/<int:token_id>/revoke")
@requires(StaffRole.ADMIN)
def revoke_api_token(token_id: int) -> ResponseReturnValue:
    """Revoke a token: the API refuses it from its next call."""
    with current_runtime().database.transaction() as db:
        token = db.get(PartnerToken, token_id, with_for_update=True)
        if token is None:
            abort(404)
        if token.revoked_at is not None:
            flash(_("That token was already revoked."), "info")
            return redirect(url_for("admin.api_tokens"))
        partners.revoke_token(db, str(token.id), now())
        audit.record(
            db,
            "api_token.revoke",
            "partner_token",
            token.id,
            institution=token.institution,
            prefix=token.token_prefix,
        )
    flash(
        _(
            "Token %(prefix)s of %(institution)s revoked.",
            prefix=token.token_prefix,
            institution=token.institution,
        ),
        "success",
    )
    return redirect(url_for("admin.api_tokens"))
