"""Reference client of the hub's operator: participants, accounts, funding, reviews.

Like the bank clients it speaks only gRPC and signs every instruction with
the operator's key. ``setup`` does in one process what a new hub needs before
banks can pay: it registers every participant of a development PKI (from its
``participants.json``), opens their settlement accounts and funds them.

Exit status: 0 done, 1 refused by the hub, 2 usage error or no answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from google.protobuf.message import Message

from clients.bank import BankDefaults, Command, Session, commit_status, run
from clients.common import (
    ClientError,
    PkiParticipant,
    add_connection_arguments,
    add_output_arguments,
    load_pki,
    parse_amount,
    read_file,
)
from clients.signing import instruction_type, new_instruction_id
from settlement.v1 import participant_pb2, participant_pb2_grpc, payment_pb2, payment_pb2_grpc

DEFAULTS: Final = BankDefaults(
    program="operator",
    participant_id="operator",
    home_currency="USD",
    foreign_currency="PKR",
)

ROLES: Final = {
    "bank": participant_pb2.ROLE_BANK,
    "fx_provider": participant_pb2.ROLE_FX_PROVIDER,
    "lender": participant_pb2.ROLE_LENDER,
    "operator": participant_pb2.ROLE_OPERATOR,
    "auditor": participant_pb2.ROLE_AUDITOR,
}

SETUP_ACCOUNTS: Final = {
    "bank-us": ("USD", "PKR"),
    "bank-pk": ("PKR", "USD"),
    "fx-provider": ("USD", "PKR"),
    "lender": ("USD",),
}
"""Settlement accounts ``setup`` opens: each bank's home and foreign currency,
the FX provider's liquidity in both, the lender's USD."""

SETUP_FUNDING_MAJOR: Final = {"USD": "250000000.00", "PKR": "70000000000.00"}
"""What ``setup`` prefunds each account with (USD 250 million; PKR 70 billion)."""

DECISIONS: Final = {
    "release": payment_pb2.REVIEW_DECISION_RELEASE,
    "reject": payment_pb2.REVIEW_DECISION_REJECT,
}


def _header(session: Session, message_type: type[Message]) -> dict[str, Any]:
    return {
        "instruction_id": new_instruction_id(session.participant_id),
        "participant_id": session.participant_id,
        "instruction_type": instruction_type(message_type),
    }


def _public_key(participant: PkiParticipant) -> bytes:
    key = load_pem_public_key(read_file(participant.signing_public_key_path, "public key"))
    if not isinstance(key, Ed25519PublicKey):
        raise ClientError(f"{participant.signing_public_key_path}: expected an Ed25519 key")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


async def _call(session: Session, method: Any, request: Message, instruction_id: str) -> Any:
    """One logical write: the same signed request on every retry."""
    return await session.retrying.call(
        method, request, label="operator", instruction_id=instruction_id
    )


async def register(session: Session, participant: PkiParticipant) -> str:
    stub = participant_pb2_grpc.ParticipantServiceStub(session.channel)
    header = _header(session, participant_pb2.RegisterParticipantInstruction)
    # One id per participant: running setup again is an idempotent retry.
    header["instruction_id"] = f"{session.participant_id}:register:{participant.participant_id}"
    instruction = participant_pb2.RegisterParticipantInstruction(
        **header,
        target_participant_id=participant.participant_id,
        legal_name=participant.legal_name,
        role=ROLES[participant.role],
        country=participant.country,
        bic=participant.bic,
        lei=participant.lei,
        aba_routing_number=participant.aba_routing_number,
        iban_bank_code=participant.iban_bank_code,
        certificate_common_name=participant.participant_id,
        signing_public_key=_public_key(participant),
    )
    response = await _call(
        session,
        stub.RegisterParticipant,
        participant_pb2.RegisterParticipantRequest(instruction=session.sign(instruction)),
        instruction.instruction_id,
    )
    return commit_status(response.result)


async def open_account(session: Session, owner: str, currency: str, limit_minor: int) -> str:
    stub = participant_pb2_grpc.ParticipantServiceStub(session.channel)
    header = _header(session, participant_pb2.OpenSettlementAccountInstruction)
    # participant.proto: the instruction id of an account opening is the account's id,
    # so opening the same account twice is an idempotent retry.
    header["instruction_id"] = f"settlement:{owner}:{currency}"
    instruction = participant_pb2.OpenSettlementAccountInstruction(
        **header,
        target_participant_id=owner,
        currency=currency,
        debit_limit_minor=limit_minor,
    )
    response = await _call(
        session,
        stub.OpenSettlementAccount,
        participant_pb2.OpenSettlementAccountRequest(instruction=session.sign(instruction)),
        instruction.instruction_id,
    )
    return commit_status(response.result)


async def fund(
    session: Session,
    account_id: str,
    amount_minor: int,
    currency: str,
    instruction_id: str | None = None,
) -> str:
    stub = participant_pb2_grpc.ParticipantServiceStub(session.channel)
    header = _header(session, participant_pb2.FundInstruction)
    if instruction_id is not None:
        header["instruction_id"] = instruction_id
    instruction = participant_pb2.FundInstruction(
        **header,
        account_id=account_id,
        amount_minor=amount_minor,
        currency=currency,
        reference="prefunding",
    )
    response = await _call(
        session,
        stub.Fund,
        participant_pb2.FundRequest(instruction=session.sign(instruction)),
        instruction.instruction_id,
    )
    return commit_status(response.result)


# --- Commands ---------------------------------------------------------------------------


def _setup_arguments(parser: argparse.ArgumentParser, _defaults: BankDefaults) -> None:
    parser.add_argument(
        "--skip-funding", action="store_true", help="register and open accounts only"
    )


async def _setup(session: Session, options: argparse.Namespace) -> int:
    if not options.pki:
        raise ClientError("setup reads the participants from --pki DIR")
    pki = load_pki(options.pki)
    rows = []
    for participant in pki.participants.values():
        if participant.participant_id == session.participant_id:
            continue
        rows.append(
            [participant.participant_id, "registered", await register(session, participant)]
        )
    for owner, currencies in SETUP_ACCOUNTS.items():
        if owner not in pki.participants:
            continue
        for currency in currencies:
            account_id = f"settlement:{owner}:{currency}"
            rows.append([account_id, "opened", await open_account(session, owner, currency, 0)])
            if not options.skip_funding:
                amount = parse_amount(SETUP_FUNDING_MAJOR[currency], currency)
                rows.append(
                    [
                        account_id,
                        f"funded {SETUP_FUNDING_MAJOR[currency]} {currency}",
                        await fund(session, account_id, amount, currency),
                    ]
                )
    session.output.table(["what", "step", "status"], rows)
    return 0


def _register_arguments(parser: argparse.ArgumentParser, _defaults: BankDefaults) -> None:
    parser.add_argument("--id", required=True, help="the participant of --pki to register")


async def _register(session: Session, options: argparse.Namespace) -> int:
    if not options.pki:
        raise ClientError("register reads the participant's data from --pki DIR")
    participant = load_pki(options.pki).participant(options.id)
    status = await register(session, participant)
    session.output.table(["participant", "status"], [[options.id, status]])
    return 0


def _account_arguments(parser: argparse.ArgumentParser, _defaults: BankDefaults) -> None:
    parser.add_argument("--owner", required=True, help="the participant holding the account")
    parser.add_argument("--currency", required=True, help="ISO 4217 code, e.g. USD")
    parser.add_argument(
        "--debit-limit", default="0", help="net debit cap in major units (default 0.00)"
    )


async def _open_account(session: Session, options: argparse.Namespace) -> int:
    limit = parse_amount(options.debit_limit, options.currency)
    status = await open_account(session, options.owner, options.currency, limit)
    account_id = f"settlement:{options.owner}:{options.currency}"
    session.output.table(["account", "status"], [[account_id, status]])
    return 0


def _fund_arguments(parser: argparse.ArgumentParser, _defaults: BankDefaults) -> None:
    parser.add_argument("--account", required=True, help="settlement account id to fund")
    parser.add_argument("--amount", required=True, help="major units, e.g. 1000000.00")
    parser.add_argument("--currency", required=True, help="ISO 4217 code of the account")


async def _fund(session: Session, options: argparse.Namespace) -> int:
    amount = parse_amount(options.amount, options.currency)
    status = await fund(session, options.account, amount, options.currency)
    session.output.table(
        ["account", "amount", "status"],
        [[options.account, f"{options.amount} {options.currency}", status]],
    )
    return 0


def _review_arguments(parser: argparse.ArgumentParser, _defaults: BankDefaults) -> None:
    parser.add_argument("--uetr", required=True, help="the held payment")
    parser.add_argument("--decision", required=True, choices=sorted(DECISIONS))
    parser.add_argument("--reason", default="", help="why, for the record (0..140 characters)")


async def _review(session: Session, options: argparse.Namespace) -> int:
    stub = payment_pb2_grpc.PaymentServiceStub(session.channel)
    instruction = payment_pb2.ReviewPaymentInstruction(
        **_header(session, payment_pb2.ReviewPaymentInstruction),
        uetr=options.uetr,
        decision=DECISIONS[options.decision],
        reason=options.reason,
    )
    response = await _call(
        session,
        stub.ReviewPayment,
        payment_pb2.ReviewPaymentRequest(instruction=session.sign(instruction)),
        instruction.instruction_id,
    )
    status = payment_pb2.PaymentStatus.Name(response.payment.status).removeprefix("PAYMENT_STATUS_")
    session.output.table(
        ["uetr", "status", "reason"], [[options.uetr, status, response.payment.reason_code]]
    )
    return 0


COMMANDS: Final = {
    command.name: command
    for command in (
        Command(
            "setup",
            "register every participant of --pki, open and fund their accounts",
            _setup_arguments,
            _setup,
            signs=True,
        ),
        Command(
            "register",
            "register one participant of --pki",
            _register_arguments,
            _register,
            signs=True,
        ),
        Command(
            "open-account",
            "open a participant's settlement account",
            _account_arguments,
            _open_account,
            signs=True,
        ),
        Command(
            "fund",
            "fund a settlement account from the hub's funding account",
            _fund_arguments,
            _fund,
            signs=True,
        ),
        Command(
            "review",
            "release or reject a payment held for review",
            _review_arguments,
            _review,
            signs=True,
        ),
    )
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="operator",
        description="Reference client of the settlement hub's operator. "
        "Exit status: 0 done, 1 refused by the hub, 2 usage error or no answer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub, DEFAULTS)
        add_output_arguments(sub)
        add_connection_arguments(sub, DEFAULTS.participant_id)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exit_request:
        return 0 if exit_request.code in (0, None) else 2
    import asyncio  # noqa: PLC0415 - only when a command runs

    return asyncio.run(run(COMMANDS[options.command], options, DEFAULTS))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COMMANDS", "fund", "main", "open_account", "register"]
