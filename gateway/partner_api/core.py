"""The machinery every partner API call goes through: tokens, scopes, rate limits, errors, audit.

- **Tokens**: ``Authorization: Bearer recpo_...``; a missing, unknown or revoked token is a 401
  (with ``WWW-Authenticate``), a token without the endpoint's scope a 403.
- **Rate limits** (GCRA, `gateway.ratelimit`, shared through Redis when configured): per token,
  ``PARTNER_API_RATE_PER_MINUTE`` (default 600) with bursts of a tenth of that; callers without
  a valid token are limited per address (60 a minute). Over the limit: 429 with ``Retry-After``.
- **Errors** are RFC 9457 ``application/problem+json`` documents (`Problem`), whose ``type`` is a
  URL under ``/api/v1/problems/`` that describes the problem.
- **Audit**: every call under /api/v1 adds a `registry.partners.ApiCall` row (institution,
  endpoint, parameters, status, time) once its answer is known; a call whose audit row cannot be
  written is answered 500 instead of with its data.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from gateway.ratelimit import Limiter, Rate, make_limiter
from recpo.runtime import current_runtime, request_session
from registry import partners

log = logging.getLogger(__name__)

bp = Blueprint("partner_api", __name__, url_prefix="/api/v1")

EXTENSION_KEY = "partner_api"
PROBLEM_JSON = "application/problem+json"
REALM = "recpo-api"
PUBLIC_ENDPOINTS = frozenset(
    {"partner_api.index", "partner_api.openapi", "partner_api.problem_type", "partner_api.unknown"}
)

# slug -> (status, title, description)
PROBLEMS: dict[str, tuple[int, str, str]] = {
    "invalid-parameter": (
        400,
        "Invalid parameter",
        "A query or path parameter is malformed, out of range, repeated or unknown; "
        "`errors` names each one.",
    ),
    "unauthorized": (
        401,
        "Missing or invalid token",
        "Send `Authorization: Bearer <token>` with a token that DGFM issued to your institution "
        "and has not revoked.",
    ),
    "insufficient-scope": (
        403,
        "Insufficient scope",
        "The token is valid but lacks the scope this endpoint requires (`required_scope`).",
    ),
    "not-found": (404, "Not found", "No such resource, or no such endpoint."),
    "method-not-allowed": (405, "Method not allowed", "The API only answers GET."),
    "rate-limited": (
        429,
        "Too many requests",
        "The token (or address) is over its rate limit; retry after `Retry-After` seconds.",
    ),
    "internal-error": (
        500,
        "Internal error",
        "The request could not be answered; it has been logged. Try again later.",
    ),
    "http-error": (400, "HTTP error", "The request could not be processed as sent."),
}


class Problem(Exception):
    """An RFC 9457 problem to answer with; `extra` members are added to the document."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.slug = slug
        self.status = status or PROBLEMS[slug][0]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def invalid(name: str, reason: str) -> Problem:
    """A 400 for one bad parameter."""
    return Problem(
        "invalid-parameter",
        f"{name}: {reason}",
        errors=[{"parameter": name, "detail": reason}],
    )


def problem_type_url(slug: str) -> str:
    return f"{current_runtime().settings.public_base_url}/api/v1/problems/{slug}"


def problem_response(problem: Problem) -> Response:
    _status, title, _description = PROBLEMS[problem.slug]
    body = {
        "type": problem_type_url(problem.slug),
        "title": title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.path,
        **problem.extra,
    }
    response = json_response(body, problem.status, mimetype=PROBLEM_JSON)
    response.headers.update(problem.headers)
    return response


def json_response(body: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=status, mimetype=mimetype)


# --- state: limiter and rates ---------------------------------------------------------------------


def _per_minute_rate(environ: Mapping[str, str]) -> Rate:
    raw = environ.get("PARTNER_API_RATE_PER_MINUTE", "").strip() or "600"
    try:
        per_minute = float(raw)
    except ValueError:
        raise ValueError(f"PARTNER_API_RATE_PER_MINUTE must be a number, not {raw!r}") from None
    if not 0 < per_minute < float("inf"):
        raise ValueError(f"PARTNER_API_RATE_PER_MINUTE must be above 0, not {raw!r}")
    return Rate(count=per_minute, period=60, burst=max(1.0, per_minute / 10))


@dataclass
class ApiState:
    """The API's per-app state: the limiter and the rates (tests may replace them)."""

    limiter: Limiter
    token_rate: Rate
    anonymous_rate: Rate = field(default_factory=lambda: Rate(count=60, period=60, burst=30))


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    runtime = state.app.extensions["recpo"]
    state.app.extensions[EXTENSION_KEY] = ApiState(
        limiter=make_limiter(runtime.redis), token_rate=_per_minute_rate(os.environ)
    )


def api_state() -> ApiState:
    return current_app.extensions[EXTENSION_KEY]


# --- authentication, scopes, rate limits ----------------------------------------------------------


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _limit(key: str, rate: Rate) -> None:
    wait = api_state().limiter.wait(key, rate)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise Problem(
            "rate-limited",
            f"rate limit exceeded; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


def _unauthorized(detail: str, error: str | None) -> Problem:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}", error_description="{detail}"'
    return Problem("unauthorized", detail, headers={"WWW-Authenticate": challenge})


@bp.before_request
def _authenticate() -> Response | None:
    g.api_token = None
    presented = _bearer()
    token = partners.find_token(request_session(), presented) if presented else None
    g.api_token = token
    try:
        if token is not None and token.active:
            _limit(f"api:token:{token.id}", api_state().token_rate)
            return None
        _limit(f"api:addr:{request.remote_addr or '-'}", api_state().anonymous_rate)
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if presented is None:
            raise _unauthorized("an Authorization: Bearer token is required", None)
        if token is None:
            raise _unauthorized("the token is not valid", "invalid_token")
        raise _unauthorized("the token has been revoked", "invalid_token")
    except Problem as problem:
        return problem_response(problem)


def requires(scope: str) -> Callable:
    """Decorate a view: answer 403 unless the caller's token holds `scope`."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            token = current_token()
            if not token.allows(scope):
                raise Problem(
                    "insufficient-scope",
                    f"this endpoint requires the scope {scope!r}",
                    required_scope=scope,
                    headers={
                        "WWW-Authenticate": (
                            f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
                        )
                    },
                )
            return view(*args, **kwargs)

        wrapped.required_scope = scope  # type: ignore[attr-defined]
        return wrapped

    return decorate


def current_token() -> partners.PartnerToken:
    token = g.get("api_token")
    if token is None or not token.active:  # before_request refuses these; never reached
        raise _unauthorized("the token is not valid", "invalid_token")
    return token


def personal_data() -> bool:
    """True when the caller's token may see names, document numbers and phones."""
    return current_token().allows(partners.PERSONAL_DATA)


# --- errors ---------------------------------------------------------------------------------------


@bp.errorhandler(Problem)
def _problem(problem: Problem) -> Response:
    return problem_response(problem)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    if isinstance(exc, NotFound):
        return problem_response(Problem("not-found", "no such resource"))
    if isinstance(exc, MethodNotAllowed):
        problem = Problem(
            "method-not-allowed",
            f"{request.method} is not allowed here",
            headers={"Allow": ", ".join(exc.valid_methods or ["GET", "HEAD"])},
        )
        return problem_response(problem)
    if code >= 500:
        return problem_response(Problem("internal-error", "the request could not be answered"))
    return problem_response(Problem("http-error", exc.description or exc.name, status=code))


@bp.app_errorhandler(NotFound)
def _unrouted(exc: NotFound) -> Response | NotFound:
    """A path under the API that no route matches at all still gets the API's answer.

    The catch-all route covers unknown paths, but no route can match a path with a line break
    in it (`%0A`): Werkzeug's converters stop there, and the app's HTML 404 would answer.
    Anywhere else the 404 stays as it is.
    """
    prefix = bp.url_prefix or ""
    if request.blueprint is None and (request.path + "/").startswith(prefix + "/"):
        return problem_response(Problem("not-found", "no such endpoint; see /api/v1/openapi.json"))
    return exc


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("partner API: unexpected error on %s %s", request.method, request.path)
    return problem_response(Problem("internal-error", "the request could not be answered"))


# --- audit and headers ----------------------------------------------------------------------------


def _parameters() -> str:
    args = {key: values if len(values) > 1 else values[0] for key, values in request.args.lists()}
    view_args = {k: str(v) for k, v in (request.view_args or {}).items()}
    return json.dumps(
        {"query": args, "path": view_args}, sort_keys=True, ensure_ascii=False, default=str
    )


@bp.after_request
def _audit(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    token = g.get("api_token")
    token_id, institution, active = (
        (token.id, token.institution, token.active) if token is not None else (None, None, False)
    )
    now = current_runtime().clock.now()
    session = request_session()
    try:
        session.rollback()  # the views only read; the audit row gets its own transaction
        with session.begin():
            session.add(
                partners.ApiCall(
                    at=now,
                    token_id=token_id,
                    institution=institution,
                    method=request.method[:10],
                    endpoint=request.path[:300],
                    parameters=_parameters(),
                    status=response.status_code,
                    address=(request.remote_addr or "")[:64] or None,
                )
            )
            if token_id is not None and active:
                partners.touch(session, token_id, now)
    except Exception:
        log.exception("partner API: the audit row could not be written; refusing the answer")
        failed = problem_response(Problem("internal-error", "the call could not be audited"))
        failed.headers["Cache-Control"] = "no-store"
        return failed
    return response
