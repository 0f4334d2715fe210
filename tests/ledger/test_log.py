"""The log in PostgreSQL (and SQLite): queue, sequencer, checkpoints, proofs, append-only tables."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger import log as ledger_log
from ledger import merkle
from ledger.entries import GENESIS_PREV, parse_entry
from ledger.log import LedgerError, Log, NotFound
from ledger.models import Entry, Node, QueuedEntry, SignedCheckpoint, State
from ledger.note import Signer, Verifier, generate_signer_key, open_checkpoint
from ledger.receipts import check_code
from ledger.verify import verify_log
from recpo.clock import FixedClock

ORIGIN = "recpo.test/ledger"
SECRET = b"receipt-secret-for-tests-0123456789"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_text(generate_signer_key(ORIGIN))


@pytest.fixture
def log(signer: Signer, clock: FixedClock) -> Log:
    return Log(ORIGIN, signer, SECRET, clock)


def _append(database, log: Log, count: int, start: int = 0) -> list[str]:
    codes = []
    with database.transaction() as session:
        for i in range(start, start + count):
            codes.append(log.append(session, "test", {"n": i, "who": "ñandú"}).receipt_code)
    log.sequence(database)
    return codes


def _memory_tree(session) -> merkle.MemoryTree:
    entries = session.scalars(sa.select(Entry.entry).order_by(Entry.idx))
    return merkle.MemoryTree(bytes(e) for e in entries)


class TestAppend:
    def test_append_queues_in_the_callers_transaction(self, database, db_session, log: Log):
        with database.transaction() as session:
            pending = log.append(session, "test", {"n": 1})
        assert pending.receipt_code is not None
        assert check_code(pending.receipt_code).ok
        assert db_session.scalar(sa.select(sa.func.count()).select_from(QueuedEntry)) == 1
        assert ledger_log.tree_size(db_session) == 0

    def test_rolled_back_caller_leaves_nothing(self, database, db_session, log: Log):
        with pytest.raises(RuntimeError), database.transaction() as session:
            log.append(session, "test", {"n": 1})
            raise RuntimeError("the business change failed")
        assert log.sequence(database) == 0
        assert db_session.scalar(sa.select(sa.func.count()).select_from(QueuedEntry)) == 0
        assert ledger_log.tree_size(db_session) == 0

    def test_refuses_bodies_it_could_not_sequence(self, database, log: Log):
        with database.transaction() as session, pytest.raises(ValueError):
            log.append(session, "test", {"weight": 1.5})
        with database.transaction() as session, pytest.raises(ValueError):
            log.append(session, "", {"n": 1})

    def test_signing_key_must_be_named_after_the_origin(self, clock):
        other = Signer.from_text(generate_signer_key("other.example/log"))
        with pytest.raises(ValueError, match="origin"):
            Log(ORIGIN, other, SECRET, clock)


class TestSequence:
    def test_contiguous_indexes_and_hash_chain(self, database, db_session, log: Log):
        _append(database, log, 5)
        _append(database, log, 3, start=5)
        rows = db_session.execute(
            sa.select(Entry.idx, Entry.entry, Entry.leaf_hash).order_by(Entry.idx)
        ).all()
        assert [r.idx for r in rows] == list(range(8))
        prev = GENESIS_PREV
        for row in rows:
            parsed = parse_entry(bytes(row.entry))
            assert parsed["prev"] == prev
            assert merkle.leaf_hash(bytes(row.entry)) == bytes(row.leaf_hash)
            prev = bytes(row.leaf_hash).hex()
        assert [parse_entry(bytes(r.entry))["body"]["n"] for r in rows] == list(range(8))
        state = db_session.get(State, 1)
        assert state.size == 8
        assert bytes(state.last_leaf_hash) == bytes(rows[-1].leaf_hash)
        assert db_session.scalar(sa.select(sa.func.count()).select_from(QueuedEntry)) == 0

    def test_batches_are_cut_at_the_batch_size(self, database, db_session, log: Log):
        with database.transaction() as session:
            for i in range(7):
                log.append(session, "test", {"n": i})
        assert log.sequence(database, batch=3) == 7
        sizes = db_session.scalars(sa.select(SignedCheckpoint.size).order_by(SignedCheckpoint.size))
        assert list(sizes) == [3, 6, 7]

    def test_stored_nodes_give_the_same_root_as_a_memory_tree(self, database, db_session, log: Log):
        for chunk in (1, 2, 5, 13, 1, 40):
            _append(database, log, chunk)
        size = ledger_log.tree_size(db_session)
        assert size == 62
        tree = _memory_tree(db_session)
        for s in (1, 2, 3, 7, 8, 31, 32, 33, 62):
            assert ledger_log.root_at(db_session, s) == tree.root(s)
        # Every complete subtree is stored, and nothing else.
        stored = db_session.scalar(sa.select(sa.func.count()).select_from(Node))
        expected = sum(size >> level for level in range(size.bit_length()))
        assert stored == expected

    def test_each_batch_signs_a_checkpoint_over_the_real_root(
        self, database, db_session, log: Log, signer: Signer
    ):
        _append(database, log, 4)
        _append(database, log, 6)
        tree = _memory_tree(db_session)
        checkpoints = db_session.scalars(
            sa.select(SignedCheckpoint).order_by(SignedCheckpoint.size)
        ).all()
        assert [c.size for c in checkpoints] == [4, 10]
        for row in checkpoints:
            body, _ = open_checkpoint(row.note, [signer.verifier()], ORIGIN)
            assert (body.size, body.root) == (row.size, tree.root(row.size))
            assert bytes(row.root) == tree.root(row.size)

    def test_one_root_per_size(self, database, db_session, log: Log):
        _append(database, log, 2)
        db_session.add(
            SignedCheckpoint(size=2, root=b"\x00" * 32, note="x", signed_at=log.clock.now())
        )
        with pytest.raises(IntegrityError):
            db_session.flush()

    def test_checkpoint_now_signs_the_empty_tree_once(self, database, db_session, log: Log):
        head = log.checkpoint_now(database)
        assert (head.size, head.root) == (0, merkle.EMPTY_ROOT)
        again = log.checkpoint_now(database)
        assert again.note == head.note
        assert db_session.scalar(sa.select(sa.func.count()).select_from(SignedCheckpoint)) == 1

    def test_receipt_codes_are_unique_for_identical_bodies(self, backend, log: Log):
        """A code held by a queued entry or by a sequenced one is not given again."""
        with backend.transaction() as session:
            first = log.append(session, "test", {"same": True})
            second = log.append(session, "test", {"same": True})
        log.sequence(backend)
        with backend.transaction() as session:
            third = log.append(session, "test", {"same": True})
            unreceipted = log.append(session, "test", {"same": True}, receipt=False)
        log.sequence(backend)
        codes = [first.receipt_code, second.receipt_code, third.receipt_code]
        assert len(set(codes)) == 3
        assert unreceipted.receipt_code is None
        with backend.transaction() as session:
            found = [ledger_log.find_receipt(session, code) for code in codes]
            assert [(type(e), e.idx) for e in found] == [(Entry, 0), (Entry, 1), (Entry, 2)]
            assert ledger_log.get_entry(session, 3).receipt_code is None


class TestProofs:
    def test_inclusion_and_consistency_proofs_verify(self, database, db_session, log: Log):
        _append(database, log, 21)
        tree = _memory_tree(db_session)
        for size in (1, 2, 5, 8, 13, 21):
            root = tree.root(size)
            for index in range(size):
                proof = ledger_log.inclusion_proof(db_session, index, size)
                leaf = tree.subtree_hash(0, index)
                assert merkle.verify_inclusion(leaf, index, size, proof, root)
                assert proof == merkle.inclusion_proof(tree, index, size)
            for old in range(size + 1):
                proof = ledger_log.consistency_proof(db_session, old, size)
                assert merkle.verify_consistency(old, size, tree.root(old), root, proof)

    def test_bad_requests(self, database, db_session, log: Log):
        _append(database, log, 3)
        with pytest.raises(NotFound):
            ledger_log.inclusion_proof(db_session, 0, 4)
        with pytest.raises(LedgerError):
            ledger_log.inclusion_proof(db_session, 3, 3)
        with pytest.raises(NotFound):
            ledger_log.consistency_proof(db_session, 1, 9)
        with pytest.raises(LedgerError):
            ledger_log.consistency_proof(db_session, 3, 2)
        with pytest.raises(NotFound):
            ledger_log.get_entry(db_session, 3)


class TestAppendOnly:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE ledger_entries SET kind = 'x'",
            "DELETE FROM ledger_entries",
            "TRUNCATE ledger_entries",
            "UPDATE ledger_nodes SET hash = hash",
            "DELETE FROM ledger_nodes",
            "DELETE FROM ledger_checkpoints",
            "UPDATE ledger_checkpoints SET note = ''",
            "TRUNCATE ledger_checkpoints CASCADE",
        ],
    )
    def test_postgres_refuses_changes(self, database, db_session, log: Log, statement: str):
        _append(database, log, 2)
        with pytest.raises(DBAPIError, match="append-only"):
            db_session.execute(sa.text(statement))

    def test_postgres_triggers_fire_always(self, db_session):
        modes = dict(
            db_session.execute(
                sa.text(
                    "SELECT tgname, tgenabled FROM pg_trigger "
                    "WHERE tgname LIKE 'ledger_%' AND NOT tgisinternal"
                )
            ).all()
        )
        assert len(modes) == 6
        assert set(modes.values()) == {"A"}  # enabled ALWAYS, even for replication roles

    def test_public_holds_no_change_privileges(self, db_session):
        rows = db_session.execute(
            sa.text(
                "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = 'PUBLIC' AND table_name LIKE 'ledger_%'"
            )
        ).all()
        assert not [r for r in rows if r.privilege_type in {"UPDATE", "DELETE", "TRUNCATE"}]

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE ledger_entries SET kind = 'x'",
            "DELETE FROM ledger_entries",
            "UPDATE ledger_nodes SET hash = hash",
            "DELETE FROM ledger_checkpoints",
        ],
    )
    def test_sqlite_refuses_changes(self, sqlite_database, signer, clock, statement: str):
        log = Log(ORIGIN, signer, SECRET, clock)
        _append(sqlite_database, log, 2)
        with pytest.raises(DBAPIError, match="append-only"), sqlite_database.transaction() as s:
            s.execute(sa.text(statement))


class TestSqlite:
    def test_the_embedded_backend_builds_the_same_log(self, sqlite_database, signer, clock):
        log = Log(ORIGIN, signer, SECRET, clock)
        _append(sqlite_database, log, 9)
        _append(sqlite_database, log, 4, start=9)
        with sqlite_database.transaction() as session:
            tree = _memory_tree(session)
            assert ledger_log.root_at(session, 13) == tree.root(13)
            report = verify_log(session, signer.verifier(), ORIGIN)
        assert report.ok, report.problem
        assert (report.entries, report.checkpoints) == (13, 2)


class TestConcurrency:
    def test_64_writers_leave_a_gap_free_fork_free_log(self, committing_database, signer: Signer):
        clock = FixedClock(dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
        log = Log(ORIGIN, signer, SECRET, clock)
        database = committing_database
        per_writer, writers = 5, 64
        errors: list[BaseException] = []
        start = threading.Barrier(writers)

        def writer(w: int) -> None:
            try:
                start.wait()
                for i in range(per_writer):
                    with database.transaction() as session:
                        log.append(session, "test", {"writer": w, "i": i})
                    log.sequence(database)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        total = per_writer * writers
        with database.transaction() as session:
            indexes = list(session.scalars(sa.select(Entry.idx).order_by(Entry.idx)))
            assert indexes == list(range(total))
            assert session.scalar(sa.select(sa.func.count()).select_from(QueuedEntry)) == 0
            bodies = {
                (b["writer"], b["i"])
                for b in (
                    parse_entry(bytes(e))["body"] for e in session.scalars(sa.select(Entry.entry))
                )
            }
            assert len(bodies) == total
            report = verify_log(session, signer.verifier(), ORIGIN)
            assert report.ok, report.problem
            assert report.entries == total
            assert report.checkpoints >= 1


def test_verifier_key_text_round_trips(signer: Signer):
    verifier = Verifier.from_text(signer.verifier_text())
    assert verifier.name == ORIGIN
