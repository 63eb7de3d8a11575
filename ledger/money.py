"""Money as integer minor units of ISO 4217 currencies.

An amount is always an ``int`` count of the currency's minor unit (cents for
USD, paisa for PKR). Decimal appears only at the edges, for display and for
rates, never in a balance. Sums are checked against the signed 64-bit range
that PostgreSQL's BIGINT and protobuf's int64 share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from ledger.errors import InvalidInput

INT64_MAX = 2**63 - 1
"""Largest amount or sum the store and the wire format can hold."""


@dataclass(frozen=True)
class Currency:
    """An ISO 4217 currency: alphabetic code, numeric code, minor-unit exponent."""

    code: str
    numeric: str
    exponent: int


_CURRENCIES: tuple[Currency, ...] = (
    Currency("USD", "840", 2),
    Currency("PKR", "586", 2),
    Currency("EUR", "978", 2),
    Currency("GBP", "826", 2),
    Currency("CNY", "156", 2),
    Currency("AED", "784", 2),
    Currency("SAR", "682", 2),
    Currency("CHF", "756", 2),
    Currency("JPY", "392", 0),
    Currency("KWD", "414", 3),
    Currency("BHD", "048", 3),
    Currency("OMR", "512", 3),
)

CURRENCIES: MappingProxyType[str, Currency] = MappingProxyType({c.code: c for c in _CURRENCIES})
"""ISO 4217 table (codes and exponents as published by the ISO 4217 maintenance agency)."""


class UnknownCurrency(InvalidInput):
    """The currency code is not in the ISO 4217 table this ledger supports."""

    code = "currency_must_be_known"


class AmountOverflow(InvalidInput):
    """An amount or a sum of amounts leaves the signed 64-bit range."""

    code = "amount_must_fit_int64"


def currency(code: str) -> Currency:
    """Look up an ISO 4217 currency, or raise :class:`UnknownCurrency`."""
    found = CURRENCIES.get(code)
    if found is None:
        known = ", ".join(sorted(CURRENCIES))
        raise UnknownCurrency(f"currency {code!r} is not supported; expected one of {known}")
    return found


def checked_sum(amounts: Iterable[int]) -> int:
    """Sum amounts, refusing any partial sum outside the signed 64-bit range."""
    total = 0
    for amount in amounts:
        total += amount
        if not -INT64_MAX - 1 <= total <= INT64_MAX:
            raise AmountOverflow(f"sum of amounts exceeds {INT64_MAX} minor units")
    return total


def to_decimal(amount_minor: int, currency_code: str) -> Decimal:
    """Exact major-unit value of an amount (for display and ISO 20022 only)."""
    exponent = currency(currency_code).exponent
    return Decimal(amount_minor).scaleb(-exponent)


def format_amount(amount_minor: int, currency_code: str) -> str:
    """Format with exactly the currency's decimals, e.g. ``1234`` USD -> ``"12.34"``."""
    exponent = currency(currency_code).exponent
    return f"{to_decimal(amount_minor, currency_code):.{exponent}f}"
