"""Offtake valuation: a worked example checked by hand, the rounding rule, terms, assays, prices.

Every figure of the worked example was computed by hand in the comments beside
it, following the rules at the top of ``settlement/offtake/valuation.py``
(ROUND_HALF_EVEN at the stated points only; each line = quantity x rate rounded
once to the cent; totals are sums of lines). Amounts are asserted in exact
cents and quantities as exact Decimals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime
from decimal import Context, Decimal, localcontext

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import IntegrityError
from settlement.errors import InvalidArgument, grpc_status_for
from settlement.offtake.terms import (
    BanksMustBeDifferent,
    ContractMustHavePayableMetal,
    ContractTerms,
    CopperTerms,
    PartiesMustBeDifferent,
    Party,
    PenaltyElementMustBeSymbol,
    PenaltyElementMustBeUnique,
    PenaltyElementMustNotBePayable,
    PenaltyTerms,
    PreciousMetalTerms,
    QuotationalPeriodRule,
    TermMustBeDecimal,
    TermMustBeInRange,
    TermMustBeInteger,
    TermMustBeKnown,
    TermMustBeText,
    TermMustFitDecimals,
)
from settlement.offtake.valuation import (
    ArrivalDateRequired,
    GradeMustBeGiven,
    Invoice,
    InvoiceLine,
    LotWeights,
    PriceFixing,
    PriceFixingMustBeUnique,
    PriceMustBeGiven,
    ProvisionalPayment,
    ProvisionalPaymentInvalid,
    ProvisionalValueMustBePositive,
    QuotationalPeriod,
    QuotationalPeriodMustHaveFixings,
    SettledAssay,
    UmpireAssayMustNotBeGiven,
    UmpireAssayRequired,
    average_price,
    dry_tonnes,
    final_invoice,
    line_amount_minor,
    payable_copper_tonnes,
    payable_grade,
    payable_troy_ounces,
    penalty_steps,
    pounds,
    provisional_invoice,
    quotational_period,
    settle_assay,
    settle_assays,
    settled_grades,
    value_lot,
)

D = Decimal

Row = tuple[Decimal, str, Decimal, int]
"""An invoice line without its description: (quantity, unit, rate, amount in cents)."""


def rows(invoice: Invoice) -> list[Row]:
    return [(line.quantity, line.unit, line.rate, line.amount_minor) for line in invoice.lines]


def contract(**changes: object) -> ContractTerms:
    """The example contract: copper and gold payable, arsenic penalised, 90 % provisional."""
    terms = ContractTerms(
        contract_reference="OFT-2025-001",
        buyer=Party("Ohio Copper Smelting Inc.", "US-BANK-1"),
        seller=Party("Chagai Hills Mining (Pvt) Ltd", "PK-BANK-1"),
        copper=CopperTerms(
            payable_percent=D("96.5"),
            minimum_deduction_percent=D("1.0"),
            refining_charge_usd_per_lb=D("0.08"),
            splitting_limit_percent=D("0.20"),
        ),
        gold=PreciousMetalTerms(
            metal="Au",
            payable_percent=D("97"),
            minimum_deduction_grams_per_dmt=D("0"),
            refining_charge_usd_per_ozt=D("5.00"),
            splitting_limit_grams_per_dmt=D("0.30"),
        ),
        silver=None,
        treatment_charge_usd_per_dmt=D("80.00"),
        payment_term_days=5,
        quotational_period=QuotationalPeriodRule(basis="arrival", month_offset=1),
        penalties=(
            PenaltyTerms(
                element="As",
                threshold_percent=D("0.2"),
                rate_usd_per_dmt_per_step=D("2.50"),
                splitting_limit_percent=D("0.03"),
            ),
        ),
    )
    return dataclasses.replace(terms, **changes) if changes else terms  # type: ignore[arg-type]


# --- The worked example, lot 1: provisional invoice --------------------------------------------

LOT_1_SHIPPED = LotWeights(wet_tonnes=D("10000.000"), moisture_percent=D("8"))
LOT_1_PROVISIONAL_GRADES = {"Cu": D("25"), "Au": D("5"), "As": D("0.35")}
LOT_1_PROVISIONAL_PRICES = {"Cu": D("9000.00"), "Au": D("2400.00")}


def test_lot_1_intermediate_figures_by_hand() -> None:
    terms = contract()
    assert terms.copper is not None
    assert terms.gold is not None
    # Rule 1: 10,000.000 wmt x (100 - 8) / 100 = 10,000 x 0.92 = 9,200.000 dmt.
    assert dry_tonnes(LOT_1_SHIPPED) == D("9200.000")
    # Rule 2, copper: min(25 x 96.5 / 100 = 24.125, 25 - 1.0 = 24.0) = 24.0 %.
    assert payable_grade(D("25"), D("96.5"), D("1.0")) == D("24.0")
    # Rule 3: 9,200.000 dmt x 24.0 / 100 = 2,208.000 t of payable copper.
    assert payable_copper_tonnes(D("9200.000"), D("24.0")) == D("2208.000")
    # Rule 2, gold: min(5 x 97 / 100 = 4.85, 5 - 0 = 5) = 4.85 g/dmt.
    assert payable_grade(D("5"), D("97"), D("0")) == D("4.85")
    # Rule 3: 9,200.000 x 4.85 = 44,620 g; 44,620 / 31.1035 = 1,434.56524... -> 1,434.565 ozt.
    assert payable_troy_ounces(D("9200.000"), D("4.85")) == D("1434.565")
    # Rule 4: 2,208.000 t x 2,204.62262 lb/t = 4,867,806.74496 -> 4,867,806.745 lb.
    assert pounds(D("2208.000")) == D("4867806.745")
    # Arsenic 0.35 % over 0.2 %: 0.15 % = 1.5 steps of 0.1 %; the started step counts: 2.
    assert penalty_steps(D("0.35"), terms.penalties[0]) == 2


def test_lot_1_provisional_invoice() -> None:
    invoice = provisional_invoice(
        contract(), LOT_1_SHIPPED, LOT_1_PROVISIONAL_GRADES, LOT_1_PROVISIONAL_PRICES
    )
    assert rows(invoice) == [
        # Copper: 2,208.000 t x USD 9,000.00/t = 19,872,000.00
        (D("2208.000"), "t", D("9000.00"), 19_872_000_00),
        # Gold: 1,434.565 ozt x USD 2,400.00/ozt = 3,442,956.00
        (D("1434.565"), "ozt", D("2400.00"), 3_442_956_00),
        # Treatment: 9,200.000 dmt x USD 80.00/dmt = 736,000.00
        (D("9200.000"), "dmt", D("-80.00"), -736_000_00),
        # Copper refining: 4,867,806.745 lb x USD 0.08/lb = 389,424.5396 -> 389,424.54
        (D("4867806.745"), "lb", D("-0.08"), -389_424_54),
        # Gold refining: 1,434.565 ozt x USD 5.00/ozt = 7,172.825 -> 7,172.82 (half to even: 2)
        (D("1434.565"), "ozt", D("-5.00"), -7_172_82),
        # Arsenic: 2 steps x USD 2.50 = USD 5.00/dmt; 9,200.000 dmt x 5.00 = 46,000.00
        (D("9200.000"), "dmt", D("-5.00"), -46_000_00),
        # Provisional value: 19,872,000.00 + 3,442,956.00 = 23,314,956.00
        #   - 736,000.00 = 22,578,956.00 - 389,424.54 = 22,189,531.46
        #   - 7,172.82 = 22,182,358.64 - 46,000.00 = 22,136,358.64
        # Withheld: 22,136,358.64 x 10 % = 2,213,635.864 -> 2,213,635.86
        (D("22136358.64"), "USD", D("-0.1"), -2_213_635_86),
    ]
    assert invoice.kind == "provisional"
    assert invoice.value_minor == 22_136_358_64
    # 22,136,358.64 - 2,213,635.86 = 19,922,722.78
    # (= 90 % x 22,136,358.64 = 19,922,722.776 -> 19,922,722.78).
    assert invoice.total_minor == 19_922_722_78
    assert not invoice.is_refund


def test_lot_1_provisional_invoice_descriptions() -> None:
    invoice = provisional_invoice(
        contract(), LOT_1_SHIPPED, LOT_1_PROVISIONAL_GRADES, LOT_1_PROVISIONAL_PRICES
    )
    assert [line.description for line in invoice.lines] == [
        "Payable copper: min(25 x 96.5%, 25 - 1.0) = 24.0% of 9200.000 dmt",
        "Payable gold: min(5 x 97%, 5 - 0) = 4.85 g/dmt x 9200.000 dmt / 31.1035 g/ozt",
        "Treatment charge",
        "Copper refining charge: 2208.000 t x 2204.62262 lb/t",
        "Gold refining charge",
        "Penalty As: 0.35% over 0.2% = 2 started steps of 0.1% x USD 2.50/dmt",
        "Withheld until the final invoice: 10% of provisional value",
    ]


# --- The worked example, lot 1: final invoice ---------------------------------------------------

LOT_1_DISCHARGED = LotWeights(wet_tonnes=D("9990.000"), moisture_percent=D("8.1"))
LOT_1_BUYER_GRADES = {"Cu": D("24.80"), "Au": D("5.10"), "As": D("0.30")}
LOT_1_SELLER_GRADES = {"Cu": D("25.10"), "Au": D("4.95"), "As": D("0.32")}
LOT_1_UMPIRE_GRADES = {"Cu": D("24.90")}
LOT_1_FIXINGS = [
    PriceFixing("Cu", date(2025, 3, 31), D("9300.00")),  # before the QP: not counted
    PriceFixing("Cu", date(2025, 4, 1), D("9100.00")),
    PriceFixing("Cu", date(2025, 4, 2), D("9150.50")),
    PriceFixing("Cu", date(2025, 4, 3), D("9080.00")),
    PriceFixing("Cu", date(2025, 4, 4), D("9120.25")),
    PriceFixing("Au", date(2025, 4, 1), D("2410.00")),
    PriceFixing("Au", date(2025, 4, 2), D("2395.50")),
    PriceFixing("Au", date(2025, 4, 3), D("2420.25")),
    PriceFixing("Au", date(2025, 5, 2), D("2500.00")),  # after the QP: not counted
]


def test_lot_1_final_assays() -> None:
    assays = settle_assays(contract(), LOT_1_BUYER_GRADES, LOT_1_SELLER_GRADES, LOT_1_UMPIRE_GRADES)
    assert assays == (
        # Cu: 24.80 vs 25.10 differ by 0.30 > 0.20; the umpire's 24.90 lies between: 24.90.
        SettledAssay(
            "Cu",
            D("24.80"),
            D("25.10"),
            D("24.90"),
            D("0.20"),
            D("24.90"),
            "umpire_between_parties",
        ),
        # Au: 5.10 vs 4.95 differ by 0.15 <= 0.30: mean (5.10 + 4.95) / 2 = 10.05 / 2 = 5.025.
        SettledAssay(
            "Au", D("5.10"), D("4.95"), None, D("0.30"), D("5.025"), "mean_within_splitting_limit"
        ),
        # As: 0.30 vs 0.32 differ by 0.02 <= 0.03: mean 0.62 / 2 = 0.31.
        SettledAssay(
            "As", D("0.30"), D("0.32"), None, D("0.03"), D("0.31"), "mean_within_splitting_limit"
        ),
    )
    assert settled_grades(assays) == {"Cu": D("24.90"), "Au": D("5.025"), "As": D("0.31")}


def test_lot_1_quotational_period_prices() -> None:
    # Arrival on 18 March 2025; "the month after arrival" is April 2025.
    period = quotational_period(
        contract().quotational_period,
        bill_of_lading_date=date(2025, 2, 20),
        arrival_date=date(2025, 3, 18),
    )
    assert period == QuotationalPeriod(date(2025, 4, 1), date(2025, 4, 30))
    copper = average_price("Cu", period, LOT_1_FIXINGS)
    # 9,100.00 + 9,150.50 + 9,080.00 + 9,120.25 = 36,450.75; / 4 = 9,112.6875 -> 9,112.69.
    assert copper.sum_usd == D("36450.75")
    assert copper.price_usd == D("9112.69")
    assert [fixing.fixing_date.day for fixing in copper.fixings] == [1, 2, 3, 4]
    gold = average_price("Au", period, LOT_1_FIXINGS)
    # 2,410.00 + 2,395.50 + 2,420.25 = 7,225.75; / 3 = 2,408.58333... -> 2,408.58.
    assert gold.sum_usd == D("7225.75")
    assert gold.price_usd == D("2408.58")


def lot_1_final_invoice() -> Invoice:
    terms = contract()
    period = QuotationalPeriod(date(2025, 4, 1), date(2025, 4, 30))
    prices = {
        "Cu": average_price("Cu", period, LOT_1_FIXINGS).price_usd,
        "Au": average_price("Au", period, LOT_1_FIXINGS).price_usd,
    }
    grades = settled_grades(
        settle_assays(terms, LOT_1_BUYER_GRADES, LOT_1_SELLER_GRADES, LOT_1_UMPIRE_GRADES)
    )
    # The buyer paid the provisional invoice in full: 19,922,722.78.
    paid = [ProvisionalPayment("PI-OFT-2025-001-1", 19_922_722_78)]
    return final_invoice(terms, LOT_1_DISCHARGED, grades, prices, paid)


def test_lot_1_final_invoice() -> None:
    # Rule 1: 9,990.000 wmt x (100 - 8.1) / 100 = 9,990 x 0.919 = 9,180.810 dmt.
    assert dry_tonnes(LOT_1_DISCHARGED) == D("9180.810")
    # Copper: min(24.90 x 0.965 = 24.02850, 24.90 - 1.0 = 23.90) = 23.90 %;
    #   9,180.810 x 23.90 / 100 = 2,194.21359 -> 2,194.214 t.
    # Gold: min(5.025 x 0.97 = 4.87425, 5.025 - 0) = 4.87425 g/dmt;
    #   9,180.810 x 4.87425 = 44,749.5631425 g; / 31.1035 = 1,438.73079... -> 1,438.731 ozt.
    # Copper pounds: 2,194.214 x 2,204.62262 = 4,837,413.81752068 -> 4,837,413.818 lb.
    # Arsenic 0.31 % over 0.2 %: 0.11 % = 1.1 steps -> 2 started steps -> USD 5.00/dmt.
    invoice = lot_1_final_invoice()
    assert rows(invoice) == [
        # 2,194.214 t x 9,112.69 = 19,995,191.97566 -> 19,995,191.98
        (D("2194.214"), "t", D("9112.69"), 19_995_191_98),
        # 1,438.731 ozt x 2,408.58 = 3,465,298.71198 -> 3,465,298.71
        (D("1438.731"), "ozt", D("2408.58"), 3_465_298_71),
        # 9,180.810 dmt x 80.00 = 734,464.80
        (D("9180.810"), "dmt", D("-80.00"), -734_464_80),
        # 4,837,413.818 lb x 0.08 = 386,993.10544 -> 386,993.11
        (D("4837413.818"), "lb", D("-0.08"), -386_993_11),
        # 1,438.731 ozt x 5.00 = 7,193.655 -> 7,193.66 (half to even: 6)
        (D("1438.731"), "ozt", D("-5.00"), -7_193_66),
        # 9,180.810 dmt x 5.00 = 45,904.05
        (D("9180.810"), "dmt", D("-5.00"), -45_904_05),
        # Final value: 19,995,191.98 + 3,465,298.71 = 23,460,490.69
        #   - 734,464.80 = 22,726,025.89 - 386,993.11 = 22,339,032.78
        #   - 7,193.66 = 22,331,839.12 - 45,904.05 = 22,285,935.07
        # Less the provisional payment: 19,922,722.78 x -1
        (D("19922722.78"), "USD", D("-1"), -19_922_722_78),
    ]
    assert invoice.kind == "final"
    assert invoice.value_minor == 22_285_935_07
    # Balance: 22,285,935.07 - 19,922,722.78 = 2,363,212.29, due from the buyer.
    assert invoice.total_minor == 2_363_212_29
    assert not invoice.is_refund
    assert invoice.lines[-1].description == "Provisional payment received: PI-OFT-2025-001-1"


# --- The worked example, lot 2: the final value is below the provisional payment ---------------


def test_lot_2_refund_from_seller_to_buyer() -> None:
    terms = contract()
    provisional = provisional_invoice(
        terms,
        LotWeights(wet_tonnes=D("5000.000"), moisture_percent=D("10")),
        {"Cu": D("26"), "Au": D("4"), "As": D("0.15")},
        {"Cu": D("9500.00"), "Au": D("2500.00")},
    )
    # 5,000.000 wmt x 90 / 100 = 4,500.000 dmt.
    # Copper: min(26 x 0.965 = 25.09, 26 - 1.0 = 25.0) = 25.0 %; 4,500 x 0.25 = 1,125.000 t.
    # Gold: min(4 x 0.97 = 3.88, 4) = 3.88 g/dmt; 4,500 x 3.88 = 17,460 g;
    #   / 31.1035 = 561.35161... -> 561.352 ozt.
    # Pounds: 1,125.000 x 2,204.62262 = 2,480,200.4475 -> 2,480,200.448 (half to even: 8).
    # Arsenic 0.15 % is not above 0.2 %: no penalty line.
    assert rows(provisional) == [
        (D("1125.000"), "t", D("9500.00"), 10_687_500_00),  # 1,125 x 9,500.00
        (D("561.352"), "ozt", D("2500.00"), 1_403_380_00),  # 561.352 x 2,500.00
        (D("4500.000"), "dmt", D("-80.00"), -360_000_00),  # 4,500 x 80.00
        # 2,480,200.448 x 0.08 = 198,416.03584 -> 198,416.04
        (D("2480200.448"), "lb", D("-0.08"), -198_416_04),
        (D("561.352"), "ozt", D("-5.00"), -2_806_76),  # 561.352 x 5.00 = 2,806.76
        # Value: 10,687,500.00 + 1,403,380.00 - 360,000.00 - 198,416.04 - 2,806.76
        #   = 11,529,657.20; withheld 10 % = 1,152,965.72.
        (D("11529657.20"), "USD", D("-0.1"), -1_152_965_72),
    ]
    assert provisional.value_minor == 11_529_657_20
    # 11,529,657.20 - 1,152,965.72 = 10,376,691.48
    assert provisional.total_minor == 10_376_691_48

    assays = settle_assays(
        terms,
        buyer_grades={"Cu": D("22.00"), "Au": D("3.00"), "As": D("0.15")},
        seller_grades={"Cu": D("22.10"), "Au": D("3.50"), "As": D("0.16")},
        umpire_grades={"Au": D("3.60")},
    )
    # Cu: 22.00 vs 22.10 differ by 0.10 <= 0.20: mean 22.05.
    # Au: 3.00 vs 3.50 differ by 0.50 > 0.30; the umpire's 3.60 is outside [3.00, 3.50];
    #   the seller's 3.50 is nearer to it (0.10 against 0.60): 3.50.
    # As: 0.15 vs 0.16: mean 0.155.
    assert [(assay.grade, assay.rule) for assay in assays] == [
        (D("22.05"), "mean_within_splitting_limit"),
        (D("3.50"), "party_nearer_umpire"),
        (D("0.155"), "mean_within_splitting_limit"),
    ]
    # Arrival 9 June 2025: the QP is July 2025.
    period = quotational_period(
        terms.quotational_period,
        bill_of_lading_date=date(2025, 5, 2),
        arrival_date=date(2025, 6, 9),
    )
    fixings = [
        PriceFixing("Cu", date(2025, 7, 1), D("8000.00")),
        PriceFixing("Cu", date(2025, 7, 2), D("8100.00")),
        PriceFixing("Au", date(2025, 7, 1), D("2300.00")),
        PriceFixing("Au", date(2025, 7, 2), D("2320.00")),
    ]
    # Cu (8,000.00 + 8,100.00) / 2 = 8,050.00; Au (2,300.00 + 2,320.00) / 2 = 2,310.00.
    prices = {metal: average_price(metal, period, fixings).price_usd for metal in ("Cu", "Au")}
    assert prices == {"Cu": D("8050.00"), "Au": D("2310.00")}

    final = final_invoice(
        terms,
        LotWeights(wet_tonnes=D("4990.000"), moisture_percent=D("10.5")),
        settled_grades(assays),
        prices,
        [ProvisionalPayment("PI-OFT-2025-001-2", provisional.total_minor)],
    )
    # 4,990.000 wmt x 89.5 / 100 = 4,466.050 dmt.
    # Copper: min(22.05 x 0.965 = 21.27825, 22.05 - 1.0 = 21.05) = 21.05 %;
    #   4,466.050 x 0.2105 = 940.103525 -> 940.104 t.
    # Gold: 3.50 x 0.97 = 3.395 g/dmt; 4,466.050 x 3.395 = 15,162.23975 g;
    #   / 31.1035 = 487.47696... -> 487.477 ozt.
    # Pounds: 940.104 x 2,204.62262 = 2,072,574.54355248 -> 2,072,574.544 lb.
    assert rows(final) == [
        (D("940.104"), "t", D("8050.00"), 7_567_837_20),  # 940.104 x 8,050.00
        (D("487.477"), "ozt", D("2310.00"), 1_126_071_87),  # 487.477 x 2,310.00
        (D("4466.050"), "dmt", D("-80.00"), -357_284_00),  # 4,466.050 x 80.00
        # 2,072,574.544 x 0.08 = 165,805.96352 -> 165,805.96
        (D("2072574.544"), "lb", D("-0.08"), -165_805_96),
        # 487.477 x 5.00 = 2,437.385 -> 2,437.38 (half to even: 8)
        (D("487.477"), "ozt", D("-5.00"), -2_437_38),
        # Value: 7,567,837.20 + 1,126,071.87 = 8,693,909.07 - 357,284.00 = 8,336,625.07
        #   - 165,805.96 = 8,170,819.11 - 2,437.38 = 8,168,381.73
        (D("10376691.48"), "USD", D("-1"), -10_376_691_48),
    ]
    assert final.value_minor == 8_168_381_73
    # 8,168,381.73 - 10,376,691.48 = -2,208,309.75: the seller refunds the buyer.
    assert final.total_minor == -2_208_309_75
    assert final.is_refund


# --- Rounding rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "rate", "amount_minor"),
    [
        (D("1434.565"), D("5.00"), 7_172_82),  # 7,172.825: tie, to the even 2
        (D("1438.731"), D("5.00"), 7_193_66),  # 7,193.655: tie, to the even 6
        (D("1434.565"), D("-5.00"), -7_172_82),  # symmetric for deductions
        (D("0.001"), D("4.99"), 0),  # 0.00499 -> 0.00
        (D("0.001"), D("5.01"), 1),  # 0.00501 -> 0.01
        (D("10.05"), D("-0.1"), -1_00),  # -1.005: tie, to the even 0
    ],
)
def test_each_line_is_rounded_once_to_the_cent_half_to_even(
    quantity: Decimal, rate: Decimal, amount_minor: int
) -> None:
    assert line_amount_minor(quantity, rate) == amount_minor


def test_quantities_are_rounded_half_to_even_at_their_stated_points() -> None:
    # 1,125 x 2,204.62262 = 2,480,200.4475: tie, to the even 8.
    assert pounds(D("1125")) == D("2480200.448")
    # 0.0005 t rounds to the even 0.000; 0.0015 to 0.002.
    assert dry_tonnes(LotWeights(D("0.001"), D("50"))) == D("0.000")
    assert dry_tonnes(LotWeights(D("0.003"), D("50"))) == D("0.002")


def test_the_callers_decimal_context_does_not_change_the_result() -> None:
    expected = provisional_invoice(
        contract(), LOT_1_SHIPPED, LOT_1_PROVISIONAL_GRADES, LOT_1_PROVISIONAL_PRICES
    )
    with localcontext(Context(prec=3)):
        again = provisional_invoice(
            contract(), LOT_1_SHIPPED, LOT_1_PROVISIONAL_GRADES, LOT_1_PROVISIONAL_PRICES
        )
    assert again == expected
    with localcontext(Context(prec=3)), pytest.raises(TermMustFitDecimals):
        LotWeights(D("10000.0001"), D("8"))


def test_largest_inputs_stay_exact() -> None:
    """Every limit at once: the products fit 28 digits, so no Inexact trap fires."""
    big = D("9999.9999")
    terms = contract(
        copper=CopperTerms(D("99.9999"), D("0"), big, D("0.0001")),
        gold=PreciousMetalTerms("Au", D("99.9999"), D("0"), big, D("0.0001")),
        silver=PreciousMetalTerms("Ag", D("99.9999"), D("0"), big, D("0.0001")),
        treatment_charge_usd_per_dmt=big,
        penalties=(PenaltyTerms("As", D("0"), big, D("0.0001"), step_percent=D("0.0001")),),
        provisional_payment_percent=D("0.0001"),
    )
    invoice = provisional_invoice(
        terms,
        LotWeights(D("999999.999"), D("0.0001")),
        {"Cu": D("99.99995"), "Au": D("9999.99995"), "Ag": D("9999.99995"), "As": D("0.00005")},
        {"Cu": D("999999.9999"), "Au": D("999999.9999"), "Ag": D("999999.9999")},
    )
    assert invoice.total_minor == sum(line.amount_minor for line in invoice.lines)
    assert invoice.total_minor > 0


def test_a_product_beyond_28_digits_stops_instead_of_rounding() -> None:
    # Unchecked input: 27 significant digits x 96.5 needs 30 digits.
    with pytest.raises(IntegrityError, match="more than 28 digits"):
        payable_grade(D("1.23456789012345678901234567"), D("96.5"), D("0"))


# --- Invoices always add up ----------------------------------------------------------------------


@settings(max_examples=200, print_blob=True, deadline=None)
@given(
    wet_tonnes=st.decimals(min_value=D("1"), max_value=D("200000"), places=3),
    moisture_percent=st.decimals(min_value=D("0"), max_value=D("15"), places=2),
    copper_percent=st.decimals(min_value=D("10"), max_value=D("40"), places=2),
    gold_grams=st.decimals(min_value=D("0"), max_value=D("50"), places=2),
    arsenic_percent=st.decimals(min_value=D("0"), max_value=D("1"), places=3),
    copper_price=st.decimals(min_value=D("5000"), max_value=D("12000"), places=2),
    gold_price=st.decimals(min_value=D("1500"), max_value=D("3000"), places=2),
    provisional_percent=st.decimals(min_value=D("80"), max_value=D("100"), places=1),
)
def test_every_invoice_adds_up_and_each_line_multiplies_out(
    wet_tonnes: Decimal,
    moisture_percent: Decimal,
    copper_percent: Decimal,
    gold_grams: Decimal,
    arsenic_percent: Decimal,
    copper_price: Decimal,
    gold_price: Decimal,
    provisional_percent: Decimal,
) -> None:
    terms = contract(provisional_payment_percent=provisional_percent)
    weights = LotWeights(wet_tonnes, moisture_percent)
    grades = {"Cu": copper_percent, "Au": gold_grams, "As": arsenic_percent}
    prices = {"Cu": copper_price, "Au": gold_price}
    invoice = provisional_invoice(terms, weights, grades, prices)
    for line in invoice.lines:
        # By hand: quantity x rate, in cents, rounded once.
        exact_cents = line.quantity * line.rate * 100
        assert abs(exact_cents - line.amount_minor) <= D("0.5")
    assert invoice.total_minor == sum(line.amount_minor for line in invoice.lines)
    # Provisional % x value, to the cent (half a cent at a tie).
    assert abs(invoice.value_minor * provisional_percent / 100 - invoice.total_minor) <= D("0.5")
    final = final_invoice(
        terms, weights, grades, prices, [ProvisionalPayment("PI", invoice.total_minor)]
    )
    assert final.total_minor == final.value_minor - invoice.total_minor
    # Same weights, grades and prices: the balance is exactly what was withheld.
    assert final.total_minor == invoice.value_minor - invoice.total_minor


def test_an_invoice_line_that_does_not_multiply_out_cannot_exist() -> None:
    with pytest.raises(IntegrityError):
        InvoiceLine("Treatment charge", D("9200.000"), "dmt", D("-80.00"), -736_000_01)
    with pytest.raises(IntegrityError):
        InvoiceLine("Treatment charge", D("9200.000"), "kg", D("-80.00"), -736_000_00)  # type: ignore[arg-type]


def test_an_invoice_that_does_not_add_up_cannot_exist() -> None:
    invoice = lot_1_final_invoice()
    with pytest.raises(IntegrityError):
        dataclasses.replace(invoice, total_minor=invoice.total_minor + 1)
    with pytest.raises(IntegrityError):
        dataclasses.replace(invoice, value_minor=invoice.total_minor)
    with pytest.raises(IntegrityError):
        # A payment received listed before the valuation it is deducted from.
        dataclasses.replace(invoice, lines=invoice.lines[-1:] + invoice.lines[:-1])


def test_final_invoice_deducts_every_provisional_payment() -> None:
    invoice = lot_1_final_invoice()
    split = final_invoice(
        contract(),
        LOT_1_DISCHARGED,
        {"Cu": D("24.90"), "Au": D("5.025"), "As": D("0.31")},
        {"Cu": D("9112.69"), "Au": D("2408.58")},
        [ProvisionalPayment("PI-a", 10_000_000_00), ProvisionalPayment("PI-b", 9_922_722_78)],
    )
    assert split.value_minor == invoice.value_minor
    assert split.total_minor == invoice.total_minor == 2_363_212_29
    assert [line.amount_minor for line in split.lines[-2:]] == [-10_000_000_00, -9_922_722_78]


def test_a_provisional_invoice_needs_a_positive_value() -> None:
    # 1 % copper pays nothing (1 - 1.0 = 0) and gold is absent: only charges remain.
    with pytest.raises(ProvisionalValueMustBePositive):
        provisional_invoice(
            contract(),
            LOT_1_SHIPPED,
            {"Cu": D("1"), "Au": D("0"), "As": D("0")},
            LOT_1_PROVISIONAL_PRICES,
        )


def test_a_full_provisional_payment_withholds_nothing() -> None:
    invoice = provisional_invoice(
        contract(provisional_payment_percent=D("100")),
        LOT_1_SHIPPED,
        LOT_1_PROVISIONAL_GRADES,
        LOT_1_PROVISIONAL_PRICES,
    )
    assert not any(line.is_adjustment for line in invoice.lines)
    assert invoice.total_minor == invoice.value_minor == 22_136_358_64


# --- Payable grades and penalties -------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "payable_percent", "minimum_deduction", "payable"),
    [
        (D("25"), D("96.5"), D("1.0"), D("24.0")),  # the deduction binds: 25 - 1
        (D("28.5714"), D("96.5"), D("1.0"), D("27.5714")),  # still the deduction
        (D("30"), D("96.5"), D("1.0"), D("28.95")),  # the percentage binds: 30 x 0.965
        (D("0.8"), D("96.5"), D("1.0"), D("0")),  # below the deduction: nothing payable
        (D("5"), D("97"), D("1"), D("4")),  # gold with a 1 g/dmt minimum deduction
    ],
)
def test_payable_grade(
    grade: Decimal, payable_percent: Decimal, minimum_deduction: Decimal, payable: Decimal
) -> None:
    assert payable_grade(grade, payable_percent, minimum_deduction) == payable


@pytest.mark.parametrize(
    ("arsenic_percent", "steps"),
    [
        (D("0"), 0),
        (D("0.2"), 0),  # at the threshold: nothing
        (D("0.2001"), 1),  # a started step counts in full
        (D("0.3"), 1),  # exactly one step
        (D("0.30001"), 2),
        (D("0.35"), 2),
        (D("1.2"), 10),
    ],
)
def test_penalty_counts_each_started_step(arsenic_percent: Decimal, steps: int) -> None:
    assert penalty_steps(arsenic_percent, contract().penalties[0]) == steps


# --- Splitting limit and umpire -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("buyer", "seller", "umpire", "grade", "rule"),
    [
        # Within the limit (0.20): the mean, whoever is higher.
        (D("25.00"), D("25.10"), None, D("25.05"), "mean_within_splitting_limit"),
        (D("25.10"), D("25.00"), None, D("25.05"), "mean_within_splitting_limit"),
        # A difference equal to the limit is within it.
        (D("25.00"), D("25.20"), None, D("25.10"), "mean_within_splitting_limit"),
        # Beyond it: the umpire counts when between the parties (ends included) ...
        (D("25.00"), D("25.21"), D("25.07"), D("25.07"), "umpire_between_parties"),
        (D("25.00"), D("25.21"), D("25.21"), D("25.21"), "umpire_between_parties"),
        (D("25.21"), D("25.00"), D("25.00"), D("25.00"), "umpire_between_parties"),
        # ... else the party nearer to the umpire.
        (D("25.00"), D("25.30"), D("24.90"), D("25.00"), "party_nearer_umpire"),
        (D("25.00"), D("25.30"), D("25.50"), D("25.30"), "party_nearer_umpire"),
        (D("25.30"), D("25.00"), D("24.00"), D("25.00"), "party_nearer_umpire"),
    ],
)
def test_splitting_limit_rule(
    buyer: Decimal, seller: Decimal, umpire: Decimal | None, grade: Decimal, rule: str
) -> None:
    settled = settle_assay("Cu", buyer, seller, D("0.20"), umpire)
    assert (settled.grade, settled.rule) == (grade, rule)
    assert (settled.buyer_grade, settled.seller_grade, settled.umpire_grade) == (
        buyer,
        seller,
        umpire,
    )


def test_beyond_the_splitting_limit_an_umpire_is_required() -> None:
    with pytest.raises(UmpireAssayRequired) as raised:
        settle_assays(contract(), LOT_1_BUYER_GRADES, LOT_1_SELLER_GRADES)
    assert raised.value.code == "umpire_assay_required"
    assert raised.value.message == (
        "umpire_grades[Cu] is required: buyer 24.80 and seller 25.10 differ by 0.30, "
        "more than the splitting limit 0.20"
    )
    assert grpc_status_for(raised.value) is grpc.StatusCode.FAILED_PRECONDITION


def test_within_the_splitting_limit_an_umpire_is_refused() -> None:
    with pytest.raises(UmpireAssayMustNotBeGiven, match=r"umpire_grades\[Au\]"):
        settle_assays(
            contract(),
            LOT_1_BUYER_GRADES,
            LOT_1_SELLER_GRADES,
            {"Cu": D("24.90"), "Au": D("5.00")},
        )
    with pytest.raises(TermMustBeKnown, match="Zn"):
        settle_assays(
            contract(), LOT_1_BUYER_GRADES, LOT_1_SELLER_GRADES, {"Cu": D("24.9"), "Zn": D("1")}
        )


def test_each_party_assays_every_valued_element() -> None:
    with pytest.raises(GradeMustBeGiven, match=r"seller grades\[As\]"):
        settle_assays(
            contract(), LOT_1_BUYER_GRADES, {"Cu": D("25.10"), "Au": D("4.95")}, LOT_1_UMPIRE_GRADES
        )


# --- Quotational period and price fixings -------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "bill_of_lading_date", "arrival_date", "first_day", "last_day"),
    [
        (("arrival", 1), date(2025, 3, 18), date(2025, 4, 28), date(2025, 5, 1), date(2025, 5, 31)),
        (
            ("arrival", 1),
            date(2024, 11, 2),
            date(2024, 12, 31),
            date(2025, 1, 1),
            date(2025, 1, 31),
        ),
        (("arrival", 0), date(2024, 1, 5), date(2024, 2, 10), date(2024, 2, 1), date(2024, 2, 29)),
        (("bill_of_lading", 2), date(2025, 11, 30), None, date(2026, 1, 1), date(2026, 1, 31)),
    ],
)
def test_quotational_period(
    rule: tuple[str, int],
    bill_of_lading_date: date,
    arrival_date: date | None,
    first_day: date,
    last_day: date,
) -> None:
    period = quotational_period(
        QuotationalPeriodRule(*rule),  # type: ignore[arg-type]
        bill_of_lading_date=bill_of_lading_date,
        arrival_date=arrival_date,
    )
    assert period == QuotationalPeriod(first_day, last_day)


def test_quotational_period_after_arrival_needs_the_arrival_date() -> None:
    with pytest.raises(ArrivalDateRequired):
        quotational_period(
            QuotationalPeriodRule("arrival", 1),
            bill_of_lading_date=date(2025, 2, 20),
            arrival_date=None,
        )


def test_price_fixings() -> None:
    april = QuotationalPeriod(date(2025, 4, 1), date(2025, 4, 30))
    duplicate = [*LOT_1_FIXINGS, PriceFixing("Cu", date(2025, 4, 2), D("9151.00"))]
    with pytest.raises(PriceFixingMustBeUnique, match="Cu on 2025-04-02"):
        average_price("Cu", april, duplicate)
    with pytest.raises(QuotationalPeriodMustHaveFixings):
        average_price("Ag", april, LOT_1_FIXINGS)
    with pytest.raises(QuotationalPeriodMustHaveFixings):
        average_price("Cu", QuotationalPeriod(date(2025, 6, 1), date(2025, 6, 30)), LOT_1_FIXINGS)
    # (2,000.00 + 2,000.01) / 2 = 2,000.005: tie, to the even 2,000.00.
    tie = [
        PriceFixing("Au", date(2025, 4, 1), D("2000.00")),
        PriceFixing("Au", date(2025, 4, 2), D("2000.01")),
    ]
    assert average_price("Au", april, tie).price_usd == D("2000.00")


def test_price_fixing_checks_its_fields() -> None:
    with pytest.raises(TermMustBeKnown):
        PriceFixing("Pt", date(2025, 4, 1), D("1000"))  # type: ignore[arg-type]
    with pytest.raises(TermMustBeKnown):
        PriceFixing("Cu", datetime(2025, 4, 1, 12, 0), D("9000"))
    with pytest.raises(TermMustBeInRange):
        PriceFixing("Cu", date(2025, 4, 1), D("0"))
    with pytest.raises(TermMustBeDecimal):
        PriceFixing("Cu", date(2025, 4, 1), 9000.0)  # type: ignore[arg-type]


# --- Terms and inputs are validated -------------------------------------------------------------


def copper_terms(**changes: object) -> CopperTerms:
    fields: dict[str, object] = {
        "payable_percent": D("96.5"),
        "minimum_deduction_percent": D("1.0"),
        "refining_charge_usd_per_lb": D("0.08"),
        "splitting_limit_percent": D("0.20"),
    }
    return CopperTerms(**{**fields, **changes})  # type: ignore[arg-type]


def gold_terms(**changes: object) -> PreciousMetalTerms:
    fields: dict[str, object] = {
        "metal": "Au",
        "payable_percent": D("97"),
        "minimum_deduction_grams_per_dmt": D("0"),
        "refining_charge_usd_per_ozt": D("5.00"),
        "splitting_limit_grams_per_dmt": D("0.30"),
    }
    return PreciousMetalTerms(**{**fields, **changes})  # type: ignore[arg-type]


def arsenic(**changes: object) -> PenaltyTerms:
    fields: dict[str, object] = {
        "element": "As",
        "threshold_percent": D("0.2"),
        "rate_usd_per_dmt_per_step": D("2.50"),
        "splitting_limit_percent": D("0.03"),
    }
    return PenaltyTerms(**{**fields, **changes})  # type: ignore[arg-type]


INVALID_TERMS: list[tuple[str, Callable[[], object], type[InvalidArgument], str]] = [
    ("copper payable zero", lambda: copper_terms(payable_percent=D("0")),
     TermMustBeInRange, "copper.payable_percent must be in (0, 100], got 0"),
    ("copper payable above 100", lambda: copper_terms(payable_percent=D("100.5")),
     TermMustBeInRange, "copper.payable_percent"),
    ("copper payable float", lambda: copper_terms(payable_percent=96.5),
     TermMustBeDecimal, "copper.payable_percent must be a finite Decimal, got 96.5"),
    ("copper payable NaN", lambda: copper_terms(payable_percent=D("NaN")),
     TermMustBeDecimal, "copper.payable_percent"),
    ("copper refining 5 decimals", lambda: copper_terms(refining_charge_usd_per_lb=D("0.08001")),
     TermMustFitDecimals, "copper.refining_charge_usd_per_lb must have at most 4 decimals"),
    ("copper deduction negative", lambda: copper_terms(minimum_deduction_percent=D("-1")),
     TermMustBeInRange, "copper.minimum_deduction_percent"),
    ("copper splitting limit zero", lambda: copper_terms(splitting_limit_percent=D("0")),
     TermMustBeInRange, "copper.splitting_limit_percent"),
    ("gold splitting limit zero", lambda: gold_terms(splitting_limit_grams_per_dmt=D("0")),
     TermMustBeInRange, "gold.splitting_limit_grams_per_dmt"),
    ("gold refining negative", lambda: gold_terms(refining_charge_usd_per_ozt=D("-5")),
     TermMustBeInRange, "gold.refining_charge_usd_per_ozt"),
    ("silver payable zero", lambda: gold_terms(metal="Ag", payable_percent=D("0")),
     TermMustBeInRange, "silver.payable_percent"),
    ("precious metal unknown", lambda: gold_terms(metal="Pt"),
     TermMustBeKnown, "precious_metal.metal"),
    ("silver terms as gold", lambda: contract(gold=gold_terms(metal="Ag")),
     TermMustBeKnown, "gold.metal must be 'Au', got 'Ag'"),
    ("penalty element lower case", lambda: arsenic(element="as"),
     PenaltyElementMustBeSymbol, "penalty.element"),
    ("penalty threshold negative", lambda: arsenic(threshold_percent=D("-0.1")),
     TermMustBeInRange, "penalty[As].threshold_percent"),
    ("penalty step zero", lambda: arsenic(step_percent=D("0")),
     TermMustBeInRange, "penalty[As].step_percent"),
    ("penalty rate too large", lambda: arsenic(rate_usd_per_dmt_per_step=D("10000.01")),
     TermMustBeInRange, "penalty[As].rate_usd_per_dmt_per_step"),
    ("qp basis unknown", lambda: QuotationalPeriodRule("loading", 1),  # type: ignore[arg-type]
     TermMustBeKnown, "quotational_period.basis"),
    ("qp offset too far", lambda: QuotationalPeriodRule("arrival", 7),
     TermMustBeInRange, "quotational_period.month_offset must be in [0, 6], got 7"),
    ("qp offset bool", lambda: QuotationalPeriodRule("arrival", True),
     TermMustBeInteger, "quotational_period.month_offset"),
    ("party name empty", lambda: Party("", "US-BANK-1"),
     TermMustBeText, "party.name"),
    ("party bank blank", lambda: Party("Buyer", "   "),
     TermMustBeText, "party.bank_participant_id"),
    ("contract reference too long", lambda: contract(contract_reference="X" * 141),
     TermMustBeText, "contract_reference"),
    ("same party twice", lambda: contract(seller=Party("Ohio Copper Smelting Inc.", "PK-BANK-1")),
     PartiesMustBeDifferent, "buyer.name and seller.name"),
    ("same bank twice", lambda: contract(seller=Party("Chagai Hills", "US-BANK-1")),
     BanksMustBeDifferent, "buyer.bank_participant_id and seller.bank_participant_id"),
    ("no payable metal", lambda: contract(copper=None, gold=None),
     ContractMustHavePayableMetal, "copper, gold or silver"),
    ("treatment charge negative", lambda: contract(treatment_charge_usd_per_dmt=D("-80")),
     TermMustBeInRange, "treatment_charge_usd_per_dmt"),
    ("payment term too long", lambda: contract(payment_term_days=366),
     TermMustBeInRange, "payment_term_days"),
    ("payment term text", lambda: contract(payment_term_days="5"),
     TermMustBeInteger, "payment_term_days"),
    ("penalty twice", lambda: contract(penalties=(arsenic(), arsenic())),
     PenaltyElementMustBeUnique, "'As' twice"),
    ("penalty on a payable metal", lambda: contract(penalties=(arsenic(element="Au"),)),
     PenaltyElementMustNotBePayable, "'Au'"),
    ("penalties as a list", lambda: contract(penalties=[arsenic()]),
     TermMustBeInRange, "penalties must be a tuple"),
    ("provisional zero", lambda: contract(provisional_payment_percent=D("0")),
     TermMustBeInRange, "provisional_payment_percent"),
    ("provisional above 100", lambda: contract(provisional_payment_percent=D("100.01")),
     TermMustBeInRange, "provisional_payment_percent"),
    ("currency PKR", lambda: contract(currency="PKR"),
     TermMustBeKnown, "currency must be USD, got 'PKR'"),
    ("wet tonnes zero", lambda: LotWeights(D("0"), D("8")),
     TermMustBeInRange, "wet_tonnes"),
    ("wet tonnes in grams", lambda: LotWeights(D("10000.0001"), D("8")),
     TermMustFitDecimals, "wet_tonnes must have at most 3 decimals"),
    ("wet tonnes above a ship", lambda: LotWeights(D("1000000.001"), D("8")),
     TermMustBeInRange, "wet_tonnes"),
    ("moisture a slurry", lambda: LotWeights(D("10000"), D("50.01")),
     TermMustBeInRange, "moisture_percent"),
    ("copper grade above 100", lambda: value_lot(
        contract(), LOT_1_SHIPPED, {**LOT_1_PROVISIONAL_GRADES, "Cu": D("100.1")},
        LOT_1_PROVISIONAL_PRICES),
     TermMustBeInRange, "grades[Cu]"),
    ("copper grade 6 decimals", lambda: value_lot(
        contract(), LOT_1_SHIPPED, {**LOT_1_PROVISIONAL_GRADES, "Cu": D("25.000001")},
        LOT_1_PROVISIONAL_PRICES),
     TermMustFitDecimals, "grades[Cu]"),
    ("gold grade missing", lambda: value_lot(
        contract(), LOT_1_SHIPPED, {"Cu": D("25"), "As": D("0.1")}, LOT_1_PROVISIONAL_PRICES),
     GradeMustBeGiven, "grades[Au] must be given"),
    ("gold price missing", lambda: value_lot(
        contract(), LOT_1_SHIPPED, LOT_1_PROVISIONAL_GRADES, {"Cu": D("9000")}),
     PriceMustBeGiven, "prices[Au] must be given for payable gold"),
    ("copper price zero", lambda: value_lot(
        contract(), LOT_1_SHIPPED, LOT_1_PROVISIONAL_GRADES, {"Cu": D("0"), "Au": D("2400")}),
     TermMustBeInRange, "prices[Cu]"),
    ("payment negative", lambda: ProvisionalPayment("PI-1", -1),
     ProvisionalPaymentInvalid, "provisional_payment.amount_minor"),
    ("payment in dollars", lambda: ProvisionalPayment("PI-1", D("100.00")),  # type: ignore[arg-type]
     ProvisionalPaymentInvalid, "provisional_payment.amount_minor"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [pytest.param(build, error, message, id=name) for name, build, error, message in INVALID_TERMS],
)
def test_each_invalid_term_is_refused_with_its_code_naming_the_term(
    build: Callable[[], object], error: type[InvalidArgument], message: str
) -> None:
    with pytest.raises(error) as raised:
        build()
    assert type(raised.value) is error
    assert message in raised.value.message
    assert raised.value.code == error.code
    assert grpc_status_for(raised.value) is grpc.StatusCode.INVALID_ARGUMENT


def test_error_codes_are_stable() -> None:
    codes = {
        error.code
        for error in (
            TermMustBeDecimal,
            TermMustBeInRange,
            TermMustFitDecimals,
            TermMustBeInteger,
            TermMustBeText,
            TermMustBeKnown,
            BanksMustBeDifferent,
            PartiesMustBeDifferent,
            ContractMustHavePayableMetal,
            PenaltyElementMustBeSymbol,
            PenaltyElementMustBeUnique,
            PenaltyElementMustNotBePayable,
            GradeMustBeGiven,
            PriceMustBeGiven,
            UmpireAssayMustNotBeGiven,
            PriceFixingMustBeUnique,
            ProvisionalPaymentInvalid,
            UmpireAssayRequired,
            QuotationalPeriodMustHaveFixings,
            ArrivalDateRequired,
            ProvisionalValueMustBePositive,
        )
    }
    assert codes == {
        "term_must_be_decimal",
        "term_must_be_in_range",
        "term_must_fit_decimals",
        "term_must_be_integer",
        "term_must_be_text",
        "term_must_be_known",
        "banks_must_be_different",
        "parties_must_be_different",
        "contract_must_have_payable_metal",
        "penalty_element_must_be_symbol",
        "penalty_element_must_be_unique",
        "penalty_element_must_not_be_payable",
        "grade_must_be_given",
        "price_must_be_given",
        "umpire_assay_must_not_be_given",
        "price_fixing_must_be_unique",
        "provisional_payment_invalid",
        "umpire_assay_required",
        "quotational_period_must_have_fixings",
        "arrival_date_required",
        "provisional_value_must_be_positive",
    }


def test_terms_name_their_payable_metals_in_invoice_order() -> None:
    terms = contract(silver=gold_terms(metal="Ag"))
    assert terms.payable_metals == ("Cu", "Au", "Ag")
    assert terms.assayed_elements == ("Cu", "Au", "Ag", "As")
    assert terms.splitting_limit("As") == D("0.03")
