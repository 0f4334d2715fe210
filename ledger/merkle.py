"""RFC 9162 Merkle tree hashing, proofs and C2SP tlog-tiles coordinates.

Every algorithm reads the tree only through perfect-subtree hashes (see `HashReader`), so a
store that keeps one row per complete node answers any root or proof with O(log n) reads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class HashReader(Protocol):
    """A source of perfect-subtree hashes."""

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Return MTH of leaves [index * 2**level, (index + 1) * 2**level); level 0 is a leaf hash.

        Only subtrees lying entirely inside the tree size being asked about are requested.
        """
        ...


def _split(n: int) -> int:
    """Return the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Return the (level, index) perfect subtrees, left to right, whose fold is MTH(D[start:end]).

    The range must be one that RFC 9162 recursion produces: `start` aligned to the largest
    power of two not exceeding `end - start`.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    out = []
    pos = start
    for level in range((end - start).bit_length() - 1, -1, -1):
        if (end - start) >> level & 1:
            if pos % (1 << level):
                raise ValueError(f"range [{start}, {end}) is not a Merkle subtree range")
            out.append((level, pos >> level))
            pos += 1 << level
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def range_hash(reader: HashReader, start: int, end: int) -> bytes:
    """Return MTH(D[start:end]) from at most log2(end - start) + 1 perfect-subtree hashes."""
    return _fold([reader.subtree_hash(level, i) for level, i in perfect_subtrees(start, end)])


def root(reader: HashReader, size: int) -> bytes:
    """Return the root hash of the first `size` leaves."""
    if size < 0:
        raise ValueError("size must be non-negative")
    return EMPTY_ROOT if size == 0 else range_hash(reader, 0, size)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes form PATH(index, D[0:size]), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside tree of size {size}")
    out = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes form PROOF(old, D[0:new]), deepest first."""
    if not 0 <= old <= new:
        raise ValueError(f"cannot prove consistency from size {old} to size {new}")
    if old in (0, new):
        return []
    out = []
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        out.append((lo, hi))
    out.reverse()
    return out


def inclusion_proof(reader: HashReader, index: int, size: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof for leaf `index` in the tree of `size` leaves."""
    return [range_hash(reader, a, b) for a, b in inclusion_ranges(index, size)]


def consistency_proof(reader: HashReader, old: int, new: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof from tree size `old` to tree size `new`."""
    return [range_hash(reader, a, b) for a, b in consistency_ranges(old, new)]


def _is_hash(h: object) -> bool:
    return isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE


def _is_count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def _is_proof(proof: object) -> bool:
    return isinstance(proof, list | tuple) and all(_is_hash(p) for p in proof)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return whether `proof` shows leaf `leaf_hash` at `index` in the tree (`size`, `root`)."""
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    if not (_is_count(index) and _is_count(size) and index < size):
        return False
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return whether `proof` shows tree (`old_size`, `old_root`) is a prefix of the new tree.

    Size 0 is consistent with everything but its root must be the empty root; equal sizes
    need equal roots and an empty proof.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_proof(proof)):
        return False
    if not (_is_count(old_size) and _is_count(new_size) and old_size <= new_size):
        return False
    if old_size == 0:
        return old_root == EMPTY_ROOT and not proof and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return old_root == new_root and not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class MemoryTree:
    """An in-memory Merkle tree that keeps every perfect-subtree hash."""

    def __init__(self, entries: Iterable[bytes] = ()) -> None:
        """Build a tree from `entries`, in order."""
        self._levels: list[list[bytes]] = [[]]
        for entry in entries:
            self.append(entry)

    @property
    def size(self) -> int:
        """Return the number of leaves."""
        return len(self._levels[0])

    def append(self, entry: bytes) -> int:
        """Append an entry and return its index."""
        return self.append_leaf_hash(leaf_hash(entry))

    def append_leaf_hash(self, h: bytes) -> int:
        """Append an already computed leaf hash and return its index."""
        if not _is_hash(h):
            raise ValueError("leaf hash must be 32 bytes")
        index = self.size
        self._levels[0].append(bytes(h))
        level = 0
        # Each newly completed right child completes its parent one level up.
        while len(self._levels[level]) % 2 == 0:
            row = self._levels[level]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(row[-2], row[-1]))
            level += 1
        return index

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Return the hash of a complete subtree; raise IndexError if it is not complete yet."""
        if level < 0 or index < 0 or level >= len(self._levels):
            raise IndexError(f"no complete subtree at level {level} index {index}")
        row = self._levels[level]
        if index >= len(row):
            raise IndexError(f"no complete subtree at level {level} index {index}")
        return row[index]

    def root(self, size: int | None = None) -> bytes:
        """Return the root hash at `size` (default: the current size)."""
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"tree has only {self.size} leaves")
        return root(self, size)


# C2SP tlog-tiles: a tile holds up to 256 consecutive hashes from every eighth Merkle level.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


@dataclass(frozen=True)
class Tile:
    """A tlog-tiles tile: `level`, `index` within the level, `width` hashes (256 when full)."""

    level: int
    index: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        """Check the coordinates are in range."""
        if not 0 <= self.level <= 63 or self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"invalid tile {self.level}/{self.index} width {self.width}")
        if self.entries and self.level != 0:
            raise ValueError("entry bundles exist only at level 0")

    @property
    def is_partial(self) -> bool:
        """Return whether the tile holds fewer than 256 hashes."""
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """Return the tile's path below the log prefix, e.g. `tile/1/x001/234.p/5`."""
        digits = str(self.index)
        digits = digits.zfill(-(-len(digits) // 3) * 3)
        groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
        n = "/".join([*("x" + g for g in groups[:-1]), groups[-1]])
        head = "tile/entries" if self.entries else f"tile/{self.level}"
        tail = f".p/{self.width}" if self.is_partial else ""
        return f"{head}/{n}{tail}"


_TILE_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<n>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?",
    re.ASCII,
)


def parse_tile_path(path: str) -> Tile:
    """Parse `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`; raise ValueError if malformed."""
    m = _TILE_PATH.fullmatch(path)
    if m is None:
        raise ValueError(f"malformed tile path {path!r}")
    groups = m["n"].replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":
        raise ValueError(f"tile index in {path!r} has a leading zero group")
    width = int(m["width"]) if m["width"] else TILE_WIDTH
    if m["width"] and width >= TILE_WIDTH:
        raise ValueError(f"partial tile width in {path!r} must be below {TILE_WIDTH}")
    entries = m["level"] == "entries"
    return Tile(0 if entries else int(m["level"]), int("".join(groups)), width, entries)


def tile_for(level: int, index: int, size: int, entries: bool = False) -> Tile | None:
    """Return the tile at (`level`, `index`) as published for a tree of `size`, or None."""
    full = size >> (TILE_HEIGHT * (level + 1))
    if index < full:
        return Tile(level, index, TILE_WIDTH, entries)
    width = (size >> (TILE_HEIGHT * level)) % TILE_WIDTH
    if index == full and width:
        return Tile(level, index, width, entries)
    return None


def tile_hashes(reader: HashReader, tile: Tile) -> bytes:
    """Return the tile's content: `width` concatenated perfect-subtree hashes."""
    if tile.entries:
        raise ValueError("an entry bundle holds entries, not hashes")
    base = tile.index * TILE_WIDTH
    return b"".join(
        reader.subtree_hash(TILE_HEIGHT * tile.level, base + i) for i in range(tile.width)
    )


def encode_entry_bundle(entries: Iterable[bytes]) -> bytes:
    """Return a tlog-tiles entry bundle: each entry prefixed by its big-endian uint16 length."""
    out = bytearray()
    for entry in entries:
        if len(entry) > 0xFFFF:
            raise ValueError("entry longer than 65535 bytes cannot be bundled")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle into entries; raise ValueError if it is truncated."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated entry bundle")
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            raise ValueError("truncated entry bundle")
        out.append(bytes(data[pos + 2 : pos + 2 + n]))
        pos += 2 + n
    return out
