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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ledger import merkle
from ledger.entries import canonical_json, make_entry
from ledger.models import Entry, Node, QueuedEntry, SignedCheckpoint, State
from ledger.note import Checkpoint, Signer, sign_note
from ledger.receipts import receipt_code
from recpo.clock import Clock
from recpo.db import Database

DEFAULT_BATCH = 2000
MAX_RECEIPT_ATTEMPTS = 8


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


def _load_nodes(session: Session, wanted: Iterable[tuple[int, int]]) -> _NodeReader:
    wanted = sorted(set(wanted))
    if not wanted:
        return _NodeReader({})
    rows = session.execute(
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


class Log:
    """One verifiable log: its origin, signing key and receipt secret."""

    def __init__(self, origin: str, signer: Signer, receipt_secret: bytes, clock: Clock) -> None:
        if signer.name != origin:
            raise ValueError(f"the signing key is named {signer.name!r}, not the origin {origin!r}")
        self.origin = origin
        self.signer = signer
        self.receipt_secret = receipt_secret
        self.clock = clock

    # --- writing ----------------------------------------------------------------------------

    def append(
        self, session: Session, kind: str, body: dict[str, Any], *, receipt: bool = True
    ) -> Pending:
        """Queue an entry in the caller's transaction; return its receipt code."""
        data = canonical_json(body)
        make_entry(kind, body, None)  # refuse a kind or body the log could not sequence
        code = self._unused_receipt_code(session, kind, data) if receipt else None
        queued = QueuedEntry(kind=kind, body=data, receipt_code=code, queued_at=self.clock.now())
        session.add(queued)
        session.flush()
        return Pending(queued.id, code)

    def _unused_receipt_code(self, session: Session, kind: str, data: bytes) -> str:
        digest = hashlib.sha256(kind.encode() + b"\x00" + data).digest()
        for attempt in range(MAX_RECEIPT_ATTEMPTS):
            code = receipt_code(self.receipt_secret, digest, attempt)
            taken = session.scalar(
                sa.select(sa.literal(1)).where(
                    sa.or_(
                        sa.exists().where(QueuedEntry.receipt_code == code),
                        sa.exists().where(Entry.receipt_code == code),
                    )
                )
            )
            if not taken:
                return code
        raise LedgerError("no free receipt code: is the same entry being appended again?")

    def sequence(self, database: Database, batch: int = DEFAULT_BATCH) -> int:
        """Sequence every queued entry, batch by batch; return how many were sequenced."""
        total = 0
        while True:
            with database.transaction() as session:
                done = self._sequence_batch(session, batch)
            total += done
            if done < batch:
                return total

    def _sequence_batch(self, session: Session, batch: int) -> int:
        state = session.scalars(sa.select(State).with_for_update()).one()
        queued = session.execute(
            sa.select(QueuedEntry.id, QueuedEntry.kind, QueuedEntry.body, QueuedEntry.receipt_code)
            .order_by(QueuedEntry.id)
            .limit(batch)
        ).all()
        if not queued:
            return 0
        size, prev = state.size, state.last_leaf_hash
        frontier = self._frontier(session, size)
        now = self.clock.now()
        entries, nodes = [], []
        for queue_id, kind, body, code in queued:
            data = make_entry(kind, json.loads(body), prev)
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
        session.execute(sa.delete(QueuedEntry).where(QueuedEntry.id.in_([q[0] for q in queued])))
        session.execute(sa.insert(Entry), entries)
        session.execute(sa.insert(Node), nodes)
        session.execute(
            sa.update(State).where(State.id == 1).values(size=size, last_leaf_hash=prev)
        )
        self._sign(session, size, frontier_root(frontier), now)
        return len(queued)

    def _frontier(self, session: Session, size: int) -> dict[int, bytes]:
        positions = frontier_positions(size)
        reader = _load_nodes(session, positions)
        return {level: reader.subtree_hash(level, idx) for level, idx in positions}

    def _sign(self, session: Session, size: int, root: bytes, now: dt.datetime) -> None:
        note = sign_note(Checkpoint(self.origin, size, root).body(), self.signer)
        session.add(SignedCheckpoint(size=size, root=root, note=note, signed_at=now))
        session.flush()

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
