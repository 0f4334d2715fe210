"""Check the whole stored log from its bytes: what `recpo ledger verify` runs.

One streaming pass in index order, in constant memory: each entry is re-hashed from its stored
bytes and must link to the previous leaf hash; the tree is rebuilt through its right edge and every
stored node is compared with the rebuilt one; each stored checkpoint must carry a valid signature
over exactly the rebuilt root at its size. Since every checkpoint is checked against one rebuilt
sequence of leaves, each is consistent with the next. The first problem found is reported with
the index (or size) where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ledger import merkle
from ledger.entries import GENESIS_PREV
from ledger.log import climb, frontier_root
from ledger.models import Entry, Node, SignedCheckpoint, State
from ledger.note import NoteError, Verifier, open_checkpoint

STREAM_BATCH = 5000


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong: where, and what."""

    where: str
    index: int
    what: str

    def __str__(self) -> str:
        return f"{self.where} {self.index}: {self.what}"


@dataclass(frozen=True)
class Report:
    """The outcome of a verification."""

    entries: int
    checkpoints: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        """True when everything held."""
        return self.problem is None


class _Failed(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _stream(stack: ExitStack, session: Session, statement: sa.Select) -> Iterator[sa.Row]:
    result = session.execute(statement.execution_options(yield_per=STREAM_BATCH))
    stack.callback(result.close)  # a server-side cursor: close it even when stopping early
    return iter(result)


def _suffix(prev_hex: str) -> bytes:
    # Canonical JSON sorts keys: body, kind, prev, v. The entry must end with its chain link.
    return b',"prev":"' + prev_hex.encode() + b'","v":1}'


def verify_log(
    session: Session,
    verifier: Verifier,
    origin: str,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify every stored entry, node and checkpoint; stop at the first problem."""
    entries_seen = checkpoints_seen = 0
    stack = ExitStack()
    try:
        nodes = _stream(
            stack,
            session,
            sa.select(Node.level, Node.idx, Node.hash).order_by(
                # The index of the last leaf a node covers, plus one: the order `climb` makes them.
                (Node.idx + 1).op("<<")(Node.level),
                Node.level,
            ),
        )
        checkpoints = _stream(
            stack,
            session,
            sa.select(SignedCheckpoint.size, SignedCheckpoint.root, SignedCheckpoint.note).order_by(
                SignedCheckpoint.size
            ),
        )
        pending_checkpoint = next(checkpoints, None)
        frontier: dict[int, bytes] = {}
        prev_hex = GENESIS_PREV
        prev_leaf: bytes | None = None

        def check_checkpoints(size: int) -> None:
            nonlocal pending_checkpoint, checkpoints_seen
            while pending_checkpoint is not None and pending_checkpoint.size <= size:
                cp_size, cp_root, cp_note = pending_checkpoint
                if cp_size < size:
                    raise _Failed(
                        Problem("checkpoint", cp_size, "size was skipped while rebuilding")
                    )
                root = frontier_root(frontier)
                if bytes(cp_root) != root:
                    raise _Failed(
                        Problem("checkpoint", cp_size, "stored root differs from the rebuilt tree")
                    )
                try:
                    body, _ = open_checkpoint(cp_note, [verifier], origin)
                except NoteError as exc:
                    raise _Failed(Problem("checkpoint", cp_size, f"signature: {exc}")) from None
                if body.size != cp_size or body.root != root:
                    raise _Failed(
                        Problem(
                            "checkpoint", cp_size, "signed note does not match the rebuilt tree"
                        )
                    )
                checkpoints_seen += 1
                pending_checkpoint = next(checkpoints, None)

        check_checkpoints(0)
        expected = 0
        for idx, data, stored_leaf in _stream(
            stack, session, sa.select(Entry.idx, Entry.entry, Entry.leaf_hash).order_by(Entry.idx)
        ):
            if idx != expected:
                raise _Failed(Problem("entry", expected, f"missing (next stored index is {idx})"))
            data = bytes(data)
            leaf = merkle.leaf_hash(data)
            if leaf != bytes(stored_leaf):
                raise _Failed(Problem("entry", idx, "stored leaf hash does not match its bytes"))
            if not data.endswith(_suffix(prev_hex)):
                raise _Failed(Problem("entry", idx, "does not link to the previous leaf hash"))
            for level, node_idx, h in climb(frontier, idx, leaf):
                stored = next(nodes, None)
                if stored is None or (stored.level, stored.idx) != (level, node_idx):
                    raise _Failed(Problem("entry", idx, f"node {level}/{node_idx} is missing"))
                if bytes(stored.hash) != h:
                    raise _Failed(Problem("entry", idx, f"node {level}/{node_idx} is wrong"))
            prev_hex, prev_leaf = leaf.hex(), leaf
            expected = idx + 1
            entries_seen = expected
            check_checkpoints(expected)
            if progress and expected % 100_000 == 0:
                progress(expected)
        extra = next(nodes, None)
        if extra is not None:
            raise _Failed(Problem("node", extra.idx, f"level {extra.level} lies beyond the tree"))
        if pending_checkpoint is not None:
            raise _Failed(
                Problem("checkpoint", pending_checkpoint.size, "size is beyond the stored entries")
            )
        state = session.get(State, 1)
        if (
            state is None
            or state.size != expected
            or ((bytes(state.last_leaf_hash) if state.last_leaf_hash else None) != prev_leaf)
        ):
            raise _Failed(Problem("state", expected, "tree head does not match the entries"))
    except _Failed as failed:
        return Report(entries_seen, checkpoints_seen, failed.problem)
    finally:
        stack.close()
    if progress:
        progress(entries_seen)
    return Report(entries_seen, checkpoints_seen, None)
