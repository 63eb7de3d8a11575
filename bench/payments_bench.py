"""End-to-end cross-border payments through gRPC over mutual TLS (``make bench``).

The server is the real hub (``settlement.server.BackgroundServer``: the hub
and its services on their own event loop, in a thread of this process) on
127.0.0.1, port 0, with mutual TLS from a fresh development PKI. Its store is
SQLite (WAL, ``synchronous=FULL``) in a temporary directory, or with
``--database URL`` a fresh schema of that PostgreSQL database (dropped
afterwards). Every commit is durable before its caller is answered.

Setup, as the operator: register bank-us, bank-pk and fx-provider; open and
fund bank-us's USD, bank-pk's PKR and USD, and the FX provider's USD and PKR
settlement accounts. The FX provider publishes a USD->PKR and a PKR->USD rate
(with a fee). Then ``--clients`` concurrent clients (default 32; even ones
bank-us paying USD to PKR, odd ones bank-pk paying PKR to USD) each run their
share of ``--payments`` (default 3,200) payments one after the other. One
payment, end to end, is two calls: ``RequestQuote`` (send amount fixed), then
``SubmitPayment`` executing that quote, answered ACSC: parties validated,
debtor, creditor and ultimate creditor names screened against OFAC's SDN
list (~17,000 names, the vendored file), reporting thresholds applied, funds
reserved and both legs settled (payment versus payment) in one linked ledger
commit with the payment's status events. Names are drawn from a pool of
ordinary company names, none of them a hit, each unique (a screening cache
could not help).

Every instruction is built, encoded and signed before the timed section
(the quote id is the client's own instruction id, so both can be signed
ahead). The clients are ``grpc.aio`` stubs in ONE separate process, one
channel (one TLS connection) each. Latency is per payment (both calls) and
per call. After the run, the balances of the five accounts involved are read
back and must equal the sums the quotes promised.

The last line printed is one JSON object with the figures, including
``payments_per_s`` and ``p99_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from bench.common import machine_description, summary_ms
from bench.grpc_bench import (
    ThreadProfiles,
    database_location,
    load_average,
    positive,
    shares,
    start_server,
)
from bench.grpc_bench import server_settings as grpc_server_settings
from ledger.keys import load_private_key, load_public_key, public_key_bytes
from settlement.instructions import sign
from settlement.logs import configure_logging
from settlement.payments.fx import convert_send
from settlement.pki import DevPki, aba_with_check_digit, create_dev_pki, load_dev_pki
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    participant_pb2,
    participant_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
)

OPERATOR = "operator"
US, PK, FX = "bank-us", "bank-pk", "fx-provider"
RATES = {("USD", "PKR"): "278.4500", ("PKR", "USD"): "0.0035900"}
FEE_MINOR = {"USD": 2_500, "PKR": 70_000}
"""A flat fee per quote in the source currency: USD 25.00, PKR 700.00."""
FUNDING_MINOR = 10**15
"""Plenty: no payment of the run is short of funds or liquidity."""

SETUP_TIMEOUT_SECONDS = 60
CALL_TIMEOUT_SECONDS = 300
PROFILE_ROWS = 40
QUOTE_METHOD = "/settlement.v1.PaymentService/RequestQuote"
SUBMIT_METHOD = "/settlement.v1.PaymentService/SubmitPayment"

COMPANY_WORDS = (
    "Atlas", "Beacon", "Cedar", "Delta", "Everest", "Falcon", "Granite", "Harbor", "Indus",
    "Juniper", "Kestrel", "Lotus", "Meridian", "Nimbus", "Orchid", "Pioneer", "Quartz",
    "Raven", "Summit", "Tundra", "Unity", "Vertex", "Willow", "Zephyr",
)  # fmt: skip
COMPANY_KINDS = ("Textiles", "Trading", "Logistics", "Foods", "Engineering", "Mining Supplies")

PK_IBAN = "PK36SCBL0000001123456702"
US_ACCOUNT = "000123456789"
US_ROUTING_NUMBER = aba_with_check_digit("02100002")


def type_name(message_type: type[Message]) -> str:
    return str(message_type.DESCRIPTOR.full_name)


def settlement_account(owner: str, currency: str) -> str:
    return f"settlement:{owner}:{currency}"


def company(number: int) -> str:
    first = COMPANY_WORDS[number % len(COMPANY_WORDS)]
    second = COMPANY_WORDS[(number // len(COMPANY_WORDS)) % len(COMPANY_WORDS)]
    kind = COMPANY_KINDS[number % len(COMPANY_KINDS)]
    return f"{first} {second} {kind} {number}"


# -- setup, as the operator and the FX provider ----------------------------------------------


def set_up(address: str, pki: DevPki, keys: dict[str, Ed25519PrivateKey]) -> None:
    """Register, open, fund; publish the rates (blocking calls, not timed)."""
    with grpc.secure_channel(address, pki.channel_credentials(OPERATOR)) as channel:
        participants = participant_pb2_grpc.ParticipantServiceStub(channel)
        for participant_id in (US, PK, FX):
            participant = pki.participant(participant_id)
            registration = participant_pb2.RegisterParticipantInstruction(
                instruction_id=f"{OPERATOR}:register:{participant_id}",
                participant_id=OPERATOR,
                instruction_type=type_name(participant_pb2.RegisterParticipantInstruction),
                target_participant_id=participant_id,
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
                    instruction=sign(registration, keys[OPERATOR])
                ),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
        for owner, currency in ((US, "USD"), (PK, "PKR"), (PK, "USD"), (FX, "USD"), (FX, "PKR")):
            opening = participant_pb2.OpenSettlementAccountInstruction(
                instruction_id=settlement_account(owner, currency),
                participant_id=OPERATOR,
                instruction_type=type_name(participant_pb2.OpenSettlementAccountInstruction),
                target_participant_id=owner,
                currency=currency,
            )
            participants.OpenSettlementAccount(
                participant_pb2.OpenSettlementAccountRequest(
                    instruction=sign(opening, keys[OPERATOR])
                ),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
            funding = participant_pb2.FundInstruction(
                instruction_id=f"{OPERATOR}:fund:{owner}:{currency}",
                participant_id=OPERATOR,
                instruction_type=type_name(participant_pb2.FundInstruction),
                account_id=settlement_account(owner, currency),
                amount_minor=FUNDING_MINOR,
                currency=currency,
                reference="benchmark prefunding",
            )
            participants.Fund(
                participant_pb2.FundRequest(instruction=sign(funding, keys[OPERATOR])),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
    with grpc.secure_channel(address, pki.channel_credentials(FX)) as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)
        for (source, target), rate in RATES.items():
            publication = payment_pb2.PublishRateInstruction(
                instruction_id=f"{FX}:rate:{source}{target}:{uuid.uuid4()}",
                participant_id=FX,
                instruction_type=type_name(payment_pb2.PublishRateInstruction),
                source_currency=source,
                target_currency=target,
                rate=rate,
                valid_seconds=86_400,
                fee_minor=FEE_MINOR[source],
            )
            payments.PublishRate(
                payment_pb2.PublishRateRequest(instruction=sign(publication, keys[FX])),
                timeout=SETUP_TIMEOUT_SECONDS,
            )


def balance(address: str, pki: DevPki, account_id: str) -> tuple[int, int, int, int]:
    with grpc.secure_channel(address, pki.channel_credentials(OPERATOR)) as channel:
        found = (
            ledger_pb2_grpc.LedgerServiceStub(channel)
            .GetBalance(
                ledger_pb2.GetBalanceRequest(account_id=account_id),
                timeout=SETUP_TIMEOUT_SECONDS,
            )
            .balance
        )
    return (
        found.debits_posted_minor,
        found.credits_posted_minor,
        found.debits_pending_minor,
        found.credits_pending_minor,
    )


# -- the payments, signed ahead ---------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    """One payment's two serialized, signed requests."""

    quote: bytes
    submit: bytes


@dataclass
class Expected:
    """What the quotes promise to move, per account: (debits, credits) posted."""

    moves: dict[str, list[int]]

    def add(self, account_id: str, debit: int = 0, credit: int = 0) -> None:
        totals = self.moves.setdefault(account_id, [0, 0])
        totals[0] += debit
        totals[1] += credit


def signed_payments(
    keys: dict[str, Ed25519PrivateKey], counts: list[int]
) -> tuple[list[tuple[str, list[Payment]]], Expected]:
    expected = Expected({})
    jobs = []
    number = 0
    for client, count in enumerate(counts):
        debtor_agent, creditor_agent = (US, PK) if client % 2 == 0 else (PK, US)
        source, target = ("USD", "PKR") if debtor_agent == US else ("PKR", "USD")
        payments = []
        for _ in range(count):
            number += 1
            amount_minor = 100_000 + (number * 7919) % 900_000
            quote = payment_pb2.RequestQuoteInstruction(
                instruction_id=f"{debtor_agent}:quote:{uuid.uuid4()}",
                participant_id=debtor_agent,
                instruction_type=type_name(payment_pb2.RequestQuoteInstruction),
                fx_provider_id=FX,
                source_currency=source,
                target_currency=target,
                fixed_side=payment_pb2.FIXED_SIDE_SEND,
                amount_minor=amount_minor,
            )
            us_party = payment_pb2.Party(
                name=company(2 * number),
                account_number=US_ACCOUNT,
                aba_routing_number=US_ROUTING_NUMBER,
                country="US",
            )
            pk_party = payment_pb2.Party(name=company(2 * number + 1), iban=PK_IBAN, country="PK")
            payment = payment_pb2.PaymentInstruction(
                instruction_id=f"{debtor_agent}:payment:{uuid.uuid4()}",
                participant_id=debtor_agent,
                instruction_type=type_name(payment_pb2.PaymentInstruction),
                uetr=str(uuid.uuid4()),
                end_to_end_id=f"E2E-{number}",
                quote_id=quote.instruction_id,
                debtor=us_party if debtor_agent == US else pk_party,
                creditor=pk_party if debtor_agent == US else us_party,
                creditor_agent_id=creditor_agent,
                ultimate_creditor=payment_pb2.Party(name=f"{company(3 * number)} Holdings"),
                remittance_information=f"Invoice {number}",
                charge_bearer=payment_pb2.CHARGE_BEARER_DEBT,
            )
            payments.append(
                Payment(
                    payment_pb2.RequestQuoteRequest(
                        instruction=sign(quote, keys[debtor_agent])
                    ).SerializeToString(),
                    payment_pb2.SubmitPaymentRequest(
                        instruction=sign(payment, keys[debtor_agent])
                    ).SerializeToString(),
                )
            )
            receive = convert_send(amount_minor, source, target, RATES[(source, target)])
            fee = FEE_MINOR[source]
            expected.add(settlement_account(debtor_agent, source), debit=amount_minor + fee)
            expected.add(settlement_account(FX, source), credit=amount_minor)
            expected.add(settlement_account(FX, target), debit=receive.receive_minor)
            expected.add(settlement_account(creditor_agent, target), credit=receive.receive_minor)
            expected.add(f"fees:{source}", credit=fee)
        jobs.append((debtor_agent, payments))
    return jobs, expected


# -- the client process ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    payment_latencies_s: list[float]
    quote_latencies_s: list[float]
    submit_latencies_s: list[float]
    elapsed_s: float
    statuses: dict[str, int]
    failures: int
    first_failure: str


def run_clients(address: str, pki_directory: str, jobs: list[tuple[str, list[Payment]]]) -> Outcome:
    """Entry point of the client process."""
    return asyncio.run(_run_clients(address, pki_directory, jobs))


async def _run_clients(
    address: str, pki_directory: str, jobs: list[tuple[str, list[Payment]]]
) -> Outcome:
    pki = load_dev_pki(Path(pki_directory))
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.secure_channel(address, pki.channel_credentials(who), options=options)
        for who, _ in jobs
    ]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), SETUP_TIMEOUT_SECONDS)
    payment_latencies: list[float] = []
    quote_latencies: list[float] = []
    submit_latencies: list[float] = []
    statuses: dict[str, int] = {}
    failures: list[str] = []
    start = asyncio.Event()

    async def client(channel: grpc.aio.Channel, payments: list[Payment]) -> None:
        quote_call: Any = channel.unary_unary(QUOTE_METHOD)
        submit_call: Any = channel.unary_unary(SUBMIT_METHOD)
        await start.wait()
        for payment in payments:
            began = time.perf_counter()
            try:
                quoted = payment_pb2.RequestQuoteResponse.FromString(
                    await quote_call(payment.quote, timeout=CALL_TIMEOUT_SECONDS)
                )
                between = time.perf_counter()
                submitted = payment_pb2.SubmitPaymentResponse.FromString(
                    await submit_call(payment.submit, timeout=CALL_TIMEOUT_SECONDS)
                )
            except grpc.aio.AioRpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
                continue
            ended = time.perf_counter()
            payment_latencies.append(ended - began)
            quote_latencies.append(between - began)
            submit_latencies.append(ended - between)
            status = payment_pb2.PaymentStatus.Name(submitted.payment.status)
            statuses[status] = statuses.get(status, 0) + 1
            if quoted.result.status != common_pb2.COMMIT_STATUS_CREATED:
                failures.append(f"quote commit status {quoted.result.status}")

    tasks = [
        asyncio.create_task(client(channel, payments))
        for channel, (_, payments) in zip(channels, jobs, strict=True)
    ]
    await asyncio.sleep(0)
    began = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    elapsed_s = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    return Outcome(
        payment_latencies,
        quote_latencies,
        submit_latencies,
        elapsed_s,
        statuses,
        len(failures),
        failures[0] if failures else "",
    )


# -- the run ---------------------------------------------------------------------------------


def run(arguments: argparse.Namespace, pki: DevPki, location: str) -> dict[str, object]:
    keys = {
        participant_id: load_private_key(participant.signing_private_key_path)
        for participant_id, participant in pki.participants.items()
    }
    configure_logging(arguments.log_level)
    spawn = multiprocessing.get_context("spawn")
    clients = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    clients.submit(shares, 1, 1).result()
    profiles = ThreadProfiles() if arguments.profile else None
    if profiles is not None:
        profiles.install()
    server = start_server(grpc_server_settings(pki, location, arguments.log_level))
    try:
        set_up(server.address, pki, keys)
        # The sanctions list loads on first use (~3 s); a warm-up payment keeps it out of
        # the timed section, as it is out of every payment but a server's first.
        warm_jobs, warm_expected = signed_payments(keys, [1])
        warm = clients.submit(run_clients, server.address, str(pki.directory), warm_jobs).result()
        if warm.failures or warm.statuses != {"PAYMENT_STATUS_ACSC": 1}:
            raise SystemExit(f"warm-up payment failed: {warm.first_failure or warm.statuses}")
        counts = shares(arguments.payments, arguments.clients)
        print(f"  signing {arguments.payments:,} quotes and payments ahead")
        jobs, expected = signed_payments(keys, counts)
        if profiles is not None:
            profiles.start()
        # This process is the server's (the clients run in their own): its CPU time over the
        # section is the server's cost, a figure that a busy machine does not inflate as it
        # does the wall clock.
        cpu_began = time.process_time()
        outcome = clients.submit(run_clients, server.address, str(pki.directory), jobs).result()
        server_cpu_s = time.process_time() - cpu_began
        if outcome.failures:
            raise SystemExit(
                f"{outcome.failures} payments failed, the first: {outcome.first_failure}"
            )
        if outcome.statuses != {"PAYMENT_STATUS_ACSC": arguments.payments}:
            raise SystemExit(f"expected every payment settled, got {outcome.statuses}")
        for account_id, (debited, credited) in expected.moves.items():
            warm_debited, warm_credited = warm_expected.moves.get(account_id, [0, 0])
            found = balance(server.address, pki, account_id)
            funded = FUNDING_MINOR if account_id.startswith("settlement:") else 0
            wanted = (debited + warm_debited, credited + warm_credited + funded, 0, 0)
            if found != wanted:
                raise SystemExit(f"{account_id}: expected {wanted}, got {found}")
        print(f"  read back: {len(expected.moves)} accounts moved exactly what the quotes promised")
    finally:
        server.stop()
        clients.shutdown()
        if profiles is not None:
            profiles.uninstall()
    if profiles is not None:
        profiles.print_top(PROFILE_ROWS)
    payment = summary_ms(outcome.payment_latencies_s)
    quote = summary_ms(outcome.quote_latencies_s)
    submit = summary_ms(outcome.submit_latencies_s)
    per_second = arguments.payments / outcome.elapsed_s
    print(
        f"  {arguments.payments:,} payments (quote + submit, each ACSC) from "
        f"{arguments.clients} clients in {outcome.elapsed_s:.2f} s: {per_second:,.1f} payments/s"
    )
    server_cpu_ms = server_cpu_s * 1000 / arguments.payments
    print(
        f"  server CPU {server_cpu_s:.1f} s ({server_cpu_s / outcome.elapsed_s:.2f} cores): "
        f"{server_cpu_ms:.2f} ms per payment, so at most {1000 / server_cpu_ms:,.0f} "
        "payments/s per core of this machine"
    )
    print(
        f"  latency per payment p50 {payment['p50_ms']} ms, p99 {payment['p99_ms']} ms; "
        f"RequestQuote p50 {quote['p50_ms']} ms, p99 {quote['p99_ms']} ms; "
        f"SubmitPayment p50 {submit['p50_ms']} ms, p99 {submit['p99_ms']} ms"
    )
    return {
        "payments": arguments.payments,
        "payments_per_s": round(per_second, 1),
        "p50_ms": payment["p50_ms"],
        "p99_ms": payment["p99_ms"],
        "p999_ms": payment["p999_ms"],
        "quote_p50_ms": quote["p50_ms"],
        "quote_p99_ms": quote["p99_ms"],
        "submit_p50_ms": submit["p50_ms"],
        "submit_p99_ms": submit["p99_ms"],
        "server_cpu_ms_per_payment": round(server_cpu_ms, 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a PostgreSQL URL (a fresh schema is created in it and dropped); "
        "default: SQLite in a temporary directory",
    )
    parser.add_argument("--payments", type=positive, default=3200, help="payments to make")
    parser.add_argument("--clients", type=positive, default=32, help="concurrent clients")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="the server's log level (default warning: 'info' logs one line per call)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile in the server's threads (slower figures), top functions printed",
    )
    arguments = parser.parse_args(argv)
    print("payments benchmark", json.dumps(machine_description()))
    print(f"  load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="payments-bench-") as directory:
        pki = create_dev_pki(Path(directory) / "pki")
        with database_location(arguments.database, Path(directory)) as (location, label):
            print(
                f"  {label}; {arguments.clients} clients in one process, one channel each "
                f"(mutual TLS); server log level {arguments.log_level}; screening against "
                "the vendored SDN list; every commit durable"
            )
            figures = run(arguments, pki, location)
    print(f"  load average after: {load_average()}")
    print(
        json.dumps(
            {
                "benchmark": "payments",
                "database": label,
                "clients": arguments.clients,
                "profiled": arguments.profile,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
