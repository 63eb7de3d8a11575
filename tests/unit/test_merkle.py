"""Unit and property tests for ledger.merkle (RFC 9162 Merkle tree).

Three independent oracles:
- pymerkle, a separate implementation (pointer-based in-memory tree): its
  roots and inclusion paths must match ours byte for byte for every size up
  to 64. Its consistency path is not the RFC's PROOF (it descends to a single
  leaf where RFC 9162 stops at a subtree), so consistency is cross-checked by
  meaning, not by bytes: each side's proof verifies against the other side's
  roots, and our proof equals SUBPROOF evaluated over pymerkle's hashes;
- a literal, recursive transcription of RFC 9162 sections 2.1.1, 2.1.3.1 and
  2.1.4.1 (reference_root, reference_path, reference_subproof below);
- hypothesis properties over sizes up to 300.

The published vectors live in tests/vectors/test_merkle_vectors.py.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import pymerkle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import IntegrityError, InvalidInput, LedgerError, NotFound
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    TREE_SIZE_MAX,
    CompactRange,
    MemoryNodeStore,
    MerkleProofError,
    TreeRangeMustBeValid,
    consistency_proof,
    consistency_proof_length,
    inclusion_proof,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

PROPERTY_SIZE_MAX = 300
CROSS_CHECK_SIZE_MAX = 64
MESSAGE_FORM = re.compile(r"^merkle_proof_invalid: .+: expected .+, got .+$")

property_settings = settings(max_examples=60, deadline=None, print_blob=True)


def entries(count: int, salt: int = 0) -> list[bytes]:
    return [f"entry {salt} {number}".encode() for number in range(count)]


def build(leaves: Sequence[bytes]) -> tuple[MemoryNodeStore, CompactRange, list[bytes]]:
    """Append every leaf; return the store, the frontier and the leaf hashes."""
    store = MemoryNodeStore()
    frontier = CompactRange()
    hashes = []
    for leaf in leaves:
        hash_value = leaf_hash(leaf)
        hashes.append(hash_value)
        for level, index, node in frontier.append(hash_value):
            store.put(level, index, node)
    return store, frontier, hashes


def flip(value: bytes, position: int, mask: int = 1) -> bytes:
    changed = bytearray(value)
    changed[position] ^= mask
    return bytes(changed)


# --- RFC 9162 section 2.1, transcribed literally ------------------------------

RangeRoot = Callable[[int, int], bytes]


def split_point(width: int) -> int:
    """The largest power of two smaller than width (width > 1)."""
    k = 1
    while k * 2 < width:
        k *= 2
    return k


def reference_root(hashes: Sequence[bytes]) -> bytes:
    """MTH (section 2.1.1) over leaf hashes, recursively."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = split_point(len(hashes))
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def reference_path(index: int, start: int, end: int, range_root: RangeRoot) -> list[bytes]:
    """PATH(m, D[start:end]) (section 2.1.3.1); ``index`` counts from 0 over the whole tree."""
    if end - start == 1:
        return []
    k = split_point(end - start)
    if index < start + k:
        return [*reference_path(index, start, start + k, range_root), range_root(start + k, end)]
    return [*reference_path(index, start + k, end, range_root), range_root(start, start + k)]


def reference_subproof(
    old_end: int, start: int, end: int, known: bool, range_root: RangeRoot
) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b) (section 2.1.4.1) with m = old_end - start."""
    if old_end == end:
        return [] if known else [range_root(start, end)]
    k = split_point(end - start)
    if old_end <= start + k:
        inner = reference_subproof(old_end, start, start + k, known, range_root)
        return [*inner, range_root(start + k, end)]
    inner = reference_subproof(old_end, start + k, end, False, range_root)
    return [*inner, range_root(start, start + k)]


def reference_range_root(hashes: Sequence[bytes]) -> RangeRoot:
    @functools.cache
    def range_root(start: int, end: int) -> bytes:
        return reference_root(hashes[start:end])

    return range_root


# --- pymerkle, the independent implementation ---------------------------------

CROSS_LEAVES = entries(CROSS_CHECK_SIZE_MAX, salt=7)
CROSS_STORE, CROSS_FRONTIER, CROSS_HASHES = build(CROSS_LEAVES)
CROSS_FRONTIER_ROOTS = [
    build(CROSS_LEAVES[:size])[1].root() for size in range(CROSS_CHECK_SIZE_MAX + 1)
]


def pymerkle_tree(leaves: Sequence[bytes]) -> Any:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        tree.append_entry(leaf)
    return tree


@functools.cache
def pymerkle_full_tree() -> Any:
    return pymerkle_tree(CROSS_LEAVES)


@functools.cache
def pymerkle_root(size: int) -> bytes:
    return bytes(pymerkle_full_tree().get_root(size))


@functools.cache
def pymerkle_range_root(start: int, end: int) -> bytes:
    """MTH(D[start:end]) computed by pymerkle, from a tree of just those leaves."""
    return bytes(pymerkle_tree(CROSS_LEAVES[start:end]).get_root())


def test_pymerkle_uses_the_rfc9162_prefixes() -> None:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    assert tree.security is True
    assert tree.leaf_prefix == LEAF_PREFIX == b"\x00"
    assert tree.node_prefix == NODE_PREFIX == b"\x01"
    assert tree.hash_empty() == EMPTY_ROOT
    assert tree.hash_buff(b"abc") == leaf_hash(b"abc")
    left, right = leaf_hash(b"left"), leaf_hash(b"right")
    assert tree.hash_pair(left, right) == node_hash(left, right)
    # Without the prefixes pymerkle hashes differently, so the checks above mean something.
    insecure = pymerkle.InmemoryTree(algorithm="sha256", disable_security=True)
    assert insecure.hash_buff(b"abc") == hashlib.sha256(b"abc").digest() != leaf_hash(b"abc")


@pytest.mark.parametrize("size", range(CROSS_CHECK_SIZE_MAX + 1))
def test_roots_agree_with_pymerkle(size: int) -> None:
    expected = pymerkle_root(size)
    assert subtree_root(CROSS_STORE, 0, size) == expected
    assert root_from_leaf_hashes(CROSS_HASHES[:size]) == expected
    assert build(CROSS_LEAVES[:size])[1].root() == expected


@pytest.mark.parametrize("size", range(1, CROSS_CHECK_SIZE_MAX + 1))
def test_inclusion_proofs_agree_with_pymerkle(size: int) -> None:
    tree = pymerkle_full_tree()
    root = pymerkle_root(size)
    for index in range(size):
        ours = inclusion_proof(CROSS_STORE, index, size)
        # pymerkle counts leaves from 1 and puts the leaf hash first in its path.
        theirs = tree.prove_inclusion(index + 1, size)
        their_path = [bytes(hash_value) for hash_value in theirs.path]
        assert their_path[0] == CROSS_HASHES[index]
        assert their_path[1:] == ours
        verify_inclusion(CROSS_HASHES[index], index, size, their_path[1:], root)
        ours_for_pymerkle = pymerkle.InclusionProof(
            "sha256", True, size, index + 1, theirs.rule, [CROSS_HASHES[index], *ours]
        )
        pymerkle.verify_inclusion(
            CROSS_HASHES[index], root, ours_for_pymerkle, index=index + 1, size=size
        )


@pytest.mark.parametrize("new_size", range(1, CROSS_CHECK_SIZE_MAX + 1))
def test_consistency_proofs_agree_with_pymerkle(new_size: int) -> None:
    tree = pymerkle_full_tree()
    for old_size in range(1, new_size + 1):
        ours = consistency_proof(CROSS_STORE, old_size, new_size)
        assert ours == reference_subproof(old_size, 0, new_size, True, pymerkle_range_root)
        verify_consistency(
            old_size, new_size, pymerkle_root(old_size), pymerkle_root(new_size), ours
        )
        theirs = tree.prove_consistency(old_size, new_size)
        pymerkle.verify_consistency(
            CROSS_FRONTIER_ROOTS[old_size],
            CROSS_FRONTIER_ROOTS[new_size],
            theirs,
            prior_size=old_size,
            later_size=new_size,
        )


# --- Empty tree, size one, equal sizes ------------------------------------------


def test_empty_tree() -> None:
    store = MemoryNodeStore()
    frontier = CompactRange()
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert frontier.root() == EMPTY_ROOT
    assert frontier.size == 0
    assert frontier.hashes() == []
    assert subtree_root(store, 0, 0) == EMPTY_ROOT
    assert len(store) == 0
    with pytest.raises(TreeRangeMustBeValid):
        inclusion_proof(store, 0, 0)
    with pytest.raises(MerkleProofError, match="leaf index: expected 0 <= index < 0, got 0"):
        verify_inclusion(leaf_hash(b""), 0, 0, [], EMPTY_ROOT)


def test_tree_of_one_leaf() -> None:
    store, frontier, hashes = build([b"only"])
    assert frontier.root() == hashes[0] == subtree_root(store, 0, 1)
    assert inclusion_proof(store, 0, 1) == []
    verify_inclusion(hashes[0], 0, 1, [], hashes[0])
    assert consistency_proof(store, 1, 1) == []
    verify_consistency(1, 1, hashes[0], hashes[0], [])


@pytest.mark.parametrize("size", range(1, 12))
def test_equal_sizes_need_an_empty_proof_and_equal_roots(size: int) -> None:
    store, frontier, _ = build(entries(size))
    root = frontier.root()
    assert consistency_proof(store, size, size) == []
    verify_consistency(size, size, root, root, [])
    with pytest.raises(MerkleProofError, match="expected 0 hashes, got 1 hashes"):
        verify_consistency(size, size, root, root, [root])
    with pytest.raises(MerkleProofError, match=f"new root of the same size {size}"):
        verify_consistency(size, size, root, flip(root, 0), [])


# --- Verifier failures, in the order the verifier checks them ------------------

TREE_SIZE = 13
TREE_STORE, TREE_FRONTIER, TREE_HASHES = build(entries(TREE_SIZE, salt=3))
TREE_ROOT = TREE_FRONTIER.root()
INDEX = 5
PROOF = inclusion_proof(TREE_STORE, INDEX, TREE_SIZE)
SHORT_HASH = bytes(HASH_SIZE - 1)


def swap_first_two(proof: Sequence[bytes]) -> list[bytes]:
    assert len(proof) >= 2
    assert proof[0] != proof[1]
    return [proof[1], proof[0], *proof[2:]]


# (description, leaf hash, index, size, proof, root, expected message fragment)
INCLUSION_FAILURES: list[tuple[str, bytes, int, int, list[bytes], bytes, str]] = [
    ("short leaf hash", SHORT_HASH, INDEX, TREE_SIZE, PROOF, TREE_ROOT, "leaf hash: expected 32"),
    ("short root", TREE_HASHES[INDEX], INDEX, TREE_SIZE, PROOF, SHORT_HASH, "root: expected 32"),
    (
        "short proof element",
        TREE_HASHES[INDEX],
        INDEX,
        TREE_SIZE,
        [SHORT_HASH, *PROOF[1:]],
        TREE_ROOT,
        "inclusion proof [0]: expected 32 bytes, got 31 bytes",
    ),
    (
        "size beyond uint64",
        TREE_HASHES[INDEX],
        INDEX,
        TREE_SIZE_MAX + 1,
        PROOF,
        TREE_ROOT,
        "tree size",
    ),
    ("negative size", TREE_HASHES[INDEX], INDEX, -1, PROOF, TREE_ROOT, "tree size"),
    ("index = size", TREE_HASHES[0], TREE_SIZE, TREE_SIZE, PROOF, TREE_ROOT, "leaf index"),
    ("index > size", TREE_HASHES[0], TREE_SIZE + 4, TREE_SIZE, PROOF, TREE_ROOT, "leaf index"),
    ("negative index", TREE_HASHES[0], -1, TREE_SIZE, PROOF, TREE_ROOT, "leaf index"),
    (
        "proof too long",
        TREE_HASHES[INDEX],
        INDEX,
        TREE_SIZE,
        [*PROOF, TREE_ROOT],
        TREE_ROOT,
        f"expected {len(PROOF)} hashes, got {len(PROOF) + 1} hashes",
    ),
    (
        "proof too short",
        TREE_HASHES[INDEX],
        INDEX,
        TREE_SIZE,
        PROOF[:-1],
        TREE_ROOT,
        f"expected {len(PROOF)} hashes, got {len(PROOF) - 1} hashes",
    ),
    ("empty proof", TREE_HASHES[INDEX], INDEX, TREE_SIZE, [], TREE_ROOT, "got 0 hashes"),
    (
        "wrong root",
        TREE_HASHES[INDEX],
        INDEX,
        TREE_SIZE,
        PROOF,
        flip(TREE_ROOT, 31),
        f"root: expected {flip(TREE_ROOT, 31).hex()}, got {TREE_ROOT.hex()}",
    ),
    ("wrong leaf", TREE_HASHES[INDEX + 1], INDEX, TREE_SIZE, PROOF, TREE_ROOT, "root: expected"),
    ("other index", TREE_HASHES[INDEX], INDEX + 1, TREE_SIZE, PROOF, TREE_ROOT, "root: expected"),
    (
        "swapped proof elements",
        TREE_HASHES[INDEX],
        INDEX,
        TREE_SIZE,
        swap_first_two(PROOF),
        TREE_ROOT,
        "root: expected",
    ),
]


@pytest.mark.parametrize(
    ("leaf", "index", "size", "proof", "root", "message"),
    [row[1:] for row in INCLUSION_FAILURES],
    ids=[row[0] for row in INCLUSION_FAILURES],
)
def test_verify_inclusion_failures(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes, message: str
) -> None:
    verify_inclusion(TREE_HASHES[INDEX], INDEX, TREE_SIZE, PROOF, TREE_ROOT)  # the unspoilt case
    with pytest.raises(MerkleProofError, match=re.escape(message)) as caught:
        verify_inclusion(leaf, index, size, proof, root)
    assert MESSAGE_FORM.match(str(caught.value))


OLD_SIZE, NEW_SIZE = 6, 13
OLD_ROOT = subtree_root(TREE_STORE, 0, OLD_SIZE)
CONSISTENCY = consistency_proof(TREE_STORE, OLD_SIZE, NEW_SIZE)

# (description, old size, new size, old root, new root, proof, expected message fragment)
CONSISTENCY_FAILURES: list[tuple[str, int, int, bytes, bytes, list[bytes], str]] = [
    ("short old root", OLD_SIZE, NEW_SIZE, SHORT_HASH, TREE_ROOT, CONSISTENCY, "old root"),
    ("short new root", OLD_SIZE, NEW_SIZE, OLD_ROOT, SHORT_HASH, CONSISTENCY, "new root"),
    (
        "short proof element",
        OLD_SIZE,
        NEW_SIZE,
        OLD_ROOT,
        TREE_ROOT,
        [*CONSISTENCY[:-1], SHORT_HASH],
        f"consistency proof [{len(CONSISTENCY) - 1}]: expected 32 bytes",
    ),
    ("negative old size", -1, NEW_SIZE, OLD_ROOT, TREE_ROOT, CONSISTENCY, "old size"),
    ("new size beyond uint64", 1, TREE_SIZE_MAX + 1, OLD_ROOT, TREE_ROOT, [], "new size"),
    (
        "old size > new size",
        NEW_SIZE,
        OLD_SIZE,
        TREE_ROOT,
        OLD_ROOT,
        CONSISTENCY,
        f"old size: expected at most the new size {OLD_SIZE}, got {NEW_SIZE}",
    ),
    ("old size 0", 0, NEW_SIZE, EMPTY_ROOT, TREE_ROOT, [], "old size: expected at least 1"),
    ("old size 0, equal", 0, 0, EMPTY_ROOT, EMPTY_ROOT, [], "old size: expected at least 1"),
    (
        "proof too long",
        OLD_SIZE,
        NEW_SIZE,
        OLD_ROOT,
        TREE_ROOT,
        [*CONSISTENCY, TREE_ROOT],
        f"expected {len(CONSISTENCY)} hashes, got {len(CONSISTENCY) + 1} hashes",
    ),
    (
        "proof too short",
        OLD_SIZE,
        NEW_SIZE,
        OLD_ROOT,
        TREE_ROOT,
        CONSISTENCY[:-1],
        f"expected {len(CONSISTENCY)} hashes, got {len(CONSISTENCY) - 1} hashes",
    ),
    ("empty proof", OLD_SIZE, NEW_SIZE, OLD_ROOT, TREE_ROOT, [], "got 0 hashes"),
    (
        "wrong old root",
        OLD_SIZE,
        NEW_SIZE,
        flip(OLD_ROOT, 0),
        TREE_ROOT,
        CONSISTENCY,
        f"old root: expected {flip(OLD_ROOT, 0).hex()}, got {OLD_ROOT.hex()}",
    ),
    (
        "wrong new root",
        OLD_SIZE,
        NEW_SIZE,
        OLD_ROOT,
        flip(TREE_ROOT, 0),
        CONSISTENCY,
        f"new root: expected {flip(TREE_ROOT, 0).hex()}, got {TREE_ROOT.hex()}",
    ),
    ("swapped roots", OLD_SIZE, NEW_SIZE, TREE_ROOT, OLD_ROOT, CONSISTENCY, "old root"),
    (
        "swapped proof elements",
        OLD_SIZE,
        NEW_SIZE,
        OLD_ROOT,
        TREE_ROOT,
        swap_first_two(CONSISTENCY),
        "root: expected",
    ),
    ("other old size", OLD_SIZE + 1, NEW_SIZE, OLD_ROOT, TREE_ROOT, CONSISTENCY, "expected"),
]


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof", "message"),
    [row[1:] for row in CONSISTENCY_FAILURES],
    ids=[row[0] for row in CONSISTENCY_FAILURES],
)
def test_verify_consistency_failures(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: list[bytes],
    message: str,
) -> None:
    verify_consistency(OLD_SIZE, NEW_SIZE, OLD_ROOT, TREE_ROOT, CONSISTENCY)  # unspoilt
    with pytest.raises(MerkleProofError, match=re.escape(message)) as caught:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    assert MESSAGE_FORM.match(str(caught.value))


def test_proof_error_belongs_to_the_ledger_family() -> None:
    assert issubclass(MerkleProofError, LedgerError)
    assert MerkleProofError.code == "merkle_proof_invalid"
    assert MerkleProofError.kind == "invalid"
    assert issubclass(TreeRangeMustBeValid, InvalidInput)
    assert TreeRangeMustBeValid.code == "tree_range_must_be_valid"


# --- Producers: bad requests and missing nodes ----------------------------------


@pytest.mark.parametrize(
    ("index", "size"), [(TREE_SIZE, TREE_SIZE), (-1, TREE_SIZE), (0, 0), (0, TREE_SIZE_MAX + 1)]
)
def test_inclusion_proof_refuses_impossible_requests(index: int, size: int) -> None:
    with pytest.raises(TreeRangeMustBeValid):
        inclusion_proof(TREE_STORE, index, size)


@pytest.mark.parametrize(
    ("old_size", "new_size"), [(0, TREE_SIZE), (0, 0), (-1, TREE_SIZE), (TREE_SIZE, 6)]
)
def test_consistency_proof_refuses_impossible_requests(old_size: int, new_size: int) -> None:
    with pytest.raises(TreeRangeMustBeValid):
        consistency_proof(TREE_STORE, old_size, new_size)


def test_proofs_beyond_the_stored_tree_raise_not_found() -> None:
    with pytest.raises(NotFound, match="is not stored"):
        inclusion_proof(TREE_STORE, 0, TREE_SIZE + 3)
    with pytest.raises(NotFound):
        consistency_proof(TREE_STORE, 3, TREE_SIZE + 1)


def test_subtree_root_of_every_range() -> None:
    """Aligned ranges match MTH over the slice; the others are refused, never guessed."""
    size = 40
    store, _, hashes = build(entries(size, salt=11))
    for start in range(size + 1):
        for end in range(start, size + 1):
            width = end - start
            if width <= 1 or start % split_point(width) == 0:
                assert subtree_root(store, start, end) == reference_root(hashes[start:end])
            else:
                with pytest.raises(TreeRangeMustBeValid):
                    subtree_root(store, start, end)
    for start, end in ((5, 3), (-1, 2), (0, TREE_SIZE_MAX + 1)):
        with pytest.raises(TreeRangeMustBeValid):
            subtree_root(store, start, end)


class TruncatingStore:
    """A corrupt store that hands out 31-byte hashes."""

    def node(self, level: int, index: int) -> bytes:
        return SHORT_HASH


def test_stored_hashes_are_checked_on_read() -> None:
    with pytest.raises(IntegrityError, match="expected 32 bytes, got 31"):
        inclusion_proof(TruncatingStore(), 0, 2)


# --- Storage and frontier --------------------------------------------------------


def test_memory_store_nodes_are_write_once() -> None:
    store = MemoryNodeStore()
    first, second = leaf_hash(b"first"), leaf_hash(b"second")
    store.put(0, 0, first)
    store.put(0, 0, first)  # the same hash again is harmless
    assert store.node(0, 0) == first
    assert len(store) == 1
    with pytest.raises(IntegrityError, match="write-once"):
        store.put(0, 0, second)
    assert store.node(0, 0) == first
    with pytest.raises(IntegrityError, match="expected 32 bytes"):
        store.put(0, 1, SHORT_HASH)
    with pytest.raises(NotFound):
        store.node(1, 0)


@pytest.mark.parametrize(("level", "index"), [(-1, 0), (0, -1), (64, 0), (1, TREE_SIZE_MAX // 2)])
def test_memory_store_refuses_positions_outside_any_tree(level: int, index: int) -> None:
    with pytest.raises(TreeRangeMustBeValid):
        MemoryNodeStore().put(level, index, leaf_hash(b"x"))


def test_frontier_restore_refuses_what_cannot_be_a_frontier() -> None:
    hashes = build(entries(6))[1].hashes()
    assert len(hashes) == 2
    with pytest.raises(IntegrityError, match="expected 2 hashes, got 1"):
        CompactRange.from_hashes(6, hashes[:1])
    with pytest.raises(IntegrityError, match="expected 2 hashes, got 3"):
        CompactRange.from_hashes(6, [*hashes, hashes[0]])
    with pytest.raises(IntegrityError, match="expected 32 bytes"):
        CompactRange.from_hashes(6, [hashes[0], SHORT_HASH])
    with pytest.raises(IntegrityError):
        CompactRange.from_hashes(-1, [])
    assert CompactRange.from_hashes(0, []).root() == EMPTY_ROOT


def test_hashes_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(IntegrityError):
        CompactRange().append(SHORT_HASH)
    with pytest.raises(InvalidInput, match=re.escape("leaf hash [1]: expected 32 bytes")):
        root_from_leaf_hashes([leaf_hash(b"a"), SHORT_HASH])


def test_appends_report_every_perfect_node_once() -> None:
    frontier = CompactRange()
    seen: set[tuple[int, int]] = set()
    for size in range(1, 130):
        old_size = frontier.size
        reported = frontier.append(leaf_hash(str(size).encode()))
        positions = [(level, index) for level, index, _ in reported]
        # The leaf first, then one node per trailing one bit of the old size.
        trailing_ones = (old_size ^ (old_size + 1)).bit_length() - 1
        assert positions == [(level, old_size >> level) for level in range(trailing_ones + 1)]
        assert seen.isdisjoint(positions)
        seen.update(positions)
        expected = {
            (level, index) for level in range(size.bit_length()) for index in range(size >> level)
        }
        assert seen == expected
        assert len(frontier.hashes()) == size.bit_count()


# --- Cost: O(log n) reads, also for sizes far beyond what a test can build ------


class UniformStore:
    """The tree whose leaves are all equal: every node of a level has one hash.

    Stands in for trees of up to 2**64 - 1 leaves and counts the reads.
    """

    def __init__(self) -> None:
        self.reads = 0
        self.levels = [leaf_hash(b"same")]
        for _ in range(64):
            self.levels.append(node_hash(self.levels[-1], self.levels[-1]))

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.levels[level]


HUGE_SIZES = [2**40, 2**40 + 1, 10**12 + 12345, 2**63 + 2**31 + 7, TREE_SIZE_MAX]


@pytest.mark.parametrize("size", HUGE_SIZES)
def test_proofs_of_huge_trees_read_logarithmically_many_nodes(size: int) -> None:
    store = UniformStore()
    root = subtree_root(store, 0, size)
    read_limit = 2 * size.bit_length() + 2
    for index in (0, 1, size // 3, size - 2, size - 1):
        store.reads = 0
        proof = inclusion_proof(store, index, size)
        assert store.reads <= read_limit
        assert len(proof) == inclusion_proof_length(index, size) <= 64
        verify_inclusion(store.levels[0], index, size, proof, root)
    for old_size in (1, 2, size // 2 + 1, size - 1):
        store.reads = 0
        proof = consistency_proof(store, old_size, size)
        assert store.reads <= read_limit
        assert len(proof) == consistency_proof_length(old_size, size) <= 65
        verify_consistency(old_size, size, subtree_root(store, 0, old_size), root, proof)


# --- Properties ---------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=PROPERTY_SIZE_MAX)
salts = st.integers(min_value=0, max_value=2**32)


@property_settings
@given(size=sizes, salt=salts)
def test_every_inclusion_proof_verifies(size: int, salt: int) -> None:
    store, frontier, hashes = build(entries(size, salt))
    root = frontier.root()
    range_root = reference_range_root(hashes)
    for index in range(size):
        proof = inclusion_proof(store, index, size)
        assert proof == reference_path(index, 0, size, range_root)
        verify_inclusion(hashes[index], index, size, proof, root)


@property_settings
@given(data=st.data(), size=sizes, salt=salts)
def test_sampled_consistency_proofs_verify(data: st.DataObject, size: int, salt: int) -> None:
    store, frontier, hashes = build(entries(size, salt))
    range_root = reference_range_root(hashes)
    old_sizes = data.draw(
        st.lists(st.integers(min_value=1, max_value=size), min_size=1, max_size=12)
    )
    for old_size in old_sizes:
        proof = consistency_proof(store, old_size, size)
        assert proof == reference_subproof(old_size, 0, size, True, range_root)
        old_root = subtree_root(store, 0, old_size)
        assert old_root == reference_root(hashes[:old_size])
        verify_consistency(old_size, size, old_root, frontier.root(), proof)


@property_settings
@given(data=st.data(), size=st.integers(min_value=2, max_value=PROPERTY_SIZE_MAX), salt=salts)
def test_flipping_any_byte_of_an_inclusion_proof_fails(
    data: st.DataObject, size: int, salt: int
) -> None:
    store, frontier, hashes = build(entries(size, salt))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = inclusion_proof(store, index, size)
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=HASH_SIZE - 1))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    proof[position] = flip(proof[position], byte, mask)
    with pytest.raises(MerkleProofError, match="root: expected"):
        verify_inclusion(hashes[index], index, size, proof, frontier.root())


@property_settings
@given(data=st.data(), size=st.integers(min_value=2, max_value=PROPERTY_SIZE_MAX), salt=salts)
def test_flipping_any_byte_of_a_consistency_proof_fails(
    data: st.DataObject, size: int, salt: int
) -> None:
    store, frontier, _ = build(entries(size, salt))
    old_size = data.draw(st.integers(min_value=1, max_value=size - 1))
    proof = consistency_proof(store, old_size, size)
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=HASH_SIZE - 1))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    proof[position] = flip(proof[position], byte, mask)
    old_root = subtree_root(store, 0, old_size)
    with pytest.raises(MerkleProofError, match="root: expected"):
        verify_consistency(old_size, size, old_root, frontier.root(), proof)


@property_settings
@given(size=st.integers(min_value=0, max_value=PROPERTY_SIZE_MAX), salt=salts)
def test_frontier_root_is_the_merkle_tree_hash_of_every_prefix(size: int, salt: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in entries(size, salt)]
    frontier = CompactRange()
    assert frontier.root() == root_from_leaf_hashes([])
    for prefix in range(1, size + 1):
        frontier.append(hashes[prefix - 1])
        assert frontier.size == prefix
        assert frontier.root() == root_from_leaf_hashes(hashes[:prefix])
    if size <= 64:  # the recursive RFC transcription is O(n log n) per call
        assert frontier.root() == reference_root(hashes)


@property_settings
@given(data=st.data(), size=st.integers(min_value=0, max_value=PROPERTY_SIZE_MAX), salt=salts)
def test_frontier_survives_a_round_trip(data: st.DataObject, size: int, salt: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in entries(size, salt)]
    saved_at = data.draw(st.integers(min_value=0, max_value=size))
    uninterrupted = CompactRange()
    for hash_value in hashes[:saved_at]:
        uninterrupted.append(hash_value)
    restored = CompactRange.from_hashes(uninterrupted.size, uninterrupted.hashes())
    assert restored.size == saved_at
    assert restored.hashes() == uninterrupted.hashes()
    assert restored.root() == uninterrupted.root()
    for hash_value in hashes[saved_at:]:
        assert restored.append(hash_value) == uninterrupted.append(hash_value)
    assert restored.hashes() == uninterrupted.hashes()
    assert restored.root() == uninterrupted.root() == root_from_leaf_hashes(hashes)
