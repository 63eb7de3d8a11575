"""Facility terms of an export-credit loan: what the parties signed, as values.

A US export-credit lender finances a Pakistani borrower's purchases of US
equipment. The terms are immutable records, checked when built: each broken
term raises an :class:`InvalidFacilityTerm` subclass whose ``code`` names the
term and never changes (``commitment_minor_must_be_in_range``). Every finding
is collected, in precedence order (parties, commitment and availability,
interest, fees, repayment, conditions precedent); the first is raised and
carries all of them in ``findings``, so a term sheet is corrected in one pass.

Units:

- money is an integer number of minor units (cents), never a float;
- every rate, margin and fee rate is a :class:`~decimal.Decimal` in **percent**
  (``Decimal("5.25")`` is 5.25 %), per annum for interest, margins and the
  commitment fee, flat for the exposure fee. Percent, not basis points,
  because term sheets state all of them in percent; one unit for every rate
  means a margin is never added to a rate in another unit. At most
  :data:`RATE_DECIMAL_PLACES_MAX` decimal places (a hundredth of a basis
  point). :func:`parse_percent` reads the decimal strings the API carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Final

from settlement.errors import FailedPrecondition, InvalidArgument
from settlement.loans import daycount
from settlement.loans.daycount import DayCount

CURRENCY: Final = "USD"
"""US export-credit facilities lend in US dollars; the only currency accepted."""

COMMITMENT_MINOR_MAX: Final = 10**13
"""USD 100 billion: far above any single export-credit facility, and small
enough that every product of a balance and a rate stays exact and far inside
the ledger's int64 amounts."""

RATE_PERCENT_MAX: Final = Decimal(100)
"""No rate, margin or fee rate of this business is above 100 %; a larger one is a typo."""

RATE_DECIMAL_PLACES_MAX: Final = 6
"""A hundredth of a basis point is finer than any term sheet or rate fixing."""

AVAILABILITY_DAYS_MAX: Final = 10 * 366
"""Ten years to draw is beyond any equipment-supply facility; a longer one is a typo."""

INSTALMENT_COUNT_MAX: Final = 48
"""24 years of semi-annual instalments: longer than the OECD Arrangement allows
for any sector (at most 22 years), so every real profile fits."""

INSTALMENT_INTERVAL_MONTHS: Final = 6
"""Instalments are semi-annual: equal principal every six months."""

GRACE_PERIOD_MONTHS_MAX: Final = 60
"""Five years between the end of availability and the first instalment at most."""

CONDITIONS_PRECEDENT_MAX: Final = 200
"""A long conditions-precedent schedule has a few dozen items; 200 bounds the record."""

IDENTIFIER_LENGTH_MAX: Final = 128
"""Identifiers follow the ledger's rule: 1 to 128 printable ASCII characters."""

DESCRIPTION_LENGTH_MAX: Final = 1000
"""A condition precedent is described in a sentence or two."""

_IDENTIFIER = re.compile(f"[!-~]{{1,{IDENTIFIER_LENGTH_MAX}}}")
_PERCENT_TEXT = re.compile(rf"-?(0|[1-9][0-9]{{0,2}})(\.[0-9]{{1,{RATE_DECIMAL_PLACES_MAX}}})?")


# --- Errors: one per term, in the order the terms are checked. ---------------
# Codes are part of the contract: never rename one, only add new ones.


class InvalidFacilityTerm(InvalidArgument):
    """A term of the facility is invalid; ``code`` names the term."""

    code: ClassVar[str] = "facility_term_must_be_valid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.findings: tuple[InvalidFacilityTerm, ...] = (self,)


class PercentMustBeDecimalString(InvalidArgument):
    code = "percent_must_be_decimal_string"


class FacilityIdMustBeValid(InvalidFacilityTerm):
    code = "facility_id_must_be_valid"


class LenderIdMustBeValid(InvalidFacilityTerm):
    code = "lender_id_must_be_valid"


class BorrowerIdMustBeValid(InvalidFacilityTerm):
    code = "borrower_id_must_be_valid"


class BorrowerBankIdMustBeValid(InvalidFacilityTerm):
    code = "borrower_bank_id_must_be_valid"


class GuarantorIdMustBeValid(InvalidFacilityTerm):
    code = "guarantor_id_must_be_valid"


class PartiesMustBeDistinct(InvalidFacilityTerm):
    code = "parties_must_be_distinct"


class CurrencyMustBeUsd(InvalidFacilityTerm):
    code = "currency_must_be_usd"


class CommitmentMustBeInRange(InvalidFacilityTerm):
    code = "commitment_minor_must_be_in_range"


class AvailabilityPeriodMustBeValid(InvalidFacilityTerm):
    code = "availability_period_must_be_valid"


class InterestMustBeFixedOrFloating(InvalidFacilityTerm):
    code = "interest_must_be_fixed_or_floating"


class InterestRateMustBeValid(InvalidFacilityTerm):
    code = "interest_rate_percent_must_be_valid"


class ReferenceRateMustBeNamed(InvalidFacilityTerm):
    code = "reference_rate_must_be_named"


class MarginMustBeValid(InvalidFacilityTerm):
    code = "margin_percent_must_be_valid"


class ReferenceRateFloorMustBeValid(InvalidFacilityTerm):
    code = "reference_rate_floor_percent_must_be_valid"


class DayCountMustBeSupported(InvalidFacilityTerm, daycount.DayCountMustBeSupported):
    """The same rule as the day count module's, raised as a facility term."""

    code = "day_count_must_be_supported"


class CommitmentFeeRateMustBeValid(InvalidFacilityTerm):
    code = "commitment_fee_percent_must_be_valid"


class ExposureFeeRateMustBeValid(InvalidFacilityTerm):
    code = "exposure_fee_percent_must_be_valid"


class ExposureFeeTimingMustBeSupported(InvalidFacilityTerm):
    code = "exposure_fee_timing_must_be_supported"


class ExposureFeeSettlementMustBeSupported(InvalidFacilityTerm):
    code = "exposure_fee_settlement_must_be_supported"


class InstalmentCountMustBeInRange(InvalidFacilityTerm):
    code = "instalment_count_must_be_in_range"


class GracePeriodMustBeInRange(InvalidFacilityTerm):
    code = "grace_period_months_must_be_in_range"


class DefaultMarginMustBeValid(InvalidFacilityTerm):
    code = "default_margin_percent_must_be_valid"


class ConditionsPrecedentMustBeValid(InvalidFacilityTerm):
    code = "conditions_precedent_must_be_valid"


class RateFixingMustBeValid(InvalidArgument):
    code = "rate_fixing_percent_must_be_valid"


class RateFixingMustMatchReferenceRate(InvalidArgument):
    code = "rate_fixing_must_match_reference_rate"


class RateFixingMustBeSupplied(FailedPrecondition):
    code = "rate_fixing_must_be_supplied"


class RateFixingMustNotBeSupplied(FailedPrecondition):
    code = "rate_fixing_must_not_be_supplied"


# --- Records. ----------------------------------------------------------------


class ExposureFeeTiming(StrEnum):
    """When the export-credit agency's exposure fee (premium) falls due."""

    UPFRONT = "upfront"
    """Once, on the whole commitment, with the first disbursement."""

    PER_DISBURSEMENT = "per_disbursement"
    """On each disbursement, on the amount disbursed."""


class ExposureFeeSettlement(StrEnum):
    """How the borrower pays the exposure fee."""

    FINANCED = "financed"
    """Drawn under the facility: added to the disbursement's principal, so it
    uses commitment and is repaid with the loan."""

    PAID = "paid"
    """Paid by the borrower from its own funds: a fee due, first in the waterfall."""


@dataclass(frozen=True, slots=True)
class FixedRate:
    """Interest at one rate for the life of the loan."""

    rate_percent: Decimal
    """Percent per annum."""


@dataclass(frozen=True, slots=True)
class FloatingRate:
    """Interest at a reference rate fixed per interest period, plus a margin.

    Fixings are supplied through the API (:class:`RateFixing`); the all-in
    rate is ``max(fixing, floor) + margin`` (:func:`all_in_rate_percent`).
    """

    reference_rate: str
    """The reference rate's name as fixings carry it, for example ``TERM_SOFR_6M``."""

    margin_percent: Decimal
    """Percent per annum over the reference rate."""

    reference_floor_percent: Decimal = Decimal(0)
    """The fixing used is never below this floor (zero unless agreed otherwise)."""


@dataclass(frozen=True, slots=True)
class RateFixing:
    """One fixing of a floating facility's reference rate for one interest period."""

    reference_rate: str
    period_start: date
    rate_percent: Decimal
    """Percent per annum; may be negative (the floor applies, not a refusal)."""


@dataclass(frozen=True, slots=True)
class ExposureFee:
    """The export-credit agency's premium, a flat percentage (not per annum)."""

    rate_percent: Decimal
    timing: ExposureFeeTiming
    settlement: ExposureFeeSettlement


@dataclass(frozen=True, slots=True)
class RepaymentProfile:
    """Equal semi-annual principal instalments after a grace period.

    The first instalment falls ``grace_period_months`` after the end of the
    availability period, then one every :data:`INSTALMENT_INTERVAL_MONTHS`.
    """

    instalment_count: int
    grace_period_months: int


@dataclass(frozen=True, slots=True)
class ConditionPrecedent:
    """One condition to be met before the facility becomes effective."""

    condition_id: str
    description: str


@dataclass(frozen=True, slots=True)
class FacilityTerms:
    """The agreed terms of one facility; invalid terms cannot be built."""

    facility_id: str
    lender_id: str
    borrower_id: str
    borrower_bank_id: str
    currency: str
    commitment_minor: int
    availability_start: date
    """First day on which a disbursement may be paid (included)."""
    availability_end: date
    """Last day on which a disbursement may be paid (included); the undrawn
    commitment is cancelled after it."""
    interest: FixedRate | FloatingRate
    day_count: DayCount
    commitment_fee_percent: Decimal
    """Percent per annum on the undrawn commitment."""
    exposure_fee: ExposureFee
    repayment: RepaymentProfile
    default_margin_percent: Decimal
    """Percent per annum of default interest on overdue amounts (see accrual)."""
    conditions_precedent: tuple[ConditionPrecedent, ...] = ()
    guarantor_id: str | None = None
    condition_ids: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        findings = _terms_findings(self)
        if findings:
            first = findings[0]
            first.findings = tuple(findings)
            raise first
        object.__setattr__(
            self,
            "condition_ids",
            frozenset(condition.condition_id for condition in self.conditions_precedent),
        )

    def outstanding_conditions(self, satisfied_ids: Iterable[str]) -> tuple[str, ...]:
        """The conditions precedent not yet met, in the order the terms list them."""
        satisfied = frozenset(satisfied_ids)
        return tuple(
            condition.condition_id
            for condition in self.conditions_precedent
            if condition.condition_id not in satisfied
        )


# --- Parsing and rates. ------------------------------------------------------


def parse_percent(text: str) -> Decimal:
    """A rate in percent from its decimal string (``"5.25"``), exactly as written.

    Accepts an optional minus sign (fixings may be negative), up to three
    integer digits and up to :data:`RATE_DECIMAL_PLACES_MAX` decimals: no
    exponent, no spaces, no ``NaN``. Ranges are checked by the term that uses
    the rate, under that term's code.
    """
    if not isinstance(text, str) or _PERCENT_TEXT.fullmatch(text) is None:
        raise PercentMustBeDecimalString(
            f"expected a decimal string in percent like '5.25', got {text!r}"
        )
    return Decimal(text)


def all_in_rate_percent(
    interest: FixedRate | FloatingRate, fixing: RateFixing | None = None
) -> Decimal:
    """The annual interest rate in percent for an interest period.

    Fixed: the fixed rate, and no fixing may be supplied (a fixing sent for a
    fixed facility is a wiring mistake, refused rather than ignored).
    Floating: ``max(fixing, floor) + margin``; the fixing must be supplied,
    name the facility's reference rate and be a valid percentage.
    """
    if isinstance(interest, FixedRate):
        if fixing is not None:
            raise RateFixingMustNotBeSupplied(
                f"the facility has a fixed rate of {interest.rate_percent} %; "
                f"got a fixing of {fixing.reference_rate}"
            )
        return interest.rate_percent
    if fixing is None:
        raise RateFixingMustBeSupplied(
            f"expected a fixing of {interest.reference_rate} for the interest period, got none"
        )
    if fixing.reference_rate != interest.reference_rate:
        raise RateFixingMustMatchReferenceRate(
            f"expected a fixing of {interest.reference_rate}, got {fixing.reference_rate!r}"
        )
    if not _is_percent(fixing.rate_percent, allow_negative=True):
        raise RateFixingMustBeValid(
            f"expected a finite Decimal percent between -{RATE_PERCENT_MAX} and "
            f"{RATE_PERCENT_MAX} with at most {RATE_DECIMAL_PLACES_MAX} decimals, "
            f"got {fixing.rate_percent!r}"
        )
    return max(fixing.rate_percent, interest.reference_floor_percent) + interest.margin_percent


# --- Validation: pure functions returning every finding. ---------------------


def _is_percent(value: object, *, allow_negative: bool = False) -> bool:
    if not isinstance(value, Decimal) or not value.is_finite():
        return False
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -RATE_DECIMAL_PLACES_MAX:
        return False
    lowest = -RATE_PERCENT_MAX if allow_negative else Decimal(0)
    return lowest <= value <= RATE_PERCENT_MAX


def _percent_expectation() -> str:
    return (
        f"a Decimal percent from 0 to {RATE_PERCENT_MAX} with at most "
        f"{RATE_DECIMAL_PLACES_MAX} decimals"
    )


def _is_identifier(value: object) -> bool:
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def _is_count(value: object, lowest: int, highest: int) -> bool:
    # bool is an int in Python; True is not a count.
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= highest


def validate_parties(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    findings: list[InvalidFacilityTerm] = []
    expectation = f"1 to {IDENTIFIER_LENGTH_MAX} printable ASCII characters"
    required: tuple[tuple[str, object, type[InvalidFacilityTerm]], ...] = (
        ("facility_id", terms.facility_id, FacilityIdMustBeValid),
        ("lender_id", terms.lender_id, LenderIdMustBeValid),
        ("borrower_id", terms.borrower_id, BorrowerIdMustBeValid),
        ("borrower_bank_id", terms.borrower_bank_id, BorrowerBankIdMustBeValid),
    )
    for name, value, error in required:
        if not _is_identifier(value):
            findings.append(error(f"{name}: expected {expectation}, got {value!r}"))
    if terms.guarantor_id is not None and not _is_identifier(terms.guarantor_id):
        findings.append(
            GuarantorIdMustBeValid(
                f"guarantor_id: expected None or {expectation}, got {terms.guarantor_id!r}"
            )
        )
    parties = [terms.lender_id, terms.borrower_id, terms.borrower_bank_id]
    if terms.guarantor_id is not None:
        parties.append(terms.guarantor_id)
    if len(set(parties)) != len(parties):
        findings.append(
            PartiesMustBeDistinct(
                "expected the lender, borrower, borrower's bank and guarantor to be "
                f"different participants, got {parties}"
            )
        )
    return findings


def validate_commitment(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    findings: list[InvalidFacilityTerm] = []
    if terms.currency != CURRENCY:
        findings.append(CurrencyMustBeUsd(f"expected {CURRENCY}, got {terms.currency!r}"))
    if not _is_count(terms.commitment_minor, 1, COMMITMENT_MINOR_MAX):
        findings.append(
            CommitmentMustBeInRange(
                f"expected an integer of minor units from 1 to {COMMITMENT_MINOR_MAX}, "
                f"got {terms.commitment_minor!r}"
            )
        )
    # Typed fields are still checked: terms are built from decoded API requests.
    start: object = terms.availability_start
    end: object = terms.availability_end
    if not isinstance(start, date) or not isinstance(end, date):
        findings.append(
            AvailabilityPeriodMustBeValid(f"expected two dates, got {start!r} and {end!r}")
        )
    elif end < start or (end - start).days > AVAILABILITY_DAYS_MAX:
        findings.append(
            AvailabilityPeriodMustBeValid(
                f"expected an end on or after the start and at most {AVAILABILITY_DAYS_MAX} "
                f"days later, got {start.isoformat()} to {end.isoformat()}"
            )
        )
    return findings


def validate_interest(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    findings: list[InvalidFacilityTerm] = []
    interest: object = terms.interest
    if isinstance(interest, FixedRate):
        if not _is_percent(interest.rate_percent):
            findings.append(
                InterestRateMustBeValid(
                    f"expected {_percent_expectation()}, got {interest.rate_percent!r}"
                )
            )
    elif isinstance(interest, FloatingRate):
        if not _is_identifier(interest.reference_rate):
            findings.append(
                ReferenceRateMustBeNamed(
                    f"expected the reference rate's name, got {interest.reference_rate!r}"
                )
            )
        if not _is_percent(interest.margin_percent):
            findings.append(
                MarginMustBeValid(
                    f"expected {_percent_expectation()}, got {interest.margin_percent!r}"
                )
            )
        if not _is_percent(interest.reference_floor_percent, allow_negative=True):
            findings.append(
                ReferenceRateFloorMustBeValid(
                    f"expected a Decimal percent from -{RATE_PERCENT_MAX} to "
                    f"{RATE_PERCENT_MAX}, got {interest.reference_floor_percent!r}"
                )
            )
    else:
        findings.append(
            InterestMustBeFixedOrFloating(
                f"expected FixedRate or FloatingRate, got {type(interest).__name__}"
            )
        )
    day_count: object = terms.day_count
    if not isinstance(day_count, DayCount):
        findings.append(
            DayCountMustBeSupported(
                f"expected one of {[convention.value for convention in DayCount]}, "
                f"got {day_count!r}"
            )
        )
    return findings


def validate_fees(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    findings: list[InvalidFacilityTerm] = []
    if not _is_percent(terms.commitment_fee_percent):
        findings.append(
            CommitmentFeeRateMustBeValid(
                f"expected {_percent_expectation()}, got {terms.commitment_fee_percent!r}"
            )
        )
    exposure_fee = terms.exposure_fee
    if not _is_percent(exposure_fee.rate_percent):
        findings.append(
            ExposureFeeRateMustBeValid(
                f"expected {_percent_expectation()}, got {exposure_fee.rate_percent!r}"
            )
        )
    timing: object = exposure_fee.timing
    if not isinstance(timing, ExposureFeeTiming):
        findings.append(
            ExposureFeeTimingMustBeSupported(
                f"expected one of {[member.value for member in ExposureFeeTiming]}, got {timing!r}"
            )
        )
    settlement: object = exposure_fee.settlement
    if not isinstance(settlement, ExposureFeeSettlement):
        findings.append(
            ExposureFeeSettlementMustBeSupported(
                f"expected one of {[member.value for member in ExposureFeeSettlement]}, "
                f"got {settlement!r}"
            )
        )
    return findings


def validate_repayment(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    findings: list[InvalidFacilityTerm] = []
    profile = terms.repayment
    if not _is_count(profile.instalment_count, 1, INSTALMENT_COUNT_MAX):
        findings.append(
            InstalmentCountMustBeInRange(
                f"expected an integer from 1 to {INSTALMENT_COUNT_MAX}, "
                f"got {profile.instalment_count!r}"
            )
        )
    if not _is_count(profile.grace_period_months, 1, GRACE_PERIOD_MONTHS_MAX):
        findings.append(
            GracePeriodMustBeInRange(
                f"expected an integer from 1 to {GRACE_PERIOD_MONTHS_MAX}, "
                f"got {profile.grace_period_months!r}"
            )
        )
    if not _is_percent(terms.default_margin_percent):
        findings.append(
            DefaultMarginMustBeValid(
                f"expected {_percent_expectation()}, got {terms.default_margin_percent!r}"
            )
        )
    return findings


def validate_conditions_precedent(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    conditions: object = terms.conditions_precedent
    if not isinstance(conditions, tuple):
        return [
            ConditionsPrecedentMustBeValid(
                f"expected a tuple of conditions, got {type(conditions).__name__}"
            )
        ]
    if len(conditions) > CONDITIONS_PRECEDENT_MAX:
        return [
            ConditionsPrecedentMustBeValid(
                f"expected at most {CONDITIONS_PRECEDENT_MAX} conditions, got {len(conditions)}"
            )
        ]
    findings: list[InvalidFacilityTerm] = []
    seen: set[str] = set()
    for position, item in enumerate(conditions):
        condition: object = item
        if not isinstance(condition, ConditionPrecedent):
            findings.append(
                ConditionsPrecedentMustBeValid(
                    f"condition {position}: expected ConditionPrecedent, "
                    f"got {type(condition).__name__}"
                )
            )
            continue
        if not _is_identifier(condition.condition_id):
            findings.append(
                ConditionsPrecedentMustBeValid(
                    f"condition {position}: expected an identifier of 1 to "
                    f"{IDENTIFIER_LENGTH_MAX} printable ASCII characters, "
                    f"got {condition.condition_id!r}"
                )
            )
        elif condition.condition_id in seen:
            findings.append(
                ConditionsPrecedentMustBeValid(
                    f"condition {position}: expected a unique id, "
                    f"got {condition.condition_id!r} again"
                )
            )
        seen.add(condition.condition_id)
        description = condition.description
        if not (
            isinstance(description, str)
            and description.strip()
            and len(description) <= DESCRIPTION_LENGTH_MAX
        ):
            findings.append(
                ConditionsPrecedentMustBeValid(
                    f"condition {position}: expected a description of 1 to "
                    f"{DESCRIPTION_LENGTH_MAX} characters, got {description!r}"
                )
            )
    return findings


def _terms_findings(terms: FacilityTerms) -> list[InvalidFacilityTerm]:
    """Every broken term, in precedence order."""
    return [
        *validate_parties(terms),
        *validate_commitment(terms),
        *validate_interest(terms),
        *validate_fees(terms),
        *validate_repayment(terms),
        *validate_conditions_precedent(terms),
    ]
