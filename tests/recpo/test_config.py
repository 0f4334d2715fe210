from __future__ import annotations

import stat
from pathlib import Path

import pytest

from recpo.config import Settings, instance_secret


class TestSettings:
    def test_embedded_defaults(self, tmp_path: Path):
        settings = Settings.from_env({}, tmp_path)
        assert settings.database_url == f"sqlite:///{tmp_path / 'recpo.sqlite3'}"
        assert settings.redis_url is None
        assert settings.port == 5000
        assert settings.public_base_url == "http://127.0.0.1:5000"
        assert settings.ussd_service_code == "*500#"
        assert settings.ledger_origin == "recpo.example/ledger"
        assert settings.twilio_account_sid is None

    def test_environment_wins(self, tmp_path: Path):
        env = {
            "DATABASE_URL": "postgresql+psycopg://u@db/recpo",
            "REDIS_URL": "redis://cache:6379/0",
            "PORT": "8080",
            "PUBLIC_BASE_URL": "https://recpo.minem.gob.pe/",
            "SECRET_KEY": "s" * 40,
            "RECEIPT_SECRET": "r" * 40,
            "LEDGER_ORIGIN": "recpo.minem.gob.pe/ledger/v1",
            "USSD_SERVICE_CODE": "*123#",
        }
        settings = Settings.from_env(env, tmp_path)
        assert settings.database_url == env["DATABASE_URL"]
        assert settings.redis_url == env["REDIS_URL"]
        assert settings.port == 8080
        assert settings.public_base_url == "https://recpo.minem.gob.pe"
        assert settings.secret_key == "s" * 40
        assert settings.receipt_secret == "r" * 40
        assert settings.ledger_origin == "recpo.minem.gob.pe/ledger/v1"
        assert settings.ussd_service_code == "*123#"
        # Given secrets are not written to disk.
        assert not (tmp_path / "secret_key").exists()
        assert not (tmp_path / "receipt_secret").exists()

    def test_public_url_follows_port(self, tmp_path: Path):
        assert Settings.from_env({"PORT": "5123"}, tmp_path).public_base_url == (
            "http://127.0.0.1:5123"
        )

    @pytest.mark.parametrize("port", ["abc", "0", "70000", "-1"])
    def test_bad_port_is_refused_with_reason(self, tmp_path: Path, port: str):
        with pytest.raises(ValueError, match="PORT"):
            Settings.from_env({"PORT": port}, tmp_path)

    def test_secrets_are_not_in_repr(self, tmp_path: Path):
        settings = Settings.from_env(
            {"SECRET_KEY": "topsecretvalue", "TWILIO_AUTH_TOKEN": "tok123"}, tmp_path
        )
        text = repr(settings)
        assert "topsecretvalue" not in text
        assert "tok123" not in text


class TestInstanceSecrets:
    def test_generated_once_with_mode_0600(self, tmp_path: Path):
        first = Settings.from_env({}, tmp_path)
        second = Settings.from_env({}, tmp_path)
        assert first.secret_key == second.secret_key
        assert first.receipt_secret == second.receipt_secret
        assert first.secret_key != first.receipt_secret
        assert len(first.secret_key) == 64
        for name in ("secret_key", "receipt_secret"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, name

    def test_existing_file_is_read_not_regenerated(self, tmp_path: Path):
        (tmp_path / "token").write_text("kept\n")
        assert instance_secret(tmp_path, "token", lambda: "new") == "kept"

    def test_creates_instance_folder(self, tmp_path: Path):
        folder = tmp_path / "a" / "b"
        assert instance_secret(folder, "x", lambda: "v") == "v"
        assert (folder / "x").read_text() == "v\n"
