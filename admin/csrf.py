"""Cross-site request forgery: a synchronizer token on every console form.

Each browser session holds one random token (in the signed session cookie); every form posts it
back in the hidden field `csrf_token` (or an `X-CSRF-Token` header), and a POST whose token does
not match is refused with 400 before the view runs. The token changes when someone signs in.
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

SESSION_KEY = "console_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


def token() -> str:
    """Return this session's token, making one on first use (templates call it for forms)."""
    value = session.get(SESSION_KEY)
    if not value:
        value = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return value


def rotate() -> None:
    """Give the session a fresh token (after signing in)."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)


def check() -> None:
    """Refuse (400) a request whose token is missing or differs from the session's."""
    expected = session.get(SESSION_KEY)
    given = request.form.get(FIELD) or request.headers.get(HEADER) or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        abort(400, description="missing or wrong CSRF token; reload the page and try again")
