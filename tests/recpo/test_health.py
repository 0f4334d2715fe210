from __future__ import annotations

from pathlib import Path

from recpo.app import create_app
from recpo.db import Database


class TestHealthz:
    def test_ok_with_postgres_and_redis(self, client):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json == {
            "status": "ok",
            "database": {"ok": True, "backend": "postgresql"},
            "redis": {"ok": True, "configured": True},
        }

    def test_redis_unreachable_is_503(self, database, instance_path: Path):
        app = create_app(
            {
                "DATABASE": database,
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "INSTANCE_PATH": str(instance_path),
            }
        )
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.json["status"] == "unavailable"
        assert response.json["redis"] == {"ok": False, "configured": True}
        assert response.json["database"]["ok"] is True

    def test_database_unreachable_is_503(self, instance_path: Path, make_app):
        database = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")
        app = make_app({"DATABASE": database, "INSTANCE_PATH": str(instance_path)})
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.json["database"] == {"ok": False, "backend": "postgresql"}
        # Nothing about the connection (host, user, password) leaks into the answer.
        assert "nobody" not in response.get_data(as_text=True)

    def test_embedded_default_without_redis(
        self, sqlite_database, instance_path: Path, monkeypatch
    ):
        monkeypatch.delenv("REDIS_URL", raising=False)
        app = create_app({"DATABASE": sqlite_database, "INSTANCE_PATH": str(instance_path)})
        response = app.test_client().get("/healthz")
        assert response.status_code == 200
        assert response.json["database"] == {"ok": True, "backend": "sqlite"}
        assert response.json["redis"] == {"ok": True, "configured": False}
