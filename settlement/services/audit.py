"""AuditService (audit.proto): checkpoints, RFC 9162 proofs, leaves, the export bundle.

Checkpoints and proofs reveal only hashes, so every role may fetch them; a
leaf's bytes reveal an entry, so a participant gets only leaves that touch
its own accounts (others are NOT_FOUND, as if missing). The export bundle is
for the operator and auditors: it is written to a private temporary directory
with :func:`ledger.export.export_bundle` and streamed file by file in chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import grpc

from ledger import bundle
from ledger.checkpoint import parse_checkpoint
from ledger.errors import NotFound
from ledger.export import export_bundle
from ledger.merkle import TreeRangeMustBeValid
from ledger.merkle import leaf_hash as hash_leaf
from ledger.note import open_note
from settlement.auth import Caller, Role, current_caller
from settlement.errors import FailedPrecondition, NotFoundError
from settlement.hub import Hub
from settlement.services.convert import decode_leaf, leaf_accounts, owned_account_ids
from settlement.v1 import audit_pb2, audit_pb2_grpc

SERVICE_NAME: Final = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name

EXPORT_CHUNK_BYTES: Final = 1024 * 1024
"""Bundle chunks stay at 1 MiB, well under the 16 MiB message limit."""

Context = grpc.aio.ServicerContext[Any, Any]


class CheckpointMustExist(NotFoundError):
    code = "checkpoint_must_exist"


class TreeSizeMustBeCommitted(NotFoundError):
    code = "tree_size_must_be_committed"


class MinTreeSizeMustBeCommitted(FailedPrecondition):
    code = "tree_size_must_be_committed"


class EntryMustExist(NotFoundError):
    code = "entry_must_exist"


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.ledger = hub.ledger

    async def GetLatestCheckpoint(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetLatestCheckpointRequest, context: Context
    ) -> audit_pb2.GetLatestCheckpointResponse:
        current_caller()
        note = await asyncio.to_thread(self._latest, request.min_tree_size)
        return audit_pb2.GetLatestCheckpointResponse(checkpoint=self._checkpoint_message(note))

    def _latest(self, min_tree_size: int) -> bytes:
        if min_tree_size:
            size = self.ledger.journal_size()
            if min_tree_size > size:
                raise MinTreeSizeMustBeCommitted(
                    f"min_tree_size {min_tree_size} is beyond the journal's {size} entries; "
                    "wait for your entry to commit and retry"
                )
            latest = self.ledger.checkpoints()
            if not latest or latest[-1][0] < min_tree_size:
                self.ledger.issue_checkpoint()
        try:
            return self.ledger.checkpoint()
        except NotFound:
            raise CheckpointMustExist("no checkpoint has been signed yet") from None

    async def GetCheckpoint(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetCheckpointRequest, context: Context
    ) -> audit_pb2.GetCheckpointResponse:
        current_caller()
        try:
            note = await asyncio.to_thread(self.ledger.checkpoint, request.tree_size)
        except NotFound:
            raise CheckpointMustExist(
                f"no checkpoint was signed at exactly {request.tree_size} entries"
            ) from None
        return audit_pb2.GetCheckpointResponse(checkpoint=self._checkpoint_message(note))

    async def GetInclusionProof(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.GetInclusionProofResponse:
        caller = current_caller()
        if request.leaf_index >= request.tree_size:
            raise TreeRangeMustBeValid(
                f"leaf_index {request.leaf_index} must be below tree_size {request.tree_size}"
            )
        await asyncio.to_thread(self._require_committed, request.tree_size)
        await asyncio.to_thread(self._require_visible, caller, request.leaf_index)
        leaf_hash, hashes = await asyncio.to_thread(
            self.ledger.inclusion_proof, request.leaf_index, request.tree_size
        )
        return audit_pb2.GetInclusionProofResponse(
            leaf_index=request.leaf_index,
            tree_size=request.tree_size,
            leaf_hash=leaf_hash,
            hashes=hashes,
        )

    async def GetConsistencyProof(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.GetConsistencyProofResponse:
        current_caller()
        if request.old_size == 0 or request.old_size > request.new_size:
            raise TreeRangeMustBeValid(
                f"old_size must be 1 to new_size ({request.new_size}), got {request.old_size}"
            )
        await asyncio.to_thread(self._require_committed, request.new_size)
        hashes = await asyncio.to_thread(
            self.ledger.consistency_proof, request.old_size, request.new_size
        )
        return audit_pb2.GetConsistencyProofResponse(
            old_size=request.old_size, new_size=request.new_size, hashes=hashes
        )

    async def GetLeaf(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetLeafRequest, context: Context
    ) -> audit_pb2.GetLeafResponse:
        caller = current_caller()
        leaf = await asyncio.to_thread(self._visible_leaf, caller, request.leaf_index)
        return audit_pb2.GetLeafResponse(
            leaf_index=request.leaf_index, leaf=leaf, leaf_hash=hash_leaf(leaf)
        )

    async def ExportBundle(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.ExportBundleRequest, context: Context
    ) -> AsyncIterator[audit_pb2.ExportBundleResponse]:
        current_caller().require(Role.OPERATOR, Role.AUDITOR)
        with tempfile.TemporaryDirectory(prefix="settlement-export-") as directory:
            root = Path(directory)
            size = await asyncio.to_thread(export_bundle, self.ledger, root)
            if request.tree_size and request.tree_size != size:
                # Only the latest size is exported: a bundle of an older size
                # would need the balances as of then, which export provides
                # only for the tree it writes.
                raise CheckpointMustExist(
                    f"the bundle is exported at the latest checkpoint ({size} entries); "
                    "request tree_size 0 or that size"
                )
            for name in sorted(bundle.BUNDLE_FILES):
                path = root / name
                digest = await asyncio.to_thread(_sha256, path)
                file_size = path.stat().st_size
                with path.open("rb") as source:
                    offset = 0
                    while True:
                        chunk = await asyncio.to_thread(source.read, EXPORT_CHUNK_BYTES)
                        if not chunk and offset:
                            break
                        yield audit_pb2.ExportBundleResponse(
                            path=name,
                            offset=offset,
                            data=chunk,
                            file_size=file_size,
                            file_sha256=digest,
                        )
                        offset += len(chunk)
                        if not chunk or offset >= file_size:
                            break

    # -- helpers -------------------------------------------------------------------

    def _checkpoint_message(self, note: bytes) -> audit_pb2.Checkpoint:
        text = note.decode("utf-8").split("\n\n", 1)[0] + "\n"
        checkpoint = parse_checkpoint(text)
        if self.ledger.log is not None:
            open_note(note, [self.ledger.log.signer.verifier()])
        return audit_pb2.Checkpoint(
            signed_note=note,
            origin=checkpoint.origin,
            tree_size=checkpoint.size,
            root_hash=checkpoint.root_hash,
        )

    def _require_committed(self, tree_size: int) -> None:
        size = self.ledger.journal_size()
        if tree_size > size:
            raise TreeSizeMustBeCommitted(
                f"tree_size {tree_size} is beyond the journal's {size} entries"
            )
        if tree_size == 0:
            raise CheckpointMustExist("tree_size 0 has no proof: ask for a larger tree")

    def _visible_leaf(self, caller: Caller, index: int) -> bytes:
        try:
            leaf = self.ledger.leaf(index)
        except NotFound:
            raise EntryMustExist(f"no journal entry at index {index}") from None
        if not caller.sees_everything:
            touched = leaf_accounts(decode_leaf(leaf))
            if not touched & owned_account_ids(self.ledger, caller.participant_id):
                raise EntryMustExist(f"no journal entry at index {index}")
        return leaf

    def _require_visible(self, caller: Caller, index: int) -> None:
        if not caller.sees_everything:
            self._visible_leaf(caller, index)


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(EXPORT_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.digest()
