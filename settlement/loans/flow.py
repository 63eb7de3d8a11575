"""The loan flow: an export-credit facility's life on the signed ledger.

loan.proto describes the business and the ledger design; this module is its
implementation, in three layers:

1. **The record and its fold.** :class:`FacilityRecord` is everything the
   hub knows of a facility. It changes only by journal events
   (``loan_...``, :data:`LOAN_EVENT_TYPES`), through one pure function,
   :func:`evolve`, which the projection (:mod:`settlement.loans.projection`)
   applies inside the commit and :func:`rebuild_facilities` applies to an
   export bundle's leaves. :func:`evolve` recomputes what it can (each
   accrual, each waterfall, the schedule, every transition) and refuses an
   event whose recorded figures differ (:class:`LoanEventMustReplay`): the
   log cannot say one thing and the read model another.
2. **Decisions.** ``decide_*`` take the record and a decoded instruction
   (an ``...Order``), check the rules in the contract's order, and return the
   :class:`Decision`: the ledger commands (the signed event, the payment and
   the loan's own transaction, all carrying the signed instruction) and the
   record after them. Pure: nothing is read or written.
3. **Orchestration.** :class:`LoanFlows` reads what a decision needs (the
   record, the registry, screening), serializes writes with one lock (this
   process is the only writer: the writer lease), submits the commands
   through the sequencer as one linked group, and checks the result on the
   ledger again (outstanding principal on the principal account equals
   disbursed minus repaid principal, after every write).

Payments. A disbursement pays the supplier's bank, and a repayment pays the
lender, as payments of :mod:`settlement.payments` (status events, the
reservation and settlement of ``payment:<uetr>``, PvP through an FX quote),
prepared by :class:`~settlement.payments.flow.PaymentFlows` and committed in
the same linked group as the loan's booking: money moves and the loan is
booked together, or nothing is written. (PaymentFlows commits each payment of
its own RPCs alone and accepts only banks as creditor agents, while the
lender is the creditor of a repayment; so the loan flow uses its preparation
and command steps rather than ``submit_payment``.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import select

from ledger.batch import leaf_hash
from ledger.errors import (
    AccountNotFound,
    ExistsWithDifferentBody,
    IntegrityError,
    LedgerError,
    LinkedCommandFailed,
    TextMustBeValid,
)
from ledger.records import (
    AccountFlag,
    Command,
    CommandResult,
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    Receipt,
    Side,
    SignedInstruction,
)
from ledger.schema import accounts, journal
from ledger.validation import validate_text
from settlement.auth import Caller, Role
from settlement.compliance.parties import (
    PartyFieldInvalid,
    validate_iban,
    validate_name,
    validate_uetr,
    validate_us_account_number,
)
from settlement.compliance.reporting import reporting_flags
from settlement.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFoundError
from settlement.loans.accrual import (
    Accrual,
    AccrualCarry,
    AccrualState,
    BusinessDateMustBeNext,
    daily_accrual,
)
from settlement.loans.daycount import DayCount
from settlement.loans.disbursement import (
    SUPPLIER_BANK_COUNTRY,
    AmountMustNotExceedRemainingCommitment,
    CheckedDisbursement,
    ConditionsPrecedentMustBeMet,
    CurrencyMustMatchFacility,
    DisbursementRequest,
    FacilityPosition,
    SupplierMustPassScreening,
    check_disbursement,
    check_outstanding_principal,
    disbursement_findings,
    remaining_commitment_minor,
    validate_request,
)
from settlement.loans.schedule import Instalment, RepaymentSchedule, add_months, build_schedule
from settlement.loans.states import (
    FacilityEvent,
    FacilityState,
    TransitionNotAllowed,
    transition,
)
from settlement.loans.terms import (
    CURRENCY,
    ConditionPrecedent,
    ExposureFee,
    ExposureFeeSettlement,
    ExposureFeeTiming,
    FacilityIdMustBeValid,
    FacilityTerms,
    FixedRate,
    FloatingRate,
    RateFixing,
    RateFixingMustBeSupplied,
    RepaymentProfile,
    all_in_rate_percent,
    parse_percent,
)
from settlement.loans.waterfall import (
    AmountsOutstanding,
    InstalmentBalance,
    RepaymentAmountMustBeInRange,
    RepaymentApplication,
    apply_repayment,
)
from settlement.payments import projection as payments_projection
from settlement.payments.projection import (
    TRANSACTION_ID_PREFIX as PAYMENT_TRANSACTION_PREFIX,
)
from settlement.payments.projection import (
    PartyRecord,
    QuoteMustExist,
    QuoteMustMatch,
    UetrTaken,
)

if TYPE_CHECKING:
    from ledger.store import Ledger
    from settlement.hub import Hub
    from settlement.loans.projection import DisbursementRow, FacilityRow
    from settlement.payments.flow import PaymentFlows
    from settlement.payments.flow import _Prepared as PreparedPayment

# -- names -----------------------------------------------------------------------------------------

EVENT_FACILITY_CREATED: Final = "loan_facility_created"
EVENT_FACILITY_SIGNED: Final = "loan_facility_signed"
EVENT_CONDITION_SATISFIED: Final = "loan_condition_satisfied"
EVENT_FACILITY_ADVANCED: Final = "loan_facility_advanced"
EVENT_SCHEDULE_GENERATED: Final = "loan_schedule_generated"
EVENT_RATE_FIXED: Final = "loan_rate_fixed"
EVENT_DISBURSEMENT_REQUESTED: Final = "loan_disbursement_requested"
EVENT_DISBURSEMENT_PAID: Final = "loan_disbursement_paid"
EVENT_DISBURSEMENT_REJECTED: Final = "loan_disbursement_rejected"
EVENT_ACCRUED: Final = "loan_accrued"
EVENT_REPAYMENT_APPLIED: Final = "loan_repayment_applied"

LOAN_EVENT_TYPES: Final = frozenset(
    {
        EVENT_FACILITY_CREATED,
        EVENT_FACILITY_SIGNED,
        EVENT_CONDITION_SATISFIED,
        EVENT_FACILITY_ADVANCED,
        EVENT_SCHEDULE_GENERATED,
        EVENT_RATE_FIXED,
        EVENT_DISBURSEMENT_REQUESTED,
        EVENT_DISBURSEMENT_PAID,
        EVENT_DISBURSEMENT_REJECTED,
        EVENT_ACCRUED,
        EVENT_REPAYMENT_APPLIED,
    }
)
"""Every journal event type of the loan flow: the fold's whole input."""

CODE_DISBURSEMENT: Final = "LOAN_DISBURSEMENT"
CODE_ACCRUAL: Final = "LOAN_ACCRUAL"
CODE_REPAYMENT: Final = "LOAN_REPAYMENT"


class LoanAccount(StrEnum):
    """The seven accounts of a facility (loan.proto, "Ledger design")."""

    PRINCIPAL = "principal"
    INTEREST_RECEIVABLE = "interest_receivable"
    DEFAULT_INTEREST_RECEIVABLE = "default_interest_receivable"
    FEES_RECEIVABLE = "fees_receivable"
    INTEREST_INCOME = "interest_income"
    FEE_INCOME = "fee_income"
    CASH_CLEARING = "cash_clearing"


DEBIT_NORMAL_ACCOUNTS: Final = frozenset(
    {
        LoanAccount.PRINCIPAL,
        LoanAccount.INTEREST_RECEIVABLE,
        LoanAccount.DEFAULT_INTEREST_RECEIVABLE,
        LoanAccount.FEES_RECEIVABLE,
    }
)
"""Assets of the lender: never in credit."""

FACILITY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Narrower than the terms' identifiers: the id names accounts and entries
(``loan:<facility_id>:default_interest_receivable:USD``), which the ledger
limits to 128 characters."""

_DATE_TEXT: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")

REASON_LENGTH_MAX: Final = 140
"""ISO 20022 Max140Text, like every other free-text reason of the API."""

EVIDENCE_LENGTH_MAX: Final = 140

PERIOD_SEARCH_MAX: Final = 400
"""Interest periods looked at to find one period's end: 21 fit in the
longest availability period and 58 in the longest repayment profile; more
means a date far past any facility's life."""

ACCRUING_STATES: Final = frozenset(
    {
        FacilityState.AVAILABLE,
        FacilityState.FULLY_DRAWN,
        FacilityState.AVAILABILITY_EXPIRED,
        FacilityState.REPAYING,
        FacilityState.DEFAULTED,
        FacilityState.ACCELERATED,
    }
)
"""Interest and fees accrue from the first day of availability until closing."""

REPAYABLE_STATES: Final = ACCRUING_STATES

CLOSING_STATES: Final = frozenset(
    {FacilityState.REPAYING, FacilityState.DEFAULTED, FacilityState.ACCELERATED}
)
"""States in which a repayment that leaves nothing owed closes the facility."""

CONDITION_STATES: Final = frozenset(
    {
        FacilityState.APPROVED,
        FacilityState.SIGNED_BY_LENDER,
        FacilityState.SIGNED_BY_BORROWER_BANK,
        FacilityState.SIGNED,
    }
)
"""Conditions precedent are recorded until the facility becomes effective."""

DECLARABLE_EVENTS: Final = frozenset(
    {
        FacilityEvent.CONDITIONS_PRECEDENT_MET,
        FacilityEvent.AVAILABILITY_PERIOD_STARTED,
        FacilityEvent.AVAILABILITY_PERIOD_ENDED,
        FacilityEvent.REPAYMENT_PERIOD_STARTED,
        FacilityEvent.DEFAULT_DECLARED,
        FacilityEvent.ACCELERATION_DECLARED,
    }
)
"""Events the lender declares (AdvanceFacility); the others follow from what happens."""


def account_id(facility_id: str, account: LoanAccount) -> str:
    return f"loan:{facility_id}:{account.value}:{CURRENCY}"


def accrual_id(facility_id: str, business_date: date) -> str:
    """The id of a date's accrual: its instruction, event and transaction."""
    return f"loan:{facility_id}:accrual:{business_date.isoformat()}"


def schedule_event_id(facility_id: str) -> str:
    return f"loan:{facility_id}:schedule"


def disbursement_transaction_id(facility_id: str, number: int) -> str:
    return f"loan:{facility_id}:disbursement:{number}"


def repayment_transaction_id(facility_id: str, number: int) -> str:
    return f"loan:{facility_id}:repayment:{number}"


# -- errors: the rules of loan.proto, codes never renamed ------------------------------------------


class DateMustBeValid(InvalidArgument):
    code = "date_must_be_valid"


class TermsSha256MustBeValid(InvalidArgument):
    code = "terms_sha256_must_be_valid"


class EventMustBeDeclarable(InvalidArgument):
    code = "event_must_be_declarable"


class InstructionIdMustBeAccrualId(InvalidArgument):
    code = "instruction_id_must_be_accrual_id"


class SupplierBankMustMatch(InvalidArgument):
    code = "supplier_bank_must_match"


class FacilityMustExist(NotFoundError):
    code = "facility_must_exist"


class ConditionMustExist(NotFoundError):
    code = "condition_must_exist"


class DisbursementMustExist(NotFoundError):
    code = "disbursement_must_exist"


class ScheduleMustExist(NotFoundError):
    code = "schedule_must_exist"


class ParticipantMustExist(NotFoundError):
    code = "participant_must_exist"


class FacilityExists(AlreadyExists):
    code = "facility_exists"


class RateFixingExists(AlreadyExists):
    code = "rate_fixing_exists"


class TermsMustMatch(FailedPrecondition):
    code = "terms_must_match"


class ConditionMustNotBeSatisfied(FailedPrecondition):
    code = "condition_must_not_be_satisfied"


class FacilityMustAwaitConditions(FailedPrecondition):
    code = "facility_must_await_conditions"


class AvailabilityPeriodMustHaveStarted(FailedPrecondition):
    code = "availability_period_must_have_started"


class AvailabilityPeriodMustHaveEnded(FailedPrecondition):
    code = "availability_period_must_have_ended"


class ValueDateMustBeBusinessDate(FailedPrecondition):
    code = "value_date_must_be_business_date"


class PeriodStartMustBeInterestPeriodStart(FailedPrecondition):
    code = "period_start_must_be_interest_period_start"


class RateFixingMustPrecedePeriod(FailedPrecondition):
    code = "rate_fixing_must_precede_period"


class DecisionMustBeSpecified(FailedPrecondition):
    code = "decision_must_be_specified"


class DisbursementMustBeRequested(FailedPrecondition):
    code = "disbursement_must_be_requested"


class FacilityMustBeAccruing(FailedPrecondition):
    code = "facility_must_be_accruing"


class FacilityMustBeRepayable(FailedPrecondition):
    code = "facility_must_be_repayable"


class QuotesMustBeSupported(FailedPrecondition):
    """Repayment through an FX quote needs the cross-border payment flow."""

    code = "quote_must_exist"


class LoanEventMustReplay(IntegrityError):
    """A loan event's recorded figures differ from what the fold computes."""

    code = "loan_event_must_replay"


def _with_field(error: LedgerError, field: str) -> LedgerError:
    setattr(error, "fields", [field])  # noqa: B010 - the interceptor's optional attribute
    return error


# -- parsing of instruction fields -----------------------------------------------------------------


def parse_date(text: str, field: str) -> date:
    """A calendar date from ``YYYY-MM-DD`` (and nothing else)."""
    if not isinstance(text, str) or _DATE_TEXT.fullmatch(text) is None:
        raise _with_field(DateMustBeValid(f"{field}: expected YYYY-MM-DD, got {text!r:.40}"), field)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _with_field(
            DateMustBeValid(f"{field}: {text!r} is not a calendar date"), field
        ) from None


def check_facility_id(facility_id: str, field: str = "facility_id") -> str:
    if not isinstance(facility_id, str) or FACILITY_ID_PATTERN.fullmatch(facility_id) is None:
        raise _with_field(
            FacilityIdMustBeValid(
                f"{field}: expected 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-', "
                f"got {facility_id!r:.80}"
            ),
            field,
        )
    return facility_id


def check_text(value: str, field: str, length_max: int, *, required: bool = False) -> str:
    if required and not value:
        raise _with_field(
            TextMustBeValid(f"{field}: expected 1 to {length_max} characters, got none"), field
        )
    try:
        validate_text(value, field, length_max)
    except TextMustBeValid as error:
        raise _with_field(error, field) from None
    return value


def _percent(text: str, field: str) -> Decimal:
    try:
        return parse_percent(text)
    except LedgerError as error:
        raise _with_field(error, field) from None


# -- serialization of values (event bodies and the read model) -------------------------------------


def _minor(value: int) -> str:
    """Amounts travel as decimal strings, as in the leaves (exact in any JSON reader)."""
    return str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LoanEventMustReplay(f"expected an integer or a decimal string, got {value!r:.40}")
    return int(value)


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _fraction(text: str) -> Fraction:
    numerator, _, denominator = text.partition("/")
    return Fraction(int(numerator), int(denominator or "1"))


def terms_document(terms: FacilityTerms) -> dict[str, Any]:
    """The terms as a JSON object (event body and read model), every value exactly as agreed."""
    interest: dict[str, Any]
    if isinstance(terms.interest, FixedRate):
        interest = {"type": "fixed", "rate_percent": str(terms.interest.rate_percent)}
    else:
        interest = {
            "type": "floating",
            "reference_rate": terms.interest.reference_rate,
            "margin_percent": str(terms.interest.margin_percent),
            "reference_floor_percent": str(terms.interest.reference_floor_percent),
        }
    return {
        "facility_id": terms.facility_id,
        "lender_id": terms.lender_id,
        "borrower_id": terms.borrower_id,
        "borrower_bank_id": terms.borrower_bank_id,
        "guarantor_id": terms.guarantor_id or "",
        "currency": terms.currency,
        "commitment_minor": _minor(terms.commitment_minor),
        "availability_start": terms.availability_start.isoformat(),
        "availability_end": terms.availability_end.isoformat(),
        "interest": interest,
        "day_count": terms.day_count.value,
        "commitment_fee_percent": str(terms.commitment_fee_percent),
        "exposure_fee": {
            "rate_percent": str(terms.exposure_fee.rate_percent),
            "timing": terms.exposure_fee.timing.value,
            "settlement": terms.exposure_fee.settlement.value,
        },
        "repayment": {
            "instalment_count": terms.repayment.instalment_count,
            "grace_period_months": terms.repayment.grace_period_months,
        },
        "default_margin_percent": str(terms.default_margin_percent),
        "conditions_precedent": [
            {"condition_id": item.condition_id, "description": item.description}
            for item in terms.conditions_precedent
        ],
    }


def terms_from_document(document: Mapping[str, Any]) -> FacilityTerms:
    interest_document = document["interest"]
    interest: FixedRate | FloatingRate
    if interest_document["type"] == "fixed":
        interest = FixedRate(Decimal(interest_document["rate_percent"]))
    else:
        interest = FloatingRate(
            interest_document["reference_rate"],
            Decimal(interest_document["margin_percent"]),
            Decimal(interest_document["reference_floor_percent"]),
        )
    exposure = document["exposure_fee"]
    repayment = document["repayment"]
    return FacilityTerms(
        facility_id=document["facility_id"],
        lender_id=document["lender_id"],
        borrower_id=document["borrower_id"],
        borrower_bank_id=document["borrower_bank_id"],
        guarantor_id=document["guarantor_id"] or None,
        currency=document["currency"],
        commitment_minor=_int(document["commitment_minor"]),
        availability_start=date.fromisoformat(document["availability_start"]),
        availability_end=date.fromisoformat(document["availability_end"]),
        interest=interest,
        day_count=DayCount(document["day_count"]),
        commitment_fee_percent=Decimal(document["commitment_fee_percent"]),
        exposure_fee=ExposureFee(
            Decimal(exposure["rate_percent"]),
            ExposureFeeTiming(exposure["timing"]),
            ExposureFeeSettlement(exposure["settlement"]),
        ),
        repayment=RepaymentProfile(
            int(repayment["instalment_count"]), int(repayment["grace_period_months"])
        ),
        default_margin_percent=Decimal(document["default_margin_percent"]),
        conditions_precedent=tuple(
            ConditionPrecedent(item["condition_id"], item["description"])
            for item in document["conditions_precedent"]
        ),
    )


def schedule_document(schedule: RepaymentSchedule) -> dict[str, Any]:
    return {
        "start_date": schedule.start_date.isoformat(),
        "principal_minor": _minor(schedule.principal_minor),
        "annual_rate_percent": str(schedule.annual_rate_percent),
        "day_count": schedule.day_count.value,
        "instalments": [
            {
                "number": item.number,
                "period_start": item.period_start.isoformat(),
                "due_date": item.due_date.isoformat(),
                "period_days": item.period_days,
                "opening_principal_minor": _minor(item.opening_principal_minor),
                "principal_minor": _minor(item.principal_minor),
                "projected_interest_minor": _minor(item.projected_interest_minor),
            }
            for item in schedule.instalments
        ],
    }


def schedule_from_document(facility_id: str, document: Mapping[str, Any]) -> RepaymentSchedule:
    return RepaymentSchedule(
        facility_id=facility_id,
        start_date=date.fromisoformat(document["start_date"]),
        principal_minor=_int(document["principal_minor"]),
        annual_rate_percent=Decimal(document["annual_rate_percent"]),
        day_count=DayCount(document["day_count"]),
        instalments=tuple(
            Instalment(
                number=int(item["number"]),
                period_start=date.fromisoformat(item["period_start"]),
                due_date=date.fromisoformat(item["due_date"]),
                period_days=int(item["period_days"]),
                opening_principal_minor=_int(item["opening_principal_minor"]),
                principal_minor=_int(item["principal_minor"]),
                projected_interest_minor=_int(item["projected_interest_minor"]),
            )
            for item in document["instalments"]
        ),
    )


def _carry_document(carry: AccrualCarry) -> dict[str, str]:
    return {
        "exact_minor": _fraction_text(carry.exact_minor),
        "posted_minor": _minor(carry.posted_minor),
    }


def _carry(document: Mapping[str, Any]) -> AccrualCarry:
    return AccrualCarry(_fraction(document["exact_minor"]), _int(document["posted_minor"]))


def accrual_state_document(state: AccrualState) -> dict[str, Any]:
    return {
        "period_start": state.period_start.isoformat(),
        "next_accrual_date": state.next_accrual_date.isoformat(),
        "outstanding_principal_minor": _minor(state.outstanding_principal_minor),
        "undrawn_commitment_minor": _minor(state.undrawn_commitment_minor),
        "overdue_minor": _minor(state.overdue_minor),
        "interest_rate_percent": str(state.interest_rate_percent),
        "interest": _carry_document(state.interest),
        "commitment_fee": _carry_document(state.commitment_fee),
        "default_interest": _carry_document(state.default_interest),
    }


def accrual_state_from_document(terms: FacilityTerms, document: Mapping[str, Any]) -> AccrualState:
    return AccrualState(
        day_count=terms.day_count,
        period_start=date.fromisoformat(document["period_start"]),
        next_accrual_date=date.fromisoformat(document["next_accrual_date"]),
        outstanding_principal_minor=_int(document["outstanding_principal_minor"]),
        undrawn_commitment_minor=_int(document["undrawn_commitment_minor"]),
        overdue_minor=_int(document["overdue_minor"]),
        interest_rate_percent=Decimal(document["interest_rate_percent"]),
        commitment_fee_percent=terms.commitment_fee_percent,
        default_margin_percent=terms.default_margin_percent,
        interest=_carry(document["interest"]),
        commitment_fee=_carry(document["commitment_fee"]),
        default_interest=_carry(document["default_interest"]),
    )


# -- the record ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FacilityRecord:
    """Everything the hub knows of one facility: the fold of its journal events.

    Amounts are USD minor units. "Accruing" amounts were booked in the
    current interest period and fall due at its end; "due" amounts have
    fallen due and are unpaid. The ledger holds the same figures:
    ``principal`` = outstanding principal, ``interest_receivable`` =
    interest accruing + due, ``fees_receivable`` = fees accruing + due,
    ``default_interest_receivable`` = default interest due, and the income
    accounts the totals (see :func:`expected_balances`).
    """

    terms: FacilityTerms
    terms_sha256: str
    state: FacilityState
    accrual: AccrualState
    """The daily accrual's state: its period, next date and carries."""
    borrower_name: str = ""
    borrower_iban: str = ""
    """The borrower's account at the borrower bank: the debtor of the facility's payments."""
    satisfied_condition_ids: tuple[str, ...] = ()
    disbursed_principal_minor: int = 0
    disbursed_amount_minor: int = 0
    """Paid to suppliers (principal less financed exposure fees)."""
    repaid_principal_minor: int = 0
    cancelled_minor: int = 0
    request_count: int = 0
    """Disbursement requests numbered so far (requested, paid or rejected)."""
    paid_disbursement_count: int = 0
    repayment_count: int = 0
    interest_accruing_minor: int = 0
    fees_accruing_minor: int = 0
    interest_due_minor: int = 0
    fees_due_minor: int = 0
    default_interest_due_minor: int = 0
    interest_accrued_total_minor: int = 0
    fees_accrued_total_minor: int = 0
    """Fee income: commitment fee and exposure fees, paid or financed."""
    default_interest_accrued_total_minor: int = 0
    paid_total_minor: int = 0
    """USD received from repayments."""
    schedule: RepaymentSchedule | None = None
    instalments: tuple[InstalmentBalance, ...] = ()
    """Unpaid principal per instalment (all of them, paid ones at zero)."""
    fixings: tuple[RateFixing, ...] = ()
    accelerated_on: date | None = None

    @property
    def facility_id(self) -> str:
        return self.terms.facility_id

    @property
    def lender_id(self) -> str:
        return self.terms.lender_id

    @property
    def outstanding_principal_minor(self) -> int:
        return self.disbursed_principal_minor - self.repaid_principal_minor

    @property
    def remaining_commitment_minor(self) -> int:
        return remaining_commitment_minor(self.terms, self.position)

    @property
    def business_date(self) -> date:
        """The first date not yet accrued: the date of the next balance change."""
        return self.accrual.next_accrual_date

    @property
    def interest_period_end(self) -> date:
        return interest_period_end(self.terms, self.accrual.period_start)

    @property
    def position(self) -> FacilityPosition:
        return FacilityPosition(
            state=self.state,
            disbursed_principal_minor=self.disbursed_principal_minor,
            cancelled_minor=self.cancelled_minor,
            satisfied_condition_ids=frozenset(self.satisfied_condition_ids),
            disbursement_count=self.paid_disbursement_count,
        )

    def principal_due_minor(self, on: date) -> int:
        """Unpaid principal of instalments due on or before ``on`` (all, once accelerated)."""
        if self.accelerated_on is not None and on >= self.accelerated_on:
            return sum(item.principal_minor for item in self.instalments)
        return sum(item.principal_minor for item in self.instalments if item.due_date <= on)

    def overdue_minor(self, on: date) -> int:
        """The base of default interest at the end of ``on``: everything due and unpaid.

        Default interest itself is left out: interest is never charged on interest.
        """
        return self.fees_due_minor + self.interest_due_minor + self.principal_due_minor(on)

    def outstanding(self, value_date: date) -> AmountsOutstanding:
        """What a repayment on ``value_date`` pays, step by step (the waterfall's input)."""
        effective_date = value_date
        if self.accelerated_on is not None and self.instalments:
            # Accelerated: every instalment is due, whatever its scheduled date.
            effective_date = max(value_date, self.instalments[-1].due_date)
        return AmountsOutstanding(
            value_date=effective_date,
            fees_minor=self.fees_due_minor,
            default_interest_minor=self.default_interest_due_minor,
            interest_minor=self.interest_due_minor,
            instalments=self.instalments,
        )

    def rate_percent(self) -> Decimal | None:
        """The all-in rate of the current interest period; None while a fixing is missing."""
        interest = self.terms.interest
        if isinstance(interest, FixedRate):
            return all_in_rate_percent(interest)
        fixing = self.fixing_for(self.accrual.period_start)
        return None if fixing is None else all_in_rate_percent(interest, fixing)

    def fixing_for(self, period_start: date) -> RateFixing | None:
        for fixing in self.fixings:
            if fixing.period_start == period_start:
                return fixing
        return None

    def is_settled(self) -> bool:
        """Nothing owed any more: no principal, nothing due, nothing accruing."""
        return (
            self.outstanding_principal_minor == 0
            and self.interest_accruing_minor == 0
            and self.fees_accruing_minor == 0
            and self.interest_due_minor == 0
            and self.fees_due_minor == 0
            and self.default_interest_due_minor == 0
        )


def expected_balances(record: FacilityRecord) -> dict[LoanAccount, int]:
    """Each loan account's net balance on its normal side, as the record says it must be."""
    return {
        LoanAccount.PRINCIPAL: record.outstanding_principal_minor,
        LoanAccount.INTEREST_RECEIVABLE: record.interest_accruing_minor + record.interest_due_minor,
        LoanAccount.DEFAULT_INTEREST_RECEIVABLE: record.default_interest_due_minor,
        LoanAccount.FEES_RECEIVABLE: record.fees_accruing_minor + record.fees_due_minor,
        LoanAccount.INTEREST_INCOME: record.interest_accrued_total_minor
        + record.default_interest_accrued_total_minor,
        LoanAccount.FEE_INCOME: record.fees_accrued_total_minor,
        LoanAccount.CASH_CLEARING: record.disbursed_amount_minor - record.paid_total_minor,
    }


def record_document(record: FacilityRecord) -> dict[str, Any]:
    """The read model's row: canonical JSON of every field (exact fractions as "n/d")."""
    return {
        "terms": terms_document(record.terms),
        "terms_sha256": record.terms_sha256,
        "borrower": {"name": record.borrower_name, "iban": record.borrower_iban},
        "state": record.state.value,
        "accrual": accrual_state_document(record.accrual),
        "satisfied_condition_ids": list(record.satisfied_condition_ids),
        "disbursed_principal_minor": _minor(record.disbursed_principal_minor),
        "disbursed_amount_minor": _minor(record.disbursed_amount_minor),
        "repaid_principal_minor": _minor(record.repaid_principal_minor),
        "cancelled_minor": _minor(record.cancelled_minor),
        "request_count": record.request_count,
        "paid_disbursement_count": record.paid_disbursement_count,
        "repayment_count": record.repayment_count,
        "interest_accruing_minor": _minor(record.interest_accruing_minor),
        "fees_accruing_minor": _minor(record.fees_accruing_minor),
        "interest_due_minor": _minor(record.interest_due_minor),
        "fees_due_minor": _minor(record.fees_due_minor),
        "default_interest_due_minor": _minor(record.default_interest_due_minor),
        "interest_accrued_total_minor": _minor(record.interest_accrued_total_minor),
        "fees_accrued_total_minor": _minor(record.fees_accrued_total_minor),
        "default_interest_accrued_total_minor": _minor(record.default_interest_accrued_total_minor),
        "paid_total_minor": _minor(record.paid_total_minor),
        "schedule": None if record.schedule is None else schedule_document(record.schedule),
        "instalments": [
            {
                "number": item.number,
                "due_date": item.due_date.isoformat(),
                "principal_minor": _minor(item.principal_minor),
            }
            for item in record.instalments
        ],
        "fixings": [
            {
                "reference_rate": fixing.reference_rate,
                "period_start": fixing.period_start.isoformat(),
                "rate_percent": str(fixing.rate_percent),
            }
            for fixing in record.fixings
        ],
        "accelerated_on": None
        if record.accelerated_on is None
        else record.accelerated_on.isoformat(),
    }


def record_from_document(document: Mapping[str, Any]) -> FacilityRecord:
    terms = terms_from_document(document["terms"])
    schedule = document["schedule"]
    accelerated_on = document["accelerated_on"]
    return FacilityRecord(
        terms=terms,
        terms_sha256=document["terms_sha256"],
        borrower_name=document["borrower"]["name"],
        borrower_iban=document["borrower"]["iban"],
        state=FacilityState(document["state"]),
        accrual=accrual_state_from_document(terms, document["accrual"]),
        satisfied_condition_ids=tuple(document["satisfied_condition_ids"]),
        disbursed_principal_minor=_int(document["disbursed_principal_minor"]),
        disbursed_amount_minor=_int(document["disbursed_amount_minor"]),
        repaid_principal_minor=_int(document["repaid_principal_minor"]),
        cancelled_minor=_int(document["cancelled_minor"]),
        request_count=int(document["request_count"]),
        paid_disbursement_count=int(document["paid_disbursement_count"]),
        repayment_count=int(document["repayment_count"]),
        interest_accruing_minor=_int(document["interest_accruing_minor"]),
        fees_accruing_minor=_int(document["fees_accruing_minor"]),
        interest_due_minor=_int(document["interest_due_minor"]),
        fees_due_minor=_int(document["fees_due_minor"]),
        default_interest_due_minor=_int(document["default_interest_due_minor"]),
        interest_accrued_total_minor=_int(document["interest_accrued_total_minor"]),
        fees_accrued_total_minor=_int(document["fees_accrued_total_minor"]),
        default_interest_accrued_total_minor=_int(document["default_interest_accrued_total_minor"]),
        paid_total_minor=_int(document["paid_total_minor"]),
        schedule=None if schedule is None else schedule_from_document(terms.facility_id, schedule),
        instalments=tuple(
            InstalmentBalance(
                int(item["number"]),
                date.fromisoformat(item["due_date"]),
                _int(item["principal_minor"]),
            )
            for item in document["instalments"]
        ),
        fixings=tuple(
            RateFixing(
                fixing["reference_rate"],
                date.fromisoformat(fixing["period_start"]),
                Decimal(fixing["rate_percent"]),
            )
            for fixing in document["fixings"]
        ),
        accelerated_on=None if accelerated_on is None else date.fromisoformat(accelerated_on),
    )


# -- interest periods ------------------------------------------------------------------------------


def interest_period_end(terms: FacilityTerms, period_start: date) -> date:
    """The end (excluded) of the interest period that starts on ``period_start``.

    Period ends, in order: every six months before the end of availability
    (counted back from it, so they fall on its day of month), the end of
    availability, the first instalment date (``grace_period_months`` after
    it), then every six months (the instalment dates and beyond).
    """
    end = terms.availability_end
    if period_start < end:
        best = end
        for step in range(1, PERIOD_SEARCH_MAX):
            candidate = add_months(end, -6 * step)
            if candidate <= period_start:
                return best
            best = candidate
    else:
        grace = terms.repayment.grace_period_months
        for step in range(PERIOD_SEARCH_MAX):
            candidate = add_months(end, grace + 6 * step)
            if candidate > period_start:
                return candidate
    raise IntegrityError(
        f"no interest period end found for a period starting {period_start.isoformat()} "
        f"within {PERIOD_SEARCH_MAX} periods"
    )


def is_interest_period_start(terms: FacilityTerms, day: date) -> bool:
    """True for the first day of availability and every period end after it."""
    start = terms.availability_start
    if day == start:
        return True
    if day < start:
        return False
    period_start = start
    for _ in range(PERIOD_SEARCH_MAX):
        period_start = interest_period_end(terms, period_start)
        if period_start >= day:
            return period_start == day
    return False


def opening_accrual(terms: FacilityTerms) -> AccrualState:
    """Accrual before the first day of availability: nothing drawn, nothing accrued."""
    rate = terms.interest.rate_percent if isinstance(terms.interest, FixedRate) else Decimal(0)
    return AccrualState.opening(terms, terms.availability_start, interest_rate_percent=rate)


# -- the fold --------------------------------------------------------------------------------------


def _replay(condition: bool, message: str) -> None:
    if not condition:
        raise LoanEventMustReplay(message)


def _same(name: str, recorded: Any, computed: Any) -> None:
    _replay(recorded == computed, f"{name}: expected {computed!r}, got {recorded!r}")


def accrue_on(record: FacilityRecord, business_date: date) -> Accrual:
    """What ``business_date`` accrues, on the balances at its end (pure)."""
    if business_date != record.business_date:
        raise _with_field(
            BusinessDateMustBeNext(
                f"expected {record.business_date.isoformat()}, the facility's business date "
                f"(the first date not yet accrued), got {business_date.isoformat()}"
            ),
            "business_date",
        )
    rate = record.rate_percent()
    if rate is None:
        interest = record.terms.interest
        reference = interest.reference_rate if isinstance(interest, FloatingRate) else ""
        raise _with_field(
            RateFixingMustBeSupplied(
                f"expected a fixing of {reference} for the interest period starting "
                f"{record.accrual.period_start.isoformat()}; supply it with SetRateFixing"
            ),
            "business_date",
        )
    undrawn_minor = (
        record.remaining_commitment_minor if business_date <= record.terms.availability_end else 0
    )
    state = dataclasses.replace(
        record.accrual,
        interest_rate_percent=rate,
        outstanding_principal_minor=record.outstanding_principal_minor,
        undrawn_commitment_minor=undrawn_minor,
        overdue_minor=record.overdue_minor(business_date),
    )
    return daily_accrual(state, business_date)


def _after_accrual(record: FacilityRecord, accrual: Accrual) -> FacilityRecord:
    """The record after a date's accrual; at a period's end, what it booked falls due."""
    record = dataclasses.replace(
        record,
        accrual=accrual.state,
        interest_accruing_minor=record.interest_accruing_minor + accrual.interest_minor,
        fees_accruing_minor=record.fees_accruing_minor + accrual.commitment_fee_minor,
        default_interest_due_minor=record.default_interest_due_minor
        + accrual.default_interest_minor,
        interest_accrued_total_minor=record.interest_accrued_total_minor + accrual.interest_minor,
        fees_accrued_total_minor=record.fees_accrued_total_minor + accrual.commitment_fee_minor,
        default_interest_accrued_total_minor=record.default_interest_accrued_total_minor
        + accrual.default_interest_minor,
    )
    next_date = accrual.state.next_accrual_date
    if next_date != interest_period_end(record.terms, accrual.state.period_start):
        return record
    return dataclasses.replace(
        record,
        accrual=accrual.state.start_period(next_date),
        interest_due_minor=record.interest_due_minor + record.interest_accruing_minor,
        fees_due_minor=record.fees_due_minor + record.fees_accruing_minor,
        interest_accruing_minor=0,
        fees_accruing_minor=0,
    )


def evolve(
    record: FacilityRecord | None, event_type: str, body: Mapping[str, Any], signer: str
) -> FacilityRecord:
    """The record after one loan event (``record`` is None before the facility exists).

    Pure and deterministic: the projection and the auditor's rebuild run the
    same code on the same events. Raises :class:`LoanEventMustReplay` when
    the event does not follow from the record (wrong transition, figures
    that differ from the computation, a signer who may not sign it).
    """
    if event_type == EVENT_FACILITY_CREATED:
        _replay(record is None, f"facility {body.get('facility_id')!r} is created twice")
        terms = terms_from_document(body["terms"])
        _same("lender_id (the signer)", terms.lender_id, signer)
        _same("facility_id", body["facility_id"], terms.facility_id)
        return FacilityRecord(
            terms=terms,
            terms_sha256=body["terms_sha256"],
            state=FacilityState.APPROVED,
            accrual=opening_accrual(terms),
            borrower_name=body["borrower"]["name"],
            borrower_iban=body["borrower"]["iban"],
        )
    if record is None:
        raise LoanEventMustReplay(
            f"{event_type}: facility {body.get('facility_id')!r} was never created"
        )
    _same("facility_id", body["facility_id"], record.facility_id)
    handler = _EVOLVERS.get(event_type)
    if handler is None:
        raise LoanEventMustReplay(f"unknown loan event type {event_type!r}")
    return handler(record, body, signer)


def _transition(record: FacilityRecord, body: Mapping[str, Any]) -> FacilityState:
    event = FacilityEvent(body["event"])
    _same("from_state", body["from_state"], record.state.value)
    try:
        target = transition(record.state, event)
    except TransitionNotAllowed as error:
        raise LoanEventMustReplay(error.message) from None
    _same("to_state", body["to_state"], target.value)
    return target


def _evolve_signed(record: FacilityRecord, body: Mapping[str, Any], signer: str) -> FacilityRecord:
    event = FacilityEvent(body["event"])
    expected_signer = (
        record.lender_id if event is FacilityEvent.LENDER_SIGNED else record.terms.borrower_bank_id
    )
    _same(f"signer of {event.value}", signer, expected_signer)
    _same("terms_sha256", body["terms_sha256"], record.terms_sha256)
    return dataclasses.replace(record, state=_transition(record, body))


def _evolve_condition(
    record: FacilityRecord, body: Mapping[str, Any], signer: str
) -> FacilityRecord:
    condition_id = body["condition_id"]
    _same("signer", signer, record.lender_id)
    _replay(condition_id in record.terms.condition_ids, f"unknown condition {condition_id!r}")
    _replay(
        condition_id not in record.satisfied_condition_ids,
        f"condition {condition_id!r} satisfied twice",
    )
    _replay(record.state in CONDITION_STATES, f"condition satisfied in state {record.state}")
    return dataclasses.replace(
        record, satisfied_condition_ids=(*record.satisfied_condition_ids, condition_id)
    )


def _evolve_advanced(
    record: FacilityRecord, body: Mapping[str, Any], signer: str
) -> FacilityRecord:
    _same("signer", signer, record.lender_id)
    event = FacilityEvent(body["event"])
    business_date = date.fromisoformat(body["business_date"])
    target = _transition(record, body)
    cancelled_minor = 0
    if event in (FacilityEvent.AVAILABILITY_PERIOD_ENDED, FacilityEvent.ACCELERATION_DECLARED):
        cancelled_minor = record.remaining_commitment_minor
    _same("cancelled_minor", _int(body["cancelled_minor"]), cancelled_minor)
    record = dataclasses.replace(
        record, state=target, cancelled_minor=record.cancelled_minor + cancelled_minor
    )
    if event is FacilityEvent.ACCELERATION_DECLARED:
        record = dataclasses.replace(record, accelerated_on=business_date)
        if record.schedule is None and record.outstanding_principal_minor > 0:
            # Accelerated before any schedule: all principal is one instalment, due now.
            record = dataclasses.replace(
                record,
                instalments=(
                    InstalmentBalance(1, business_date, record.outstanding_principal_minor),
                ),
            )
    return record


def _evolve_schedule(
    record: FacilityRecord, body: Mapping[str, Any], signer: str
) -> FacilityRecord:
    _same("signer", signer, record.lender_id)
    _replay(record.schedule is None, "a second schedule")
    _replay(record.state is FacilityState.REPAYING, f"a schedule in state {record.state}")
    computed = generate_schedule(record)
    recorded = schedule_from_document(record.facility_id, body["schedule"])
    _same("schedule", recorded, computed)
    return dataclasses.replace(
        record,
        schedule=computed,
        instalments=tuple(
            InstalmentBalance(item.number, item.due_date, item.principal_minor)
            for item in computed.instalments
        ),
    )


def _evolve_fixing(record: FacilityRecord, body: Mapping[str, Any], signer: str) -> FacilityRecord:
    _same("signer", signer, record.lender_id)
    fixing = RateFixing(
        body["reference_rate"],
        date.fromisoformat(body["period_start"]),
        Decimal(body["rate_percent"]),
    )
    _replay(record.fixing_for(fixing.period_start) is None, "a second fixing for one period")
    fixings = tuple(sorted((*record.fixings, fixing), key=lambda item: item.period_start))
    return dataclasses.replace(record, fixings=fixings)


def _evolve_requested(
    record: FacilityRecord, body: Mapping[str, Any], signer: str
) -> FacilityRecord:
    _same("signer", signer, record.terms.borrower_bank_id)
    _same("number", int(body["number"]), record.request_count + 1)
    return dataclasses.replace(record, request_count=record.request_count + 1)


def _evolve_paid(record: FacilityRecord, body: Mapping[str, Any], signer: str) -> FacilityRecord:
    _same("signer", signer, record.lender_id)
    _same("value_date", body["value_date"], record.business_date.isoformat())
    amount_minor = _int(body["amount_minor"])
    fee_minor = _int(body["exposure_fee_minor"])
    financed = bool(body["exposure_fee_financed"])
    principal_minor = _int(body["principal_minor"])
    _same("principal_minor", principal_minor, amount_minor + (fee_minor if financed else 0))
    _replay(
        principal_minor <= record.remaining_commitment_minor,
        f"principal {principal_minor} exceeds the remaining commitment "
        f"{record.remaining_commitment_minor}",
    )
    record = dataclasses.replace(
        record,
        disbursed_principal_minor=record.disbursed_principal_minor + principal_minor,
        disbursed_amount_minor=record.disbursed_amount_minor + amount_minor,
        paid_disbursement_count=record.paid_disbursement_count + 1,
        fees_accrued_total_minor=record.fees_accrued_total_minor + fee_minor,
        fees_accruing_minor=record.fees_accruing_minor + (0 if financed else fee_minor),
    )
    if body.get("to_state"):
        record = dataclasses.replace(record, state=_transition(record, body))
    return record


def _evolve_rejected(
    record: FacilityRecord, body: Mapping[str, Any], signer: str
) -> FacilityRecord:
    _same("signer", signer, record.lender_id)
    return record


def _evolve_accrued(record: FacilityRecord, body: Mapping[str, Any], signer: str) -> FacilityRecord:
    # The lender or the operator runs accruals (the service checks which); the
    # figures are recomputed here whoever signed.
    _replay(record.state in ACCRUING_STATES, f"accrual in state {record.state}")
    accrual = accrue_on(record, date.fromisoformat(body["business_date"]))
    _same("interest_minor", _int(body["interest_minor"]), accrual.interest_minor)
    _same("commitment_fee_minor", _int(body["commitment_fee_minor"]), accrual.commitment_fee_minor)
    _same(
        "default_interest_minor",
        _int(body["default_interest_minor"]),
        accrual.default_interest_minor,
    )
    return _after_accrual(record, accrual)


def _evolve_repaid(record: FacilityRecord, body: Mapping[str, Any], signer: str) -> FacilityRecord:
    _same("signer", signer, record.terms.borrower_bank_id)
    _same("value_date", body["value_date"], record.business_date.isoformat())
    _same("number", int(body["number"]), record.repayment_count + 1)
    application = apply_repayment(
        record.outstanding(record.business_date), _int(body["amount_minor"])
    )
    _same("split", _split_document(application), body["split"])
    record = _after_repayment(record, application)
    if body.get("to_state"):
        record = dataclasses.replace(record, state=_transition(record, body))
    return record


_Evolver = Callable[[FacilityRecord, Mapping[str, Any], str], FacilityRecord]

_EVOLVERS: Final[Mapping[str, _Evolver]] = {
    EVENT_FACILITY_SIGNED: _evolve_signed,
    EVENT_CONDITION_SATISFIED: _evolve_condition,
    EVENT_FACILITY_ADVANCED: _evolve_advanced,
    EVENT_SCHEDULE_GENERATED: _evolve_schedule,
    EVENT_RATE_FIXED: _evolve_fixing,
    EVENT_DISBURSEMENT_REQUESTED: _evolve_requested,
    EVENT_DISBURSEMENT_PAID: _evolve_paid,
    EVENT_DISBURSEMENT_REJECTED: _evolve_rejected,
    EVENT_ACCRUED: _evolve_accrued,
    EVENT_REPAYMENT_APPLIED: _evolve_repaid,
}


def generate_schedule(record: FacilityRecord) -> RepaymentSchedule:
    """The schedule for the principal outstanding now, from the end of availability."""
    projection_rate = None
    if isinstance(record.terms.interest, FloatingRate):
        projection_rate = record.rate_percent()
        if projection_rate is None:
            raise RateFixingMustBeSupplied(
                f"a floating facility projects its schedule at the current period's rate; "
                f"supply the fixing for {record.accrual.period_start.isoformat()} first"
            )
    return build_schedule(
        record.terms,
        record.outstanding_principal_minor,
        start_date=record.terms.availability_end,
        projection_rate_percent=projection_rate,
    )


def _split_document(application: RepaymentApplication) -> dict[str, Any]:
    return {
        "fees_minor": _minor(application.fees_minor),
        "default_interest_minor": _minor(application.default_interest_minor),
        "interest_minor": _minor(application.interest_minor),
        "principal_due_minor": _minor(application.principal_due_minor),
        "principal_early_minor": _minor(application.principal_early_minor),
        "principal": [
            {
                "number": item.number,
                "principal_minor": _minor(item.principal_minor),
                "early": item.early,
            }
            for item in application.principal
        ],
    }


def _after_repayment(record: FacilityRecord, application: RepaymentApplication) -> FacilityRecord:
    remaining = application.remaining
    record = dataclasses.replace(
        record,
        fees_due_minor=remaining.fees_minor,
        default_interest_due_minor=remaining.default_interest_minor,
        interest_due_minor=remaining.interest_minor,
        instalments=remaining.instalments,
        repaid_principal_minor=record.repaid_principal_minor + application.principal_minor,
        paid_total_minor=record.paid_total_minor + application.amount_minor,
        repayment_count=record.repayment_count + 1,
    )
    check_outstanding_principal(
        record.disbursed_principal_minor,
        record.repaid_principal_minor,
        record.outstanding_principal_minor,
    )
    if record.instalments:
        # With a schedule, every cent of principal outstanding is in an instalment.
        check_outstanding_principal(
            record.disbursed_principal_minor,
            record.repaid_principal_minor,
            sum(item.principal_minor for item in record.instalments),
        )
    return record


# -- rebuilding from the log -----------------------------------------------------------------------


def loan_event_of_leaf(leaf: bytes) -> tuple[str, Mapping[str, Any], str] | None:
    """(event type, body, signer) of a leaf holding a loan event; None for any other leaf."""
    document = json.loads(leaf)
    if document.get("kind") != "event" or document.get("event_type") not in LOAN_EVENT_TYPES:
        return None
    instruction = document.get("instruction") or {}
    return document["event_type"], document["body"], str(instruction.get("signer", ""))


def rebuild_facilities(leaves: Iterable[bytes]) -> dict[str, FacilityRecord]:
    """Every facility, folded from the loan events of a journal's leaves (e.g. a bundle's).

    Raises :class:`LoanEventMustReplay` at the first event that does not
    follow from the ones before it.
    """
    records: dict[str, FacilityRecord] = {}
    for leaf in leaves:
        found = loan_event_of_leaf(leaf)
        if found is None:
            continue
        event_type, body, signer = found
        facility_id = str(body["facility_id"])
        records[facility_id] = evolve(records.get(facility_id), event_type, body, signer)
    return records


def terms_sha256(payload: bytes) -> str:
    """What SignFacility commits to: SHA-256 of the CreateFacility instruction bytes, hex."""
    return hashlib.sha256(payload).hexdigest()


# -- orders: instructions, decoded -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermsOrder:
    """``FacilityTerms`` of a CreateFacility instruction, as sent (unspecified enums: None)."""

    facility_id: str
    borrower_id: str
    borrower_bank_id: str
    guarantor_id: str
    commitment_minor: int
    currency: str
    availability_start: str
    availability_end: str
    interest_type: str | None
    """``fixed``, ``floating`` or None."""
    fixed_rate_percent: str
    reference_rate: str
    margin_percent: str
    reference_floor_percent: str
    day_count: DayCount | None
    commitment_fee_percent: str
    exposure_fee_percent: str
    exposure_fee_timing: ExposureFeeTiming | None
    exposure_fee_settlement: ExposureFeeSettlement | None
    instalment_count: int
    grace_period_months: int
    default_margin_percent: str
    conditions_precedent: tuple[tuple[str, str], ...]
    """(condition_id, description) pairs, in the terms' order."""
    borrower_name: str
    borrower_iban: str


@dataclass(frozen=True, slots=True)
class SignOrder:
    facility_id: str
    terms_sha256: str


@dataclass(frozen=True, slots=True)
class ConditionOrder:
    facility_id: str
    condition_id: str
    evidence: str


@dataclass(frozen=True, slots=True)
class AdvanceOrder:
    facility_id: str
    event: FacilityEvent | None
    business_date: str
    reason: str


@dataclass(frozen=True, slots=True)
class FixingOrder:
    facility_id: str
    reference_rate: str
    period_start: str
    rate_percent: str


@dataclass(frozen=True, slots=True)
class DisbursementOrder:
    facility_id: str
    supplier_name: str
    supplier_account_number: str
    supplier_bank_id: str
    supplier_bank_aba: str
    supplier_bank_bic: str
    amount_minor: int
    currency: str
    invoice_reference: str
    value_date: str


@dataclass(frozen=True, slots=True)
class ReviewOrder:
    facility_id: str
    disbursement_id: str
    approve: bool | None
    """True: approve and pay; False: reject; None: unspecified."""
    uetr: str
    reason: str


@dataclass(frozen=True, slots=True)
class AccrualOrder:
    facility_id: str
    business_date: str


@dataclass(frozen=True, slots=True)
class RepayOrder:
    facility_id: str
    amount_minor: int
    currency: str
    quote_id: str
    uetr: str
    value_date: str


@dataclass(frozen=True, slots=True)
class Signed:
    """The instruction behind an order: its id, the bytes as signed, an earlier use of the id."""

    instruction_id: str
    instruction: SignedInstruction
    prior_payload: bytes | None = None
    """The caller's own committed instruction with this id (None: none)."""

    @property
    def signer(self) -> str:
        return self.instruction.signer


@dataclass(frozen=True, slots=True)
class Screening:
    """The supplier's sanctions screening, as recorded with the disbursement."""

    passed: bool
    best_score: str
    list_digest: str


@dataclass(frozen=True, slots=True)
class DisbursementRecord:
    """One disbursement request and, once reviewed, its decision (the read model's row)."""

    disbursement_id: str
    number: int
    request: DisbursementRequest
    supplier_bank_id: str
    supplier_account_number: str
    screening: Screening
    status: str
    """``requested``, ``paid`` or ``rejected``."""
    decision: Mapping[str, Any]
    """The decision event's body (empty while requested)."""
    request_body: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The request event's body, as committed."""

    @staticmethod
    def from_request_body(body: Mapping[str, Any]) -> DisbursementRecord:
        screening = body["screening"]
        return DisbursementRecord(
            disbursement_id=body["disbursement_id"],
            number=int(body["number"]),
            request=DisbursementRequest(
                request_id=body["disbursement_id"],
                facility_id=body["facility_id"],
                supplier_name=body["supplier_name"],
                supplier_bank_aba=body["supplier_bank_aba"],
                supplier_bank_bic=body["supplier_bank_bic"],
                amount_minor=_int(body["amount_minor"]),
                currency=body["currency"],
                invoice_reference=body["invoice_reference"],
                value_date=date.fromisoformat(body["value_date"]),
            ),
            supplier_bank_id=body["supplier_bank_id"],
            supplier_account_number=body["supplier_account_number"],
            screening=Screening(
                passed=bool(screening["passed"]),
                best_score=screening["best_score"],
                list_digest=screening["list_digest"],
            ),
            status="requested",
            decision={},
            request_body=body,
        )


DISBURSEMENT_REQUESTED: Final = "requested"
DISBURSEMENT_PAID: Final = "paid"
DISBURSEMENT_REJECTED: Final = "rejected"


@dataclass(frozen=True, slots=True)
class Decision:
    """What an instruction commits: its commands (one linked group) and the record after."""

    event_id: str
    """The instruction's own event: its receipt answers the call."""
    commands: tuple[Command, ...]
    record: FacilityRecord


# -- payments --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentPlan:
    """The payment a decision commits with the loan's booking (built by the payment flow)."""

    transaction_id: str
    """The payment's ledger transaction, ``payment:<uetr>``."""
    sent_minor: int
    sent_currency: str
    """What the debtor agent sends: the amount, or its PKR through an FX quote."""
    rate: str
    """The quote's rate ("" without a quote)."""
    commands: tuple[Command, ...]
    """Its ledger commands (status events, reservation, settlement), signed by the instruction."""


# -- decisions -------------------------------------------------------------------------------------


def _decide(
    record: FacilityRecord | None,
    signed: Signed,
    events: Sequence[tuple[str, str, dict[str, Any]]],
    others: Sequence[Command] = (),
) -> Decision:
    """Fold the events into the record (checking them as the projection will) and commit them."""
    after = record
    commands: list[Command] = []
    for event_id, event_type, body in events:
        after = evolve(after, event_type, body, signed.signer)
        commands.append(
            NewEvent(id=event_id, event_type=event_type, body=body, instruction=signed.instruction)
        )
    if after is None:
        raise IntegrityError("a decision without events")
    return Decision(event_id=events[0][0], commands=(*commands, *others), record=after)


def build_terms(order: TermsOrder, lender_id: str) -> FacilityTerms:
    """The terms of a CreateFacility instruction, or the first broken rule (all of them listed)."""
    check_facility_id(order.facility_id, "terms.facility_id")
    start = parse_date(order.availability_start, "terms.availability_start")
    end = parse_date(order.availability_end, "terms.availability_end")
    interest: Any = None
    if order.interest_type == "fixed":
        interest = FixedRate(_percent(order.fixed_rate_percent, "terms.fixed_rate_percent"))
    elif order.interest_type == "floating":
        interest = FloatingRate(
            order.reference_rate,
            _percent(order.margin_percent, "terms.margin_percent"),
            _percent(order.reference_floor_percent or "0", "terms.reference_floor_percent"),
        )
    commitment_fee = _percent(order.commitment_fee_percent, "terms.commitment_fee_percent")
    exposure_rate = _percent(order.exposure_fee_percent, "terms.exposure_fee_percent")
    default_margin = _percent(order.default_margin_percent, "terms.default_margin_percent")
    # Unspecified enums go to the terms' checks as they are, to be refused
    # under the term's own code in the terms' order.
    day_count: Any = order.day_count
    timing: Any = order.exposure_fee_timing
    settlement: Any = order.exposure_fee_settlement
    try:
        return FacilityTerms(
            facility_id=order.facility_id,
            lender_id=lender_id,
            borrower_id=order.borrower_id,
            borrower_bank_id=order.borrower_bank_id,
            guarantor_id=order.guarantor_id or None,
            currency=order.currency,
            commitment_minor=order.commitment_minor,
            availability_start=start,
            availability_end=end,
            interest=interest,
            day_count=day_count,
            commitment_fee_percent=commitment_fee,
            exposure_fee=ExposureFee(exposure_rate, timing, settlement),
            repayment=RepaymentProfile(order.instalment_count, order.grace_period_months),
            default_margin_percent=default_margin,
            conditions_precedent=tuple(
                ConditionPrecedent(condition_id, description)
                for condition_id, description in order.conditions_precedent
            ),
        )
    except LedgerError as error:
        findings: Sequence[LedgerError] = getattr(error, "findings", (error,))
        if len(findings) > 1:
            error.message = "; ".join(f"{item.code}: {item.message}" for item in findings)
        raise


def check_borrower(order: TermsOrder) -> None:
    """The borrower as the payments name it (after every term)."""
    for check, value, name in (
        (validate_name, order.borrower_name, "terms.borrower_name"),
        (validate_iban, order.borrower_iban, "terms.borrower_iban"),
    ):
        try:
            check(value, field=name)
        except PartyFieldInvalid as error:
            raise _with_field(error, name) from None


def decide_create(
    terms: FacilityTerms, borrower_name: str, borrower_iban: str, signed: Signed
) -> Decision:
    """Open the facility's accounts and record its terms (state APPROVED)."""
    facility_id = terms.facility_id
    accounts: list[Command] = []
    for account in LoanAccount:
        debit_normal = account in DEBIT_NORMAL_ACCOUNTS
        flags: frozenset[AccountFlag] = frozenset()
        if debit_normal:
            flags = frozenset({AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS})
        elif account is not LoanAccount.CASH_CLEARING:
            flags = frozenset({AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS})
        accounts.append(
            NewAccount(
                id=account_id(facility_id, account),
                owner=terms.lender_id,
                currency=CURRENCY,
                normal_side=Side.DEBIT if debit_normal else Side.CREDIT,
                flags=flags,
                metadata={"facility_id": facility_id},
                instruction=signed.instruction,
            )
        )
    body = {
        "facility_id": facility_id,
        "terms": terms_document(terms),
        "terms_sha256": terms_sha256(signed.instruction.payload),
        "borrower": {"name": borrower_name, "iban": borrower_iban},
    }
    return _decide(None, signed, [(signed.instruction_id, EVENT_FACILITY_CREATED, body)], accounts)


def decide_sign(record: FacilityRecord, order: SignOrder, signed: Signed) -> Decision:
    event = (
        FacilityEvent.LENDER_SIGNED
        if signed.signer == record.lender_id
        else FacilityEvent.BORROWER_BANK_SIGNED
    )
    if order.terms_sha256 != record.terms_sha256:
        raise _with_field(
            TermsMustMatch(
                f"expected terms_sha256 {record.terms_sha256} (the CreateFacility instruction "
                f"of {record.facility_id!r}), got {order.terms_sha256}: read the terms again"
            ),
            "terms_sha256",
        )
    target = transition(record.state, event)
    body = {
        "facility_id": record.facility_id,
        "event": event.value,
        "from_state": record.state.value,
        "to_state": target.value,
        "terms_sha256": order.terms_sha256,
    }
    return _decide(record, signed, [(signed.instruction_id, EVENT_FACILITY_SIGNED, body)])


def decide_condition(record: FacilityRecord, order: ConditionOrder, signed: Signed) -> Decision:
    if order.condition_id not in record.terms.condition_ids:
        known = ", ".join(item.condition_id for item in record.terms.conditions_precedent)
        raise _with_field(
            ConditionMustExist(
                f"facility {record.facility_id!r} has no condition {order.condition_id!r:.140}; "
                f"its conditions: {known or 'none'}"
            ),
            "condition_id",
        )
    if order.condition_id in record.satisfied_condition_ids:
        raise _with_field(
            ConditionMustNotBeSatisfied(f"condition {order.condition_id!r} is met already"),
            "condition_id",
        )
    if record.state not in CONDITION_STATES:
        raise FacilityMustAwaitConditions(
            f"conditions precedent are recorded until the facility is effective; "
            f"it is {record.state.value!r}"
        )
    body = {
        "facility_id": record.facility_id,
        "condition_id": order.condition_id,
        "evidence": order.evidence,
    }
    return _decide(record, signed, [(signed.instruction_id, EVENT_CONDITION_SATISFIED, body)])


def check_advance_order(order: AdvanceOrder) -> tuple[FacilityEvent, date]:
    if order.event not in DECLARABLE_EVENTS or order.event is None:
        names = ", ".join(sorted(event.name for event in DECLARABLE_EVENTS))
        raise _with_field(
            EventMustBeDeclarable(
                f"expected one of {names}; the others happen by themselves, got "
                f"{order.event.name if order.event is not None else 'none'}"
            ),
            "event",
        )
    business_date = parse_date(order.business_date, "business_date")
    check_text(order.reason, "reason", REASON_LENGTH_MAX)
    return order.event, business_date


def decide_advance(record: FacilityRecord, order: AdvanceOrder, signed: Signed) -> Decision:
    event, business_date = check_advance_order(order)
    target = transition(record.state, event)
    terms = record.terms
    if event is FacilityEvent.CONDITIONS_PRECEDENT_MET:
        outstanding = terms.outstanding_conditions(record.satisfied_condition_ids)
        if outstanding:
            raise ConditionsPrecedentMustBeMet(
                f"expected every condition precedent met, got outstanding: {', '.join(outstanding)}"
            )
    if event is FacilityEvent.AVAILABILITY_PERIOD_STARTED and (
        business_date < terms.availability_start
    ):
        raise _with_field(
            AvailabilityPeriodMustHaveStarted(
                f"the availability period starts {terms.availability_start.isoformat()}, "
                f"got {business_date.isoformat()}"
            ),
            "business_date",
        )
    if (
        event
        in (
            FacilityEvent.AVAILABILITY_PERIOD_ENDED,
            FacilityEvent.REPAYMENT_PERIOD_STARTED,
        )
        and business_date <= terms.availability_end
    ):
        raise _with_field(
            AvailabilityPeriodMustHaveEnded(
                f"the availability period ends with {terms.availability_end.isoformat()}; "
                f"declare it from the day after, got {business_date.isoformat()}"
            ),
            "business_date",
        )
    if event in (
        FacilityEvent.AVAILABILITY_PERIOD_ENDED,
        FacilityEvent.REPAYMENT_PERIOD_STARTED,
        FacilityEvent.ACCELERATION_DECLARED,
    ):
        _require_business_date(record, business_date, "business_date")
    cancelled_minor = 0
    if event in (FacilityEvent.AVAILABILITY_PERIOD_ENDED, FacilityEvent.ACCELERATION_DECLARED):
        cancelled_minor = record.remaining_commitment_minor
    body = {
        "facility_id": record.facility_id,
        "event": event.value,
        "from_state": record.state.value,
        "to_state": target.value,
        "business_date": business_date.isoformat(),
        "reason": order.reason,
        "cancelled_minor": _minor(cancelled_minor),
    }
    events: list[tuple[str, str, dict[str, Any]]] = [
        (signed.instruction_id, EVENT_FACILITY_ADVANCED, body)
    ]
    if event is FacilityEvent.REPAYMENT_PERIOD_STARTED:
        schedule = generate_schedule(record)
        events.append(
            (
                schedule_event_id(record.facility_id),
                EVENT_SCHEDULE_GENERATED,
                {"facility_id": record.facility_id, "schedule": schedule_document(schedule)},
            )
        )
    return _decide(record, signed, events)


def decide_fixing(record: FacilityRecord, order: FixingOrder, signed: Signed) -> Decision:
    period_start = parse_date(order.period_start, "period_start")
    rate = _percent(order.rate_percent, "rate_percent")
    fixing = RateFixing(order.reference_rate, period_start, rate)
    # The terms' own rules: a fixed facility takes no fixing, the name must
    # match, the rate must be a valid percentage.
    all_in_rate_percent(record.terms.interest, fixing)
    if not is_interest_period_start(record.terms, period_start):
        raise _with_field(
            PeriodStartMustBeInterestPeriodStart(
                f"{period_start.isoformat()} does not start an interest period of "
                f"{record.facility_id!r}"
            ),
            "period_start",
        )
    if period_start < record.business_date or (
        period_start == record.accrual.period_start
        and record.business_date > record.accrual.period_start
    ):
        raise _with_field(
            RateFixingMustPrecedePeriod(
                f"the period starting {period_start.isoformat()} has started accruing "
                f"(business date {record.business_date.isoformat()})"
            ),
            "period_start",
        )
    if record.fixing_for(period_start) is not None:
        raise _with_field(
            RateFixingExists(f"the period starting {period_start.isoformat()} is fixed already"),
            "period_start",
        )
    body = {
        "facility_id": record.facility_id,
        "reference_rate": fixing.reference_rate,
        "period_start": period_start.isoformat(),
        "rate_percent": str(rate),
    }
    return _decide(record, signed, [(signed.instruction_id, EVENT_RATE_FIXED, body)])


def _require_business_date(record: FacilityRecord, value_date: date, field: str) -> None:
    if value_date != record.business_date:
        raise _with_field(
            ValueDateMustBeBusinessDate(
                f"expected {record.business_date.isoformat()}, the facility's business date "
                f"(the first date not yet accrued), got {value_date.isoformat()}"
            ),
            field,
        )


@dataclass(frozen=True, slots=True)
class _RequestTerms:
    """What the request's own checks read of the terms, before the facility is read.

    A facility lends USD only, so the currency is known; the facility id is
    the request's own (whether it exists is asked after the idempotency check).
    """

    facility_id: str
    currency: str = CURRENCY


def check_disbursement_order(order: DisbursementOrder, disbursement_id: str) -> DisbursementRequest:
    """The request's own fields (INVALID_ARGUMENT), in loan.proto's order."""
    check_facility_id(order.facility_id)
    value_date = parse_date(order.value_date, "value_date")
    request = DisbursementRequest(
        request_id=disbursement_id,
        facility_id=order.facility_id,
        supplier_name=order.supplier_name,
        supplier_bank_aba=order.supplier_bank_aba,
        supplier_bank_bic=order.supplier_bank_bic,
        amount_minor=order.amount_minor,
        currency=order.currency,
        invoice_reference=order.invoice_reference,
        value_date=value_date,
    )
    terms = cast(FacilityTerms, _RequestTerms(order.facility_id))
    findings: list[LedgerError] = list(validate_request(terms, request))
    try:
        validate_us_account_number(order.supplier_account_number, field="supplier_account_number")
    except PartyFieldInvalid as finding:
        findings.insert(_account_number_position(findings), finding)
    if findings:
        raise findings[0]
    return request


def _account_number_position(findings: Sequence[LedgerError]) -> int:
    """The account number is checked after the name, before the bank's identifiers."""
    for position, finding in enumerate(findings):
        if finding.code not in ("request_id_must_be_valid", "name_must_be_valid"):
            return position
    return len(findings)


def supplier_bank_findings(
    order: DisbursementOrder, bic: str, aba_routing_number: str
) -> SupplierBankMustMatch | None:
    """The request names the supplier's bank as it is registered (BIC, and ABA when registered)."""
    if _bic11(order.supplier_bank_bic) != _bic11(bic):
        return SupplierBankMustMatch(
            f"supplier_bank_bic: participant {order.supplier_bank_id!r} is registered with BIC "
            f"{bic}, got {order.supplier_bank_bic}"
        )
    if aba_routing_number and order.supplier_bank_aba != aba_routing_number:
        return SupplierBankMustMatch(
            f"supplier_bank_aba: participant {order.supplier_bank_id!r} is registered with ABA "
            f"routing number {aba_routing_number}, got {order.supplier_bank_aba}"
        )
    return None


def _bic11(bic: str) -> str:
    """A BIC in its 11-character form: the primary office's branch code is XXX."""
    return bic if len(bic) == 11 else bic + "XXX"


def _checked_disbursement(
    record: FacilityRecord, request: DisbursementRequest, screening: Screening
) -> CheckedDisbursement:
    """Every check of a disbursement on the facility, in loan.proto's order."""
    findings: list[LedgerError] = list(
        disbursement_findings(
            record.terms,
            record.position,
            request,
            supplier_screening_passed=screening.passed,
        )
    )
    if request.value_date != record.business_date:
        position = len(findings)
        for index, finding in enumerate(findings):
            if isinstance(
                finding, AmountMustNotExceedRemainingCommitment | SupplierMustPassScreening
            ):
                position = index
                break
        findings.insert(
            position,
            _with_field(
                ValueDateMustBeBusinessDate(
                    f"expected {record.business_date.isoformat()}, the facility's business "
                    f"date, got {request.value_date.isoformat()}"
                ),
                "value_date",
            ),
        )
    if findings:
        raise findings[0]
    return check_disbursement(
        record.terms, record.position, request, supplier_screening_passed=screening.passed
    )


def decide_request(
    record: FacilityRecord,
    order: DisbursementOrder,
    request: DisbursementRequest,
    screening: Screening,
    signed: Signed,
) -> Decision:
    checked = _checked_disbursement(record, request, screening)
    body = {
        "facility_id": record.facility_id,
        "disbursement_id": signed.instruction_id,
        "number": record.request_count + 1,
        "supplier_name": order.supplier_name,
        "supplier_account_number": order.supplier_account_number,
        "supplier_bank_id": order.supplier_bank_id,
        "supplier_bank_aba": order.supplier_bank_aba,
        "supplier_bank_bic": order.supplier_bank_bic,
        "amount_minor": _minor(order.amount_minor),
        "currency": order.currency,
        "exposure_fee_minor": _minor(checked.exposure_fee_minor),
        "exposure_fee_financed": checked.exposure_fee_settlement is ExposureFeeSettlement.FINANCED,
        "principal_minor": _minor(checked.principal_minor),
        "invoice_reference": order.invoice_reference,
        "value_date": request.value_date.isoformat(),
        "screening": {
            "passed": screening.passed,
            "best_score": screening.best_score,
            "list_digest": screening.list_digest,
        },
    }
    return _decide(record, signed, [(signed.instruction_id, EVENT_DISBURSEMENT_REQUESTED, body)])


def check_review_order(order: ReviewOrder) -> None:
    check_facility_id(order.facility_id)
    if order.approve:
        try:
            validate_uetr(order.uetr, field="uetr")
        except PartyFieldInvalid as error:
            raise _with_field(error, "uetr") from None
    check_text(order.reason, "reason", REASON_LENGTH_MAX)


def decide_review(
    record: FacilityRecord,
    disbursement: DisbursementRecord,
    order: ReviewOrder,
    screening: Screening,
    signed: Signed,
    payment: Callable[[CheckedDisbursement], PaymentPlan] | None = None,
) -> Decision:
    """Reject, or approve and pay: ``payment`` builds the supplier's payment once it is checked."""
    if order.approve is None:
        raise _with_field(
            DecisionMustBeSpecified(
                "decision: expected DISBURSEMENT_DECISION_APPROVE or DISBURSEMENT_DECISION_REJECT"
            ),
            "decision",
        )
    if disbursement.status != DISBURSEMENT_REQUESTED:
        raise _with_field(
            DisbursementMustBeRequested(
                f"disbursement {disbursement.disbursement_id!r} is {disbursement.status} already"
            ),
            "disbursement_id",
        )
    facility_id = record.facility_id
    number = disbursement.number
    if not order.approve:
        rejection = {
            "facility_id": facility_id,
            "disbursement_id": disbursement.disbursement_id,
            "number": number,
            "reason": order.reason,
        }
        return _decide(
            record, signed, [(signed.instruction_id, EVENT_DISBURSEMENT_REJECTED, rejection)]
        )
    checked = _checked_disbursement(record, disbursement.request, screening)
    if payment is None:
        raise IntegrityError("an approval needs the payment flow")
    plan = payment(checked)
    loan_transaction_id = disbursement_transaction_id(facility_id, number)
    financed = checked.exposure_fee_settlement is ExposureFeeSettlement.FINANCED
    fee_minor = checked.exposure_fee_minor
    body: dict[str, Any] = {
        "facility_id": facility_id,
        "disbursement_id": disbursement.disbursement_id,
        "number": number,
        "value_date": record.business_date.isoformat(),
        "amount_minor": _minor(checked.supplier_payment_minor),
        "exposure_fee_minor": _minor(fee_minor),
        "exposure_fee_financed": financed,
        "principal_minor": _minor(checked.principal_minor),
        "remaining_commitment_minor": _minor(checked.remaining_commitment_minor),
        "uetr": order.uetr,
        "payment_transaction_id": plan.transaction_id,
        "loan_transaction_id": loan_transaction_id,
        "reason": order.reason,
    }
    if checked.commitment_fully_drawn:
        event = FacilityEvent.COMMITMENT_FULLY_DRAWN
        body["event"] = event.value
        body["from_state"] = record.state.value
        body["to_state"] = transition(record.state, event).value
    principal = account_id(facility_id, LoanAccount.PRINCIPAL)
    postings = [
        Posting(principal, Side.DEBIT, checked.principal_minor, CURRENCY),
        Posting(
            account_id(facility_id, LoanAccount.CASH_CLEARING),
            Side.CREDIT,
            checked.supplier_payment_minor,
            CURRENCY,
        ),
    ]
    if fee_minor > 0:
        if not financed:
            postings.append(
                Posting(
                    account_id(facility_id, LoanAccount.FEES_RECEIVABLE),
                    Side.DEBIT,
                    fee_minor,
                    CURRENCY,
                )
            )
        postings.append(
            Posting(
                account_id(facility_id, LoanAccount.FEE_INCOME), Side.CREDIT, fee_minor, CURRENCY
            )
        )
    booking = NewTransaction(
        id=loan_transaction_id,
        postings=tuple(postings),
        code=CODE_DISBURSEMENT,
        reference=facility_id,
        metadata={"facility_id": facility_id, "disbursement": number},
        instruction=signed.instruction,
    )
    return _decide(
        record,
        signed,
        [(signed.instruction_id, EVENT_DISBURSEMENT_PAID, body)],
        [*plan.commands, booking],
    )


def check_accrual_order(order: AccrualOrder, instruction_id: str) -> date:
    check_facility_id(order.facility_id)
    business_date = parse_date(order.business_date, "business_date")
    expected = accrual_id(order.facility_id, business_date)
    if instruction_id != expected:
        raise _with_field(
            InstructionIdMustBeAccrualId(
                f"an accrual's instruction_id is fixed so that a date accrues once: expected "
                f"{expected!r}, got {instruction_id!r:.140}"
            ),
            "instruction_id",
        )
    return business_date


def decide_accrual(record: FacilityRecord, business_date: date, signed: Signed) -> Decision:
    if record.state not in ACCRUING_STATES:
        raise FacilityMustBeAccruing(
            f"interest and fees accrue once the facility is available, until it is closed; "
            f"it is {record.state.value!r}"
        )
    accrual = accrue_on(record, business_date)
    facility_id = record.facility_id
    transaction_id = accrual_id(facility_id, business_date)
    legs = (
        (accrual.interest_minor, LoanAccount.INTEREST_RECEIVABLE, LoanAccount.INTEREST_INCOME),
        (accrual.commitment_fee_minor, LoanAccount.FEES_RECEIVABLE, LoanAccount.FEE_INCOME),
        (
            accrual.default_interest_minor,
            LoanAccount.DEFAULT_INTEREST_RECEIVABLE,
            LoanAccount.INTEREST_INCOME,
        ),
    )
    postings: list[Posting] = []
    for amount_minor, debit, credit in legs:
        if amount_minor > 0:
            postings.append(
                Posting(account_id(facility_id, debit), Side.DEBIT, amount_minor, CURRENCY)
            )
            postings.append(
                Posting(account_id(facility_id, credit), Side.CREDIT, amount_minor, CURRENCY)
            )
    body = {
        "facility_id": facility_id,
        "business_date": business_date.isoformat(),
        "day_weight_days": accrual.day_weight_days,
        "interest_rate_percent": str(accrual.state.interest_rate_percent),
        "outstanding_principal_minor": _minor(accrual.state.outstanding_principal_minor),
        "undrawn_commitment_minor": _minor(accrual.state.undrawn_commitment_minor),
        "overdue_minor": _minor(accrual.state.overdue_minor),
        "interest_minor": _minor(accrual.interest_minor),
        "commitment_fee_minor": _minor(accrual.commitment_fee_minor),
        "default_interest_minor": _minor(accrual.default_interest_minor),
        "transaction_id": transaction_id if postings else "",
    }
    others: list[Command] = []
    if postings:
        others.append(
            NewTransaction(
                id=transaction_id,
                postings=tuple(postings),
                code=CODE_ACCRUAL,
                reference=facility_id,
                metadata={"facility_id": facility_id, "business_date": business_date.isoformat()},
                instruction=signed.instruction,
            )
        )
    return _decide(record, signed, [(signed.instruction_id, EVENT_ACCRUED, body)], others)


def check_repay_order(order: RepayOrder) -> date:
    check_facility_id(order.facility_id)
    try:
        validate_uetr(order.uetr, field="uetr")
    except PartyFieldInvalid as error:
        raise _with_field(error, "uetr") from None
    value_date = parse_date(order.value_date, "value_date")
    if (
        isinstance(order.amount_minor, bool)
        or not isinstance(order.amount_minor, int)
        or order.amount_minor < 1
    ):
        raise _with_field(
            RepaymentAmountMustBeInRange(
                f"amount_minor: expected a positive number of minor units, got {order.amount_minor}"
            ),
            "amount_minor",
        )
    if order.currency != CURRENCY:
        raise _with_field(
            CurrencyMustMatchFacility(f"expected {CURRENCY}, got {order.currency!r:.10}"),
            "currency",
        )
    return value_date


def decide_repay(
    record: FacilityRecord,
    order: RepayOrder,
    value_date: date,
    signed: Signed,
    payment: Callable[[int], PaymentPlan],
) -> Decision:
    """Apply a repayment by the waterfall; ``payment`` builds its payment (given the number)."""
    if record.state not in REPAYABLE_STATES or record.disbursed_principal_minor == 0:
        raise FacilityMustBeRepayable(
            f"a facility is repaid once something is drawn, until it is closed; it is "
            f"{record.state.value!r} with {record.disbursed_principal_minor} drawn"
        )
    _require_business_date(record, value_date, "value_date")
    application = apply_repayment(record.outstanding(value_date), order.amount_minor)
    facility_id = record.facility_id
    number = record.repayment_count + 1
    loan_transaction_id = repayment_transaction_id(facility_id, number)
    plan = payment(number)
    body: dict[str, Any] = {
        "facility_id": facility_id,
        "repayment_id": signed.instruction_id,
        "number": number,
        "value_date": value_date.isoformat(),
        "amount_minor": _minor(order.amount_minor),
        "split": _split_document(application),
        "uetr": order.uetr,
        "sent_minor": _minor(plan.sent_minor),
        "sent_currency": plan.sent_currency,
        "quote_id": order.quote_id,
        "rate": plan.rate,
        "payment_transaction_id": plan.transaction_id,
        "loan_transaction_id": loan_transaction_id,
    }
    after = _after_repayment(record, application)
    if after.state in CLOSING_STATES and after.is_settled():
        event = FacilityEvent.FULLY_REPAID
        body["event"] = event.value
        body["from_state"] = record.state.value
        body["to_state"] = transition(record.state, event).value
    receivables = (
        (application.fees_minor, LoanAccount.FEES_RECEIVABLE),
        (application.default_interest_minor, LoanAccount.DEFAULT_INTEREST_RECEIVABLE),
        (application.interest_minor, LoanAccount.INTEREST_RECEIVABLE),
        (application.principal_minor, LoanAccount.PRINCIPAL),
    )
    postings = [
        Posting(
            account_id(facility_id, LoanAccount.CASH_CLEARING),
            Side.DEBIT,
            order.amount_minor,
            CURRENCY,
        ),
        *(
            Posting(account_id(facility_id, account), Side.CREDIT, amount_minor, CURRENCY)
            for amount_minor, account in receivables
            if amount_minor > 0
        ),
    ]
    booking = NewTransaction(
        id=loan_transaction_id,
        postings=tuple(postings),
        code=CODE_REPAYMENT,
        reference=facility_id,
        metadata={"facility_id": facility_id, "repayment": number},
        instruction=signed.instruction,
    )
    return _decide(
        record,
        signed,
        [(signed.instruction_id, EVENT_REPAYMENT_APPLIED, body)],
        [*plan.commands, booking],
    )


# -- orchestration ---------------------------------------------------------------------------------


class PartiesMustPassScreening(FailedPrecondition):
    """The payment's own screening of the borrower or the supplier hit: nothing is paid."""

    code = "parties_must_pass_screening"


def first_error(results: Sequence[CommandResult]) -> LedgerError | None:
    """The error that decided a linked submit: the failing command's own."""
    errors = [result.error for result in results if result.error is not None]
    for error in errors:
        if not isinstance(error, LinkedCommandFailed):
            return error
    return errors[0] if errors else None


def may_see(caller: Caller, record: FacilityRecord) -> bool:
    """The facility's lender and borrower bank, the operator and auditors see a facility."""
    return caller.sees_everything or caller.participant_id in (
        record.lender_id,
        record.terms.borrower_bank_id,
    )


def _differing_fields(before: bytes, after: bytes) -> list[str]:
    old, new = json.loads(before), json.loads(after)
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


_EVENT_NAMESPACE: Final = "event/"
"""``ledger.batch.entry_key`` of a NewEvent: where an instruction's own event is found."""


@dataclass
class LoanFlows:
    """The loan flows of one hub. Async methods; blocking work runs in worker threads.

    Every write holds :attr:`_writes` from its first read of the facility to
    its commit, so the checks it made still hold when it lands (this process
    is the hub's only writer).
    """

    hub: Hub
    payments: PaymentFlows
    _writes: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    @property
    def ledger(self) -> Ledger:
        return self.hub.ledger

    # -- reads (blocking) ----------------------------------------------------------------------

    def visible_facility(self, caller: Caller, facility_id: str) -> FacilityRow:
        """The facility, or NOT_FOUND facility_must_exist when it is absent or hidden."""
        check_facility_id(facility_id)
        row = loans_projection.facility(self.ledger, facility_id)
        if row is None or not may_see(caller, row.record):
            raise _with_field(
                FacilityMustExist(f"facility {facility_id!r} does not exist"), "facility_id"
            )
        return row

    def visible_disbursement(self, caller: Caller, disbursement_id: str) -> DisbursementRow:
        """Also for the supplier's bank it pays; NOT_FOUND for anyone else."""
        row = loans_projection.disbursement(self.ledger, disbursement_id)
        if row is not None:
            record = loans_projection.facility_record(self.ledger, row.record.request.facility_id)
            if record is not None and (
                may_see(caller, record) or caller.participant_id == row.record.supplier_bank_id
            ):
                return row
        raise _with_field(
            DisbursementMustExist(f"disbursement {disbursement_id!r:.140} does not exist"),
            "disbursement_id",
        )

    def event_body(self, event_id: str) -> Mapping[str, Any]:
        """The body of a committed loan event (e.g. an accrual's, to answer its retry)."""
        with self.ledger.reading() as connection:
            leaf = connection.execute(
                select(journal.c.leaf).where(journal.c.entry_key == _EVENT_NAMESPACE + event_id)
            ).scalar_one_or_none()
        if leaf is None:
            raise IntegrityError(f"event {event_id!r} is not in the journal")
        body: Mapping[str, Any] = json.loads(bytes(leaf))["body"]
        return body

    def check_on_ledger(self, record: FacilityRecord) -> None:
        """The read model is the decision's fold, and the loan accounts say the same.

        Run after every write: outstanding principal on the principal account
        equals disbursed minus repaid principal, and every other loan account
        holds what the record says it must.
        """
        stored = loans_projection.facility_record(self.ledger, record.facility_id)
        if stored is None or record_document(stored) != record_document(record):
            raise IntegrityError(
                f"facility {record.facility_id!r}: the projection's record differs from the "
                "committed decision's"
            )
        ids = {account_id(record.facility_id, account): account for account in LoanAccount}
        # One read of the seven running totals (Ledger.balance reads one account a call).
        with self.ledger.reading() as connection:
            rows = connection.execute(
                select(accounts.c.id, accounts.c.debits_posted, accounts.c.credits_posted).where(
                    accounts.c.id.in_(sorted(ids))
                )
            ).all()
        posted = {ids[row.id]: int(row.debits_posted) - int(row.credits_posted) for row in rows}
        findings = []
        for account, expected_minor in expected_balances(record).items():
            if account not in posted:
                findings.append(f"{account.value}: the account does not exist")
                continue
            net_minor = posted[account]
            if account not in DEBIT_NORMAL_ACCOUNTS:
                net_minor = -net_minor
            if account is LoanAccount.PRINCIPAL:
                check_outstanding_principal(
                    record.disbursed_principal_minor, record.repaid_principal_minor, net_minor
                )
            if net_minor != expected_minor:
                findings.append(f"{account.value}: expected {expected_minor}, got {net_minor}")
        if findings:
            raise IntegrityError(
                f"facility {record.facility_id!r}: ledger balances differ from the record: "
                + "; ".join(findings)
            )

    # -- writes --------------------------------------------------------------------------------

    async def create_facility(
        self, caller: Caller, order: TermsOrder, signed: Signed
    ) -> tuple[Receipt, str]:
        terms = build_terms(order, caller.participant_id)
        check_borrower(order)
        retry = await self._retry(signed)
        if retry is not None:
            return retry, terms.facility_id

        def decide() -> Decision:
            bank = self.hub.registry.get(terms.borrower_bank_id)
            if bank is None or bank.role is not Role.BANK:
                raise _with_field(
                    ParticipantMustExist(
                        f"borrower_bank_id {terms.borrower_bank_id!r} is not a registered bank"
                    ),
                    "terms.borrower_bank_id",
                )
            if loans_projection.facility_exists(self.ledger, terms.facility_id):
                raise _with_field(
                    FacilityExists(
                        f"facility {terms.facility_id!r} exists; choose another facility_id"
                    ),
                    "terms.facility_id",
                )
            return decide_create(terms, order.borrower_name, order.borrower_iban, signed)

        return await self._commit(signed, decide), terms.facility_id

    async def sign_facility(self, caller: Caller, order: SignOrder, signed: Signed) -> Receipt:
        check_facility_id(order.facility_id)
        if _SHA256_HEX.fullmatch(order.terms_sha256) is None:
            raise _with_field(
                TermsSha256MustBeValid(
                    f"expected 64 lower-case hex digits, got {order.terms_sha256!r:.80}"
                ),
                "terms_sha256",
            )
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, lender=True, borrower_bank=True)
            return decide_sign(record, order, signed)

        return await self._commit(signed, decide)

    async def satisfy_condition(
        self, caller: Caller, order: ConditionOrder, signed: Signed
    ) -> Receipt:
        check_facility_id(order.facility_id)
        check_text(order.evidence, "evidence", EVIDENCE_LENGTH_MAX, required=True)
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, lender=True)
            return decide_condition(record, order, signed)

        return await self._commit(signed, decide)

    async def advance_facility(
        self, caller: Caller, order: AdvanceOrder, signed: Signed
    ) -> Receipt:
        check_facility_id(order.facility_id)
        check_advance_order(order)
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, lender=True)
            return decide_advance(record, order, signed)

        return await self._commit(signed, decide)

    async def set_rate_fixing(self, caller: Caller, order: FixingOrder, signed: Signed) -> Receipt:
        check_facility_id(order.facility_id)
        parse_date(order.period_start, "period_start")
        _percent(order.rate_percent, "rate_percent")
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, lender=True)
            return decide_fixing(record, order, signed)

        return await self._commit(signed, decide)

    async def request_disbursement(
        self, caller: Caller, order: DisbursementOrder, signed: Signed
    ) -> Receipt:
        request = check_disbursement_order(order, signed.instruction_id)
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, borrower_bank=True)
            self._check_supplier_bank(order)
            screening = self._screen_supplier(order.supplier_name)
            return decide_request(record, order, request, screening, signed)

        return await self._commit(signed, decide)

    async def review_disbursement(
        self, caller: Caller, order: ReviewOrder, signed: Signed
    ) -> Receipt:
        check_review_order(order)
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, lender=True)
            row = loans_projection.disbursement(self.ledger, order.disbursement_id)
            if row is None or row.record.request.facility_id != record.facility_id:
                raise _with_field(
                    DisbursementMustExist(
                        f"facility {record.facility_id!r} has no disbursement "
                        f"{order.disbursement_id!r:.140}"
                    ),
                    "disbursement_id",
                )
            disbursement = row.record
            screening = disbursement.screening
            if order.approve and disbursement.status == DISBURSEMENT_REQUESTED:
                # Screened again when paid: the list may have changed since the request.
                screening = self._screen_supplier(disbursement.request.supplier_name)

            def payment(checked: CheckedDisbursement) -> PaymentPlan:
                return self._disbursement_payment(caller, record, disbursement, order, signed)

            return decide_review(record, disbursement, order, screening, signed, payment)

        return await self._commit(signed, decide)

    async def accrue_interest(self, caller: Caller, order: AccrualOrder, signed: Signed) -> Receipt:
        business_date = check_accrual_order(order, signed.instruction_id)
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, lender=True, operator=True)
            return decide_accrual(record, business_date, signed)

        return await self._commit(signed, decide)

    async def repay(self, caller: Caller, order: RepayOrder, signed: Signed) -> Receipt:
        value_date = check_repay_order(order)
        retry = await self._retry(signed)
        if retry is not None:
            return retry

        def decide() -> Decision:
            record = self._facility_of(caller, order.facility_id, borrower_bank=True)

            def payment(number: int) -> PaymentPlan:
                return self._repayment_payment(caller, record, order, number, signed)

            return decide_repay(record, order, value_date, signed, payment)

        return await self._commit(signed, decide)

    # -- steps ---------------------------------------------------------------------------------

    async def _retry(self, signed: Signed) -> Receipt | None:
        """The idempotency check: the original receipt of an identical committed instruction."""
        if signed.prior_payload is None:
            return None
        if signed.prior_payload != signed.instruction.payload:
            raise ExistsWithDifferentBody(
                signed.instruction_id,
                _differing_fields(signed.prior_payload, signed.instruction.payload),
            )
        return await asyncio.to_thread(self._original_receipt, signed.instruction_id)

    def _original_receipt(self, instruction_id: str) -> Receipt:
        with self.ledger.reading() as connection:
            row = connection.execute(
                select(journal.c.journal_index, journal.c.leaf, journal.c.committed_at_us).where(
                    journal.c.entry_key == _EVENT_NAMESPACE + instruction_id
                )
            ).first()
        if row is None:
            raise IntegrityError(f"instruction {instruction_id!r} committed without its event")
        return Receipt(
            instruction_id,
            int(row.journal_index),
            leaf_hash(bytes(row.leaf)),
            int(row.committed_at_us),
            existed=True,
        )

    async def _commit(self, signed: Signed, decide: Callable[[], Decision]) -> Receipt:
        """Decide under the write lock, commit as one linked group, check it on the ledger."""
        async with self._writes:
            decision = await asyncio.to_thread(decide)
            results = await self.hub.sequencer.submit(decision.commands, linked=True)
            error = first_error(results)
            if error is not None:
                raise error
            receipt = results[0].receipt
            if receipt is None or results[0].id != decision.event_id:
                raise IntegrityError("a loan commit without its event's receipt")
            await asyncio.to_thread(self.check_on_ledger, decision.record)
        return Receipt(
            signed.instruction_id,
            receipt.journal_index,
            receipt.leaf_hash,
            receipt.committed_at_us,
            existed=receipt.existed,
        )

    def _facility_of(
        self,
        caller: Caller,
        facility_id: str,
        *,
        lender: bool = False,
        borrower_bank: bool = False,
        operator: bool = False,
    ) -> FacilityRecord:
        """The facility, if the caller is one of the parties named (NOT_FOUND otherwise)."""
        record = loans_projection.facility_record(self.ledger, facility_id)
        allowed = {
            record.lender_id if record is not None and lender else None,
            record.terms.borrower_bank_id if record is not None and borrower_bank else None,
        }
        if record is not None and (
            caller.participant_id in allowed or (operator and caller.role is Role.OPERATOR)
        ):
            return record
        raise _with_field(
            FacilityMustExist(f"facility {facility_id!r} does not exist"), "facility_id"
        )

    def _check_supplier_bank(self, order: DisbursementOrder) -> None:
        bank = self.hub.registry.get(order.supplier_bank_id)
        if bank is None or bank.role is not Role.BANK:
            raise _with_field(
                ParticipantMustExist(
                    f"supplier_bank_id {order.supplier_bank_id!r:.80} is not a registered bank"
                ),
                "supplier_bank_id",
            )
        mismatch = supplier_bank_findings(order, bank.bic, bank.aba_routing_number)
        if mismatch is not None:
            raise mismatch

    def _screen_supplier(self, name: str) -> Screening:
        sanctions = self.payments.sanctions()
        result = sanctions.screen(
            name, threshold=self.payments.settings.screening_threshold, field="supplier_name"
        )
        return Screening(
            passed=not result.hit,
            best_score=f"{result.best_score:.4f}",
            list_digest=result.list_digest,
        )

    def _borrower(self, record: FacilityRecord) -> PartyRecord:
        return PartyRecord(
            name=record.borrower_name, iban=record.borrower_iban, country=record.borrower_iban[:2]
        )

    # The payment flow's checks and commands, committed in the loan's linked
    # group. PaymentFlows answers its own RPCs with one commit per payment; a
    # loan needs the payment and its booking in ONE commit, so it reuses the
    # flow's preparation and commands (its private steps) and appends the
    # booking. See the report in loan.proto's ReviewDisbursement and Repay.

    def _disbursement_payment(
        self,
        caller: Caller,
        record: FacilityRecord,
        disbursement: DisbursementRecord,
        order: ReviewOrder,
        signed: Signed,
    ) -> PaymentPlan:
        # Imported here: the payment flow imports the hub, which imports this module.
        from settlement.payments.flow import PaymentOrder  # noqa: PLC0415
        from settlement.payments.flow import Signed as PaymentSigned  # noqa: PLC0415

        request = disbursement.request
        payment_order = PaymentOrder(
            uetr=order.uetr,
            end_to_end_id=request.invoice_reference,
            quote_id="",
            amount_minor=request.amount_minor,
            currency=CURRENCY,
            debtor=self._borrower(record),
            creditor=PartyRecord(
                name=request.supplier_name,
                account_number=disbursement.supplier_account_number,
                aba_routing_number=request.supplier_bank_aba,
                country=SUPPLIER_BANK_COUNTRY,
            ),
            creditor_agent_id=disbursement.supplier_bank_id,
            remittance_information=request.invoice_reference,
        )
        prepared = self.payments._prepare(
            caller,
            payment_order,
            PaymentSigned(signed.instruction_id, signed.instruction),
        )
        if isinstance(prepared, tuple):
            raise IntegrityError(f"payment {order.uetr} was committed by this instruction already")
        return self._plan(prepared)

    def _repayment_payment(
        self,
        caller: Caller,
        record: FacilityRecord,
        order: RepayOrder,
        number: int,
        signed: Signed,
    ) -> PaymentPlan:
        from settlement.payments.flow import (  # noqa: PLC0415 - see _disbursement_payment
            END_TO_END_ID_LENGTH_MAX,
            FEE_ACCOUNT_PREFIX,
            PaymentOrder,
        )
        from settlement.payments.flow import Signed as PaymentSigned  # noqa: PLC0415
        from settlement.payments.flow import (  # noqa: PLC0415
            _check_quote_usable as check_quote_usable,
        )
        from settlement.payments.flow import _Prepared as PreparedPayment  # noqa: PLC0415

        lender = self.hub.registry.get(record.lender_id)
        if lender is None:
            raise IntegrityError(f"lender {record.lender_id!r} is not registered")
        payment_order = PaymentOrder(
            uetr=order.uetr,
            end_to_end_id=f"R{number}-{record.facility_id}"[:END_TO_END_ID_LENGTH_MAX],
            quote_id=order.quote_id,
            amount_minor=order.amount_minor,
            currency=CURRENCY,
            debtor=self._borrower(record),
            creditor=PartyRecord(name=lender.legal_name, country=lender.country),
            creditor_agent_id=record.lender_id,
            remittance_information=f"{record.facility_id} repayment {number}",
        )
        if payments_projection.payment_by_uetr(self.ledger, order.uetr) is not None:
            raise _with_field(
                UetrTaken(f"UETR {order.uetr} belongs to another payment; generate a new one"),
                "uetr",
            )
        quote = None
        source_currency, send_minor, fee_minor, rate, provider = (
            CURRENCY,
            order.amount_minor,
            0,
            "",
            "",
        )
        if order.quote_id:
            quote = payments_projection.quote_by_id(self.ledger, order.quote_id)
            if quote is None:
                raise _with_field(
                    QuoteMustExist(f"quote {order.quote_id!r:.80} does not exist"), "quote_id"
                )
            check_quote_usable(quote, caller, payment_order, self.payments.now_us())
            if quote.target_currency != CURRENCY or quote.receive_minor != order.amount_minor:
                raise _with_field(
                    QuoteMustMatch(
                        f"quote {quote.quote_id!r} delivers {quote.receive_minor} "
                        f"{quote.target_currency}; the repayment is {order.amount_minor} {CURRENCY}"
                    ),
                    "quote_id",
                )
            source_currency, send_minor = quote.source_currency, quote.send_minor
            fee_minor, rate, provider = quote.fee_minor, quote.rate, quote.fx_provider_id
        thresholds = self.payments.settings.reporting_thresholds
        flags = list(reporting_flags(send_minor, source_currency, thresholds=thresholds))
        for flag in reporting_flags(order.amount_minor, CURRENCY, thresholds=thresholds):
            if flag not in flags:
                flags.append(flag)
        open_fee_account = False
        if fee_minor > 0:
            try:
                self.ledger.account(FEE_ACCOUNT_PREFIX + source_currency)
            except AccountNotFound:
                open_fee_account = True
        prepared = PreparedPayment(
            caller=caller,
            order=payment_order,
            signed=PaymentSigned(signed.instruction_id, signed.instruction),
            quote=quote,
            fx_provider_id=provider,
            source_currency=source_currency,
            send_minor=send_minor,
            target_currency=CURRENCY,
            receive_minor=order.amount_minor,
            fee_minor=fee_minor,
            rate=rate,
            screening=self.payments._screen(payment_order),
            reporting_flags=tuple(flags),
            open_fee_account=open_fee_account,
        )
        return self._plan(prepared)

    def _plan(self, prepared: PreparedPayment) -> PaymentPlan:
        screening = prepared.screening
        if screening.hit:
            raise PartiesMustPassScreening(
                f"the payment's screening matched {screening.screened_name!r} to the listed "
                f"{screening.listed_name!r} (score {screening.score}); the loan pays nothing "
                "that a reviewer would have to hold"
            )
        commands = self.payments._submission_commands(prepared, rejection=None)
        return PaymentPlan(
            transaction_id=PAYMENT_TRANSACTION_PREFIX + prepared.order.uetr,
            sent_minor=prepared.send_minor,
            sent_currency=prepared.source_currency,
            rate=prepared.rate,
            commands=tuple(commands),
        )


# Last: the read models import this module (its records and fold), and this
# module reads them at call time only.
from settlement.loans import projection as loans_projection  # noqa: E402
