"""Checks of a disbursement request, before the lender approves it and it is paid.

A disbursement pays a US supplier's invoice from the facility, to the
supplier's US bank (ABA routing number and BIC). It is checked, in this order
of precedence, and every finding is reported (:func:`disbursement_findings`):

1. the request itself: ids, the supplier's name, the bank's ABA routing
   number and BIC (a US one) by the hub's party checks
   (:mod:`settlement.compliance.parties`, the same rules a payment's parties
   meet), amount, currency, invoice;
2. the facility is not in default (``defaulted`` or ``accelerated``);
3. the facility is ``available``;
4. every condition precedent is met;
5. the value date is within the availability period (both ends included);
6. the principal it adds fits the remaining commitment;
7. the supplier passed sanctions screening (the result is passed in: the
   screening itself is not done here).

The remaining commitment is the commitment less all principal ever drawn and
less what was cancelled; repayments do not restore it (a term loan, not a
revolving one). A financed exposure fee is principal too: it is drawn with
the disbursement and uses commitment.

Outstanding principal always equals disbursed minus repaid principal;
:func:`check_outstanding_principal` is the check the caller runs on writing
and again on reading back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Final

from ledger.errors import IntegrityError
from settlement.compliance.parties import (
    PartyFieldInvalid,
    validate_bic,
    validate_name,
    validate_routing_number,
)
from settlement.errors import FailedPrecondition, InvalidArgument, SettlementError
from settlement.loans.accrual import round_to_minor
from settlement.loans.states import DEFAULT_STATES, FacilityState
from settlement.loans.terms import (
    COMMITMENT_MINOR_MAX,
    IDENTIFIER_LENGTH_MAX,
    ExposureFeeSettlement,
    ExposureFeeTiming,
    FacilityTerms,
)

INVOICE_REFERENCE_LENGTH_MAX: Final = 35
"""ISO 20022's Max35Text, where the invoice number travels in the remittance information."""

SUPPLIER_BANK_COUNTRY: Final = "US"
"""The facility finances US exports: the supplier's bank is in the United States."""

_IDENTIFIER: Final = re.compile(f"[!-~]{{1,{IDENTIFIER_LENGTH_MAX}}}")
_CONTROL_CHARACTER: Final = re.compile("[\x00-\x1f\x7f]")


# --- Findings, in order of precedence. Codes never change. -------------------


class RequestIdMustBeValid(InvalidArgument):
    code = "request_id_must_be_valid"


class FacilityIdMustMatch(InvalidArgument):
    code = "facility_id_must_match"


class AmountMustBeInRange(InvalidArgument):
    code = "amount_minor_must_be_in_range"


class CurrencyMustMatchFacility(InvalidArgument):
    code = "currency_must_match_facility"


class InvoiceReferenceMustBeValid(InvalidArgument):
    code = "invoice_reference_must_be_valid"


class FacilityMustNotBeInDefault(FailedPrecondition):
    code = "facility_must_not_be_in_default"


class FacilityMustBeAvailable(FailedPrecondition):
    code = "facility_must_be_available"


class ConditionsPrecedentMustBeMet(FailedPrecondition):
    code = "conditions_precedent_must_be_met"


class ValueDateMustBeWithinAvailabilityPeriod(FailedPrecondition):
    code = "value_date_must_be_within_availability_period"


class AmountMustNotExceedRemainingCommitment(FailedPrecondition):
    code = "amount_must_not_exceed_remaining_commitment"


class SupplierMustPassScreening(FailedPrecondition):
    code = "supplier_must_pass_screening"


class CommitmentMustNotBeOverdrawn(IntegrityError):
    code = "commitment_must_not_be_overdrawn"


class OutstandingPrincipalMustEqualDisbursedMinusRepaid(IntegrityError):
    code = "outstanding_principal_must_equal_disbursed_minus_repaid"


# --- Records. ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisbursementRequest:
    """A borrower's request to pay one supplier invoice from the facility."""

    request_id: str
    facility_id: str
    supplier_name: str
    supplier_bank_aba: str
    """The supplier's bank's nine-digit ABA routing number."""
    supplier_bank_bic: str
    """The supplier's bank's BIC (8 or 11 characters, country US)."""
    amount_minor: int
    """What the supplier is paid."""
    currency: str
    invoice_reference: str
    value_date: date


@dataclass(frozen=True, slots=True)
class FacilityPosition:
    """What the checks need from the facility's record and its ledger accounts."""

    state: FacilityState
    disbursed_principal_minor: int
    """All principal drawn so far, financed exposure fees included."""
    cancelled_minor: int
    """Commitment cancelled (the undrawn amount when availability expired)."""
    satisfied_condition_ids: frozenset[str]
    disbursement_count: int
    """Disbursements paid so far (an upfront exposure fee falls on the first)."""


@dataclass(frozen=True, slots=True)
class CheckedDisbursement:
    """A request that passed every check: what to pay, charge and draw."""

    request: DisbursementRequest
    supplier_payment_minor: int
    exposure_fee_minor: int
    exposure_fee_settlement: ExposureFeeSettlement
    principal_minor: int
    """Added to outstanding principal: the payment, plus the exposure fee if financed."""
    remaining_commitment_minor: int
    """Left to draw after this disbursement."""

    @property
    def commitment_fully_drawn(self) -> bool:
        """True when the caller must also fire ``commitment_fully_drawn``."""
        return self.remaining_commitment_minor == 0


# --- Figures. ----------------------------------------------------------------


def remaining_commitment_minor(terms: FacilityTerms, position: FacilityPosition) -> int:
    """Commitment less principal drawn and less what was cancelled."""
    remaining = (
        terms.commitment_minor - position.disbursed_principal_minor - position.cancelled_minor
    )
    if remaining < 0:
        raise CommitmentMustNotBeOverdrawn(
            f"expected drawn {position.disbursed_principal_minor} plus cancelled "
            f"{position.cancelled_minor} to be at most the commitment {terms.commitment_minor}"
        )
    return remaining


def exposure_fee_minor(terms: FacilityTerms, amount_minor: int, *, first_disbursement: bool) -> int:
    """The exposure fee a disbursement of ``amount_minor`` triggers.

    Per disbursement: the fee rate on the amount. Upfront: the fee rate on the
    whole commitment, on the first disbursement only. Rounded once.
    """
    fee = terms.exposure_fee
    if fee.timing is ExposureFeeTiming.PER_DISBURSEMENT:
        base_minor = amount_minor
    elif first_disbursement:
        base_minor = terms.commitment_minor
    else:
        return 0
    return round_to_minor(base_minor * Fraction(fee.rate_percent) / 100)


def _is_amount(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 1 <= value <= COMMITMENT_MINOR_MAX
    )


def _is_text(value: object, length_max: int) -> bool:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and len(value) <= length_max
        and _CONTROL_CHARACTER.search(value) is None
    )


# --- Checks. -----------------------------------------------------------------


def validate_request(terms: FacilityTerms, request: DisbursementRequest) -> list[SettlementError]:
    """Findings about the request itself, whatever the facility's state."""
    findings: list[SettlementError] = []
    if not (isinstance(request.request_id, str) and _IDENTIFIER.fullmatch(request.request_id)):
        findings.append(
            RequestIdMustBeValid(
                f"expected 1 to {IDENTIFIER_LENGTH_MAX} printable ASCII characters, "
                f"got {request.request_id!r}"
            )
        )
    if request.facility_id != terms.facility_id:
        findings.append(
            FacilityIdMustMatch(
                f"expected facility {terms.facility_id!r}, got {request.facility_id!r}"
            )
        )
    try:
        validate_name(request.supplier_name, field="supplier_name")
    except PartyFieldInvalid as finding:
        findings.append(finding)
    try:
        validate_routing_number(request.supplier_bank_aba, field="supplier_bank_aba")
    except PartyFieldInvalid as finding:
        findings.append(finding)
    try:
        validate_bic(
            request.supplier_bank_bic, field="supplier_bank_bic", country=SUPPLIER_BANK_COUNTRY
        )
    except PartyFieldInvalid as finding:
        findings.append(finding)
    amount = request.amount_minor
    if not _is_amount(amount):
        findings.append(
            AmountMustBeInRange(
                f"expected an integer of minor units from 1 to {COMMITMENT_MINOR_MAX}, "
                f"got {amount!r}"
            )
        )
    if request.currency != terms.currency:
        findings.append(
            CurrencyMustMatchFacility(f"expected {terms.currency}, got {request.currency!r}")
        )
    if not _is_text(request.invoice_reference, INVOICE_REFERENCE_LENGTH_MAX):
        findings.append(
            InvoiceReferenceMustBeValid(
                f"expected an invoice reference of 1 to {INVOICE_REFERENCE_LENGTH_MAX} "
                f"characters without control characters, got {request.invoice_reference!r}"
            )
        )
    return findings


def validate_facility(
    terms: FacilityTerms,
    position: FacilityPosition,
    request: DisbursementRequest,
    *,
    supplier_screening_passed: bool,
) -> list[SettlementError]:
    """Findings about the facility's state, conditions, dates, commitment and screening."""
    findings: list[SettlementError] = []
    if position.state in DEFAULT_STATES:
        findings.append(
            FacilityMustNotBeInDefault(
                f"expected a facility not in default, got state {position.state.value!r}"
            )
        )
    elif position.state is not FacilityState.AVAILABLE:
        findings.append(
            FacilityMustBeAvailable(
                f"expected state {FacilityState.AVAILABLE.value!r}, got {position.state.value!r}"
            )
        )
    outstanding = terms.outstanding_conditions(position.satisfied_condition_ids)
    if outstanding:
        findings.append(
            ConditionsPrecedentMustBeMet(
                f"expected every condition precedent met, got outstanding: {', '.join(outstanding)}"
            )
        )
    if not terms.availability_start <= request.value_date <= terms.availability_end:
        findings.append(
            ValueDateMustBeWithinAvailabilityPeriod(
                f"expected a value date from {terms.availability_start.isoformat()} to "
                f"{terms.availability_end.isoformat()}, got {request.value_date.isoformat()}"
            )
        )
    # A malformed amount is reported by validate_request; there is nothing to compare.
    if _is_amount(request.amount_minor):
        principal_minor, fee_minor = _principal_and_fee_minor(terms, position, request)
        remaining = remaining_commitment_minor(terms, position)
        if principal_minor > remaining:
            financed = f" (amount {request.amount_minor} + financed fee {fee_minor})"
            findings.append(
                AmountMustNotExceedRemainingCommitment(
                    f"expected principal of at most {remaining}, the remaining commitment, "
                    f"got {principal_minor}"
                    f"{financed if principal_minor != request.amount_minor else ''}"
                )
            )
    if supplier_screening_passed is not True:
        findings.append(
            SupplierMustPassScreening(
                f"expected supplier {request.supplier_name!r} to have passed sanctions "
                "screening, got a hit or no result"
            )
        )
    return findings


def disbursement_findings(
    terms: FacilityTerms,
    position: FacilityPosition,
    request: DisbursementRequest,
    *,
    supplier_screening_passed: bool,
) -> list[SettlementError]:
    """Every reason to refuse the request, in order of precedence (empty: it may go ahead)."""
    return [
        *validate_request(terms, request),
        *validate_facility(
            terms, position, request, supplier_screening_passed=supplier_screening_passed
        ),
    ]


def check_disbursement(
    terms: FacilityTerms,
    position: FacilityPosition,
    request: DisbursementRequest,
    *,
    supplier_screening_passed: bool,
) -> CheckedDisbursement:
    """The disbursement to submit for the lender's approval, or the first finding raised."""
    findings = disbursement_findings(
        terms, position, request, supplier_screening_passed=supplier_screening_passed
    )
    if findings:
        raise findings[0]
    principal_minor, fee_minor = _principal_and_fee_minor(terms, position, request)
    remaining = remaining_commitment_minor(terms, position) - principal_minor
    return CheckedDisbursement(
        request=request,
        supplier_payment_minor=request.amount_minor,
        exposure_fee_minor=fee_minor,
        exposure_fee_settlement=terms.exposure_fee.settlement,
        principal_minor=principal_minor,
        remaining_commitment_minor=remaining,
    )


def check_outstanding_principal(
    disbursed_principal_minor: int, repaid_principal_minor: int, outstanding_principal_minor: int
) -> None:
    """Outstanding principal must equal disbursed minus repaid principal, always."""
    if not 0 <= repaid_principal_minor <= disbursed_principal_minor:
        raise OutstandingPrincipalMustEqualDisbursedMinusRepaid(
            f"expected repaid principal from 0 to the disbursed {disbursed_principal_minor}, "
            f"got {repaid_principal_minor}"
        )
    expected = disbursed_principal_minor - repaid_principal_minor
    if outstanding_principal_minor != expected:
        raise OutstandingPrincipalMustEqualDisbursedMinusRepaid(
            f"expected outstanding principal {expected} (disbursed "
            f"{disbursed_principal_minor} - repaid {repaid_principal_minor}), "
            f"got {outstanding_principal_minor}"
        )


def _principal_and_fee_minor(
    terms: FacilityTerms, position: FacilityPosition, request: DisbursementRequest
) -> tuple[int, int]:
    fee_minor = exposure_fee_minor(
        terms, request.amount_minor, first_disbursement=position.disbursement_count == 0
    )
    if terms.exposure_fee.settlement is ExposureFeeSettlement.FINANCED:
        return request.amount_minor + fee_minor, fee_minor
    return request.amount_minor, fee_minor
