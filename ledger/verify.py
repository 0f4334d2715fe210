"""Check the whole stored log from its bytes: what `recpo ledger verify` runs.

Streaming passes in constant memory, each reading a table in primary-key order:

1. Entries in index order: each is re-hashed from its stored bytes, must match its stored leaf
   hash and the stored level-0 node, and must link to the previous leaf hash; the tree is rebuilt
   along its right edge, and every stored checkpoint (merged in by size) must carry a valid
   signature over exactly the rebuilt root at its size. Since all checkpoints are checked against
   one rebuilt sequence of leaves, each is consistent with the next.
2. Stored interior nodes, level by level: node (l+1, i) must be the hash of nodes (l, 2i) and
   (l, 2i+1), and each level must hold exactly the complete subtrees of the tree. With level 0
   checked against the real leaves in pass 1, every stored node (what proofs are served from) is
   then proven right.

The problem reported is the one at the lowest entry index: a node problem counts at the entry that
completed the node.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ledger.entries import GENESIS_PREV
from ledger.log import climb, frontier_root
from ledger.models import State
from ledger.note import NoteError, Verifier, open_checkpoint

STREAM_BATCH = 10_000
_CURSORS = itertools.count()
_LEAF, _NODE = b"\x00", b"\x01"


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


def _rows(session: Session, sql: str, params: tuple = ()) -> Iterator[tuple]:
    """Stream rows as plain tuples from the driver (a server-side cursor on PostgreSQL)."""
    connection = session.connection()
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        with raw.cursor(name=f"verify_{next(_CURSORS)}") as cursor:
            cursor.itersize = STREAM_BATCH
            cursor.execute(sql, params or None)
            yield from cursor
    else:
        cursor = raw.cursor()
        try:
            cursor.execute(sql.replace("%s", "?"), params)
            while batch := cursor.fetchmany(STREAM_BATCH):
                yield from batch
        finally:
            cursor.close()


def _suffix(prev_hex: str) -> bytes:
    # Canonical JSON sorts keys: body, kind, prev, v. The entry must end with its chain link.
    return b',"prev":"' + prev_hex.encode() + b'","v":1}'


def verify_log(
    session: Session,
    verifier: Verifier,
    origin: str,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify every stored entry, node and checkpoint; report the earliest problem."""
    entries, checkpoints, problem = _entries_pass(session, verifier, origin, progress)
    state = session.get(State, 1)
    node_problem = _nodes_pass(session, state.size if state else entries)
    if node_problem is not None and (
        problem is None or (node_problem.where == "entry" and node_problem.index < problem.index)
    ):
        problem = node_problem
    return Report(entries, checkpoints, problem)


def _entries_pass(
    session: Session,
    verifier: Verifier,
    origin: str,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, Problem | None]:
    sha256 = hashlib.sha256
    frontier: dict[int, bytes] = {}
    checkpoints_seen = 0
    expected = 0
    prev_leaf: bytes | None = None
    prev_hex = GENESIS_PREV
    checkpoints = _rows(session, "SELECT size, root, note FROM ledger_checkpoints ORDER BY size")
    leaves = _rows(session, "SELECT idx, hash FROM ledger_nodes WHERE level = 0 ORDER BY idx")
    pending = next(checkpoints, None)

    def check_checkpoints(size: int) -> None:
        nonlocal pending, checkpoints_seen
        while pending is not None and pending[0] <= size:
            cp_size, cp_root, cp_note = pending
            if cp_size < size:
                raise _Failed(Problem("checkpoint", cp_size, "size was skipped while rebuilding"))
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
                    Problem("checkpoint", cp_size, "signed note does not match the rebuilt tree")
                )
            checkpoints_seen += 1
            pending = next(checkpoints, None)

    try:
        check_checkpoints(0)
        for idx, data, stored_leaf in _rows(
            session, "SELECT idx, entry, leaf_hash FROM ledger_entries ORDER BY idx"
        ):
            if idx != expected:
                raise _Failed(Problem("entry", expected, f"missing (next stored index is {idx})"))
            data = bytes(data)
            leaf = sha256(_LEAF + data).digest()
            if leaf != bytes(stored_leaf):
                raise _Failed(Problem("entry", idx, "stored leaf hash does not match its bytes"))
            if not data.endswith(_suffix(prev_hex)):
                raise _Failed(Problem("entry", idx, "does not link to the previous leaf hash"))
            node = next(leaves, None)
            if node is None or node[0] != idx:
                raise _Failed(Problem("entry", idx, f"node 0/{idx} is missing"))
            if bytes(node[1]) != leaf:
                raise _Failed(Problem("entry", idx, f"node 0/{idx} is wrong"))
            climb(frontier, idx, leaf)
            prev_hex, prev_leaf = leaf.hex(), leaf
            expected = idx + 1
            if pending is not None and pending[0] <= expected:
                check_checkpoints(expected)
            if progress and expected % 100_000 == 0:
                progress(expected)
        extra = next(leaves, None)
        if extra is not None:
            raise _Failed(Problem("node", extra[0], "level 0 lies beyond the tree"))
        if pending is not None:
            raise _Failed(Problem("checkpoint", pending[0], "size is beyond the stored entries"))
        state = session.get(State, 1)
        last = bytes(state.last_leaf_hash) if state and state.last_leaf_hash else None
        if state is None or state.size != expected or last != prev_leaf:
            raise _Failed(Problem("state", expected, "tree head does not match the entries"))
    except _Failed as failed:
        return expected, checkpoints_seen, failed.problem
    finally:
        checkpoints.close()
        leaves.close()
    if progress:
        progress(expected)
    return expected, checkpoints_seen, None


def _nodes_pass(session: Session, size: int) -> Problem | None:
    """Check every interior node against its two children, level by level."""
    sha256 = hashlib.sha256
    for level in range(1, max(size.bit_length(), 1) + 1):
        width = size >> level
        children = _rows(
            session,
            "SELECT idx, hash FROM ledger_nodes WHERE level = %s ORDER BY idx",
            (level - 1,),
        )
        parents = _rows(
            session, "SELECT idx, hash FROM ledger_nodes WHERE level = %s ORDER BY idx", (level,)
        )
        try:
            for expected_idx in range(width):
                completed_by = ((expected_idx + 1) << level) - 1
                left, right, parent = (
                    next(children, None),
                    next(children, None),
                    next(parents, None),
                )
                if parent is None or parent[0] != expected_idx:
                    return Problem("entry", completed_by, f"node {level}/{expected_idx} is missing")
                if (
                    left is None
                    or right is None
                    or (left[0], right[0]) != (2 * expected_idx, 2 * expected_idx + 1)
                ):
                    return Problem(
                        "entry", completed_by, f"a child of node {level}/{expected_idx} is missing"
                    )
                if sha256(_NODE + bytes(left[1]) + bytes(right[1])).digest() != bytes(parent[1]):
                    return Problem("entry", completed_by, f"node {level}/{expected_idx} is wrong")
            extra = next(parents, None)
            if extra is not None:
                return Problem("node", extra[0], f"level {level} lies beyond the tree")
        finally:
            children.close()
            parents.close()
    return None
