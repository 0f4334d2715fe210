"""Alembic environment: one metadata for every package, safe timeouts on PostgreSQL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import admin.models
import flows.models
import gateway.models
import ledger.models
import ledger.witnesses
import registry.models
import registry.partners
import registry.prices
import registry.redflags
from recpo.db import Base, make_engine

_MODELS = (
    admin.models,
    flows.models,
    gateway.models,
    ledger.models,
    ledger.witnesses,
    registry.models,
    registry.partners,
    registry.prices,
    registry.redflags,
)  # imported for their tables

config = context.config
target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    """Run the migrations on an open connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Never queue behind long transactions on a live database, and never run forever.
            connection.execute(text("SET LOCAL lock_timeout = '5s'"))
            connection.execute(text("SET LOCAL statement_timeout = '10min'"))
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the connection handed in by tests, or one made from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run recpo db upgrade")
run_migrations_online()
