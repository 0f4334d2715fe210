"""Console accounts and the audit log: for admins only."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin import audit
from admin.auth import end_sessions_of
from admin.models import AuditEntry, StaffRole, User
from admin.users import UserError, create_user
from admin.views.common import (
    bp,
    current_user,
    int_arg,
    keyset_page,
    now,
    requires,
)
from recpo.runtime import current_runtime, request_session


@bp.get("/users")
@requires(StaffRole.ADMIN)
def users() -> ResponseReturnValue:
    """Every console account, and the form to create one."""
    return render_template(
        "admin/users.html",
        users=request_session().scalars(sa.select(User).order_by(User.name)).all(),
        roles=list(StaffRole),
    )


@bp.post("/users")
@requires(StaffRole.ADMIN)
def add_user() -> ResponseReturnValue:
    """Create an account with a role and an initial password."""
    form = request.form
    try:
        with current_runtime().database.transaction() as db:
            user = create_user(
                db, form.get("name", ""), form.get("role", ""), form.get("password", ""), now()
            )
            audit.record(db, "user.create", "user", user.id, name=user.name, role=user.role.value)
    except UserError as exc:
        flash(_("Not created: %(reason)s", reason=str(exc)), "error")
        return redirect(url_for("admin.users"))
    flash(_("User %(name)s created.", name=user.name), "success")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>")
@requires(StaffRole.ADMIN)
def change_user(user_id: int) -> ResponseReturnValue:
    """Change an account's role or (de)activate it; its open sessions end either way."""
    form = request.form
    with current_runtime().database.transaction() as db:
        user = db.get(User, user_id, with_for_update=True)
        if user is None:
            abort(404)
        changes: dict[str, str | bool] = {}
        if (role := form.get("role")) in StaffRole._value2member_map_ and role != user.role:
            changes["role"] = role
        if (active := form.get("active")) in ("0", "1") and (active == "1") != user.active:
            changes["active"] = active == "1"
        if user.id == current_user().id and changes:
            flash(_("You cannot change your own account."), "error")
            return redirect(url_for("admin.users"))
        if not changes:
            return redirect(url_for("admin.users"))
        if "role" in changes:
            user.role = StaffRole(changes["role"])
        if "active" in changes:
            user.active = bool(changes["active"])
        end_sessions_of(db, user, now())
        audit.record(db, "user.change", "user", user.id, name=user.name, **changes)
    flash(_("User %(name)s updated.", name=user.name), "success")
    return redirect(url_for("admin.users"))


@bp.get("/audit")
@requires(StaffRole.ADMIN)
def audit_log() -> ResponseReturnValue:
    """The audit log, newest first; read-only (nobody can change it)."""
    user_name = request.args.get("user", "").strip().lower()[:80]
    target_type = request.args.get("target_type", "").strip()[:40]
    target_id = request.args.get("target_id", "").strip()[:80]
    statement = sa.select(AuditEntry)
    if user_name:
        statement = statement.where(AuditEntry.user_name == user_name)
    if target_type:
        statement = statement.where(AuditEntry.target_type == target_type)
        if target_id:
            statement = statement.where(AuditEntry.target_id == target_id)
    page = keyset_page(
        request_session(), statement, AuditEntry.id, int_arg("before"), int_arg("after")
    )
    return render_template(
        "admin/audit.html",
        page=page,
        filters={"user": user_name, "target_type": target_type, "target_id": target_id},
    )
