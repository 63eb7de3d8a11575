"""The Merkle log over the journal, in the database: nodes, frontier, checkpoints.

Level-0 nodes are the journal's ``leaf_hash`` column; perfect subtrees of
level 1 and up are stored in ``merkle_nodes`` as appends complete them, so
inclusion and consistency proofs read O(log n) rows and never rehash leaves.

Checkpoints are C2SP tlog-checkpoints in C2SP signed notes, issued inside the
write transaction that reaches the threshold (every N entries or T seconds)
or on demand. Before a checkpoint is signed, its consistency with the latest
earlier checkpoint is proved from stored nodes and verified (RFC 9162
section 2.1.4); a failure there is corruption and stops the write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, tuple_

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import IntegrityError, NotFound
from ledger.merkle import CompactRange, MerkleProofError, consistency_proof, verify_consistency
from ledger.note import NoteSigner
from ledger.schema import checkpoints, journal, merkle_nodes

CHECKPOINT_EVERY_ENTRIES_DEFAULT = 1000
CHECKPOINT_EVERY_SECONDS_DEFAULT = 10


@dataclass(frozen=True)
class LogSettings:
    """Who signs the log's checkpoints and how often.

    ``origin`` is the C2SP log origin (a schema-less URL naming this log); the
    signer's key name must equal it.
    """

    origin: str
    signer: NoteSigner
    checkpoint_every_entries: int = CHECKPOINT_EVERY_ENTRIES_DEFAULT
    checkpoint_every_seconds: int = CHECKPOINT_EVERY_SECONDS_DEFAULT


class SqlNodeStore:
    """:class:`ledger.merkle.NodeStore` over the journal and ``merkle_nodes`` tables."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def node(self, level: int, index: int) -> bytes:
        if level == 0:
            value = self.connection.scalar(
                select(journal.c.leaf_hash).where(journal.c.journal_index == index)
            )
        else:
            value = self.connection.scalar(
                select(merkle_nodes.c.hash)
                .where(merkle_nodes.c.level == level)
                .where(merkle_nodes.c.node_index == index)
            )
        if value is None:
            raise NotFound(f"no Merkle node at level {level}, index {index}")
        return bytes(value)


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees covering leaves [0, size), largest first."""
    positions = []
    offset = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            positions.append((level, offset >> level))
            offset += 1 << level
    return positions


def load_frontier(connection: Connection, size: int) -> CompactRange:
    positions = frontier_positions(size)
    found: dict[tuple[int, int], bytes] = {}
    upper = [position for position in positions if position[0] > 0]
    if upper:
        for level, index, value in connection.execute(
            select(merkle_nodes.c.level, merkle_nodes.c.node_index, merkle_nodes.c.hash).where(
                tuple_(merkle_nodes.c.level, merkle_nodes.c.node_index).in_(upper)
            )
        ):
            found[(level, index)] = bytes(value)
    for level, index in positions:
        if level == 0:
            found[(0, index)] = SqlNodeStore(connection).node(0, index)
    missing = [position for position in positions if position not in found]
    if missing:
        raise IntegrityError(f"Merkle frontier nodes missing for size {size}: {missing}")
    return CompactRange.from_hashes(size, [found[position] for position in positions])


MERKLE_NODE_COLUMNS = ("level", "node_index", "hash")


def append_leaves(frontier: CompactRange, leaf_hashes: list[bytes]) -> list[tuple[int, int, bytes]]:
    """Append to the frontier; return the new nodes of level 1 and up as rows.

    Rows are (level, node_index, hash) tuples, the order of ``MERKLE_NODE_COLUMNS``.
    """
    rows = []
    for digest in leaf_hashes:
        for node in frontier.append(digest):
            if node[0]:
                rows.append(node)
    return rows


class LatestCheckpoint(NamedTuple):
    """What :func:`checkpoint_due` and :func:`issue_checkpoint` read of the latest checkpoint."""

    tree_size: int
    root_hash: bytes
    created_at_us: int


def latest_checkpoint_row(connection: Connection) -> Any:
    return connection.execute(
        select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).first()


def checkpoint_due(
    settings: LogSettings, latest: Any, size: int, now_us: int, *, force: bool
) -> bool:
    if size == 0:
        return False
    latest_size = 0 if latest is None else latest.tree_size
    if size <= latest_size:
        return False
    if force or latest is None:
        return True
    if size - latest_size >= settings.checkpoint_every_entries:
        return True
    return bool(now_us - latest.created_at_us >= settings.checkpoint_every_seconds * 1_000_000)


def issue_checkpoint(
    connection: Connection,
    settings: LogSettings,
    frontier: CompactRange,
    latest: Any,
    now_us: int,
) -> bytes:
    """Sign and store a checkpoint at the frontier's size, after proving consistency."""
    size = frontier.size
    root = frontier.root()
    if latest is not None and 0 < latest.tree_size < size:
        proof = consistency_proof(SqlNodeStore(connection), latest.tree_size, size)
        try:
            verify_consistency(latest.tree_size, size, bytes(latest.root_hash), root, proof)
        except MerkleProofError as error:
            raise IntegrityError(
                f"new checkpoint at size {size} is not consistent with the checkpoint at "
                f"size {latest.tree_size}: {error.message}"
            ) from error
    note = sign_checkpoint(Checkpoint(settings.origin, size, root), settings.signer)
    connection.execute(
        checkpoints.insert(),
        {"tree_size": size, "root_hash": root, "note": note, "created_at_us": now_us},
    )
    return note
