"""The console's blueprint and what every page shares: access control, CSRF, paging, filters.

Every request under `/admin` passes `_guard` first: it resumes the server-side session from the
cookie, sends anyone without one to the login page, refuses every POST from an auditor (403)
and every POST without the session's CSRF token (400). Pages that need a role say so with
`@requires(...)`.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_decimal
from flask_babel import gettext as _
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from admin import audit, csrf
from admin.auth import IDLE_TIMEOUT, LoginThrottle, make_throttle, resume_session
from admin.i18n import console_language, domain_text, init_babel, remember_language
from admin.labels import label
from admin.models import StaffRole, User
from ledger.receipts import format_code
from recpo.clock import LIMA
from recpo.runtime import current_runtime, request_session
from registry.identifiers import mask_phone
from registry.materials import Material

ROOT = Path(__file__).resolve().parent.parent
bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder=str(ROOT / "templates"),
    static_folder=str(ROOT / "static"),
    static_url_path="/static",
)

SESSION_TOKEN = "console_session"  # noqa: S105 - the session key's name, not a secret
THROTTLE_KEY = "recpo.console.throttle"
PUBLIC_ENDPOINTS = frozenset({"admin.login", "admin.static"})
# The only POST an auditor may make: signing out changes nothing in the registry.
AUDITOR_POSTS = frozenset({"admin.logout"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REVIEWERS = (StaffRole.ADMIN, StaffRole.ANALYST)
PAGE_SIZE = 50
# The app refuses request bodies over MAX_CONTENT_LENGTH (1 MiB). REINFO lists run to tens of
# MiB, so the upload form alone may send up to this, and only once an analyst or admin is known
# to be signed in (set in `_guard`, before anything reads the body).
UPLOAD_ENDPOINTS = frozenset({"admin.upload"})
UPLOAD_MAX_BYTES = 50 * 1024 * 1024


@bp.record_once
def _setup(state: Any) -> None:
    init_babel(state.app)


def throttle() -> LoginThrottle:
    """The login throttle of this app (Redis when configured, else the database)."""
    app = current_app
    if THROTTLE_KEY not in app.extensions:
        runtime = current_runtime()
        app.extensions[THROTTLE_KEY] = make_throttle(runtime.database, runtime.redis)
    return app.extensions[THROTTLE_KEY]


def now() -> dt.datetime:
    return current_runtime().clock.now()


def idle_timeout() -> dt.timedelta:
    return current_app.config.get("CONSOLE_IDLE_TIMEOUT", IDLE_TIMEOUT)


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    remember_language()
    g.user = None
    token = session.get(SESSION_TOKEN)
    if token:
        with current_runtime().database.transaction() as db:
            g.user = resume_session(db, token, now(), idle_timeout())
        if g.user is None:
            session.pop(SESSION_TOKEN, None)
            flash(_("Your session has ended. Please sign in again."), "info")
    if request.endpoint in PUBLIC_ENDPOINTS:
        if request.method not in SAFE_METHODS:
            csrf.check()
        return None
    if g.user is None:
        return redirect(url_for("admin.login", next=_here()))
    if request.method not in SAFE_METHODS:
        if g.user.role is StaffRole.AUDITOR and request.endpoint not in AUDITOR_POSTS:
            abort(403)
        if request.endpoint in UPLOAD_ENDPOINTS and g.user.role in REVIEWERS:
            request.max_content_length = current_app.config.get(
                "CONSOLE_UPLOAD_MAX_BYTES", UPLOAD_MAX_BYTES
            )
        csrf.check()
    return None


@bp.after_request
def _headers(response: Any) -> Any:
    # Console pages hold personal data: never cache them, never frame them.
    if request.endpoint != "admin.static":
        response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    return response


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> ResponseReturnValue:
    if exc.code is None or exc.code < 400:
        return exc
    return render_template("admin/error.html", error=exc), exc.code


@bp.route("/<path:_rest>", methods=["GET", "POST"])
def not_found(_rest: str) -> ResponseReturnValue:
    """Unknown console paths: a 404, but only for a signed-in user (others go to login)."""
    abort(404)


def _here() -> str:
    path = request.full_path
    return path[:-1] if path.endswith("?") else path


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if (
        target
        and target.startswith("/admin")
        and not target.startswith("//")
        and "\\" not in target
        and not target.startswith("/admin/login")
    ):
        return target
    return url_for("admin.home")


F = TypeVar("F", bound=Callable[..., Any])


def requires(*roles: StaffRole) -> Callable[[F], F]:
    """Allow a view to these roles only (403 for the others)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if g.user is None or g.user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def current_user() -> User:
    return g.user


def may_review() -> bool:
    """Analysts and admins act on the registry; auditors only read."""
    return g.get("user") is not None and g.user.role in REVIEWERS


def sees_phones() -> bool:
    """Analysts and admins see whole phone numbers; auditors see them masked."""
    return may_review()


def audited_view(action: str, target_type: str, target_id: object, **detail: object) -> None:
    """Record that the signed-in user looked at someone's personal data.

    Written and committed through the request's own session, so that the record cannot depend on
    the order in which a view opens its sessions.
    """
    db = request_session()
    audit.record(db, action, target_type, target_id, **detail)
    db.commit()


# --- paging -----------------------------------------------------------------------------------


@dataclass
class Page:
    """One page of rows ordered by id, newest first, with the cursors of its neighbours."""

    rows: list[Any]
    newer: int | None  # `after=` cursor of the page before this one
    older: int | None  # `before=` cursor of the page after this one


def keyset_page(
    db: Session,
    statement: sa.Select,
    id_column: Any,
    before: int | None,
    after: int | None,
    size: int = PAGE_SIZE,
    scalars: bool = True,
) -> Page:
    """Read one page by keyset on `id_column` (never OFFSET, never counting the table)."""

    def run(stmt: sa.Select) -> list[Any]:
        return list(db.scalars(stmt) if scalars else db.execute(stmt))

    if after is not None:
        rows = run(statement.where(id_column > after).order_by(id_column.asc()).limit(size + 1))
        more_newer = len(rows) > size
        rows = list(reversed(rows[:size]))
        return Page(
            rows,
            newer=_row_id(rows[0]) if more_newer and rows else None,
            older=_row_id(rows[-1]) if rows else None,
        )
    if before is not None:
        statement = statement.where(id_column < before)
    rows = run(statement.order_by(id_column.desc()).limit(size + 1))
    more_older = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        newer=_row_id(rows[0]) if before is not None and rows else None,
        older=_row_id(rows[-1]) if more_older else None,
    )


def _row_id(row: Any) -> int:
    return row.id if hasattr(row, "id") else row[0].id


def capped_count(db: Session, statement: sa.Select, cap: int = 1000) -> int:
    """Count the rows of `statement`, stopping at `cap` (shown as "999+")."""
    limited = statement.limit(cap).subquery()
    return db.scalar(sa.select(sa.func.count()).select_from(limited)) or 0


# --- filters from the query string ---------------------------------------------------------------

E = TypeVar("E", bound=enum.Enum)


def int_arg(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def enum_arg(name: str, enum_cls: type[E]) -> E | None:
    raw = request.args.get(name, "").strip()
    try:
        return enum_cls(raw) if raw else None
    except ValueError:
        return None


def choice_arg(name: str, choices: Sequence[str]) -> str | None:
    raw = request.args.get(name, "").strip()
    return raw if raw in choices else None


def date_arg(name: str) -> dt.date | None:
    raw = request.args.get(name, "").strip()
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def lima_day_start(day: dt.date) -> dt.datetime:
    """The instant a calendar day begins in Peru."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=LIMA).astimezone(dt.UTC)


def date_range(column: Any, start: dt.date | None, end: dt.date | None) -> list[Any]:
    """Conditions for `start` <= day <= `end` (Peruvian calendar days, either end optional)."""
    conditions = []
    if start is not None:
        conditions.append(column >= lima_day_start(start))
    if end is not None:
        conditions.append(column < lima_day_start(end + dt.timedelta(days=1)))
    return conditions


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page_url(**changes: Any) -> str:
    """This page's URL with some query arguments changed (None removes one)."""
    args = request.args.to_dict()
    args.pop("lang", None)
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return url_for(request.endpoint, **(request.view_args or {}), **args)


def export_url(endpoint: str) -> str:
    """The CSV export of this list page, with the page's filters (not its position)."""
    args = request.args.to_dict()
    for key in ("before", "after", "lang"):
        args.pop(key, None)
    return url_for(endpoint, **args)


def back_to(default: str) -> str:
    """The console page the form was posted from (its Referer), else `default`."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc and referrer.netloc != request.host:
        return default
    path = referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return path if safe_next(path) == path else default


# --- what templates see ----------------------------------------------------------------------


def show_phone(phone: str | None) -> str:
    if not phone:
        return ""
    return phone if sees_phones() else mask_phone(phone)


def lima_time(value: dt.datetime | None, seconds: bool = True) -> str:
    if value is None:
        return ""
    return value.astimezone(LIMA).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def number(value: Decimal | int | float | None, digits: int | None = None) -> str:
    if value is None:
        return ""
    if digits is not None:
        return format_decimal(value, format="#,##0." + "0" * digits if digits else "#,##0")
    return format_decimal(value)


def material_label(key: str | None) -> str:
    if not key:
        return ""
    try:
        return domain_text(Material(key).label)
    except ValueError:
        return key


def receipt(code: str | None) -> str:
    return format_code(code) if code else ""


def age(value: dt.datetime | None) -> str:
    """How long ago, in words ("5 min", "3 h", "2 d")."""
    if value is None:
        return ""
    seconds = max(0, int((now() - value).total_seconds()))
    if seconds < 120:
        return _("%(n)d s", n=seconds)
    if seconds < 7200:
        return _("%(n)d min", n=seconds // 60)
    if seconds < 2 * 86400:
        return _("%(n)d h", n=seconds // 3600)
    return _("%(n)d d", n=seconds // 86400)


@bp.app_template_global("console_url_with_lang")
def url_with_lang(language: str) -> str:
    args = request.args.to_dict()
    args["lang"] = language
    return url_for(request.endpoint or "admin.home", **(request.view_args or {}), **args)


@bp.context_processor
def _template_context() -> dict[str, Any]:
    return {
        "current_user": g.get("user"),
        "csrf_token": csrf.token,
        "may_review": may_review,
        "sees_phones": sees_phones,
        "is_admin": lambda: g.get("user") is not None and g.user.role is StaffRole.ADMIN,
        "page_url": page_url,
        "export_url": export_url,
        "console_language": console_language,
        "Role": StaffRole,
    }


for _name, _filter in {
    "phone": show_phone,
    "lima": lima_time,
    "num": number,
    "material": material_label,
    "receipt": receipt,
    "age": age,
    "label": label,
}.items():
    bp.add_app_template_filter(_filter, "console_" + _name)
