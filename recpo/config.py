"""Configuration, read only from environment variables (DESIGN.md §6).

Every setting has an embedded default so that an unconfigured checkout runs: SQLite under the
instance folder, no Redis, the console provider. Secrets that are not given are generated once into
the instance folder (mode 0600) and read back on every later start, so sessions, receipt codes and
the ledger key survive restarts.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_instance_path() -> Path:
    """Return the instance folder: `RECPO_INSTANCE_PATH`, else `instance/` beside the code."""
    return Path(os.environ.get("RECPO_INSTANCE_PATH") or PROJECT_ROOT / "instance")


def instance_secret(instance_path: Path, name: str, generate: Callable[[], str]) -> str:
    """Read the secret stored as `name` in the instance folder, creating it once if missing.

    Creation uses O_EXCL so that two processes starting together agree on one value.
    """
    instance_path.mkdir(parents=True, exist_ok=True)
    path = instance_path / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
        # Another process created the file and has not written it yet.
        for _ in range(50):
            time.sleep(0.02)
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value
        raise RuntimeError(f"instance secret {path} is empty") from None
    value = generate()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


def _token() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True)
class Settings:
    """The service's settings; build it with `Settings.from_env`."""

    instance_path: Path
    database_url: str
    redis_url: str | None
    port: int
    secret_key: str = field(repr=False)
    public_base_url: str
    receipt_secret: str = field(repr=False)
    ledger_origin: str
    ledger_signing_key: str | None = field(repr=False)
    ledger_witnesses: str | None
    twilio_account_sid: str | None
    twilio_auth_token: str | None = field(repr=False)
    twilio_sms_from: str | None
    twilio_whatsapp_from: str | None
    twilio_api_url: str | None
    meta_app_secret: str | None = field(repr=False)
    meta_verify_token: str | None = field(repr=False)
    meta_access_token: str | None = field(repr=False)
    meta_phone_number_id: str | None
    meta_api_url: str | None
    ussd_service_code: str

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, instance_path: Path | None = None
    ) -> Settings:
        """Build settings from environment variables, generating missing secrets."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        if instance_path is None:
            raw = get("RECPO_INSTANCE_PATH")
            instance_path = Path(raw) if raw else default_instance_path()
        port_text = get("PORT") or "5000"
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"PORT must be a whole number, not {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"PORT must be between 1 and 65535, not {port}")

        database_url = get("DATABASE_URL") or f"sqlite:///{instance_path / 'recpo.sqlite3'}"
        if database_url.startswith("sqlite:///") and database_url != "sqlite:///:memory:":
            Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

        return cls(
            instance_path=instance_path,
            database_url=database_url,
            redis_url=get("REDIS_URL"),
            port=port,
            secret_key=get("SECRET_KEY") or instance_secret(instance_path, "secret_key", _token),
            public_base_url=(get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
            receipt_secret=get("RECEIPT_SECRET")
            or instance_secret(instance_path, "receipt_secret", _token),
            ledger_origin=get("LEDGER_ORIGIN") or "recpo.example/ledger",
            ledger_signing_key=get("LEDGER_SIGNING_KEY"),
            ledger_witnesses=get("LEDGER_WITNESSES"),
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_sms_from=get("TWILIO_SMS_FROM"),
            twilio_whatsapp_from=get("TWILIO_WHATSAPP_FROM"),
            twilio_api_url=get("TWILIO_API_URL"),
            meta_app_secret=get("META_APP_SECRET"),
            meta_verify_token=get("META_VERIFY_TOKEN"),
            meta_access_token=get("META_ACCESS_TOKEN"),
            meta_phone_number_id=get("META_PHONE_NUMBER_ID"),
            meta_api_url=get("META_API_URL"),
            ussd_service_code=get("USSD_SERVICE_CODE") or "*500#",
        )
