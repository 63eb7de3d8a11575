"""ledger.verify: the offline verifier, on real bundles and on one tampered copy per attack.

Bundles come from ``bundle_builder`` (real Ed25519 keys, leaves from
``ledger.leaf``); attacks from ``bundle_tamper``. Each attack must be rejected
with the expected first failure (check and index), and the full set of checks
that fire is pinned so a change in what the verifier reports is deliberate.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from ledger import bundle, verify
from ledger.canonical import encode
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.merkle import leaf_hash, root_from_leaf_hashes
from ledger.note import NoteSigner
from ledger.records import Side, SignedInstruction
from ledger.signing import sign_instruction
from ledger.verify import CHECKS, Report, main, verify_bundle
from tests import bundle_tamper as tamper
from tests.bundle_builder import (
    BANK_A,
    BANK_A_KEY,
    BANK_B,
    BANK_B_KEY,
    HUB,
    HUB_KEY,
    LOG_KEY_NEW,
    LOG_KEY_OLD,
    STANDARD,
    STANDARD_SIGNING,
    UNKNOWN_LOG_KEY,
    WITNESS_KEY,
    BundleBuilder,
    LogSigning,
    private_key,
    public_bytes,
    standard_builder,
)

UNKNOWN_KEY = private_key(77)

# --- Fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standard_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standard_builder().write(tmp_path_factory.mktemp("standard") / "bundle")


@pytest.fixture
def bundle_copy(standard_directory: Path, tmp_path: Path) -> Path:
    """A fresh copy of the standard bundle, free to tamper with."""
    return Path(shutil.copytree(standard_directory, tmp_path / "bundle"))


def check(directory: Path, **options: object) -> Report:
    return verify_bundle(directory, workers=1, **options)  # type: ignore[arg-type]


def pairs(report: Report) -> set[tuple[str, int | None]]:
    return {(finding.check, finding.index) for finding in report.findings}


def names(report: Report) -> set[str]:
    return set(report.finding_counts)


def small_builder() -> BundleBuilder:
    """Keys for HUBOPS and BANKA, USD accounts A1 and B1: leaves 0..3."""
    builder = BundleBuilder(LogSigning.single(LOG_KEY_OLD))
    builder.register_key(HUB, HUB_KEY, signed_by=None)
    builder.register_key(BANK_A, BANK_A_KEY, signed_by=HUB)
    builder.account("A1", "USD", BANK_A, signer=HUB)
    builder.account("B1", "USD", BANK_A, signer=HUB)
    return builder


def usd(debit: str, credit: str, amount: int) -> list[tuple[str, Side, int, str]]:
    return [(debit, Side.DEBIT, amount, "USD"), (credit, Side.CREDIT, amount, "USD")]


def write(builder: BundleBuilder, tmp_path: Path) -> Path:
    builder.checkpoint()
    return builder.write(tmp_path / "bundle")


# --- The valid bundle ------------------------------------------------------------------


def test_standard_bundle_verifies_with_its_figures(standard_directory: Path) -> None:
    report = check(standard_directory)
    assert report.ok, report.findings
    assert report.findings == []
    assert report.first_failure() is None
    assert report.tree_size == STANDARD.size
    assert report.entries_checked == STANDARD.size
    assert report.checkpoints_checked == 3
    assert report.signatures_checked == STANDARD.size - 2  # the bootstrap key and the expiry
    assert report.unsigned_entries == 2
    assert report.signatures_verified == report.signatures_checked
    assert report.accounts_checked == 4


def test_cli_exit_0_and_readable_report(
    standard_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["verify", str(standard_directory), "--workers", "1", "--no-progress"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[:4] == ["OK", "tree size: 21", "entries: 21", "checkpoints: 3"]


# --- One tampered copy per attack --------------------------------------------------------

S = STANDARD_SIGNING
Tamper = Callable[[Path], None]

TAMPER_CASES: list[tuple[str, Tamper, tuple[str, int | None], set[str]]] = [
    (
        "amount changed",
        lambda d: tamper.change_amount(d, S, STANDARD.transfer),
        ("entry_balanced", STANDARD.transfer),
        {"entry_balanced", "instruction_binding", "closing_balance"},
    ),
    (
        "entry deleted",
        lambda d: tamper.delete_entry(d, S, STANDARD.transfer),
        ("leaf_index", STANDARD.transfer),
        {
            "leaf_index",
            "tree_size",
            "closing_balance",
            "entry_reference",
            "signing_key",
            "trust_keys",
            "participant_key",
        },
    ),
    (
        "two entries swapped",
        lambda d: tamper.swap_entries(d, S, STANDARD.transfer),
        ("leaf_index", STANDARD.transfer),
        {"leaf_index"},
    ),
    (
        "entry inserted",
        lambda d: tamper.insert_entry(d, S, STANDARD.transfer, STANDARD.cross_currency),
        ("leaf_index", STANDARD.transfer),
        {
            "leaf_index",
            "tree_size",
            "closing_balance",
            "duplicate_entry_id",
            "signing_key",
            "trust_keys",
            "participant_key",
        },
    ),
    (
        "signature byte flipped",
        lambda d: tamper.flip_signature_byte(d, S, STANDARD.cross_currency),
        ("participant_signature", STANDARD.cross_currency),
        {"participant_signature"},
    ),
    (
        "unbalanced entry with a valid participant signature",
        lambda d: tamper.commit_unbalanced_entry(d, S, STANDARD.transfer, BANK_A, BANK_A_KEY),
        ("entry_balanced", STANDARD.transfer),
        {"entry_balanced", "closing_balance"},
    ),
    (
        "checkpoint forked: a second root for one size",
        lambda d: tamper.fork_checkpoint(d, S, 1),
        ("checkpoint_consistency", None),
        {"checkpoint_consistency", "checkpoint_root"},
    ),
    (
        "checkpoint re-signed over another root at the same size",
        lambda d: tamper.fork_checkpoint(d, S, 1, replace=True),
        ("checkpoint_root", None),
        {"checkpoint_root"},
    ),
    (
        "checkpoint signed by an unknown key only",
        lambda d: tamper.resign_checkpoint(d, S, 2, UNKNOWN_LOG_KEY),
        ("checkpoint_signature", None),
        {"checkpoint_signature"},
    ),
    (
        "checkpoint signed by an expired log key",
        lambda d: tamper.resign_checkpoint(d, S, 2, LOG_KEY_OLD),
        ("checkpoint_key", None),
        {"checkpoint_key"},
    ),
    (
        "closing balance misstated",
        lambda d: tamper.misstate_balance(d, S, "A1", "B1", 5),
        ("closing_balance", None),
        {"closing_balance"},
    ),
    (
        "manifest hash wrong",
        lambda d: tamper.wrong_manifest_hash(d, S, bundle.BALANCES_FILE),
        ("manifest_hash", None),
        {"manifest_hash"},
    ),
    (
        "internal node presented as a leaf",
        lambda d: tamper.node_as_leaf(d, S, STANDARD.cross_currency),
        ("leaf_canonical", STANDARD.cross_currency),
        {
            "leaf_canonical",
            "leaf_index",
            "checkpoint_root",
            "checkpoint_size",
            "tree_size",
            "closing_balance",
            "entry_reference",
            "balance_negative",
            "signing_key",
            "trust_keys",
            "participant_key",
        },
    ),
    (
        "leaves changed after the manifest was signed",
        lambda d: tamper.edit_file_without_resigning(d, bundle.LEAVES_FILE),
        ("framing", STANDARD.size),
        {"framing", "manifest_hash"},
    ),
]


@pytest.mark.parametrize(
    ("attack", "expected_first", "expected_checks"),
    [pytest.param(case[1], case[2], case[3], id=case[0]) for case in TAMPER_CASES],
)
def test_tampered_bundle_is_rejected(
    bundle_copy: Path,
    attack: Tamper,
    expected_first: tuple[str, int | None],
    expected_checks: set[str],
) -> None:
    attack(bundle_copy)
    report = check(bundle_copy)
    first = report.first_failure()
    assert not report.ok
    assert first is not None
    assert (first.check, first.index) == expected_first, report.findings
    assert names(report) == expected_checks, report.findings
    assert main(["verify", str(bundle_copy), "--workers", "1", "--no-progress"]) == 1


def test_each_tamper_case_has_evidence(bundle_copy: Path) -> None:
    tamper.flip_signature_byte(bundle_copy, S, STANDARD.cross_currency)
    (finding,) = check(bundle_copy).findings
    assert finding.expected
    assert finding.got
    assert finding.message


def test_operator_fraud_attaches_the_exact_amounts(bundle_copy: Path) -> None:
    tamper.commit_unbalanced_entry(bundle_copy, S, STANDARD.transfer, BANK_A, BANK_A_KEY)
    finding = next(f for f in check(bundle_copy).findings if f.check == "entry_balanced")
    assert finding.expected == "USD credits = debits = 101"
    assert finding.got == "credits 100"


def test_unknown_cosignature_on_a_checkpoint_is_ignored(bundle_copy: Path) -> None:
    tamper.add_cosignature(bundle_copy, S, 2, WITNESS_KEY)
    report = check(bundle_copy)
    assert report.ok, report.findings
    assert report.unknown_signatures_ignored == 1
    assert main(["verify", str(bundle_copy), "--workers", "1", "--no-progress"]) == 0


def test_unknown_key_named_like_the_log_as_cosigner_is_ignored(bundle_copy: Path) -> None:
    tamper.add_cosignature(bundle_copy, S, 0, UNKNOWN_LOG_KEY)
    assert check(bundle_copy).ok


def test_misstated_balances_name_both_accounts(bundle_copy: Path) -> None:
    tamper.misstate_balance(bundle_copy, S, "A1", "B1", 5)
    messages = [finding.message for finding in check(bundle_copy).findings]
    assert len(messages) == 2
    assert "'A1'" in messages[0]
    assert "'B1'" in messages[1]


def test_fork_evidence_holds_both_roots(bundle_copy: Path) -> None:
    tamper.fork_checkpoint(bundle_copy, S, 1)
    report = check(bundle_copy)
    fork = next(f for f in report.findings if f.check == "checkpoint_consistency")
    root = next(f for f in report.findings if f.check == "checkpoint_root")
    assert root.got in fork.got
    assert root.expected in fork.expected


# --- The previous checkpoint ------------------------------------------------------------------


def previous_note(size: int, root: bytes | None = None, signer: NoteSigner | None = None) -> bytes:
    """A checkpoint an auditor kept: by default the genuine one at ``size``."""
    builder = standard_builder()
    if root is None:
        root = root_from_leaf_hashes([leaf_hash(leaf) for leaf in builder.leaves[:size]])
    key = signer if signer is not None else STANDARD_SIGNING.signer_for(size)
    return sign_checkpoint(Checkpoint(builder.origin, size, root), key)


def test_previous_checkpoint_at_a_size_between_checkpoints_is_consistent(
    standard_directory: Path,
) -> None:
    report = check(standard_directory, previous_checkpoint=previous_note(10))
    assert report.ok, report.findings


@pytest.mark.parametrize("size", [1, 7, 13, 21])
def test_previous_checkpoint_consistent_at_any_size(standard_directory: Path, size: int) -> None:
    assert check(standard_directory, previous_checkpoint=previous_note(size)).ok


@pytest.mark.parametrize(
    ("note", "why"),
    [
        (lambda: previous_note(10, root=bytes(32)), "another root at size 10"),
        (lambda: previous_note(30, root=bytes(32), signer=LOG_KEY_NEW), "larger than the bundle"),
        (lambda: previous_note(10, signer=UNKNOWN_LOG_KEY), "signed by an unknown key"),
        (lambda: previous_note(21, signer=LOG_KEY_OLD), "signed by an expired log key"),
        (lambda: b"not a note\n", "not a signed note"),
    ],
)
def test_previous_checkpoint_inconsistent(
    standard_directory: Path, note: Callable[[], bytes], why: str
) -> None:
    report = check(standard_directory, previous_checkpoint=note())
    assert pairs(report) == {("previous_checkpoint", None)}, why


def test_cli_previous_checkpoint(
    standard_directory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.note"
    good.write_bytes(previous_note(10))
    bad = tmp_path / "bad.note"
    bad.write_bytes(previous_note(10, root=bytes(32)))
    base = ["verify", str(standard_directory), "--workers", "1", "--no-progress"]
    assert main([*base, "--previous-checkpoint", str(good)]) == 0
    assert main([*base, "--previous-checkpoint", str(bad)]) == 1
    assert main([*base, "--previous-checkpoint", str(tmp_path / "missing.note")]) == 2
    capsys.readouterr()


# --- Leaves -------------------------------------------------------------------------------------


def rewrite_leaf(directory: Path, index: int, data: bytes) -> None:
    leaves = tamper.read_leaves(directory)
    leaves[index] = data
    tamper.write_leaves(directory, leaves)
    tamper.reseal(directory, S)


LEAF_CASES: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("whitespace", lambda leaf: leaf.replace(b'"kind":', b'"kind": '), "leaf_canonical"),
    ("keys out of order", lambda leaf: b'{"z":1,' + leaf[1:], "leaf_canonical"),
    ("duplicate key", lambda leaf: leaf[:-1] + b',"schema":1}', "leaf_canonical"),
    ("float", lambda leaf: leaf.replace(b'"schema":1', b'"schema":1.0'), "leaf_canonical"),
    ("not UTF-8", lambda leaf: leaf.replace(b'"T1"', b'"T\xff"'), "leaf_canonical"),
    ("schema version 2", lambda leaf: leaf.replace(b'"schema":1', b'"schema":2'), "leaf_schema"),
    ("unknown kind", lambda leaf: leaf.replace(b'"transaction"', b'"transactions"'), "leaf_schema"),
    (
        "negative amount",
        lambda leaf: leaf.replace(b'"amount":"100"', b'"amount":"-100"'),
        "leaf_schema",
    ),
    (
        "leading zero",
        lambda leaf: leaf.replace(b'"amount":"100"', b'"amount":"0100"'),
        "leaf_schema",
    ),
    ("zero amount", lambda leaf: leaf.replace(b'"amount":"100"', b'"amount":"0"'), "amount_range"),
    (
        "amount beyond int64",
        lambda leaf: leaf.replace(b'"amount":"100"', b'"amount":"9223372036854775808"'),
        "amount_range",
    ),
    ("time without zone", lambda leaf: leaf.replace(b'Z","id"', b'","id"'), "leaf_schema"),
    ("unknown side", lambda leaf: leaf.replace(b'"side":"debit"', b'"side":"dr"'), "leaf_schema"),
]


@pytest.mark.parametrize(
    ("change", "expected"), [pytest.param(case[1], case[2], id=case[0]) for case in LEAF_CASES]
)
def test_malformed_leaf(bundle_copy: Path, change: Callable[[bytes], bytes], expected: str) -> None:
    leaf = tamper.read_leaves(bundle_copy)[STANDARD.transfer]
    changed = change(leaf)
    assert changed != leaf
    rewrite_leaf(bundle_copy, STANDARD.transfer, changed)
    report = check(bundle_copy)
    first = report.first_failure()
    assert first is not None
    assert (first.check, first.index) == (expected, STANDARD.transfer), report.findings


def test_leaf_index_must_equal_position(bundle_copy: Path) -> None:
    tamper.edit_leaf(bundle_copy, STANDARD.transfer, lambda doc: doc.update(index=99))
    tamper.reseal(bundle_copy, S)
    (finding,) = check(bundle_copy).findings
    assert (finding.check, finding.index, finding.expected, finding.got) == (
        "leaf_index",
        STANDARD.transfer,
        "7",
        "99",
    )


def test_truncated_leaves_file(bundle_copy: Path) -> None:
    data = (bundle_copy / bundle.LEAVES_FILE).read_bytes()
    (bundle_copy / bundle.LEAVES_FILE).write_bytes(data[:-5])
    tamper.resign_manifest(bundle_copy, S, tree_size=STANDARD.size)
    report = check(bundle_copy)
    assert ("framing", STANDARD.size - 1) in pairs(report)
    assert {"framing", "tree_size", "checkpoint_size"} <= names(report)


# --- Participant signatures and keys ----------------------------------------------------------


def test_unknown_signer(tmp_path: Path) -> None:
    builder = small_builder()
    builder.keys["NOBODY"] = BANK_B_KEY
    index = builder.transaction("T1", usd("A1", "B1", 5), signer="NOBODY")
    report = check(write(builder, tmp_path))
    assert pairs(report) == {("participant_key", index)}
    assert report.findings[0].got == "no key of that signer"


def test_signature_by_a_key_outside_its_range(bundle_copy: Path) -> None:
    """BANKA signs with its old key after the rotation: named as a key problem."""

    def sign_with_old_key(document: dict[str, object]) -> None:
        instruction = document["instruction"]
        assert isinstance(instruction, dict)
        payload = base64.b64decode(instruction["payload"])
        instruction["signature"] = base64.b64encode(sign_instruction(BANK_A_KEY, payload)).decode()

    tamper.edit_leaf(bundle_copy, STANDARD.after_rotation, sign_with_old_key)
    tamper.reseal(bundle_copy, S)
    report = check(bundle_copy)
    assert pairs(report) == {("participant_key", STANDARD.after_rotation)}
    assert "2..19" in report.findings[0].got


def test_shared_batch_signature_is_verified_once(tmp_path: Path) -> None:
    """One signed instruction may cover every item of one batch (ledger.batch)."""
    builder = small_builder()
    payload = encode({"instruction_id": "BANKA:batch-1", "participant_id": BANK_A, "items": 3})
    shared = SignedInstruction(BANK_A, payload, sign_instruction(BANK_A_KEY, payload))
    committed = builder.now_us + 10_000
    for number in range(3):
        builder.transaction(
            f"T{number}",
            usd("A1", "B1", 5),
            signer=BANK_A,
            instruction=shared,
            committed_at_us=committed,
        )
    report = check(write(builder, tmp_path))
    assert report.ok, report.findings
    assert report.signatures_checked == 6
    assert report.signatures_verified == 4


def test_instruction_replayed_in_another_commit(tmp_path: Path) -> None:
    builder = small_builder()
    payload = encode({"instruction_id": "BANKA:batch-1", "participant_id": BANK_A})
    shared = SignedInstruction(BANK_A, payload, sign_instruction(BANK_A_KEY, payload))
    builder.transaction("T1", usd("A1", "B1", 5), signer=BANK_A, instruction=shared)
    replay = builder.transaction("T2", usd("A1", "B1", 5), signer=BANK_A, instruction=shared)
    report = check(write(builder, tmp_path))
    assert pairs(report) == {("duplicate_instruction", replay)}
    assert report.findings[0].got == "also used at index 4"


def test_instruction_id_reused_for_another_instruction(tmp_path: Path) -> None:
    builder = small_builder()
    for number in range(2):
        payload = encode({"instruction_id": "BANKA:1", "participant_id": BANK_A, "n": number})
        instruction = SignedInstruction(BANK_A, payload, sign_instruction(BANK_A_KEY, payload))
        index = builder.transaction(
            f"T{number}", usd("A1", "B1", 5), signer=BANK_A, instruction=instruction
        )
    assert pairs(check(write(builder, tmp_path))) == {("duplicate_instruction", index)}


def test_signer_must_be_the_instructions_participant(tmp_path: Path) -> None:
    builder = small_builder()
    payload = encode({"instruction_id": "X:1", "participant_id": BANK_B})
    instruction = SignedInstruction(BANK_A, payload, sign_instruction(BANK_A_KEY, payload))
    index = builder.transaction("T1", usd("A1", "B1", 5), signer=BANK_A, instruction=instruction)
    assert pairs(check(write(builder, tmp_path))) == {("instruction_binding", index)}


def test_trust_file_missing_a_registered_key(bundle_copy: Path) -> None:
    document = bundle.read_json(bundle_copy / bundle.TRUST_FILE)
    document["participant_keys"] = [
        key for key in document["participant_keys"] if key["signer"] != BANK_B
    ]
    bundle.write_json(bundle_copy / bundle.TRUST_FILE, document)
    tamper.resign_manifest(bundle_copy, S)
    report = check(bundle_copy)
    assert ("trust_keys", 2) in pairs(report)
    assert {"trust_keys", "participant_key"} == names(report)


def test_trust_file_with_a_backdated_key(bundle_copy: Path) -> None:
    """A key the trust file says was valid from index 1, which no leaf registered."""
    document = bundle.read_json(bundle_copy / bundle.TRUST_FILE)
    document["participant_keys"].append(
        {
            "signer": "MALLORY",
            "public_key": base64.b64encode(public_bytes(UNKNOWN_KEY)).decode(),
            "first_index": "1",
            "last_index": None,
        }
    )
    bundle.write_json(bundle_copy / bundle.TRUST_FILE, document)
    tamper.resign_manifest(bundle_copy, S)
    assert pairs(check(bundle_copy)) == {("trust_keys", 0)}


# --- Replay and ids ------------------------------------------------------------------------------


def test_duplicate_ids(tmp_path: Path) -> None:
    builder = small_builder()
    builder.transaction("T1", usd("A1", "B1", 5), signer=BANK_A)
    again = builder.transaction("T1", usd("A1", "B1", 6), signer=BANK_A)
    account = builder.account("A1", "USD", BANK_A, signer=HUB)
    report = check(write(builder, tmp_path))
    # The builder replays the duplicate account as a fresh one; balances differ.
    assert {("duplicate_entry_id", again), ("duplicate_instruction", again)} <= pairs(report)
    assert ("duplicate_account_id", account) in pairs(report)


def test_posting_to_an_unknown_account(tmp_path: Path) -> None:
    builder = small_builder()
    builder.totals["GHOST"] = [0, 0, 0, 0]
    builder.currencies["GHOST"] = "USD"
    index = builder.transaction("T1", usd("A1", "GHOST", 5), signer=BANK_A)
    report = check(write(builder, tmp_path))
    assert ("account_reference", index) in pairs(report)


def test_void_of_a_pending_that_is_no_longer_open(tmp_path: Path) -> None:
    builder = small_builder()
    builder.transaction("P1", usd("A1", "B1", 5), signer=BANK_A, pending=True)  # 4
    builder.void_pending("V1", "P1", signer=BANK_A)  # 5
    directory = write(builder, tmp_path)
    leaves = tamper.read_leaves(directory)
    copy = leaves[5].replace(b'"index":5', b'"index":6').replace(b'"id":"V1"', b'"id":"V2"')
    leaves.append(copy)
    tamper.write_leaves(directory, leaves)
    tamper.reseal(directory, builder.signing)
    report = check(directory)
    assert {("entry_reference", 6), ("balance_negative", 6)} <= pairs(report)


# --- Files ---------------------------------------------------------------------------------------


def test_missing_and_extra_files(bundle_copy: Path) -> None:
    (bundle_copy / "notes.txt").write_text("hello")
    (bundle_copy / bundle.BALANCES_FILE).unlink()
    report = check(bundle_copy)
    assert names(report) == {"bundle_files"}
    assert report.finding_counts["bundle_files"] == 2


def test_manifest_signature_flipped(bundle_copy: Path) -> None:
    note = bytearray((bundle_copy / bundle.MANIFEST_FILE).read_bytes())
    note[-10] = ord("A") if note[-10] != ord("A") else ord("B")
    (bundle_copy / bundle.MANIFEST_FILE).write_bytes(bytes(note))
    assert pairs(check(bundle_copy)) == {("manifest_signature", None)}


def test_manifest_signed_by_an_expired_log_key(bundle_copy: Path) -> None:
    tamper.resign_manifest(bundle_copy, LogSigning.single(LOG_KEY_OLD))
    assert pairs(check(bundle_copy)) == {("manifest_key", None)}


def test_trust_file_unreadable(bundle_copy: Path) -> None:
    (bundle_copy / bundle.TRUST_FILE).write_bytes(b'{"format": "x"}')
    report = check(bundle_copy)
    assert {"trust_file", "manifest_hash"} == names(report)


# --- Parallel signatures, progress, CLI ---------------------------------------------------


def test_worker_processes_find_what_inline_finds(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tamper.flip_signature_byte(bundle_copy, S, STANDARD.cross_currency)
    tamper.flip_signature_byte(bundle_copy, S, STANDARD.after_rotation)
    monkeypatch.setattr(verify, "SIGNATURE_CHUNK_SIZE", 2)
    parallel = verify_bundle(bundle_copy, workers=2)
    inline = verify_bundle(bundle_copy, workers=1)
    assert parallel.findings == inline.findings
    assert pairs(parallel) == {
        ("participant_signature", STANDARD.cross_currency),
        ("participant_signature", STANDARD.after_rotation),
    }
    assert parallel.signatures_verified == inline.signatures_verified


class _BrokenPool:
    """Stands in for a process pool whose workers died (e.g. no __main__ guard)."""

    def __init__(self, **_options: object) -> None:
        self.submitted = 0

    def submit(self, *_arguments: object) -> concurrent.futures.Future[list[bool]]:
        self.submitted += 1
        future: concurrent.futures.Future[list[bool]] = concurrent.futures.Future()
        if self.submitted > 1:
            raise BrokenProcessPool("workers died")
        future.set_exception(BrokenProcessPool("workers died"))
        return future

    def shutdown(self, **_options: object) -> None:
        pass


def test_broken_worker_pool_falls_back_to_inline(
    bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tamper.flip_signature_byte(bundle_copy, S, STANDARD.cross_currency)
    expected = verify_bundle(bundle_copy, workers=1)
    monkeypatch.setattr(verify, "SIGNATURE_CHUNK_SIZE", 2)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _BrokenPool)
    report = verify_bundle(bundle_copy, workers=2)
    assert report.findings == expected.findings
    assert report.signatures_verified == expected.signatures_verified


def test_progress_bar_on_stderr_unless_disabled(
    standard_directory: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(verify, "PROGRESS_THRESHOLD_LEAVES", 5)
    assert main(["verify", str(standard_directory), "--workers", "1"]) == 0
    assert "verifying" in capsys.readouterr().err
    assert main(["verify", str(standard_directory), "--workers", "1", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_json_document(bundle_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tamper.flip_signature_byte(bundle_copy, S, STANDARD.cross_currency)
    status = main(["verify", str(bundle_copy), "--json", "--workers", "1", "--no-progress"])
    document = json.loads(capsys.readouterr().out)
    assert status == 1
    assert document["ok"] is False
    assert document["tree_size"] == STANDARD.size
    assert document["entries_checked"] == STANDARD.size
    assert document["checkpoints_checked"] == 3
    assert document["finding_counts"] == {"participant_signature": 1}
    assert document["first_failure"]["index"] == STANDARD.cross_currency
    (finding,) = document["findings"]
    assert set(finding) == {"check", "index", "expected", "got", "message"}
    assert finding["check"] == "participant_signature"


def test_cli_text_lists_each_finding(bundle_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tamper.flip_signature_byte(bundle_copy, S, STANDARD.cross_currency)
    assert main(["verify", str(bundle_copy), "--workers", "1", "--no-progress"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "FAILED"
    assert "first failure: index 8: participant_signature" in lines
    assert any(
        line.startswith("index 8: participant_signature: ") and "(expected " in line
        for line in lines
    )


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["verify"],
        ["check", "x"],
        ["verify", "DIR", "--workers", "0"],
        ["verify", "DIR", "--workers", "many"],
        ["verify", "DIR", "--colour"],
    ],
)
def test_cli_usage_errors_exit_2(
    arguments: list[str], standard_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(standard_directory) if item == "DIR" else item for item in arguments]
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_cli_unreadable_bundle_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "missing"), "--no-progress"]) == 2
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["verify", str(a_file), "--no-progress"]) == 2
    assert "bundle directory" in capsys.readouterr().err


def test_cli_escapes_control_characters(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bundle content is untrusted: it must not reach the terminal as escape sequences."""
    tamper.edit_leaf(bundle_copy, STANDARD.transfer, lambda doc: doc.update(id="T\x1b[2J"))
    tamper.reseal(bundle_copy, S)
    assert main(["verify", str(bundle_copy), "--workers", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "leaf_schema" in out
    assert "\x1b" not in out


# --- Contract ------------------------------------------------------------------------------------


def test_check_names_are_stable() -> None:
    assert CHECKS[:8] == (
        "bundle_files",
        "manifest_signature",
        "manifest_key",
        "manifest_format",
        "manifest_hash",
        "trust_file",
        "balances_file",
        "tree_size",
    )
    assert len(set(CHECKS)) == len(CHECKS)
    assert all(name.replace("_", "").isalpha() and name.islower() for name in CHECKS)


ALLOWED_TOP_LEVEL_MODULES = {
    "ledger",
    "cryptography",
    "_cffi_backend",  # cryptography's C binding
    "_openssl",  # registered by cryptography's Rust binding
    "tqdm",
    "__main__",
    "__mp_main__",  # multiprocessing's alias of __main__
    "_distutils_hack",  # setuptools' .pth hook, loaded at interpreter start
}


def test_verifier_imports_only_the_standard_library_cryptography_and_tqdm() -> None:
    program = "import sys, ledger.verify\nprint('\\n'.join(sorted(sys.modules)))\n"
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.split()
    foreign = {
        name.split(".")[0]
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ALLOWED_TOP_LEVEL_MODULES
        and not name.startswith("__editable__")  # the editable install's path finder
    }
    assert foreign == set()
    forbidden = {
        "ledger.store",
        "ledger.batch",
        "sqlalchemy",
        "grpc",
        "rfc8785",
    }
    assert forbidden & set(loaded) == set()
