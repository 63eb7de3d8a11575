"""The RFC 9162 (Certificate Transparency v2) Merkle tree behind the ledger's log.

Every committed entry is one leaf; the tree over the leaves is the one RFC 9162
section 2.1 defines, over SHA-256, so any CT verifier agrees with ours:

- leaf hash ``SHA-256(0x00 || leaf)`` and node hash ``SHA-256(0x01 || left ||
  right)`` (section 2.1.1);
- the Merkle Tree Hash (MTH) of a list, split at the largest power of two
  smaller than its length (section 2.1.1);
- inclusion proofs, PATH (section 2.1.3.1), and their verification (2.1.3.2);
- consistency proofs, PROOF / SUBPROOF (section 2.1.4.1), and their
  verification (2.1.4.2).

Storage is kept out of this module: proofs are built from the hashes of
*perfect* subtrees read through the small :class:`NodeStore` protocol, so the
ledger's SQL store and the offline verifier (:class:`MemoryNodeStore`) share the
code. Node ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) *
2**level)``; level 0 holds the leaf hashes. A :class:`CompactRange` (the
frontier of the tree) appends leaves in O(log n) and reports every perfect node
an append completes, which is exactly what a store must persist.

Producing a proof from a bad request (an index beyond the tree, sizes in the
wrong order) raises :class:`TreeRangeMustBeValid`; a proof, root or hash that
does not verify raises :class:`MerkleProofError` with the evidence, "expected X,
got Y". Consistency from an empty tree (``old_size == 0``) is refused; see
:func:`verify_consistency` for why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from ledger.errors import IntegrityError, InvalidInput, LedgerError, NotFound

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "TREE_SIZE_MAX",
    "CompactRange",
    "MemoryNodeStore",
    "MerkleProofError",
    "NodeStore",
    "TreeRangeMustBeValid",
    "consistency_proof",
    "consistency_proof_length",
    "inclusion_proof",
    "inclusion_proof_length",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest: every leaf, node and root hash has this length."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 section 2.1.1): the root of the empty tree."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
# The two prefixes keep a leaf from ever hashing like an interior node (RFC 9162
# section 2.1.1): without them a 64-byte leaf could pass for a node.

TREE_SIZE_MAX = 2**64 - 1
# RFC 9162 section 4 carries tree sizes and leaf indexes as uint64; anything
# larger is malformed. It also bounds every proof to at most 64 + 1 hashes.


class MerkleProofError(LedgerError):
    """A Merkle proof, root or hash failed verification (RFC 9162 2.1.3.2, 2.1.4.2).

    Carries its evidence: ``check`` names what was compared, ``expected`` and
    ``got`` are the two sides (hashes in hex), and the message reads
    "<check>: expected <expected>, got <got>".
    """

    code = "merkle_proof_invalid"
    kind = "invalid"

    def __init__(self, check: str, expected: str, got: str) -> None:
        super().__init__(f"{check}: expected {expected}, got {got}")
        self.check = check
        self.expected = expected
        self.got = got


class TreeRangeMustBeValid(InvalidInput):
    """A proof or subtree hash was asked for sizes or indexes the tree cannot have.

    For example an index at or beyond the tree size, an old size above the new
    one, or a range whose hash cannot be assembled from perfect subtrees.
    """

    code = "tree_range_must_be_valid"


def leaf_hash(leaf: bytes) -> bytes:
    """Return SHA-256(0x00 || leaf), the hash of one leaf (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), an interior node (RFC 9162 2.1.1).

    Lengths are not checked here, as for the RFC's HASH; every public function
    that takes hashes from outside checks them before hashing.
    """
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D_n) for the leaves with these hashes (RFC 9162 section 2.1.1).

    Iterative and O(n): hashes are paired level by level from the left, and an
    odd last node rises unchanged to the next level. That is the RFC's tree,
    which splits at the largest power of two, so the right edge is the only
    place a node can lack a sibling. Deliberately independent of
    :class:`CompactRange`, so each can be checked against the other. The empty
    list gives :data:`EMPTY_ROOT`.
    """
    for position, hash_value in enumerate(hashes):
        _require_hash(f"leaf hash [{position}]", hash_value, InvalidInput)
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class NodeStore(Protocol):
    """Read access to the hashes of the perfect subtrees of one tree.

    ``node(level, index)`` returns the hash of the perfect subtree covering
    leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf
    hashes. Only nodes that :meth:`CompactRange.append` has reported exist. A
    store raises a :class:`~ledger.errors.LedgerError` (``NotFound``) for a node
    it does not hold.
    """

    def node(self, level: int, index: int) -> bytes:
        """Return the hash of the perfect subtree at ``(level, index)``."""
        ...


class MemoryNodeStore:
    """A :class:`NodeStore` in a dict, for tests and the offline verifier.

    Nodes are write-once: storing a different hash at a taken position raises
    :class:`~ledger.errors.IntegrityError`, since an append-only tree never
    changes a completed node; storing the same hash again is a no-op.
    """

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def node(self, level: int, index: int) -> bytes:
        """Return the hash stored at ``(level, index)``; ``NotFound`` if absent."""
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise NotFound(f"merkle node (level {level}, index {index}) is not stored") from None

    def put(self, level: int, index: int, hash_value: bytes) -> None:
        """Store the hash of the perfect subtree at ``(level, index)``."""
        _require_position(level, index)
        _require_hash(f"node (level {level}, index {index})", hash_value, IntegrityError)
        stored = self._nodes.setdefault((level, index), hash_value)
        if stored != hash_value:
            raise IntegrityError(
                f"node (level {level}, index {index}) is write-once: "
                f"expected {stored.hex()}, got {hash_value.hex()}"
            )


class CompactRange:
    """The frontier of the tree: enough to append leaves and compute the root.

    Holds one hash per set bit of ``size``: the roots of the perfect subtrees
    that cover leaves ``[0, size)``, largest (leftmost) first, as in
    transparency-dev/merkle's ``compact.Range``. Appending merges equal-sized
    neighbours (RFC 9162 section 2.1.2) in O(log n) worst case, O(1) amortized,
    and never rehashes the tree. :meth:`hashes` and :meth:`from_hashes` persist
    and restore the frontier in O(log n) space.
    """

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @classmethod
    def from_hashes(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Restore a frontier saved with :meth:`hashes` for a tree of ``size`` leaves.

        Raises :class:`~ledger.errors.IntegrityError` when the hashes cannot be
        the frontier of such a tree (wrong count or length): a stored frontier
        that does not match its size is corruption, not bad input.
        """
        if not 0 <= size <= TREE_SIZE_MAX:
            raise IntegrityError(f"frontier size: expected 0..{TREE_SIZE_MAX}, got {size}")
        if len(hashes) != size.bit_count():
            raise IntegrityError(
                f"frontier of a tree of size {size}: "
                f"expected {size.bit_count()} hashes, got {len(hashes)}"
            )
        for position, hash_value in enumerate(hashes):
            _require_hash(f"frontier hash [{position}]", hash_value, IntegrityError)
        frontier = cls()
        frontier._size = size
        frontier._hashes = list(hashes)
        return frontier

    def hashes(self) -> list[bytes]:
        """Return a copy of the frontier, largest subtree first."""
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return every perfect node this completes.

        The result lists ``(level, index, hash)`` from the leaf itself (level 0,
        index = the old size) up to the largest subtree the append closed, so
        the caller can persist them for :func:`inclusion_proof` and
        :func:`consistency_proof`.
        """
        _require_hash("leaf hash", leaf_hash, IntegrityError)
        if self._size >= TREE_SIZE_MAX:
            raise IntegrityError(f"tree size: expected below {TREE_SIZE_MAX}, got {self._size}")
        index = self._size
        completed = [(0, index, leaf_hash)]
        hash_value = leaf_hash
        level = 0
        # Each set low bit of the old size is a perfect left sibling waiting
        # for a right neighbour of its height: the new node closes it.
        while (self._size >> level) & 1:
            hash_value = node_hash(self._hashes.pop(), hash_value)
            level += 1
            index >>= 1
            completed.append((level, index, hash_value))
        self._hashes.append(hash_value)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """Return MTH of the leaves so far (RFC 9162 section 2.1.1).

        Folds the frontier from right to left: MTH splits at the largest power
        of two, so the largest subtree is always the outermost left child.
        """
        if not self._hashes:
            return EMPTY_ROOT
        return _fold_right(self._hashes)


def subtree_root(store: NodeStore, start: int, end: int) -> bytes:
    """Return MTH(D[start:end]) from O(log n) stored perfect nodes (RFC 9162 2.1.1).

    The range must split, as MTH splits it, into perfect subtrees aligned on
    their own size: ``start`` must be a multiple of the largest power of two
    smaller than ``end - start``. That covers every prefix ``[0, n)`` and every
    range PATH and PROOF ever ask for; for other ranges MTH mixes halves of
    stored nodes and could only be computed from the leaves, so they raise
    :class:`TreeRangeMustBeValid` rather than silently reading O(n) leaves.
    ``start == end`` gives :data:`EMPTY_ROOT`.
    """
    if not 0 <= start <= end <= TREE_SIZE_MAX:
        raise TreeRangeMustBeValid(
            f"subtree range: expected 0 <= start <= end <= {TREE_SIZE_MAX}, got [{start}, {end})"
        )
    if start == end:
        return EMPTY_ROOT
    width = end - start
    if width > 1 and start % _split_point(width) != 0:
        raise TreeRangeMustBeValid(
            f"subtree range [{start}, {end}): expected start a multiple of "
            f"{_split_point(width)}, got {start}"
        )
    pieces: list[bytes] = []
    position = start
    while position < end:
        remaining = end - position
        if _is_power_of_two(remaining) and position % remaining == 0:
            piece_width = remaining
        else:
            piece_width = _split_point(remaining)
        pieces.append(_perfect_node(store, position, piece_width))
        position += piece_width
    return _fold_right(pieces)


def inclusion_proof(store: NodeStore, index: int, size: int) -> list[bytes]:
    """Return PATH(index, D_size), the inclusion proof of RFC 9162 section 2.1.3.1.

    Read from O(log n) stored nodes, never from all the leaves. Ordered from
    the leaf's sibling up to the child of the root, as the RFC lists it.
    """
    _require_tree_size("tree size", size, minimum=1)
    if not 0 <= index < size:
        raise TreeRangeMustBeValid(f"leaf index: expected 0 <= index < {size}, got {index}")
    siblings_top_down: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        split = _split_point(end - start)
        if index < start + split:
            # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            siblings_top_down.append(subtree_root(store, start + split, end))
            end = start + split
        else:
            # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            siblings_top_down.append(_perfect_node(store, start, split))
            start += split
    siblings_top_down.reverse()
    return siblings_top_down


def consistency_proof(store: NodeStore, old_size: int, new_size: int) -> list[bytes]:
    """Return PROOF(old_size, D_new_size) of RFC 9162 section 2.1.4.1.

    SUBPROOF unrolled into a loop over stored nodes (O(log n) reads). Equal
    sizes give the empty proof (SUBPROOF(m, D[m], true) = {}). ``old_size`` must
    be at least 1: the RFC defines PROOF only for 0 < m, and an empty tree has
    nothing to be consistent with (see :func:`verify_consistency`).
    """
    _require_tree_size("new size", new_size, minimum=1)
    if not 0 < old_size <= new_size:
        raise TreeRangeMustBeValid(
            f"old size: expected 0 < old_size <= new size {new_size}, got {old_size}"
        )
    if old_size == new_size:
        return []
    siblings_top_down: list[bytes] = []
    start, end = 0, new_size
    old_root_known = True  # SUBPROOF's b: whether MTH(D[0:m]) is the known old root
    while old_size != end:
        split = _split_point(end - start)
        if old_size <= start + split:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            siblings_top_down.append(subtree_root(store, start + split, end))
            end = start + split
        else:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            siblings_top_down.append(_perfect_node(store, start, split))
            start += split
            old_root_known = False
    # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
    proof = [] if old_root_known else [subtree_root(store, start, end)]
    proof.extend(reversed(siblings_top_down))
    return proof


def inclusion_proof_length(index: int, size: int) -> int:
    """Return how many hashes PATH(index, D_size) has (RFC 9162 section 2.1.3.1).

    Below the level where the paths to ``index`` and ``size - 1`` part, every
    level contributes a sibling; above it, only the levels where ``index``
    descends to the right. Requires ``0 <= index < size``.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """Return how many hashes PROOF(old_size, D_new_size) has (RFC 9162 2.1.4.1).

    The proof is the tail of the inclusion proof of leaf ``old_size - 1`` above
    the largest perfect subtree ending there, plus that subtree's root unless
    it is the whole old tree. Requires ``0 < old_size < new_size``.
    """
    shift = _trailing_zeros(old_size)
    inner = (((old_size - 1) ^ (new_size - 1)).bit_length()) - shift
    border = ((old_size - 1) >> (inner + shift)).bit_count()
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner + border


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``proof`` shows leaf ``index`` in the tree of ``size`` with ``root``.

    Implements RFC 9162 section 2.1.3.2 step by step. Before the RFC's steps,
    every hash must be 32 bytes and the proof exactly as long as PATH for
    these sizes, so the error names the real problem. The RFC's own length
    checks (step 4a, step 5) stay in place. Returns None on success; raises
    :class:`MerkleProofError` ("expected X, got Y") on any failure.
    """
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    for position, element in enumerate(proof):
        _check_hash(f"inclusion proof [{position}]", element)
    _check_tree_size("tree size", size)
    # Step 1: leaf_index >= tree_size fails.
    if not 0 <= index < size:
        raise MerkleProofError("leaf index", f"0 <= index < {size}", str(index))
    expected_length = inclusion_proof_length(index, size)
    if len(proof) != expected_length:
        raise MerkleProofError(
            f"inclusion proof length for index {index} in size {size}",
            f"{expected_length} hashes",
            f"{len(proof)} hashes",
        )
    # Step 2: fn = leaf_index, sn = tree_size - 1. Step 3: r = hash.
    fn, sn = index, size - 1
    result = leaf_hash
    # Step 4.
    for element in proof:
        if sn == 0:  # Step 4a.
            raise MerkleProofError("inclusion proof length", "no more hashes", "more")
        if fn & 1 or fn == sn:  # Step 4b.
            result = node_hash(element, result)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, element)
        fn >>= 1  # Step 4c.
        sn >>= 1
    # Step 5.
    if sn != 0:
        raise MerkleProofError("inclusion proof length", "more hashes", "end of proof")
    if result != root:
        raise MerkleProofError("root", root.hex(), result.hex())


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``new_root`` of ``new_size`` extends ``old_root``.

    Implements RFC 9162 section 2.1.4.2 step by step for ``0 < old_size <
    new_size``, after checking that every hash is 32 bytes and the proof is
    exactly as long as PROOF for these sizes. The cases the RFC leaves out
    follow transparency-dev/merkle (``proof.VerifyConsistency``):

    - ``old_size > new_size`` fails;
    - ``old_size == 0`` fails, whatever the proof and roots. RFC 9162 defines
      PROOF and its verification only for ``0 < first``, and transparency-dev
      refuses it as "consistency proof from empty tree is meaningless" (older
      releases accepted an empty proof). Every tree extends the empty tree, so
      a caller holding an empty checkpoint has nothing to prove and must not
      ask; refusing keeps a vacuous "valid" out of an auditor's report;
    - ``old_size == new_size`` succeeds only with an empty proof and equal roots.

    Returns None on success; raises :class:`MerkleProofError` on any failure.
    """
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    for position, element in enumerate(proof):
        _check_hash(f"consistency proof [{position}]", element)
    _check_tree_size("old size", old_size)
    _check_tree_size("new size", new_size)
    if old_size > new_size:
        raise MerkleProofError("old size", f"at most the new size {new_size}", str(old_size))
    if old_size == 0:
        raise MerkleProofError(
            "old size", "at least 1 (no consistency proof from an empty tree)", "0"
        )
    if old_size == new_size:
        if proof:
            raise MerkleProofError(
                "consistency proof length for equal sizes", "0 hashes", f"{len(proof)} hashes"
            )
        if old_root != new_root:
            raise MerkleProofError(
                f"new root of the same size {new_size}", old_root.hex(), new_root.hex()
            )
        return
    expected_length = consistency_proof_length(old_size, new_size)
    if len(proof) != expected_length:
        raise MerkleProofError(
            f"consistency proof length from size {old_size} to {new_size}",
            f"{expected_length} hashes",
            f"{len(proof)} hashes",
        )
    # Step 1: an empty consistency_path fails (the length check covers it).
    path = list(proof)
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if _is_power_of_two(old_size):
        path.insert(0, old_root)
    # Step 3.
    fn, sn = old_size - 1, new_size - 1
    # Step 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    first_result = second_result = path[0]
    # Step 6.
    for element in path[1:]:
        if sn == 0:  # Step 6a.
            raise MerkleProofError("consistency proof length", "no more hashes", "more")
        if fn & 1 or fn == sn:  # Step 6b.
            first_result = node_hash(element, first_result)
            second_result = node_hash(element, second_result)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            second_result = node_hash(second_result, element)
        fn >>= 1  # Step 6c.
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise MerkleProofError("consistency proof length", "more hashes", "end of proof")
    if first_result != old_root:
        raise MerkleProofError("old root", old_root.hex(), first_result.hex())
    if second_result != new_root:
        raise MerkleProofError("new root", new_root.hex(), second_result.hex())


def _split_point(width: int) -> int:
    """Return k, the largest power of two smaller than ``width`` (RFC 9162 2.1.1)."""
    return 1 << ((width - 1).bit_length() - 1)


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine subtree roots listed left to right into the root above them all."""
    result = hashes[-1]
    for hash_value in reversed(hashes[:-1]):
        result = node_hash(hash_value, result)
    return result


def _perfect_node(store: NodeStore, start: int, width: int) -> bytes:
    """Read the perfect subtree [start, start + width) from the store, checked."""
    level = width.bit_length() - 1
    if not _is_power_of_two(width) or start % width != 0:
        raise IntegrityError(f"perfect subtree: expected aligned, got [{start}, {start + width})")
    hash_value = store.node(level, start >> level)
    # Read-back check: a store handing out a truncated hash is corrupt.
    _require_hash(
        f"stored node (level {level}, index {start >> level})", hash_value, IntegrityError
    )
    return hash_value


def _require_hash(what: str, value: bytes, error: type[LedgerError]) -> None:
    if len(value) != HASH_SIZE:
        raise error(f"{what}: expected {HASH_SIZE} bytes, got {len(value)}")


def _require_position(level: int, index: int) -> None:
    # The node must fit in a tree of at most TREE_SIZE_MAX leaves.
    if not 0 <= level < 64 or index < 0 or (index + 1) << level > TREE_SIZE_MAX:
        raise TreeRangeMustBeValid(
            f"node position: expected a node of a tree of at most {TREE_SIZE_MAX} leaves, "
            f"got (level {level}, index {index})"
        )


def _require_tree_size(what: str, size: int, minimum: int) -> None:
    if not minimum <= size <= TREE_SIZE_MAX:
        raise TreeRangeMustBeValid(f"{what}: expected {minimum}..{TREE_SIZE_MAX}, got {size}")


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise MerkleProofError(what, f"{HASH_SIZE} bytes", f"{len(value)} bytes")


def _check_tree_size(what: str, size: int) -> None:
    if not 0 <= size <= TREE_SIZE_MAX:
        raise MerkleProofError(what, f"0..{TREE_SIZE_MAX}", str(size))
