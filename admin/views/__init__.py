"""The DGFM console: a Flask blueprint under /admin (see each module for its pages).

`recpo.app.create_app` registers `bp`; importing the modules below attaches their routes.
"""

from __future__ import annotations

from admin.views import (  # noqa: F401 - imported for their routes
    api_tokens,
    auth,
    dashboard,
    exports,
    flags,
    ledger,
    messages,
    registrants,
    simulator,
    transactions,
    uploads,
    users,
)
from admin.views.common import bp

__all__ = ["bp"]
