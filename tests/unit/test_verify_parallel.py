"""ledger.verify in worker processes: the report is the inline report, whatever the chunks.

The verifier reads ``leaves.bin`` in chunks of ``LEAF_CHUNK_SIZE`` leaves;
worker processes check each leaf on its own and the main process merges the
chunks in index order (Merkle tree, duplicates, signatures, replay). Nothing of
that may show in the report: on the golden bundle, its cosigned copy and every
tampered copy in ``tests/vectors/bundles/``, and on a bundle larger than one
chunk, the report with two workers equals the report of one process, field for
field and finding for finding, in the same order. So does the report with
other chunk sizes, with a tiny ``FINDINGS_PER_CHECK_MAX`` (the findings kept
are the same ones), and with a pool that breaks (the chunks are redone inline).
"""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import bundle, verify
from ledger.records import Side, SignedInstruction
from ledger.signing import sign_instruction
from ledger.verify import Report, verify_bundle
from tests import bundle_tamper as tamper
from tests.bundle_builder import (
    BANK_A,
    BANK_B,
    BANK_B_KEY,
    STANDARD_SIGNING,
    BundleBuilder,
    private_key,
    standard_builder,
)
from tests.vectors import make_bundles

BUNDLES = Path(__file__).resolve().parents[1] / "vectors" / "bundles"
VECTORS: dict[str, Path] = {
    make_bundles.GOLDEN: BUNDLES / make_bundles.GOLDEN,
    make_bundles.COSIGNED: BUNDLES / make_bundles.COSIGNED,
    **{
        f"tampered/{path.name}": path
        for path in sorted((BUNDLES / make_bundles.TAMPERED).iterdir())
    },
}
VECTOR_CHUNK_SIZE = 100
"""Splits a 1,000-leaf vector bundle into ten chunks, none on a checkpoint's size."""

BANK_A_KEY_LATER = private_key(15)
LARGE_SIZE = 2 * 2048 + 333
"""More than two chunks of the default size (2,048), the last one partial."""
BATCH_SIZE = 50
CHECKPOINT_SIZES = (1000, 2048, 3001, 4096)
WORKERS = 2


def report_document(report: Report) -> dict[str, Any]:
    """Everything the report says, findings in order (``Report.to_json``)."""
    return report.to_json()


# --- Watching the pool ---------------------------------------------------------------------


@dataclass
class PoolWatch:
    """What the verifier did with its pool: chunks sent, chunks read ahead, abandons."""

    leaf_chunks_submitted: int = 0
    signature_chunks_submitted: int = 0
    chunks_ahead_max: int = 0
    abandoned: int = 0


@pytest.fixture
def pool_watch(monkeypatch: pytest.MonkeyPatch) -> PoolWatch:
    """Counts what the pool did; and the pool, once started, waits for a worker to
    answer, so that every chunk after the first goes to a worker however busy the
    machine (the verifier checks chunks itself while its workers start)."""
    watch = PoolWatch()
    ready = verify._Workers.ready
    submit = verify._Workers.submit
    abandon = verify._Workers.abandon
    add_chunk = verify._LeafPass.add_chunk

    def counting_submit(
        self: verify._Workers, function: Callable[..., Any], *arguments: Any
    ) -> concurrent.futures.Future[Any] | None:
        future = submit(self, function, *arguments)
        if function is verify._check_chunk and future is not None:
            watch.leaf_chunks_submitted += 1
        if function is verify._verify_chunk and future is not None:
            watch.signature_chunks_submitted += 1
        return future

    def counting_abandon(self: verify._Workers) -> None:
        watch.abandoned += 1
        abandon(self)

    def measuring_add_chunk(
        self: verify._LeafPass, first_position: int, leaves: list[bytes]
    ) -> None:
        add_chunk(self, first_position, leaves)
        watch.chunks_ahead_max = max(watch.chunks_ahead_max, len(self.chunks))

    def ready_once_started(self: verify._Workers) -> bool:
        if not ready(self) and self.started:
            concurrent.futures.wait(self._probes, return_when=concurrent.futures.FIRST_COMPLETED)
        return ready(self)

    monkeypatch.setattr(verify._Workers, "ready", ready_once_started)
    monkeypatch.setattr(verify._Workers, "submit", counting_submit)
    monkeypatch.setattr(verify._Workers, "abandon", counting_abandon)
    monkeypatch.setattr(verify._LeafPass, "add_chunk", measuring_add_chunk)
    return watch


def chunks_in(directory: Path, chunk_size: int) -> int:
    try:
        count = sum(1 for _ in bundle.read_framed(directory / bundle.LEAVES_FILE))
    except bundle.FramingError as error:
        count = error.frame
    return -(-count // chunk_size)


def assert_workers_did_the_chunks(watch: PoolWatch, chunks: int) -> None:
    # The first chunk is checked in the main process while the pool starts.
    assert watch.leaf_chunks_submitted == chunks - 1
    assert watch.abandoned == 0
    assert watch.chunks_ahead_max <= WORKERS * verify.LEAF_CHUNKS_IN_FLIGHT_PER_WORKER


# --- The committed vectors ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_workers_report_what_one_process_reports(
    name: str, monkeypatch: pytest.MonkeyPatch, pool_watch: PoolWatch
) -> None:
    directory = VECTORS[name]
    inline = report_document(verify_bundle(directory, workers=1))
    monkeypatch.setattr(verify, "LEAF_CHUNK_SIZE", VECTOR_CHUNK_SIZE)
    parallel = report_document(verify_bundle(directory, workers=WORKERS))
    assert parallel == inline
    assert_workers_did_the_chunks(pool_watch, chunks_in(directory, VECTOR_CHUNK_SIZE))
    # The distinct signatures (over 700) were verified by the workers too.
    signature_chunks = -(-parallel["signatures_verified"] // verify.SIGNATURE_CHUNK_SIZE)
    assert pool_watch.signature_chunks_submitted == signature_chunks >= 2


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_chunk_size_does_not_change_the_report(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = VECTORS[name]
    expected = report_document(verify_bundle(directory, workers=1))
    for chunk_size in (1, 7, 999, 1000, 1001):
        monkeypatch.setattr(verify, "LEAF_CHUNK_SIZE", chunk_size)
        assert report_document(verify_bundle(directory, workers=1)) == expected, chunk_size


@pytest.mark.parametrize(
    "name", ["tampered/entry_deleted", "tampered/entry_inserted", "tampered/node_as_leaf"]
)
def test_findings_kept_per_check_are_the_same(
    name: str, monkeypatch: pytest.MonkeyPatch, pool_watch: PoolWatch
) -> None:
    """Over the limit per check, the first findings made are kept: the same ones."""
    directory = VECTORS[name]
    monkeypatch.setattr(verify, "FINDINGS_PER_CHECK_MAX", 3)
    inline = verify_bundle(directory, workers=1)
    assert inline.findings_omitted > 0
    monkeypatch.setattr(verify, "LEAF_CHUNK_SIZE", VECTOR_CHUNK_SIZE)
    parallel = verify_bundle(directory, workers=WORKERS)
    assert report_document(parallel) == report_document(inline)
    assert_workers_did_the_chunks(pool_watch, chunks_in(directory, VECTOR_CHUNK_SIZE))


# --- A bundle larger than one chunk ---------------------------------------------------------


def large_builder() -> BundleBuilder:
    """The standard bundle, then rounds of: a pending transaction, the post of one
    opened three rounds before (often in an earlier chunk), and a batch of transfers
    under one signature; a participant key rotation, and checkpoints on and off chunk
    boundaries, up to ``LARGE_SIZE`` leaves."""
    builder = standard_builder()
    legs = [("A1", "B1", "USD"), ("B2", "A2", "PKR")]
    open_pending: list[str] = []
    rotated = False
    number = 0
    while builder.size < LARGE_SIZE:
        if not rotated and builder.size > LARGE_SIZE // 2:
            builder.register_key(BANK_A, BANK_A_KEY_LATER, signed_by=BANK_A)
            rotated = True
        pending_id = f"LP{number}"
        builder.transaction(
            pending_id,
            [("A1", Side.DEBIT, 3, "USD"), ("B1", Side.CREDIT, 3, "USD")],
            signer=BANK_A,
            pending=True,
        )
        open_pending.append(pending_id)
        if len(open_pending) > 3:
            builder.post_pending(f"LPOST{number}", open_pending.pop(0), signer=BANK_A)
        debit, credit, currency = legs[number % 2]
        payload = bundle.encode_canonical(
            {
                "instruction_id": f"large-batch-{number}",
                "instruction_type": "settlement.v1.TransactionBatchInstruction",
                "participant_id": BANK_B,
            }
        )
        shared = SignedInstruction(BANK_B, payload, sign_instruction(BANK_B_KEY, payload))
        builder.now_us += 1_000
        for item in range(min(BATCH_SIZE, LARGE_SIZE - builder.size)):
            amount = 1 + (number + item) % 97
            builder.transaction(
                f"L{number}-{item}",
                [(debit, Side.DEBIT, amount, currency), (credit, Side.CREDIT, amount, currency)],
                signer=BANK_B,
                instruction=shared,
                committed_at_us=builder.now_us,
            )
            if builder.size in CHECKPOINT_SIZES:
                builder.checkpoint()
        number += 1
    if builder.checkpoint_sizes[-1] != builder.size:
        builder.checkpoint()
    if builder.size != LARGE_SIZE:
        raise AssertionError(f"the large bundle has {builder.size} leaves, not {LARGE_SIZE}")
    return builder


@pytest.fixture(scope="module")
def large_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return large_builder().write(tmp_path_factory.mktemp("large") / "bundle")


def change_amounts_across_a_boundary(directory: Path) -> None:
    for index in (2047, 2048, 4100):
        tamper.change_amount(directory, STANDARD_SIGNING, index)


def cut_the_last_leaf(directory: Path) -> None:
    leaves = directory / bundle.LEAVES_FILE
    leaves.write_bytes(leaves.read_bytes()[:-100])


LARGE_TAMPERS: dict[str, Callable[[Path], None] | None] = {
    "genuine": None,
    "signature flipped in the second chunk": lambda directory: tamper.flip_signature_byte(
        directory, STANDARD_SIGNING, 2048 + 40
    ),
    "entry deleted in the first chunk": lambda directory: tamper.delete_entry(
        directory, STANDARD_SIGNING, 100
    ),
    "first chunk's entry replayed in the third": lambda directory: tamper.insert_entry(
        directory, STANDARD_SIGNING, 2 * 2048 + 10, 60
    ),
    "amounts changed on both sides of a boundary": change_amounts_across_a_boundary,
    "last leaf cut short": cut_the_last_leaf,
}


@pytest.mark.parametrize("attack", sorted(LARGE_TAMPERS))
def test_a_bundle_of_several_chunks(
    attack: str, large_directory: Path, tmp_path: Path, pool_watch: PoolWatch
) -> None:
    directory = Path(shutil.copytree(large_directory, tmp_path / "bundle"))
    apply = LARGE_TAMPERS[attack]
    if apply is not None:
        apply(directory)
    inline = verify_bundle(directory, workers=1)
    parallel = verify_bundle(directory, workers=WORKERS)
    assert report_document(parallel) == report_document(inline)
    # The reports compared say something: the genuine bundle verifies, no copy does.
    assert inline.ok == (apply is None), inline.findings[:5]
    assert inline.entries_checked > 2 * verify.LEAF_CHUNK_SIZE
    assert_workers_did_the_chunks(pool_watch, chunks_in(directory, verify.LEAF_CHUNK_SIZE))


# --- A pool that breaks ----------------------------------------------------------------------


class _BrokenPool:
    """Stands in for a process pool whose workers died: the first task fails, later
    submissions are refused."""

    def __init__(self, **_options: object) -> None:
        self.submitted = 0

    def submit(self, *_arguments: object) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        if self.submitted > 1:
            raise BrokenProcessPool("workers died")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_exception(BrokenProcessPool("workers died"))
        return future

    def shutdown(self, **_options: object) -> None:
        pass


def test_a_broken_pool_gives_the_same_report(
    monkeypatch: pytest.MonkeyPatch, pool_watch: PoolWatch
) -> None:
    directory = VECTORS["tampered/signature_byte_flipped"]
    expected = report_document(verify_bundle(directory, workers=1))
    monkeypatch.setattr(verify, "LEAF_CHUNK_SIZE", VECTOR_CHUNK_SIZE)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _BrokenPool)
    assert report_document(verify_bundle(directory, workers=WORKERS)) == expected
    assert pool_watch.abandoned >= 1
