"""The demo: the whole story on a fresh machine, in one command (``settlement demo``).

It writes a development PKI into a temporary directory, starts the hub with
mutual TLS on a free loopback port over an embedded SQLite file, and tells the
story through the reference clients, each step a separate process speaking
only gRPC, as a bank would: participants registered and funded, a USD to PKR
remittance, an offtake contract with provisional and final invoices for two
lots (one ending in a refund), an export-credit facility with two
disbursements to US suppliers, a day of accruals and a repayment in PKR
converted to USD, and a payment to a sanctioned name held for review. The
auditor then exports the signed log and verifies it offline.

Exit status: 0 when every step succeeded and the ledger verified; 1 at the
first failing step (named, with the client's stderr); 2 when the server did not
start. The server started here is always stopped (SIGTERM, then kill).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

SERVER_START_TIMEOUT_SECONDS: Final = 60.0
"""How long the server may take to log "listening" (a loaded CI machine is slow)."""

SERVER_STOP_TIMEOUT_SECONDS: Final = 15.0
"""After SIGTERM, how long before the server is killed."""

STEP_TIMEOUT_SECONDS: Final = 120.0
"""A client process taking longer than this has failed: no step waits on anything slow."""

SERVER_LOG_LINES_KEPT: Final = 40
"""Tail of the server's log printed when a step fails."""

EXIT_OK: Final = 0
EXIT_STEP_FAILED: Final = 1
EXIT_SERVER_FAILED: Final = 2

FX_RATE: Final = "278.45"
"""PKR per USD published by the FX provider."""

PKR_TO_USD_RATE: Final = "0.0035906643"
"""USD per PKR (about 278.50 PKR a dollar), for the borrower's repayment in rupees."""

SANCTIONED_NAME: Final = "BANCO NACIONAL DE CUBA"
"""A primary name on OFAC's SDN list (vendored in settlement/compliance/data)."""

US_DEBTOR: Final = (
    "--debtor-name",
    "Apex Copper Trading Inc",
    "--debtor-account-number",
    "123456789",
    "--debtor-routing-number",
    "021000021",
    "--debtor-country",
    "US",
)
PK_CREDITOR: Final = (
    "--creditor-name",
    "Karachi Textile Mills",
    "--creditor-iban",
    "PK36SCBL0000001123456702",
    "--creditor-country",
    "PK",
)


class StepFailed(Exception):
    """A step's client exited non-zero or printed something unexpected."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"step {step!r} failed: {detail}")
        self.step = step
        self.detail = detail


class ServerFailed(Exception):
    """The server did not start (or died) before the story could run."""


@dataclass
class Server:
    """The hub as a child process, its stderr drained by a thread (a full pipe would block it)."""

    process: subprocess.Popen[str]
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=SERVER_LOG_LINES_KEPT))
    port: int | None = None
    listening: threading.Event = field(default_factory=threading.Event)

    def drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.log_tail.append(line.rstrip("\n"))
            if self.port is None:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == "listening":
                    self.port = int(record["port"])
                    self.listening.set()
        self.listening.set()  # the server exited: stop waiting

    def stop(self) -> int | None:
        """SIGTERM, then kill after :data:`SERVER_STOP_TIMEOUT_SECONDS`; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def child_environment() -> dict[str, str]:
    """The caller's environment without SETTLEMENT_* settings: the demo names its own."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("SETTLEMENT_")
    }
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def start_server(pki: Path, database: Path) -> Server:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "settlement.cli",
            "serve",
            "--dev-pki",
            str(pki),
            "--database",
            str(database),
            "--listen",
            "127.0.0.1:0",
            "--metrics-port",
            "0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )
    server = Server(process)
    assert process.stderr is not None
    threading.Thread(target=server.drain, args=(process.stderr,), daemon=True).start()
    if not server.listening.wait(SERVER_START_TIMEOUT_SECONDS) or server.port is None:
        server.stop()  # it may hang rather than exit: never leave it behind
        raise ServerFailed(
            f"expected a 'listening' log line within {SERVER_START_TIMEOUT_SECONDS:.0f} s, "
            f"got exit status {process.poll()}; its log:\n" + "\n".join(server.log_tail)
        )
    return server


@dataclass
class Story:
    """Runs the steps in order, timing each; the first failure stops the story."""

    pki: Path
    work: Path
    port: int
    fail_at: str | None = None
    started: float = field(default_factory=time.monotonic)
    count: int = 0
    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connection(self, participant: str) -> list[str]:
        return [
            "--server",
            f"127.0.0.1:{self.port}",
            "--tls-server-name",
            "localhost",
            "--pki",
            str(self.pki),
            "--participant",
            participant,
        ]

    def client(
        self, step: str, module: str, participant: str, *arguments: str, json_output: bool = True
    ) -> Any:
        """Run ``python -m clients.<module> <arguments>`` as ``participant``; its JSON output."""
        with self.lock:
            self.count += 1
            number = self.count
        argv = [sys.executable, "-m", f"clients.{module}", *arguments]
        argv += self.connection(participant)
        if json_output:
            argv.append("--json")
        if self.fail_at is not None and self.fail_at in (step, str(number)):
            argv.append("--demo-fails-here")  # an unknown flag: the client exits 2
        begun = time.monotonic()
        try:
            completed = subprocess.run(  # noqa: S603 - our interpreter, fixed clients
                argv,
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT_SECONDS,
                env=child_environment(),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise StepFailed(step, f"no answer within {STEP_TIMEOUT_SECONDS:.0f} s") from error
        took = time.monotonic() - begun
        elapsed = time.monotonic() - self.started
        with self.lock:
            print(f"[{elapsed:6.2f} s] {number:>2}. {step} ({took:.2f} s)", flush=True)
        if completed.returncode != 0:
            raise StepFailed(
                step,
                f"{' '.join(argv[1:4])} {exit_text(completed.returncode)}\n"
                + (completed.stderr.strip() or completed.stdout.strip()),
            )
        if not json_output:
            return completed.stdout
        try:
            return json.loads(completed.stdout)
        except ValueError as error:
            raise StepFailed(
                step, f"expected JSON output, got {completed.stdout[:200]!r}"
            ) from error

    def together(self, *calls: tuple[str, str, str, Sequence[str]]) -> list[Any]:
        """Independent steps ``(step, module, participant, arguments)`` at once, in order of
        the answers' use; the first failure (in the order given) is raised."""
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [
                pool.submit(self.client, step, module, participant, *arguments)
                for step, module, participant, arguments in calls
            ]
        return [future.result() for future in futures]


def exit_text(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited {returncode}"


def money(amount_minor: int, currency: str) -> str:
    exponent = 2
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole:,}.{fraction:0{exponent}d} {currency}"


def minor(amount: dict[str, Any] | None) -> int:
    """A client's money document in minor units; a zero amount may come without one."""
    return 0 if amount is None else int(amount.get("amount_minor", 0))


def expect(step: str, condition: bool, detail: str) -> None:
    if not condition:
        raise StepFailed(step, detail)


def payments(story: Story) -> None:
    """Participants set up; a USD to PKR remittance; a payment to a sanctioned name held."""
    story.client(
        "participants registered, accounts opened and funded",
        "operator",
        "operator",
        "setup",
        "--pki",
        str(story.pki),
    )
    story.together(
        (
            "FX rate USD/PKR published",
            "fx_provider",
            "fx-provider",
            ["publish-rate", "--rate", FX_RATE],
        ),
        (
            "FX rate PKR/USD published (for repayments in rupees)",
            "fx_provider",
            "fx-provider",
            ["publish-rate", "--source", "PKR", "--target", "USD", "--rate", PKR_TO_USD_RATE],
        ),
    )

    # A USD to PKR remittance: quote, then pay.
    step = "remittance: quote USD 1,000.00 to PKR"
    quote = story.client(step, "us_bank", "bank-us", "quote", "--send", "1000.00")
    step = "remittance: pay Karachi Textile Mills"
    payment = story.client(
        step,
        "us_bank",
        "bank-us",
        "pay",
        "--creditor-agent",
        "bank-pk",
        "--quote-id",
        quote["quote_id"],
        *US_DEBTOR,
        *PK_CREDITOR,
        "--remittance-information",
        "INV-1",
    )
    expect(step, payment["status"] == "ACSC", f"expected ACSC, got {payment['status']}")
    story.events.append(
        f"remittance {payment['uetr']}: {money(**payment['send'])} -> "
        f"{money(**payment['receive'])} at {payment['rate']} ({payment['status']})"
    )

    # A payment to a sanctioned name: held for review.
    step = "payment to a sanctioned name"
    held = story.client(
        step,
        "us_bank",
        "bank-us",
        "pay",
        "--creditor-agent",
        "bank-pk",
        "--amount",
        "5000.00",
        "--currency",
        "USD",
        *US_DEBTOR,
        "--creditor-name",
        SANCTIONED_NAME,
        "--creditor-iban",
        "PK36SCBL0000001123456702",
        "--creditor-country",
        "PK",
        "--remittance-information",
        "INV-SDN-1",
    )
    expect(step, held["status"] == "PDNG", f"expected PDNG (held), got {held['status']}")
    story.events.append(
        f"payment {held['uetr']} to {SANCTIONED_NAME!r}: held for review "
        f"({held['status']} {held['reason_code']}, match score {held['screening_score']})"
    )


BUYER: Final = "Ohio Copper Smelting Inc."
SELLER: Final = "Chagai Hills Mining (Pvt) Ltd"
BUYER_ACCOUNT: Final[tuple[str, ...]] = (
    "--account-number",
    "000987654321",
    "--routing-number",
    "021000021",
    "--country",
    "US",
)
SELLER_ACCOUNT: Final[tuple[str, ...]] = ("--iban", "PK36SCBL0000001123456702", "--country", "PK")
CONTRACT_ID: Final = "OFT-DEMO-2025-001"

CONTRACT_TERMS: Final[dict[str, Any]] = {
    "contract_id": CONTRACT_ID,
    "buyer": {"name": BUYER, "bank_participant_id": "bank-us"},
    "seller": {"name": SELLER, "bank_participant_id": "bank-pk"},
    "copper": {
        "payable_percent": "96.5",
        "minimum_deduction_percent": "1.0",
        "refining_charge_usd_per_lb": "0.08",
        "splitting_limit_percent": "0.20",
    },
    "gold": {
        "payable_percent": "97",
        "minimum_deduction_grams_per_dmt": "0",
        "refining_charge_usd_per_ozt": "5.00",
        "splitting_limit_grams_per_dmt": "0.30",
    },
    "treatment_charge_usd_per_dmt": "80.00",
    "payment_term_days": 5,
    "quotational_period": {"basis": "QUOTATIONAL_PERIOD_BASIS_ARRIVAL", "month_offset": 1},
    "penalties": [
        {
            "element": "As",
            "threshold_percent": "0.2",
            "rate_usd_per_dmt_per_step": "2.50",
            "splitting_limit_percent": "0.03",
            "step_percent": "0.1",
        }
    ],
    "provisional_payment_percent": "90",
    "currency": "USD",
    "seller_payment_currency": "PKR",
}
"""Copper-gold concentrate, the worked example of tests/unit/test_offtake_valuation.py."""

PRICE_FIXINGS: Final = (
    # Lot 1's quotational period: April 2025 (arrival in March, one month on).
    "2025-04-01:Cu=9100.00",
    "2025-04-01:Au=2410.00",
    "2025-04-02:Cu=9150.50",
    "2025-04-02:Au=2395.50",
    "2025-04-03:Cu=9080.00",
    "2025-04-03:Au=2420.25",
    "2025-04-04:Cu=9120.25",
    # Lot 2's: July 2025.
    "2025-07-01:Cu=8000.00",
    "2025-07-01:Au=2300.00",
    "2025-07-02:Cu=8100.00",
    "2025-07-02:Au=2320.00",
)


@dataclass(frozen=True)
class Lot:
    """What the banks say about one lot (tests/grpc/test_offtake_service.py, lots 1 and 2)."""

    lot_id: str
    bill_of_lading_date: str
    shipped: tuple[str, str]
    provisional_grades: tuple[str, ...]
    provisional_prices: tuple[str, ...]
    arrival_date: str
    discharged: tuple[str, str]
    buyer_grades: tuple[str, ...]
    seller_grades: tuple[str, ...]
    umpire_grades: tuple[str, ...]


LOTS: Final = (
    Lot(
        "1",
        "2025-02-20",
        ("10000.000", "8"),
        ("Cu=25", "Au=5", "As=0.35"),
        ("Cu=9000.00", "Au=2400.00"),
        "2025-03-18",
        ("9990.000", "8.1"),
        ("Cu=24.80", "Au=5.10", "As=0.30"),
        ("Cu=25.10", "Au=4.95", "As=0.32"),
        ("Cu=24.90",),
    ),
    Lot(
        "2",
        "2025-05-02",
        ("5000.000", "10"),
        ("Cu=26", "Au=4", "As=0.15"),
        ("Cu=9500.00", "Au=2500.00"),
        "2025-06-09",
        ("4990.000", "10.5"),
        ("Cu=22.00", "Au=3.00", "As=0.15"),
        ("Cu=22.10", "Au=3.50", "As=0.16"),
        ("Au=3.60",),
    ),
)


def repeated(flag: str, values: Sequence[str]) -> list[str]:
    return [item for value in values for item in (flag, value)]


def major(amount_minor: int) -> str:
    """Minor units as the clients' amount text (two decimals: USD)."""
    whole, fraction = divmod(amount_minor, 100)
    return f"{whole}.{fraction:02d}"


def pay_invoice(story: Story, invoice: dict[str, Any], what: str) -> dict[str, Any]:
    """The bank that owes ``invoice`` pays it: the buyer's through an FX quote into PKR,
    the seller's bank a refund in USD."""
    outstanding = int(invoice["outstanding"]["amount_minor"])
    invoice_id = invoice["invoice_id"]
    if outstanding > 0:
        quote = story.client(
            f"offtake: quote USD {major(outstanding)} for {what}",
            "us_bank",
            "bank-us",
            "quote",
            "--send",
            major(outstanding),
        )
        arguments = ["--quote-id", quote["quote_id"], "--creditor-agent", "bank-pk"]
        module, participant = "us_bank", "bank-us"
        debtor, creditor = (BUYER, BUYER_ACCOUNT), (SELLER, SELLER_ACCOUNT)
    else:
        arguments = ["--creditor-agent", "bank-us"]
        module, participant = "pk_bank", "bank-pk"
        debtor, creditor = (SELLER, SELLER_ACCOUNT), (BUYER, BUYER_ACCOUNT)
    for role, (name, account) in (("debtor", debtor), ("creditor", creditor)):
        arguments += [f"--{role}-name", name]
        arguments += [
            flag.replace("--", f"--{role}-", 1) if flag.startswith("--") else flag
            for flag in account
        ]
    step = f"offtake: {participant} pays {what} {invoice_id}"
    paid = story.client(
        step, module, participant, "offtake-pay", "--invoice-id", invoice_id, *arguments
    )
    payment = paid["payment"]
    expect(step, payment["status"] == "ACSC", f"expected ACSC, got {payment['status']}")
    expect(
        step,
        paid["invoice"]["outstanding"]["amount_minor"] == 0,
        f"expected nothing outstanding, got {paid['invoice']['outstanding']}",
    )
    return dict(paid)


def offtake(story: Story) -> None:
    terms = story.work / "offtake-terms.json"
    terms.write_text(json.dumps(CONTRACT_TERMS, indent=2), encoding="utf-8")
    for bank, module in (("bank-us", "us_bank"), ("bank-pk", "pk_bank")):
        signed = story.client(
            f"offtake: {bank} signs contract {CONTRACT_ID}",
            module,
            bank,
            "offtake-sign",
            "--terms",
            str(terms),
        )
    expect(
        "offtake: contract active",
        signed["state"] == "ACTIVE",
        f"expected ACTIVE, got {signed['state']}",
    )
    story.client(
        "offtake: operator publishes copper and gold price fixings",
        "us_bank",
        "operator",
        "offtake-fixings",
        *repeated("--fixing", PRICE_FIXINGS),
    )
    for lot in LOTS:
        key = ["--contract-id", CONTRACT_ID, "--lot-id", lot.lot_id]
        story.client(
            f"offtake: lot {lot.lot_id} shipped (bank-pk)",
            "pk_bank",
            "bank-pk",
            "offtake-ship",
            *key,
            "--bill-of-lading-number",
            f"BL-{CONTRACT_ID}-{lot.lot_id}",
            "--bill-of-lading-date",
            lot.bill_of_lading_date,
            "--wet-tonnes",
            lot.shipped[0],
            "--moisture-percent",
            lot.shipped[1],
            *repeated("--grade", lot.provisional_grades),
        )
        provisional = story.client(
            f"offtake: lot {lot.lot_id} provisional invoice (bank-pk)",
            "pk_bank",
            "bank-pk",
            "offtake-provisional-invoice",
            *key,
            *repeated("--price", lot.provisional_prices),
        )
        paid = pay_invoice(story, provisional, "provisional invoice")
        story.events.append(
            f"offtake lot {lot.lot_id}: provisional invoice {provisional['invoice_id']} "
            f"{money(**provisional['total'])} paid as {money(**paid['payment']['receive'])}"
        )
        story.client(
            f"offtake: lot {lot.lot_id} arrived (bank-us)",
            "us_bank",
            "bank-us",
            "offtake-arrive",
            *key,
            "--arrival-date",
            lot.arrival_date,
            "--wet-tonnes",
            lot.discharged[0],
            "--moisture-percent",
            lot.discharged[1],
        )
        story.client(
            f"offtake: lot {lot.lot_id} final assays (bank-us)",
            "us_bank",
            "bank-us",
            "offtake-assays",
            *key,
            *repeated("--buyer-grade", lot.buyer_grades),
            *repeated("--seller-grade", lot.seller_grades),
            *repeated("--umpire-grade", lot.umpire_grades),
        )
        priced = story.client(
            f"offtake: lot {lot.lot_id} priced (bank-pk)",
            "pk_bank",
            "bank-pk",
            "offtake-price",
            *key,
        )
        final = story.client(
            f"offtake: lot {lot.lot_id} final invoice (bank-pk)",
            "pk_bank",
            "bank-pk",
            "offtake-final-invoice",
            *key,
        )
        refund = int(final["total"]["amount_minor"]) < 0
        pay_invoice(story, final, "refund" if refund else "final invoice")
        story.events.append(
            f"offtake lot {lot.lot_id}: priced {priced['quotational_period_prices']}, final "
            f"invoice {final['invoice_id']} {money(**final['total'])}"
            + (" (a refund, paid back by bank-pk in USD)" if refund else " paid")
        )
    step = "offtake: contract reconciled"
    contract = story.client(
        step, "us_bank", "bank-us", "offtake-contract", "--contract-id", CONTRACT_ID
    )
    outstanding = minor(contract["outstanding"])
    on_ledger = minor(contract["ledger_balance"])
    expect(step, outstanding == on_ledger == 0, f"expected 0 outstanding, got {outstanding}")
    story.events.append(
        f"offtake contract {CONTRACT_ID}: invoiced {money(minor(contract['invoiced']), 'USD')}, "
        f"received {money(minor(contract['received']), 'USD')}, receivable on the ledger "
        f"{money(on_ledger, 'USD')}"
    )


FACILITY_ID: Final = "ECA-DEMO-2027-001"
LOAN_CONDITIONS: Final = (
    ("loan_agreement_legal_opinion", "Legal opinions of US and Pakistan counsel"),
    ("eca_cover_issued", "The export-credit agency's guarantee is in force"),
    ("sbp_loan_registration", "State Bank of Pakistan registration of the loan"),
)
FACILITY_TERMS: Final[dict[str, Any]] = {
    "facility_id": FACILITY_ID,
    "borrower_id": "pk-mining-company",
    "borrower_bank_id": "bank-pk",
    "guarantor_id": "pk-parent-guarantor",
    "commitment_minor": "10000000000",
    "currency": "USD",
    "availability_start": "2027-06-29",
    "availability_end": "2027-12-31",
    "interest_type": "INTEREST_TYPE_FIXED",
    "fixed_rate_percent": "5.25",
    "day_count": "DAY_COUNT_ACT_360",
    "commitment_fee_percent": "0.50",
    "exposure_fee_percent": "1.00",
    "exposure_fee_timing": "EXPOSURE_FEE_TIMING_PER_DISBURSEMENT",
    "exposure_fee_settlement": "EXPOSURE_FEE_SETTLEMENT_PAID",
    "instalment_count": 10,
    "grace_period_months": 6,
    "default_margin_percent": "2.00",
    "conditions_precedent": [
        {"condition_id": condition_id, "description": description}
        for condition_id, description in LOAN_CONDITIONS
    ],
    "borrower_name": "Pakistan Mining Company Limited",
    "borrower_iban": "PK13HABB0000001123456702",
}
"""USD 100 million, 5.25% fixed ACT/360 (tests/grpc/test_loan_service.py)."""

DISBURSEMENTS: Final = (
    (
        "mining equipment",
        "Peoria Mining Trucks Inc.",
        "4711000123",
        "20000000.00",
        "INV-TRUCKS-001",
    ),
    ("locomotives", "Erie Locomotive Works LLC", "5500012345", "30000000.00", "INV-LOCO-001"),
)
"""Both suppliers bank with bank-us (ABA 021000021, BIC CHASUS33XXX)."""

LOAN_START: Final = "2027-06-29"
"""Available a day before the first interest period ends (2027-06-30): one day's accrual
makes interest and fees due, which the borrower's bank repays."""


def loans(story: Story) -> None:
    terms = story.work / "facility-terms.json"
    terms.write_text(json.dumps(FACILITY_TERMS, indent=2), encoding="utf-8")
    facility_key = ["--facility-id", FACILITY_ID]
    story.client(
        f"loan: lender creates facility {FACILITY_ID}",
        "lender",
        "lender",
        "loan-create",
        "--terms",
        str(terms),
    )
    for participant, module in (("bank-pk", "pk_bank"), ("lender", "lender")):
        story.client(
            f"loan: {participant} signs the facility",
            module,
            participant,
            "loan-sign",
            *facility_key,
        )
    story.together(
        *(
            (
                f"loan: condition {condition_id} satisfied",
                "lender",
                "lender",
                ["loan-satisfy", *facility_key, "--condition-id", condition_id, "--evidence", text],
            )
            for condition_id, text in LOAN_CONDITIONS
        )
    )
    for event, day in (
        ("conditions-precedent-met", "2027-06-20"),
        ("availability-period-started", LOAN_START),
    ):
        advanced = story.client(
            f"loan: {event} ({day})",
            "lender",
            "lender",
            "loan-advance",
            *facility_key,
            "--event",
            event,
            "--business-date",
            day,
        )
    state = advanced["facility"]["state"]
    expect(
        "loan: facility available",
        state == "FACILITY_STATE_AVAILABLE",
        f"expected AVAILABLE, got {state}",
    )
    for what, supplier, account, amount, invoice in DISBURSEMENTS:
        requested = story.client(
            f"loan: bank-pk requests USD {amount} for {what}",
            "pk_bank",
            "bank-pk",
            "loan-request",
            *facility_key,
            "--supplier-name",
            supplier,
            "--supplier-account-number",
            account,
            "--supplier-bank-id",
            "bank-us",
            "--supplier-bank-aba",
            "021000021",
            "--supplier-bank-bic",
            "CHASUS33XXX",
            "--amount",
            amount,
            "--invoice-reference",
            invoice,
        )
        step = f"loan: lender approves and pays {supplier}"
        reviewed = story.client(
            step,
            "lender",
            "lender",
            "loan-review",
            *facility_key,
            "--disbursement-id",
            requested["disbursement"]["disbursement_id"],
            "--decision",
            "approve",
            "--reason",
            "invoice and bill of lading checked",
        )
        disbursement = reviewed["disbursement"]
        status = disbursement["status"]
        expect(step, status == "DISBURSEMENT_STATUS_PAID", f"expected PAID, got {status}")
        story.events.append(
            f"loan {FACILITY_ID}: disbursed {money(minor(disbursement['amount']), 'USD')} to "
            f"{supplier} ({what}) at bank-us, exposure fee "
            f"{money(minor(disbursement.get('exposure_fee')), 'USD')}"
        )
    accrued = story.client(
        f"loan: accrual for {LOAN_START}",
        "lender",
        "lender",
        "loan-accrue",
        *facility_key,
        "--business-date",
        LOAN_START,
    )
    accrual = accrued["accrual"]
    story.events.append(
        f"loan {FACILITY_ID}: accrual {LOAN_START}: interest "
        f"{money(minor(accrual.get('interest')), 'USD')}, commitment fee "
        f"{money(minor(accrual.get('commitment_fee')), 'USD')}"
    )
    due = accrued["facility"]
    due_minor = sum(
        minor(due.get(name))
        for name in ("fees_due", "interest_due", "default_interest_due", "principal_due")
    )
    expect("loan: something due", due_minor > 0, "expected interest and fees due, got none")
    repayment_usd = major(due_minor)
    quote = story.client(
        f"loan: bank-pk quotes PKR for USD {repayment_usd} due",
        "pk_bank",
        "bank-pk",
        "quote",
        "--from-currency",
        "PKR",
        "--to-currency",
        "USD",
        "--receive",
        repayment_usd,
    )
    step = "loan: bank-pk repays in PKR, converted to USD"
    repaid = story.client(
        step,
        "pk_bank",
        "bank-pk",
        "loan-repay",
        *facility_key,
        "--amount",
        repayment_usd,
        "--currency",
        "USD",
        "--quote-id",
        quote["quote_id"],
    )
    repayment = repaid["repayment"]
    facility = repaid["facility"]
    outstanding = minor(facility.get("outstanding_principal"))
    drawn, returned = (
        minor(facility.get("disbursed_principal")),
        minor(facility.get("repaid_principal")),
    )
    expect(
        step,
        outstanding == drawn - returned,
        f"expected outstanding principal {drawn - returned}, got {outstanding}",
    )
    story.events.append(
        f"loan {FACILITY_ID}: repaid {money(minor(repayment['amount']), 'USD')} sent as "
        f"{money(minor(repayment['sent']), repayment['sent']['currency'])}: fees "
        f"{money(minor(repayment.get('fees')), 'USD')}, interest "
        f"{money(minor(repayment.get('interest')), 'USD')}, principal "
        f"{money(minor(repayment.get('principal')), 'USD')}; outstanding principal "
        f"{money(outstanding, 'USD')}"
    )


def audit(story: Story) -> dict[str, Any]:
    bundle = story.work / "bundle"
    state = story.work / "auditor-checkpoint"
    result = story.client(
        "auditor: anchor, export and verify the bundle",
        "auditor",
        "auditor",
        "audit",
        "--out",
        str(bundle),
        "--state",
        str(state),
        "--no-progress",
        "--workers",
        "2",
    )
    expect(
        "auditor: anchor, export and verify the bundle",
        result.get("ok") is True and not result.get("findings"),
        f"expected a verified bundle, got findings {result.get('findings')}",
    )
    return dict(result)


def balances(story: Story) -> list[tuple[str, str, int]]:
    participants = ("bank-us", "bank-pk", "fx-provider", "lender")
    documents = story.together(
        *(
            (f"balances of {participant}", "us_bank", participant, ["balances"])
            for participant in participants
        )
    )
    rows: list[tuple[str, str, int]] = []
    for participant, document in zip(participants, documents, strict=True):
        for account in document["accounts"]:
            if not account["account_id"].startswith("settlement:"):
                continue  # an offtake contract's or a loan's accounts: in the story above
            rows.append((participant, account["currency"], int(account["net_minor"])))
    return rows


def run_demo(work: Path, fail_at: str | None) -> int:
    pki = work / "pki"
    from settlement.pki import create_dev_pki  # noqa: PLC0415 - heavy imports on demand

    begun = time.monotonic()
    create_dev_pki(pki)
    print(f"[{time.monotonic() - begun:6.2f} s]  0. development PKI written to {pki}", flush=True)
    try:
        server = start_server(pki, work / "ledger.db")
    except ServerFailed as error:
        print(f"demo: the server did not start: {error}", file=sys.stderr)
        return EXIT_SERVER_FAILED
    try:
        print(
            f"[{time.monotonic() - begun:6.2f} s]  0. hub listening on 127.0.0.1:{server.port} "
            "(mutual TLS, SQLite)",
            flush=True,
        )
        assert server.port is not None
        story = Story(pki=pki, work=work, port=server.port, fail_at=fail_at, started=begun)
        try:
            payments(story)
            offtake(story)
            loans(story)
            final = balances(story)
            verified = audit(story)
        except StepFailed as error:
            print(f"demo: step {error.step!r} failed", file=sys.stderr)
            print(error.detail, file=sys.stderr)
            if server.process.poll() is not None:
                print("server log (tail):", file=sys.stderr)
                print("\n".join(server.log_tail), file=sys.stderr)
            return EXIT_STEP_FAILED
        except (KeyError, TypeError, ValueError) as error:
            print(
                f"demo: unexpected client output after step {story.count}: {error!r}",
                file=sys.stderr,
            )
            return EXIT_STEP_FAILED
    finally:
        status = server.stop()
        if status not in (0, None):
            print(f"demo: the server exited with status {status}", file=sys.stderr)
    print_summary(story, final, verified, time.monotonic() - begun)
    return EXIT_OK


def print_summary(
    story: Story, final: list[tuple[str, str, int]], verified: dict[str, Any], seconds: float
) -> None:
    print()
    print("What happened:")
    for event in story.events:
        print(f"  - {event}")
    print()
    print("Final balances (net, per participant and currency):")
    for participant, currency, net in final:
        print(f"  {participant:<12} {currency}  {money(net, currency):>28}")
    print()
    checkpoint = verified["audited_checkpoint"]
    report = verified["verification"]
    print(
        f"Checkpoint: {checkpoint['origin']} size {checkpoint['tree_size']} "
        f"root {checkpoint['root_hash']}"
    )
    print(
        f"Bundle: {report['entries_checked']} entries, {report['signatures_verified']} "
        f"signatures, {report['accounts_checked']} closing balances checked, no findings"
    )
    print(f"{story.count} client processes in {seconds:.1f} s")
    print("ledger verified")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="settlement demo",
        description="Run the whole story against a fresh hub in a temporary directory.",
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR (created) and keep it, instead of a temporary"
    )
    parser.add_argument("--fail-at", metavar="STEP", help=argparse.SUPPRESS)
    return parser


def _stop_on_sigterm(signal_number: int, _frame: object) -> None:
    # SIGTERM would end the process without running ``finally``: the server
    # started here would be left running. Exiting runs it.
    raise SystemExit(128 + signal_number)


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if options.keep:
        work = Path(options.keep)
        work.mkdir(parents=True, exist_ok=True)
        return run_demo(work, options.fail_at)
    with tempfile.TemporaryDirectory(prefix="settlement-demo-") as directory:
        return run_demo(Path(directory), options.fail_at)


if __name__ == "__main__":
    sys.exit(main())
