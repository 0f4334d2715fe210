"""Check the whole stored log from its bytes: what `recpo ledger verify` runs.

One streaming pass over the entries in index order, in batches of 2**`BATCH_LEVEL` entries (so
each full batch is one perfect subtree), in constant memory:

1. each entry is re-hashed from its stored bytes and must match its stored leaf hash;
2. each entry must end with exactly the chain link `make_entry` writes (canonical JSON sorts the
   keys body, kind, prev, v): `,"prev":"<previous leaf hash, lowercase hex>","v":1}`, and that
   must be its only `prev` member. The suffix alone would also pass bytes with a second top-level
   `prev` member earlier on, which JSON parsers resolve differently. When `"prev"` occurs once in
   the bytes and they hold no backslash, no other member can be named prev (a key can only be
   spelled differently with escapes); any other entry is parsed and must be one JSON object with
   the members body (an object), kind (a non-empty string), prev and v, in that order. Whether
   the rest of an entry is canonical is not checked here;
3. the tree is rebuilt from the leaves (level by level inside a batch, then along the right edge)
   and every node an entry completes must be stored, once, with exactly the rebuilt hash: node
   (l, i) is checked at entry `((i + 1) << l) - 1`. No level may hold anything outside the
   complete subtrees of the tree;
4. every stored checkpoint, merged in by size, must carry a valid signature over exactly the
   rebuilt root at its size. Since all are checked against one rebuilt sequence of leaves, each
   is consistent with the next;
5. the tree head (`ledger_state`) must name the last entry.

Every hash is computed here from bytes read from the database; the database only selects stored
values and, for nodes, joins each level's range of them together with their indexes, which are
compared with the indexes expected, so a missing, extra, repeated or changed row shows.

Fast and exact: a batch is first checked as a whole (list and byte-string comparisons). When
anything in it differs, the batch is checked again one entry at a time, in stream order (an
entry's own checks, then the nodes it completes, then the checkpoint at its size), which names the
first problem. On PostgreSQL a background thread reads the next batch while this one is checked.
"""

from __future__ import annotations

import binascii
import hashlib
import itertools
import json.scanner
import math
import operator
import queue
import struct
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ledger.entries import GENESIS_PREV
from ledger.log import climb, frontier_root
from ledger.models import State
from ledger.note import NoteError, Verifier, open_checkpoint

BATCH_LEVEL = 13  # batches of 2**13 entries
PREFETCH = 1  # batches read ahead on PostgreSQL (memory: about PREFETCH + 2 batches)
_CURSORS = itertools.count()
_LEAF, _NODE = b"\x00", b"\x01"
_LINK_HEAD, _LINK_TAIL = b',"prev":"', b'","v":1}'
_LINK_SLICE = slice(-(len(_LINK_HEAD) + 64 + len(_LINK_TAIL)), None)
_PREV_KEY, _ESCAPE = b'"prev"', b"\\"
_GENESIS_LEAF = bytes.fromhex(GENESIS_PREV)  # hexlifies to the genesis link
_MAX_LEVEL = 62  # node indexes are BIGINT: no complete subtree sits higher


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


# --- entry shape -----------------------------------------------------------------------------


class _ScanContext:
    """What the C JSON scanner reads from a decoder; objects come back as tuples of pairs."""

    strict = True
    object_hook = None
    object_pairs_hook = tuple
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.__getitem__
    memo: dict[str, str] = {}  # noqa: RUF012


_scan = json.scanner.make_scanner(_ScanContext())


def _malformed(data: bytes) -> str | None:
    """Why `data` is not one JSON object with members body, kind, prev and v, or None."""
    try:
        text = data.decode("utf-8")
        top, end = _scan(text, 0)
    except UnicodeDecodeError:
        return "is not UTF-8"
    except (StopIteration, ValueError):
        return "is not a JSON object"
    except RecursionError:
        return "is nested too deeply to read"
    if end != len(text) or type(top) is not tuple:
        return "is not a JSON object"
    if (
        len(top) != 4
        or top[0][0] != "body"
        or top[1][0] != "kind"
        or top[2][0] != "prev"
        or top[3][0] != "v"
    ):
        return "must have exactly the members body, kind, prev and v, in that order"
    if type(top[0][1]) is not tuple:
        return "body is not an object"
    kind = top[1][1]
    if type(kind) is not str or not kind:
        return "kind is not a non-empty string"
    return None


def _ambiguous(data: bytes) -> str | None:
    """Why the link that `data` ends with might not be its only `prev` member, or None.

    Bytes with no backslash spell every key as it is, so when `"prev"` occurs once (in the link
    the entry ends with) no other member can be named prev, at any depth. Other entries are
    parsed: they must be one JSON object with the members body, kind, prev and v, in that order.
    """
    if data.count(_PREV_KEY) == 1 and _ESCAPE not in data:
        return None
    return _malformed(data)


def _link(prev_hex: bytes) -> bytes:
    # Canonical JSON sorts keys: body, kind, prev, v. The entry must end with its chain link.
    return _LINK_HEAD + prev_hex + _LINK_TAIL


# --- reading ---------------------------------------------------------------------------------


def _ranges(start: int, count: int) -> list[tuple[int, int, int]]:
    """(level, first, end) of the nodes completed by entries [start, start + count), per level."""
    end = start + count
    out = []
    for level in range(end.bit_length() + 1):
        first, stop = ((start + (1 << level)) >> level) - 1, end >> level
        if first < stop:
            out.append((level, first, stop))
    return out


@dataclass
class _Batch:
    start: int
    rows: list[tuple[int, bytes, bytes]]  # (idx, entry, leaf_hash) from idx `start` on
    # level -> the stored hashes of `_ranges(start, len(rows))`, joined (see `stored_nodes`)
    stored: dict[int, bytes | None]
    checkpoints: list[tuple[int, bytes, str]]  # (size, root, note): every size <= start + n


class _Reader:
    """The few reads verification makes, in one transaction, on either backend."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.raw: Any = connection.connection.driver_connection
        self.postgres = connection.dialect.name == "postgresql"

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.postgres:
            with self.raw.cursor(binary=True) as cursor:
                cursor.execute(sql, params or None)
                return cursor.fetchall()
        cursor = self.raw.cursor()
        try:
            return cursor.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            cursor.close()

    def _stream(self, sql: str, size: int) -> Generator[list[tuple], None, None]:
        """Yield lists of up to `size` rows (a binary server-side cursor on PostgreSQL)."""
        if self.postgres:
            name = f"verify_{next(_CURSORS)}"
            with self.raw.cursor(name=name, binary=True) as cursor:
                cursor.itersize = size
                cursor.execute(sql)
                while rows := cursor.fetchmany(size):
                    yield rows
            return
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql)
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            cursor.close()

    def stored_nodes(self, ranges: list[tuple[int, int, int]]) -> dict[int, bytes | None]:
        """level -> the stored hashes of that level's range, joined in index order.

        None when the stored indexes are not exactly the range, each once. PostgreSQL joins
        each range as it reads it, with the indexes alongside; when those come in another order
        (they come in the order stored, which is index order in an append-only table), the
        range is read again row by row.
        """
        if not self.postgres:
            return {level: self._joined(level, first, stop) for level, first, stop in ranges}
        if not ranges:
            return {}
        levels, firsts, stops = (list(column) for column in zip(*ranges, strict=True))
        joined = {
            level: (hashes, idxs)
            for level, hashes, idxs in self._query(
                "SELECT r.level, a.hashes, a.idxs"
                " FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS r(level, first, stop)"
                " CROSS JOIN LATERAL (SELECT string_agg(n.hash, ''::bytea) AS hashes,"
                " string_agg(int8send(n.idx), ''::bytea) AS idxs FROM ledger_nodes n"
                " WHERE n.level = r.level AND n.idx >= r.first AND n.idx < r.stop) AS a",
                (levels, firsts, stops),
            )
        }
        out: dict[int, bytes | None] = {}
        for level, first, stop in ranges:
            hashes, idxs = joined[level]
            if idxs == struct.pack(f">{stop - first}q", *range(first, stop)):
                out[level] = hashes
            else:
                out[level] = self._joined(level, first, stop)
        return out

    def _joined(self, level: int, first: int, stop: int) -> bytes | None:
        rows = self.node_rows(level, first, stop)
        if [idx for idx, _ in rows] != list(range(first, stop)):
            return None
        return b"".join(h for _, h in rows)

    def node_rows(self, level: int, first: int, stop: int) -> list[tuple[int, bytes]]:
        return self._query(
            "SELECT idx, hash FROM ledger_nodes WHERE level = %s AND idx >= %s AND idx < %s"
            " ORDER BY idx",
            (level, first, stop),
        )

    def level_bounds(self) -> list[tuple[int, int, int]]:
        """(level, lowest idx, highest idx) of every level that holds nodes (index reads only)."""
        return self._query(
            "WITH RECURSIVE levels(level) AS ("
            " SELECT min(level) FROM ledger_nodes"
            " UNION ALL"
            " SELECT (SELECT min(n.level) FROM ledger_nodes n WHERE n.level > levels.level)"
            " FROM levels WHERE levels.level IS NOT NULL)"
            " SELECT level,"
            " (SELECT min(n.idx) FROM ledger_nodes n WHERE n.level = levels.level),"
            " (SELECT max(n.idx) FROM ledger_nodes n WHERE n.level = levels.level)"
            " FROM levels WHERE level IS NOT NULL ORDER BY level"
        )

    def first_node_from(self, level: int, first: int) -> int:
        return self._query(
            "SELECT min(idx) FROM ledger_nodes WHERE level = %s AND idx >= %s", (level, first)
        )[0][0]

    def batches(self, batch_size: int) -> Generator[_Batch, None, None]:
        """The checkpoints at size <= 0, then each batch of entries, then what lies beyond.

        The first and last items have no rows; the last one carries the first checkpoint (if
        any) beyond the stored entries.
        """
        checkpoint_pages = self._stream(
            "SELECT size, root, note FROM ledger_checkpoints ORDER BY size", 1000
        )
        checkpoints = itertools.chain.from_iterable(checkpoint_pages)
        pending = next(checkpoints, None)

        def upto(size: int) -> list[tuple[int, bytes, str]]:
            nonlocal pending
            out = []
            while pending is not None and pending[0] <= size:
                out.append(pending)
                pending = next(checkpoints, None)
            return out

        entries = self._stream(
            "SELECT idx, entry, leaf_hash FROM ledger_entries ORDER BY idx", batch_size
        )
        try:
            yield _Batch(0, [], {}, upto(0))
            start = 0
            for rows in entries:
                count = len(rows)
                stored = self.stored_nodes(_ranges(start, count))
                yield _Batch(start, rows, stored, upto(start + count))
                start += count
            yield _Batch(start, [], {}, [] if pending is None else [pending])
        finally:
            entries.close()
            checkpoint_pages.close()


def _read_ahead(items: Generator[_Batch, None, None], depth: int) -> Generator[_Batch, None, None]:
    """Iterate `items` on a background thread, up to `depth` items ahead.

    The thread owns the database connection until this generator is closed or exhausted; closing
    it stops the thread (after the read in progress) and waits for it.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    break
        except BaseException as exc:
            offer(("error", exc))
        else:
            offer(("done", None))
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="ledger-verify-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


# --- checking --------------------------------------------------------------------------------


class _Failed(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _Mismatch(Exception):
    """Something in the batch differs: `locate` it."""


class _Verification:
    def __init__(self, reader: _Reader, verifier: Verifier, origin: str, level: int) -> None:
        self.reader = reader
        self.level = level  # batches of 2**level entries
        self.verifier = verifier
        self.origin = origin
        self.frontier: dict[int, bytes] = {}  # the rebuilt tree's right edge: level -> hash
        self.size = 0  # entries checked
        self.prev_leaf: bytes | None = None
        self.checkpoints = 0  # checkpoints checked
        self.beyond: Problem | None = None  # a checkpoint past the last entry

    def prev_leaf_or_genesis(self) -> bytes:
        return _GENESIS_LEAF if self.prev_leaf is None else self.prev_leaf

    def checkpoint(self, row: tuple[int, bytes, str], size: int, root: bytes) -> None:
        """Check stored checkpoint `row` against the rebuilt `root` at `size`."""
        cp_size, cp_root, cp_note = row
        if cp_size < size:
            raise _Failed(Problem("checkpoint", cp_size, "size was skipped while rebuilding"))
        if bytes(cp_root) != root:
            raise _Failed(
                Problem("checkpoint", cp_size, "stored root differs from the rebuilt tree")
            )
        try:
            body, _ = open_checkpoint(cp_note, [self.verifier], self.origin)
        except NoteError as exc:
            raise _Failed(Problem("checkpoint", cp_size, f"signature: {exc}")) from None
        if body.size != cp_size or body.root != root:
            raise _Failed(
                Problem("checkpoint", cp_size, "signed note does not match the rebuilt tree")
            )
        self.checkpoints += 1

    def batch(self, batch: _Batch) -> None:
        """Check one batch as a whole; raise _Mismatch on any difference (`locate` names it)."""
        start, rows = batch.start, batch.rows
        count = len(rows)
        if not count:
            for row in batch.checkpoints:
                if row[0] > self.size:  # reported after the nodes, like the tree head
                    self.beyond = Problem("checkpoint", row[0], "size is beyond the stored entries")
                    return
                self.checkpoint(row, self.size, frontier_root(self.frontier))
            return
        sha256 = hashlib.sha256
        top = self.level
        idxs = [row[0] for row in rows]
        datas = [row[1] for row in rows]
        leaves = [sha256(_LEAF + data).digest() for data in datas]
        # The chain links the batch must end its entries with, made in one piece: hexlify puts
        # a "|" after every 32 bytes of the previous leaf hashes, each becoming tail + head.
        links = b"".join(
            (
                _LINK_HEAD,
                binascii.hexlify(
                    self.prev_leaf_or_genesis() + b"".join(leaves[:-1]), b"|", 32
                ).replace(b"|", _LINK_TAIL + _LINK_HEAD),
                _LINK_TAIL,
            )
        )
        # The perfect subtrees of the batch, level by level (`levels[l][i]` is node (l, i)
        # counted from the batch start); only the last batch can be short.
        levels = [leaves]
        for _ in range(top):
            pairs = iter(levels[-1])
            levels.append(
                [
                    sha256(_NODE + left + right).digest()
                    for left, right in zip(pairs, pairs, strict=False)
                ]
            )
        frontier = dict(self.frontier)
        rebuilt = {level: b"".join(hashes) for level, hashes in enumerate(levels) if hashes}
        if count == 1 << top:
            # The batch is one perfect subtree at level `top`: climb the right edge from there.
            level, index, acc = top, start >> top, levels[top][0]
            while index & 1:
                acc = sha256(_NODE + frontier.pop(level) + acc).digest()
                level, index = level + 1, index >> 1
                rebuilt[level] = acc
            frontier[level] = acc
        else:
            frontier.update(
                (level, levels[level][-1]) for level in range(top) if count >> level & 1
            )
        if not (
            idxs == list(range(start, start + count))
            and [row[2] for row in rows] == leaves
            # Equal joins mean equal parts: a part can only be shorter than its link.
            and b"".join(map(operator.getitem, datas, itertools.repeat(_LINK_SLICE))) == links
            and rebuilt == batch.stored
            and (
                # _ambiguous for the whole batch, with the byte test in C loops.
                (
                    set(map(bytes.count, datas, itertools.repeat(_PREV_KEY))) == {1}
                    and not any(map(operator.contains, datas, itertools.repeat(_ESCAPE)))
                )
                or not any(map(_ambiguous, datas))
            )
        ):
            raise _Mismatch
        for row in batch.checkpoints:
            size = self.size = row[0]
            if size == start + count:
                root = frontier_root(frontier)
            else:
                offset = size - start
                edge = dict(self.frontier)
                edge.update(
                    (level, levels[level][(offset >> level) - 1])
                    for level in range(top)
                    if offset >> level & 1
                )
                root = frontier_root(edge)
            self.checkpoint(row, size, root)
        self.frontier = frontier
        self.size = start + count
        self.prev_leaf = leaves[-1]

    def locate(self, batch: _Batch) -> Problem:
        """Check `batch` one entry at a time, in stream order; return the first problem."""
        start = batch.start
        stored: dict[tuple[int, int], list[bytes | None]] = {}
        for level, first, stop in _ranges(start, len(batch.rows)):
            for idx, h in self.reader.node_rows(level, first, stop):
                stored.setdefault((level, idx), []).append(None if h is None else bytes(h))
        checkpoints = iter(batch.checkpoints)
        pending = next(checkpoints, None)
        frontier = dict(self.frontier)
        prev_hex = binascii.hexlify(self.prev_leaf_or_genesis())
        self.size = start
        try:
            for offset, (idx, data, stored_leaf) in enumerate(batch.rows):
                expected = start + offset
                if idx != expected:
                    return Problem("entry", expected, f"missing (next stored index is {idx})")
                data = bytes(data)
                leaf = hashlib.sha256(_LEAF + data).digest()
                if stored_leaf is None or leaf != bytes(stored_leaf):
                    return Problem("entry", idx, "stored leaf hash does not match its bytes")
                if not data.endswith(_link(prev_hex)):
                    return Problem("entry", idx, "does not link to the previous leaf hash")
                reason = _ambiguous(data)
                if reason is not None:
                    return Problem("entry", idx, f"is not a ledger entry: {reason}")
                for level, node_idx, h in climb(frontier, idx, leaf):
                    found = stored.get((level, node_idx), [])
                    if not found:
                        return Problem("entry", idx, f"node {level}/{node_idx} is missing")
                    if len(found) > 1:
                        return Problem(
                            "entry", idx, f"node {level}/{node_idx} is stored more than once"
                        )
                    if found[0] != h:
                        return Problem("entry", idx, f"node {level}/{node_idx} is wrong")
                prev_hex = binascii.hexlify(leaf)
                self.size = expected + 1
                while pending is not None and pending[0] <= self.size:
                    self.checkpoint(pending, self.size, frontier_root(frontier))
                    pending = next(checkpoints, None)
        except _Failed as failed:
            return failed.problem
        return Problem(
            "entry", start, f"the {len(batch.rows)} entries from here differ from what was stored"
        )

    def extra_nodes(self) -> Problem | None:
        """The first stored node that is not a complete subtree of the tree, if any."""
        for level, lowest, highest in self.reader.level_bounds():
            if not 0 <= level <= _MAX_LEVEL:
                return Problem("node", lowest, f"level {level} lies beyond the tree")
            if lowest < 0:
                return Problem("node", lowest, f"level {level} has a negative index")
            width = self.size >> level
            if highest >= width:
                first = self.reader.first_node_from(level, width)
                return Problem("node", first, f"level {level} lies beyond the tree")
        return None


def verify_log(
    session: Session,
    verifier: Verifier,
    origin: str,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify every stored entry, node and checkpoint; report the earliest problem."""
    reader = _Reader(session)
    run = _Verification(reader, verifier, origin, BATCH_LEVEL)
    batches = reader.batches(1 << BATCH_LEVEL)
    if reader.postgres:
        batches = _read_ahead(batches, PREFETCH)
    try:
        for batch in batches:
            try:
                run.batch(batch)
            except _Mismatch:
                batches.close()  # the reader thread stops: `locate` reads on its own
                problem = run.locate(batch)
                return Report(run.size, run.checkpoints, problem)
            if progress and batch.rows:
                progress(run.size)
    except _Failed as failed:
        return Report(run.size, run.checkpoints, failed.problem)
    finally:
        batches.close()
    problem = run.extra_nodes() or run.beyond
    if problem is None:
        state = session.get(State, 1)
        last = bytes(state.last_leaf_hash) if state and state.last_leaf_hash else None
        if state is None or state.size != run.size or last != run.prev_leaf:
            problem = Problem("state", run.size, "tree head does not match the entries")
    if progress and problem is None:
        progress(run.size)
    return Report(run.size, run.checkpoints, problem)
