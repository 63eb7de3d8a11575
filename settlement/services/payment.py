"""PaymentService (payment.proto): FX rates and quotes, payments by UETR, ISO 20022 messages.

Thin: check the caller's role, parse the signed instruction (common checks 3
to 5), the common ``id_taken`` check against the journal (6), decode the
instruction into an order, call :class:`settlement.payments.flow.PaymentFlows`
and encode what it returns. The rules, their order and the settlement
mechanics are the flow's (see its module docstring).

``WatchPayments`` polls the status history every
:data:`WATCH_POLL_INTERVAL_SECONDS` (so every instance, writer or not, can
serve it); it sends its response headers once it has fixed its starting
position, so a client that waits for them (``call.initial_metadata()``)
misses no change made afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Final, TypeVar

from ledger.errors import AccountExistsWithDifferentFields, ExistsWithDifferentBody, IdMustBeValid
from settlement.auth import Caller, Role, current_caller
from settlement.hub import Hub
from settlement.instructions import ParsedInstruction, parse
from settlement.payments.flow import (
    PaymentFlows,
    PaymentOrder,
    PaymentSettings,
    QuoteOrder,
    RateOrder,
    ReviewOrder,
    Signed,
    check_uetr,
    is_valid_id,
)
from settlement.payments.projection import PartyRecord, PaymentRecord, Quote, StatusChange
from settlement.services import convert
from settlement.services.convert import Context, commit_result, timestamp
from settlement.v1 import common_pb2, payment_pb2, payment_pb2_grpc

SERVICE_NAME: Final = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name

WATCH_POLL_INTERVAL_SECONDS: Final = 0.1
"""How often an idle WatchPayments stream looks for new status changes."""

T = TypeVar("T")

FIXED_SIDE_FROM_PROTO: Final[dict[int, str]] = {
    payment_pb2.FIXED_SIDE_SEND: "send",
    payment_pb2.FIXED_SIDE_RECEIVE: "receive",
}
FIXED_SIDE_TO_PROTO: Final[dict[str, payment_pb2.FixedSide.ValueType]] = {
    "send": payment_pb2.FIXED_SIDE_SEND,
    "receive": payment_pb2.FIXED_SIDE_RECEIVE,
}
CHARGE_BEARER_FROM_PROTO: Final[dict[int, str]] = {
    payment_pb2.CHARGE_BEARER_DEBT: "DEBT",
    payment_pb2.CHARGE_BEARER_CRED: "CRED",
    payment_pb2.CHARGE_BEARER_SHAR: "SHAR",
}
CHARGE_BEARER_TO_PROTO: Final[dict[str, payment_pb2.ChargeBearer.ValueType]] = {
    "DEBT": payment_pb2.CHARGE_BEARER_DEBT,
    "CRED": payment_pb2.CHARGE_BEARER_CRED,
    "SHAR": payment_pb2.CHARGE_BEARER_SHAR,
}
STATUS_TO_PROTO: Final[dict[str, payment_pb2.PaymentStatus.ValueType]] = {
    "ACTC": payment_pb2.PAYMENT_STATUS_ACTC,
    "ACSP": payment_pb2.PAYMENT_STATUS_ACSP,
    "PDNG": payment_pb2.PAYMENT_STATUS_PDNG,
    "ACSC": payment_pb2.PAYMENT_STATUS_ACSC,
    "RJCT": payment_pb2.PAYMENT_STATUS_RJCT,
}
DECISION_FROM_PROTO: Final[dict[int, bool]] = {
    payment_pb2.REVIEW_DECISION_RELEASE: True,
    payment_pb2.REVIEW_DECISION_REJECT: False,
}
MESSAGE_TYPE_FROM_PROTO: Final[dict[int, str]] = {
    payment_pb2.PAYMENT_MESSAGE_TYPE_PACS_008: "pacs.008",
    payment_pb2.PAYMENT_MESSAGE_TYPE_PACS_002: "pacs.002",
}
STATEMENT_FORMAT_FROM_PROTO: Final[dict[int, str]] = {
    payment_pb2.STATEMENT_FORMAT_CAMT_053: "camt.053",
    payment_pb2.STATEMENT_FORMAT_CAMT_054: "camt.054",
}


class PaymentService(payment_pb2_grpc.PaymentServiceServicer):
    """Thin: decode, check the role, parse the instruction, call the flow, encode."""

    def __init__(self, hub: Hub, settings: PaymentSettings | None = None) -> None:
        self.hub = hub
        self.flows = PaymentFlows(hub, settings or PaymentSettings())

    # -- writes -----------------------------------------------------------------------------

    async def PublishRate(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.PublishRateRequest, context: Context
    ) -> payment_pb2.PublishRateResponse:
        caller = current_caller()
        caller.require(Role.FX_PROVIDER)
        parsed = parse(request.instruction, payment_pb2.PublishRateInstruction, caller)
        signed = await self._signed(parsed, caller)
        message = parsed.message
        order = RateOrder(
            source_currency=message.source_currency,
            target_currency=message.target_currency,
            rate=message.rate,
            valid_seconds=message.valid_seconds,
            fee_minor=message.fee_minor,
        )
        receipt, rate = await self._explained(
            parsed, caller, self.flows.publish_rate(caller, order, signed)
        )
        return payment_pb2.PublishRateResponse(
            result=commit_result(receipt), valid_until=timestamp(rate.valid_until_us)
        )

    async def RequestQuote(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.RequestQuoteRequest, context: Context
    ) -> payment_pb2.RequestQuoteResponse:
        caller = current_caller()
        caller.require(Role.BANK)
        parsed = parse(request.instruction, payment_pb2.RequestQuoteInstruction, caller)
        signed = await self._signed(parsed, caller)
        message = parsed.message
        order = QuoteOrder(
            fx_provider_id=message.fx_provider_id,
            source_currency=message.source_currency,
            target_currency=message.target_currency,
            fixed_side=FIXED_SIDE_FROM_PROTO.get(message.fixed_side),
            amount_minor=message.amount_minor,
            expiry_seconds=message.expiry_seconds,
        )
        receipt, quote = await self._explained(
            parsed, caller, self.flows.request_quote(caller, order, signed)
        )
        return payment_pb2.RequestQuoteResponse(
            result=commit_result(receipt), quote=quote_message(quote)
        )

    async def SubmitPayment(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.SubmitPaymentRequest, context: Context
    ) -> payment_pb2.SubmitPaymentResponse:
        caller = current_caller()
        caller.require(Role.BANK)
        parsed = parse(request.instruction, payment_pb2.PaymentInstruction, caller)
        signed = await self._signed(parsed, caller)
        receipt, payment = await self._explained(
            parsed, caller, self.flows.submit_payment(caller, payment_order(parsed.message), signed)
        )
        return payment_pb2.SubmitPaymentResponse(
            result=commit_result(receipt), payment=payment_message(payment)
        )

    async def ImportPacs008(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.ImportPacs008Request, context: Context
    ) -> payment_pb2.SubmitPaymentResponse:
        caller = current_caller()
        caller.require(Role.BANK)
        parsed = parse(request.instruction, payment_pb2.ImportPacs008Instruction, caller)
        signed = await self._signed(parsed, caller)
        message = parsed.message
        receipt, payment = await self._explained(
            parsed,
            caller,
            self.flows.import_pacs008(
                caller,
                bytes(message.pacs008_xml),
                message.creditor_agent_id,
                message.quote_id,
                signed,
            ),
        )
        return payment_pb2.SubmitPaymentResponse(
            result=commit_result(receipt), payment=payment_message(payment)
        )

    async def ReviewPayment(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.ReviewPaymentRequest, context: Context
    ) -> payment_pb2.ReviewPaymentResponse:
        caller = current_caller()
        caller.require(Role.OPERATOR)
        parsed = parse(request.instruction, payment_pb2.ReviewPaymentInstruction, caller)
        signed = await self._signed(parsed, caller)
        message = parsed.message
        order = ReviewOrder(
            uetr=message.uetr,
            release=DECISION_FROM_PROTO.get(message.decision),
            reason=message.reason,
        )
        receipt, payment = await self._explained(
            parsed, caller, self.flows.review_payment(caller, order, signed)
        )
        return payment_pb2.ReviewPaymentResponse(
            result=commit_result(receipt), payment=payment_message(payment)
        )

    # -- reads ------------------------------------------------------------------------------

    async def GetPayment(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.GetPaymentResponse:
        payment = await self.flows.payment_for(current_caller(), request.uetr)
        return payment_pb2.GetPaymentResponse(payment=payment_message(payment))

    async def WatchPayments(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.WatchPaymentsRequest, context: Context
    ) -> AsyncIterator[payment_pb2.WatchPaymentsResponse]:
        caller = current_caller()
        uetr = request.uetr or None
        if uetr is not None:
            check_uetr(uetr)
        position = await self.flows.watch_position()
        await context.send_initial_metadata(())
        while True:
            changes, read_to = await self.flows.changes_after(caller, position, uetr)
            for watched in changes:
                yield payment_pb2.WatchPaymentsResponse(
                    uetr=watched.uetr, change=status_change_message(watched.change)
                )
            if read_to == position:
                await asyncio.sleep(WATCH_POLL_INTERVAL_SECONDS)
            position = read_to

    async def GetPaymentMessage(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.GetPaymentMessageRequest, context: Context
    ) -> payment_pb2.GetPaymentMessageResponse:
        xml = await self.flows.payment_message(
            current_caller(), request.uetr, MESSAGE_TYPE_FROM_PROTO.get(request.message_type)
        )
        return payment_pb2.GetPaymentMessageResponse(xml=xml)

    async def GetAccountStatement(  # noqa: N802 - the RPC's name
        self, request: payment_pb2.GetAccountStatementRequest, context: Context
    ) -> payment_pb2.GetAccountStatementResponse:
        xml = await self.flows.account_statement(
            current_caller(),
            request.account_id,
            request.from_date,
            request.to_date,
            STATEMENT_FORMAT_FROM_PROTO.get(request.format),
        )
        return payment_pb2.GetAccountStatementResponse(xml=xml)

    # -- steps ------------------------------------------------------------------------------

    async def _signed(self, parsed: ParsedInstruction[Any], caller: Caller) -> Signed:
        """Common check 6 (``id_taken``) against the journal; the caller's own prior use.

        An id that can name nothing (``id_must_be_valid``) is refused first: it
        cannot be taken, and it is not looked up (PostgreSQL refuses a NUL in a query).
        """
        if not is_valid_id(parsed.instruction_id):
            raise convert.with_fields(
                IdMustBeValid(
                    f"instruction_id must be 1 to 128 printable ASCII characters without "
                    f"spaces, got {parsed.instruction_id!r:.80}"
                ),
                ["instruction_id"],
            )
        prior = await convert.check_id_not_taken(self.hub, parsed, caller)
        return Signed(
            instruction_id=parsed.instruction_id,
            instruction=parsed.signed,
            prior_payload=None if prior is None else prior.payload,
        )

    async def _explained(
        self, parsed: ParsedInstruction[Any], caller: Caller, call: Awaitable[T]
    ) -> T:
        """Await a flow; restate an idempotency conflict in the instruction's field names."""
        try:
            return await call
        except (ExistsWithDifferentBody, AccountExistsWithDifferentFields) as error:
            raise await asyncio.to_thread(
                convert.explain_conflict,
                self.hub.ledger,
                error,
                parsed.instruction_id,
                parsed.signed.payload,
                caller,
            ) from None


# -- messages <-> records --------------------------------------------------------------------


def party_record(message: payment_pb2.Party) -> PartyRecord:
    return PartyRecord(
        name=message.name,
        iban=message.iban,
        account_number=message.account_number,
        aba_routing_number=message.aba_routing_number,
        lei=message.lei,
        country=message.country,
        address_lines=tuple(message.address_lines),
    )


def payment_order(message: payment_pb2.PaymentInstruction) -> PaymentOrder:
    return PaymentOrder(
        uetr=message.uetr,
        end_to_end_id=message.end_to_end_id,
        quote_id=message.quote_id,
        amount_minor=message.amount.amount_minor,
        currency=message.amount.currency,
        debtor=party_record(message.debtor),
        creditor=party_record(message.creditor),
        creditor_agent_id=message.creditor_agent_id,
        ultimate_debtor=(
            party_record(message.ultimate_debtor) if message.HasField("ultimate_debtor") else None
        ),
        ultimate_creditor=(
            party_record(message.ultimate_creditor)
            if message.HasField("ultimate_creditor")
            else None
        ),
        remittance_information=message.remittance_information,
        charge_bearer=CHARGE_BEARER_FROM_PROTO.get(message.charge_bearer),
    )


def money(amount_minor: int, currency: str) -> common_pb2.Money:
    return common_pb2.Money(amount_minor=amount_minor, currency=currency)


def party_message(record: PartyRecord) -> payment_pb2.Party:
    return payment_pb2.Party(
        name=record.name,
        iban=record.iban,
        account_number=record.account_number,
        aba_routing_number=record.aba_routing_number,
        lei=record.lei,
        country=record.country,
        address_lines=list(record.address_lines),
    )


def quote_message(quote: Quote) -> payment_pb2.Quote:
    return payment_pb2.Quote(
        quote_id=quote.quote_id,
        requester_id=quote.requester_id,
        fx_provider_id=quote.fx_provider_id,
        send=money(quote.send_minor, quote.source_currency),
        receive=money(quote.receive_minor, quote.target_currency),
        rate=quote.rate,
        fee=money(quote.fee_minor, quote.source_currency),
        issued_at=timestamp(quote.issued_at_us),
        expires_at=timestamp(quote.expires_at_us),
        used_by_uetr=quote.used_by_uetr or "",
    )


def status_change_message(change: StatusChange) -> payment_pb2.PaymentStatusChange:
    return payment_pb2.PaymentStatusChange(
        status=STATUS_TO_PROTO[change.status],
        reason_code=change.reason_code,
        reason=change.reason,
        at=timestamp(change.committed_at_us),
        receipt=convert.receipt_message(change.journal_index, change.leaf_hash),
    )


def payment_message(payment: PaymentRecord) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        uetr=payment.uetr,
        end_to_end_id=payment.end_to_end_id,
        instruction_id=payment.instruction_id,
        debtor_agent_id=payment.debtor_agent_id,
        creditor_agent_id=payment.creditor_agent_id,
        fx_provider_id=payment.fx_provider_id,
        quote_id=payment.quote_id,
        send=money(payment.send_minor, payment.source_currency),
        receive=money(payment.receive_minor, payment.target_currency),
        fee=money(payment.fee_minor, payment.source_currency),
        rate=payment.rate,
        debtor=party_message(payment.debtor),
        creditor=party_message(payment.creditor),
        remittance_information=payment.remittance_information,
        status=STATUS_TO_PROTO[payment.status],
        reason_code=payment.reason_code,
        screening_score=payment.screening.score,
        screening_match=payment.screening.listed_name,
        reporting_flags=list(payment.reporting_flags),
        transaction_id=payment.transaction_id,
        history=[status_change_message(change) for change in payment.history],
        charge_bearer=CHARGE_BEARER_TO_PROTO.get(
            payment.charge_bearer, payment_pb2.CHARGE_BEARER_UNSPECIFIED
        ),
    )
