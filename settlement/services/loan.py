"""LoanService (loan.proto): an export-credit facility from signing to repayment.

Thin: check the caller's role, parse the signed instruction (common checks 3
to 5), the common ``id_taken`` check against the journal (6), decode the
instruction into an order, call :class:`settlement.loans.flow.LoanFlows` and
encode what it returns. The rules, their order, the ledger design and the
payments are the flow's (see its module docstring and loan.proto).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, Final, TypeVar

from ledger.errors import (
    AccountExistsWithDifferentFields,
    ExistsWithDifferentBody,
    IntegrityError,
)
from settlement.auth import Caller, Role, current_caller
from settlement.hub import Hub
from settlement.instructions import MessageType, ParsedInstruction, parse
from settlement.loans import projection as loans_projection
from settlement.loans.daycount import DayCount
from settlement.loans.flow import (
    AccrualOrder,
    AdvanceOrder,
    ConditionOrder,
    DisbursementOrder,
    FacilityRecord,
    FixingOrder,
    LoanAccount,
    LoanFlows,
    RepayOrder,
    ReviewOrder,
    ScheduleMustExist,
    Signed,
    SignOrder,
    TermsOrder,
    account_id,
    check_facility_id,
    interest_period_end,
)
from settlement.loans.projection import DisbursementRow, EntryRef, FacilityRow, RepaymentRow
from settlement.loans.states import FacilityEvent, FacilityState
from settlement.loans.terms import (
    CURRENCY,
    ExposureFeeSettlement,
    ExposureFeeTiming,
    FixedRate,
    FloatingRate,
)
from settlement.payments.flow import PaymentFlows, PaymentSettings
from settlement.services import convert
from settlement.services.convert import Context, commit_result, receipt_message, timestamp
from settlement.v1 import common_pb2, loan_pb2, loan_pb2_grpc

SERVICE_NAME: Final = loan_pb2.DESCRIPTOR.services_by_name["LoanService"].full_name

T = TypeVar("T")

INTEREST_TYPE_FROM_PROTO: Final[Mapping[int, str]] = {
    loan_pb2.INTEREST_TYPE_FIXED: "fixed",
    loan_pb2.INTEREST_TYPE_FLOATING: "floating",
}
DAY_COUNT_FROM_PROTO: Final[Mapping[int, DayCount]] = {
    loan_pb2.DAY_COUNT_ACT_360: DayCount.ACT_360,
    loan_pb2.DAY_COUNT_THIRTY_360: DayCount.THIRTY_360,
}
DAY_COUNT_TO_PROTO: Final[Mapping[DayCount, loan_pb2.DayCount.ValueType]] = {
    DayCount.ACT_360: loan_pb2.DAY_COUNT_ACT_360,
    DayCount.THIRTY_360: loan_pb2.DAY_COUNT_THIRTY_360,
}
TIMING_FROM_PROTO: Final[Mapping[int, ExposureFeeTiming]] = {
    loan_pb2.EXPOSURE_FEE_TIMING_UPFRONT: ExposureFeeTiming.UPFRONT,
    loan_pb2.EXPOSURE_FEE_TIMING_PER_DISBURSEMENT: ExposureFeeTiming.PER_DISBURSEMENT,
}
TIMING_TO_PROTO: Final[Mapping[ExposureFeeTiming, loan_pb2.ExposureFeeTiming.ValueType]] = {
    ExposureFeeTiming.UPFRONT: loan_pb2.EXPOSURE_FEE_TIMING_UPFRONT,
    ExposureFeeTiming.PER_DISBURSEMENT: loan_pb2.EXPOSURE_FEE_TIMING_PER_DISBURSEMENT,
}
SETTLEMENT_FROM_PROTO: Final[Mapping[int, ExposureFeeSettlement]] = {
    loan_pb2.EXPOSURE_FEE_SETTLEMENT_FINANCED: ExposureFeeSettlement.FINANCED,
    loan_pb2.EXPOSURE_FEE_SETTLEMENT_PAID: ExposureFeeSettlement.PAID,
}
SETTLEMENT_TO_PROTO: Final[
    Mapping[ExposureFeeSettlement, loan_pb2.ExposureFeeSettlement.ValueType]
] = {
    ExposureFeeSettlement.FINANCED: loan_pb2.EXPOSURE_FEE_SETTLEMENT_FINANCED,
    ExposureFeeSettlement.PAID: loan_pb2.EXPOSURE_FEE_SETTLEMENT_PAID,
}
EVENT_FROM_PROTO: Final[Mapping[int, FacilityEvent]] = {
    loan_pb2.FacilityEvent.Value(f"FACILITY_EVENT_{event.name}"): event for event in FacilityEvent
}
EVENT_TO_PROTO: Final[Mapping[str, loan_pb2.FacilityEvent.ValueType]] = {
    event.value: loan_pb2.FacilityEvent.Value(f"FACILITY_EVENT_{event.name}")
    for event in FacilityEvent
}
STATE_TO_PROTO: Final[Mapping[str, loan_pb2.FacilityState.ValueType]] = {
    state.value: loan_pb2.FacilityState.Value(f"FACILITY_STATE_{state.name}")
    for state in FacilityState
}
DECISION_FROM_PROTO: Final[Mapping[int, bool]] = {
    loan_pb2.DISBURSEMENT_DECISION_APPROVE: True,
    loan_pb2.DISBURSEMENT_DECISION_REJECT: False,
}
DISBURSEMENT_STATUS_TO_PROTO: Final[Mapping[str, loan_pb2.DisbursementStatus.ValueType]] = {
    "requested": loan_pb2.DISBURSEMENT_STATUS_REQUESTED,
    "paid": loan_pb2.DISBURSEMENT_STATUS_PAID,
    "rejected": loan_pb2.DISBURSEMENT_STATUS_REJECTED,
}


class LoanService(loan_pb2_grpc.LoanServiceServicer):
    """Thin: decode, check the role, parse the instruction, call the flow, encode."""

    def __init__(self, hub: Hub, payments: PaymentFlows | None = None) -> None:
        self.hub = hub
        self.flows = LoanFlows(hub, payments or PaymentFlows(hub, PaymentSettings()))

    # -- writes -----------------------------------------------------------------------------

    async def CreateFacility(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.CreateFacilityRequest, context: Context
    ) -> loan_pb2.CreateFacilityResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.CreateFacilityInstruction, Role.LENDER
        )
        terms = parsed.message.terms
        order = TermsOrder(
            facility_id=terms.facility_id,
            borrower_id=terms.borrower_id,
            borrower_bank_id=terms.borrower_bank_id,
            guarantor_id=terms.guarantor_id,
            commitment_minor=terms.commitment_minor,
            currency=terms.currency,
            availability_start=terms.availability_start,
            availability_end=terms.availability_end,
            interest_type=INTEREST_TYPE_FROM_PROTO.get(terms.interest_type),
            fixed_rate_percent=terms.fixed_rate_percent,
            reference_rate=terms.reference_rate,
            margin_percent=terms.margin_percent,
            reference_floor_percent=terms.reference_floor_percent,
            day_count=DAY_COUNT_FROM_PROTO.get(terms.day_count),
            commitment_fee_percent=terms.commitment_fee_percent,
            exposure_fee_percent=terms.exposure_fee_percent,
            exposure_fee_timing=TIMING_FROM_PROTO.get(terms.exposure_fee_timing),
            exposure_fee_settlement=SETTLEMENT_FROM_PROTO.get(terms.exposure_fee_settlement),
            instalment_count=terms.instalment_count,
            grace_period_months=terms.grace_period_months,
            default_margin_percent=terms.default_margin_percent,
            conditions_precedent=tuple(
                (item.condition_id, item.description) for item in terms.conditions_precedent
            ),
            borrower_name=terms.borrower_name,
            borrower_iban=terms.borrower_iban,
        )
        receipt, facility_id = await self._explained(
            parsed, caller, self.flows.create_facility(caller, order, signed)
        )
        return loan_pb2.CreateFacilityResponse(
            result=commit_result(receipt), facility=await self._facility(caller, facility_id)
        )

    async def SignFacility(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.SignFacilityRequest, context: Context
    ) -> loan_pb2.SignFacilityResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.SignFacilityInstruction, Role.LENDER, Role.BANK
        )
        message = parsed.message
        order = SignOrder(facility_id=message.facility_id, terms_sha256=message.terms_sha256)
        receipt = await self._explained(
            parsed, caller, self.flows.sign_facility(caller, order, signed)
        )
        return loan_pb2.SignFacilityResponse(
            result=commit_result(receipt),
            facility=await self._facility(caller, message.facility_id),
        )

    async def SatisfyCondition(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.SatisfyConditionRequest, context: Context
    ) -> loan_pb2.SatisfyConditionResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.SatisfyConditionInstruction, Role.LENDER
        )
        message = parsed.message
        order = ConditionOrder(
            facility_id=message.facility_id,
            condition_id=message.condition_id,
            evidence=message.evidence,
        )
        receipt = await self._explained(
            parsed, caller, self.flows.satisfy_condition(caller, order, signed)
        )
        return loan_pb2.SatisfyConditionResponse(
            result=commit_result(receipt),
            facility=await self._facility(caller, message.facility_id),
        )

    async def AdvanceFacility(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.AdvanceFacilityRequest, context: Context
    ) -> loan_pb2.AdvanceFacilityResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.AdvanceFacilityInstruction, Role.LENDER
        )
        message = parsed.message
        order = AdvanceOrder(
            facility_id=message.facility_id,
            event=EVENT_FROM_PROTO.get(message.event),
            business_date=message.business_date,
            reason=message.reason,
        )
        receipt = await self._explained(
            parsed, caller, self.flows.advance_facility(caller, order, signed)
        )
        return loan_pb2.AdvanceFacilityResponse(
            result=commit_result(receipt),
            facility=await self._facility(caller, message.facility_id),
        )

    async def SetRateFixing(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.SetRateFixingRequest, context: Context
    ) -> loan_pb2.SetRateFixingResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.SetRateFixingInstruction, Role.LENDER
        )
        message = parsed.message
        order = FixingOrder(
            facility_id=message.facility_id,
            reference_rate=message.reference_rate,
            period_start=message.period_start,
            rate_percent=message.rate_percent,
        )
        receipt = await self._explained(
            parsed, caller, self.flows.set_rate_fixing(caller, order, signed)
        )
        return loan_pb2.SetRateFixingResponse(
            result=commit_result(receipt),
            facility=await self._facility(caller, message.facility_id),
        )

    async def RequestDisbursement(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.RequestDisbursementRequest, context: Context
    ) -> loan_pb2.RequestDisbursementResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.RequestDisbursementInstruction, Role.BANK
        )
        message = parsed.message
        order = DisbursementOrder(
            facility_id=message.facility_id,
            supplier_name=message.supplier_name,
            supplier_account_number=message.supplier_account_number,
            supplier_bank_id=message.supplier_bank_id,
            supplier_bank_aba=message.supplier_bank_aba,
            supplier_bank_bic=message.supplier_bank_bic,
            amount_minor=message.amount_minor,
            currency=message.currency,
            invoice_reference=message.invoice_reference,
            value_date=message.value_date,
        )
        receipt = await self._explained(
            parsed, caller, self.flows.request_disbursement(caller, order, signed)
        )
        return loan_pb2.RequestDisbursementResponse(
            result=commit_result(receipt),
            disbursement=await self._disbursement(caller, parsed.instruction_id),
        )

    async def ReviewDisbursement(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.ReviewDisbursementRequest, context: Context
    ) -> loan_pb2.ReviewDisbursementResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.ReviewDisbursementInstruction, Role.LENDER
        )
        message = parsed.message
        order = ReviewOrder(
            facility_id=message.facility_id,
            disbursement_id=message.disbursement_id,
            approve=DECISION_FROM_PROTO.get(message.decision),
            uetr=message.uetr,
            reason=message.reason,
        )
        receipt = await self._explained(
            parsed, caller, self.flows.review_disbursement(caller, order, signed)
        )
        return loan_pb2.ReviewDisbursementResponse(
            result=commit_result(receipt),
            disbursement=await self._disbursement(caller, message.disbursement_id),
            facility=await self._facility(caller, message.facility_id),
        )

    async def AccrueInterest(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.AccrueInterestRequest, context: Context
    ) -> loan_pb2.AccrueInterestResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.AccrueInterestInstruction, Role.LENDER, Role.OPERATOR
        )
        message = parsed.message
        order = AccrualOrder(facility_id=message.facility_id, business_date=message.business_date)
        receipt = await self._explained(
            parsed, caller, self.flows.accrue_interest(caller, order, signed)
        )
        body = await asyncio.to_thread(self.flows.event_body, parsed.instruction_id)
        return loan_pb2.AccrueInterestResponse(
            result=commit_result(receipt),
            accrual=accrual_message(body),
            facility=await self._facility(caller, message.facility_id),
        )

    async def Repay(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.RepayRequest, context: Context
    ) -> loan_pb2.RepayResponse:
        caller, parsed, signed = await self._instruction(
            request.instruction, loan_pb2.RepayInstruction, Role.BANK
        )
        message = parsed.message
        order = RepayOrder(
            facility_id=message.facility_id,
            amount_minor=message.amount_minor,
            currency=message.currency,
            quote_id=message.quote_id,
            uetr=message.uetr,
            value_date=message.value_date,
        )
        receipt = await self._explained(parsed, caller, self.flows.repay(caller, order, signed))
        row = await asyncio.to_thread(_require_repayment, self.flows, parsed.instruction_id)
        return loan_pb2.RepayResponse(
            result=commit_result(receipt),
            repayment=repayment_message(row),
            facility=await self._facility(caller, message.facility_id),
        )

    # -- reads ------------------------------------------------------------------------------

    async def GetFacility(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.GetFacilityRequest, context: Context
    ) -> loan_pb2.GetFacilityResponse:
        caller = current_caller()
        return loan_pb2.GetFacilityResponse(
            facility=await self._facility(caller, request.facility_id)
        )

    async def GetRepaymentSchedule(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.GetRepaymentScheduleRequest, context: Context
    ) -> loan_pb2.GetRepaymentScheduleResponse:
        caller = current_caller()
        row = await asyncio.to_thread(self.flows.visible_facility, caller, request.facility_id)
        schedule = row.record.schedule
        if schedule is None or row.schedule is None:
            raise convert.with_fields(
                ScheduleMustExist(
                    f"facility {request.facility_id!r} has no schedule yet: it is generated "
                    "when the repayment period starts"
                ),
                ["facility_id"],
            )
        unpaid = {item.number: item.principal_minor for item in row.record.instalments}
        return loan_pb2.GetRepaymentScheduleResponse(
            schedule=loan_pb2.RepaymentSchedule(
                facility_id=row.record.facility_id,
                start_date=schedule.start_date.isoformat(),
                principal=money(schedule.principal_minor),
                annual_rate_percent=str(schedule.annual_rate_percent),
                day_count=DAY_COUNT_TO_PROTO[schedule.day_count],
                instalments=[
                    loan_pb2.Instalment(
                        number=item.number,
                        period_start=item.period_start.isoformat(),
                        due_date=item.due_date.isoformat(),
                        period_days=item.period_days,
                        opening_principal=money(item.opening_principal_minor),
                        principal=money(item.principal_minor),
                        projected_interest=money(item.projected_interest_minor),
                        unpaid_principal=money(unpaid.get(item.number, 0)),
                    )
                    for item in schedule.instalments
                ],
                receipt=entry_message(row.schedule),
            )
        )

    async def GetDisbursement(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.GetDisbursementRequest, context: Context
    ) -> loan_pb2.GetDisbursementResponse:
        caller = current_caller()
        return loan_pb2.GetDisbursementResponse(
            disbursement=await self._disbursement(caller, request.disbursement_id)
        )

    async def ListDisbursements(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.ListDisbursementsRequest, context: Context
    ) -> loan_pb2.ListDisbursementsResponse:
        caller = current_caller()
        scope = ("ListDisbursements", caller.participant_id, request.facility_id)
        after, size = self._page(request.page, scope)
        row = await asyncio.to_thread(self.flows.visible_facility, caller, request.facility_id)
        rows = await asyncio.to_thread(
            _disbursements, self.flows, row.record.facility_id, after, size + 1
        )
        response = loan_pb2.ListDisbursementsResponse(
            disbursements=[disbursement_message(item) for item in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = convert.page_token(scope, str(rows[size - 1].record.number))
        return response

    async def ListRepayments(  # noqa: N802 - the RPC's name
        self, request: loan_pb2.ListRepaymentsRequest, context: Context
    ) -> loan_pb2.ListRepaymentsResponse:
        caller = current_caller()
        scope = ("ListRepayments", caller.participant_id, request.facility_id)
        after, size = self._page(request.page, scope)
        row = await asyncio.to_thread(self.flows.visible_facility, caller, request.facility_id)
        rows = await asyncio.to_thread(
            _repayments, self.flows, row.record.facility_id, after, size + 1
        )
        response = loan_pb2.ListRepaymentsResponse(
            repayments=[repayment_message(item) for item in rows[:size]]
        )
        if len(rows) > size:
            response.next_page_token = convert.page_token(
                scope, str(rows[size - 1].details["number"])
            )
        return response

    # -- steps ------------------------------------------------------------------------------

    async def _instruction(
        self,
        signed_instruction: common_pb2.SignedInstruction,
        message_type: type[MessageType],
        *roles: Role,
    ) -> tuple[Caller, ParsedInstruction[MessageType], Signed]:
        """Common checks 2 to 6 of common.proto; the caller's own prior use of the id."""
        caller = current_caller()
        caller.require(*roles)
        parsed = parse(signed_instruction, message_type, caller)
        prior = await convert.check_id_not_taken(self.hub, parsed, caller)
        return (
            caller,
            parsed,
            Signed(
                instruction_id=parsed.instruction_id,
                instruction=parsed.signed,
                prior_payload=None if prior is None else prior.payload,
            ),
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

    @staticmethod
    def _page(page: common_pb2.PageRequest, scope: tuple[str, ...]) -> tuple[int, int]:
        position = convert.page_position(page, scope)
        after = int(position) if position is not None and position.isdigit() else 0
        return after, convert.page_size(page)

    async def _facility(self, caller: Caller, facility_id: str) -> loan_pb2.Facility:
        return await asyncio.to_thread(self._facility_message, caller, facility_id)

    def _facility_message(self, caller: Caller, facility_id: str) -> loan_pb2.Facility:
        row = self.flows.visible_facility(caller, facility_id)
        leaf = self.hub.ledger.leaf(row.created.journal_index)
        return facility_message(row, convert.signed_instruction_message(convert.decode_leaf(leaf)))

    async def _disbursement(self, caller: Caller, disbursement_id: str) -> loan_pb2.Disbursement:
        row = await asyncio.to_thread(self.flows.visible_disbursement, caller, disbursement_id)
        return disbursement_message(row)


def _disbursements(
    flows: LoanFlows, facility_id: str, after: int, limit: int
) -> list[DisbursementRow]:
    return loans_projection.disbursements(
        flows.ledger, facility_id, after_number=after, limit=limit
    )


def _repayments(flows: LoanFlows, facility_id: str, after: int, limit: int) -> list[RepaymentRow]:
    return loans_projection.repayments(flows.ledger, facility_id, after_number=after, limit=limit)


def _require_repayment(flows: LoanFlows, repayment_id: str) -> RepaymentRow:
    row = loans_projection.repayment(flows.ledger, repayment_id)
    if row is None:
        raise IntegrityError(f"repayment {repayment_id!r} committed without its row")
    return row


# -- records -> messages ---------------------------------------------------------------------


def money(amount_minor: int, currency: str = CURRENCY) -> common_pb2.Money:
    return common_pb2.Money(amount_minor=amount_minor, currency=currency)


def entry_message(entry: EntryRef) -> common_pb2.EntryReceipt:
    return receipt_message(entry.journal_index, entry.leaf_hash)


def terms_message(record: FacilityRecord) -> loan_pb2.FacilityTerms:
    terms = record.terms
    message = loan_pb2.FacilityTerms(
        facility_id=terms.facility_id,
        borrower_id=terms.borrower_id,
        borrower_bank_id=terms.borrower_bank_id,
        guarantor_id=terms.guarantor_id or "",
        commitment_minor=terms.commitment_minor,
        currency=terms.currency,
        availability_start=terms.availability_start.isoformat(),
        availability_end=terms.availability_end.isoformat(),
        day_count=DAY_COUNT_TO_PROTO[terms.day_count],
        commitment_fee_percent=str(terms.commitment_fee_percent),
        exposure_fee_percent=str(terms.exposure_fee.rate_percent),
        exposure_fee_timing=TIMING_TO_PROTO[terms.exposure_fee.timing],
        exposure_fee_settlement=SETTLEMENT_TO_PROTO[terms.exposure_fee.settlement],
        instalment_count=terms.repayment.instalment_count,
        grace_period_months=terms.repayment.grace_period_months,
        default_margin_percent=str(terms.default_margin_percent),
        conditions_precedent=[
            loan_pb2.ConditionPrecedent(
                condition_id=item.condition_id, description=item.description
            )
            for item in terms.conditions_precedent
        ],
        borrower_name=record.borrower_name,
        borrower_iban=record.borrower_iban,
    )
    if isinstance(terms.interest, FixedRate):
        message.interest_type = loan_pb2.INTEREST_TYPE_FIXED
        message.fixed_rate_percent = str(terms.interest.rate_percent)
    elif isinstance(terms.interest, FloatingRate):
        message.interest_type = loan_pb2.INTEREST_TYPE_FLOATING
        message.reference_rate = terms.interest.reference_rate
        message.margin_percent = str(terms.interest.margin_percent)
        message.reference_floor_percent = str(terms.interest.reference_floor_percent)
    return message


def facility_message(
    row: FacilityRow, terms_instruction: common_pb2.SignedInstruction | None
) -> loan_pb2.Facility:
    record = row.record
    facility_id = record.facility_id
    business_date = record.business_date
    rate = record.rate_percent()
    payoff = record.outstanding(business_date)
    message = loan_pb2.Facility(
        facility_id=facility_id,
        lender_id=record.lender_id,
        state=STATE_TO_PROTO[record.state.value],
        terms=terms_message(record),
        terms_sha256=record.terms_sha256,
        satisfied_condition_ids=list(record.satisfied_condition_ids),
        outstanding_condition_ids=list(
            record.terms.outstanding_conditions(record.satisfied_condition_ids)
        ),
        business_date=business_date.isoformat(),
        interest_period_start=record.accrual.period_start.isoformat(),
        interest_period_end=interest_period_end(
            record.terms, record.accrual.period_start
        ).isoformat(),
        interest_rate_percent="" if rate is None else str(rate),
        commitment=money(record.terms.commitment_minor),
        disbursed_principal=money(record.disbursed_principal_minor),
        repaid_principal=money(record.repaid_principal_minor),
        outstanding_principal=money(record.outstanding_principal_minor),
        cancelled=money(record.cancelled_minor),
        remaining_commitment=money(record.remaining_commitment_minor),
        interest_accruing=money(record.interest_accruing_minor),
        fees_accruing=money(record.fees_accruing_minor),
        interest_due=money(record.interest_due_minor),
        fees_due=money(record.fees_due_minor),
        default_interest_due=money(record.default_interest_due_minor),
        principal_due=money(record.principal_due_minor(business_date)),
        overdue=money(record.overdue_minor(business_date)),
        payoff=money(payoff.total_minor),
        interest_accrued_total=money(record.interest_accrued_total_minor),
        fees_accrued_total=money(record.fees_accrued_total_minor),
        default_interest_accrued_total=money(record.default_interest_accrued_total_minor),
        paid_total=money(record.paid_total_minor),
        disbursement_count=record.paid_disbursement_count,
        repayment_count=record.repayment_count,
        accounts=loan_pb2.LoanAccounts(
            principal_account_id=account_id(facility_id, LoanAccount.PRINCIPAL),
            interest_receivable_account_id=account_id(facility_id, LoanAccount.INTEREST_RECEIVABLE),
            default_interest_receivable_account_id=account_id(
                facility_id, LoanAccount.DEFAULT_INTEREST_RECEIVABLE
            ),
            fees_receivable_account_id=account_id(facility_id, LoanAccount.FEES_RECEIVABLE),
            interest_income_account_id=account_id(facility_id, LoanAccount.INTEREST_INCOME),
            fee_income_account_id=account_id(facility_id, LoanAccount.FEE_INCOME),
            cash_clearing_account_id=account_id(facility_id, LoanAccount.CASH_CLEARING),
        ),
        history=[
            loan_pb2.FacilityStateChange(
                event=EVENT_TO_PROTO.get(item.event, loan_pb2.FACILITY_EVENT_UNSPECIFIED),
                from_state=STATE_TO_PROTO.get(item.from_state, loan_pb2.FACILITY_STATE_UNSPECIFIED),
                to_state=STATE_TO_PROTO[item.to_state],
                business_date=item.business_date,
                participant_id=item.participant_id,
                instruction_id=item.instruction_id,
                receipt=entry_message(item.entry),
                committed_at=timestamp(item.committed_at_us),
            )
            for item in row.history
        ],
        created_receipt=entry_message(row.created),
    )
    if terms_instruction is not None:
        message.terms_instruction.CopyFrom(terms_instruction)
    return message


def disbursement_message(row: DisbursementRow) -> loan_pb2.Disbursement:
    record = row.record
    request = record.request
    decision = record.decision
    message = loan_pb2.Disbursement(
        disbursement_id=record.disbursement_id,
        facility_id=request.facility_id,
        number=record.number,
        status=DISBURSEMENT_STATUS_TO_PROTO[record.status],
        supplier_name=request.supplier_name,
        supplier_account_number=record.supplier_account_number,
        supplier_bank_id=record.supplier_bank_id,
        supplier_bank_aba=request.supplier_bank_aba,
        supplier_bank_bic=request.supplier_bank_bic,
        amount=money(request.amount_minor, request.currency),
        invoice_reference=request.invoice_reference,
        value_date=request.value_date.isoformat(),
        screening_score=record.screening.best_score,
        screening_list_digest=record.screening.list_digest,
        request_receipt=entry_message(row.requested),
    )
    figures = decision if record.status == "paid" else record.request_body
    message.exposure_fee.CopyFrom(money(int(figures["exposure_fee_minor"])))
    message.exposure_fee_financed = bool(figures["exposure_fee_financed"])
    message.principal.CopyFrom(money(int(figures["principal_minor"])))
    if decision:
        message.reason = str(decision.get("reason", ""))
        message.uetr = str(decision.get("uetr", ""))
        message.payment_transaction_id = str(decision.get("payment_transaction_id", ""))
        message.loan_transaction_id = str(decision.get("loan_transaction_id", ""))
    if row.decided is not None:
        message.decision_receipt.CopyFrom(entry_message(row.decided))
    return message


def repayment_message(row: RepaymentRow) -> loan_pb2.Repayment:
    details = row.details
    split = details["split"]
    principal_minor = int(split["principal_due_minor"]) + int(split["principal_early_minor"])
    return loan_pb2.Repayment(
        repayment_id=details["repayment_id"],
        facility_id=details["facility_id"],
        number=int(details["number"]),
        value_date=details["value_date"],
        amount=money(int(details["amount_minor"])),
        fees=money(int(split["fees_minor"])),
        default_interest=money(int(split["default_interest_minor"])),
        interest=money(int(split["interest_minor"])),
        principal=money(principal_minor),
        principal_applied=[
            loan_pb2.PrincipalApplied(
                instalment_number=int(item["number"]),
                principal=money(int(item["principal_minor"])),
                early=bool(item["early"]),
            )
            for item in split["principal"]
        ],
        sent=money(int(details["sent_minor"]), details["sent_currency"]),
        quote_id=details["quote_id"],
        rate=details["rate"],
        uetr=details["uetr"],
        payment_transaction_id=details["payment_transaction_id"],
        loan_transaction_id=details["loan_transaction_id"],
        receipt=entry_message(row.entry),
    )


def accrual_message(body: Mapping[str, Any]) -> loan_pb2.Accrual:
    return loan_pb2.Accrual(
        facility_id=body["facility_id"],
        business_date=body["business_date"],
        day_weight_days=int(body["day_weight_days"]),
        interest=money(int(body["interest_minor"])),
        commitment_fee=money(int(body["commitment_fee_minor"])),
        default_interest=money(int(body["default_interest_minor"])),
        transaction_id=body["transaction_id"],
    )


__all__ = ["SERVICE_NAME", "LoanService", "check_facility_id"]
