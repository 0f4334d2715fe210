"""`make test` starts throwaway PostgreSQL and Redis servers when none answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_throwaway_servers_start_when_none_answers():
    # Point the "standard" ports at closed ones, as on a machine without the servers running.
    # The folder must be reachable by the postgres user, which pytest's tmp_path is not.
    workdir = Path(tempfile.mkdtemp(prefix="recpo-services-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
    pg_port, redis_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {
        "VENV_PYTHON": str(ROOT / ".venv" / "bin" / "python"),
        "PG_STANDARD_PORT": str(_free_port()),
        "REDIS_STANDARD_PORT": str(_free_port()),
        "PG_THROWAWAY_PORT": str(pg_port),
        "REDIS_THROWAWAY_PORT": str(redis_port),
        "THROWAWAY_DIR": str(workdir),
    }
    script = ". scripts/services.sh && ensure_postgres && ensure_redis"
    script += ' && echo "$DATABASE_URL $REDIS_URL"'
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert result.returncode == 0, result.stderr
        database_url, redis_url = result.stdout.split()
        assert database_url == f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/postgres"
        assert redis_url == f"redis://127.0.0.1:{redis_port}/15"
        assert "starting a throwaway PostgreSQL" in result.stderr
        assert "starting a throwaway Redis" in result.stderr
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with redis.Redis.from_url(redis_url) as client:
            assert client.ping()
    finally:
        pg_ctl = next(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), None)
        if (workdir / "pg" / "PG_VERSION").exists() and pg_ctl:
            stop = [str(pg_ctl), "-D", str(workdir / "pg"), "-m", "immediate", "stop"]
            if os.geteuid() == 0:
                stop = ["runuser", "-u", "postgres", "--", *stop]
            subprocess.run(stop, capture_output=True, timeout=60)
        with contextlib.suppress(redis.ConnectionError), redis.Redis(port=redis_port) as client:
            client.shutdown(nosave=True)
        shutil.rmtree(workdir, ignore_errors=True)
