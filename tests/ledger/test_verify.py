"""`verify_log` and `recpo ledger verify` name the first index where stored history was changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.log import Log
from ledger.note import Signer, generate_signer_key, sign_note
from ledger.verify import verify_log
from recpo.app import create_app

ORIGIN = "recpo.test/ledger"
SECRET = b"receipt-secret-for-tests-0123456789"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_text(generate_signer_key(ORIGIN))


@pytest.fixture
def filled(committing_database, signer, clock):
    """A committed log of 40 entries in batches of 10 (checkpoints at 10, 20, 30, 40)."""
    log = Log(ORIGIN, signer, SECRET, clock)
    for start in range(0, 40, 10):
        with committing_database.transaction() as session:
            for i in range(start, start + 10):
                log.append(session, "test", {"n": i})
        log.sequence(committing_database)
    return committing_database


def _tamper(database, *statements: str) -> None:
    """Change rows as a superuser would: switch the append-only triggers off first."""
    with database.transaction() as session:
        for table in ("ledger_entries", "ledger_nodes", "ledger_checkpoints"):
            session.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            session.connection().exec_driver_sql(statement)
        for table in ("ledger_entries", "ledger_nodes", "ledger_checkpoints"):
            for trigger in ("append_only", "no_truncate"):
                session.execute(
                    sa.text(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_{trigger}")
                )


def _verify(database, signer):
    with database.transaction() as session:
        return verify_log(session, signer.verifier(), ORIGIN)


class TestVerify:
    def test_an_untouched_log_verifies(self, filled, signer):
        report = _verify(filled, signer)
        assert report.ok, report.problem
        assert (report.entries, report.checkpoints) == (40, 4)

    def test_changed_entry_bytes_are_named(self, filled, signer):
        _tamper(
            filled,
            "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
            " '\"n\":17', '\"n\":71'), 'UTF8')"
            " WHERE idx = 17",
        )
        report = _verify(filled, signer)
        assert not report.ok
        assert (report.problem.where, report.problem.index) == ("entry", 17)
        assert "leaf hash" in report.problem.what

    def test_rehashed_entry_breaks_the_chain_of_the_next(self, filled, signer):
        # A careful forger also fixes the stored leaf hash: the next entry's link gives it away.
        _tamper(
            filled,
            "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
            " '\"n\":17', '\"n\":71'), 'UTF8')"
            " WHERE idx = 17",
            "UPDATE ledger_entries SET leaf_hash = sha256('\\x00'::bytea || entry) WHERE idx = 17",
        )
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("entry", 17)
        assert "node 0/17" in report.problem.what

    def test_rewritten_node_is_named(self, filled, signer):
        _tamper(filled, "UPDATE ledger_nodes SET hash = sha256(hash) WHERE level = 2 AND idx = 3")
        report = _verify(filled, signer)
        # Node 2/3 covers leaves 12..15 and is completed by entry 15.
        assert (report.problem.where, report.problem.index) == ("entry", 15)
        assert "node 2/3 is wrong" in report.problem.what

    def test_deleted_entry_is_named(self, filled, signer):
        _tamper(filled, "DELETE FROM ledger_entries WHERE idx = 23")
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("entry", 23)
        assert "missing" in report.problem.what

    def test_forged_checkpoint_signature_is_named(self, filled, signer):
        _tamper(
            filled,
            "UPDATE ledger_checkpoints SET note = replace(note, '— ', '— x') WHERE size = 30",
        )
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("checkpoint", 30)

    def test_checkpoint_signed_by_another_key_is_refused(self, filled, signer):
        forger = Signer.from_text(generate_signer_key(ORIGIN))
        with filled.transaction() as session:
            note = session.scalar(sa.text("SELECT note FROM ledger_checkpoints WHERE size = 20"))
        body = note.split("\n\n")[0] + "\n"
        forged = sign_note(body, forger)
        _tamper(
            filled,
            f"UPDATE ledger_checkpoints SET note = '{forged}' WHERE size = 20",
        )
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("checkpoint", 20)
        assert "signature" in report.problem.what

    def test_truncated_history_is_caught_by_the_tree_head(self, filled, signer):
        _tamper(
            filled,
            "DELETE FROM ledger_entries WHERE idx >= 38",
            "DELETE FROM ledger_nodes WHERE ((idx + 1) << level) > 38",
            "DELETE FROM ledger_checkpoints WHERE size > 38",
        )
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("state", 38)


class TestVerifyCommand:
    def _runner(self, database, signer, tmp_path: Path):
        app = create_app(
            {
                "DATABASE": database,
                "INSTANCE_PATH": str(tmp_path),
                "LEDGER_ORIGIN": ORIGIN,
                "LEDGER_SIGNING_KEY": signer.text(),
                "REDIS_URL": "",
            }
        )
        return app.test_cli_runner()

    def test_exit_zero_when_valid(self, filled, signer, tmp_path):
        result = self._runner(filled, signer, tmp_path).invoke(args=["ledger", "verify"])
        assert result.exit_code == 0, result.output
        assert "ledger valid: 40 entries, 4 checkpoints" in result.output

    def test_exit_nonzero_naming_the_index(self, filled, signer, tmp_path):
        _tamper(filled, "UPDATE ledger_entries SET leaf_hash = sha256(leaf_hash) WHERE idx = 9")
        result = self._runner(filled, signer, tmp_path).invoke(args=["ledger", "verify"])
        assert result.exit_code == 1
        assert "ledger NOT valid: entry 9:" in result.output
