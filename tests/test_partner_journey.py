"""A partner institution's first hour, as README.md ("API for partner institutions", steps 1-4)
and the OpenAPI document tell it: DGFM creates a token; the partner pulls a week of Puno
transactions, verifies a receipt offline, and runs a witness that catches a rewritten log.

Everything goes through the real interfaces: `recpo` commands in subprocesses, the registry
served by gunicorn (`recpo serve`) on a PostgreSQL database of its own, the partner's witness
served by `recpo witness serve` on its own SQLite file, and HTTP between them. Trades are recorded
by two demo phones with `recpo simulate`. Only the attack, a database superuser rewriting the
registry's history and re-signing it with the registry's own key, is done in SQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema_rs
import requests
import sqlalchemy as sa

from ledger.note import Signer
from ledger.witnesses import WitnessStatus
from recpo.clock import lima_date
from recpo.db import Database
from tests.conftest import new_postgres_database
from tests.ledger.test_witness import ORIGIN, _rewrite_history

PROJECT = Path(__file__).resolve().parents[1]
RECPO = str(Path(sys.executable).parent / "recpo")
BUYER, JUANA, PEDRO = "987000001", "987000011", "987000012"  # demo phones (README)
WITNESS = "witness.sunat.test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recpo(env: dict[str, str], *args: str, stdin: str = "", cwd: Path | None = None) -> str:
    """Run a `recpo` command as a person would; return its standard output."""
    done = subprocess.run(
        [RECPO, *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    assert done.returncode == 0, f"recpo {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextmanager
def serving(env: dict[str, str], url: str, log: Path, *args: str) -> Iterator[None]:
    """Run `recpo <args>` (a server) until the block ends; wait until `url` answers."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [RECPO, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, f"recpo {args[0]} stopped:\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"recpo {args[0]} never answered:\n{log.read_text()}"
            )
            time.sleep(0.2)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def check_proof(
    env: dict[str, str], folder: Path, file: str, *keys: str
) -> subprocess.CompletedProcess:
    """`recpo ledger check-proof FILE --key ... [--witness ...]`, run in the partner's folder."""
    return subprocess.run(
        [RECPO, "ledger", "check-proof", file, *keys],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=60,
    )


def purchase(env: dict[str, str], seller_phone: str, seller_document: str) -> None:
    """The demo buyer registers a purchase and the seller confirms it with her mining right."""
    recpo(env, "simulate", BUYER, stdin=f"COMPRA {seller_document} DORE 25.5G 850 5400\nSI\n")
    said = recpo(env, "simulate", seller_phone, stdin="SI\n1\n")
    assert "Recibo" in said or "recibo" in said.lower(), said


def test_a_partner_pulls_puno_verifies_a_receipt_offline_and_its_witness_catches_a_rewrite(
    tmp_path: Path,
) -> None:
    registry_port, witness_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{registry_port}"
    witness_url = f"http://127.0.0.1:{witness_port}"
    partner = tmp_path / "sunat"  # the partner's own machine: a folder of its own
    partner.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    clean["PYTHONPATH"] = str(PROJECT)

    # The partner makes its witness key and sends DGFM the verifier key (line 2).
    key_lines = recpo(clean, "witness", "keygen", "--name", WITNESS).splitlines()
    (partner / "witness.key").write_text("\n".join(key_lines) + "\n", encoding="utf-8")
    witness_key = key_lines[1]

    with new_postgres_database() as database_url:
        # DGFM's registry: its own signing key, and the partner's witness configured.
        signing_key = recpo(clean, "ledger", "keygen", "--name", ORIGIN).splitlines()[0]
        registry = clean | {
            "DATABASE_URL": database_url,
            "RECPO_INSTANCE_PATH": str(tmp_path / "instance"),
            "PORT": str(registry_port),
            "PUBLIC_BASE_URL": base,
            "LEDGER_ORIGIN": ORIGIN,
            "LEDGER_SIGNING_KEY": signing_key,
            "LEDGER_WITNESSES": f"{witness_url} {witness_key}",
        }
        recpo(registry, "db", "upgrade")
        recpo(registry, "demo")
        serve = ("serve", "--port", str(registry_port), "--workers", "1")
        log = tmp_path / "registry.log"

        with serving(registry, f"{base}/healthz", log, *serve):
            # 1. DGFM creates the token (the CLI prints it alone on stdout).
            token = recpo(
                registry, "api", "create-token", "SUNAT", "--scopes", "transactions:read"
            ).strip()
            assert token.startswith("recpo_")
            bearer = {"Authorization": f"Bearer {token}"}

            # The partner reads the OpenAPI document (no token needed) and keeps the log's key.
            document = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
            assert document["openapi"].startswith("3.1")
            page_schema = jsonschema_rs.Draft202012Validator(
                {"$ref": "#/components/schemas/TransactionPage", **document}
            )
            ledger_key = requests.get(f"{base}/ledger/key", timeout=10).text.strip()
            (partner / "ledger.key").write_text(ledger_key + "\n", encoding="utf-8")

            # 4 (set up first). The partner's witness, following the registry's log.
            with serving(
                clean,
                f"{witness_url}/",
                partner / "witness.log",
                *("witness", "serve", "--name", WITNESS, "--key", str(partner / "witness.key")),
                *("--log-key", ledger_key, "--port", str(witness_port)),
            ):
                # Trades: two in Puno (Juana, Ananea), one in Madre de Dios (Pedro, Huepetuhe).
                purchase(registry, JUANA, "45678912")
                purchase(registry, PEDRO, "41234567")
                purchase(registry, JUANA, "45678912")

                # 2. A week of Puno, walked page by page as the README says.
                today = lima_date(dt.datetime.now(dt.UTC))
                week = f"from={today - dt.timedelta(days=6)}&to={today}"
                path = f"/api/v1/transactions?department=PUNO&{week}&status=confirmed&limit=1"
                puno, cursor = [], None
                while True:
                    url = f"{base}{path}" + (f"&cursor={cursor}" if cursor else "")
                    answer = requests.get(url, headers=bearer, timeout=10)
                    assert answer.status_code == 200, answer.text
                    page = answer.json()
                    page_schema.validate(page)  # as the OpenAPI document describes it
                    puno.extend(page["data"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                assert len(puno) == 2
                assert {t["district"] for t in puno} == {"ANANEA"}
                assert all(t["mining_right_declared"] and t["codigo_unico"] is None for t in puno)
                assert all("name" not in t["seller"] for t in puno)  # no personal_data scope
                refused = requests.get(f"{base}{path}", timeout=10)
                assert refused.status_code == 401
                assert refused.headers["Content-Type"] == "application/problem+json"

                # 3. The receipt of the first Puno trade, and the registry's checkpoint, now
                # cosigned by the partner's witness.
                receipt = puno[0]["receipt_code"]
                proof = requests.get(f"{base}/r/{receipt}/proof", timeout=10).text
                (partner / "receipt.proof").write_text(proof, encoding="utf-8")
                checkpoint = requests.get(f"{base}/ledger/checkpoint", timeout=10).text
                assert f"— {WITNESS} " in checkpoint
                assert "cosigned up to size 3" in requests.get(f"{witness_url}/", timeout=10).text

        # The registry and the witness are down: the check needs neither, nor a database.
        offline = clean | {"RECPO_INSTANCE_PATH": str(partner / "nothing-here")}
        done = check_proof(
            offline, partner, "receipt.proof", "--key", ledger_key, "--witness", witness_key
        )
        assert done.returncode == 0, done.stderr
        checked = done.stdout
        assert checked.startswith(
            f"proof valid: entry 0 is in {ORIGIN} at tree size 3, cosigned by {WITNESS}"
        )
        entry = json.loads(checked.split("\n", 1)[1])
        assert (entry["department"], entry["quantity"], entry["price_pen"]) == (
            "PUNO",
            "25.5",
            "5400.00",
        )
        # A bundle whose entry was changed does not pass.
        lines = proof.split("\n")
        [at] = [i for i, line in enumerate(lines) if line.startswith("extra ")]
        forged = base64.b64decode(lines[at].removeprefix("extra ")).replace(
            b'"5400.00"', b'"540.00"'
        )
        lines[at] = "extra " + base64.b64encode(forged).decode()
        (partner / "forged.proof").write_text("\n".join(lines), encoding="utf-8")
        done = check_proof(offline, partner, "forged.proof", "--key", ledger_key)
        assert done.returncode == 1 and "proof NOT valid" in done.stderr

        # The attack: entry 0 (the first Puno trade) rewritten, everything after it rebuilt
        # and every checkpoint re-signed with the registry's own key. The registry's own
        # verification cannot tell.
        database = Database.from_url(database_url)
        try:
            rewritten = json.loads(base64.b64decode(lines[at].removeprefix("extra ")))
            body = rewritten["body"] | {"price_pen": "540.00"}
            _rewrite_history(database, Signer.from_text(signing_key), 0, body)
            assert "ledger valid: 3 entries" in recpo(registry, "ledger", "verify")

            with (
                serving(registry, f"{base}/healthz", log, *serve),
                serving(
                    clean,
                    f"{witness_url}/",
                    partner / "witness.log",
                    *("witness", "serve", "--name", WITNESS),
                    *("--key", str(partner / "witness.key"), "--log-key", ledger_key),
                    *("--port", str(witness_port)),
                ),
            ):
                purchase(registry, JUANA, "45678912")  # the next checkpoint: size 4

                # 4. The witness refuses it and says so; nothing the witness cosigned moved.
                about = requests.get(f"{witness_url}/", timeout=10).text
                assert "cosigned up to size 3" in about
                assert f"ALARM log {ORIGIN}: 1 checkpoint(s) signed by the log refused" in about
                assert "422 consistency proof does not verify" in about
                assert "refused a checkpoint signed by" in (partner / "witness.log").read_text()
                checkpoint = requests.get(f"{base}/ledger/checkpoint", timeout=10).text
                assert checkpoint.split("\n")[1] == "4" and WITNESS not in checkpoint
                # A receipt of the rewritten history is not cosigned by the partner's witness.
                latest = requests.get(
                    f"{base}/api/v1/transactions?department=PUNO&{week}&status=confirmed",
                    headers=bearer,
                    timeout=10,
                ).json()["data"][-1]["receipt_code"]
                new_proof = requests.get(f"{base}/r/{latest}/proof", timeout=10).text
                (partner / "new.proof").write_text(new_proof, encoding="utf-8")
                refused_proof = check_proof(
                    offline, partner, "new.proof", "--key", ledger_key, "--witness", witness_key
                )
                assert refused_proof.returncode == 1
                assert f"not cosigned by {WITNESS}" in refused_proof.stderr

            # DGFM's side: the alarm the console shows.
            with database.transaction() as session:
                [status] = session.scalars(sa.select(WitnessStatus)).all()
            assert (status.witness_name, status.alarm, status.last_status) == (
                WITNESS,
                True,
                422,
            )
            assert status.cosigned_size == 3
        finally:
            database.dispose()
