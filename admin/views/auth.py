"""Signing in and out (the home page is the dashboard, `admin.views.dashboard`)."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from admin import audit, csrf
from admin.auth import SignInRefused, authenticate, end_session, start_session
from admin.i18n import SESSION_KEY as LANGUAGE_KEY
from admin.views.common import SESSION_TOKEN, bp, now, safe_next, throttle
from recpo.runtime import current_runtime


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form; on success, a fresh session and a fresh CSRF token."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.user is not None:
            return redirect(target)
        return render_template("admin/login.html", next=target)
    name = request.form.get("name", "").strip().lower()[:80]
    runtime = current_runtime()
    try:
        user = authenticate(
            runtime.database,
            throttle(),
            name,
            request.form.get("password", ""),
            request.remote_addr or "-",
            now(),
        )
    except SignInRefused as exc:
        with runtime.database.transaction() as db:
            audit.record(db, "login.refused", "user", name, user_name=name, throttled=exc.throttled)
        if exc.throttled:
            message = _("Too many failed attempts. Wait 15 minutes and try again.")
            status = 429
        else:
            message = _("Wrong user name or password.")
            status = 401
        flash(message, "error")
        return render_template("admin/login.html", next=target, name=name), status
    language = session.get(LANGUAGE_KEY)
    session.clear()  # nothing from before signing in survives it (session fixation)
    if language:
        session[LANGUAGE_KEY] = language
    with runtime.database.transaction() as db:
        session[SESSION_TOKEN] = start_session(db, user, now())
        audit.record(db, "login", "user", user.id, user=user)
    csrf.rotate()
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session on the server and forget the cookie."""
    token = session.get(SESSION_TOKEN)
    with current_runtime().database.transaction() as db:
        if token:
            end_session(db, token, now())
        audit.record(db, "logout", "user", g.user.id)
    language = session.get(LANGUAGE_KEY)
    session.clear()
    if language:
        session[LANGUAGE_KEY] = language
    flash(_("You have signed out."), "info")
    return redirect(url_for("admin.login"))
