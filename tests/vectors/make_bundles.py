"""Generate the golden export bundle and one tampered copy per verifier check.

Usage: ``python tests/vectors/make_bundles.py [--out DIR]`` (default
``tests/vectors/bundles/``). The output is byte-for-byte deterministic, and
``test_golden_bundles.py`` fails when the committed files drift from it.

What it writes into ``DIR``:

- ``golden/``: the bundle ``ledger.export.export_bundle`` writes for a real
  SQLite ledger after 1,000 entries of every kind (``tests/busy_ledger.py``:
  signed payments, batches under one signature, pendings posted in full and in
  part, voided and expired, reversals, events, limits, freezes, a key
  rotation), with a checkpoint about every 100 entries. It must verify.
- ``tampered/<name>/``: a copy of ``golden/`` changed by one attack of
  ``tests/bundle_tamper.py`` (:data:`TAMPERS`). Each must be rejected, with
  the first failure (``Report.first_failure``: the lowest failing leaf index,
  else the first bundle-level check in precedence) that ``expected.json`` names.
- ``cosigned/``: the golden bundle with a witness's cosignature (a key the
  trust file does not know) on its last checkpoint. It must verify: signed-note
  verifiers ignore signatures by unknown keys.
- ``expected.json``: for each tampered copy, the attack and the expected
  (check, index), worked out here from where the attack was made and the
  verifier's documented precedence, never by running the verifier.

Every key is a THROWAWAY TEST KEY whose seed is SHA-256 of a public label
(``busy_ledger.derived_test_key``): anyone can recompute it, so nothing here
may ever be trusted outside these tests. The clock starts at a fixed time and
moves 1 ms per call (and past pending timeouts when the scenario says so).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Runnable as a script: modules are named from the repository root (ledger, tests).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import bundle
from ledger.export import export_bundle
from ledger.journal import LogSettings
from ledger.note import NoteSigner
from ledger.store import Ledger
from tests import bundle_tamper as tamper
from tests.bundle_builder import LogSigning
from tests.busy_ledger import (
    BANK_US,
    BusyLedger,
    SteppingClock,
    derived_test_key,
    public_bytes,
    scenario_keys,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).resolve().parent / "bundles"
GOLDEN = "golden"
TAMPERED = "tampered"
COSIGNED = "cosigned"
EXPECTED = "expected.json"
GENERATED = (GOLDEN, TAMPERED, COSIGNED, EXPECTED)
"""What the script owns in its output directory (and replaces on every run)."""

ORIGIN = "settlement.example/test-vectors"
ENTRIES = 1000
CHECKPOINT_EVERY_ENTRIES = 100
CHECKPOINT_EVERY_SECONDS = 365 * 24 * 3600
"""In effect never: checkpoints follow the entry count alone, whatever the clock jumps."""

# THROWAWAY TEST KEYS (seeds from public labels; see busy_ledger.derived_test_key).
LOG_KEY = NoteSigner(ORIGIN, derived_test_key("log"))
BANK_US_ROTATED_KEY = derived_test_key("bankus-rotated")
UNKNOWN_LOG_KEY = NoteSigner(ORIGIN, derived_test_key("unknown-log"))
"""Named like the log but in no trust file."""
RETIRED_LOG_KEY = NoteSigner(ORIGIN, derived_test_key("retired-log"))
"""Listed in the ``checkpoint_expired_key`` copy's trust file for tree sizes up to
:data:`RETIRED_LAST_TREE_SIZE` only."""
WITNESS_KEY = NoteSigner("witness.example/w1", derived_test_key("witness"))

SIGNING = LogSigning.single(LOG_KEY)
RETIRED_LAST_TREE_SIZE = 102

# Where the attacks strike: leaves are picked from the golden bundle by what
# they are, at or after these indexes, so that each lands in the busy middle of
# the log, past the key rotation (about index 170) and on a leaf of the right kind.
AMOUNT_FROM = 500
DELETE_FROM = 600
SWAP_FROM = 800
INSERT_AT = 900
FLIP_FROM = 300
UNBALANCED_FROM = 700
NODE_AT = 400
"""Even, so leaves 400 and 401 are siblings and their parent is a real node."""
FORK_POSITION = 3
REPLACED_POSITION = 5
UNKNOWN_KEY_POSITION = 7
EXPIRED_KEY_POSITION = 9


Leaf = dict[str, Any]


@dataclass(frozen=True)
class Tamper:
    """One tampered copy: its directory name, what the attack does, how, and the
    first failure the verifier must report for it."""

    name: str
    attack: str
    apply: Callable[[Path], None]
    check: str
    index: int | None


# --- The golden bundle ------------------------------------------------------------------


def build_golden(directory: Path) -> None:
    """Run the busy scenario on a fresh SQLite ledger and export it to ``directory``."""
    with tempfile.TemporaryDirectory(prefix="golden-ledger-") as scratch:
        clock = SteppingClock()
        settings = LogSettings(
            ORIGIN,
            LOG_KEY,
            checkpoint_every_entries=CHECKPOINT_EVERY_ENTRIES,
            checkpoint_every_seconds=CHECKPOINT_EVERY_SECONDS,
        )
        with Ledger(str(Path(scratch) / "ledger.db"), clock=clock, log=settings) as ledger:
            BusyLedger(ledger, clock, scenario_keys(), BANK_US_ROTATED_KEY).run_until(ENTRIES)
            ledger.check_invariants()
            size = export_bundle(ledger, directory)
    if size != ENTRIES:
        raise AssertionError(f"exported {size} entries, expected {ENTRIES}")


# --- Picking the leaves to attack ---------------------------------------------------------------


def read_documents(directory: Path) -> list[Leaf]:
    documents = [bundle.decode_canonical(leaf) for leaf in tamper.read_leaves(directory)]
    if not all(isinstance(document, dict) for document in documents):
        raise AssertionError("every leaf is a JSON object")
    return documents


def payload(document: Leaf) -> dict[str, Any]:
    instruction = document["instruction"]
    if instruction is None:
        return {}
    decoded = json.loads(base64.b64decode(instruction["payload"]))
    return decoded if isinstance(decoded, dict) else {}


def first_at_or_after(documents: Sequence[Leaf], start: int, wanted: Callable[[int], bool]) -> int:
    for index in range(start, len(documents)):
        if wanted(index):
            return index
    raise AssertionError(f"no leaf at or after {start} is what the attack needs")


def is_own_payment(documents: Sequence[Leaf], index: int, signer: str | None = None) -> bool:
    """A posted transaction under its own TransactionInstruction (not a batch's)."""
    document = documents[index]
    signed = payload(document)
    return (
        document["kind"] == "transaction"
        and not document["pending"]
        and signed.get("instruction_type") == "settlement.v1.TransactionInstruction"
        and signed.get("instruction_id") == document["id"]
        and (signer is None or document["instruction"]["signer"] == signer)
    )


def participant_key_at(
    directory: Path, signer: str, index: int, candidates: Sequence[Ed25519PrivateKey]
) -> Ed25519PrivateKey:
    """The private key of ``signer`` valid at leaf ``index``, as the trust file says."""
    trust = bundle.parse_trust(bundle.read_json(directory / bundle.TRUST_FILE))
    for key in trust.participant_keys:
        if key.signer == signer and key.covers(index):
            for candidate in candidates:
                if public_bytes(candidate) == key.public_key:
                    return candidate
    raise AssertionError(f"no known private key of {signer!r} covers index {index}")


def plan_tampers(golden: Path) -> list[Tamper]:
    """Choose where each attack strikes and say what the verifier must report first.

    The expectations follow from ``ledger.verify``: leaf findings come before
    bundle-level ones, the lowest index first, and at one index the check
    earliest in ``CHECKS``. An attack that changes nothing before leaf ``i``
    and breaks its index, bytes or balance there is first reported at ``i``;
    an attack on checkpoints, balances or the manifest alone has no leaf finding.
    """
    documents = read_documents(golden)
    checkpoint_sizes = [
        int(tamper.note_text(note).split("\n")[1]) for note in tamper.read_checkpoints(golden)
    ]
    amount_index = first_at_or_after(documents, AMOUNT_FROM, lambda i: is_own_payment(documents, i))
    delete_index = first_at_or_after(documents, DELETE_FROM, lambda i: is_own_payment(documents, i))
    # A pending followed by its partial post: the swap posts money not yet reserved.
    swap_index = first_at_or_after(
        documents,
        SWAP_FROM,
        lambda i: (
            documents[i + 1]["kind"] == "post_pending"
            and documents[i + 1]["pending_id"] == documents[i].get("id")
        ),
    )
    flip_index = first_at_or_after(
        documents,
        FLIP_FROM,
        lambda i: is_own_payment(documents, i) and len(documents[i]["postings"]) == 4,
    )
    unbalanced_index = first_at_or_after(
        documents, UNBALANCED_FROM, lambda i: is_own_payment(documents, i, BANK_US)
    )
    bank_us_key = participant_key_at(
        golden,
        BANK_US,
        unbalanced_index,
        [scenario_keys()[BANK_US], BANK_US_ROTATED_KEY],
    )
    if NODE_AT % 2:
        raise AssertionError("an internal node covers an even leaf and the next one")
    expired_size = checkpoint_sizes[EXPIRED_KEY_POSITION]
    if expired_size <= RETIRED_LAST_TREE_SIZE:
        raise AssertionError("the re-signed checkpoint must lie outside the retired key's range")

    def expired_key(directory: Path) -> None:
        tamper.trust_log_key(directory, SIGNING, RETIRED_LOG_KEY, 0, RETIRED_LAST_TREE_SIZE)
        tamper.resign_checkpoint(directory, SIGNING, EXPIRED_KEY_POSITION, RETIRED_LOG_KEY)

    return [
        Tamper(
            "amount_changed",
            f"leaf {amount_index} (payment {documents[amount_index]['id']}): first posting's "
            "amount +1, checkpoints and manifest re-signed by the operator",
            lambda d: tamper.change_amount(d, SIGNING, amount_index),
            "entry_balanced",
            amount_index,
        ),
        Tamper(
            "entry_deleted",
            f"leaf {delete_index} (payment {documents[delete_index]['id']}) removed, "
            "checkpoints and manifest re-signed",
            lambda d: tamper.delete_entry(d, SIGNING, delete_index),
            "leaf_index",
            delete_index,
        ),
        Tamper(
            "entries_swapped",
            f"leaves {swap_index} (pending {documents[swap_index]['id']}) and {swap_index + 1} "
            "(its post) exchanged, checkpoints and manifest re-signed",
            lambda d: tamper.swap_entries(d, SIGNING, swap_index),
            "leaf_index",
            swap_index,
        ),
        Tamper(
            "entry_inserted",
            f"a verbatim copy of leaf {amount_index} (payment "
            f"{documents[amount_index]['id']}) inserted at {INSERT_AT}, checkpoints and "
            "manifest re-signed",
            lambda d: tamper.insert_entry(d, SIGNING, INSERT_AT, amount_index),
            "leaf_index",
            INSERT_AT,
        ),
        Tamper(
            "signature_byte_flipped",
            f"one bit of the participant signature of leaf {flip_index} (payment versus "
            f"payment {documents[flip_index]['id']}) flipped, checkpoints and manifest re-signed",
            lambda d: tamper.flip_signature_byte(d, SIGNING, flip_index),
            "participant_signature",
            flip_index,
        ),
        Tamper(
            "unbalanced_entry_signed",
            f"operator fraud: leaf {unbalanced_index} (payment "
            f"{documents[unbalanced_index]['id']}) debits 1 more than it credits, under an "
            "instruction the participant really signed for those postings",
            lambda d: tamper.commit_unbalanced_entry(
                d, SIGNING, unbalanced_index, BANK_US, bank_us_key
            ),
            "entry_balanced",
            unbalanced_index,
        ),
        Tamper(
            "checkpoint_fork",
            f"a second checkpoint for tree size {checkpoint_sizes[FORK_POSITION]} over another "
            f"root, signed by the log key, after checkpoint {FORK_POSITION}",
            lambda d: tamper.fork_checkpoint(d, SIGNING, FORK_POSITION),
            "checkpoint_consistency",
            None,
        ),
        Tamper(
            "checkpoint_root_replaced",
            f"checkpoint {REPLACED_POSITION} re-signed by the log key over another root at the "
            f"same tree size {checkpoint_sizes[REPLACED_POSITION]}",
            lambda d: tamper.fork_checkpoint(d, SIGNING, REPLACED_POSITION, replace=True),
            "checkpoint_root",
            None,
        ),
        Tamper(
            "checkpoint_unknown_key",
            f"checkpoint {UNKNOWN_KEY_POSITION} signed only by a key named like the log that no "
            "trust file lists",
            lambda d: tamper.resign_checkpoint(d, SIGNING, UNKNOWN_KEY_POSITION, UNKNOWN_LOG_KEY),
            "checkpoint_signature",
            None,
        ),
        Tamper(
            "checkpoint_expired_key",
            f"the trust file also lists a log key valid for tree sizes 0..{RETIRED_LAST_TREE_SIZE};"
            f" checkpoint {EXPIRED_KEY_POSITION} (tree size {expired_size}) is signed by it only",
            expired_key,
            "checkpoint_key",
            None,
        ),
        Tamper(
            "closing_balance_misstated",
            "balances.json: 100 more posted debits on settlement:BANKUS:USD and 100 more posted "
            "credits on settlement:BANKPK:USD (still sums to zero); manifest re-signed",
            lambda d: tamper.misstate_balance(
                d, SIGNING, "settlement:BANKUS:USD", "settlement:BANKPK:USD", 100
            ),
            "closing_balance",
            None,
        ),
        Tamper(
            "manifest_hash_wrong",
            f"the manifest, signed by the log key, gives a wrong SHA-256 of {bundle.LEAVES_FILE}",
            lambda d: tamper.wrong_manifest_hash(d, SIGNING, bundle.LEAVES_FILE),
            "manifest_hash",
            None,
        ),
        Tamper(
            "node_as_leaf",
            f"leaves {NODE_AT} and {NODE_AT + 1} replaced by one leaf holding their two leaf "
            "hashes (the bytes of their parent node); checkpoints kept, manifest re-signed",
            lambda d: tamper.node_as_leaf(d, SIGNING, NODE_AT),
            "leaf_canonical",
            NODE_AT,
        ),
    ]


# --- Writing everything ---------------------------------------------------------------------------


def expected_document(golden: Path, tampers: Sequence[Tamper]) -> dict[str, Any]:
    documents = read_documents(golden)
    return {
        "generator": "tests/vectors/make_bundles.py",
        "golden": {
            "origin": ORIGIN,
            "tree_size": len(documents),
            "checkpoint_sizes": [
                int(tamper.note_text(note).split("\n")[1])
                for note in tamper.read_checkpoints(golden)
            ],
            "entries_by_kind": dict(sorted(Counter(d["kind"] for d in documents).items())),
        },
        "cosigned": {
            "attack": "a witness cosignature (a key no trust file lists) on the last "
            "checkpoint: ignored, the bundle verifies",
            "unknown_signatures_ignored": 1,
        },
        "tampered": {
            item.name: {"attack": item.attack, "check": item.check, "index": item.index}
            for item in tampers
        },
    }


def generate(out: Path) -> None:
    """Write the golden bundle, the tampered copies, the cosigned copy and expected.json."""
    out.mkdir(parents=True, exist_ok=True)
    for name in GENERATED:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    golden = out / GOLDEN
    build_golden(golden)
    tampers = plan_tampers(golden)
    if len({item.name for item in tampers}) != len(tampers):
        raise AssertionError("two tampered copies share a name")
    for item in tampers:
        copy = Path(shutil.copytree(golden, out / TAMPERED / item.name))
        item.apply(copy)
    cosigned = Path(shutil.copytree(golden, out / COSIGNED))
    last = len(tamper.read_checkpoints(golden)) - 1
    tamper.add_cosignature(cosigned, SIGNING, last, WITNESS_KEY)
    text = json.dumps(expected_document(golden, tampers), indent=2, sort_keys=True) + "\n"
    (out / EXPECTED).write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default {DEFAULT_OUT.relative_to(ROOT)})",
    )
    options = parser.parse_args(argv)
    generate(options.out)
    print(f"wrote {', '.join(GENERATED)} to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
