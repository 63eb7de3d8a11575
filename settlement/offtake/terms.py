"""The terms of an offtake contract: parties, payable metals, charges, penalties.

A contract for copper-gold concentrate names who buys and who sells (and the
bank of each, whose signatures activate it), how much of each metal in the
concentrate is paid for, what the smelter charges for treating and refining
it, which impurities are penalised, what share of the provisional value is paid
on shipment, and which month's prices make the final price.

Every record here is a frozen dataclass that checks itself when built: no
invalid contract term can exist. The first broken rule, in field order, raises
an :class:`OfftakeTermInvalid` (an :class:`~settlement.errors.InvalidArgument`)
whose ``code`` never changes and whose message names the term, its limits and
the value given, as ``"<term> must be ..., got <value>"``.

Units are part of every name: percentages are percent (``25`` is 25 %), copper
grades are percent by weight, gold and silver grades grams per dry metric tonne
(g/dmt), copper prices USD per metric tonne, gold and silver prices USD per troy
ounce, the treatment charge USD per dry metric tonne. Quantities, rates and
prices are :class:`~decimal.Decimal` (never ``float``); money is ``int`` cents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args

from settlement.errors import InvalidArgument

Metal = Literal["Cu", "Au", "Ag"]
"""A payable metal by chemical symbol: copper, gold, silver (in this order on invoices)."""

PreciousMetal = Literal["Au", "Ag"]

QuotationalPeriodBasis = Literal["arrival", "bill_of_lading"]
"""The event whose calendar month the quotational period counts from."""

METALS: tuple[Metal, ...] = get_args(Metal)
METAL_NAMES: dict[str, str] = {"Cu": "copper", "Au": "gold", "Ag": "silver"}
CURRENCY = "USD"
"""Offtake contracts are priced, invoiced and paid in US dollars (the metal markets' currency)."""

# --- Limits (each keeps every product of the valuation exact in 28 digits) --------------------

WET_TONNES_MAX = Decimal(1_000_000)
"""A lot is at most one vessel; the largest bulk carriers load about 400,000 t."""

TONNES_DECIMALS_MAX = 3
"""Weights are reported to the kilogram."""

PERCENT_DECIMALS_MAX = 4
"""Percentages, grades and contract rates carry at most 4 decimals (e.g. 96.5, 0.0125)."""

GRAMS_PER_DMT_MAX = Decimal(10_000)
"""A gold or silver grade above 1 % (10,000 g/dmt) is bullion, not concentrate."""

PRICE_USD_MAX = Decimal(1_000_000)
"""Per tonne of copper or per troy ounce of gold or silver: far above any price ever published."""

PRICE_DECIMALS_MAX = 4
"""Published prices have 2 decimals; contracts sometimes quote charges to 4."""

CHARGE_USD_MAX = Decimal(10_000)
"""A treatment, refining or penalty rate above USD 10,000 per unit is a typing error."""

PAYMENT_TERM_DAYS_MAX = 365
QUOTATIONAL_PERIOD_MONTH_OFFSET_MAX = 6
"""Offtake QPs run from the month of shipment to a few months after arrival."""

TEXT_LENGTH_MAX = 140
"""Names and references: ISO 20022's Max140Text, so they fit the payment messages."""

PENALTY_ELEMENTS_MAX = 16

_ELEMENT_SYMBOL = re.compile(r"[A-Z][a-z]?")


# --- Errors, in the order the checks run ------------------------------------------------------


class OfftakeTermInvalid(InvalidArgument):
    """Root of every invalid offtake term or valuation input."""

    code = "offtake_term_invalid"


class TermMustBeDecimal(OfftakeTermInvalid):
    """A quantity, rate or price is a finite Decimal: a float has already lost the exact value."""

    code = "term_must_be_decimal"


class TermMustBeInRange(OfftakeTermInvalid):
    code = "term_must_be_in_range"


class TermMustFitDecimals(OfftakeTermInvalid):
    """Bounded decimals keep every product of the valuation exact (see ``valuation``)."""

    code = "term_must_fit_decimals"


class TermMustBeInteger(OfftakeTermInvalid):
    code = "term_must_be_integer"


class TermMustBeText(OfftakeTermInvalid):
    """Names and references are 1..140 characters, not blank."""

    code = "term_must_be_text"


class TermMustBeKnown(OfftakeTermInvalid):
    """An enumerated term (currency, quotational period basis) has one of its listed values."""

    code = "term_must_be_known"


class BanksMustBeDifferent(OfftakeTermInvalid):
    """Activation needs two independent signatures: one bank cannot sign for both sides."""

    code = "banks_must_be_different"


class PartiesMustBeDifferent(OfftakeTermInvalid):
    code = "parties_must_be_different"


class ContractMustHavePayableMetal(OfftakeTermInvalid):
    code = "contract_must_have_payable_metal"


class PenaltyElementMustBeSymbol(OfftakeTermInvalid):
    code = "penalty_element_must_be_symbol"


class PenaltyElementMustBeUnique(OfftakeTermInvalid):
    code = "penalty_element_must_be_unique"


class PenaltyElementMustNotBePayable(OfftakeTermInvalid):
    """A metal that is paid for cannot also be penalised."""

    code = "penalty_element_must_not_be_payable"


# --- Checks shared with the valuation ---------------------------------------------------------


def check_decimal(
    term: str,
    value: object,
    *,
    low: Decimal,
    high: Decimal,
    decimals_max: int,
    low_inclusive: bool = True,
) -> Decimal:
    """Return ``value`` if it is a finite Decimal in range with few enough decimals.

    The range is ``low <= value <= high`` (``low < value`` when not ``low_inclusive``).
    """
    if isinstance(value, bool) or not isinstance(value, Decimal) or not value.is_finite():
        raise TermMustBeDecimal(f"{term} must be a finite Decimal, got {value!r}")
    above_low = value >= low if low_inclusive else value > low
    if not above_low or value > high:
        opening = "[" if low_inclusive else "("
        raise TermMustBeInRange(f"{term} must be in {opening}{low}, {high}], got {value}")
    decimals = _decimals(value)
    if decimals > decimals_max:
        raise TermMustFitDecimals(
            f"{term} must have at most {decimals_max} decimals, got {value} ({decimals})"
        )
    return value


def _decimals(value: Decimal) -> int:
    """Decimals that matter: ``25.000`` has none. Independent of the caller's context."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    decimals = -exponent
    for digit in reversed(digits):
        if digit != 0 or decimals == 0:
            break
        decimals -= 1
    return decimals


def check_integer(term: str, value: object, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TermMustBeInteger(f"{term} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise TermMustBeInRange(f"{term} must be in [{low}, {high}], got {value}")
    return value


def check_text(term: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > TEXT_LENGTH_MAX:
        raise TermMustBeText(
            f"{term} must be 1..{TEXT_LENGTH_MAX} characters and not blank, got {value!r}"
        )
    return value


def check_percent(term: str, value: object, *, low_inclusive: bool = True) -> Decimal:
    """A percentage in [0, 100] (or (0, 100]) with at most 4 decimals."""
    return check_decimal(
        term,
        value,
        low=Decimal(0),
        high=Decimal(100),
        decimals_max=PERCENT_DECIMALS_MAX,
        low_inclusive=low_inclusive,
    )


def check_grams_per_dmt(term: str, value: object, *, low_inclusive: bool = True) -> Decimal:
    return check_decimal(
        term,
        value,
        low=Decimal(0),
        high=GRAMS_PER_DMT_MAX,
        decimals_max=PERCENT_DECIMALS_MAX,
        low_inclusive=low_inclusive,
    )


def check_charge(term: str, value: object) -> Decimal:
    """A charge or penalty rate in USD per unit: zero or more, at most 4 decimals."""
    return check_decimal(
        term, value, low=Decimal(0), high=CHARGE_USD_MAX, decimals_max=PRICE_DECIMALS_MAX
    )


def check_price(term: str, value: object) -> Decimal:
    """A metal price in USD per unit: positive, at most 4 decimals."""
    return check_decimal(
        term,
        value,
        low=Decimal(0),
        high=PRICE_USD_MAX,
        decimals_max=PRICE_DECIMALS_MAX,
        low_inclusive=False,
    )


# --- Terms ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """A buyer or a seller, and the hub participant id of the bank that pays or is paid."""

    name: str
    bank_participant_id: str

    def __post_init__(self) -> None:
        check_text("party.name", self.name)
        check_text("party.bank_participant_id", self.bank_participant_id)


@dataclass(frozen=True, slots=True)
class CopperTerms:
    """How copper is paid for: a share of the grade, less at least a minimum deduction.

    Payable grade = max(0, min(grade x payable_percent / 100, grade - minimum_deduction_percent)),
    e.g. the typical "96.5 %, minimum deduction 1.0 unit" pays 24 % of a 25 % concentrate.
    ``refining_charge_usd_per_lb`` is charged per payable pound;
    ``splitting_limit_percent`` is the largest difference between the buyer's and the
    seller's assay that is settled at their mean.
    """

    payable_percent: Decimal
    minimum_deduction_percent: Decimal
    refining_charge_usd_per_lb: Decimal
    splitting_limit_percent: Decimal

    def __post_init__(self) -> None:
        check_percent("copper.payable_percent", self.payable_percent, low_inclusive=False)
        check_percent("copper.minimum_deduction_percent", self.minimum_deduction_percent)
        check_charge("copper.refining_charge_usd_per_lb", self.refining_charge_usd_per_lb)
        check_percent(
            "copper.splitting_limit_percent", self.splitting_limit_percent, low_inclusive=False
        )


@dataclass(frozen=True, slots=True)
class PreciousMetalTerms:
    """How gold or silver is paid for, in grams per dry metric tonne and troy ounces.

    Payable grade = max(0, min(grade x payable_percent / 100,
    grade - minimum_deduction_grams_per_dmt)); a zero minimum deduction pays the
    percentage alone. ``refining_charge_usd_per_ozt`` is charged per payable troy
    ounce; ``splitting_limit_grams_per_dmt`` as for copper.
    """

    metal: PreciousMetal
    payable_percent: Decimal
    minimum_deduction_grams_per_dmt: Decimal
    refining_charge_usd_per_ozt: Decimal
    splitting_limit_grams_per_dmt: Decimal

    def __post_init__(self) -> None:
        if self.metal not in get_args(PreciousMetal):
            raise TermMustBeKnown(f"precious_metal.metal must be 'Au' or 'Ag', got {self.metal!r}")
        name = METAL_NAMES[self.metal]
        check_percent(f"{name}.payable_percent", self.payable_percent, low_inclusive=False)
        check_grams_per_dmt(
            f"{name}.minimum_deduction_grams_per_dmt", self.minimum_deduction_grams_per_dmt
        )
        check_charge(f"{name}.refining_charge_usd_per_ozt", self.refining_charge_usd_per_ozt)
        check_grams_per_dmt(
            f"{name}.splitting_limit_grams_per_dmt",
            self.splitting_limit_grams_per_dmt,
            low_inclusive=False,
        )


@dataclass(frozen=True, slots=True)
class PenaltyTerms:
    """A penalised impurity: a charge per dry tonne for each step above a threshold.

    The charge is ``rate_usd_per_dmt_per_step`` for each ``step_percent`` of the
    element's grade above ``threshold_percent``, **a started step counting in
    full** ("for each 0.1 % or part thereof"): arsenic at 0.35 % over a 0.2 %
    threshold in 0.1 % steps is 2 steps. At or below the threshold, nothing.
    """

    element: str
    threshold_percent: Decimal
    rate_usd_per_dmt_per_step: Decimal
    splitting_limit_percent: Decimal
    step_percent: Decimal = Decimal("0.1")

    def __post_init__(self) -> None:
        if not isinstance(self.element, str) or not _ELEMENT_SYMBOL.fullmatch(self.element):
            raise PenaltyElementMustBeSymbol(
                f"penalty.element must be a chemical symbol such as 'As', got {self.element!r}"
            )
        name = f"penalty[{self.element}]"
        check_percent(f"{name}.threshold_percent", self.threshold_percent)
        check_charge(f"{name}.rate_usd_per_dmt_per_step", self.rate_usd_per_dmt_per_step)
        check_percent(
            f"{name}.splitting_limit_percent", self.splitting_limit_percent, low_inclusive=False
        )
        check_percent(f"{name}.step_percent", self.step_percent, low_inclusive=False)


@dataclass(frozen=True, slots=True)
class QuotationalPeriodRule:
    """The calendar month whose average price makes the final price.

    ``month_offset`` months after the month of ``basis``: ("arrival", 1) is "the
    month after arrival" (M+1), ("bill_of_lading", 0) the month of shipment.
    """

    basis: QuotationalPeriodBasis
    month_offset: int

    def __post_init__(self) -> None:
        if self.basis not in get_args(QuotationalPeriodBasis):
            raise TermMustBeKnown(
                "quotational_period.basis must be one of "
                f"{', '.join(get_args(QuotationalPeriodBasis))}, got {self.basis!r}"
            )
        check_integer(
            "quotational_period.month_offset",
            self.month_offset,
            low=0,
            high=QUOTATIONAL_PERIOD_MONTH_OFFSET_MAX,
        )


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """Everything both banks sign: the contract's parties and commercial terms.

    A metal left ``None`` is not paid for. ``provisional_payment_percent`` of the
    provisional value is invoiced on shipment; ``payment_term_days`` is the time
    the buyer has to pay an invoice after it is issued.
    """

    contract_reference: str
    buyer: Party
    seller: Party
    copper: CopperTerms | None
    gold: PreciousMetalTerms | None
    silver: PreciousMetalTerms | None
    treatment_charge_usd_per_dmt: Decimal
    payment_term_days: int
    quotational_period: QuotationalPeriodRule
    penalties: tuple[PenaltyTerms, ...] = ()
    provisional_payment_percent: Decimal = Decimal(90)
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        check_text("contract_reference", self.contract_reference)
        if self.buyer.name == self.seller.name:
            raise PartiesMustBeDifferent(
                f"buyer.name and seller.name must differ, got {self.buyer.name!r} for both"
            )
        if self.buyer.bank_participant_id == self.seller.bank_participant_id:
            raise BanksMustBeDifferent(
                "buyer.bank_participant_id and seller.bank_participant_id must differ, got "
                f"{self.buyer.bank_participant_id!r} for both"
            )
        if self.copper is None and self.gold is None and self.silver is None:
            raise ContractMustHavePayableMetal(
                "copper, gold or silver must be payable, got none of them"
            )
        if self.gold is not None and self.gold.metal != "Au":
            raise TermMustBeKnown(f"gold.metal must be 'Au', got {self.gold.metal!r}")
        if self.silver is not None and self.silver.metal != "Ag":
            raise TermMustBeKnown(f"silver.metal must be 'Ag', got {self.silver.metal!r}")
        check_charge("treatment_charge_usd_per_dmt", self.treatment_charge_usd_per_dmt)
        check_integer(
            "payment_term_days", self.payment_term_days, low=0, high=PAYMENT_TERM_DAYS_MAX
        )
        self._check_penalties()
        check_percent(
            "provisional_payment_percent", self.provisional_payment_percent, low_inclusive=False
        )
        if self.currency != CURRENCY:
            raise TermMustBeKnown(f"currency must be {CURRENCY}, got {self.currency!r}")

    def _check_penalties(self) -> None:
        if not isinstance(self.penalties, tuple) or len(self.penalties) > PENALTY_ELEMENTS_MAX:
            raise TermMustBeInRange(
                f"penalties must be a tuple of at most {PENALTY_ELEMENTS_MAX} elements, "
                f"got {self.penalties!r}"
            )
        seen: set[str] = set()
        for penalty in self.penalties:
            if penalty.element in seen:
                raise PenaltyElementMustBeUnique(
                    f"penalties must name each element once, got {penalty.element!r} twice"
                )
            if penalty.element in self.payable_metals:
                raise PenaltyElementMustNotBePayable(
                    f"penalties must not include a payable metal, got {penalty.element!r}"
                )
            seen.add(penalty.element)

    @property
    def payable_metals(self) -> tuple[Metal, ...]:
        """The metals paid for, in invoice order (copper, gold, silver)."""
        present = {"Cu": self.copper, "Au": self.gold, "Ag": self.silver}
        return tuple(metal for metal in METALS if present[metal] is not None)

    def splitting_limit(self, element: str) -> Decimal:
        """The splitting limit of a payable metal or penalised element, in its grade unit."""
        if element == "Cu" and self.copper is not None:
            return self.copper.splitting_limit_percent
        if element == "Au" and self.gold is not None:
            return self.gold.splitting_limit_grams_per_dmt
        if element == "Ag" and self.silver is not None:
            return self.silver.splitting_limit_grams_per_dmt
        for penalty in self.penalties:
            if penalty.element == element:
                return penalty.splitting_limit_percent
        raise TermMustBeKnown(
            f"element must be a payable metal or penalised element of contract "
            f"{self.contract_reference!r}, got {element!r}"
        )

    @property
    def assayed_elements(self) -> tuple[str, ...]:
        """Every element the valuation needs a grade for: payable metals, then penalties."""
        return self.payable_metals + tuple(penalty.element for penalty in self.penalties)
