"""The migrations build exactly the schema the models describe, and can be walked both ways."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import admin.models
import registry.models
from migrations import SCRIPT_LOCATION, alembic_config
from recpo.db import Base, make_engine

_MODELS = (admin.models, registry.models)


def _differences(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


class TestMigrations:
    def test_head_matches_models_on_postgres(self, engine):
        assert _differences(engine) == []

    def test_head_matches_models_on_sqlite(self, sqlite_url):
        eng = make_engine(sqlite_url)
        try:
            assert _differences(eng) == []
        finally:
            eng.dispose()

    def test_down_to_base_and_up_again_on_sqlite(self, tmp_path: Path):
        url = f"sqlite:///{tmp_path / 'walk.sqlite3'}"
        config = alembic_config(url)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        eng = make_engine(url)
        try:
            assert sa.inspect(eng).get_table_names() == ["alembic_version"]
        finally:
            eng.dispose()
        command.upgrade(config, "head")

    def test_one_head_and_date_prefixed_files(self):
        script = ScriptDirectory.from_config(alembic_config())
        assert len(script.get_heads()) == 1
        for path in (SCRIPT_LOCATION / "versions").glob("*.py"):
            assert re.match(r"^\d{8}_\d{4}_[0-9a-f]+_\w+\.py$", path.name), path.name
