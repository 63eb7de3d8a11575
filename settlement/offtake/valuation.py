"""The value of a concentrate lot, and its provisional and final invoices, to the cent.

Every figure on an invoice can be checked by hand from the lines above it. The
rules below are the only place where a number is rounded; nothing else is.

Arithmetic
    Decimal, 28 significant digits, ROUND_HALF_EVEN. Multiplications,
    subtractions and sums run in a context that traps ``Inexact``: the limits on
    the inputs (:mod:`.terms`) keep every product within 28 digits, so they are
    exact or the valuation stops. Only two divisions are inexact (grams into troy
    ounces, and the quotational-period average); their 28-digit quotients are
    rounded once, at the points below. Floats never appear.

Units
    Weights in metric tonnes (t); dry weight in dry metric tonnes (dmt). Copper
    grade in percent, gold and silver grades in grams per dry metric tonne.
    Copper price USD per tonne of payable copper; gold and silver prices USD per
    troy ounce. Treatment charge USD per dry metric tonne; copper refining charge
    USD per payable pound, gold and silver refining charges USD per payable troy
    ounce; penalties USD per dry metric tonne per step. Conversion factors are
    the contract conventions: 1 troy ounce = 31.1035 g, 1 t = 2204.62262 lb.

Rounding points, each ROUND_HALF_EVEN, each applied once
    1. Dry weight: wet t x (100 - moisture %) / 100, to 0.001 dmt (the kilogram).
    2. Payable grade: not rounded (exact: max(0, min(grade x payable % / 100,
       grade - minimum deduction))).
    3. Payable copper: dmt x payable grade % / 100, to 0.001 t; payable gold or
       silver: dmt x payable g/dmt / 31.1035, to 0.001 troy ounce.
    4. Payable copper for the refining charge: payable t x 2204.62262, to 0.001 lb.
    5. Quotational-period price: the sum of the fixings / their number, to
       USD 0.01.
    6. Money: each invoice line's amount = quantity x rate, rounded once to the
       cent. Quantities on lines are the rounded figures of 1, 3 and 4, so a
       person multiplies the two numbers printed on the line and gets its amount.
    7. Totals: sums of the rounded line amounts (``int`` cents); never rounded
       again, so an invoice always adds up exactly.

Penalties
    For each penalised element above its threshold: the number of steps is the
    excess divided by the step (0.1 % by default), **a started step counting in
    full** ("or part thereof"); the line is dmt x (steps x rate per step).

Assays (splitting limit, umpire)
    Per element, with the buyer's assay B, the seller's S and the contract's
    splitting limit L: if abs(B - S) <= L, the mean (B + S) / 2 counts (exact, one
    more decimal than the assays); otherwise an umpire assay U is required, and U
    counts if it lies between B and S (inclusive), else the one of B and S nearer
    to U counts. An umpire given when the assays are within the limit is refused.

Invoices
    Lines in this order: payable copper, gold, silver; treatment charge; copper,
    gold, silver refining charges; penalties; then the adjustments, whose
    quantity is an amount of USD. Deductions carry a negative rate. The value is
    the sum of the valuation lines (every line before the adjustments).
    Provisional invoice: the provisional value less the withheld share,
    (100 - provisional %) of it, rounded to the cent by rule 6; this equals
    provisional % x value to the cent, except that a value whose product lands
    exactly on half a cent is rounded on the withheld line. Final invoice: the
    final value less each provisional payment received; a negative total is a
    refund from the seller to the buyer.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import wraps
from typing import Literal, ParamSpec, TypeVar, get_args

from ledger.errors import IntegrityError
from ledger.money import INT64_MAX, checked_sum
from ledger.money import currency as iso_currency
from settlement.errors import FailedPrecondition
from settlement.offtake.terms import (
    CURRENCY,
    GRAMS_PER_DMT_MAX,
    METAL_NAMES,
    METALS,
    PERCENT_DECIMALS_MAX,
    TONNES_DECIMALS_MAX,
    WET_TONNES_MAX,
    ContractTerms,
    CopperTerms,
    Metal,
    OfftakeTermInvalid,
    PenaltyTerms,
    PreciousMetalTerms,
    QuotationalPeriodRule,
    TermMustBeKnown,
    check_decimal,
    check_price,
    check_text,
)

DECIMAL_PRECISION = 28

EXACT_CONTEXT = Context(
    prec=DECIMAL_PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
"""Products and sums: exact, or a trap. Every valuation function runs in it."""

ROUNDING_CONTEXT = Context(
    prec=DECIMAL_PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""The two divisions and the rounding points, and nothing else."""

TROY_OUNCE_GRAMS = Decimal("31.1035")
POUNDS_PER_TONNE = Decimal("2204.62262")

TONNES_STEP = Decimal("0.001")
OUNCES_STEP = Decimal("0.001")
POUNDS_STEP = Decimal("0.001")
PRICE_STEP = Decimal("0.01")

CURRENCY_EXPONENT = iso_currency(CURRENCY).exponent
MINOR_UNITS_PER_USD: int = 10**CURRENCY_EXPONENT

MOISTURE_PERCENT_MAX = Decimal(50)
"""Concentrate ships at 7 to 12 % moisture; above 50 % it is a slurry, not a cargo."""

GRADE_DECIMALS_MAX = PERCENT_DECIMALS_MAX + 1
"""A settled grade may be the mean of two 4-decimal assays: one decimal more."""

PRICE_FIXINGS_MAX = 1_000
PROVISIONAL_PAYMENTS_MAX = 16
DESCRIPTION_LENGTH_MAX = 200

Unit = Literal["t", "dmt", "ozt", "lb", "USD"]
UNITS: frozenset[str] = frozenset(get_args(Unit))
MONEY_UNIT: Unit = "USD"
"""The unit of adjustment lines: their quantity is itself an amount of money."""

InvoiceKind = Literal["provisional", "final"]
AssayRule = Literal["mean_within_splitting_limit", "umpire_between_parties", "party_nearer_umpire"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _exact(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` in :data:`EXACT_CONTEXT`, whatever the caller's context."""

    @wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            with localcontext(EXACT_CONTEXT):
                return function(*args, **kwargs)
        except Inexact as error:
            # The input limits make this unreachable; if it is reached, never round silently.
            raise IntegrityError(
                f"{function.__name__}: a product needs more than {DECIMAL_PRECISION} digits"
            ) from error

    return wrapper


def _round(value: Decimal, step: Decimal) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_EVEN, context=ROUNDING_CONTEXT)


def _text(value: Decimal) -> str:
    return format(value, "f")


def _usd(amount_minor: int) -> Decimal:
    return Decimal(amount_minor).scaleb(-CURRENCY_EXPONENT)


# --- Errors -----------------------------------------------------------------------------------


class GradeMustBeGiven(OfftakeTermInvalid):
    """Every payable metal and penalised element of the contract has a grade."""

    code = "grade_must_be_given"


class PriceMustBeGiven(OfftakeTermInvalid):
    code = "price_must_be_given"


class UmpireAssayMustNotBeGiven(OfftakeTermInvalid):
    """Within the splitting limit the mean counts: an umpire result there is a mistake."""

    code = "umpire_assay_must_not_be_given"


class PriceFixingMustBeUnique(OfftakeTermInvalid):
    """One published price per metal and day: two are a conflict to resolve, not to average."""

    code = "price_fixing_must_be_unique"


class ProvisionalPaymentInvalid(OfftakeTermInvalid):
    code = "provisional_payment_invalid"


class UmpireAssayRequired(FailedPrecondition):
    """The parties' assays differ by more than the splitting limit and no umpire has reported."""

    code = "umpire_assay_required"


class QuotationalPeriodMustHaveFixings(FailedPrecondition):
    code = "quotational_period_must_have_fixings"


class ArrivalDateRequired(FailedPrecondition):
    """The quotational period counts from arrival, and the lot has not arrived."""

    code = "arrival_date_required"


class ProvisionalValueMustBePositive(FailedPrecondition):
    """Charges exceed the metal's value: there is nothing to pay on shipment."""

    code = "provisional_value_must_be_positive"


# --- Invoices ---------------------------------------------------------------------------------


def line_amount_minor(quantity: Decimal, rate: Decimal) -> int:
    """Rule 6: quantity x rate in cents, rounded once, half to even."""
    product = EXACT_CONTEXT.multiply(EXACT_CONTEXT.multiply(quantity, rate), MINOR_UNITS_PER_USD)
    return int(_round(product, Decimal(1)))


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line: ``amount_minor`` is ``quantity x rate`` in cents, rounded once (rule 6).

    ``unit`` is the quantity's unit; ``rate`` is USD per that unit, negative for
    a deduction. An adjustment line has unit ``USD`` and its rate is a fraction.
    """

    description: str
    quantity: Decimal
    unit: Unit
    rate: Decimal
    amount_minor: int

    def __post_init__(self) -> None:
        # An invoice line that does not multiply out must never be issued or read back.
        if not isinstance(self.description, str) or not (
            0 < len(self.description) <= DESCRIPTION_LENGTH_MAX
        ):
            raise IntegrityError(
                f"invoice line description must be 1..{DESCRIPTION_LENGTH_MAX} characters, "
                f"got {self.description!r}"
            )
        for name, number in (("quantity", self.quantity), ("rate", self.rate)):
            if not isinstance(number, Decimal) or not number.is_finite():
                raise IntegrityError(
                    f"invoice line {name} must be a finite Decimal, got {number!r}"
                )
        if self.unit not in UNITS:
            raise IntegrityError(
                f"invoice line unit must be one of {sorted(UNITS)}, got {self.unit!r}"
            )
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise IntegrityError(
                f"invoice line amount must be int cents, got {self.amount_minor!r}"
            )
        expected = line_amount_minor(self.quantity, self.rate)
        if self.amount_minor != expected:
            raise IntegrityError(
                f"invoice line {self.description!r}: expected amount {expected} "
                f"({self.quantity} x {self.rate}), got {self.amount_minor}"
            )
        if abs(self.amount_minor) > INT64_MAX:
            raise IntegrityError(f"invoice line amount must fit int64, got {self.amount_minor}")

    @property
    def is_adjustment(self) -> bool:
        """A withheld share or a payment received, not part of the lot's value."""
        return self.unit == MONEY_UNIT


def _line(description: str, quantity: Decimal, unit: Unit, rate: Decimal) -> InvoiceLine:
    return InvoiceLine(description, quantity, unit, rate, line_amount_minor(quantity, rate))


@dataclass(frozen=True, slots=True)
class Invoice:
    """A provisional or final invoice in USD cents.

    ``value_minor`` is the lot's value (the valuation lines); ``total_minor`` is
    what is due, the sum of every line: from the buyer to the seller, or, when
    negative, refunded by the seller to the buyer.
    """

    kind: InvoiceKind
    lines: tuple[InvoiceLine, ...]
    value_minor: int
    total_minor: int
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        if self.kind not in get_args(InvoiceKind):
            raise IntegrityError(f"invoice kind must be provisional or final, got {self.kind!r}")
        if self.currency != CURRENCY:
            raise IntegrityError(f"invoice currency must be {CURRENCY}, got {self.currency!r}")
        value_lines = [line for line in self.lines if not line.is_adjustment]
        if self.lines[: len(value_lines)] != tuple(value_lines):
            raise IntegrityError("invoice adjustments must follow every valuation line")
        value = checked_sum(line.amount_minor for line in value_lines)
        if self.value_minor != value:
            raise IntegrityError(
                f"invoice value: expected {value} (sum of valuation lines), got {self.value_minor}"
            )
        total = checked_sum(line.amount_minor for line in self.lines)
        if self.total_minor != total:
            raise IntegrityError(
                f"invoice total: expected {total} (sum of lines), got {self.total_minor}"
            )

    @property
    def is_refund(self) -> bool:
        """The seller owes the buyer: the provisional payments exceeded the final value."""
        return self.total_minor < 0


# --- Weights and payable metal ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LotWeights:
    """Wet weight and moisture of a lot (at loading for provisional, at discharge for final)."""

    wet_tonnes: Decimal
    moisture_percent: Decimal

    def __post_init__(self) -> None:
        check_decimal(
            "wet_tonnes",
            self.wet_tonnes,
            low=Decimal(0),
            high=WET_TONNES_MAX,
            decimals_max=TONNES_DECIMALS_MAX,
            low_inclusive=False,
        )
        check_decimal(
            "moisture_percent",
            self.moisture_percent,
            low=Decimal(0),
            high=MOISTURE_PERCENT_MAX,
            decimals_max=PERCENT_DECIMALS_MAX,
        )


@_exact
def dry_tonnes(weights: LotWeights) -> Decimal:
    """Rule 1: wet t x (100 - moisture %) / 100, to 0.001 dmt."""
    return _round(weights.wet_tonnes * (100 - weights.moisture_percent) / 100, TONNES_STEP)


@_exact
def payable_grade(grade: Decimal, payable_percent: Decimal, minimum_deduction: Decimal) -> Decimal:
    """Rule 2: max(0, min(grade x payable % / 100, grade - minimum deduction)), exact.

    In the grade's own unit: percent for copper, g/dmt for gold and silver.
    """
    return max(Decimal(0), min(grade * payable_percent / 100, grade - minimum_deduction))


@_exact
def payable_copper_tonnes(dry_tonnes: Decimal, payable_grade_percent: Decimal) -> Decimal:
    """Rule 3: dmt x payable % / 100, to 0.001 t."""
    return _round(dry_tonnes * payable_grade_percent / 100, TONNES_STEP)


@_exact
def payable_troy_ounces(dry_tonnes: Decimal, payable_grams_per_dmt: Decimal) -> Decimal:
    """Rule 3: dmt x payable g/dmt / 31.1035, to 0.001 troy ounce."""
    grams = dry_tonnes * payable_grams_per_dmt
    return _round(ROUNDING_CONTEXT.divide(grams, TROY_OUNCE_GRAMS), OUNCES_STEP)


@_exact
def pounds(tonnes: Decimal) -> Decimal:
    """Rule 4: t x 2204.62262, to 0.001 lb."""
    return _round(tonnes * POUNDS_PER_TONNE, POUNDS_STEP)


@_exact
def penalty_steps(grade_percent: Decimal, terms: PenaltyTerms) -> int:
    """Steps of ``terms.step_percent`` above the threshold, a started step counting in full."""
    if grade_percent <= terms.threshold_percent:
        return 0
    full_steps, remainder = divmod(grade_percent - terms.threshold_percent, terms.step_percent)
    return int(full_steps) + (1 if remainder > 0 else 0)


# --- Valuation --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Valuation:
    """A lot's value: its dry weight and the lines that make it up (metal less charges)."""

    dry_tonnes: Decimal
    lines: tuple[InvoiceLine, ...]
    value_minor: int


def _check_grade(element: str, value: object, decimals_max: int, term: str = "grades") -> Decimal:
    """A grade: percent (copper, penalised elements) or g/dmt (gold, silver)."""
    high = GRAMS_PER_DMT_MAX if element in ("Au", "Ag") else Decimal(100)
    return check_decimal(
        f"{term}[{element}]", value, low=Decimal(0), high=high, decimals_max=decimals_max
    )


def _grades_for(terms: ContractTerms, grades: Mapping[str, Decimal]) -> dict[str, Decimal]:
    checked: dict[str, Decimal] = {}
    for element in terms.assayed_elements:
        if element not in grades:
            raise GradeMustBeGiven(
                f"grades[{element}] must be given for contract {terms.contract_reference!r}, "
                f"got grades for {', '.join(sorted(grades)) or 'no element'}"
            )
        checked[element] = _check_grade(element, grades[element], GRADE_DECIMALS_MAX)
    return checked


def _prices_for(terms: ContractTerms, prices: Mapping[str, Decimal]) -> dict[Metal, Decimal]:
    checked: dict[Metal, Decimal] = {}
    for metal in terms.payable_metals:
        if metal not in prices:
            raise PriceMustBeGiven(
                f"prices[{metal}] must be given for payable {METAL_NAMES[metal]}, "
                f"got prices for {', '.join(sorted(prices)) or 'no metal'}"
            )
        checked[metal] = check_price(f"prices[{metal}]", prices[metal])
    return checked


def _copper_line(terms: CopperTerms, dry: Decimal, grade: Decimal, price: Decimal) -> InvoiceLine:
    payable = payable_grade(grade, terms.payable_percent, terms.minimum_deduction_percent)
    return _line(
        f"Payable copper: min({_text(grade)} x {_text(terms.payable_percent)}%, "
        f"{_text(grade)} - {_text(terms.minimum_deduction_percent)}) = {_text(payable)}% "
        f"of {_text(dry)} dmt",
        payable_copper_tonnes(dry, payable),
        "t",
        price,
    )


def _precious_line(
    terms: PreciousMetalTerms, dry: Decimal, grade: Decimal, price: Decimal
) -> InvoiceLine:
    deduction = terms.minimum_deduction_grams_per_dmt
    payable = payable_grade(grade, terms.payable_percent, deduction)
    return _line(
        f"Payable {METAL_NAMES[terms.metal]}: "
        f"min({_text(grade)} x {_text(terms.payable_percent)}%, "
        f"{_text(grade)} - {_text(deduction)}) = {_text(payable)} "
        f"g/dmt x {_text(dry)} dmt / {_text(TROY_OUNCE_GRAMS)} g/ozt",
        payable_troy_ounces(dry, payable),
        "ozt",
        price,
    )


@_exact
def value_lot(
    terms: ContractTerms,
    weights: LotWeights,
    grades: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
) -> Valuation:
    """The lot's value under ``terms``: payable metal at ``prices`` less every charge.

    ``grades`` maps each payable metal and penalised element (by symbol) to its
    grade: percent for copper and penalised elements, g/dmt for gold and silver.
    ``prices`` maps each payable metal to USD per t (copper) or per troy ounce.
    """
    checked_grades = _grades_for(terms, grades)
    checked_prices = _prices_for(terms, prices)
    dry = dry_tonnes(weights)

    metal_lines: dict[Metal, InvoiceLine] = {}
    if terms.copper is not None:
        metal_lines["Cu"] = _copper_line(
            terms.copper, dry, checked_grades["Cu"], checked_prices["Cu"]
        )
    for precious in (terms.gold, terms.silver):
        if precious is not None:
            metal_lines[precious.metal] = _precious_line(
                precious, dry, checked_grades[precious.metal], checked_prices[precious.metal]
            )
    lines = [metal_lines[metal] for metal in METALS if metal in metal_lines]

    # A charge with a zero rate is left off the invoice rather than printed as 0.00.
    if terms.treatment_charge_usd_per_dmt > 0:
        lines.append(_line("Treatment charge", dry, "dmt", -terms.treatment_charge_usd_per_dmt))
    if terms.copper is not None and terms.copper.refining_charge_usd_per_lb > 0:
        copper_tonnes = metal_lines["Cu"].quantity
        lines.append(
            _line(
                f"Copper refining charge: {_text(copper_tonnes)} t x "
                f"{_text(POUNDS_PER_TONNE)} lb/t",
                pounds(copper_tonnes),
                "lb",
                -terms.copper.refining_charge_usd_per_lb,
            )
        )
    for precious in (terms.gold, terms.silver):
        if precious is not None and precious.refining_charge_usd_per_ozt > 0:
            lines.append(
                _line(
                    f"{METAL_NAMES[precious.metal].capitalize()} refining charge",
                    metal_lines[precious.metal].quantity,
                    "ozt",
                    -precious.refining_charge_usd_per_ozt,
                )
            )
    for penalty in terms.penalties:
        grade = checked_grades[penalty.element]
        steps = penalty_steps(grade, penalty)
        if steps > 0 and penalty.rate_usd_per_dmt_per_step > 0:
            lines.append(
                _line(
                    f"Penalty {penalty.element}: {_text(grade)}% over "
                    f"{_text(penalty.threshold_percent)}% = {steps} started steps of "
                    f"{_text(penalty.step_percent)}% x USD "
                    f"{_text(penalty.rate_usd_per_dmt_per_step)}/dmt",
                    dry,
                    "dmt",
                    -(steps * penalty.rate_usd_per_dmt_per_step),
                )
            )
    value = checked_sum(line.amount_minor for line in lines)
    return Valuation(dry_tonnes=dry, lines=tuple(lines), value_minor=value)


@_exact
def provisional_invoice(
    terms: ContractTerms,
    weights: LotWeights,
    grades: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
) -> Invoice:
    """The invoice issued on shipment: provisional % of the provisional value.

    From the bill of lading weights, the provisional assays and the provisional
    prices. The withheld share is its own line, so the invoice adds up.
    """
    valuation = value_lot(terms, weights, grades, prices)
    if valuation.value_minor <= 0:
        raise ProvisionalValueMustBePositive(
            f"provisional value must be positive, got USD {_text(_usd(valuation.value_minor))}"
        )
    lines = list(valuation.lines)
    withheld_percent = 100 - terms.provisional_payment_percent
    if withheld_percent > 0:
        lines.append(
            _line(
                f"Withheld until the final invoice: {_text(withheld_percent)}% of "
                "provisional value",
                _usd(valuation.value_minor),
                MONEY_UNIT,
                -withheld_percent / 100,
            )
        )
    return Invoice(
        kind="provisional",
        lines=tuple(lines),
        value_minor=valuation.value_minor,
        total_minor=checked_sum(line.amount_minor for line in lines),
    )


@dataclass(frozen=True, slots=True)
class ProvisionalPayment:
    """A payment received against the lot's provisional invoice, in USD cents."""

    reference: str
    amount_minor: int

    def __post_init__(self) -> None:
        check_text("provisional_payment.reference", self.reference)
        if (
            isinstance(self.amount_minor, bool)
            or not isinstance(self.amount_minor, int)
            or not 0 < self.amount_minor <= INT64_MAX
        ):
            raise ProvisionalPaymentInvalid(
                f"provisional_payment.amount_minor must be positive int cents, "
                f"got {self.amount_minor!r}"
            )


@_exact
def final_invoice(
    terms: ContractTerms,
    weights: LotWeights,
    grades: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
    provisional_payments: Sequence[ProvisionalPayment],
) -> Invoice:
    """The final invoice: final value less the provisional payments; negative is a refund.

    From the discharge weights, the settled assays (:func:`settled_grades`) and
    the quotational-period prices (:func:`average_price`).
    """
    if len(provisional_payments) > PROVISIONAL_PAYMENTS_MAX:
        raise ProvisionalPaymentInvalid(
            f"provisional_payments must be at most {PROVISIONAL_PAYMENTS_MAX}, "
            f"got {len(provisional_payments)}"
        )
    valuation = value_lot(terms, weights, grades, prices)
    lines = list(valuation.lines)
    for payment in provisional_payments:
        lines.append(
            _line(
                f"Provisional payment received: {payment.reference}",
                _usd(payment.amount_minor),
                MONEY_UNIT,
                Decimal(-1),
            )
        )
    return Invoice(
        kind="final",
        lines=tuple(lines),
        value_minor=valuation.value_minor,
        total_minor=checked_sum(line.amount_minor for line in lines),
    )


# --- Assays -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettledAssay:
    """The grade that counts for one element, with the evidence and the rule that chose it."""

    element: str
    buyer_grade: Decimal
    seller_grade: Decimal
    umpire_grade: Decimal | None
    splitting_limit: Decimal
    grade: Decimal
    rule: AssayRule


@_exact
def settle_assay(
    element: str,
    buyer_grade: Decimal,
    seller_grade: Decimal,
    splitting_limit: Decimal,
    umpire_grade: Decimal | None = None,
) -> SettledAssay:
    """The splitting-limit rule (module docstring) for one element.

    Within the limit (a difference equal to the limit is within) the mean
    counts; beyond it the umpire counts if it lies between the parties, else
    the party's assay nearer to the umpire.
    """
    buyer_grade = _check_grade(element, buyer_grade, PERCENT_DECIMALS_MAX, "buyer_grades")
    seller_grade = _check_grade(element, seller_grade, PERCENT_DECIMALS_MAX, "seller_grades")
    splitting_limit = check_decimal(
        f"splitting_limit[{element}]",
        splitting_limit,
        low=Decimal(0),
        high=GRAMS_PER_DMT_MAX,
        decimals_max=PERCENT_DECIMALS_MAX,
        low_inclusive=False,
    )
    difference = abs(buyer_grade - seller_grade)

    def settled(grade: Decimal, rule: AssayRule) -> SettledAssay:
        return SettledAssay(
            element, buyer_grade, seller_grade, umpire_grade, splitting_limit, grade, rule
        )

    if difference <= splitting_limit:
        if umpire_grade is not None:
            raise UmpireAssayMustNotBeGiven(
                f"umpire_grades[{element}] must not be given: buyer {_text(buyer_grade)} and "
                f"seller {_text(seller_grade)} differ by {_text(difference)}, within the splitting "
                f"limit {_text(splitting_limit)}; got {_text(umpire_grade)}"
            )
        return settled((buyer_grade + seller_grade) / 2, "mean_within_splitting_limit")
    if umpire_grade is None:
        raise UmpireAssayRequired(
            f"umpire_grades[{element}] is required: buyer {_text(buyer_grade)} and seller "
            f"{_text(seller_grade)} differ by {_text(difference)}, more than the splitting "
            f"limit {_text(splitting_limit)}"
        )
    umpire_grade = _check_grade(element, umpire_grade, PERCENT_DECIMALS_MAX, "umpire_grades")
    if min(buyer_grade, seller_grade) <= umpire_grade <= max(buyer_grade, seller_grade):
        return settled(umpire_grade, "umpire_between_parties")
    # Outside the parties' range the distances cannot tie: the assays differ.
    if abs(umpire_grade - buyer_grade) < abs(umpire_grade - seller_grade):
        return settled(buyer_grade, "party_nearer_umpire")
    return settled(seller_grade, "party_nearer_umpire")


def settle_assays(
    terms: ContractTerms,
    buyer_grades: Mapping[str, Decimal],
    seller_grades: Mapping[str, Decimal],
    umpire_grades: Mapping[str, Decimal] | None = None,
) -> tuple[SettledAssay, ...]:
    """The settled assay of every element the contract values, in contract order."""
    umpire = umpire_grades or {}
    unknown = sorted(set(umpire) - set(terms.assayed_elements))
    if unknown:
        raise TermMustBeKnown(
            f"umpire grades must be for elements of contract {terms.contract_reference!r}, "
            f"got {', '.join(unknown)}"
        )
    settled: list[SettledAssay] = []
    for element in terms.assayed_elements:
        for side, grades in (("buyer", buyer_grades), ("seller", seller_grades)):
            if element not in grades:
                raise GradeMustBeGiven(f"{side} grades[{element}] must be given")
        settled.append(
            settle_assay(
                element,
                buyer_grades[element],
                seller_grades[element],
                terms.splitting_limit(element),
                umpire.get(element),
            )
        )
    return tuple(settled)


def settled_grades(assays: Sequence[SettledAssay]) -> dict[str, Decimal]:
    """The grades to value the lot at, by element."""
    return {assay.element: assay.grade for assay in assays}


# --- Quotational period and prices ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotationalPeriod:
    """The calendar days whose published prices are averaged, both ends included."""

    first_day: date
    last_day: date


def _check_date(term: str, value: object) -> date:
    # A datetime is a date too, but carries a time the period rules ignore.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TermMustBeKnown(f"{term} must be a date, got {value!r}")
    return value


def quotational_period(
    rule: QuotationalPeriodRule, *, bill_of_lading_date: date, arrival_date: date | None
) -> QuotationalPeriod:
    """The calendar month ``rule.month_offset`` months after the basis event's month."""
    basis = bill_of_lading_date if rule.basis == "bill_of_lading" else arrival_date
    if basis is None:
        raise ArrivalDateRequired(
            "arrival_date is required: the quotational period counts from arrival"
        )
    basis = _check_date(f"{rule.basis}_date", basis)
    months = basis.year * 12 + basis.month - 1 + rule.month_offset
    year, month = divmod(months, 12)
    month += 1
    return QuotationalPeriod(
        first_day=date(year, month, 1),
        last_day=date(year, month, calendar.monthrange(year, month)[1]),
    )


@dataclass(frozen=True, slots=True)
class PriceFixing:
    """A published price on one day: USD per t for copper, per troy ounce for gold and silver."""

    metal: Metal
    fixing_date: date
    price_usd: Decimal

    def __post_init__(self) -> None:
        if self.metal not in METALS:
            raise TermMustBeKnown(
                f"price_fixing.metal must be one of {', '.join(METALS)}, got {self.metal!r}"
            )
        _check_date("price_fixing.fixing_date", self.fixing_date)
        check_price(f"price_fixing[{self.metal} {self.fixing_date}].price_usd", self.price_usd)


@dataclass(frozen=True, slots=True)
class QuotationalPeriodPrice:
    """The average price of a metal over a quotational period, with the fixings it came from."""

    metal: Metal
    period: QuotationalPeriod
    fixings: tuple[PriceFixing, ...]
    sum_usd: Decimal
    price_usd: Decimal


@_exact
def average_price(
    metal: Metal, period: QuotationalPeriod, fixings: Sequence[PriceFixing]
) -> QuotationalPeriodPrice:
    """Rule 5: the mean of ``metal``'s fixings dated within ``period``, to USD 0.01.

    Fixings for other metals or other days are not counted. Whether every
    trading day of the period is present is the caller's to check: the
    calendar of the exchange is not known here.
    """
    if len(fixings) > PRICE_FIXINGS_MAX:
        raise OfftakeTermInvalid(
            f"price fixings must be at most {PRICE_FIXINGS_MAX}, got {len(fixings)}"
        )
    by_day: dict[date, PriceFixing] = {}
    for fixing in fixings:
        if fixing.metal != metal:
            continue
        if fixing.fixing_date in by_day:
            raise PriceFixingMustBeUnique(
                f"price fixings must be one per day: {metal} on {fixing.fixing_date} "
                f"given as {_text(by_day[fixing.fixing_date].price_usd)} and "
                f"{_text(fixing.price_usd)}"
            )
        by_day[fixing.fixing_date] = fixing
    counted = tuple(
        by_day[day] for day in sorted(by_day) if period.first_day <= day <= period.last_day
    )
    if not counted:
        raise QuotationalPeriodMustHaveFixings(
            f"quotational period {period.first_day} to {period.last_day} must have {metal} "
            "fixings, got none"
        )
    total = sum((fixing.price_usd for fixing in counted), Decimal(0))
    average = _round(ROUNDING_CONTEXT.divide(total, len(counted)), PRICE_STEP)
    return QuotationalPeriodPrice(metal, period, counted, total, average)
