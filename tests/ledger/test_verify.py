"""`verify_log` and `recpo ledger verify` name the first index where stored history was changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger import verify
from ledger.entries import make_entry
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


def _verify(database, signer, progress=None):
    with database.transaction() as session:
        return verify_log(session, signer.verifier(), ORIGIN, progress)


@pytest.fixture(params=[verify.BATCH_LEVEL, 2], ids=["one-batch", "batches-of-4"])
def batch_level(request, monkeypatch) -> int:
    """Verify in the real batch size and in batches of 4 entries (checkpoints 10 and 30 then
    fall inside a batch, 20 and 40 at its end)."""
    monkeypatch.setattr(verify, "BATCH_LEVEL", request.param)
    return request.param


@pytest.mark.usefixtures("batch_level")
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

    def test_progress_is_reported_per_batch(self, filled, signer, batch_level):
        seen: list[int] = []
        assert _verify(filled, signer, seen.append).ok
        step = 1 << batch_level
        assert seen == [*range(step, 40, step), 40, 40]

    def test_deleted_interior_node_is_named(self, filled, signer):
        _tamper(filled, "DELETE FROM ledger_nodes WHERE level = 3 AND idx = 2")
        report = _verify(filled, signer)
        # Node 3/2 covers leaves 16..23 and is completed by entry 23.
        assert report.problem == verify.Problem("entry", 23, "node 3/2 is missing")

    def test_node_stored_twice_is_named(self, filled, signer):
        _tamper(
            filled,
            "ALTER TABLE ledger_nodes DROP CONSTRAINT pk_ledger_nodes",
            "INSERT INTO ledger_nodes (level, idx, hash)"
            " SELECT level, idx, hash FROM ledger_nodes WHERE level = 1 AND idx = 4",
        )
        report = _verify(filled, signer)
        assert report.problem == verify.Problem("entry", 9, "node 1/4 is stored more than once")

    @pytest.mark.parametrize(("level", "idx"), [(0, 40), (3, 5), (1, -1)])
    def test_node_outside_the_tree_is_named(self, filled, signer, level, idx):
        _tamper(
            filled,
            f"INSERT INTO ledger_nodes (level, idx, hash) VALUES ({level}, {idx}, sha256('x'))",
        )
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("node", idx)
        assert f"level {level}" in report.problem.what

    def test_wrong_checkpoint_root_inside_a_batch_is_named(self, filled, signer):
        _tamper(filled, "UPDATE ledger_checkpoints SET root = sha256(root) WHERE size = 10")
        report = _verify(filled, signer)
        assert report.problem == verify.Problem(
            "checkpoint", 10, "stored root differs from the rebuilt tree"
        )
        assert (report.entries, report.checkpoints) == (10, 0)

    @pytest.mark.parametrize("idx", [0, 8, 39])
    def test_changed_leaf_hash_at_batch_edges_is_named(self, filled, signer, idx):
        _tamper(
            filled, f"UPDATE ledger_entries SET leaf_hash = sha256(leaf_hash) WHERE idx = {idx}"
        )
        report = _verify(filled, signer)
        assert report.problem == verify.Problem(
            "entry", idx, "stored leaf hash does not match its bytes"
        )
        assert report.entries == idx

    def test_a_second_prev_member_is_refused(self, filled, signer):
        # Bytes that end with the right link but also carry another prev member: a parser that
        # keeps the first member would read another chain. Leaf hash and node are made to match.
        _tamper(
            filled,
            "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'),"
            ' \'{"body":\', \'{"prev":"' + "0" * 64 + "\",\"body\":'), 'UTF8')"
            " WHERE idx = 17",
            "UPDATE ledger_entries SET leaf_hash = sha256('\\x00'::bytea || entry) WHERE idx = 17",
            "UPDATE ledger_nodes SET hash = e.leaf_hash FROM ledger_entries e"
            " WHERE ledger_nodes.level = 0 AND ledger_nodes.idx = 17 AND e.idx = 17",
        )
        report = _verify(filled, signer)
        assert (report.problem.where, report.problem.index) == ("entry", 17)
        assert "body, kind, prev and v" in report.problem.what


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


class TestEntryShapes:
    """Entries whose bytes mention prev elsewhere, or escape characters, are parsed, not refused."""

    def test_bodies_with_prev_keys_and_escapes_verify(
        self, committing_database, signer, clock, monkeypatch
    ):
        monkeypatch.setattr(verify, "BATCH_LEVEL", 2)
        log = Log(ORIGIN, signer, SECRET, clock)
        bodies = [
            {"prev": "not the link"},
            {"text": 'a "quoted" word \\ and a tab\t'},
            {"nested": {"prev": ["x"]}, "kind": "prev"},
            {"n": 1},
            {'"prev"': 2},
        ]
        with committing_database.transaction() as session:
            for body in bodies:
                log.append(session, "prev", body)
        log.sequence(committing_database)
        report = _verify(committing_database, signer)
        assert report.ok, report.problem
        assert report.entries == len(bodies)

    def test_the_link_check_takes_exactly_what_make_entry_writes(self):
        prev = bytes(range(32))
        entry = make_entry("k", {"prev": "x", "a": 'q"\\'}, prev)
        assert entry.endswith(verify._link(prev.hex().encode()))
        assert verify._ambiguous(entry) is None
        # Not JSON, or another top-level prev member, once the bytes cannot rule it out.
        assert verify._ambiguous(b"\\" + entry) is not None
        assert verify._ambiguous(entry.replace(b'{"body"', b'{"pr\\u0065v":"","body"', 1))
        assert verify._ambiguous(entry.replace(b'{"body"', b'{"prev":"","body"', 1))


class TestSqlite:
    def test_tampering_is_named_on_the_embedded_backend(
        self, sqlite_database, signer, clock, monkeypatch
    ):
        monkeypatch.setattr(verify, "BATCH_LEVEL", 2)
        log = Log(ORIGIN, signer, SECRET, clock)
        for start in range(0, 20, 10):
            with sqlite_database.transaction() as session:
                for i in range(start, start + 10):
                    log.append(session, "test", {"n": i})
            log.sequence(sqlite_database)
        report = _verify(sqlite_database, signer)
        assert report.ok, report.problem
        assert (report.entries, report.checkpoints) == (20, 2)
        with sqlite_database.transaction() as session:
            session.execute(sa.text("DROP TRIGGER ledger_nodes_no_update"))
            session.execute(
                sa.text("UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 3")
            )
        report = _verify(sqlite_database, signer)
        assert report.problem == verify.Problem("entry", 15, "node 2/3 is wrong")
