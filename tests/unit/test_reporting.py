"""Reporting thresholds at their exact boundaries, in integer minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.money import INT64_MAX, currency
from settlement.compliance.reporting import (
    DEFAULT_THRESHOLDS,
    PK_CTR,
    US_CTR,
    US_TRAVEL_RULE,
    ReportingThreshold,
    ReportingThresholdMustBeValid,
    check_thresholds,
    reporting_flags,
)
from settlement.errors import InvalidArgument


@pytest.mark.parametrize(
    ("amount_minor", "currency_code", "flags"),
    [
        # US travel rule: USD 3,000.00 or more.
        (1, "USD", []),
        (299_999, "USD", []),  # 2,999.99
        (300_000, "USD", ["us_travel_rule"]),  # 3,000.00
        (300_001, "USD", ["us_travel_rule"]),
        # US CTR: more than USD 10,000.00.
        (999_999, "USD", ["us_travel_rule"]),  # 9,999.99
        (1_000_000, "USD", ["us_travel_rule"]),  # 10,000.00: not more than
        (1_000_001, "USD", ["us_travel_rule", "us_ctr"]),  # 10,000.01
        (INT64_MAX, "USD", ["us_travel_rule", "us_ctr"]),
        # Pakistan CTR: PKR 2,000,000.00 or more.
        (199_999_999, "PKR", []),  # 1,999,999.99
        (200_000_000, "PKR", ["pk_ctr"]),  # 2,000,000.00
        (200_000_001, "PKR", ["pk_ctr"]),
        # A PKR amount is not held against the USD thresholds, nor the reverse.
        (1_000_001, "PKR", []),
        (200_000_000, "USD", ["us_travel_rule", "us_ctr"]),
        # A currency without thresholds.
        (10**12, "EUR", []),
        (10**12, "JPY", []),
    ],
)
def test_reporting_flags(amount_minor: int, currency_code: str, flags: list[str]) -> None:
    assert reporting_flags(amount_minor, currency_code) == flags


def test_default_thresholds_are_the_documented_amounts() -> None:
    usd = 10 ** currency("USD").exponent
    pkr = 10 ** currency("PKR").exponent
    assert (US_TRAVEL_RULE.amount_minor, US_TRAVEL_RULE.inclusive) == (3_000 * usd, True)
    assert (US_CTR.amount_minor, US_CTR.inclusive) == (10_000 * usd, False)
    assert (PK_CTR.amount_minor, PK_CTR.inclusive) == (2_000_000 * pkr, True)
    assert DEFAULT_THRESHOLDS == (US_TRAVEL_RULE, US_CTR, PK_CTR)


@pytest.mark.parametrize(
    ("amount_minor", "code"),
    [
        (0, "amount_must_be_positive"),
        (-300_000, "amount_must_be_positive"),
        (INT64_MAX + 1, "amount_must_fit_int64"),
        (3000.0, "amount_must_be_minor_units"),
        (Decimal("3000.00"), "amount_must_be_minor_units"),
        ("300000", "amount_must_be_minor_units"),
        (True, "amount_must_be_minor_units"),
        (None, "amount_must_be_minor_units"),
    ],
)
def test_amount_must_be_positive_minor_units(amount_minor: object, code: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        reporting_flags(amount_minor, "USD")  # type: ignore[arg-type]
    assert caught.value.code == code
    assert str(caught.value).startswith(f"{code}: amount_minor: expected ")


@pytest.mark.parametrize("currency_code", ["usd", "XXX", "", "US Dollar"])
def test_currency_must_be_known(currency_code: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        reporting_flags(300_000, currency_code)
    assert caught.value.code == "currency_must_be_known"


def test_thresholds_are_configurable() -> None:
    stricter = (
        ReportingThreshold("us_travel_rule", "USD", 100_000, inclusive=True, rule="policy"),
        ReportingThreshold("large_pkr", "PKR", 50_000_000, inclusive=False, rule="policy"),
    )
    assert reporting_flags(100_000, "USD", thresholds=stricter) == ["us_travel_rule"]
    assert reporting_flags(99_999, "USD", thresholds=stricter) == []
    assert reporting_flags(50_000_000, "PKR", thresholds=stricter) == []
    assert reporting_flags(50_000_001, "PKR", thresholds=stricter) == ["large_pkr"]
    assert reporting_flags(300_000, "USD", thresholds=()) == []


@pytest.mark.parametrize(
    ("flag", "currency_code", "amount_minor", "inclusive", "message"),
    [
        ("US travel", "USD", 1, True, "flag: expected snake_case"),
        ("", "USD", 1, True, "flag: expected snake_case"),
        ("us_ctr", "usd", 1, True, "us_ctr.currency: expected an ISO 4217 currency"),
        ("us_ctr", "USD", 0, True, "us_ctr.amount_minor: expected at least 1 minor unit"),
        ("us_ctr", "USD", 10_000.0, True, "us_ctr.amount_minor: expected an int"),
        ("us_ctr", "USD", 1, 1, "us_ctr.inclusive: expected a bool"),
    ],
)
def test_a_threshold_must_be_valid(
    flag: str, currency_code: str, amount_minor: object, inclusive: object, message: str
) -> None:
    with pytest.raises(ReportingThresholdMustBeValid) as caught:
        ReportingThreshold(flag, currency_code, amount_minor, inclusive, "policy")  # type: ignore[arg-type]
    assert caught.value.code == "reporting_threshold_must_be_valid"
    assert caught.value.message.startswith(message)


def test_each_flag_is_configured_once() -> None:
    with pytest.raises(ReportingThresholdMustBeValid, match="'us_ctr' twice"):
        check_thresholds([US_CTR, US_TRAVEL_RULE, US_CTR])
    with pytest.raises(ReportingThresholdMustBeValid, match="expected a ReportingThreshold"):
        check_thresholds([US_CTR, ("us_ctr", "USD", 1)])  # type: ignore[list-item]
    assert check_thresholds([US_CTR, PK_CTR]) == (US_CTR, PK_CTR)
