"""Loan commands of the bank client (LoanService, loan.proto).

Registered into :mod:`clients.bank` through its extension point; the lender
runs them with ``python -m clients.lender`` (participant ``lender``), the
borrower's bank with ``python -m clients.pk_bank``. The lender creates the
facility (``loan-create``); both sign its terms (``loan-sign``, checked
against the terms' SHA-256 the hub reports); the lender records conditions
precedent (``loan-satisfy``) and moves the facility on (``loan-advance``); the
borrower's bank requests a disbursement to a supplier (``loan-request``) that
the lender approves or rejects (``loan-review``: approval pays the supplier's
bank); the lender runs a business date's accrual (``loan-accrue``); the
borrower's bank repays (``loan-repay``, in PKR through an FX quote or in the
facility's currency).

JSON output (``--json``) is the response message as protobuf JSON (int64
amounts as strings, as protobuf's JSON mapping writes them).
"""

from __future__ import annotations

import argparse
import datetime
import uuid
from pathlib import Path
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message

from clients.bank import (
    BankDefaults,
    Command,
    Session,
    _add_instruction_id,
    commit_status,
    enum_name,
    money_text,
    register_command,
)
from clients.common import EXIT_OK, ClientError, parse_amount, read_file
from clients.signing import instruction_type
from settlement.v1 import loan_pb2, loan_pb2_grpc

TERMS_SIZE_MAX_BYTES: Final = 64 * 1024
"""A facility's terms are a page of JSON; anything larger is a wrong file."""

EVENTS: Final = {
    value.name.removeprefix("FACILITY_EVENT_").lower().replace("_", "-"): value.number
    for value in loan_pb2.FacilityEvent.DESCRIPTOR.values
    if value.number
}
"""``loan-advance --event`` names, e.g. ``conditions-precedent-met``."""

DECISIONS: Final = {
    "approve": loan_pb2.DISBURSEMENT_DECISION_APPROVE,
    "reject": loan_pb2.DISBURSEMENT_DECISION_REJECT,
}


def _stub(session: Session) -> loan_pb2_grpc.LoanServiceAsyncStub:
    return loan_pb2_grpc.LoanServiceStub(session.channel)


def accrual_instruction_id(facility_id: str, business_date: str) -> str:
    """loan.proto: a date's accrual has the id of the date, so it is run once."""
    return f"loan:{facility_id}:accrual:{business_date}"


async def _write(
    session: Session,
    options: argparse.Namespace,
    message_type: type[Message],
    method: str,
    request_type: type[Message],
    *,
    instruction_id: str | None = None,
    **fields: Any,
) -> Any:
    """Sign ``message_type(**fields)`` and send it with one idempotency key across retries."""
    key = instruction_id or session.instruction_id(options)

    def build(identifier: str) -> Message:
        instruction = message_type(
            instruction_id=identifier,
            participant_id=session.participant_id,
            instruction_type=instruction_type(message_type),
            **fields,
        )
        return request_type(instruction=session.sign(instruction))

    return await session.retrying.write(
        getattr(_stub(session), method),
        build,
        instruction_id=key,
        label=f"{options.command} (repeat with --instruction-id {key})",
    )


async def _facility(session: Session, facility_id: str) -> loan_pb2.Facility:
    response = await session.retrying.call(
        _stub(session).GetFacility,
        loan_pb2.GetFacilityRequest(facility_id=facility_id),
        label=f"facility {facility_id}",
    )
    return response.facility


def _date(text: str) -> str:
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def facility_summary(facility: loan_pb2.Facility) -> dict[str, Any]:
    return {
        "facility": facility.facility_id,
        "state": enum_name(loan_pb2.FacilityState, facility.state, "FACILITY_STATE_"),
        "business date": facility.business_date,
        "commitment": money_text(facility.commitment),
        "outstanding principal": money_text(facility.outstanding_principal),
        "interest accruing": money_text(facility.interest_accruing),
        "fees accruing": money_text(facility.fees_accruing),
        "outstanding conditions": " ".join(facility.outstanding_condition_ids) or "-",
    }


def _print(session: Session, response: Message, summary: dict[str, Any]) -> None:
    if session.output.json:
        session.output.document(
            json_format.MessageToDict(response, preserving_proto_field_name=True)
        )
    else:
        session.output.document(summary)


def _facility_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--facility-id", required=True, metavar="ID", help="the facility")


# --- commands -------------------------------------------------------------------------------


def _create_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument(
        "--terms",
        required=True,
        metavar="FILE",
        help="the facility's terms, a FacilityTerms message as protobuf JSON",
    )
    _add_instruction_id(parser)


async def run_create(session: Session, options: argparse.Namespace) -> int:
    path = Path(options.terms)
    text = read_file(path, "facility terms", TERMS_SIZE_MAX_BYTES).decode("utf-8")
    try:
        terms = json_format.Parse(text, loan_pb2.FacilityTerms())
    except json_format.ParseError as error:
        raise ClientError(f"expected FacilityTerms as protobuf JSON in {path}: {error}") from None
    response = await _write(
        session,
        options,
        loan_pb2.CreateFacilityInstruction,
        "CreateFacility",
        loan_pb2.CreateFacilityRequest,
        terms=terms,
    )
    summary = {"result": commit_status(response.result), **facility_summary(response.facility)}
    _print(session, response, summary)
    return EXIT_OK


def _sign_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument(
        "--terms-sha256",
        metavar="HEX",
        help="the terms' digest as agreed out of band (default: the one the hub reports)",
    )
    _add_instruction_id(parser)


async def run_sign(session: Session, options: argparse.Namespace) -> int:
    digest = options.terms_sha256 or (await _facility(session, options.facility_id)).terms_sha256
    response = await _write(
        session,
        options,
        loan_pb2.SignFacilityInstruction,
        "SignFacility",
        loan_pb2.SignFacilityRequest,
        facility_id=options.facility_id,
        terms_sha256=digest,
    )
    summary = {"result": commit_status(response.result), **facility_summary(response.facility)}
    _print(session, response, summary)
    return EXIT_OK


def _satisfy_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument("--condition-id", required=True, metavar="ID")
    parser.add_argument("--evidence", default="", metavar="TEXT", help="what shows it is met")
    _add_instruction_id(parser)


async def run_satisfy(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        loan_pb2.SatisfyConditionInstruction,
        "SatisfyCondition",
        loan_pb2.SatisfyConditionRequest,
        facility_id=options.facility_id,
        condition_id=options.condition_id,
        evidence=options.evidence,
    )
    summary = {"result": commit_status(response.result), **facility_summary(response.facility)}
    _print(session, response, summary)
    return EXIT_OK


def _advance_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument("--event", required=True, choices=sorted(EVENTS))
    parser.add_argument("--business-date", required=True, type=_date, metavar="DATE")
    parser.add_argument("--reason", default="", metavar="TEXT")
    _add_instruction_id(parser)


async def run_advance(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        loan_pb2.AdvanceFacilityInstruction,
        "AdvanceFacility",
        loan_pb2.AdvanceFacilityRequest,
        facility_id=options.facility_id,
        event=EVENTS[options.event],
        business_date=options.business_date,
        reason=options.reason,
    )
    summary = {"result": commit_status(response.result), **facility_summary(response.facility)}
    _print(session, response, summary)
    return EXIT_OK


def _request_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument("--supplier-name", required=True, metavar="NAME")
    parser.add_argument("--supplier-account-number", required=True, metavar="DIGITS")
    parser.add_argument("--supplier-bank-id", required=True, metavar="ID", help="e.g. bank-us")
    parser.add_argument("--supplier-bank-aba", required=True, metavar="ABA")
    parser.add_argument("--supplier-bank-bic", default="", metavar="BIC")
    parser.add_argument("--amount", required=True, metavar="AMOUNT", help="e.g. 20000000.00")
    parser.add_argument("--currency", default="USD", metavar="CODE")
    parser.add_argument("--invoice-reference", required=True, metavar="TEXT")
    parser.add_argument(
        "--value-date",
        type=_date,
        metavar="DATE",
        help="default: the facility's business date",
    )
    _add_instruction_id(parser)


def disbursement_summary(disbursement: loan_pb2.Disbursement) -> dict[str, Any]:
    return {
        "disbursement": disbursement.disbursement_id,
        "status": enum_name(
            loan_pb2.DisbursementStatus, disbursement.status, "DISBURSEMENT_STATUS_"
        ),
        "supplier": disbursement.supplier_name,
        "amount": money_text(disbursement.amount),
        "exposure fee": money_text(disbursement.exposure_fee),
        "value date": disbursement.value_date,
        "uetr": disbursement.uetr,
    }


async def run_request(session: Session, options: argparse.Namespace) -> int:
    value_date = options.value_date or (await _facility(session, options.facility_id)).business_date
    response = await _write(
        session,
        options,
        loan_pb2.RequestDisbursementInstruction,
        "RequestDisbursement",
        loan_pb2.RequestDisbursementRequest,
        facility_id=options.facility_id,
        supplier_name=options.supplier_name,
        supplier_account_number=options.supplier_account_number,
        supplier_bank_id=options.supplier_bank_id,
        supplier_bank_aba=options.supplier_bank_aba,
        supplier_bank_bic=options.supplier_bank_bic,
        amount_minor=parse_amount(options.amount, options.currency),
        currency=options.currency,
        invoice_reference=options.invoice_reference,
        value_date=value_date,
    )
    summary = {
        "result": commit_status(response.result),
        **disbursement_summary(response.disbursement),
    }
    _print(session, response, summary)
    return EXIT_OK


def _review_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument("--disbursement-id", required=True, metavar="ID")
    parser.add_argument("--decision", required=True, choices=sorted(DECISIONS))
    parser.add_argument("--reason", default="", metavar="TEXT")
    parser.add_argument("--uetr", metavar="UUID", help="the payment's UETR; default a new one")
    _add_instruction_id(parser)


async def run_review(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        loan_pb2.ReviewDisbursementInstruction,
        "ReviewDisbursement",
        loan_pb2.ReviewDisbursementRequest,
        facility_id=options.facility_id,
        disbursement_id=options.disbursement_id,
        decision=DECISIONS[options.decision],
        uetr=options.uetr or str(uuid.uuid4()),
        reason=options.reason,
    )
    summary = {
        "result": commit_status(response.result),
        **disbursement_summary(response.disbursement),
    }
    _print(session, response, summary)
    return EXIT_OK


def _accrue_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument(
        "--business-date", required=True, type=_date, metavar="DATE", help="the day accrued"
    )


async def run_accrue(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        loan_pb2.AccrueInterestInstruction,
        "AccrueInterest",
        loan_pb2.AccrueInterestRequest,
        instruction_id=accrual_instruction_id(options.facility_id, options.business_date),
        facility_id=options.facility_id,
        business_date=options.business_date,
    )
    accrual = response.accrual
    summary = {
        "result": commit_status(response.result),
        "facility": accrual.facility_id,
        "business date": accrual.business_date,
        "interest": money_text(accrual.interest),
        "commitment fee": money_text(accrual.commitment_fee),
        "default interest": money_text(accrual.default_interest),
    }
    _print(session, response, summary)
    return EXIT_OK


def _repay_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)
    parser.add_argument("--amount", required=True, metavar="AMOUNT", help="in --currency")
    parser.add_argument("--currency", default="USD", metavar="CODE", help="the facility's")
    parser.add_argument(
        "--quote-id",
        metavar="ID",
        help="an FX quote receiving --amount (e.g. PKR -> USD); default paid in --currency",
    )
    parser.add_argument("--uetr", metavar="UUID", help="the payment's UETR; default a new one")
    parser.add_argument(
        "--value-date", type=_date, metavar="DATE", help="default: the facility's business date"
    )
    _add_instruction_id(parser)


async def run_repay(session: Session, options: argparse.Namespace) -> int:
    value_date = options.value_date or (await _facility(session, options.facility_id)).business_date
    response = await _write(
        session,
        options,
        loan_pb2.RepayInstruction,
        "Repay",
        loan_pb2.RepayRequest,
        facility_id=options.facility_id,
        amount_minor=parse_amount(options.amount, options.currency),
        currency=options.currency,
        quote_id=options.quote_id or "",
        uetr=options.uetr or str(uuid.uuid4()),
        value_date=value_date,
    )
    repayment = response.repayment
    summary = {
        "result": commit_status(response.result),
        "repayment": repayment.repayment_id,
        "amount": money_text(repayment.amount),
        "sent": money_text(repayment.sent),
        "fees": money_text(repayment.fees),
        "interest": money_text(repayment.interest),
        "principal": money_text(repayment.principal),
        "outstanding principal": money_text(response.facility.outstanding_principal),
    }
    _print(session, response, summary)
    return EXIT_OK


def _facility_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _facility_argument(parser)


async def run_facility(session: Session, options: argparse.Namespace) -> int:
    facility = await _facility(session, options.facility_id)
    _print(session, loan_pb2.GetFacilityResponse(facility=facility), facility_summary(facility))
    return EXIT_OK


for _command in (
    Command(
        "loan-create",
        "create a facility from its terms (lender)",
        _create_arguments,
        run_create,
        signs=True,
    ),
    Command(
        "loan-sign",
        "sign a facility's terms (lender, borrower's bank)",
        _sign_arguments,
        run_sign,
        signs=True,
    ),
    Command(
        "loan-satisfy",
        "record a condition precedent satisfied (lender)",
        _satisfy_arguments,
        run_satisfy,
        signs=True,
    ),
    Command(
        "loan-advance",
        "move a facility on: conditions met, availability... (lender)",
        _advance_arguments,
        run_advance,
        signs=True,
    ),
    Command(
        "loan-request",
        "request a disbursement to a supplier (borrower's bank)",
        _request_arguments,
        run_request,
        signs=True,
    ),
    Command(
        "loan-review",
        "approve (and pay) or reject a disbursement (lender)",
        _review_arguments,
        run_review,
        signs=True,
    ),
    Command(
        "loan-accrue",
        "run a business date's interest and fee accrual (lender)",
        _accrue_arguments,
        run_accrue,
        signs=True,
    ),
    Command(
        "loan-repay",
        "repay: fees, then interest, then principal (borrower's bank)",
        _repay_arguments,
        run_repay,
        signs=True,
    ),
    Command("loan-facility", "a facility and its figures", _facility_arguments, run_facility),
):
    register_command(_command)
