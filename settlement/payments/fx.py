"""Currency conversion for FX quotes: exact decimals, one rounding rule.

A rate is a decimal string: units of the target currency per ONE unit of the
source currency. Amounts are integer minor units. Conversion happens in major
units with Python's ``Decimal`` at :data:`PRECISION_DIGITS` significant digits,
then rounds ONCE to the result currency's minor unit, half to even (banker's
rounding, ``ROUND_HALF_EVEN``):

    receive = round_half_even(send * rate)    (send amount fixed)
    send    = round_half_even(receive / rate) (receive amount fixed)

The quote stores the rate string and both amounts; settlement uses the stored
amounts, never a recomputation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from ledger.money import INT64_MAX, currency
from settlement.errors import FailedPrecondition, InvalidArgument

RATE_SIGNIFICANT_DIGITS_MAX = 18
"""A published rate carries at most 18 significant digits (more is noise)."""

PRECISION_DIGITS = 48
"""Enough that the one rounding is the only one. A product of an int64 amount (19
digits) and a rate (18 digits) has at most 37 digits, so it is exact. A quotient
that fits int64 keeps 29 digits past the minor unit, while an inexact quotient
lies at least 1 / (2 * 10**21) minor units from a tie (the rate's 18 digits times
at most 10**3 for the currencies' exponents): it cannot be rounded onto a tie.
With 28 digits, 50,000,000,000,000,002 cents at 1.00000000000000001 became a tie
before the final rounding and rounded down to even instead of up."""

_CONTEXT = Context(prec=PRECISION_DIGITS, rounding=ROUND_HALF_EVEN)
_RATE_TEXT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")


class RateMustBePositiveDecimal(InvalidArgument):
    code = "rate_must_be_positive_decimal"


class CurrenciesMustDiffer(InvalidArgument):
    code = "currencies_must_differ"


class AmountMustConvert(FailedPrecondition):
    code = "amount_must_convert"


def parse_rate(text: str) -> Decimal:
    """A positive decimal rate in plain notation ("278.45"), or RateMustBePositiveDecimal."""
    if not isinstance(text, str) or not _RATE_TEXT.fullmatch(text):
        raise RateMustBePositiveDecimal(
            f"rate must be a plain positive decimal such as '278.45', got {text!r:.40}"
        )
    rate = Decimal(text)
    digits = len(rate.normalize().as_tuple().digits)
    if rate <= 0 or digits > RATE_SIGNIFICANT_DIGITS_MAX:
        raise RateMustBePositiveDecimal(
            f"rate must be above zero with at most {RATE_SIGNIFICANT_DIGITS_MAX} significant "
            f"digits, got {text!r}"
        )
    return rate


@dataclass(frozen=True, slots=True)
class Conversion:
    source_currency: str
    target_currency: str
    rate: str
    send_minor: int
    receive_minor: int


def _to_minor(major: Decimal, code: str) -> int:
    exponent = currency(code).exponent
    minor = major.scaleb(exponent, _CONTEXT).quantize(Decimal(1), ROUND_HALF_EVEN, _CONTEXT)
    return int(minor)


def _to_major(minor: int, code: str) -> Decimal:
    return Decimal(minor).scaleb(-currency(code).exponent, _CONTEXT)


def convert_send(send_minor: int, source: str, target: str, rate_text: str) -> Conversion:
    """The send amount is fixed: receive = round_half_even(send * rate)."""
    _check_pair(source, target)
    rate = parse_rate(rate_text)
    try:
        receive = _to_minor(_CONTEXT.multiply(_to_major(send_minor, source), rate), target)
    except InvalidOperation:
        raise AmountMustConvert("the converted amount is out of range") from None
    return _conversion(source, target, rate_text, send_minor, receive)


def convert_receive(receive_minor: int, source: str, target: str, rate_text: str) -> Conversion:
    """The receive amount is fixed: send = round_half_even(receive / rate)."""
    _check_pair(source, target)
    rate = parse_rate(rate_text)
    try:
        send = _to_minor(_CONTEXT.divide(_to_major(receive_minor, target), rate), source)
    except InvalidOperation:
        raise AmountMustConvert("the converted amount is out of range") from None
    return _conversion(source, target, rate_text, send, receive_minor)


def _check_pair(source: str, target: str) -> None:
    currency(source)
    currency(target)
    if source == target:
        raise CurrenciesMustDiffer(f"a quote converts between two currencies, got {source} twice")


def _conversion(source: str, target: str, rate: str, send: int, receive: int) -> Conversion:
    for name, amount in (("send", send), ("receive", receive)):
        if amount <= 0:
            raise AmountMustConvert(
                f"the {name} amount rounds to {amount} minor units at rate {rate}; "
                "quote a larger amount"
            )
        if amount > INT64_MAX:
            raise AmountMustConvert(f"the {name} amount exceeds {INT64_MAX} minor units")
    return Conversion(source, target, rate, send, receive)
