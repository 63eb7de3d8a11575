"""FX conversion (settlement.payments.fx): one half-even rounding to the target's minor unit.

Tables in precedence order, then a seeded comparison with an exact reference
(``fractions.Fraction``), which is what "rounds once" means: the result is
the exact value rounded half to even, never a rounded value rounded again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

import pytest

from ledger.errors import LedgerError
from ledger.money import CURRENCIES, INT64_MAX
from settlement.payments.fx import (
    AmountMustConvert,
    Conversion,
    CurrenciesMustDiffer,
    RateMustBePositiveDecimal,
    convert_receive,
    convert_send,
    parse_rate,
)

SEND = "send"
RECEIVE = "receive"

# (source, target, rate, fixed side, fixed amount, send_minor, receive_minor)
CONVERSIONS: list[tuple[str, str, str, str, int, int, int]] = [
    # USD 5,000.00 at 278.4500 = PKR 1,392,250.00; and back, receive fixed.
    ("USD", "PKR", "278.4500", SEND, 500_000, 500_000, 139_225_000),
    ("USD", "PKR", "278.4500", RECEIVE, 139_225_000, 500_000, 139_225_000),
    # Exactly half a minor unit, send fixed: to the even neighbour, down and up.
    ("USD", "PKR", "0.5", SEND, 5, 5, 2),  # 2.5 paisa -> 2
    ("USD", "PKR", "0.5", SEND, 3, 3, 2),  # 1.5 paisa -> 2
    ("USD", "PKR", "0.5", SEND, 7, 7, 4),  # 3.5 paisa -> 4
    ("USD", "PKR", "0.5", SEND, 9, 9, 4),  # 4.5 paisa -> 4
    # Exactly half a minor unit, receive fixed: send = receive / rate.
    ("USD", "PKR", "2", RECEIVE, 5, 2, 5),  # 2.5 cents -> 2
    ("USD", "PKR", "2", RECEIVE, 3, 2, 3),  # 1.5 cents -> 2
    ("USD", "PKR", "2", RECEIVE, 7, 4, 7),  # 3.5 cents -> 4
    # Just off half: the nearer neighbour, whatever its parity.
    ("USD", "PKR", "0.51", SEND, 5, 5, 3),  # 2.55 -> 3
    ("USD", "PKR", "0.49", SEND, 5, 5, 2),  # 2.45 -> 2
    # Zero-decimal target (JPY): whole yen.
    ("USD", "JPY", "149.5", SEND, 101, 101, 151),  # 150.995 -> 151
    ("USD", "JPY", "0.5", SEND, 500, 500, 2),  # 2.5 yen -> 2
    ("USD", "JPY", "0.5", SEND, 300, 300, 2),  # 1.5 yen -> 2
    ("USD", "JPY", "149.5", RECEIVE, 299, 200, 299),  # USD 2.0000 -> 200
    # Zero-decimal source: receive fixed rounds to whole yen sent.
    ("JPY", "USD", "0.0067", RECEIVE, 100, 149, 100),  # 149.25 yen -> 149
    ("JPY", "USD", "0.0067", SEND, 150, 150, 100),  # 1.005 USD -> 100 cents (100.5 -> 100)
    # Three-decimal target and source (KWD, fils).
    ("USD", "KWD", "0.3075", SEND, 10_000, 10_000, 30_750),  # KWD 30.750
    ("USD", "KWD", "0.25", SEND, 1, 1, 2),  # 2.5 fils -> 2
    ("USD", "KWD", "0.25", SEND, 3, 3, 8),  # 7.5 fils -> 8
    ("KWD", "USD", "3.2520", SEND, 1_000, 1_000, 325),  # 325.2 cents -> 325
    ("KWD", "USD", "3.2520", RECEIVE, 325, 999, 325),  # 999.38 fils -> 999
    ("KWD", "USD", "2", RECEIVE, 1, 5, 1),  # 5 fils exactly
    # Rates with many digits are used exactly (18 significant digits).
    ("USD", "EUR", "1.00000000000000001", SEND, 5 * 10**16 + 2, 5 * 10**16 + 2,
     5 * 10**16 + 3),  # exactly .50000000000000002 above: up, not down to even
    ("USD", "PKR", "278.450000000000001", SEND, 100, 100, 27_845),
]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "target", "rate", "fixed", "amount_minor", "send_minor", "receive_minor"),
    CONVERSIONS,
)
def test_conversion(
    source: str,
    target: str,
    rate: str,
    fixed: str,
    amount_minor: int,
    send_minor: int,
    receive_minor: int,
) -> None:
    convert = convert_send if fixed == SEND else convert_receive
    conversion = convert(amount_minor, source, target, rate)
    assert (conversion.send_minor, conversion.receive_minor) == (send_minor, receive_minor)
    # The quote records the rate exactly as published, and both amounts.
    assert (conversion.source_currency, conversion.target_currency, conversion.rate) == (
        source,
        target,
        rate,
    )


# (source, target, rate, fixed side, amount, expected error code) in precedence order
REFUSALS: list[tuple[str, str, str, str, int, str]] = [
    ("XYZ", "PKR", "278.45", SEND, 100, "currency_must_be_known"),
    ("USD", "pkr", "278.45", SEND, 100, "currency_must_be_known"),
    ("USD", "USD", "1", SEND, 100, "currencies_must_differ"),
    ("USD", "PKR", "abc", SEND, 100, "rate_must_be_positive_decimal"),
    # Tiny amounts that round to nothing are refused, never settled as zero.
    ("USD", "PKR", "0.5", SEND, 1, "amount_must_convert"),  # 0.5 paisa -> 0 (half to even)
    ("USD", "PKR", "0.004", SEND, 1, "amount_must_convert"),
    ("USD", "PKR", "278.45", RECEIVE, 1, "amount_must_convert"),  # 0.0036 cents
    ("USD", "JPY", "149.5", SEND, 0, "amount_must_convert"),
    ("USD", "JPY", "0.5", SEND, 100, "amount_must_convert"),  # 0.5 yen -> 0
    ("KWD", "USD", "3.252", RECEIVE, 0, "amount_must_convert"),
    ("USD", "KWD", "0.0001", SEND, 4, "amount_must_convert"),  # 0.4 fils
    # Beyond the signed 64-bit range of the ledger and the wire format.
    ("USD", "PKR", "278.45", SEND, INT64_MAX, "amount_must_convert"),
    ("KWD", "USD", "0.000000000000000001", SEND, 10**10, "amount_must_convert"),
]


@pytest.mark.parametrize(("source", "target", "rate", "fixed", "amount_minor", "code"), REFUSALS)
def test_conversion_refusals(
    source: str, target: str, rate: str, fixed: str, amount_minor: int, code: str
) -> None:
    convert = convert_send if fixed == SEND else convert_receive
    with pytest.raises(LedgerError) as raised:
        convert(amount_minor, source, target, rate)
    assert raised.value.code == code


def test_refusal_types() -> None:
    with pytest.raises(CurrenciesMustDiffer):
        convert_send(1, "PKR", "PKR", "1")
    with pytest.raises(AmountMustConvert):
        convert_receive(1, "USD", "PKR", "278.45")


@pytest.mark.parametrize("text", ["278.45", "278.4500", "0.0036", "1", "10", "123456789.123456789"])
def test_rates_accepted(text: str) -> None:
    assert str(parse_rate(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0.000",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "1.",
        ".5",
        "01.5",
        " 1",
        "1 ",
        "1,5",
        "NaN",
        "Infinity",
        "1234567890.123456789",  # 19 significant digits
        "٣",  # an Arabic-Indic digit: decimal to Python, not to a rate
    ],
)
def test_rates_refused(text: str) -> None:
    with pytest.raises(RateMustBePositiveDecimal):
        parse_rate(text)


def exact_half_even(value: Fraction) -> int:
    """The reference: ``value`` rounded half to even, exactly."""
    floor = value.numerator // value.denominator
    remainder = value - floor
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


def test_conversion_matches_the_exact_reference() -> None:
    """Random amounts and rates of every size against Fraction arithmetic (seed printed)."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    generator = random.Random(seed)
    codes = sorted(CURRENCIES)
    checked = 0
    for _ in range(5000):
        source, target = generator.sample(codes, 2)
        digits = generator.randint(1, 18)
        mantissa = generator.randrange(1, 10**digits)
        scale = generator.randint(0, digits + 4)
        text = str(mantissa) if scale == 0 else _decimal_text(mantissa, scale)
        rate = Fraction(mantissa, 10**scale)
        amount = generator.choice(
            [
                generator.randint(1, 1000),
                generator.randint(1, 10**12),
                generator.randint(1, INT64_MAX),
            ]
        )
        source_unit = Fraction(1, 10 ** CURRENCIES[source].exponent)
        target_unit = Fraction(1, 10 ** CURRENCIES[target].exponent)
        send_fixed = generator.random() < 0.5
        convert: Callable[[int, str, str, str], Conversion]
        if send_fixed:
            expected = exact_half_even(amount * source_unit * rate / target_unit)
            convert = convert_send
        else:
            expected = exact_half_even(amount * target_unit / rate / source_unit)
            convert = convert_receive
        try:
            conversion = convert(amount, source, target, text)
        except AmountMustConvert:
            assert not 0 < expected <= INT64_MAX, (seed, source, target, text, amount)
            continue
        result = conversion.receive_minor if send_fixed else conversion.send_minor
        assert result == expected, (seed, source, target, text, amount, send_fixed)
        checked += 1
    assert checked > 1000


def _decimal_text(mantissa: int, scale: int) -> str:
    digits = str(mantissa).rjust(scale + 1, "0")
    return f"{digits[:-scale]}.{digits[-scale:]}"
