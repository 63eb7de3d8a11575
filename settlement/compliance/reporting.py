"""Which regulatory reports an amount calls for, from configurable thresholds.

Amounts are integer minor units of their currency (cents, paisa), never
floats. Each threshold names its flag, currency, amount, whether the amount
itself is included, and the rule it comes from:

- ``us_travel_rule``: USD 3,000.00 or more. 31 CFR 1010.410(f), the funds
  transfer "travel rule": a transmittal of funds of $3,000 or more carries the
  originator's and beneficiary's information.
- ``us_ctr``: more than USD 10,000.00. 31 CFR 1010.311, the currency
  transaction report: "a transaction in currency of more than $10,000", so
  exactly $10,000.00 does not call for one.
- ``pk_ctr``: PKR 2,000,000.00 or more. Anti-Money Laundering Act 2010,
  section 7, with the threshold the National Executive Committee sets, as the
  Financial Monitoring Unit's CTR guidance states it ("cash transactions of
  Rs. 2 million or more"). Other summaries say "exceeding"; flagging the
  boundary amount itself errs towards a report rather than a missed one.

A currency transaction report concerns cash. The flag says that the amount
reaches the threshold; whether the payment was funded in cash, and the
aggregation of a customer's cash transactions over a business day that both
CTR rules require, are the reporting bank's to decide: this module sees one
amount.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.money import INT64_MAX
from settlement.compliance.parties import validate_currency
from settlement.errors import InvalidArgument

_FLAG_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")


class AmountMustBeMinorUnits(InvalidArgument):
    """An amount is an ``int`` count of minor units: never a float, a Decimal or a bool."""

    code = "amount_must_be_minor_units"


class AmountMustBePositive(InvalidArgument):
    """A payment amount is at least one minor unit."""

    code = "amount_must_be_positive"


class AmountMustFitInt64(InvalidArgument):
    """Amounts fit the signed 64-bit range of the store and the wire format."""

    code = "amount_must_fit_int64"


class ReportingThresholdMustBeValid(InvalidArgument):
    """A configured threshold has a snake_case flag, a known currency and a positive amount."""

    code = "reporting_threshold_must_be_valid"


def _check_amount(amount_minor: object, field: str) -> int:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise AmountMustBeMinorUnits(
            f"{field}: expected an int count of minor units, "
            f"got {amount_minor!r} ({type(amount_minor).__name__})"
        )
    if amount_minor <= 0:
        raise AmountMustBePositive(f"{field}: expected at least 1 minor unit, got {amount_minor}")
    if amount_minor > INT64_MAX:
        raise AmountMustFitInt64(f"{field}: expected at most {INT64_MAX}, got {amount_minor}")
    return amount_minor


@dataclass(frozen=True)
class ReportingThreshold:
    """One reporting rule: ``flag`` applies to amounts in ``currency`` from ``amount_minor``.

    ``inclusive`` says whether ``amount_minor`` itself reaches the threshold
    ("$3,000 or more") or only amounts above it ("more than $10,000").
    """

    flag: str
    currency: str
    amount_minor: int
    inclusive: bool
    rule: str
    """Where the threshold comes from, for the auditor."""

    def __post_init__(self) -> None:
        if not isinstance(self.flag, str) or not _FLAG_PATTERN.fullmatch(self.flag):
            raise ReportingThresholdMustBeValid(
                f"flag: expected snake_case of 1 to 63 characters, got {self.flag!r}"
            )
        try:
            validate_currency(self.currency, field=f"{self.flag}.currency")
            _check_amount(self.amount_minor, f"{self.flag}.amount_minor")
        except InvalidArgument as error:
            raise ReportingThresholdMustBeValid(error.message) from None
        if not isinstance(self.inclusive, bool):
            raise ReportingThresholdMustBeValid(
                f"{self.flag}.inclusive: expected a bool, got {self.inclusive!r}"
            )

    def applies(self, amount_minor: int, currency: str) -> bool:
        if currency != self.currency:
            return False
        if self.inclusive:
            return amount_minor >= self.amount_minor
        return amount_minor > self.amount_minor


US_TRAVEL_RULE = ReportingThreshold(
    flag="us_travel_rule",
    currency="USD",
    amount_minor=300_000,  # USD 3,000.00
    inclusive=True,
    rule="31 CFR 1010.410(f): transmittals of funds of $3,000 or more",
)
US_CTR = ReportingThreshold(
    flag="us_ctr",
    currency="USD",
    amount_minor=1_000_000,  # USD 10,000.00
    inclusive=False,
    rule="31 CFR 1010.311: transactions in currency of more than $10,000",
)
PK_CTR = ReportingThreshold(
    flag="pk_ctr",
    currency="PKR",
    amount_minor=200_000_000,  # PKR 2,000,000.00
    inclusive=True,
    rule="AML Act 2010 s. 7, FMU CTR guidance: cash transactions of PKR 2 million or more",
)

DEFAULT_THRESHOLDS: tuple[ReportingThreshold, ...] = (US_TRAVEL_RULE, US_CTR, PK_CTR)


def check_thresholds(thresholds: Sequence[ReportingThreshold]) -> tuple[ReportingThreshold, ...]:
    """Check a configured set of thresholds: each valid, flags unique. Return it as a tuple."""
    seen: set[str] = set()
    for threshold in thresholds:
        if not isinstance(threshold, ReportingThreshold):
            raise ReportingThresholdMustBeValid(
                f"expected a ReportingThreshold, got {type(threshold).__name__}"
            )
        if threshold.flag in seen:
            raise ReportingThresholdMustBeValid(
                f"flag: expected each flag once, got {threshold.flag!r} twice"
            )
        seen.add(threshold.flag)
    return tuple(thresholds)


def reporting_flags(
    amount_minor: int,
    currency: str,
    *,
    thresholds: Sequence[ReportingThreshold] = DEFAULT_THRESHOLDS,
) -> list[str]:
    """The flags of the thresholds this amount reaches, in the thresholds' order.

    ``reporting_flags(300_000, "USD") == ["us_travel_rule"]``;
    ``reporting_flags(1_000_001, "USD") == ["us_travel_rule", "us_ctr"]``.
    A currency with no threshold (any other ISO 4217 code the ledger knows)
    gets no flag: converting it to check a USD threshold is the caller's, at
    the rate of the payment's quote.
    """
    amount = _check_amount(amount_minor, "amount_minor")
    validate_currency(currency, field="currency")
    return [
        threshold.flag
        for threshold in check_thresholds(thresholds)
        if threshold.applies(amount, currency)
    ]
