"""AuditService over mutual TLS, on SQLite and on PostgreSQL (audit.proto).

One hub per backend for the whole module (the ``hub`` fixture): the demo
participants are registered, then the ``scene`` fixture gives every
participant a funded account pair and one transaction of its own, and the
operator an account of its own. Tests that write add entries on top; no test
depends on another's order.

Everything a client receives is checked the way a client must check it:
checkpoints with the log's public key from the development PKI
(``open_checkpoint``), proofs against the root of a verified checkpoint
(RFC 9162 section 2.1.3.2 and 2.1.4.2, ``ledger.merkle``), bundles with the
offline verifier (``ledger.verify.verify_bundle``). Nothing is taken from the
server's own objects except the journal size, which says what to expect.

The states without any checkpoint (``checkpoint_must_exist`` for "latest"
and for the size-0 shorthand) need a hub whose log has entries but no
checkpoint yet; ``unsigned_hub`` builds one per test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from sqlalchemy import create_engine, delete

import settlement.hub
from ledger import bundle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.keys import load_public_key, public_key_bytes
from ledger.merkle import MerkleProofError, verify_consistency, verify_inclusion
from ledger.note import NoteError, NoteVerifier
from ledger.schema import checkpoints
from ledger.verify import verify_bundle
from settlement.pki import DevPki
from settlement.v1 import audit_pb2
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    DENIED,
    EVERYONE,
    INVALID,
    NOT_FOUND,
    OK,
    OPERATOR,
    ORIGIN,
    PARTICIPANTS,
    PRECONDITION,
    HubClient,
    create_account,
    refusal,
    running_hub,
    transaction,
    transfer_postings,
)

UINT64_MAX = 2**64 - 1
"""The largest value of the proto's uint64 sizes and indexes: beyond any SQL integer."""

EXPORT_TIMEOUT_SECONDS = 120
"""Generous, as audit.proto asks for ExportBundle; the bundles here are small."""

BUNDLE_PATH_PART = re.compile(r"[A-Za-z0-9._-]{1,255}")
"""audit.proto ``ExportBundleResponse.path``: each part; "." and ".." are refused too."""

CHUNK_BYTES_MAX = 1024 * 1024

SEES_EVERYTHING = (OPERATOR, "auditor")


# -- the hub under test ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[HubClient]:
    """One hub per backend for the module, with the demo participants registered."""
    with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
        yield client


@dataclass(frozen=True)
class Scene:
    """Entries written once per module, by whom they are visible to."""

    own_entry: dict[str, int]
    """Per participant: the journal index of a transaction between its own two accounts."""

    operator_entry: int
    """An entry that touches only an operator's account (a participant sees it nowhere)."""

    receipts: dict[int, bytes]
    """Leaf hashes of the receipts the writes returned, by journal index."""


@pytest.fixture(scope="module")
def scene(hub: HubClient) -> Scene:
    own_entry: dict[str, int] = {}
    receipts: dict[int, bytes] = {}
    for participant_id in PARTICIPANTS:
        payer, payee = hub.funded_pair(participant_id, 10_000)
        result = hub.write(transaction(participant_id, transfer_postings(payer, payee, 100))).result
        own_entry[participant_id] = result.receipt.journal_index
        receipts[result.receipt.journal_index] = result.receipt.leaf_hash
    result = hub.write(create_account(OPERATOR)).result
    receipts[result.receipt.journal_index] = result.receipt.leaf_hash
    return Scene(own_entry, result.receipt.journal_index, receipts)


def drop_checkpoints(client: HubClient) -> None:
    """Forget every checkpoint, as a log whose first checkpoint is still to come."""
    engine = create_engine(client.server.hub.ledger.url)
    try:
        with engine.begin() as connection:
            connection.execute(delete(checkpoints))
    finally:
        engine.dispose()


@pytest.fixture
def unsigned_hub(
    database: str, dev_pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubClient]:
    """A hub whose journal has entries but no checkpoint, and that signs none by itself.

    The timer (which signs a checkpoint of new entries every second) waits an
    hour, and the commit path's thresholds are out of reach, so a checkpoint
    appears only when a call asks for one (``min_tree_size``, ExportBundle).
    """
    monkeypatch.setattr(settlement.hub, "TIMER_INTERVAL_SECONDS", 3600.0)
    with running_hub(
        dev_pki, database, checkpoint_every_entries=1_000_000, checkpoint_every_seconds=86_400
    ) as client:
        drop_checkpoints(client)
        yield client


# -- what a client does with the answers -----------------------------------------------


def log_verifier(pki: DevPki) -> NoteVerifier:
    """The log's public key as published out of band (the development PKI's log.pub)."""
    return NoteVerifier(ORIGIN, public_key_bytes(load_public_key(pki.log_public_key_path)))


def verified(hub: HubClient, message: audit_pb2.Checkpoint) -> Checkpoint:
    """Open a checkpoint with the log key; its convenience fields must agree with the note."""
    checkpoint = open_checkpoint(bytes(message.signed_note), [log_verifier(hub.pki)], ORIGIN)
    assert (message.origin, message.tree_size, message.root_hash) == (
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root_hash,
    )
    return checkpoint


def latest(hub: HubClient, who: str = OPERATOR, min_tree_size: int = 0) -> Checkpoint:
    response = hub.audit(who).GetLatestCheckpoint(
        audit_pb2.GetLatestCheckpointRequest(min_tree_size=min_tree_size),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return verified(hub, response.checkpoint)


def fresh(hub: HubClient, who: str = OPERATOR) -> Checkpoint:
    """A verified checkpoint of the whole journal (signed now if needed)."""
    return latest(hub, who, hub.journal_size())


def leaf_hash_of(leaf: bytes) -> bytes:
    """RFC 9162 section 2.1.1, computed here rather than trusted."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def get_leaf(hub: HubClient, index: int, who: str = OPERATOR) -> audit_pb2.GetLeafResponse:
    response: audit_pb2.GetLeafResponse = hub.audit(who).GetLeaf(
        audit_pb2.GetLeafRequest(leaf_index=index), timeout=CALL_TIMEOUT_SECONDS
    )
    return response


def inclusion(
    hub: HubClient, index: int, tree_size: int, who: str = OPERATOR
) -> audit_pb2.GetInclusionProofResponse:
    response: audit_pb2.GetInclusionProofResponse = hub.audit(who).GetInclusionProof(
        audit_pb2.GetInclusionProofRequest(leaf_index=index, tree_size=tree_size),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return response


def consistency(
    hub: HubClient, old_size: int, new_size: int, who: str = OPERATOR
) -> audit_pb2.GetConsistencyProofResponse:
    response: audit_pb2.GetConsistencyProofResponse = hub.audit(who).GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(old_size=old_size, new_size=new_size),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return response


def receive_bundle(
    responses: Iterable[audit_pb2.ExportBundleResponse], directory: Path
) -> dict[str, int]:
    """Write a streamed bundle into ``directory`` as a careful client does; returns file sizes.

    Refuses a path outside the directory, a chunk out of order, a file that
    comes back after it was complete, and a file whose SHA-256 is not
    ``file_sha256``.
    """
    sizes: dict[str, int] = {}
    current: str | None = None
    received = b""
    for response in responses:
        parts = response.path.split("/")
        assert all(BUNDLE_PATH_PART.fullmatch(part) for part in parts), response.path
        assert not {".", ".."} & set(parts), response.path
        assert len(response.data) <= CHUNK_BYTES_MAX
        if response.path != current:
            assert current is None or current in sizes, f"{current} ended early"
            assert response.path not in sizes, f"{response.path} arrived twice"
            current, received = response.path, b""
        assert response.offset == len(received), (response.path, response.offset)
        received += response.data
        assert len(received) <= response.file_size
        if len(received) == response.file_size:
            assert hashlib.sha256(received).digest() == response.file_sha256, response.path
            target = directory.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(received)
            sizes[response.path] = response.file_size
    assert current is None or current in sizes, f"{current} ended early"
    return sizes


def export(hub: HubClient, directory: Path, who: str = OPERATOR, tree_size: int = 0) -> None:
    responses = hub.audit(who).ExportBundle(
        audit_pb2.ExportBundleRequest(tree_size=tree_size), timeout=EXPORT_TIMEOUT_SECONDS
    )
    sizes = receive_bundle(responses, directory)
    assert set(sizes) == set(bundle.BUNDLE_FILES)


def call(hub: HubClient, who: str, method: str, request: Message) -> Any:
    """One AuditService call; a stream is read to its end (its errors come at the end)."""
    answer = getattr(hub.audit(who), method)(
        request,
        timeout=EXPORT_TIMEOUT_SECONDS if method == "ExportBundle" else CALL_TIMEOUT_SECONDS,
    )
    return list(answer) if method == "ExportBundle" else answer


# -- who may call what ---------------------------------------------------------------------

METHODS = (
    "GetLatestCheckpoint",
    "GetCheckpoint",
    "GetInclusionProof",
    "GetConsistencyProof",
    "GetLeaf",
    "ExportBundle",
)


def _expected(method: str, who: str) -> tuple[grpc.StatusCode, str]:
    """audit.proto "Roles", for a leaf of bank-us's own transaction."""
    if method == "ExportBundle":
        return (OK, "") if who in SEES_EVERYTHING else (DENIED, "role_must_permit")
    if method in ("GetInclusionProof", "GetLeaf"):
        return (OK, "") if who in (*SEES_EVERYTHING, "bank-us") else (NOT_FOUND, "entry_must_exist")
    return OK, ""


ROLE_TABLE = [(method, who, *_expected(method, who)) for method in METHODS for who in EVERYONE]


@pytest.mark.parametrize(("method", "who", "expected", "code"), ROLE_TABLE)
def test_role_table(
    hub: HubClient, scene: Scene, method: str, who: str, expected: grpc.StatusCode, code: str
) -> None:
    """Checkpoints, consistency: everyone; leaves: who may see them; export: operator, auditor."""
    signed = fresh(hub)
    index = scene.own_entry["bank-us"]
    requests: dict[str, Message] = {
        "GetLatestCheckpoint": audit_pb2.GetLatestCheckpointRequest(),
        "GetCheckpoint": audit_pb2.GetCheckpointRequest(tree_size=signed.size),
        "GetInclusionProof": audit_pb2.GetInclusionProofRequest(
            leaf_index=index, tree_size=signed.size
        ),
        "GetConsistencyProof": audit_pb2.GetConsistencyProofRequest(
            old_size=index + 1, new_size=signed.size
        ),
        "GetLeaf": audit_pb2.GetLeafRequest(leaf_index=index),
        "ExportBundle": audit_pb2.ExportBundleRequest(),
    }
    request = requests[method]
    if expected is not OK:
        status, detail = refusal(lambda: call(hub, who, method, request))
        assert (status, detail.code) == (expected, code)
        return
    answer = call(hub, who, method, request)
    if method in ("GetLatestCheckpoint", "GetCheckpoint"):
        assert verified(hub, answer.checkpoint).size >= signed.size
    elif method == "GetInclusionProof":
        verify_inclusion(answer.leaf_hash, index, signed.size, answer.hashes, signed.root_hash)
    elif method == "GetConsistencyProof":
        assert (answer.old_size, answer.new_size) == (index + 1, signed.size)
    elif method == "GetLeaf":
        assert answer.leaf_hash == leaf_hash_of(answer.leaf) == scene.receipts[index]
    else:
        assert {response.path for response in answer} == set(bundle.BUNDLE_FILES)


VIEWERS = [(viewer, owner) for viewer in EVERYONE for owner in (*PARTICIPANTS, OPERATOR)]


@pytest.mark.parametrize(("viewer", "owner"), VIEWERS)
def test_a_leaf_is_visible_to_its_participant_and_missing_for_every_other(
    hub: HubClient, scene: Scene, viewer: str, owner: str
) -> None:
    """common.proto "Roles": another participant's entry is NOT_FOUND exactly as a missing one."""
    index = scene.operator_entry if owner == OPERATOR else scene.own_entry[owner]
    size = hub.journal_size()
    if viewer in SEES_EVERYTHING or viewer == owner:
        leaf = get_leaf(hub, index, viewer)
        proof = inclusion(hub, index, size, viewer)
        assert leaf.leaf_hash == proof.leaf_hash == scene.receipts[index]
        return
    missing = size + 1000
    _, absent = refusal(lambda: get_leaf(hub, missing, viewer))
    answers = {
        "GetLeaf": refusal(lambda: get_leaf(hub, index, viewer)),
        "GetInclusionProof": refusal(lambda: inclusion(hub, index, size, viewer)),
    }
    for method, (status, detail) in answers.items():
        assert (status, detail.code) == (NOT_FOUND, "entry_must_exist"), method
        # Nothing tells "exists, not yours" from "does not exist": same code, same text.
        assert detail.message.replace(str(index), "N") == absent.message.replace(str(missing), "N")
        assert list(detail.fields) == list(absent.fields)


# -- refusals, one row per rule of audit.proto, in each RPC's order ----------------------

Build = Callable[[HubClient, Scene], Message]
Row = tuple[str, str, str, Build, grpc.StatusCode, str]


def _beyond(hub: HubClient, extra: int = 1) -> int:
    """A size the journal has not reached."""
    return hub.journal_size() + extra


REFUSALS: list[Row] = [
    # GetLatestCheckpoint (checkpoint_must_exist: test_no_checkpoint_yet).
    (
        "min_tree_size beyond the journal",
        "GetLatestCheckpoint",
        "bank-pk",
        lambda hub, scene: audit_pb2.GetLatestCheckpointRequest(min_tree_size=_beyond(hub)),
        PRECONDITION,
        "tree_size_must_be_committed",
    ),
    (
        "min_tree_size at the uint64 maximum",
        "GetLatestCheckpoint",
        "auditor",
        lambda hub, scene: audit_pb2.GetLatestCheckpointRequest(min_tree_size=UINT64_MAX),
        PRECONDITION,
        "tree_size_must_be_committed",
    ),
    # GetCheckpoint.
    (
        "no checkpoint of size 0 (the empty tree is never signed)",
        "GetCheckpoint",
        "bank-us",
        lambda hub, scene: audit_pb2.GetCheckpointRequest(tree_size=0),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
    (
        "no checkpoint of size 1 (the bootstrap commits two entries at once)",
        "GetCheckpoint",
        OPERATOR,
        lambda hub, scene: audit_pb2.GetCheckpointRequest(tree_size=1),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
    (
        "no checkpoint beyond the journal",
        "GetCheckpoint",
        "lender",
        lambda hub, scene: audit_pb2.GetCheckpointRequest(tree_size=_beyond(hub)),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
    (
        "no checkpoint at the uint64 maximum",
        "GetCheckpoint",
        "auditor",
        lambda hub, scene: audit_pb2.GetCheckpointRequest(tree_size=UINT64_MAX),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
    # GetInclusionProof (checkpoint_must_exist: test_no_checkpoint_yet).
    (
        "leaf_index equal to tree_size",
        "GetInclusionProof",
        OPERATOR,
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(leaf_index=3, tree_size=3),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "leaf_index above tree_size, before tree_size beyond the journal",
        "GetInclusionProof",
        "bank-us",
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(
            leaf_index=_beyond(hub, 5), tree_size=_beyond(hub)
        ),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "leaf_index beyond the latest checkpoint, tree_size 0",
        "GetInclusionProof",
        "auditor",
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(leaf_index=UINT64_MAX),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "tree_size beyond the journal",
        "GetInclusionProof",
        OPERATOR,
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(leaf_index=0, tree_size=_beyond(hub)),
        NOT_FOUND,
        "tree_size_must_be_committed",
    ),
    (
        "tree_size beyond the journal, before the entry's visibility",
        "GetInclusionProof",
        "bank-pk",
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(
            leaf_index=scene.own_entry["bank-us"], tree_size=_beyond(hub)
        ),
        NOT_FOUND,
        "tree_size_must_be_committed",
    ),
    (
        "tree_size at the uint64 maximum",
        "GetInclusionProof",
        "fx-provider",
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(
            leaf_index=scene.own_entry["fx-provider"], tree_size=UINT64_MAX
        ),
        NOT_FOUND,
        "tree_size_must_be_committed",
    ),
    (
        "an entry of another participant",
        "GetInclusionProof",
        "lender",
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(
            leaf_index=scene.own_entry["bank-pk"], tree_size=hub.journal_size()
        ),
        NOT_FOUND,
        "entry_must_exist",
    ),
    (
        "an entry of the operator, tree_size 0",
        "GetInclusionProof",
        "bank-us",
        lambda hub, scene: audit_pb2.GetInclusionProofRequest(leaf_index=scene.operator_entry),
        NOT_FOUND,
        "entry_must_exist",
    ),
    # GetConsistencyProof (checkpoint_must_exist: test_no_checkpoint_yet).
    (
        "old_size 0",
        "GetConsistencyProof",
        "bank-us",
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(old_size=0, new_size=2),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "old_size 0, before new_size beyond the journal",
        "GetConsistencyProof",
        OPERATOR,
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(old_size=0, new_size=_beyond(hub)),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "old_size above new_size",
        "GetConsistencyProof",
        "auditor",
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(old_size=3, new_size=2),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "old_size above new_size, before new_size beyond the journal",
        "GetConsistencyProof",
        "lender",
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(
            old_size=_beyond(hub, 5), new_size=_beyond(hub)
        ),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "old_size above the latest checkpoint, new_size 0",
        "GetConsistencyProof",
        "fx-provider",
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(old_size=UINT64_MAX),
        INVALID,
        "tree_range_must_be_valid",
    ),
    (
        "new_size beyond the journal",
        "GetConsistencyProof",
        "bank-pk",
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(old_size=1, new_size=_beyond(hub)),
        NOT_FOUND,
        "tree_size_must_be_committed",
    ),
    (
        "both sizes beyond the journal",
        "GetConsistencyProof",
        OPERATOR,
        lambda hub, scene: audit_pb2.GetConsistencyProofRequest(
            old_size=_beyond(hub), new_size=UINT64_MAX
        ),
        NOT_FOUND,
        "tree_size_must_be_committed",
    ),
    # GetLeaf.
    (
        "the index the journal reaches next",
        "GetLeaf",
        OPERATOR,
        lambda hub, scene: audit_pb2.GetLeafRequest(leaf_index=hub.journal_size()),
        NOT_FOUND,
        "entry_must_exist",
    ),
    (
        "the uint64 maximum",
        "GetLeaf",
        "auditor",
        lambda hub, scene: audit_pb2.GetLeafRequest(leaf_index=UINT64_MAX),
        NOT_FOUND,
        "entry_must_exist",
    ),
    (
        "an entry of another participant",
        "GetLeaf",
        "fx-provider",
        lambda hub, scene: audit_pb2.GetLeafRequest(leaf_index=scene.own_entry["lender"]),
        NOT_FOUND,
        "entry_must_exist",
    ),
    (
        "an entry of the operator",
        "GetLeaf",
        "bank-pk",
        lambda hub, scene: audit_pb2.GetLeafRequest(leaf_index=scene.operator_entry),
        NOT_FOUND,
        "entry_must_exist",
    ),
    # ExportBundle.
    (
        "a bank",
        "ExportBundle",
        "bank-us",
        lambda hub, scene: audit_pb2.ExportBundleRequest(),
        DENIED,
        "role_must_permit",
    ),
    (
        "a lender, before its tree_size is looked at",
        "ExportBundle",
        "lender",
        lambda hub, scene: audit_pb2.ExportBundleRequest(tree_size=_beyond(hub)),
        DENIED,
        "role_must_permit",
    ),
    (
        "no checkpoint of size 1",
        "ExportBundle",
        OPERATOR,
        lambda hub, scene: audit_pb2.ExportBundleRequest(tree_size=1),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
    (
        "no checkpoint beyond the journal",
        "ExportBundle",
        "auditor",
        lambda hub, scene: audit_pb2.ExportBundleRequest(tree_size=_beyond(hub)),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
    (
        "no checkpoint at the uint64 maximum",
        "ExportBundle",
        OPERATOR,
        lambda hub, scene: audit_pb2.ExportBundleRequest(tree_size=UINT64_MAX),
        NOT_FOUND,
        "checkpoint_must_exist",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "who", "build", "expected", "code"),
    REFUSALS,
    ids=[f"{row[1]}: {row[0]}" for row in REFUSALS],
)
def test_refusals(
    hub: HubClient,
    scene: Scene,
    name: str,
    method: str,
    who: str,
    build: Build,
    expected: grpc.StatusCode,
    code: str,
) -> None:
    """audit.proto, "Errors" of each RPC: the status and the settlement-error-bin code."""
    fresh(hub)
    request = build(hub, scene)
    status, detail = refusal(lambda: call(hub, who, method, request))
    assert (status, detail.code) == (expected, code), detail.message


def test_no_checkpoint_yet(unsigned_hub: HubClient) -> None:
    """checkpoint_must_exist wherever "latest" is asked for before the first checkpoint."""
    hub = unsigned_hub
    size = hub.journal_size()
    assert size > 2
    rows: list[tuple[str, Message]] = [
        ("GetLatestCheckpoint", audit_pb2.GetLatestCheckpointRequest()),
        ("GetCheckpoint", audit_pb2.GetCheckpointRequest(tree_size=size)),
        ("GetInclusionProof", audit_pb2.GetInclusionProofRequest(leaf_index=0)),
        ("GetConsistencyProof", audit_pb2.GetConsistencyProofRequest(old_size=1)),
    ]
    for method, request in rows:
        for who in (OPERATOR, "auditor", "bank-us"):
            status, detail = refusal(lambda: call(hub, who, method, request))  # noqa: B023
            assert (status, detail.code) == (NOT_FOUND, "checkpoint_must_exist"), (method, who)
    # Explicit sizes need no checkpoint: the proofs are of the journal's tree.
    assert len(inclusion(hub, 0, size).hashes) > 0
    assert consistency(hub, 1, size).new_size == size
    # And the first checkpoint is signed on demand.
    first = latest(hub, "bank-pk", size)
    assert first.size == size
    proof = inclusion(hub, 0, 0)
    assert proof.tree_size == size
    verify_inclusion(proof.leaf_hash, 0, size, proof.hashes, first.root_hash)


# -- checkpoints -----------------------------------------------------------------------------


def test_latest_checkpoint_verifies_with_the_log_key(hub: HubClient, scene: Scene) -> None:
    for who in EVERYONE:
        response = hub.audit(who).GetLatestCheckpoint(
            audit_pb2.GetLatestCheckpointRequest(), timeout=CALL_TIMEOUT_SECONDS
        )
        checkpoint = verified(hub, response.checkpoint)
        assert checkpoint.origin == ORIGIN
        assert 0 < checkpoint.size <= hub.journal_size()
        assert len(checkpoint.root_hash) == 32
        # The same note is the stored checkpoint of its size.
        stored = hub.audit(who).GetCheckpoint(
            audit_pb2.GetCheckpointRequest(tree_size=checkpoint.size),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        assert stored.checkpoint.signed_note == response.checkpoint.signed_note


def test_a_checkpoint_opens_only_with_the_log_key(hub: HubClient, scene: Scene) -> None:
    """The checks above are real: a flipped bit or another key does not verify."""
    note = bytes(
        hub.audit()
        .GetLatestCheckpoint(audit_pb2.GetLatestCheckpointRequest(), timeout=CALL_TIMEOUT_SECONDS)
        .checkpoint.signed_note
    )
    size = open_checkpoint(note, [log_verifier(hub.pki)], ORIGIN).size
    # Claim one more entry than was signed.
    tampered = note.replace(f"\n{size}\n".encode(), f"\n{size + 1}\n".encode(), 1)
    assert tampered != note
    with pytest.raises(NoteError):
        open_checkpoint(tampered, [log_verifier(hub.pki)], ORIGIN)
    bank_key = public_key_bytes(
        load_public_key(hub.pki.participant("bank-us").signing_public_key_path)
    )
    with pytest.raises(NoteError):
        open_checkpoint(note, [NoteVerifier(ORIGIN, bank_key)], ORIGIN)


def test_min_tree_size_forces_a_fresh_checkpoint(unsigned_hub: HubClient) -> None:
    """On a hub that signs nothing by itself, min_tree_size is what signs."""
    hub = unsigned_hub
    size = hub.journal_size()
    first = latest(hub, "auditor", size)
    assert first.size == size
    # Already covered: the same checkpoint, nothing new signed.
    assert latest(hub, "lender", size - 1) == first
    hub.write(create_account("bank-us"))
    assert hub.journal_size() == size + 1
    assert latest(hub) == first
    second = latest(hub, "bank-us", size + 1)
    assert second.size == size + 1
    assert latest(hub) == second
    status, detail = refusal(lambda: latest(hub, OPERATOR, size + 2))
    assert (status, detail.code) == (PRECONDITION, "tree_size_must_be_committed")
    proof = consistency(hub, first.size, second.size, "fx-provider")
    verify_consistency(first.size, second.size, first.root_hash, second.root_hash, proof.hashes)


# -- proofs ------------------------------------------------------------------------------


def test_inclusion_proofs_verify_against_a_signed_checkpoint(hub: HubClient, scene: Scene) -> None:
    signed = fresh(hub)
    for index in range(signed.size):
        proof = inclusion(hub, index, signed.size)
        assert (proof.leaf_index, proof.tree_size) == (index, signed.size)
        leaf = get_leaf(hub, index)
        assert proof.leaf_hash == leaf.leaf_hash == leaf_hash_of(leaf.leaf)
        verify_inclusion(proof.leaf_hash, index, signed.size, proof.hashes, signed.root_hash)
    # Each participant proves its own entry, against the checkpoint it fetched itself.
    for participant_id, index in scene.own_entry.items():
        own = latest(hub, participant_id)
        proof = inclusion(hub, index, own.size, participant_id)
        assert proof.leaf_hash == scene.receipts[index]
        verify_inclusion(proof.leaf_hash, index, own.size, proof.hashes, own.root_hash)


def test_inclusion_in_an_older_checkpoint_and_the_latest_by_default(
    hub: HubClient, scene: Scene
) -> None:
    older = fresh(hub)
    hub.write(create_account("bank-pk"))
    newer = fresh(hub)
    assert older.size < newer.size
    index = scene.own_entry["bank-pk"]
    for checkpoint in (older, newer):
        proof = inclusion(hub, index, checkpoint.size, "bank-pk")
        verify_inclusion(
            proof.leaf_hash, index, checkpoint.size, proof.hashes, checkpoint.root_hash
        )
    by_default = inclusion(hub, index, 0, "bank-pk")
    current = latest(hub, "bank-pk")
    assert by_default.tree_size == current.size >= newer.size
    verify_inclusion(
        by_default.leaf_hash, index, current.size, by_default.hashes, current.root_hash
    )
    # A proof does not verify against another tree's root.
    proof = inclusion(hub, index, older.size)
    with pytest.raises(MerkleProofError):
        verify_inclusion(proof.leaf_hash, index, older.size, proof.hashes, newer.root_hash)


def test_consistency_proofs_between_checkpoints_verify(hub: HubClient, scene: Scene) -> None:
    signed = [fresh(hub)]
    for owner in ("bank-us", "lender", "bank-pk"):
        hub.write(create_account(owner))
        signed.append(fresh(hub, owner))
    for position, old in enumerate(signed):
        for new in signed[position:]:
            proof = consistency(hub, old.size, new.size, "fx-provider")
            assert (proof.old_size, proof.new_size) == (old.size, new.size)
            if old.size == new.size:
                assert list(proof.hashes) == []
                assert old.root_hash == new.root_hash
                continue
            verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof.hashes)
    # new_size 0 is the latest checkpoint's size.
    first, current = signed[0], latest(hub, "auditor")
    by_default = consistency(hub, first.size, 0, "auditor")
    assert by_default.new_size == current.size
    verify_consistency(
        first.size, current.size, first.root_hash, current.root_hash, by_default.hashes
    )
    # The checks are real: a proof for other sizes or roots fails.
    with pytest.raises(MerkleProofError):
        verify_consistency(
            first.size, current.size, current.root_hash, first.root_hash, by_default.hashes
        )


def test_get_leaf_hash_is_the_rfc_9162_leaf_hash(hub: HubClient, scene: Scene) -> None:
    for index in range(hub.journal_size()):
        leaf = get_leaf(hub, index)
        assert leaf.leaf_index == index
        assert leaf.leaf_hash == hashlib.sha256(b"\x00" + leaf.leaf).digest()
        if index in scene.receipts:
            assert leaf.leaf_hash == scene.receipts[index]


# -- export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", SEES_EVERYTHING)
def test_export_bundle_verifies_offline(
    hub: HubClient, scene: Scene, who: str, tmp_path: Path
) -> None:
    export(hub, tmp_path, who)
    report = verify_bundle(tmp_path, workers=1)
    assert report.ok, report.to_json()
    assert report.tree_size == hub.journal_size()
    assert report.entries_checked == report.tree_size
    # The bundle's latest checkpoint is one the hub signed with the log key.
    signed = hub.audit(who).GetCheckpoint(
        audit_pb2.GetCheckpointRequest(tree_size=report.tree_size), timeout=CALL_TIMEOUT_SECONDS
    )
    verified(hub, signed.checkpoint)
    framed = list(bundle.read_framed(tmp_path / bundle.CHECKPOINTS_FILE))
    assert bytes(signed.checkpoint.signed_note) in framed


def test_export_bundle_at_an_older_checkpoint(hub: HubClient, scene: Scene, tmp_path: Path) -> None:
    """ExportBundle.tree_size: the log up to the stored checkpoint of exactly that size."""
    older = fresh(hub)
    hub.write(create_account("lender"))
    newer = fresh(hub)
    assert older.size < newer.size
    for checkpoint in (older, newer):
        directory = tmp_path / str(checkpoint.size)
        export(hub, directory, "auditor", checkpoint.size)
        report = verify_bundle(directory, workers=1)
        assert report.ok, report.to_json()
        assert report.tree_size == checkpoint.size
        framed = list(bundle.read_framed(directory / bundle.CHECKPOINTS_FILE))
        assert (
            framed[-1]
            == hub.audit()
            .GetCheckpoint(audit_pb2.GetCheckpointRequest(tree_size=checkpoint.size))
            .checkpoint.signed_note
        )
