"""AuditService (audit.proto): checkpoints, RFC 9162 proofs, leaves, the export bundle.

Checkpoints and proofs reveal only hashes, so every role may fetch them; a
leaf's bytes reveal an entry, so a participant gets only leaves that touch
its own accounts (others are NOT_FOUND, as if missing). The export bundle is
for the operator and auditors: it is written to a private temporary directory
(:func:`ledger.export.export_bundle` for the latest checkpoint, the same files
up to an older stored checkpoint otherwise) and streamed file by file in
chunks.

A size of 0 in a request means the latest checkpoint's size (audit.proto);
it is resolved first, so that "no checkpoint yet" is answered as such.
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
from ledger.checkpoint import Checkpoint, parse_checkpoint
from ledger.errors import NotFound
from ledger.export import closing_balances, export_bundle, trust
from ledger.merkle import TreeRangeMustBeValid
from ledger.merkle import leaf_hash as hash_leaf
from ledger.note import open_note, sign_note
from settlement.auth import Caller, Role, current_caller
from settlement.errors import FailedPrecondition, NotFoundError
from settlement.hub import Hub
from settlement.services.convert import decode_leaf, leaf_accounts, owned_account_ids
from settlement.v1 import audit_pb2, audit_pb2_grpc

SERVICE_NAME: Final = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name

EXPORT_CHUNK_BYTES: Final = 1024 * 1024
"""Bundle chunks stay at 1 MiB, well under the 16 MiB message limit."""

STORED_INDEX_MAX: Final = 2**63 - 1
"""Journal indexes and tree sizes are SQL BIGINTs: a larger uint64 from a request
names nothing that exists, and must be answered before it reaches the database
(which refuses it with an overflow, an INTERNAL error for the caller)."""

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
            if self._latest_size(required=False) < min_tree_size:
                self.ledger.issue_checkpoint()
        try:
            return self.ledger.checkpoint()
        except NotFound:
            raise CheckpointMustExist("no checkpoint has been signed yet") from None

    def _latest_size(self, *, required: bool = True) -> int:
        """The latest checkpoint's tree size (what a size of 0 in a request means).

        Without any checkpoint: CheckpointMustExist, or 0 when not ``required``.
        """
        try:
            note = self.ledger.checkpoint()
        except NotFound:
            if not required:
                return 0
            raise CheckpointMustExist(
                "no checkpoint has been signed yet: ask for an explicit tree size, or have "
                "one signed with GetLatestCheckpoint min_tree_size"
            ) from None
        return _checkpoint_of(note).size

    async def GetCheckpoint(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetCheckpointRequest, context: Context
    ) -> audit_pb2.GetCheckpointResponse:
        current_caller()
        note = await asyncio.to_thread(self._stored_checkpoint, request.tree_size)
        return audit_pb2.GetCheckpointResponse(checkpoint=self._checkpoint_message(note))

    def _stored_checkpoint(self, tree_size: int) -> bytes:
        try:
            if tree_size > STORED_INDEX_MAX:
                raise NotFound(f"tree size {tree_size} is beyond any journal")
            return self.ledger.checkpoint(tree_size)
        except NotFound:
            raise CheckpointMustExist(
                f"no checkpoint was signed at exactly {tree_size} entries"
            ) from None

    async def GetInclusionProof(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.GetInclusionProofResponse:
        caller = current_caller()
        tree_size = request.tree_size or await asyncio.to_thread(self._latest_size)
        if request.leaf_index >= tree_size:
            raise TreeRangeMustBeValid(
                f"leaf_index {request.leaf_index} must be below tree_size {tree_size}"
            )
        await asyncio.to_thread(self._require_committed, tree_size)
        await asyncio.to_thread(self._require_visible, caller, request.leaf_index)
        leaf_hash, hashes = await asyncio.to_thread(
            self.ledger.inclusion_proof, request.leaf_index, tree_size
        )
        return audit_pb2.GetInclusionProofResponse(
            leaf_index=request.leaf_index,
            tree_size=tree_size,
            leaf_hash=leaf_hash,
            hashes=hashes,
        )

    async def GetConsistencyProof(  # noqa: N802 - the RPC's name
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.GetConsistencyProofResponse:
        current_caller()
        if request.old_size == 0:
            raise TreeRangeMustBeValid(
                "old_size must be 1 or more: every tree extends the empty one"
            )
        new_size = request.new_size or await asyncio.to_thread(self._latest_size)
        if request.old_size > new_size:
            raise TreeRangeMustBeValid(
                f"old_size must be 1 to new_size ({new_size}), got {request.old_size}"
            )
        await asyncio.to_thread(self._require_committed, new_size)
        hashes = await asyncio.to_thread(self.ledger.consistency_proof, request.old_size, new_size)
        return audit_pb2.GetConsistencyProofResponse(
            old_size=request.old_size, new_size=new_size, hashes=hashes
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
        if request.tree_size:
            # Refused before anything is signed or written.
            await asyncio.to_thread(self._stored_checkpoint, request.tree_size)
        with tempfile.TemporaryDirectory(prefix="settlement-export-") as directory:
            root = Path(directory)
            if request.tree_size:
                await asyncio.to_thread(self._export_at, root, request.tree_size)
            else:
                await asyncio.to_thread(export_bundle, self.ledger, root)
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

    def _export_at(self, directory: Path, tree_size: int) -> None:
        """The bundle of the log up to the stored checkpoint of ``tree_size`` entries.

        The files of :func:`ledger.export.export_bundle`, cut at that
        checkpoint: its leaves, the checkpoints up to it, the balances after
        its last entry. The trust file is today's: keys registered later lie
        beyond the bundle, which the verifier accepts (it cannot check them).
        """
        log = self.ledger.log
        if log is None:
            raise CheckpointMustExist("this hub has no log key: nothing was ever signed")
        directory.mkdir(parents=True, exist_ok=True)
        bundle.write_framed(directory / bundle.LEAVES_FILE, self.ledger.leaves(0, tree_size))
        bundle.write_framed(
            directory / bundle.CHECKPOINTS_FILE,
            (note for _, note in self.ledger.checkpoints(up_to_size=tree_size)),
        )
        bundle.write_json(directory / bundle.TRUST_FILE, bundle.trust_document(trust(self.ledger)))
        bundle.write_json(
            directory / bundle.BALANCES_FILE,
            bundle.balances_document(closing_balances(self.ledger, tree_size)),
        )
        text = bundle.manifest_text(log.origin, tree_size, bundle.manifest_file_hashes(directory))
        (directory / bundle.MANIFEST_FILE).write_bytes(sign_note(text, [log.signer]))

    def _checkpoint_message(self, note: bytes) -> audit_pb2.Checkpoint:
        checkpoint = _checkpoint_of(note)
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

    def _visible_leaf(self, caller: Caller, index: int) -> bytes:
        try:
            if index > STORED_INDEX_MAX:
                raise NotFound(f"no journal entry at index {index}")
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


def _checkpoint_of(note: bytes) -> Checkpoint:
    """The checkpoint body of a signed note the hub itself signed and stored."""
    return parse_checkpoint(note.decode("utf-8").split("\n\n", 1)[0] + "\n")


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(EXPORT_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.digest()
