"""`make run` on the embedded defaults: SQLite in the instance folder, no Redis, demo data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_until_healthy(env: dict[str, str], port: int) -> tuple[dict, str]:
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert health is not None, "make run never answered /healthz"
    finally:
        # Ctrl-C reaches the whole foreground process group, as in a terminal; like a person, wait
        # until the last request has been answered (a worker cut mid-request logs its traceback).
        time.sleep(1)
        os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError(f"make run did not stop on Ctrl-C:\n{output}") from None
    return health, output


def test_make_run_serves_healthz_and_keeps_data(tmp_path: Path):
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "MAKEFLAGS", "MAKELEVEL"}
    }
    env |= {"PORT": str(port), "RECPO_INSTANCE_PATH": str(tmp_path / "instance")}

    health, output = _run_until_healthy(env, port)
    assert health == {
        "status": "ok",
        "database": {"ok": True, "backend": "sqlite"},
        "redis": {"ok": True, "configured": False},
    }
    assert (tmp_path / "instance" / "recpo.sqlite3").exists()
    assert "demo data: 5 new registrants" in output
    assert "console user 'admin' created with password: " in output
    assert "Traceback" not in output, output

    health, output = _run_until_healthy(env, port)
    assert health["status"] == "ok"
    assert "demo data: 0 new registrants" in output
    assert "already exists (password unchanged)" in output
    assert "Traceback" not in output, output
