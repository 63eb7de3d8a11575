"""Ledger throughput and latency, on SQLite and PostgreSQL (``make bench``).

Setup: 1,000 accounts (500 in USD, 500 in PKR). Then (a) two-posting
transactions in batches of 1,000, each batch one ``execute`` call and one
durable database transaction; (b) single transactions, each in its own
``execute`` call and database transaction. Latency is per call. Commits are
durable in every figure: SQLite WAL with ``synchronous=FULL``, PostgreSQL with
``synchronous_commit=on``.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_description, postgres_schema, postgres_url, summary_ms
from ledger.records import NewAccount, NewTransaction, Posting, Side
from ledger.store import Ledger

CURRENCIES = ("USD", "PKR")


def make_accounts(count: int) -> list[NewAccount]:
    return [
        NewAccount(
            f"bench:{number:04d}:{CURRENCIES[number % 2]}",
            f"owner-{number:04d}",
            CURRENCIES[number % 2],
            Side.CREDIT,
        )
        for number in range(count)
    ]


def make_transactions(
    generator: random.Random, accounts: list[NewAccount], count: int, prefix: str
) -> list[NewTransaction]:
    by_currency = {code: [a.id for a in accounts if a.currency == code] for code in CURRENCIES}
    result = []
    for number in range(count):
        code = CURRENCIES[number % 2]
        debit, credit = generator.sample(by_currency[code], 2)
        amount = generator.randint(1, 1_000_000)
        result.append(
            NewTransaction(
                f"{prefix}-{number}",
                (
                    Posting(debit, Side.DEBIT, amount, code),
                    Posting(credit, Side.CREDIT, amount, code),
                ),
                code="bench",
            )
        )
    return result


def run(location: str, label: str, batched: int, batch_size: int, singles: int) -> dict[str, float]:
    generator = random.Random(20261128)
    with Ledger(location) as ledger:
        accounts = make_accounts(1000)
        ledger.execute(accounts)
        transactions = make_transactions(generator, accounts, batched, "batched")
        latencies: list[float] = []
        started = time.perf_counter()
        for start in range(0, batched, batch_size):
            call = time.perf_counter()
            results = ledger.execute(transactions[start : start + batch_size])
            latencies.append(time.perf_counter() - call)
            if not all(result.ok for result in results):
                raise SystemExit(f"{label}: a batched transaction failed: {results[0]}")
        batched_seconds = time.perf_counter() - started
        batched_stats = summary_ms(latencies)

        single_transactions = make_transactions(generator, accounts, singles, "single")
        single_latencies: list[float] = []
        started = time.perf_counter()
        for transaction in single_transactions:
            call = time.perf_counter()
            ledger.submit(transaction)
            single_latencies.append(time.perf_counter() - call)
        single_seconds = time.perf_counter() - started
        single_stats = summary_ms(single_latencies)
        ledger.check_invariants()
    figures = {
        f"{label}_batched_tps": round(batched / batched_seconds, 1),
        f"{label}_batched_p50_ms": batched_stats["p50_ms"],
        f"{label}_batched_p99_ms": batched_stats["p99_ms"],
        f"{label}_single_tps": round(singles / single_seconds, 1),
        f"{label}_single_p50_ms": single_stats["p50_ms"],
        f"{label}_single_p99_ms": single_stats["p99_ms"],
    }
    print(
        f"  batched: {batched:,} transactions in batches of {batch_size:,}: "
        f"{figures[f'{label}_batched_tps']:,.0f} tx/s, per call p50 {batched_stats['p50_ms']} ms, "
        f"p99 {batched_stats['p99_ms']} ms"
    )
    print(
        f"  single:  {singles:,} transactions, one commit each: "
        f"{figures[f'{label}_single_tps']:,.0f} tx/s, p50 {single_stats['p50_ms']} ms, "
        f"p99 {single_stats['p99_ms']} ms"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transactions",
        type=int,
        default=100_000,
        help="batched transactions per backend (default 100,000)",
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--singles", type=int, default=5000, help="single transactions per backend (default 5,000)"
    )
    arguments = parser.parse_args()
    print("ledger benchmark", json.dumps(machine_description()))
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as directory:
        print("SQLite (WAL, synchronous=FULL)")
        figures |= run(
            str(Path(directory) / "bench.db"),
            "sqlite",
            arguments.transactions,
            arguments.batch_size,
            arguments.singles,
        )
    base = postgres_url()
    if base is None:
        print("PostgreSQL: not reachable, figures are null")
        for key in (
            "batched_tps",
            "batched_p50_ms",
            "batched_p99_ms",
            "single_tps",
            "single_p50_ms",
            "single_p99_ms",
        ):
            figures[f"postgres_{key}"] = None
    else:
        print("PostgreSQL")
        with postgres_schema(base) as url:
            figures |= run(
                url, "postgres", arguments.transactions, arguments.batch_size, arguments.singles
            )
    print(json.dumps({"benchmark": "ledger", **figures}))


if __name__ == "__main__":
    main()
