"""gRPC throughput and latency of the hub over mutual TLS on loopback (``make bench``).

The server is the real hub (``settlement.server.BackgroundServer``: the hub
and its services on their own event loop, in a thread of this process) on
127.0.0.1, port 0, with mutual TLS from a fresh development PKI. Its store is
SQLite (WAL, ``synchronous=FULL``) in a temporary directory, or with
``--database URL`` a fresh schema of that PostgreSQL database (dropped
afterwards). Every commit is durable before its caller is answered.

Setup, as the operator: register the two banks of the development PKI
(``bank-us``, ``bank-pk``); give each a USD settlement account
(``OpenSettlementAccount``, funded with ``Fund``) and a second USD account
of its own (``CreateAccount``). A participant may post only on its own
accounts, so every transaction below is a bank moving money from its
settlement account to its other account, signed by the bank with its own
key and sent over a channel presenting the bank's own client certificate:
the path of a bank's instruction, authorisation included. Half the clients
are bank-us, half bank-pk.

Then, timed one after the other:

(a) single: ``--clients`` concurrent clients (default 64) each send their
    share of ``--count`` (default 6,400) ``CreateTransaction`` calls one
    after the other; latency is per call;
(b) batch: ``--batches`` (default 20) ``CreateTransactionBatch`` calls of
    ``--batch-size`` (default 1,000) unlinked transactions, from one client
    per bank; latency is per call;
(c) read: ``--clients`` concurrent clients each send their share of
    ``--reads`` (default 6,400) ``GetBalance`` calls on their bank's accounts.

Every instruction is built, encoded and signed before the timed section
(signing is the client's cost, not the server's), and sent as the serialized
request. The clients are ``grpc.aio`` stubs in ONE separate process (so that
the client's Python does not share the server's interpreter lock), with one
channel, that is one TLS connection, per client (``--shared-channels``: one
per bank). The figures include the client process's own scheduling delays.
After the timed sections the balances are read back and must equal the sums
sent.

``--profile single|batch|read`` runs only the setup and that section, with
cProfile in every thread in which the server runs Python (the event loop and
the worker threads), and prints the top functions; those figures are slower
than unprofiled ones.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import cProfile
import hashlib
import json
import multiprocessing
import os
import pstats
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from bench.common import machine_description, postgres_schema, summary_ms
from ledger.keys import load_private_key, load_public_key, public_key_bytes
from settlement.config import ServerSettings
from settlement.instructions import sign
from settlement.logs import configure_logging
from settlement.pki import DevPki, create_dev_pki, load_dev_pki
from settlement.server import BackgroundServer
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    participant_pb2,
    participant_pb2_grpc,
)

ORIGIN = "bench.settlement.example/log"
OPERATOR = "operator"
BANKS = ("bank-us", "bank-pk")
CURRENCY = "USD"
FUNDING_MINOR = 10**15
"""Far more than every transaction of a run moves: no transfer is refused for funds."""

AMOUNT_MINOR_MAX = 100
SETUP_TIMEOUT_SECONDS = 60
CALL_TIMEOUT_SECONDS = 300
"""Per call of the timed sections: generous, a slow call is a figure, not a failure."""

SINGLE_METHOD = "/settlement.v1.LedgerService/CreateTransaction"
BATCH_METHOD = "/settlement.v1.LedgerService/CreateTransactionBatch"
READ_METHOD = "/settlement.v1.LedgerService/GetBalance"

PROFILE_ROWS = 30


def type_name(message_type: type[Message]) -> str:
    return str(message_type.DESCRIPTOR.full_name)


def settlement_account(bank: str) -> str:
    return f"settlement:{bank}:{CURRENCY}"


def operating_account(bank: str) -> str:
    return f"operating:{bank}:{CURRENCY}"


# -- the server ------------------------------------------------------------------------------


def load_average() -> str:
    """The machine is shared: figures mean little without its load beside them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def server_settings(pki: DevPki, database: str, log_level: str) -> ServerSettings:
    return ServerSettings(
        listen_address="127.0.0.1:0",
        tls_directory=pki.directory,
        database=database,
        origin=ORIGIN,
        log_key_path=pki.log_private_key_path,
        operator_id=OPERATOR,
        operator_common_name=pki.participant(OPERATOR).certificate_common_name,
        operator_public_key_path=pki.participant(OPERATOR).signing_public_key_path,
        grace_period_seconds=5.0,
        log_level=log_level,
    )


def start_server(settings: ServerSettings) -> BackgroundServer:
    hub_settings = settings.hub_settings()

    async def open_real_hub() -> Any:
        from settlement.hub import open_hub  # noqa: PLC0415 - on the server's loop

        return await open_hub(hub_settings)

    server = BackgroundServer(settings, open_real_hub)
    server.start()
    return server


@contextlib.contextmanager
def database_location(url: str | None, directory: Path) -> Iterator[tuple[str, str]]:
    """(location, label): SQLite in ``directory``, or a fresh schema of PostgreSQL ``url``."""
    if url is None:
        yield str(directory / "hub.db"), "sqlite"
    elif url.startswith("postgresql"):
        with postgres_schema(url) as location:
            yield location, "postgresql"
    else:
        yield url, "sqlite"


class ThreadProfiles:
    """cProfile (CPU time) in every thread started after :meth:`install`, from :meth:`start` on.

    ``threading.setprofile`` gives each new thread (the server's event loop,
    the worker threads of ``asyncio.to_thread``) a hook; the first call the
    thread makes after :meth:`start` replaces the hook with a cProfile
    profiler of its own. Until then the hook only returns (setup is slower).
    """

    def __init__(self) -> None:
        self.active = False
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        threading.setprofile(self._hook)

    def start(self) -> None:
        self.active = True

    def uninstall(self) -> None:
        threading.setprofile(None)

    def _hook(self, frame: FrameType, event: str, argument: Any) -> None:
        if not self.active:
            return
        # CPU time of the thread, not the wall clock: time spent waiting for the
        # interpreter lock or the disk would otherwise show as the cost of the
        # C call that released the lock (sqlite3's execute, fetchone).
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        with self._lock:
            self.profiles.append(profile)

    def print_top(self, rows: int) -> None:
        if not self.profiles:
            print("  profile: no thread ran Python while profiling")
            return
        stats = pstats.Stats(self.profiles[0], stream=sys.stdout)
        for profile in self.profiles[1:]:
            stats.add(profile)
        print(f"  profile: {len(self.profiles)} server threads, CPU time; top {rows} by own time")
        stats.sort_stats("tottime").print_stats(rows)
        print(f"  profile: top {rows} by cumulative time")
        stats.sort_stats("cumulative").print_stats(rows)


# -- setup, as the operator ------------------------------------------------------------------


def register_banks(address: str, pki: DevPki, keys: dict[str, Ed25519PrivateKey]) -> None:
    """Register both banks, open and fund their accounts (blocking calls, not timed)."""
    with grpc.secure_channel(address, pki.channel_credentials(OPERATOR)) as channel:
        participants = participant_pb2_grpc.ParticipantServiceStub(channel)
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        operator_key = keys[OPERATOR]
        for bank in BANKS:
            participant = pki.participant(bank)
            registration = participant_pb2.RegisterParticipantInstruction(
                instruction_id=f"{OPERATOR}:register:{bank}",
                participant_id=OPERATOR,
                instruction_type=type_name(participant_pb2.RegisterParticipantInstruction),
                target_participant_id=bank,
                legal_name=participant.legal_name,
                role=participant_pb2.Role.Value(f"ROLE_{participant.role.value.upper()}"),
                country=participant.country,
                bic=participant.bic,
                lei=participant.lei,
                aba_routing_number=participant.aba_routing_number,
                iban_bank_code=participant.iban_bank_code,
                certificate_common_name=participant.certificate_common_name,
                signing_public_key=public_key_bytes(
                    load_public_key(participant.signing_public_key_path)
                ),
            )
            participants.RegisterParticipant(
                participant_pb2.RegisterParticipantRequest(
                    instruction=sign(registration, operator_key)
                ),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
            opening = participant_pb2.OpenSettlementAccountInstruction(
                instruction_id=settlement_account(bank),
                participant_id=OPERATOR,
                instruction_type=type_name(participant_pb2.OpenSettlementAccountInstruction),
                target_participant_id=bank,
                currency=CURRENCY,
            )
            participants.OpenSettlementAccount(
                participant_pb2.OpenSettlementAccountRequest(
                    instruction=sign(opening, operator_key)
                ),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
            funding = participant_pb2.FundInstruction(
                instruction_id=f"{OPERATOR}:fund:{bank}:{uuid.uuid4()}",
                participant_id=OPERATOR,
                instruction_type=type_name(participant_pb2.FundInstruction),
                account_id=settlement_account(bank),
                amount_minor=FUNDING_MINOR,
                currency=CURRENCY,
                reference="benchmark prefunding",
            )
            participants.Fund(
                participant_pb2.FundRequest(instruction=sign(funding, operator_key)),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
            account = ledger_pb2.CreateAccountInstruction(
                instruction_id=operating_account(bank),
                participant_id=OPERATOR,
                instruction_type=type_name(ledger_pb2.CreateAccountInstruction),
                owner_participant_id=bank,
                currency=CURRENCY,
                normal_side=ledger_pb2.SIDE_CREDIT,
            )
            ledger.CreateAccount(
                ledger_pb2.CreateAccountRequest(instruction=sign(account, operator_key)),
                timeout=SETUP_TIMEOUT_SECONDS,
            )


def posted(address: str, pki: DevPki, account_id: str) -> tuple[int, int]:
    """(debits posted, credits posted) of an account, read back as the operator."""
    with grpc.secure_channel(address, pki.channel_credentials(OPERATOR)) as channel:
        balance = (
            ledger_pb2_grpc.LedgerServiceStub(channel)
            .GetBalance(
                ledger_pb2.GetBalanceRequest(account_id=account_id),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
            .balance
        )
    return balance.debits_posted_minor, balance.credits_posted_minor


# -- requests, built and signed before the timed sections --------------------------------------


class Transfers:
    """Signed transfers of each bank from its settlement account to its other account."""

    def __init__(self, keys: dict[str, Ed25519PrivateKey]) -> None:
        self.keys = keys
        self.moved_minor = dict.fromkeys(BANKS, 0)
        self._number = 0

    def signed(self, bank: str) -> common_pb2.SignedInstruction:
        self._number += 1
        amount_minor = 1 + self._number % AMOUNT_MINOR_MAX
        self.moved_minor[bank] += amount_minor
        instruction = ledger_pb2.TransactionInstruction(
            instruction_id=f"{bank}:{uuid.uuid4()}",
            participant_id=bank,
            instruction_type=type_name(ledger_pb2.TransactionInstruction),
            postings=[
                ledger_pb2.Posting(
                    account_id=settlement_account(bank),
                    side=ledger_pb2.SIDE_DEBIT,
                    amount_minor=amount_minor,
                    currency=CURRENCY,
                ),
                ledger_pb2.Posting(
                    account_id=operating_account(bank),
                    side=ledger_pb2.SIDE_CREDIT,
                    amount_minor=amount_minor,
                    currency=CURRENCY,
                ),
            ],
            code="BENCH",
        )
        return sign(instruction, self.keys[bank])

    def single(self, bank: str) -> bytes:
        return ledger_pb2.CreateTransactionRequest(
            instruction=self.signed(bank)
        ).SerializeToString()

    def batch(self, bank: str, size: int) -> bytes:
        items = [self.signed(bank) for _ in range(size)]
        batch = ledger_pb2.TransactionBatchInstruction(
            instruction_id=f"{bank}:batch:{uuid.uuid4()}",
            participant_id=bank,
            instruction_type=type_name(ledger_pb2.TransactionBatchInstruction),
            linked=False,
            item_sha256=[hashlib.sha256(item.instruction).digest() for item in items],
        )
        return ledger_pb2.CreateTransactionBatchRequest(
            instruction=sign(batch, self.keys[bank]), items=items
        ).SerializeToString()


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one."""
    return [total // parts + (1 if part < total % parts else 0) for part in range(parts)]


@dataclass(frozen=True)
class Job:
    """One client: whose certificate it presents and the requests it sends, in order."""

    participant_id: str
    requests: list[bytes]


@dataclass(frozen=True)
class Section:
    """A timed section, sent to the client process."""

    name: str
    method: str
    address: str
    pki_directory: str
    jobs: list[Job]
    shared_channels: bool
    transactions_per_request: int


@dataclass(frozen=True)
class Outcome:
    """What the client process measured."""

    latencies_s: list[float]
    elapsed_s: float
    client_cpu_s: float
    failures: int
    first_failure: str


def single_section(
    transfers: Transfers, address: str, pki: DevPki, arguments: argparse.Namespace
) -> Section:
    jobs = [
        Job(BANKS[client % 2], [transfers.single(BANKS[client % 2]) for _ in range(count)])
        for client, count in enumerate(shares(arguments.count, arguments.clients))
    ]
    return Section(
        "single", SINGLE_METHOD, address, str(pki.directory), jobs, arguments.shared_channels, 1
    )


def batch_section(
    transfers: Transfers, address: str, pki: DevPki, arguments: argparse.Namespace
) -> Section:
    jobs = [
        Job(bank, [transfers.batch(bank, arguments.batch_size) for _ in range(count)])
        for bank, count in zip(BANKS, shares(arguments.batches, len(BANKS)), strict=True)
    ]
    return Section(
        "batch",
        BATCH_METHOD,
        address,
        str(pki.directory),
        jobs,
        arguments.shared_channels,
        arguments.batch_size,
    )


def read_section(address: str, pki: DevPki, arguments: argparse.Namespace) -> Section:
    jobs = []
    for client, count in enumerate(shares(arguments.reads, arguments.clients)):
        bank = BANKS[client % 2]
        accounts = (settlement_account(bank), operating_account(bank))
        jobs.append(
            Job(
                bank,
                [
                    ledger_pb2.GetBalanceRequest(
                        account_id=accounts[number % 2]
                    ).SerializeToString()
                    for number in range(count)
                ],
            )
        )
    return Section(
        "read", READ_METHOD, address, str(pki.directory), jobs, arguments.shared_channels, 0
    )


# -- the client process ----------------------------------------------------------------------


def run_section(section: Section) -> Outcome:
    """Entry point of the client process: send every job's requests, timed."""
    return asyncio.run(_run_section(section))


def _failure_of(section: Section, response: bytes) -> str:
    """Why a successful call did not do what it was asked, or ""."""
    if section.name == "single":
        single = ledger_pb2.CreateTransactionResponse.FromString(response)
        if single.result.status != common_pb2.COMMIT_STATUS_CREATED:
            return f"status {single.result.status}: {single.result.error.code}"
    elif section.name == "batch":
        batch = ledger_pb2.CreateTransactionBatchResponse.FromString(response)
        for result in batch.results:
            if result.status != common_pb2.COMMIT_STATUS_CREATED:
                return f"item status {result.status}: {result.error.code}"
        if len(batch.results) != section.transactions_per_request:
            return f"{len(batch.results)} results for {section.transactions_per_request} items"
    return ""


async def _run_section(section: Section) -> Outcome:
    pki = load_dev_pki(Path(section.pki_directory))
    # One TLS connection per channel: without a local subchannel pool, channels
    # with the same target and credentials may share one connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels: dict[Any, grpc.aio.Channel] = {}
    for number, job in enumerate(section.jobs):
        key = job.participant_id if section.shared_channels else number
        if key not in channels:
            channels[key] = grpc.aio.secure_channel(
                section.address, pki.channel_credentials(job.participant_id), options=options
            )
    for channel in channels.values():
        await asyncio.wait_for(channel.channel_ready(), SETUP_TIMEOUT_SECONDS)
    latencies_s: list[float] = []
    failures: list[str] = []
    start = asyncio.Event()

    async def client(number: int, job: Job) -> None:
        key = job.participant_id if section.shared_channels else number
        # Serialized requests go out as they are; responses are parsed by _failure_of.
        call: Any = channels[key].unary_unary(section.method)
        await start.wait()
        for request in job.requests:
            sent = time.perf_counter()
            try:
                response = await call(request, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                latencies_s.append(time.perf_counter() - sent)
                failures.append(f"{error.code().name}: {error.details()}")
                continue
            latencies_s.append(time.perf_counter() - sent)
            failure = _failure_of(section, response)
            if failure:
                failures.append(failure)

    tasks = [asyncio.create_task(client(number, job)) for number, job in enumerate(section.jobs)]
    await asyncio.sleep(0)
    began = time.perf_counter()
    cpu_began = time.process_time()
    start.set()
    await asyncio.gather(*tasks)
    elapsed_s = time.perf_counter() - began
    client_cpu_s = time.process_time() - cpu_began
    for channel in channels.values():
        await channel.close()
    return Outcome(
        latencies_s, elapsed_s, client_cpu_s, len(failures), failures[0] if failures else ""
    )


# -- the run -----------------------------------------------------------------------------------


def report(section: Section, outcome: Outcome, server_cpu_s: float) -> dict[str, float]:
    if outcome.failures:
        raise SystemExit(
            f"{section.name}: {outcome.failures} calls failed, the first: {outcome.first_failure}"
        )
    calls = len(outcome.latencies_s)
    operations = calls * max(1, section.transactions_per_request)
    per_second = operations / outcome.elapsed_s
    server_cpu_ms = server_cpu_s * 1000 / operations
    latency = summary_ms(outcome.latencies_s)
    unit = "reads/s" if section.name == "read" else "tx/s"
    what = {
        "single": f"{calls:,} CreateTransaction",
        "batch": f"{calls:,} CreateTransactionBatch of {section.transactions_per_request:,} "
        f"({calls * section.transactions_per_request:,} transactions)",
        "read": f"{calls:,} GetBalance",
    }[section.name]
    print(
        f"  {section.name}: {what} from {len(section.jobs)} clients in "
        f"{outcome.elapsed_s:.2f} s: {per_second:,.0f} {unit}; latency per call "
        f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, p999 {latency['p999_ms']} ms"
    )
    # Which side was busy: a server near one core is bound by its interpreter lock.
    # CPU per operation holds steadier than rates on a shared machine.
    print(
        f"    CPU: server process {server_cpu_s:.1f} s "
        f"({server_cpu_s / outcome.elapsed_s:.2f} cores, {server_cpu_ms:.2f} ms per "
        f"{'read' if section.name == 'read' else 'transaction'}), client process "
        f"{outcome.client_cpu_s:.1f} s ({outcome.client_cpu_s / outcome.elapsed_s:.2f} cores)"
    )
    key = "read_rps" if section.name == "read" else f"{section.name}_tps"
    return {
        key: round(per_second, 1),
        f"{section.name}_p50_ms": latency["p50_ms"],
        f"{section.name}_p99_ms": latency["p99_ms"],
        f"{section.name}_p999_ms": latency["p999_ms"],
        f"{section.name}_server_cpu_ms": round(server_cpu_ms, 3),
    }


def run(arguments: argparse.Namespace, pki: DevPki, location: str) -> dict[str, object]:
    keys = {
        participant_id: load_private_key(participant.signing_private_key_path)
        for participant_id, participant in pki.participants.items()
    }
    settings = server_settings(pki, location, arguments.log_level)
    configure_logging(arguments.log_level)
    profiles = ThreadProfiles() if arguments.profile else None
    spawn = multiprocessing.get_context("spawn")
    clients = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    # Start the client process (its imports) and the pool's own thread before
    # anything is profiled or timed.
    clients.submit(shares, 1, 1).result()
    if profiles is not None:
        profiles.install()
    server = start_server(settings)
    figures: dict[str, object] = {}
    try:
        register_banks(server.address, pki, keys)
        transfers = Transfers(keys)
        wanted = [arguments.profile] if arguments.profile else ["single", "batch", "read"]
        print(
            f"  signing {arguments.count:,} single and "
            f"{arguments.batches * arguments.batch_size:,} batched transactions ahead"
            if "single" in wanted and "batch" in wanted
            else "  signing ahead"
        )
        sections: list[Section] = []
        if "single" in wanted:
            sections.append(single_section(transfers, server.address, pki, arguments))
        if "batch" in wanted:
            sections.append(batch_section(transfers, server.address, pki, arguments))
        if "read" in wanted:
            sections.append(read_section(server.address, pki, arguments))
        for section in sections:
            if profiles is not None:
                profiles.start()
            cpu_began = time.process_time()
            outcome = clients.submit(run_section, section).result()
            figures |= report(section, outcome, time.process_time() - cpu_began)
        for bank in BANKS:
            expected = transfers.moved_minor[bank]
            debited, _ = posted(server.address, pki, settlement_account(bank))
            _, credited = posted(server.address, pki, operating_account(bank))
            if (debited, credited) != (expected, expected):
                raise SystemExit(
                    f"{bank}: expected {expected} moved, got debits {debited}, credits {credited}"
                )
        print(f"  read back: both banks' balances equal the sums sent ({transfers.moved_minor})")
    finally:
        server.stop()
        clients.shutdown()
        if profiles is not None:
            profiles.uninstall()
    if profiles is not None:
        profiles.print_top(PROFILE_ROWS)
    return figures


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a PostgreSQL URL (a fresh schema is created in it and dropped); "
        "default: SQLite in a temporary directory",
    )
    parser.add_argument("--count", type=positive, default=6400, help="single transactions")
    parser.add_argument("--clients", type=positive, default=64, help="concurrent clients")
    parser.add_argument("--batches", type=positive, default=20)
    parser.add_argument("--batch-size", type=positive, default=1000)
    parser.add_argument("--reads", type=positive, default=6400, help="GetBalance calls")
    parser.add_argument(
        "--shared-channels",
        action="store_true",
        help="one channel per bank shared by its clients (default: one channel per client)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="the server's log level (default warning: 'info' logs one line per call)",
    )
    parser.add_argument(
        "--profile",
        choices=("single", "batch", "read"),
        help="run only this section, with cProfile in the server's threads",
    )
    arguments = parser.parse_args(argv)
    print("grpc benchmark", json.dumps(machine_description()))
    print(f"  load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="grpc-bench-") as directory:
        pki = create_dev_pki(Path(directory) / "pki")
        with database_location(arguments.database, Path(directory)) as (location, label):
            print(
                f"  {label}; {arguments.clients} clients in one process, "
                f"{'one channel per bank' if arguments.shared_channels else 'one channel each'}; "
                f"server log level {arguments.log_level}"
                + (f"; PROFILED ({arguments.profile} only)" if arguments.profile else "")
            )
            figures = run(arguments, pki, location)
    print(f"  load average after: {load_average()}")
    print(
        json.dumps(
            {
                "benchmark": "grpc",
                "database": label,
                "clients": arguments.clients,
                "channels": len(BANKS) if arguments.shared_channels else arguments.clients,
                "profiled": bool(arguments.profile),
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
