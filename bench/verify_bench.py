"""Offline verifier throughput, peak memory and where its time goes (``make bench``).

Setup: a SQLite ledger with one log key, one participant key and 100 USD
accounts; then ``--entries`` transactions (default 100,000) in batches of
100. Each batch is one ``execute`` call whose 100 commands share ONE
``SignedInstruction`` (a ``TransactionBatchInstruction``; its item hashes are
left out so that a leaf is the size of an ordinary instruction's): the ledger
verifies it once, and the bundle holds one distinct signature per 100 leaves.
The ledger is exported with ``ledger.export.export_bundle``.

Then, on that bundle:

1. ``settlement audit verify`` in a subprocess with one worker per core: wall
   time (interpreter start included) and the peak RSS of the verifier, read
   from ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest of the verifier
   process and the worker processes it waited for);
2. ``verify_bundle`` in this process with one worker per core: entries
   verified per second, the headline figure;
3. where the time goes, on one core: ``verify_bundle(workers=1)`` in full,
   and the signature part alone (every distinct instruction signature of the
   bundle verified with ``ledger.signing.verify_instructions``, as the
   verifier's workers do); hashing, decoding, schema, balance and replay
   checks are the difference. The CPU time of that run is printed too: on a
   shared machine it says more than the wall clock, and the load average is
   printed at the start and the end.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.common import machine_description
from ledger import bundle
from ledger.canonical import encode
from ledger.export import export_bundle
from ledger.journal import LogSettings
from ledger.note import NoteSigner
from ledger.records import (
    NewAccount,
    NewTransaction,
    Posting,
    RegisterSigningKey,
    Side,
    SignedInstruction,
)
from ledger.signing import SignedInstruction as SignatureItem
from ledger.signing import sign_instruction, verify_instructions
from ledger.store import Ledger
from ledger.verify import verify_bundle

ORIGIN = "bench.example/verify"
SIGNER = "BENCHBANK"
ACCOUNTS = 100
BATCH_SIZE = 100
KIB_PER_MIB = 1024


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def build_and_export(location: str, entries: int, directory: Path) -> tuple[int, float, float]:
    """Commit the accounts and ``entries`` batched transactions, then export the bundle.

    Returns (tree size, seconds to build, seconds to export).
    """
    participant_key = Ed25519PrivateKey.generate()
    settings = LogSettings(ORIGIN, NoteSigner(ORIGIN, Ed25519PrivateKey.generate()))
    accounts = [f"bench:{number:03d}:USD" for number in range(ACCOUNTS)]
    started = time.perf_counter()
    with Ledger(location, log=settings) as ledger:
        setup = ledger.execute(
            [
                RegisterSigningKey("bootstrap", SIGNER, public_bytes(participant_key)),
                *(NewAccount(account, SIGNER, "USD", Side.CREDIT) for account in accounts),
            ]
        )
        if not all(result.ok for result in setup):
            raise SystemExit(f"setup failed: {next(r for r in setup if not r.ok)}")
        number = 0
        for batch in range(0, entries, BATCH_SIZE):
            raw = encode(
                {
                    "instruction_id": f"batch-{batch}",
                    "instruction_type": "settlement.v1.TransactionBatchInstruction",
                    "linked": True,
                    "participant_id": SIGNER,
                }
            )
            shared = SignedInstruction(SIGNER, raw, sign_instruction(participant_key, raw))
            commands = []
            for _ in range(min(BATCH_SIZE, entries - batch)):
                debit = accounts[number % ACCOUNTS]
                credit = accounts[(number * 7 + 1) % ACCOUNTS]
                if credit == debit:
                    credit = accounts[(number + 1) % ACCOUNTS]
                amount = 1 + number % 100_000
                commands.append(
                    NewTransaction(
                        f"t-{number}",
                        (
                            Posting(debit, Side.DEBIT, amount, "USD"),
                            Posting(credit, Side.CREDIT, amount, "USD"),
                        ),
                        instruction=shared,
                    )
                )
                number += 1
            results = ledger.execute(commands, linked=True)
            if not all(result.ok for result in results):
                raise SystemExit(f"a batch failed: {next(r for r in results if not r.ok)}")
        built = time.perf_counter()
        size = export_bundle(ledger, directory)
    return size, built - started, time.perf_counter() - built


def distinct_signatures(directory: Path) -> list[SignatureItem]:
    """Every distinct (key, payload, signature) of the bundle's leaves, as the verifier
    sends them to its workers."""
    trust = bundle.parse_trust(bundle.read_json(directory / bundle.TRUST_FILE))
    seen: dict[tuple[bytes, bytes, bytes], None] = {}
    for index, leaf in enumerate(bundle.read_framed(directory / bundle.LEAVES_FILE)):
        instruction = json.loads(leaf)["instruction"]
        if instruction is None:
            continue
        key = next(
            key.public_key
            for key in trust.participant_keys
            if key.signer == instruction["signer"] and key.covers(index)
        )
        item = (
            key,
            base64.b64decode(instruction["payload"]),
            base64.b64decode(instruction["signature"]),
        )
        seen[item] = None
    return [SignatureItem(*item) for item in seen]


def run_subprocess_verifier(directory: Path, workers: int) -> tuple[float, float, int]:
    """``settlement audit verify`` in a child process: (seconds, peak RSS MiB, exit status)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "settlement.cli",
            "audit",
            "verify",
            str(directory),
            "--workers",
            str(workers),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if completed.returncode != 0:
        raise SystemExit(f"the verifier rejected the bundle:\n{completed.stdout[-2000:]}")
    return seconds, peak_kib / KIB_PER_MIB, completed.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--entries",
        type=int,
        default=100_000,
        help="batched transactions in the bundle (default 100,000)",
    )
    arguments = parser.parse_args()
    entries = arguments.entries
    workers = os.cpu_count() or 1
    print("verifier benchmark", json.dumps(machine_description()))
    # Wall-clock figures are only as good as the machine is idle: say how busy it was.
    print(f"  load average (1, 5, 15 min) at the start: {load_average()}")
    with tempfile.TemporaryDirectory() as scratch:
        location = str(Path(scratch) / "bench.db")
        directory = Path(scratch) / "bundle"
        size, build_seconds, export_seconds = build_and_export(location, entries, directory)
        bundle_mib = sum(path.stat().st_size for path in directory.iterdir()) / 2**20
        print(
            f"  ledger: {size:,} entries ({entries:,} transactions in batches of {BATCH_SIZE}, "
            f"one signature per batch) built in {build_seconds:.1f} s; exported in "
            f"{export_seconds:.1f} s, {bundle_mib:.1f} MiB"
        )

        command_seconds, peak_rss_mib, _ = run_subprocess_verifier(directory, workers)
        print(
            f"  settlement audit verify (subprocess, {workers} workers): {command_seconds:.2f} s "
            f"wall including interpreter start, peak RSS {peak_rss_mib:.1f} MiB"
        )

        started = time.perf_counter()
        report = verify_bundle(directory, workers=workers)
        parallel_seconds = time.perf_counter() - started
        if not report.ok:
            raise SystemExit(f"the verifier rejected the bundle: {report.findings[:3]}")
        rate = report.entries_checked / parallel_seconds
        print(
            f"  verify_bundle ({workers} workers): {report.entries_checked:,} entries in "
            f"{parallel_seconds:.2f} s: {rate:,.0f} entries/s "
            f"({report.signatures_checked:,} signed entries, "
            f"{report.signatures_verified:,} distinct signatures)"
        )

        started = time.perf_counter()
        cpu_started = time.process_time()
        inline = verify_bundle(directory, workers=1)
        inline_seconds = time.perf_counter() - started
        inline_cpu_seconds = time.process_time() - cpu_started
        items = distinct_signatures(directory)
        started = time.perf_counter()
        if not all(verify_instructions(items)):
            raise SystemExit("a signature of the bundle does not verify")
        signature_seconds = time.perf_counter() - started
        structure_seconds = max(0.0, inline_seconds - signature_seconds)
        per_signature_us = signature_seconds / max(1, len(items)) * 1e6
        inline_rate = inline.entries_checked / inline_seconds
        print(
            f"  one core: {inline_seconds:.2f} s in all ({inline_rate:,.0f} entries/s) = "
            f"hashing, decoding, structure and replay {structure_seconds:.2f} s "
            f"+ signatures {signature_seconds:.2f} s ({len(items):,} distinct, "
            f"{per_signature_us:.0f} µs each); CPU {inline_cpu_seconds:.2f} s, "
            f"{inline.entries_checked / inline_cpu_seconds:,.0f} entries per CPU second"
        )
    print(f"  load average (1, 5, 15 min) at the end: {load_average()}")
    figures = {
        "benchmark": "verify",
        "entries": report.entries_checked,
        "batch_size": BATCH_SIZE,
        "workers": workers,
        "verify_seconds": round(parallel_seconds, 3),
        "verify_entries_per_s": round(rate, 1),
        "command_seconds": round(command_seconds, 3),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "one_core_seconds": round(inline_seconds, 3),
        "one_core_structure_seconds": round(structure_seconds, 3),
        "one_core_signature_seconds": round(signature_seconds, 3),
        "one_core_cpu_seconds": round(inline_cpu_seconds, 3),
        "one_core_entries_per_cpu_s": round(inline.entries_checked / inline_cpu_seconds, 1),
        "distinct_signatures": len(items),
        "signature_us": round(per_signature_us, 1),
        "bundle_mib": round(bundle_mib, 1),
        "build_seconds": round(build_seconds, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
