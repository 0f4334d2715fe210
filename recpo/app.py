"""The roof: build the Flask application with every blueprint registered."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from recpo import health
from recpo.clock import SystemClock
from recpo.config import Settings
from recpo.db import Database
from recpo.redis import connect_redis
from recpo.runtime import Runtime

MAX_REQUEST_BYTES = 1024 * 1024


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the application.

    `test_config` may override any environment variable by name (string values), and may hand in
    ready-made services: `INSTANCE_PATH`, `DATABASE` (a `recpo.db.Database`), `CLOCK`.
    """
    overrides = dict(test_config or {})
    environ = {**os.environ, **{k: v for k, v in overrides.items() if isinstance(v, str)}}
    instance_path = overrides.get("INSTANCE_PATH")
    settings = Settings.from_env(environ, Path(instance_path) if instance_path else None)

    app = Flask("recpo", instance_path=str(settings.instance_path))
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
    app.register_blueprint(health.bp)

    from recpo.cli import register_commands

    register_commands(app)
    _configure_logging(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app.logger.setLevel(logging.INFO)
