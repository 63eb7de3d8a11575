"""Offtake commands of the bank client (OfftakeService, offtake.proto).

Registered into :mod:`clients.bank` through its extension point, so both
``python -m clients.us_bank`` (the buyer's bank) and ``python -m
clients.pk_bank`` (the seller's bank) have them; ``offtake-fixings`` is the
operator's (``--participant operator``). The steps of a lot, and who sends
them: the seller's bank ships (``offtake-ship``), invoices provisionally
(``offtake-provisional-invoice``), prices the lot (``offtake-price``) and
issues the final invoice (``offtake-final-invoice``); the buyer's bank records
the arrival (``offtake-arrive``) and the final assays (``offtake-assays``);
whichever bank owes an invoice pays it (``offtake-pay``): the buyer's bank
through an FX quote into the seller's currency, the seller's bank a refund in
the contract currency.
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
    _party_arguments,
    commit_status,
    enum_name,
    money_json,
    money_text,
    party_from,
    payment_document,
    register_command,
)
from clients.common import EXIT_OK, ClientError, parse_amount, read_file
from clients.signing import instruction_type
from settlement.v1 import common_pb2, offtake_pb2, offtake_pb2_grpc, payment_pb2

METALS: Final = {
    "Cu": offtake_pb2.METAL_COPPER,
    "Au": offtake_pb2.METAL_GOLD,
    "Ag": offtake_pb2.METAL_SILVER,
}
"""Metal symbols on the command line and the enum they stand for."""

TERMS_SIZE_MAX_BYTES: Final = 64 * 1024
"""A contract's terms are a page of JSON; anything larger is a wrong file."""


def _stub(session: Session) -> offtake_pb2_grpc.OfftakeServiceAsyncStub:
    return offtake_pb2_grpc.OfftakeServiceStub(session.channel)


async def _write(
    session: Session,
    options: argparse.Namespace,
    message_type: type[Message],
    method: str,
    request_type: type[Message],
    **fields: Any,
) -> Any:
    """Sign ``message_type(**fields)`` and send it with one idempotency key across retries."""
    instruction_id = session.instruction_id(options)

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
        instruction_id=instruction_id,
        label=f"{options.command} (repeat with --instruction-id {instruction_id})",
    )


# --- Argument parsing -----------------------------------------------------------------------


def _metal_value(text: str) -> tuple[str, str]:
    """``Cu=9100.00`` -> ``("Cu", "9100.00")``."""
    name, separator, value = text.partition("=")
    if not separator or not name or not value:
        raise argparse.ArgumentTypeError(f"expected ELEMENT=VALUE (e.g. Cu=25.10), got {text!r}")
    return name, value


def _metal(symbol: str) -> offtake_pb2.Metal.ValueType:
    if symbol not in METALS:
        raise ClientError(f"expected a metal among {sorted(METALS)}, got {symbol!r}")
    return METALS[symbol]


def _date(text: str) -> str:
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _grades(pairs: list[tuple[str, str]]) -> list[offtake_pb2.AssayGrade]:
    return [offtake_pb2.AssayGrade(element=element, grade=grade) for element, grade in pairs]


def _prices(pairs: list[tuple[str, str]]) -> list[offtake_pb2.MetalPrice]:
    return [offtake_pb2.MetalPrice(metal=_metal(metal), price_usd=price) for metal, price in pairs]


def _lot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contract-id", required=True, metavar="ID", help="the contract")
    parser.add_argument("--lot-id", required=True, metavar="ID", help="the lot, e.g. 1")
    _add_instruction_id(parser)


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wet-tonnes", required=True, metavar="T", help="e.g. 10000.000")
    parser.add_argument("--moisture-percent", required=True, metavar="PCT", help="e.g. 8")


def _weights(options: argparse.Namespace) -> offtake_pb2.LotWeights:
    return offtake_pb2.LotWeights(
        wet_tonnes=options.wet_tonnes, moisture_percent=options.moisture_percent
    )


def _key(options: argparse.Namespace) -> dict[str, str]:
    return {"contract_id": options.contract_id, "lot_id": options.lot_id}


# --- Documents ------------------------------------------------------------------------------


def contract_document(contract: offtake_pb2.OfftakeContract) -> dict[str, Any]:
    receivable = contract.receivable
    return {
        "contract_id": contract.contract_id,
        "state": enum_name(
            offtake_pb2.OfftakeContractState, contract.state, "OFFTAKE_CONTRACT_STATE_"
        ),
        "buyer_bank_signed": contract.buyer_bank_signed,
        "seller_bank_signed": contract.seller_bank_signed,
        "lots": [lot_document(lot) for lot in contract.lots],
        "receivable_account_id": contract.receivable_account_id,
        "invoiced": money_json(receivable.invoiced),
        "received": money_json(receivable.received),
        "outstanding": money_json(receivable.outstanding),
        "ledger_balance": money_json(receivable.ledger_balance),
    }


def lot_document(lot: offtake_pb2.OfftakeLot) -> dict[str, Any]:
    return {
        "contract_id": lot.contract_id,
        "lot_id": lot.lot_id,
        "state": enum_name(offtake_pb2.OfftakeLotState, lot.state, "OFFTAKE_LOT_STATE_"),
        "quotational_period": [
            lot.quotational_period_first_day,
            lot.quotational_period_last_day,
        ],
        "quotational_period_prices": {
            enum_name(offtake_pb2.Metal, price.metal, "METAL_"): price.price_usd
            for price in lot.quotational_period_prices
        },
        "invoices": [invoice.invoice_id for invoice in lot.invoices],
    }


def invoice_document(invoice: offtake_pb2.OfftakeInvoice) -> dict[str, Any]:
    return {
        "invoice_id": invoice.invoice_id,
        "contract_id": invoice.contract_id,
        "lot_id": invoice.lot_id,
        "kind": enum_name(offtake_pb2.OfftakeInvoiceKind, invoice.kind, "OFFTAKE_INVOICE_KIND_"),
        "value": money_json(invoice.value),
        "total": money_json(invoice.total),
        "paid": money_json(invoice.paid),
        "outstanding": money_json(invoice.outstanding),
        "lines": [
            {
                "description": line.description,
                "quantity": line.quantity,
                "unit": line.unit,
                "rate": line.rate,
                "amount": money_json(line.amount),
            }
            for line in invoice.lines
        ],
        "payments": [
            {"uetr": payment.uetr, "amount": money_json(payment.amount)}
            for payment in invoice.payments
        ],
        "transaction_id": invoice.transaction_id,
    }


def _print_invoice(session: Session, invoice: offtake_pb2.OfftakeInvoice, result: str) -> None:
    document = {**({"result": result} if result else {}), **invoice_document(invoice)}
    if session.output.json:
        session.output.document(document)
        return
    session.output.document(
        {
            **({"result": result} if result else {}),
            "invoice": invoice.invoice_id,
            "kind": document["kind"],
            "value": money_text(invoice.value),
            "total": money_text(invoice.total),
            "paid": money_text(invoice.paid),
            "outstanding": money_text(invoice.outstanding),
        }
    )
    session.output.line("")
    session.output.table(
        ["description", "quantity", "unit", "rate", "amount"],
        [
            [line.description, line.quantity, line.unit, line.rate, money_text(line.amount)]
            for line in invoice.lines
        ],
        right_aligned=range(1, 5),
    )


def _print_lot(session: Session, lot: offtake_pb2.OfftakeLot, result: str) -> None:
    document = {"result": result, **lot_document(lot)}
    if session.output.json:
        session.output.document(document)
        return
    session.output.document(
        {
            "result": result,
            "contract": lot.contract_id,
            "lot": lot.lot_id,
            "state": document["state"],
            "quotational period": " .. ".join(document["quotational_period"]).strip(" ."),
            "prices (USD)": ", ".join(
                f"{metal} {price}" for metal, price in document["quotational_period_prices"].items()
            ),
        }
    )


def _print_contract(session: Session, contract: offtake_pb2.OfftakeContract, result: str) -> None:
    document = contract_document(contract)
    if result:
        document = {"result": result, **document}
    if session.output.json:
        session.output.document(document)
        return
    session.output.document(
        {
            **({"result": result} if result else {}),
            "contract": contract.contract_id,
            "state": document["state"],
            "signed by buyer's bank": contract.buyer_bank_signed,
            "signed by seller's bank": contract.seller_bank_signed,
            "invoiced": money_text(contract.receivable.invoiced),
            "received": money_text(contract.receivable.received),
            "outstanding": money_text(contract.receivable.outstanding),
        }
    )
    if contract.lots:
        session.output.line("")
        session.output.table(
            ["lot", "state", "invoices"],
            [[lot["lot_id"], lot["state"], " ".join(lot["invoices"])] for lot in document["lots"]],
        )


# --- offtake-sign ---------------------------------------------------------------------------


def _sign_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument(
        "--terms",
        required=True,
        metavar="FILE",
        help="the contract's terms, a ContractTerms message as protobuf JSON; both banks "
        "sign the same terms (the first signature makes a draft, the second activates it)",
    )
    _add_instruction_id(parser)


def load_terms(path: Path) -> offtake_pb2.ContractTerms:
    text = read_file(path, "contract terms", TERMS_SIZE_MAX_BYTES).decode("utf-8")
    try:
        return json_format.Parse(text, offtake_pb2.ContractTerms())
    except json_format.ParseError as error:
        raise ClientError(f"expected ContractTerms as protobuf JSON in {path}: {error}") from None


async def run_sign(session: Session, options: argparse.Namespace) -> int:
    terms = load_terms(Path(options.terms))
    response = await _write(
        session,
        options,
        offtake_pb2.SignContractInstruction,
        "SignContract",
        offtake_pb2.SignContractRequest,
        terms=terms,
    )
    _print_contract(session, response.contract, commit_status(response.result))
    return EXIT_OK


# --- offtake-fixings (operator) -------------------------------------------------------------


def _fixing(text: str) -> tuple[str, str, str]:
    """``2025-04-01:Cu=9100.00`` -> ``("2025-04-01", "Cu", "9100.00")``."""
    day, separator, rest = text.partition(":")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected DATE:METAL=PRICE, got {text!r}")
    metal, price = _metal_value(rest)
    return _date(day), metal, price


def _fixings_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument(
        "--fixing",
        dest="fixings",
        type=_fixing,
        action="append",
        required=True,
        metavar="DATE:METAL=PRICE",
        help="one day's price of a metal in USD, e.g. 2025-04-01:Cu=9100.00 (repeat)",
    )
    _add_instruction_id(parser)


async def run_fixings(session: Session, options: argparse.Namespace) -> int:
    fixings = [
        offtake_pb2.PriceFixing(metal=_metal(metal), fixing_date=day, price_usd=price)
        for day, metal, price in options.fixings
    ]
    response = await _write(
        session,
        options,
        offtake_pb2.PublishPriceFixingsInstruction,
        "PublishPriceFixings",
        offtake_pb2.PublishPriceFixingsRequest,
        fixings=fixings,
    )
    session.output.document(
        {
            "result": commit_status(response.result),
            "fixings": len(fixings),
            "days": len({fixing.fixing_date for fixing in fixings}),
        }
    )
    return EXIT_OK


# --- lot steps ------------------------------------------------------------------------------


def _ship_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _lot_arguments(parser)
    parser.add_argument("--bill-of-lading-number", required=True, metavar="NUMBER")
    parser.add_argument("--bill-of-lading-date", required=True, type=_date, metavar="DATE")
    _weights_arguments(parser)
    parser.add_argument(
        "--grade",
        dest="grades",
        type=_metal_value,
        action="append",
        default=[],
        metavar="ELEMENT=PERCENT",
        help="provisional assay, e.g. Cu=25 Au=5 (grams/dmt) As=0.35 (repeat)",
    )


async def run_ship(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        offtake_pb2.ShipLotInstruction,
        "ShipLot",
        offtake_pb2.ShipLotRequest,
        bill_of_lading_number=options.bill_of_lading_number,
        bill_of_lading_date=options.bill_of_lading_date,
        weights=_weights(options),
        provisional_grades=_grades(options.grades),
        **_key(options),
    )
    _print_lot(session, response.lot, commit_status(response.result))
    return EXIT_OK


def _provisional_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _lot_arguments(parser)
    parser.add_argument(
        "--price",
        dest="prices",
        type=_metal_value,
        action="append",
        required=True,
        metavar="METAL=USD",
        help="provisional price, e.g. Cu=9000.00 Au=2400.00 (repeat)",
    )


async def run_provisional(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        offtake_pb2.IssueProvisionalInvoiceInstruction,
        "IssueProvisionalInvoice",
        offtake_pb2.IssueProvisionalInvoiceRequest,
        provisional_prices=_prices(options.prices),
        **_key(options),
    )
    _print_invoice(session, response.invoice, commit_status(response.result))
    return EXIT_OK


def _arrive_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _lot_arguments(parser)
    parser.add_argument("--arrival-date", required=True, type=_date, metavar="DATE")
    _weights_arguments(parser)


async def run_arrive(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        offtake_pb2.RecordArrivalInstruction,
        "RecordArrival",
        offtake_pb2.RecordArrivalRequest,
        arrival_date=options.arrival_date,
        weights=_weights(options),
        **_key(options),
    )
    _print_lot(session, response.lot, commit_status(response.result))
    return EXIT_OK


def _assays_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _lot_arguments(parser)
    for party in ("buyer", "seller", "umpire"):
        parser.add_argument(
            f"--{party}-grade",
            type=_metal_value,
            action="append",
            default=[],
            metavar="ELEMENT=GRADE",
            help=f"the {party}'s final assay of an element (repeat)",
        )


async def run_assays(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        offtake_pb2.RecordFinalAssaysInstruction,
        "RecordFinalAssays",
        offtake_pb2.RecordFinalAssaysRequest,
        buyer_grades=_grades(options.buyer_grade),
        seller_grades=_grades(options.seller_grade),
        umpire_grades=_grades(options.umpire_grade),
        **_key(options),
    )
    _print_lot(session, response.lot, commit_status(response.result))
    return EXIT_OK


def _lot_only_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    _lot_arguments(parser)


async def run_price(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        offtake_pb2.PriceLotInstruction,
        "PriceLot",
        offtake_pb2.PriceLotRequest,
        **_key(options),
    )
    _print_lot(session, response.lot, commit_status(response.result))
    return EXIT_OK


async def run_final_invoice(session: Session, options: argparse.Namespace) -> int:
    response = await _write(
        session,
        options,
        offtake_pb2.IssueFinalInvoiceInstruction,
        "IssueFinalInvoice",
        offtake_pb2.IssueFinalInvoiceRequest,
        **_key(options),
    )
    _print_invoice(session, response.invoice, commit_status(response.result))
    return EXIT_OK


# --- offtake-pay ----------------------------------------------------------------------------


def _pay_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument("--invoice-id", required=True, metavar="ID", help="the invoice to pay")
    parser.add_argument(
        "--creditor-agent", required=True, metavar="ID", help="the other bank, e.g. bank-pk"
    )
    parser.add_argument(
        "--quote-id",
        metavar="ID",
        help="an FX quote for the amount (buyer's bank paying into the seller's currency); "
        "without it, a same-currency payment of --amount or of the outstanding amount",
    )
    parser.add_argument(
        "--amount", metavar="AMOUNT", help="part of the invoice (default: what is outstanding)"
    )
    parser.add_argument("--uetr", metavar="UUID", help="the payment's UETR; default a new one")
    _add_instruction_id(parser)
    _party_arguments(parser, "debtor")
    _party_arguments(parser, "creditor")


async def run_pay(session: Session, options: argparse.Namespace) -> int:
    found = await session.retrying.call(
        _stub(session).GetInvoice,
        offtake_pb2.GetInvoiceRequest(invoice_id=options.invoice_id),
        label=f"invoice {options.invoice_id}",
    )
    outstanding = found.invoice.outstanding
    uetr = options.uetr or str(uuid.uuid4())
    fields: dict[str, Any] = {
        "uetr": uetr,
        "end_to_end_id": options.invoice_id[:35],
        "debtor": party_from(options, "debtor"),
        "creditor": party_from(options, "creditor"),
        "creditor_agent_id": options.creditor_agent,
        "remittance_information": options.invoice_id,
        "charge_bearer": payment_pb2.CHARGE_BEARER_DEBT,
    }
    if options.quote_id:
        fields["quote_id"] = options.quote_id
    else:
        amount_minor = (
            parse_amount(options.amount, outstanding.currency)
            if options.amount
            else abs(outstanding.amount_minor)
        )
        if amount_minor <= 0:
            raise ClientError(f"expected something outstanding on {options.invoice_id}, got 0")
        fields["amount"] = common_pb2.Money(
            amount_minor=amount_minor, currency=outstanding.currency
        )
    response = await _write(
        session,
        options,
        payment_pb2.PaymentInstruction,
        "PayInvoice",
        offtake_pb2.PayInvoiceRequest,
        **fields,
    )
    result = commit_status(response.result)
    if session.output.json:
        session.output.document(
            {
                "result": result,
                "payment": payment_document(response.payment),
                "invoice": invoice_document(response.invoice),
            }
        )
        return EXIT_OK
    payment = response.payment
    session.output.document(
        {
            "result": result,
            "invoice": response.invoice.invoice_id,
            "uetr": payment.uetr,
            "status": enum_name(payment_pb2.PaymentStatus, payment.status, "PAYMENT_STATUS_"),
            "send": money_text(payment.send),
            "receive": money_text(payment.receive),
            "paid": money_text(response.invoice.paid),
            "outstanding": money_text(response.invoice.outstanding),
        }
    )
    return EXIT_OK


# --- reads ----------------------------------------------------------------------------------


def _contract_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument("--contract-id", required=True, metavar="ID")


async def run_contract(session: Session, options: argparse.Namespace) -> int:
    response = await session.retrying.call(
        _stub(session).GetContract,
        offtake_pb2.GetContractRequest(contract_id=options.contract_id),
        label=f"contract {options.contract_id}",
    )
    _print_contract(session, response.contract, "")
    return EXIT_OK


def _invoice_arguments(parser: argparse.ArgumentParser, defaults: BankDefaults) -> None:
    parser.add_argument("--invoice-id", required=True, metavar="ID")


async def run_invoice(session: Session, options: argparse.Namespace) -> int:
    response = await session.retrying.call(
        _stub(session).GetInvoice,
        offtake_pb2.GetInvoiceRequest(invoice_id=options.invoice_id),
        label=f"invoice {options.invoice_id}",
    )
    _print_invoice(session, response.invoice, "")
    return EXIT_OK


for _command in (
    Command(
        "offtake-sign",
        "sign an offtake contract's terms (each bank signs the same terms)",
        _sign_arguments,
        run_sign,
        signs=True,
    ),
    Command(
        "offtake-fixings",
        "publish daily metal price fixings (the operator: --participant operator)",
        _fixings_arguments,
        run_fixings,
        signs=True,
    ),
    Command(
        "offtake-ship",
        "record a lot shipped: bill of lading, weights, provisional assays (seller's bank)",
        _ship_arguments,
        run_ship,
        signs=True,
    ),
    Command(
        "offtake-provisional-invoice",
        "issue a lot's provisional invoice at provisional prices (seller's bank)",
        _provisional_arguments,
        run_provisional,
        signs=True,
    ),
    Command(
        "offtake-arrive",
        "record a lot's arrival and discharge weights (buyer's bank)",
        _arrive_arguments,
        run_arrive,
        signs=True,
    ),
    Command(
        "offtake-assays",
        "record a lot's final assays: buyer's, seller's, umpire's (buyer's bank)",
        _assays_arguments,
        run_assays,
        signs=True,
    ),
    Command(
        "offtake-price",
        "price a lot at its quotational period's average (seller's bank)",
        _lot_only_arguments,
        run_price,
        signs=True,
    ),
    Command(
        "offtake-final-invoice",
        "issue a lot's final invoice; a negative total is a refund (seller's bank)",
        _lot_only_arguments,
        run_final_invoice,
        signs=True,
    ),
    Command(
        "offtake-pay",
        "pay an invoice (or a refund) with a payment linked to it",
        _pay_arguments,
        run_pay,
        signs=True,
    ),
    Command("offtake-contract", "an offtake contract", _contract_arguments, run_contract),
    Command("offtake-invoice", "an offtake invoice", _invoice_arguments, run_invoice),
):
    register_command(_command)
