"""Bounded load: 64 concurrent clients on a few hot accounts with limits, on loopback.

A ``settlement serve`` process (SQLite, then PostgreSQL) takes a fixed number
of requests from 64 concurrent ``grpc.aio`` clients, each with its own
mutual-TLS connection, within a time limit. Half the clients are bank-us,
half bank-pk; each bank has two hot accounts with a net debit cap
(``debit_limit_minor``), and its clients move random amounts between them:
mostly transfers, some two-phase (a reservation, then posted or voided), some
balance reads. Many transfers are refused by the caps.

Checked:

- every answer is OK or a precise refusal: FAILED_PRECONDITION
  ``exceeds_credits`` (a cap) or RESOURCE_EXHAUSTED (load shedding), with
  its ``settlement-error-bin`` detail; nothing else, never INTERNAL;
- no cap is ever exceeded: not in any balance read during the run, not at
  the end; and the final balances are exactly the sum of the acknowledged
  transfers (every OK applied once, every refusal not at all); the ledger's
  invariants hold;
- the server's memory stays flat: its RSS after a warm-up round and after
  the run differ by less than :data:`RSS_GROWTH_MAX_BYTES`.

Reported (terminal summary): requests, requests/s, p50/p99 latency, refusals,
server RSS at start and end. The short form runs in ``make test``
(64 x 20 requests, at most 60 s); ``SETTLEMENT_LOAD_REQUESTS`` (per client)
and ``SETTLEMENT_LOAD_TIME_LIMIT_SECONDS`` give the longer form that
``bench/load_bench.py`` runs for ``make bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from ledger.keys import load_private_key
from ledger.store import Ledger
from settlement.instructions import sign
from settlement.pki import DevPki
from settlement.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc
from tests.grpc.hub_client import (
    HubClient,
    create_account,
    register_demo_participants,
    transaction,
    transfer_postings,
)

CLIENTS = 64
REQUESTS_PER_CLIENT = int(os.environ.get("SETTLEMENT_LOAD_REQUESTS", "20"))
TIME_LIMIT_SECONDS = float(os.environ.get("SETTLEMENT_LOAD_TIME_LIMIT_SECONDS", "60"))
WARM_UP_REQUESTS_PER_CLIENT = 3
SEED = int(os.environ.get("SETTLEMENT_LOAD_SEED", "20261128"))
BANKS = ("bank-us", "bank-pk")
LIMIT_MINOR = 50_000
"""Net debit cap of every hot account: USD 500.00."""
AMOUNT_MAX_MINOR = 20_000
"""Transfers of up to USD 200.00: a few in a row in one direction hit the cap."""
CALL_TIMEOUT_SECONDS = 30.0
STARTUP_TIMEOUT_SECONDS = 60.0

RSS_GROWTH_MAX_BYTES = int(os.environ.get("SETTLEMENT_LOAD_RSS_GROWTH_MAX_BYTES", str(48 * 2**20)))
"""How much the server's RSS may grow from after the warm-up to the end of the run.

Generous for the short form: allocator arenas and caches settle within the
first few thousand requests. A leak of even a few kilobytes per request over
the long form (100,000+ requests) exceeds it."""

PRECISE_REFUSALS = {
    (grpc.StatusCode.FAILED_PRECONDITION, "exceeds_credits"),
    # Load shedding: the hub's own, or gRPC's concurrent-call limit (a message, no detail).
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "resource_exhausted"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
}


# -- the server ---------------------------------------------------------------------------


class ServeProcess:
    """``settlement serve`` in a process of its own, so its memory is its own."""

    def __init__(self, pki: DevPki, database: str, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "settlement.cli",
                "serve",
                "--dev-pki",
                str(pki.directory),
                "--database",
                database,
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "info",
                "--grace-period-seconds",
                "2",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.address = self._wait_for_listening()

    def _wait_for_listening(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if '"listening"' in line:
                    return f"127.0.0.1:{json.loads(line)['port']}"
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError("the server did not start")

    def rss_bytes(self) -> int:
        """Resident set size now (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(params=["sqlite", "postgres"])
def load_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "load.db")
    else:
        yield str(request.getfixturevalue("postgres_url"))


# -- the load -----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw."""

    latencies_s: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    moved: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(account, "debit" or "credit") -> acknowledged posted amount."""
    breaches: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HotAccounts:
    by_bank: dict[str, tuple[str, str]]


async def timed(tally: Tally, call: Any, request: Any, *, measure: bool) -> Any:
    """Send one request; record its latency and answer; the response, or None if refused."""
    started = time.perf_counter()
    try:
        response = await call(request, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        elapsed = time.perf_counter() - started
        metadata = dict(error.trailing_metadata() or ())
        raw = metadata.get("settlement-error-bin")
        code = common_pb2.Error.FromString(raw).code if raw is not None else ""
        if measure:
            tally.latencies_s.append(elapsed)
            tally.answers[f"{error.code().name} {code}"] += 1
        if (error.code(), code) not in PRECISE_REFUSALS or not error.details():
            tally.unexpected.append(f"{error.code().name} {code}: {error.details()}")
        return None
    if measure:
        tally.latencies_s.append(time.perf_counter() - started)
        tally.answers["OK"] += 1
    return response


async def client_loop(
    number: int,
    address: str,
    pki: DevPki,
    hot: HotAccounts,
    requests: int,
    tally: Tally,
    *,
    measure: bool,
) -> None:
    """One client: ``requests`` requests on its bank's two hot accounts."""
    bank = BANKS[number % len(BANKS)]
    key = load_private_key(pki.participant(bank).signing_private_key_path)
    generator = random.Random(SEED * 1000 + number + (0 if measure else 500))
    first, second = hot.by_bank[bank]
    async with grpc.aio.secure_channel(address, pki.channel_credentials(bank)) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        sent = 0
        while sent < requests:
            debit, credit = (first, second) if generator.random() < 0.5 else (second, first)
            amount = generator.randint(1, AMOUNT_MAX_MINOR)
            choice = generator.random()
            if choice < 0.1:
                balance = await timed(
                    tally,
                    stub.GetBalance,
                    ledger_pb2.GetBalanceRequest(account_id=debit),
                    measure=measure,
                )
                if balance is not None:
                    check_cap(tally, balance.balance)
                sent += 1
                continue
            if choice < 0.2 and sent + 2 <= requests:
                reservation = transaction(
                    bank,
                    transfer_postings(debit, credit, amount),
                    pending=True,
                    timeout_seconds=600,
                )
                reserved = await timed(
                    tally,
                    stub.CreateTransaction,
                    ledger_pb2.CreateTransactionRequest(instruction=sign(reservation, key)),
                    measure=measure,
                )
                sent += 1
                if reserved is None:
                    continue
                post = generator.random() < 0.5
                resolve: Any = (
                    ledger_pb2.PostPendingInstruction if post else ledger_pb2.VoidPendingInstruction
                )
                instruction = resolve(
                    instruction_id=f"{bank}:load:{number}:{sent}:{generator.random()}",
                    participant_id=bank,
                    instruction_type=resolve.DESCRIPTOR.full_name,
                    pending_transaction_id=reservation.instruction_id,
                )
                method = stub.PostPendingTransaction if post else stub.VoidPendingTransaction
                request_type: Any = (
                    ledger_pb2.PostPendingTransactionRequest
                    if post
                    else ledger_pb2.VoidPendingTransactionRequest
                )
                resolved = await timed(
                    tally, method, request_type(instruction=sign(instruction, key)), measure=measure
                )
                sent += 1
                if resolved is not None and post and measure:
                    tally.moved[(debit, "debit")] += amount
                    tally.moved[(credit, "credit")] += amount
                continue
            instruction = transaction(bank, transfer_postings(debit, credit, amount))
            done = await timed(
                tally,
                stub.CreateTransaction,
                ledger_pb2.CreateTransactionRequest(instruction=sign(instruction, key)),
                measure=measure,
            )
            sent += 1
            if done is not None and measure:
                tally.moved[(debit, "debit")] += amount
                tally.moved[(credit, "credit")] += amount


def check_cap(tally: Tally, balance: Any) -> None:
    net_debit = (
        balance.debits_posted_minor + balance.debits_pending_minor - balance.credits_posted_minor
    )
    if net_debit > LIMIT_MINOR:
        tally.breaches.append(f"{balance.account_id}: net debit {net_debit} > {LIMIT_MINOR}")


async def run_clients(
    address: str, pki: DevPki, hot: HotAccounts, requests: int, tally: Tally, *, measure: bool
) -> float:
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(
            *(
                client_loop(number, address, pki, hot, requests, tally, measure=measure)
                for number in range(CLIENTS)
            )
        ),
        timeout=TIME_LIMIT_SECONDS,
    )
    return time.perf_counter() - started


def set_up(address: str, pki: DevPki) -> tuple[HubClient, HotAccounts]:
    """Register the demo participants and open two capped hot accounts per bank."""
    client = HubClient(
        SimpleNamespace(address=address),  # type: ignore[arg-type]
        pki,
        keys={
            participant_id: load_private_key(participant.signing_private_key_path)
            for participant_id, participant in pki.participants.items()
        },
    )
    register_demo_participants(client)
    by_bank = {}
    for bank in BANKS:
        accounts = []
        for name in ("a", "b"):
            instruction = create_account(
                bank, instruction_id=f"load:{bank}:{name}", debit_limit_minor=LIMIT_MINOR
            )
            client.write(instruction)
            accounts.append(instruction.instruction_id)
        by_bank[bank] = (accounts[0], accounts[1])
    return client, HotAccounts(by_bank)


def percentile_ms(samples_s: list[float], percent: float) -> float:
    ordered = sorted(samples_s)
    rank = max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 1)


@pytest.mark.slow
def test_load(
    load_database: str, dev_pki: DevPki, tmp_path: Path, figures: dict[str, dict[str, Any]]
) -> None:
    server = ServeProcess(dev_pki, load_database, tmp_path / "serve.log")
    try:
        client, hot = set_up(server.address, dev_pki)
        client.close()
        warm_up = Tally()
        asyncio.run(
            run_clients(
                server.address, dev_pki, hot, WARM_UP_REQUESTS_PER_CLIENT, warm_up, measure=False
            )
        )
        assert warm_up.unexpected == [], warm_up.unexpected[:5]
        # The warm-up's transfers are in the balances: start from what the ledger says.
        start_balances = balances(load_database, hot)
        rss_start = server.rss_bytes()
        tally = Tally()
        elapsed = asyncio.run(
            run_clients(server.address, dev_pki, hot, REQUESTS_PER_CLIENT, tally, measure=True)
        )
        rss_end = server.rss_bytes()
    finally:
        server.stop()

    requests = len(tally.latencies_s)
    backend = "postgres" if "://" in load_database else "sqlite"
    report = {
        "clients": CLIENTS,
        "requests": requests,
        "seconds": round(elapsed, 2),
        "requests/s": round(requests / elapsed, 1),
        "p50 ms": percentile_ms(tally.latencies_s, 50),
        "p99 ms": percentile_ms(tally.latencies_s, 99),
        "answers": dict(tally.answers),
        "server RSS start MiB": round(rss_start / 2**20, 1),
        "server RSS end MiB": round(rss_end / 2**20, 1),
    }
    figures[f"load ({backend})"] = report
    print("load figures " + json.dumps({"backend": backend, **report}))

    assert requests == CLIENTS * REQUESTS_PER_CLIENT
    assert tally.unexpected == [], tally.unexpected[:5]
    assert tally.breaches == [], tally.breaches[:5]
    assert tally.answers["FAILED_PRECONDITION exceeds_credits"] > 0, "the caps were never reached"
    end_balances = balances(load_database, hot)
    for (account_id, side), amount in tally.moved.items():
        index = 0 if side == "debit" else 1
        assert end_balances[account_id][index] - start_balances[account_id][index] == amount, (
            account_id,
            side,
        )
    for account_id, (debits, credited, pending_debits, _) in end_balances.items():
        assert debits + pending_debits - credited <= LIMIT_MINOR, account_id
    assert rss_end - rss_start < RSS_GROWTH_MAX_BYTES, (
        f"server RSS grew from {rss_start / 2**20:.1f} MiB to {rss_end / 2**20:.1f} MiB"
    )


def balances(database: str, hot: HotAccounts) -> dict[str, tuple[int, int, int, int]]:
    """(debits posted, credits posted, debits pending, credits pending) of each hot account."""
    found = {}
    with Ledger(database, migrate=False) as ledger:
        ledger.check_invariants()
        for pair in hot.by_bank.values():
            for account_id in pair:
                balance = ledger.balance(account_id)
                found[account_id] = (
                    balance.debits_posted,
                    balance.credits_posted,
                    balance.debits_pending,
                    balance.credits_pending,
                )
    return found
