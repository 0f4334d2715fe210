"""The log in the database: accept entries, sequence them, sign checkpoints, serve proofs.

Appending is two steps, as in production transparency logs:

1. `Log.append` writes the entry into `ledger_queue` inside the caller's transaction, so the
   caller's business change and its ledger entry commit together or not at all. It returns the
   receipt code at once (a MAC over the entry's content, so it needs no index).
2. `Log.sequence` moves queued entries into the tree in batches. Each batch runs in one transaction
   holding the lock on the single `ledger_state` row — the one serialisation point — assigns the
   next contiguous indexes, chains each entry to the previous leaf hash, stores every new complete
   subtree hash, and signs a checkpoint for the new size. Many entries share one commit, which is
   what lets many concurrent writers append fast. Callers run it right after their own commit;
   whoever holds the lock sequences everyone's entries, the others find the queue empty.

Within one process, callers of `Log.sequence` also share rounds (group commit): one thread at a
time goes to the database and drains the queue, and a caller that arrives while a round is running
waits for the first round that reads the queue after its call (so after its own commit), instead
of queueing on the row lock only to find the queue empty. Callers in other processes still meet at
the row lock, which alone decides the order. On PostgreSQL a batch costs three statements: lock
the state row, take the batch out of the queue, write everything else in one statement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ledger import entries, merkle
from ledger.entries import canonical_json, check_kind, entry_from_body
from ledger.models import Entry, Node, QueuedEntry, SignedCheckpoint, State
from ledger.note import Checkpoint, Signer, sign_note
from ledger.receipts import receipt_code
from recpo.clock import Clock
from recpo.db import Database, DriverStatement

DEFAULT_BATCH = 2000
MAX_RECEIPT_ATTEMPTS = 8


APPENDED = "ledger.appended"


def appended(session: Session) -> bool:
    """Return whether `session` queued ledger entries (so the caller sequences after commit)."""
    return bool(session.info.get(APPENDED))


class LedgerError(Exception):
    """A request the log cannot answer (bad index or size); the message says why."""


class NotFound(LedgerError):
    """The index or size asked for is beyond the tree."""


@dataclass(frozen=True)
class Pending:
    """An entry accepted into the queue: its queue id and receipt code."""

    queue_id: int
    receipt_code: str | None


@dataclass(frozen=True)
class TreeHead:
    """The newest signed checkpoint."""

    size: int
    root: bytes
    note: str
    signed_at: dt.datetime


class _NodeReader:
    """A HashReader over prefetched node hashes (one query per proof)."""

    def __init__(self, hashes: dict[tuple[int, int], bytes]) -> None:
        self.hashes = hashes

    def subtree_hash(self, level: int, index: int) -> bytes:
        try:
            return self.hashes[(level, index)]
        except KeyError:
            raise LedgerError(f"node {level}/{index} is missing from the store") from None


def _load_nodes(
    executor: Session | sa.Connection, wanted: Iterable[tuple[int, int]]
) -> _NodeReader:
    wanted = sorted(set(wanted))
    if not wanted:
        return _NodeReader({})
    rows = executor.execute(
        sa.select(Node.level, Node.idx, Node.hash).where(
            sa.tuple_(Node.level, Node.idx).in_(wanted)
        )
    )
    return _NodeReader({(level, idx): bytes(h) for level, idx, h in rows})


def _subtrees_of(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    return [s for a, b in ranges for s in merkle.perfect_subtrees(a, b)]


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """Return the (level, index) of the complete subtrees on the right edge of a tree of `size`."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


def frontier_root(frontier: dict[int, bytes]) -> bytes:
    """Return the root of the tree whose right-edge subtrees are `frontier` (level -> hash)."""
    if not frontier:
        return merkle.EMPTY_ROOT
    levels = sorted(frontier)
    acc = frontier[levels[0]]
    for level in levels[1:]:
        acc = merkle.node_hash(frontier[level], acc)
    return acc


def climb(frontier: dict[int, bytes], index: int, leaf: bytes) -> list[tuple[int, int, bytes]]:
    """Add leaf `index` to `frontier`; return every complete subtree it completes, leaf first."""
    made = [(0, index, leaf)]
    acc, level, i = leaf, 0, index
    while i & 1:
        acc = merkle.node_hash(frontier.pop(level), acc)
        level, i = level + 1, i >> 1
        made.append((level, i, acc))
    frontier[level] = acc
    return made


_QUEUE_TABLE = QueuedEntry.__table__
_ENTRY_TABLE = Entry.__table__
_NODE_TABLE = Node.__table__
_STATE_TABLE = State.__table__
_CHECKPOINT_TABLE = SignedCheckpoint.__table__
# The append statements, compiled once and run on psycopg's cursor on PostgreSQL
# (`recpo.db.DriverStatement`): an append is mostly Python time, and SQLAlchemy's execution layer
# (cache key, bind processing, result wrapping) was a sixth of it.
_QUEUE_VALUES = {
    name: sa.bindparam(name, type_=_QUEUE_TABLE.c[name].type)
    for name in ("kind", "body", "receipt_code", "queued_at")
}
_QUEUE = DriverStatement(
    sa.insert(_QUEUE_TABLE).values(**_QUEUE_VALUES).returning(_QUEUE_TABLE.c.id)
)
# One statement checks that no queued or sequenced entry holds the code, and queues. (The casts
# type the selected parameters, which PostgreSQL cannot infer from a SELECT list.)
_CODE = _QUEUE_VALUES["receipt_code"]
_QUEUE_IF_CODE_FREE = DriverStatement(
    sa.insert(_QUEUE_TABLE)
    .from_select(
        list(_QUEUE_VALUES),
        sa.select(*(sa.cast(value, value.type) for value in _QUEUE_VALUES.values())).where(
            ~sa.exists().where(_QUEUE_TABLE.c.receipt_code == _CODE),
            ~sa.exists().where(_ENTRY_TABLE.c.receipt_code == _CODE),
        ),
    )
    .returning(_QUEUE_TABLE.c.id)
)


# The sequencer's statements, on the tables (Core) rather than through the ORM's unit of work.
_LOCK_STATE = DriverStatement(
    sa.select(_STATE_TABLE.c.size, _STATE_TABLE.c.last_leaf_hash)
    .where(_STATE_TABLE.c.id == 1)
    .with_for_update()
)
_NEXT_QUEUED = (
    sa.select(
        _QUEUE_TABLE.c.id, _QUEUE_TABLE.c.kind, _QUEUE_TABLE.c.body, _QUEUE_TABLE.c.receipt_code
    )
    .order_by(_QUEUE_TABLE.c.id)
    .limit(sa.bindparam("batch"))
)
_ENTRY_COLUMNS = ("idx", "entry", "leaf_hash", "kind", "receipt_code", "queue_id")
_SET_STATE = (
    _STATE_TABLE.update()
    .where(_STATE_TABLE.c.id == 1)
    .values(size=sa.bindparam("size"), last_leaf_hash=sa.bindparam("last_leaf_hash"))
)
# On PostgreSQL a batch is three statements on psycopg's cursor (the sequencer, like an append,
# is mostly Python time, and SQLAlchemy's layer cost more than the statements): lock the state
# row (`_LOCK_STATE`), read and remove the batch from the queue in one statement...
_DEQUEUE_PG = (
    b"DELETE FROM ledger_queue WHERE id IN "
    b"(SELECT id FROM ledger_queue ORDER BY id LIMIT %(batch)s) "
    b"RETURNING id, kind, body, receipt_code"
)
# ...and write it in one more, whatever its size: the rows travel as arrays, and every table
# changes in the same statement (data-modifying CTEs).
_WRITE_BATCH_PG = b"""
    WITH entries AS (
        INSERT INTO ledger_entries
            (idx, entry, leaf_hash, kind, receipt_code, queue_id, sequenced_at)
        SELECT u.idx, u.entry, u.leaf_hash, u.kind, u.receipt_code, u.queue_id, %(now)s
        FROM unnest(
            %(idx)s::bigint[], %(entry)s::bytea[], %(leaf_hash)s::bytea[],
            %(kind)s::text[], %(receipt_code)s::text[], %(queue_id)s::bigint[]
        ) AS u (idx, entry, leaf_hash, kind, receipt_code, queue_id)
    ), nodes AS (
        INSERT INTO ledger_nodes (level, idx, hash)
        SELECT u.level, u.idx, u.hash FROM unnest(
            %(node_level)s::smallint[], %(node_idx)s::bigint[], %(node_hash)s::bytea[]
        ) AS u (level, idx, hash)
    ), checkpoint AS (
        INSERT INTO ledger_checkpoints (size, root, note, signed_at)
        VALUES (%(size)s, %(root)s, %(note)s, %(now)s)
    )
    UPDATE ledger_state SET size = %(size)s, last_leaf_hash = %(last_leaf_hash)s WHERE id = 1
"""


class _Rounds:
    """The sequencing rounds one process runs on one database, one at a time (group commit).

    Each call of `Log.sequence` takes a ticket. A round notes the last ticket given out just
    before it first reads the queue: those callers had committed by then, so that read sees their
    entries, and once the round has drained the queue they are all sequenced. A caller that finds
    a round running waits until one covers its ticket, or until it may lead the next one.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tickets = 0  # tickets given out
        self.leading = False  # a round is running
        self.done = 0  # every caller up to this ticket has its entries sequenced
        # ticket -> its caller's gate: a lock the caller holds and blocks on acquiring again,
        # released to wake it (the primitive under threading.Event, without its Python layers:
        # a round wakes a dozen callers, and on a busy log that was a sizeable part of appending).
        self.waiting: dict[int, threading.Lock] = {}

    def join(self) -> bool:
        """Take a ticket; return True to lead a round, False once other rounds covered it."""
        with self.lock:
            self.tickets += 1
            ticket = self.tickets
            if not self.leading:
                self.leading = True
                return True
            gate = threading.Lock()
            gate.acquire()
            self.waiting[ticket] = gate
        while True:
            gate.acquire()  # until `leave` releases it; then this caller holds it again
            with self.lock:
                if self.done >= ticket:
                    return False
                if not self.leading:
                    self.leading = True
                    return True
                self.waiting[ticket] = gate

    def last_ticket(self) -> int:
        with self.lock:
            return self.tickets

    def leave(self, covered: int | None) -> None:
        """End a round that covered tickets up to `covered` (None: it failed)."""
        with self.lock:
            self.leading = False
            if covered is not None:
                self.done = max(self.done, covered)
            for ticket in [t for t in self.waiting if t <= self.done]:
                self.waiting.pop(ticket).release()
            if self.waiting:
                self.waiting.pop(min(self.waiting)).release()  # the longest waiting leads next


class Log:
    """One verifiable log: its origin, signing key and receipt secret."""

    def __init__(self, origin: str, signer: Signer, receipt_secret: bytes, clock: Clock) -> None:
        if signer.name != origin:
            raise ValueError(f"the signing key is named {signer.name!r}, not the origin {origin!r}")
        self.origin = origin
        self.signer = signer
        self.receipt_secret = receipt_secret
        self.clock = clock
        self._rounds: weakref.WeakKeyDictionary[Database, _Rounds] = weakref.WeakKeyDictionary()
        self._rounds_lock = threading.Lock()
        # (size, last leaf hash, frontier) as the last batch left it. The last leaf hash chains
        # every entry before it, so the pair names one tree and its frontier wherever it is met.
        self._edge: tuple[int, bytes | None, dict[int, bytes]] | None = None

    # --- writing ----------------------------------------------------------------------------

    def append(
        self, session: Session, kind: str, body: dict[str, Any], *, receipt: bool = True
    ) -> Pending:
        """Queue an entry in the caller's transaction; return its receipt code."""
        # Refuse a kind or body the log could not sequence.
        check_kind(kind)
        if not isinstance(body, dict):
            raise ValueError("entry body must be a dict")
        data = canonical_json(body)
        session.flush()  # the caller's pending changes go first, as they always have
        session.info[APPENDED] = True
        values = {"kind": kind, "body": data, "queued_at": self.clock.now()}
        connection = session.connection()
        if not receipt:
            ((queue_id,),) = _QUEUE.rows(connection, {**values, "receipt_code": None})
            return Pending(queue_id, None)
        digest = hashlib.sha256(kind.encode() + b"\x00" + data).digest()
        for attempt in range(MAX_RECEIPT_ATTEMPTS):
            code = receipt_code(self.receipt_secret, digest, attempt)
            rows = _QUEUE_IF_CODE_FREE.rows(connection, {**values, "receipt_code": code})
            if rows:  # else the code is taken
                return Pending(rows[0][0], code)
        raise LedgerError("no free receipt code: is the same entry being appended again?")

    def sequence(self, database: Database, batch: int = DEFAULT_BATCH) -> int:
        """Sequence every queued entry, batch by batch; return how many this call sequenced.

        Every entry committed before the call is sequenced when it returns: by this call, or by
        a round of another thread of this process that first read the queue after this call began.
        """
        rounds = self._rounds.get(database)
        if rounds is None:
            with self._rounds_lock:
                rounds = self._rounds.setdefault(database, _Rounds())
        if not rounds.join():
            return 0
        covered: int | None = None

        def reading() -> None:  # the row lock is held; the first queue read comes next
            nonlocal covered
            if covered is None:
                covered = rounds.last_ticket()

        try:
            total = self._drain(database, batch, reading)
        except BaseException:
            rounds.leave(None)  # the waiters are not covered: one of them leads next
            raise
        rounds.leave(covered)
        return total

    def _drain(
        self, database: Database, batch: int, reading: Callable[[], None] | None = None
    ) -> int:
        total = 0
        while True:
            # A connection of its own, not an ORM session: nothing here is an object, and a
            # session's setup and commit were a tenth of the Python of a busy log's append.
            with database.connection() as connection:
                done = self._sequence_batch(connection, batch, reading)
            total += done
            if done < batch:
                return total

    def _sequence_batch(
        self, connection: sa.Connection, batch: int, reading: Callable[[], None] | None = None
    ) -> int:
        postgres = connection.dialect.name == "postgresql"
        cursor = connection.connection.driver_connection.cursor() if postgres else None
        ((size, prev),) = _LOCK_STATE.rows(connection, {})
        if reading is not None:
            reading()
        if cursor is not None:
            cursor.execute(_DEQUEUE_PG, {"batch": batch})
            queued = sorted(cursor.fetchall(), key=lambda q: q[0])
        else:
            queued = connection.execute(_NEXT_QUEUED, {"batch": batch}).all()
        if not queued:
            if cursor is not None:
                cursor.close()
            return 0
        prev = None if prev is None else bytes(prev)
        edge = self._edge
        if edge is not None and edge[:2] == (size, prev):
            frontier = dict(edge[2])
        else:
            frontier = self._frontier(connection, size)
        now = self.clock.now()
        entries, nodes = [], []
        for queue_id, kind, body, code in queued:
            data = entry_from_body(kind, bytes(body), prev)
            leaf = merkle.leaf_hash(data)
            entries.append(
                {
                    "idx": size,
                    "entry": data,
                    "leaf_hash": leaf,
                    "kind": kind,
                    "receipt_code": code,
                    "queue_id": queue_id,
                    "sequenced_at": now,
                }
            )
            nodes.extend(
                {"level": level, "idx": idx, "hash": h}
                for level, idx, h in climb(frontier, size, leaf)
            )
            size, prev = size + 1, leaf
        root = frontier_root(frontier)
        if cursor is not None:
            columns: dict[str, Any] = {name: [e[name] for e in entries] for name in _ENTRY_COLUMNS}
            columns["node_level"] = [n["level"] for n in nodes]
            columns["node_idx"] = [n["idx"] for n in nodes]
            columns["node_hash"] = [n["hash"] for n in nodes]
            note = sign_note(Checkpoint(self.origin, size, root).body(), self.signer)
            columns.update(now=now, size=size, root=root, note=note, last_leaf_hash=prev)
            cursor.execute(_WRITE_BATCH_PG, columns)
            cursor.close()
        else:
            connection.execute(
                _QUEUE_TABLE.delete().where(_QUEUE_TABLE.c.id.in_([q[0] for q in queued]))
            )
            connection.execute(_ENTRY_TABLE.insert(), entries)
            connection.execute(_NODE_TABLE.insert(), nodes)
            connection.execute(_SET_STATE, {"size": size, "last_leaf_hash": prev})
            self._sign(connection, size, root, now)
        self._edge = (size, prev, dict(frontier))
        return len(queued)

    def _frontier(self, executor: Session | sa.Connection, size: int) -> dict[int, bytes]:
        positions = frontier_positions(size)
        reader = _load_nodes(executor, positions)
        return {level: reader.subtree_hash(level, idx) for level, idx in positions}

    def _sign(
        self, executor: Session | sa.Connection, size: int, root: bytes, now: dt.datetime
    ) -> None:
        note = sign_note(Checkpoint(self.origin, size, root).body(), self.signer)
        executor.execute(
            _CHECKPOINT_TABLE.insert(), {"size": size, "root": root, "note": note, "signed_at": now}
        )

    def commit(self, label: str, value: str) -> str:
        """Return the keyed commitment to a personal identifier, for writing into an entry."""
        return entries.commit(self.receipt_secret, label, value)

    def checkpoint_now(self, database: Database) -> TreeHead:
        """Sign the current tree if its size has no checkpoint yet; return the newest one."""
        with database.transaction() as session:
            state = session.scalars(sa.select(State).with_for_update()).one()
            if session.get(SignedCheckpoint, state.size) is None:
                root = frontier_root(self._frontier(session, state.size))
                self._sign(session, state.size, root, self.clock.now())
        with database.transaction() as session:
            return latest_checkpoint(session)


# --- reading (no key needed) ----------------------------------------------------------------


def tree_size(session: Session) -> int:
    """Return the number of sequenced entries."""
    return session.scalar(sa.select(State.size).where(State.id == 1)) or 0


def latest_checkpoint(session: Session) -> TreeHead:
    """Return the newest signed checkpoint."""
    row = session.scalars(
        sa.select(SignedCheckpoint).order_by(SignedCheckpoint.size.desc()).limit(1)
    ).one_or_none()
    if row is None:
        raise NotFound("no checkpoint has been signed yet")
    return TreeHead(row.size, bytes(row.root), row.note, row.signed_at)


def _check_size(session: Session, size: int) -> None:
    if size > tree_size(session):
        raise NotFound(f"size {size} is beyond the tree ({tree_size(session)} entries)")


def get_entry(session: Session, index: int) -> Entry:
    """Return the sequenced entry at `index`."""
    entry = session.get(Entry, index)
    if entry is None:
        raise NotFound(f"no entry at index {index}")
    return entry


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    """Return the inclusion proof of entry `index` in the tree of `size` entries."""
    if not 0 <= index < size:
        raise LedgerError(f"index {index} is not below size {size}")
    _check_size(session, size)
    ranges = merkle.inclusion_ranges(index, size)
    reader = _load_nodes(session, _subtrees_of(ranges))
    return merkle.inclusion_proof(reader, index, size)


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    """Return the consistency proof from tree size `old` to `new`."""
    if not 0 <= old <= new:
        raise LedgerError(f"old size {old} must be between 0 and new size {new}")
    _check_size(session, new)
    ranges = merkle.consistency_ranges(old, new)
    reader = _load_nodes(session, _subtrees_of(ranges))
    return merkle.consistency_proof(reader, old, new)


def root_at(session: Session, size: int) -> bytes:
    """Return the root hash of the tree of `size` entries."""
    _check_size(session, size)
    if size == 0:
        return merkle.EMPTY_ROOT
    reader = _load_nodes(session, merkle.perfect_subtrees(0, size))
    return merkle.root(reader, size)


def tile(session: Session, level: int, index: int, width: int) -> bytes:
    """Return the content of hash tile (`level`, `index`) of `width` hashes."""
    node_level = merkle.TILE_HEIGHT * level
    first = index * merkle.TILE_WIDTH
    rows = session.execute(
        sa.select(Node.hash)
        .where(Node.level == node_level, Node.idx >= first, Node.idx < first + width)
        .order_by(Node.idx)
    ).all()
    if len(rows) != width:
        raise NotFound(f"tile {level}/{index} does not have {width} hashes yet")
    return b"".join(bytes(r[0]) for r in rows)


def entry_bundle(session: Session, index: int, width: int) -> list[bytes]:
    """Return the entries of entry tile `index` (`width` entries)."""
    first = index * merkle.TILE_WIDTH
    rows = session.execute(
        sa.select(Entry.entry)
        .where(Entry.idx >= first, Entry.idx < first + width)
        .order_by(Entry.idx)
    ).all()
    if len(rows) != width:
        raise NotFound(f"entry tile {index} does not have {width} entries yet")
    return [bytes(r[0]) for r in rows]


def find_receipt(session: Session, code: str) -> Entry | QueuedEntry | None:
    """Return the sequenced (or still queued) entry carrying receipt `code`."""
    entry = session.scalars(sa.select(Entry).where(Entry.receipt_code == code)).one_or_none()
    if entry is not None:
        return entry
    return session.scalars(
        sa.select(QueuedEntry).where(QueuedEntry.receipt_code == code)
    ).one_or_none()


def verify_proof_against(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], head: TreeHead
) -> bool:
    """Check an inclusion proof for a tree of `size` against a signed tree head."""
    return size == head.size and merkle.verify_inclusion(leaf, index, size, list(proof), head.root)
