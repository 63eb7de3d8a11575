"""The reference bank client: one command line shared by the US and the Pakistani bank.

``python -m clients.us_bank COMMAND ...`` and ``python -m clients.pk_bank
COMMAND ...`` differ only in their defaults (participant id, home currency);
``--help`` after any command lists its flags. Commands:

- ``balances``: own accounts with their four balance figures, net and available;
- ``quote``: a firm FX quote (PaymentService.RequestQuote);
- ``pay``: a pacs.008-shaped payment (PaymentService.SubmitPayment);
- ``status --uetr``: a payment and its status history (PaymentService.GetPayment);
- ``watch``: status changes of own payments as they happen
  (PaymentService.WatchPayments), or with ``--movements`` own ledger movements
  (LedgerService.WatchJournal);
- ``statement``: a camt.053 (or camt.054) statement of an account, to a file
  (PaymentService.GetAccountStatement).

Writes are signed (:mod:`clients.signing`) with an idempotency key generated
once per command run and sent unchanged on every retry
(:class:`clients.common.Retrying`); ``--instruction-id`` reuses a key from an
earlier run whose outcome was unknown.

Extension point: the offtake commands (buyer's and seller's banks) and the
loan commands (lender's and borrower's banks) register themselves the same
way as the commands below, with :func:`register_command` in a module of
their own listed in :data:`EXTENSION_MODULES`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import importlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from clients.common import (
    EXIT_OK,
    EXIT_USAGE,
    ClientError,
    ConnectionOptions,
    Output,
    RetriesExhausted,
    Retrying,
    add_connection_arguments,
    add_output_arguments,
    format_minor,
    identity_from_arguments,
    open_channel,
    parse_amount,
    print_retry,
    report_failure,
)
from clients.signing import (
    SigningError,
    check_instruction_id,
    instruction_type,
    load_signing_key,
    new_instruction_id,
    sign,
)
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
)

PAGE_SIZE: Final = 1000
"""The hub's largest page (common.proto, PageRequest)."""

ACCOUNTS_MAX: Final = 10_000
"""Accounts listed by ``balances`` at most: a bank holds one per currency."""

WATCH_RECONNECTS_MAX: Final = 5
"""Consecutive failed reconnections of a watch stream before giving up."""

STATEMENT_SIZE_MAX_BYTES: Final = 16 * 1024 * 1024
"""A statement arrives in one message, which the hub keeps under 16 MiB."""

END_TO_END_ID_LENGTH_MAX: Final = 35
"""ISO 20022 Max35Text."""

EXTENSION_MODULES: Final[tuple[str, ...]] = ("clients.offtake", "clients.loans")
"""Modules imported before the parser is built, each calling :func:`register_command`
(the offtake and loan commands, once their services exist)."""

STATEMENT_FORMATS: Final = {
    "camt.053": payment_pb2.STATEMENT_FORMAT_CAMT_053,
    "camt.054": payment_pb2.STATEMENT_FORMAT_CAMT_054,
}

CHARGE_BEARERS: Final = {
    "DEBT": payment_pb2.CHARGE_BEARER_DEBT,
    "CRED": payment_pb2.CHARGE_BEARER_CRED,
    "SHAR": payment_pb2.CHARGE_BEARER_SHAR,
}


@dataclass(frozen=True, slots=True)
class BankDefaults:
    """What distinguishes ``us_bank`` from ``pk_bank``."""

    program: str
    participant_id: str
    home_currency: str
    foreign_currency: str
    fx_provider_id: str = "fx-provider"


@dataclass
class Session:
    """A connected bank: its channel, its signing key, retries and output."""

    defaults: BankDefaults
    participant_id: str
    channel: grpc.aio.Channel
    output: Output
    retrying: Retrying = field(default_factory=Retrying)
    signing_key: Ed25519PrivateKey | None = None

    @property
    def ledger(self) -> ledger_pb2_grpc.LedgerServiceAsyncStub:
        return ledger_pb2_grpc.LedgerServiceStub(self.channel)

    @property
    def payments(self) -> payment_pb2_grpc.PaymentServiceAsyncStub:
        return payment_pb2_grpc.PaymentServiceStub(self.channel)

    def sign(self, message: Message) -> common_pb2.SignedInstruction:
        if self.signing_key is None:
            raise ClientError("this command signs instructions: give --signing-key or --pki")
        return sign(message, self.signing_key)

    def settlement_account(self, currency: str) -> str:
        """participant.proto: ``settlement:<participant_id>:<currency>``."""
        return f"settlement:{self.participant_id}:{currency}"

    def instruction_id(self, options: argparse.Namespace) -> str:
        """``--instruction-id`` when given (to resume an unknown outcome), else a new one."""
        given = getattr(options, "instruction_id", None)
        if given:
            return check_instruction_id(given)
        return new_instruction_id(self.participant_id)


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its flags, what it runs, and whether it signs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser, BankDefaults], None]
    run: Callable[[Session, argparse.Namespace], Awaitable[int]]
    signs: bool = False
    description: str = ""


COMMANDS: dict[str, Command] = {}
"""Every registered command, by name, in registration order."""


def register_command(command: Command) -> Command:
    """Add a subcommand to both bank clients (the extension point for offtake and loans)."""
    if command.name in COMMANDS:
        raise ValueError(f"expected a new command name, got {command.name!r} twice")
    COMMANDS[command.name] = command
    return command


# --- Formatting helpers ---------------------------------------------------------------------


def money_text(money: common_pb2.Money) -> str:
    if not money.currency:
        return "-"
    return f"{format_minor(money.amount_minor, money.currency)} {money.currency}"


def money_json(money: common_pb2.Money) -> dict[str, Any] | None:
    if not money.currency:
        return None
    return {"amount_minor": money.amount_minor, "currency": money.currency}


def time_text(timestamp: Timestamp) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return ""
    return str(timestamp.ToJsonString())


def enum_name(enum_type: Any, value: int, prefix: str) -> str:
    name = str(enum_type.Name(value)) if value in enum_type.values() else str(value)
    return name.removeprefix(prefix)


def commit_status(result: common_pb2.CommitResult) -> str:
    return enum_name(common_pb2.CommitStatus, result.status, "COMMIT_STATUS_")


def _add_instruction_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instruction-id",
        metavar="ID",
        help="the idempotency key; default a new one. Give the key of an earlier run whose "
        "outcome is unknown (with the same other flags) to learn it without doing it twice",
    )


# --- balances -------------------------------------------------------------------------------


def _balances_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument("--currency", metavar="CODE", help="only accounts in this currency")
    parser.add_argument(
        "--as-of-index",
        type=int,
        metavar="N",
        help="balances right after journal entry N (default: the latest)",
    )


async def list_own_accounts(session: Session) -> list[ledger_pb2.Account]:
    """Every account the participant owns, paged (at most :data:`ACCOUNTS_MAX`)."""
    accounts: list[ledger_pb2.Account] = []
    token = ""
    while True:
        request = ledger_pb2.ListAccountsRequest(
            page=common_pb2.PageRequest(page_size=PAGE_SIZE, page_token=token),
            owner_participant_id=session.participant_id,
        )
        response = await session.retrying.call(
            session.ledger.ListAccounts, request, label="list accounts"
        )
        accounts.extend(response.accounts)
        token = response.next_page_token
        if not token:
            return accounts
        if len(accounts) >= ACCOUNTS_MAX:
            raise ClientError(f"expected at most {ACCOUNTS_MAX} accounts, got more")


def balance_document(account: ledger_pb2.Account, balance: ledger_pb2.Balance) -> dict[str, Any]:
    """Exact figures (integer minor units) of one account, with net and available.

    Net is the balance on the account's normal side. Available (to debit) is
    ledger.proto's ``L + credits_posted - debits_posted - debits_pending`` under
    a debit limit L (``debits_must_not_exceed_credits`` is L = 0); None when
    the account has no cap.
    """
    credit_normal = account.normal_side == ledger_pb2.SIDE_CREDIT
    net = balance.credits_posted_minor - balance.debits_posted_minor
    if not credit_normal:
        net = -net
    limit: int | None = None
    if account.HasField("debit_limit_minor"):
        limit = account.debit_limit_minor
    elif account.debits_must_not_exceed_credits:
        limit = 0
    available = (
        None
        if limit is None
        else limit
        + balance.credits_posted_minor
        - balance.debits_posted_minor
        - balance.debits_pending_minor
    )
    return {
        "account_id": account.account_id,
        "currency": account.currency,
        "status": enum_name(ledger_pb2.AccountStatus, account.status, "ACCOUNT_STATUS_"),
        "normal_side": enum_name(ledger_pb2.Side, account.normal_side, "SIDE_"),
        "debits_posted_minor": balance.debits_posted_minor,
        "credits_posted_minor": balance.credits_posted_minor,
        "debits_pending_minor": balance.debits_pending_minor,
        "credits_pending_minor": balance.credits_pending_minor,
        "net_minor": net,
        "debit_limit_minor": limit,
        "available_minor": available,
        "as_of_index": balance.as_of_index,
    }


async def run_balances(session: Session, options: argparse.Namespace) -> int:
    accounts = [
        account
        for account in await list_own_accounts(session)
        if not options.currency or account.currency == options.currency
    ]
    documents = []
    for account in accounts:
        request = ledger_pb2.GetBalanceRequest(account_id=account.account_id)
        if options.as_of_index is not None:
            request.as_of_index = options.as_of_index
        response = await session.retrying.call(
            session.ledger.GetBalance, request, label=f"balance of {account.account_id}"
        )
        documents.append(balance_document(account, response.balance))
    rows = [
        [
            document["account_id"],
            document["currency"],
            document["status"],
            format_minor(document["credits_posted_minor"], document["currency"]),
            format_minor(document["debits_posted_minor"], document["currency"]),
            format_minor(document["credits_pending_minor"], document["currency"]),
            format_minor(document["debits_pending_minor"], document["currency"]),
            format_minor(document["net_minor"], document["currency"]),
            "no cap"
            if document["available_minor"] is None
            else format_minor(document["available_minor"], document["currency"]),
        ]
        for document in documents
    ]
    session.output.table(
        [
            "account",
            "currency",
            "status",
            "credits posted",
            "debits posted",
            "credits pending",
            "debits pending",
            "net",
            "available",
        ],
        rows,
        right_aligned=range(3, 9),
        documents={"participant_id": session.participant_id, "accounts": documents},
    )
    return EXIT_OK


register_command(
    Command(
        "balances",
        "own accounts and their balances",
        _balances_arguments,
        run_balances,
        description="List the participant's accounts with posted and pending debits and "
        "credits, the net position and the funds available under the debit limit. "
        "--json gives exact integer minor units.",
    )
)


# --- quote ----------------------------------------------------------------------------------


def _quote_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument(
        "--from-currency",
        default=defaults.home_currency,
        metavar="CODE",
        help=f"currency sent (default {defaults.home_currency})",
    )
    parser.add_argument(
        "--to-currency",
        default=defaults.foreign_currency,
        metavar="CODE",
        help=f"currency received (default {defaults.foreign_currency})",
    )
    fixed = parser.add_mutually_exclusive_group(required=True)
    fixed.add_argument("--send", metavar="AMOUNT", help="fix the amount sent, e.g. 1250.00")
    fixed.add_argument("--receive", metavar="AMOUNT", help="fix the amount received")
    parser.add_argument(
        "--fx-provider",
        default=defaults.fx_provider_id,
        metavar="ID",
        help=f"the FX provider whose rate to use (default {defaults.fx_provider_id})",
    )
    parser.add_argument(
        "--expiry-seconds",
        type=int,
        default=0,
        metavar="SECONDS",
        help="seconds until the quote expires, 1..3600 (default: the hub's, 600)",
    )
    _add_instruction_id(parser)


def quote_document(quote: payment_pb2.Quote) -> dict[str, Any]:
    return {
        "quote_id": quote.quote_id,
        "fx_provider_id": quote.fx_provider_id,
        "rate": quote.rate,
        "send": money_json(quote.send),
        "receive": money_json(quote.receive),
        "fee": money_json(quote.fee),
        "issued_at": time_text(quote.issued_at),
        "expires_at": time_text(quote.expires_at),
        "used_by_uetr": quote.used_by_uetr,
    }


async def run_quote(session: Session, options: argparse.Namespace) -> int:
    if options.send is not None:
        fixed_side = payment_pb2.FIXED_SIDE_SEND
        amount = parse_amount(options.send, options.from_currency)
    else:
        fixed_side = payment_pb2.FIXED_SIDE_RECEIVE
        amount = parse_amount(options.receive, options.to_currency)
    instruction_id = session.instruction_id(options)

    def build(identifier: str) -> payment_pb2.RequestQuoteRequest:
        instruction = payment_pb2.RequestQuoteInstruction(
            instruction_id=identifier,
            participant_id=session.participant_id,
            instruction_type=instruction_type(payment_pb2.RequestQuoteInstruction),
            fx_provider_id=options.fx_provider,
            source_currency=options.from_currency,
            target_currency=options.to_currency,
            fixed_side=fixed_side,
            amount_minor=amount,
            expiry_seconds=options.expiry_seconds,
        )
        return payment_pb2.RequestQuoteRequest(instruction=session.sign(instruction))

    response = await session.retrying.write(
        session.payments.RequestQuote, build, instruction_id=instruction_id, label="quote"
    )
    document = {"result": commit_status(response.result), **quote_document(response.quote)}
    if session.output.json:
        session.output.document(document)
    else:
        quote = response.quote
        session.output.document(
            {
                "quote": quote.quote_id,
                "result": document["result"],
                "rate": quote.rate,
                "send": money_text(quote.send),
                "receive": money_text(quote.receive),
                "fee": money_text(quote.fee),
                "expires at": time_text(quote.expires_at),
            }
        )
    return EXIT_OK


register_command(
    Command(
        "quote",
        "request a firm FX quote",
        _quote_arguments,
        run_quote,
        signs=True,
        description="Ask the FX provider's latest rate for an amount fixed on one side. "
        "The quote id (the instruction id) is what `pay --quote-id` executes, before it expires.",
    )
)


# --- pay ------------------------------------------------------------------------------------


def _party_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    group = parser.add_argument_group(f"{role} (a Party of payment.proto)")
    group.add_argument(f"--{role}-name", required=True, metavar="NAME", help="name on the account")
    group.add_argument(f"--{role}-iban", metavar="IBAN", help="IBAN (e.g. a Pakistani one)")
    group.add_argument(
        f"--{role}-account-number", metavar="DIGITS", help="US account number (with routing)"
    )
    group.add_argument(
        f"--{role}-routing-number", metavar="ABA", help="ABA routing number of the account"
    )
    group.add_argument(f"--{role}-lei", metavar="LEI", help="ISO 17442 LEI, optional")
    group.add_argument(
        f"--{role}-country", required=True, metavar="CC", help="ISO 3166-1 alpha-2 residence"
    )
    group.add_argument(
        f"--{role}-address-line",
        action="append",
        default=[],
        metavar="LINE",
        help="postal address line (repeat, at most 7)",
    )


def party_from(options: argparse.Namespace, role: str) -> payment_pb2.Party:
    def value(name: str) -> Any:
        return getattr(options, f"{role}_{name}".replace("-", "_"))

    return payment_pb2.Party(
        name=value("name"),
        iban=value("iban") or "",
        account_number=value("account_number") or "",
        aba_routing_number=value("routing_number") or "",
        lei=value("lei") or "",
        country=value("country"),
        address_lines=value("address_line"),
    )


def _pay_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument(
        "--creditor-agent",
        required=True,
        metavar="ID",
        help="the creditor's bank: a participant id, e.g. bank-pk",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--quote-id", metavar="ID", help="cross-currency: the quote to execute")
    what.add_argument("--amount", metavar="AMOUNT", help="same-currency: the amount, e.g. 100.00")
    parser.add_argument(
        "--currency",
        default=defaults.home_currency,
        metavar="CODE",
        help=f"currency of --amount (default {defaults.home_currency})",
    )
    parser.add_argument(
        "--uetr", metavar="UUID", help="the payment's UETR (UUID v4); default a new one"
    )
    parser.add_argument(
        "--end-to-end-id", metavar="ID", help="the debtor's end-to-end id; default from the UETR"
    )
    parser.add_argument(
        "--remittance-information", default="", metavar="TEXT", help="e.g. an invoice number"
    )
    parser.add_argument(
        "--charge-bearer", choices=sorted(CHARGE_BEARERS), help="who bears the charges"
    )
    _add_instruction_id(parser)
    _party_arguments(parser, "debtor")
    _party_arguments(parser, "creditor")


def payment_document(payment: payment_pb2.Payment) -> dict[str, Any]:
    return {
        "uetr": payment.uetr,
        "end_to_end_id": payment.end_to_end_id,
        "instruction_id": payment.instruction_id,
        "status": enum_name(payment_pb2.PaymentStatus, payment.status, "PAYMENT_STATUS_"),
        "reason_code": payment.reason_code,
        "debtor_agent_id": payment.debtor_agent_id,
        "creditor_agent_id": payment.creditor_agent_id,
        "fx_provider_id": payment.fx_provider_id,
        "quote_id": payment.quote_id,
        "send": money_json(payment.send),
        "receive": money_json(payment.receive),
        "fee": money_json(payment.fee),
        "rate": payment.rate,
        "debtor": json_format.MessageToDict(payment.debtor, preserving_proto_field_name=True),
        "creditor": json_format.MessageToDict(payment.creditor, preserving_proto_field_name=True),
        "remittance_information": payment.remittance_information,
        "screening_score": payment.screening_score,
        "screening_match": payment.screening_match,
        "reporting_flags": list(payment.reporting_flags),
        "transaction_id": payment.transaction_id,
        "history": [change_document(change) for change in payment.history],
    }


def change_document(change: payment_pb2.PaymentStatusChange) -> dict[str, Any]:
    return {
        "status": enum_name(payment_pb2.PaymentStatus, change.status, "PAYMENT_STATUS_"),
        "reason_code": change.reason_code,
        "reason": change.reason,
        "at": time_text(change.at),
        "journal_index": change.receipt.journal_index if change.HasField("receipt") else None,
    }


def print_payment(session: Session, payment: payment_pb2.Payment, result: str = "") -> None:
    document = payment_document(payment)
    if result:
        document = {"result": result, **document}
    if session.output.json:
        session.output.document(document)
        return
    summary = {
        "uetr": payment.uetr,
        "status": document["status"] + (f" {payment.reason_code}" if payment.reason_code else ""),
        "end-to-end id": payment.end_to_end_id,
        "debtor agent": payment.debtor_agent_id,
        "creditor agent": payment.creditor_agent_id,
        "send": money_text(payment.send),
        "receive": money_text(payment.receive),
        "fee": money_text(payment.fee),
        "rate": payment.rate,
        "transaction": payment.transaction_id,
    }
    if result:
        summary = {"result": result, **summary}
    if payment.screening_match:
        summary["screening"] = f"{payment.screening_match} ({payment.screening_score})"
    session.output.document(summary)
    if payment.history:
        session.output.line("")
        session.output.table(
            ["at", "status", "reason", "journal index"],
            [
                [
                    change["at"],
                    change["status"],
                    change["reason_code"] or change["reason"],
                    change["journal_index"],
                ]
                for change in document["history"]
            ],
        )


async def run_pay(session: Session, options: argparse.Namespace) -> int:
    uetr = options.uetr or str(uuid.uuid4())
    end_to_end_id = options.end_to_end_id or f"E2E-{uetr.replace('-', '')[:31]}"
    if len(end_to_end_id) > END_TO_END_ID_LENGTH_MAX:
        raise ClientError(
            f"expected an end-to-end id of at most 35 characters, got {end_to_end_id!r}"
        )
    amount = (
        common_pb2.Money(
            amount_minor=parse_amount(options.amount, options.currency), currency=options.currency
        )
        if options.amount is not None
        else None
    )
    instruction_id = session.instruction_id(options)
    debtor = party_from(options, "debtor")
    creditor = party_from(options, "creditor")

    def build(identifier: str) -> payment_pb2.SubmitPaymentRequest:
        instruction = payment_pb2.PaymentInstruction(
            instruction_id=identifier,
            participant_id=session.participant_id,
            instruction_type=instruction_type(payment_pb2.PaymentInstruction),
            uetr=uetr,
            end_to_end_id=end_to_end_id,
            quote_id=options.quote_id or "",
            debtor=debtor,
            creditor=creditor,
            creditor_agent_id=options.creditor_agent,
            remittance_information=options.remittance_information,
            charge_bearer=CHARGE_BEARERS.get(
                options.charge_bearer or "", payment_pb2.CHARGE_BEARER_UNSPECIFIED
            ),
        )
        if amount is not None:
            instruction.amount.CopyFrom(amount)
        return payment_pb2.SubmitPaymentRequest(instruction=session.sign(instruction))

    label = f"pay (--uetr {uetr} --end-to-end-id {end_to_end_id})"
    response = await session.retrying.write(
        session.payments.SubmitPayment, build, instruction_id=instruction_id, label=label
    )
    print_payment(session, response.payment, commit_status(response.result))
    return EXIT_OK


register_command(
    Command(
        "pay",
        "submit a payment (pacs.008-shaped)",
        _pay_arguments,
        run_pay,
        signs=True,
        description="Submit a payment to another bank: cross-currency with --quote-id, or "
        "same-currency with --amount. The hub screens the parties, reserves the funds and "
        "settles both legs together (ACSC), holds it for review (PDNG) or rejects it (RJCT).",
    )
)


# --- status ---------------------------------------------------------------------------------


def _status_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument("--uetr", required=True, metavar="UUID", help="the payment's UETR")


async def run_status(session: Session, options: argparse.Namespace) -> int:
    response = await session.retrying.call(
        session.payments.GetPayment,
        payment_pb2.GetPaymentRequest(uetr=options.uetr),
        label=f"status of {options.uetr}",
    )
    print_payment(session, response.payment)
    return EXIT_OK


register_command(
    Command(
        "status",
        "a payment and its status history, by UETR",
        _status_arguments,
        run_status,
        description="Show a payment (as debtor or creditor agent) with its pacs.002 status "
        "history: ACSP, PDNG, ACSC, RJCT with a reason code.",
    )
)


# --- watch ----------------------------------------------------------------------------------


def _watch_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument("--uetr", metavar="UUID", help="only this payment")
    parser.add_argument(
        "--movements",
        action="store_true",
        help="stream own ledger movements (journal entries on own accounts) instead",
    )
    parser.add_argument(
        "--from-index",
        type=int,
        default=None,
        metavar="N",
        help="with --movements: first journal index (default: from now on)",
    )
    parser.add_argument(
        "--stop-at-end",
        action="store_true",
        help="with --movements: stop after the last entry committed when the call started",
    )
    parser.add_argument(
        "--count", type=int, default=0, metavar="N", help="stop after N events (default: never)"
    )


async def _watch_stream(
    session: Session,
    open_stream: Callable[[], Any],
    handle: Callable[[Any], int],
    count_max: int,
    label: str,
) -> int:
    """Consume a server stream, reconnecting after UNAVAILABLE with the retry backoff.

    ``handle`` returns how many events a message produced. A stream that
    delivered something resets the count of failed reconnections.
    """
    seen = 0
    failures = 0
    policy = session.retrying.policy
    while True:
        call = open_stream()
        try:
            async for message in call:
                failures = 0
                seen += handle(message)
                if count_max and seen >= count_max:
                    call.cancel()
                    return EXIT_OK
            return EXIT_OK
        except grpc.RpcError as error:
            code = error.code() if callable(getattr(error, "code", None)) else None
            if code != grpc.StatusCode.UNAVAILABLE:
                raise
            failures += 1
            if failures >= WATCH_RECONNECTS_MAX:
                raise RetriesExhausted(error, failures, label) from error
            pause = session.retrying.random.uniform(
                0.0, policy.backoff_ceiling_seconds(failures - 1)
            )
            sys.stderr.write(
                f"{label}: stream lost ({code.name}); reconnecting in {pause:.2f} s; "
                "changes in the gap are not replayed (use status --uetr)\n"
            )
            await session.retrying.sleep(pause)


async def run_watch(session: Session, options: argparse.Namespace) -> int:
    if options.movements:
        return await _watch_movements(session, options)
    request = payment_pb2.WatchPaymentsRequest(uetr=options.uetr or "")

    def handle(message: payment_pb2.WatchPaymentsResponse) -> int:
        document = {"uetr": message.uetr, **change_document(message.change)}
        if session.output.json:
            session.output.line(json_line(document))
        else:
            reason = document["reason_code"] or document["reason"]
            session.output.line(
                f"{document['at']}  {message.uetr}  {document['status']}"
                + (f"  {reason}" if reason else "")
            )
        return 1

    return await _watch_stream(
        session,
        lambda: session.payments.WatchPayments(request),
        handle,
        options.count,
        "watch payments",
    )


async def _watch_movements(session: Session, options: argparse.Namespace) -> int:
    own = {account.account_id for account in await list_own_accounts(session)}
    position = options.from_index
    if position is None:
        position = 0
        if own:
            # "From now on": a latest balance reflects every entry up to the
            # journal's last index, so the next entry is one past it.
            response = await session.retrying.call(
                session.ledger.GetBalance,
                ledger_pb2.GetBalanceRequest(account_id=min(own)),
                label="journal position",
            )
            position = response.balance.as_of_index + 1
    next_index = [position]

    def handle(message: ledger_pb2.WatchJournalResponse) -> int:
        entry = message.entry
        next_index[0] = entry.receipt.journal_index + 1
        transaction = entry.transaction
        lines = 0
        for posting in transaction.postings:
            if posting.account_id not in own:
                continue
            document = {
                "journal_index": entry.receipt.journal_index,
                "committed_at": time_text(entry.committed_at),
                "kind": enum_name(ledger_pb2.EntryKind, entry.kind, "ENTRY_KIND_"),
                "transaction_id": transaction.transaction_id,
                "code": transaction.code,
                "reference": transaction.reference,
                "account_id": posting.account_id,
                "side": enum_name(ledger_pb2.Side, posting.side, "SIDE_"),
                "amount_minor": posting.amount_minor,
                "currency": posting.currency,
            }
            if session.output.json:
                session.output.line(json_line(document))
            else:
                session.output.line(
                    f"{document['journal_index']:>8}  {document['committed_at']}  "
                    f"{document['account_id']}  {document['side']:<6} "
                    f"{format_minor(posting.amount_minor, posting.currency):>18} "
                    f"{posting.currency}  {transaction.code}  {transaction.reference}"
                )
            lines += 1
        return lines

    def open_stream() -> Any:
        # After a reconnection, resume at the entry after the last one seen.
        return session.ledger.WatchJournal(
            ledger_pb2.WatchJournalRequest(
                from_index=next_index[0], stop_at_end=options.stop_at_end
            )
        )

    return await _watch_stream(session, open_stream, handle, options.count, "watch movements")


def json_line(document: dict[str, Any]) -> str:
    """One event per line (JSON Lines): a stream has no single document."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


register_command(
    Command(
        "watch",
        "stream status changes of own payments (or own ledger movements)",
        _watch_arguments,
        run_watch,
        description="Print each status change of the participant's payments as it happens "
        "(PaymentService.WatchPayments); with --movements, each posting on its own accounts "
        "(LedgerService.WatchJournal). --json prints one JSON object per line.",
    )
)


# --- statement ------------------------------------------------------------------------------


def _date(text: str) -> str:
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _statement_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument(
        "--account",
        metavar="ID",
        help="the account (default: the settlement account in "
        f"{defaults.home_currency}, settlement:<participant>:{defaults.home_currency})",
    )
    parser.add_argument(
        "--from",
        dest="from_date",
        type=_date,
        required=True,
        metavar="DATE",
        help="first day, YYYY-MM-DD (UTC)",
    )
    parser.add_argument(
        "--to",
        dest="to_date",
        type=_date,
        required=True,
        metavar="DATE",
        help="last day, YYYY-MM-DD (UTC), inclusive",
    )
    parser.add_argument(
        "--format",
        choices=sorted(STATEMENT_FORMATS),
        default="camt.053",
        help="camt.053 statement (default) or camt.054 notifications",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write the XML")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def write_file_atomically(path: Path, content: bytes, *, replace: bool) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file."""
    if path.exists() and not replace:
        raise ClientError(f"expected {path} not to exist; use --force to replace it")
    directory = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def run_statement(session: Session, options: argparse.Namespace) -> int:
    if options.from_date > options.to_date:
        raise ClientError(
            f"expected --from on or before --to, got {options.from_date} > {options.to_date}"
        )
    account = options.account or session.settlement_account(session.defaults.home_currency)
    response = await session.retrying.call(
        session.payments.GetAccountStatement,
        payment_pb2.GetAccountStatementRequest(
            account_id=account,
            from_date=options.from_date,
            to_date=options.to_date,
            format=STATEMENT_FORMATS[options.format],
        ),
        label=f"statement of {account}",
    )
    content = bytes(response.xml)
    if len(content) > STATEMENT_SIZE_MAX_BYTES:
        raise ClientError(f"expected a statement of at most {STATEMENT_SIZE_MAX_BYTES} bytes")
    path = Path(options.out)
    write_file_atomically(path, content, replace=options.force)
    session.output.document(
        {
            "account_id": account,
            "format": options.format,
            "from": options.from_date,
            "to": options.to_date,
            "file": str(path),
            "bytes": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
    )
    return EXIT_OK


register_command(
    Command(
        "statement",
        "an account statement (camt.053) to a file",
        _statement_arguments,
        run_statement,
        description="Fetch an ISO 20022 camt.053 statement (or camt.054 notifications) of an "
        "account for a date range and write the XML to --out.",
    )
)


# --- Entry point ----------------------------------------------------------------------------


def build_parser(defaults: BankDefaults) -> argparse.ArgumentParser:
    for module in EXTENSION_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog=defaults.program,
        description=f"Reference client of bank {defaults.participant_id} "
        f"(home currency {defaults.home_currency}) at the settlement hub. "
        "Exit status: 0 done, 1 refused by the hub, 2 usage error or no answer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        sub = commands.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.add_arguments(sub, defaults)
        add_output_arguments(sub)
        add_connection_arguments(sub, defaults.participant_id)
    return parser


async def run(
    command: Command,
    options: argparse.Namespace,
    defaults: BankDefaults,
    *,
    retrying: Retrying | None = None,
) -> int:
    """Connect as the flags say and run ``command``; every failure becomes an exit status."""
    output = Output(json=options.json)
    try:
        identity = identity_from_arguments(options, signing=command.signs)
        key = load_signing_key(identity.signing_key_path) if identity.signing_key_path else None
        connection = ConnectionOptions(options.server, options.tls_server_name)
        async with open_channel(identity, connection) as channel:
            session = Session(
                defaults=defaults,
                participant_id=identity.participant_id,
                channel=channel,
                output=output,
                retrying=retrying or Retrying(on_retry=print_retry),
                signing_key=key,
            )
            return await command.run(session, options)
    except (grpc.RpcError, RetriesExhausted, ClientError, SigningError, OSError) as error:
        return report_failure(error, output, defaults.program)


async def main_async(
    defaults: BankDefaults, argv: Sequence[str] | None = None, *, retrying: Retrying | None = None
) -> int:
    """:func:`main` on the caller's event loop (a program that already runs one)."""
    parser = build_parser(defaults)
    try:
        options = parser.parse_args(argv)
    except SystemExit as exit_request:
        return EXIT_OK if exit_request.code in (0, None) else EXIT_USAGE
    return await run(COMMANDS[options.command], options, defaults, retrying=retrying)


def main(defaults: BankDefaults, argv: Sequence[str] | None = None) -> int:
    """The command line: parse ``argv``, run the command, return the exit status."""
    return asyncio.run(main_async(defaults, argv))
