import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    Tile,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency / transparency-dev reference tree (leaf inputs in hex).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
# Roots for tree sizes 0..8.
CT_ROOTS = [
    bytes.fromhex(h)
    for h in [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
# Complete-subtree hashes of the 8-leaf tree, by level.
CT_NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
# (leaf index, tree size, proof) from transparency-dev/merkle's verifier tests.
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, proof) from the same source.
CT_CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# A deliberately naive transcription of RFC 9162 section 2.1, used as the reference.
def _k(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries):
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = _k(len(entries))
    return hashlib.sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:])).digest()


def ref_path(m, entries):
    """Return PATH(m, D[n]) as (hash, sibling side) pairs."""
    if len(entries) <= 1:
        return []
    k = _k(len(entries))
    if m < k:
        return [*ref_path(m, entries[:k]), (ref_mth(entries[k:]), "right")]
    return [*ref_path(m - k, entries[k:]), (ref_mth(entries[:k]), "left")]


def ref_sides(m, n):
    """Return only the sibling sides of PATH(m, D[n])."""
    if n <= 1:
        return []
    k = _k(n)
    return [*ref_sides(m, k), "right"] if m < k else [*ref_sides(m - k, n - k), "left"]


def ref_subproof(m, entries, whole):
    n = len(entries)
    if m == n:
        return [] if whole else [ref_mth(entries)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], whole), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m, entries):
    return ref_subproof(m, entries, True) if 0 < m < len(entries) else []


ENTRIES = [i.to_bytes(2, "big") + b"entry" for i in range(300)]
BIG = MemoryTree(ENTRIES)


class BoundedReader:
    """Serve hashes of the first `size` leaves only, and count the reads."""

    def __init__(self, tree, size):
        self.tree, self.size, self.reads = tree, size, 0

    def subtree_hash(self, level, index):
        assert (index + 1) << level <= self.size, "read outside the tree size"
        self.reads += 1
        return self.tree.subtree_hash(level, index)


def _flip(proof, i, byte=0, mask=0x08):
    out = list(proof)
    h = bytearray(out[i])
    h[byte] ^= mask
    out[i] = bytes(h)
    return out


# --- known answers ---------------------------------------------------------------------------


def test_hash_primitives():
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert merkle.leaf_hash(b"") == bytes.fromhex(CT_NODES[0][0])
    assert merkle.node_hash(bytes.fromhex(CT_NODES[0][0]), bytes.fromhex(CT_NODES[0][1])) == (
        bytes.fromhex(CT_NODES[1][0])
    )


def test_ct_roots_for_every_size():
    tree = MemoryTree(CT_LEAVES)
    for size, want in enumerate(CT_ROOTS):
        assert tree.root(size) == want
        assert merkle.root(tree, size) == want
    assert tree.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert tree.root(3).hex() == "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    assert MemoryTree().root() == hashlib.sha256(b"").digest()


def test_ct_complete_subtree_hashes():
    tree = MemoryTree(CT_LEAVES)
    for level, row in enumerate(CT_NODES):
        assert [tree.subtree_hash(level, i).hex() for i in range(len(row))] == row
    with pytest.raises(IndexError):
        tree.subtree_hash(3, 1)
    with pytest.raises(IndexError):
        tree.subtree_hash(4, 0)


def test_incomplete_subtrees_are_not_served():
    tree = MemoryTree(CT_LEAVES[:7])
    assert tree.subtree_hash(1, 2).hex() == CT_NODES[1][2]
    with pytest.raises(IndexError):
        tree.subtree_hash(1, 3)
    with pytest.raises(IndexError):
        tree.subtree_hash(2, 1)


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_inclusion_vectors(index, size, proof):
    tree = MemoryTree(CT_LEAVES)
    want = [bytes.fromhex(h) for h in proof]
    assert inclusion_proof(tree, index, size) == want
    leaf = merkle.leaf_hash(CT_LEAVES[index])
    root = CT_ROOTS[size]
    assert verify_inclusion(leaf, index, size, want, root)
    probes = [
        (index - 1, size, root, leaf, want),
        (index + 1, size, root, leaf, want),
        (index ^ 2, size, root, leaf, want),
        (index, size * 2, root, leaf, want),
        (index, size // 2, root, leaf, want),
        (index, size, root, b"WrongLeaf", want),
        (index, size, EMPTY_ROOT, leaf, want),
        (index, size, SOME_HASH, leaf, want),
        (index, size, root, leaf, [*want, b""]),
        (index, size, root, leaf, [*want, root]),
        (index, size, root, leaf, [b"", *want]),
        (index, size, root, leaf, [root, *want]),
        (index, size, root, leaf, want[:-1]),
        (index, size, root, leaf, [want[0], SOME_HASH, *want[1:]]),
    ]
    probes += [(index, size, root, leaf, _flip(want, i)) for i in range(len(want))]
    for i, s, r, lh, p in probes:
        assert not verify_inclusion(lh, i, s, p, r), (i, s, r.hex(), lh.hex(), p)


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_ct_consistency_vectors(old, new, proof):
    tree = MemoryTree(CT_LEAVES)
    want = [bytes.fromhex(h) for h in proof]
    assert consistency_proof(tree, old, new) == want
    r1, r2 = CT_ROOTS[old], CT_ROOTS[new]
    assert verify_consistency(old, new, r1, r2, want)
    probes = [
        (old - 1, new, r1, r2, want),
        (old + 1, new, r1, r2, want),
        (old ^ 2, new, r1, r2, want),
        (old, new * 2, r1, r2, want),
        (old, new // 2, r1, r2, want),
        (old, new, b"WrongRoot", r2, want),
        (old, new, r1, b"WrongRoot", want),
        (old, new, r2, r1, want),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*want, b""]),
        (old, new, r1, r2, [*want, r1]),
        (old, new, r1, r2, [*want, r2]),
        (old, new, r1, r2, [b"", *want]),
        (old, new, r1, r2, [r1, *want]),
        (old, new, r1, r2, [r2, *want]),
        (old, new, r1, r2, [want[0], *want]),
        (old, new, r1, r2, want[:-1]),
    ]
    probes += [(old, new, r1, r2, _flip(want, i, mask=0x10)) for i in range(len(want))]
    for o, n, a, b, p in probes:
        assert not verify_consistency(o, n, a, b, p), (o, n, p)


def test_single_leaf_and_trivial_cases():
    h = merkle.leaf_hash(b"data")
    assert verify_inclusion(h, 0, 1, [], h)
    assert not verify_inclusion(h, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], h)
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, CT_ROOTS[5], [])
    assert verify_consistency(3, 3, CT_ROOTS[3], CT_ROOTS[3], [])
    assert not verify_consistency(0, 5, SOME_HASH, CT_ROOTS[5], [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, SOME_HASH, [])
    assert not verify_consistency(3, 3, CT_ROOTS[3], CT_ROOTS[4], [])
    assert not verify_consistency(3, 3, CT_ROOTS[3], CT_ROOTS[3], [EMPTY_ROOT])
    assert not verify_consistency(0, 1, EMPTY_ROOT, CT_ROOTS[1], [EMPTY_ROOT])
    assert not verify_consistency(2, 1, CT_ROOTS[2], CT_ROOTS[1], [])
    assert not verify_consistency(1, 2, CT_ROOTS[1], CT_ROOTS[2], [])


@pytest.mark.parametrize(
    "args",
    [
        ("x", 0, 1, [], EMPTY_ROOT),
        (EMPTY_ROOT, -1, 1, [], EMPTY_ROOT),
        (EMPTY_ROOT, 0, "1", [], EMPTY_ROOT),
        (EMPTY_ROOT, True, 2, [EMPTY_ROOT], EMPTY_ROOT),
        (EMPTY_ROOT, 0, 2, [None], EMPTY_ROOT),
        (EMPTY_ROOT, 0, 2, EMPTY_ROOT, EMPTY_ROOT),
        (EMPTY_ROOT, 0, 2, [b"short"], EMPTY_ROOT),
        (EMPTY_ROOT, 0, 2, [EMPTY_ROOT], None),
        (EMPTY_ROOT, 0, 2**70, [EMPTY_ROOT] * 3, EMPTY_ROOT),
    ],
)
def test_verify_inclusion_returns_false_on_garbage(args):
    assert verify_inclusion(*args) is False


@pytest.mark.parametrize(
    "args",
    [
        (1, 2, "a", EMPTY_ROOT, [EMPTY_ROOT]),
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, None),
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, [1, 2]),
        (-1, 2, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (1.0, 2, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (3, 2**80, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT] * 5),
    ],
)
def test_verify_consistency_returns_false_on_garbage(args):
    assert verify_consistency(*args) is False


def test_proof_arguments_are_checked():
    with pytest.raises(ValueError):
        inclusion_proof(BIG, 5, 5)
    with pytest.raises(ValueError):
        consistency_proof(BIG, 6, 5)
    with pytest.raises(ValueError):
        merkle.perfect_subtrees(1, 3)  # [1, 3) is not a node range of any tree
    with pytest.raises(ValueError):
        MemoryTree().append_leaf_hash(b"short")
    with pytest.raises(ValueError):
        MemoryTree(CT_LEAVES).root(9)


# --- agreement with the naive reference and properties --------------------------------------


def test_every_proof_up_to_64_matches_reference():
    for size in range(65):
        entries = ENTRIES[:size]
        assert merkle.root(BIG, size) == ref_mth(entries)
        for index in range(size):
            proof = inclusion_proof(BIG, index, size)
            assert proof == [h for h, _ in ref_path(index, entries)]
            assert verify_inclusion(BIG.subtree_hash(0, index), index, size, proof, BIG.root(size))
        for old in range(size + 1):
            proof = consistency_proof(BIG, old, size)
            assert proof == ref_proof(old, entries)
            assert verify_consistency(old, size, BIG.root(old), BIG.root(size), proof)


def test_memory_tree_grows_incrementally():
    tree = MemoryTree()
    for i, entry in enumerate(ENTRIES[:40]):
        assert tree.append(entry) == i
        assert tree.size == i + 1
        assert tree.root() == ref_mth(ENTRIES[: i + 1])


sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size=sizes)
def test_inclusion_property(data, size):
    index = data.draw(st.integers(0, size - 1))
    entries = ENTRIES[:size]
    reader = BoundedReader(BIG, size)
    proof = inclusion_proof(reader, index, size)
    assert reader.reads <= 2 * size.bit_length()
    assert proof == [h for h, _ in ref_path(index, entries)]
    root, leaf = ref_mth(entries), merkle.leaf_hash(entries[index])
    assert verify_inclusion(leaf, index, size, proof, root)

    for i in range(len(proof)):
        byte = data.draw(st.integers(0, 31))
        assert not verify_inclusion(leaf, index, size, _flip(proof, i, byte, 0x01), root)
    assert not verify_inclusion(_flip([leaf], 0)[0], index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, _flip([root], 0)[0])

    other = data.draw(st.integers(0, size + 5).filter(lambda i: i != index))
    assert not verify_inclusion(leaf, other, size, proof, root)

    # A different size can only pass if its tree has the same path shape for this leaf.
    wrong = data.draw(st.integers(1, 600).filter(lambda s: s != size))
    same_shape = index < wrong and ref_sides(index, wrong) == ref_sides(index, size)
    assert verify_inclusion(leaf, index, wrong, proof, root) == same_shape


@settings(max_examples=150, deadline=None)
@given(data=st.data(), new=sizes)
def test_consistency_property(data, new):
    old = data.draw(st.integers(1, new))
    reader = BoundedReader(BIG, new)
    proof = consistency_proof(reader, old, new)
    assert reader.reads <= 2 * new.bit_length()
    assert proof == ref_proof(old, ENTRIES[:new])
    r1, r2 = ref_mth(ENTRIES[:old]), ref_mth(ENTRIES[:new])
    assert verify_consistency(old, new, r1, r2, proof)

    for i in range(len(proof)):
        byte = data.draw(st.integers(0, 31))
        assert not verify_consistency(old, new, r1, r2, _flip(proof, i, byte, 0x80))
    if old < new:
        assert not verify_consistency(old, new, _flip([r1], 0)[0], r2, proof)
        assert not verify_consistency(old, new, r1, _flip([r2], 0)[0], proof)
        assert not verify_consistency(old, new, r1, r2, proof[:-1])

    # Sizes whose proof has another length can never accept this one.
    o2 = data.draw(st.integers(1, 300))
    n2 = data.draw(st.integers(o2, 300))
    if (o2, n2) != (old, new) and len(ref_proof(o2, ENTRIES[:n2])) != len(proof):
        assert not verify_consistency(o2, n2, r1, r2, proof)


# --- tiles -----------------------------------------------------------------------------------


def test_tile_paths():
    assert Tile(0, 1234067).path() == "tile/0/x001/x234/067"
    assert Tile(1, 0, 5).path() == "tile/1/000.p/5"
    assert Tile(0, 1000, entries=True).path() == "tile/entries/x001/000"
    assert Tile(2, 999).path() == "tile/2/999"
    for tile in [Tile(0, 1234067), Tile(1, 0, 5), Tile(0, 1000, 7, entries=True), Tile(63, 5)]:
        assert merkle.parse_tile_path(tile.path()) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",
        "tile/0/0001",
        "tile/00/001",
        "tile/64/001",
        "tile/0/x000/123",
        "tile/0/001/234",
        "tile/0/x001",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/001.p/07",
        "tile/1/001.p/",
        "tile/entries/001.p/300",
        "tile/-1/001",
        "tile/0/abc",
        "tile/0/001/",
        "0/001",
    ],
)
def test_malformed_tile_paths(path):
    with pytest.raises(ValueError):
        merkle.parse_tile_path(path)


def test_tiles_published_for_a_size():
    # The example from c2sp.org/tlog-tiles: a tree of 70,000 leaves.
    size = 70_000
    assert merkle.tile_for(0, 272, size) == Tile(0, 272)
    assert merkle.tile_for(0, 273, size) == Tile(0, 273, 112)
    assert merkle.tile_for(0, 274, size) is None
    assert merkle.tile_for(1, 0, size) == Tile(1, 0)
    assert merkle.tile_for(1, 1, size) == Tile(1, 1, 17)
    assert merkle.tile_for(2, 0, size) == Tile(2, 0, 1)
    assert merkle.tile_for(3, 0, size) is None
    assert merkle.tile_for(0, 0, 256) == Tile(0, 0)
    assert merkle.tile_for(1, 0, 256) == Tile(1, 0, 1)
    assert merkle.tile_for(0, 1, 256) is None


def test_tile_hashes():
    entries = [i.to_bytes(4, "big") for i in range(2 * 256 + 5)]
    tree = MemoryTree(entries)
    level0 = merkle.tile_hashes(tree, merkle.tile_for(0, 2, tree.size))
    assert level0 == b"".join(merkle.leaf_hash(e) for e in entries[512:])
    level1 = merkle.tile_hashes(tree, merkle.tile_for(1, 0, tree.size))
    assert level1 == ref_mth(entries[:256]) + ref_mth(entries[256:512])
    with pytest.raises(IndexError):
        merkle.tile_hashes(tree, Tile(0, 2))


def test_entry_bundles():
    entries = [b"", b"a", b"x" * 300, bytes(range(256))]
    bundle = merkle.encode_entry_bundle(entries)
    assert bundle[:5] == b"\x00\x00\x00\x01a"
    assert merkle.decode_entry_bundle(bundle) == entries
    for broken in (bundle[:-1], bundle + b"\x00", b"\x00\x05ab"):
        with pytest.raises(ValueError):
            merkle.decode_entry_bundle(broken)
    with pytest.raises(ValueError):
        merkle.encode_entry_bundle([b"x" * 65536])
