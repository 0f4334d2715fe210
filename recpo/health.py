"""`GET /healthz`: can this process reach its database and Redis?"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from recpo.runtime import current_runtime

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Report database and Redis reachability: 200 when all configured parts answer, else 503."""
    runtime = current_runtime()
    checks: dict[str, dict[str, object]] = {}
    try:
        runtime.database.ping()
        checks["database"] = {"ok": True, "backend": runtime.database.dialect}
    except Exception as exc:
        log.warning("health check: database unreachable: %s", type(exc).__name__)
        checks["database"] = {"ok": False, "backend": runtime.database.dialect}
    if runtime.redis is None:
        checks["redis"] = {"ok": True, "configured": False}
    else:
        try:
            runtime.redis.ping()
            checks["redis"] = {"ok": True, "configured": True}
        except Exception as exc:
            log.warning("health check: redis unreachable: %s", type(exc).__name__)
            checks["redis"] = {"ok": False, "configured": True}
    healthy = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if healthy else "unavailable", **checks}
    return jsonify(body), 200 if healthy else 503
