"""The roof: build the Flask application with every blueprint registered."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from admin import views as admin_views
from flows.engine import Conversations
from flows.messages import Channel
from gateway import ledger_api, metrics, partner_api, service
from gateway.channels import twilio, ussd, whatsapp_cloud
from gateway.dispatch import InProcessDispatcher, Relay, RQDispatcher
from gateway.ratelimit import make_limiter
from gateway.senders import Sender, build_senders
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from ledger.witnesses import BackgroundSubmitter, parse_witnesses
from recpo import health
from recpo.clock import SystemClock
from recpo.config import Settings, instance_secret
from recpo.db import Database
from recpo.redis import connect_redis
from recpo.runtime import Runtime

MAX_REQUEST_BYTES = 1024 * 1024


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only for the requests that bring the cookie.

    Flask builds its signing serializer on every request before it looks for the cookie. Only
    the console's browsers carry one; webhooks and API calls never do, and for them that was 3%
    of a webhook's Python. A request without the cookie gets a new empty session, as from Flask.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the application.

    `test_config` may override any environment variable by name (string values), and may hand in
    ready-made services: `INSTANCE_PATH`, `DATABASE` (a `recpo.db.Database`), `CLOCK`, `SENDERS`
    (channel -> sender, for in-process sending).
    """
    overrides = dict(test_config or {})
    environ = {**os.environ, **{k: v for k, v in overrides.items() if isinstance(v, str)}}
    instance_path = overrides.get("INSTANCE_PATH")
    settings = Settings.from_env(environ, Path(instance_path) if instance_path else None)

    app = Flask("recpo", instance_path=str(settings.instance_path))
    app.session_interface = CookieSessions()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        JSON_SORT_KEYS=False,
    )
    runtime = Runtime(
        settings=settings,
        database=overrides.get("DATABASE") or Database.from_url(settings.database_url),
        redis=connect_redis(settings.redis_url),
        clock=overrides.get("CLOCK") or SystemClock(),
    )
    runtime.init_app(app)
    log = build_log(runtime)
    app.extensions[ledger_api.EXTENSION_KEY] = log
    # A bad LEDGER_WITNESSES fails here, at start-up, not at the first checkpoint.
    witnesses = BackgroundSubmitter(
        runtime.database, log, parse_witnesses(settings.ledger_witnesses)
    )
    app.extensions[ledger_api.WITNESSES_KEY] = witnesses
    app.extensions[service.EXTENSION_KEY] = build_gateway(
        runtime, log, witnesses, overrides.get("SENDERS")
    )
    app.register_blueprint(health.bp)
    app.register_blueprint(ledger_api.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(partner_api.bp)
    for channel in (twilio, whatsapp_cloud, ussd):
        app.register_blueprint(channel.bp)

    from recpo.cli import register_commands

    register_commands(app)
    _configure_logging(app)
    return app


def build_log(runtime: Runtime) -> Log:
    """Build the ledger from the settings, generating its signing key once if none is given."""
    settings = runtime.settings
    key_text = settings.ledger_signing_key or instance_secret(
        settings.instance_path,
        "ledger_signing_key",
        lambda: generate_signer_key(settings.ledger_origin),
    )
    return Log(
        origin=settings.ledger_origin,
        signer=Signer.from_text(key_text),
        receipt_secret=settings.receipt_secret.encode(),
        clock=runtime.clock,
    )


def build_gateway(
    runtime: Runtime,
    log: Log,
    witnesses: BackgroundSubmitter,
    senders: dict[Channel, Sender] | None = None,
) -> service.Gateway:
    """Build the gateway: RQ dispatch when Redis is configured, in-process sending otherwise."""
    dispatcher: InProcessDispatcher | Relay
    if runtime.redis is not None:
        dispatcher = Relay(RQDispatcher(runtime.redis))
    else:
        senders = senders or build_senders(runtime.settings)
        dispatcher = InProcessDispatcher(runtime.database, senders, runtime.clock)
    return service.Gateway(
        settings=runtime.settings,
        database=runtime.database,
        conversations=Conversations(ledger=log),
        log=log,
        witnesses=witnesses,
        dispatcher=dispatcher,
        clock=runtime.clock,
        limiter=make_limiter(runtime.redis),
    )


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app.logger.setLevel(logging.INFO)
