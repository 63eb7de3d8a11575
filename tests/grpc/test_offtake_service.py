"""OfftakeService over mutual TLS, on SQLite and on PostgreSQL (offtake.proto).

A US buyer's bank (bank-us) pays a Pakistani seller's bank (bank-pk) for
copper-gold concentrate, lot by lot: provisional invoice against the bill of
lading, provisional payment (PvP, USD -> PKR through the FX provider), final
assays and quotational-period prices, final invoice, final settlement; a lot
whose final value is below the provisional payment is a refund the seller's
bank pays back in USD.

One hub per backend for the whole module (``offtake_hub``): the demo
participants are registered, their settlement accounts opened and funded,
the FX provider's rate published per test. Each test uses contracts of its
own (a random suffix) and price fixings of its own dates, so the tests do not
depend on each other's order.

The three-lot scenario uses the worked example of
tests/unit/test_offtake_valuation.py: lot 1 (USD 19,922,722.78 provisional,
USD 2,363,212.29 due on the final invoice) and lot 2 (USD 10,376,691.48
provisional, USD 2,208,309.75 refunded), and a third lot paid in two parts.
After every step the receivable on the ledger equals invoices issued minus
payments received; at the end an exported bundle verifies and a
reconciliation that reads nothing but the bundle's leaves rebuilds every
invoice line from the signed inputs and the server's figures.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from ledger import bundle
from ledger.verify import verify_bundle
from settlement.offtake.flow import (
    agreement_from_document,
    grades_from_document,
    weights_from_document,
)
from settlement.offtake.states import LOT_TRANSITIONS, LotEvent, LotState
from settlement.offtake.terms import QuotationalPeriodRule
from settlement.offtake.valuation import (
    Invoice,
    PriceFixing,
    ProvisionalPayment,
    QuotationalPeriod,
    average_price,
    final_invoice,
    provisional_invoice,
    quotational_period,
    settle_assays,
    settled_grades,
)
from settlement.pki import DevPki, aba_with_check_digit, certificate_pem, private_key_pem
from settlement.v1 import (
    audit_pb2,
    common_pb2,
    ledger_pb2,
    offtake_pb2,
    offtake_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
)
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    DENIED,
    NOT_FOUND,
    OPERATOR,
    PRECONDITION,
    HubClient,
    refusal,
    running_hub,
    type_name,
)

US = "bank-us"
PK = "bank-pk"
FX = "fx-provider"
AUDITOR = "auditor"
BUYER = "Ohio Copper Smelting Inc."
SELLER = "Chagai Hills Mining (Pvt) Ltd"
RATE = "278.4500"
FEE_MINOR = 2500

US_USD_MINOR = 10_000_000_000
"""USD 100,000,000.00: every invoice of the scenario, and more."""
PK_USD_MINOR = 500_000_000
"""USD 5,000,000.00 in bank-pk's USD account: refunds are paid from it."""
FX_PKR_MINOR = 3_000_000_000_000
"""PKR 30,000,000,000.00 of liquidity: about USD 107,000,000 at the test rate."""

BUYER_PARTY = {
    "name": BUYER,
    "account_number": "000987654321",
    "aba_routing_number": aba_with_check_digit("02100002"),
    "country": "US",
}
SELLER_PARTY = {"name": SELLER, "iban": "PK36SCBL0000001123456702", "country": "PK"}

METALS = {
    "Cu": offtake_pb2.METAL_COPPER,
    "Au": offtake_pb2.METAL_GOLD,
    "Ag": offtake_pb2.METAL_SILVER,
}
SYMBOLS = {value: symbol for symbol, value in METALS.items()}
STATE_NAMES = {
    value.number: value.name.removeprefix("OFFTAKE_LOT_STATE_").lower()
    for value in offtake_pb2.OfftakeLotState.DESCRIPTOR.values
}


# -- the hub under test ----------------------------------------------------------------------


@dataclass
class OfftakeHub:
    """The module's hub with offtake shortcuts. Every write is signed by its ``participant_id``."""

    client: HubClient
    used_dates: set[date] = field(default_factory=set)

    def offtake(self, who: str) -> offtake_pb2_grpc.OfftakeServiceStub:
        return offtake_pb2_grpc.OfftakeServiceStub(self.client.channel(who))

    def payments(self, who: str) -> payment_pb2_grpc.PaymentServiceStub:
        return payment_pb2_grpc.PaymentServiceStub(self.client.channel(who))

    def send(self, instruction: Message, who: str | None = None) -> Any:
        """Send a signed offtake instruction to the RPC of its type."""
        method, request_type = WRITES[type_name(type(instruction))]
        caller = who or getattr(instruction, "participant_id")  # noqa: B009
        request = request_type(instruction=self.client.sign(instruction))
        return getattr(self.offtake(caller), method)(request, timeout=CALL_TIMEOUT_SECONDS)

    def contract(self, contract_id: str, who: str = OPERATOR) -> offtake_pb2.OfftakeContract:
        return (
            self.offtake(who)
            .GetContract(
                offtake_pb2.GetContractRequest(contract_id=contract_id),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .contract
        )

    def invoice(self, invoice_id: str, who: str = OPERATOR) -> offtake_pb2.OfftakeInvoice:
        return (
            self.offtake(who)
            .GetInvoice(
                offtake_pb2.GetInvoiceRequest(invoice_id=invoice_id), timeout=CALL_TIMEOUT_SECONDS
            )
            .invoice
        )

    def net_debit(self, account_id: str, who: str = OPERATOR) -> int:
        found = (
            self.client.ledger(who)
            .GetBalance(
                ledger_pb2.GetBalanceRequest(account_id=account_id), timeout=CALL_TIMEOUT_SECONDS
            )
            .balance
        )
        return int(found.debits_posted_minor - found.credits_posted_minor)

    def publish_rate(self) -> None:
        instruction = payment_pb2.PublishRateInstruction(
            instruction_id=new_id(FX),
            participant_id=FX,
            instruction_type=type_name(payment_pb2.PublishRateInstruction),
            source_currency="USD",
            target_currency="PKR",
            rate=RATE,
            valid_seconds=3600,
            fee_minor=FEE_MINOR,
        )
        self.payments(FX).PublishRate(
            payment_pb2.PublishRateRequest(instruction=self.client.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def quote(self, amount_minor: int) -> payment_pb2.Quote:
        instruction = payment_pb2.RequestQuoteInstruction(
            instruction_id=new_id(US),
            participant_id=US,
            instruction_type=type_name(payment_pb2.RequestQuoteInstruction),
            fx_provider_id=FX,
            source_currency="USD",
            target_currency="PKR",
            fixed_side=payment_pb2.FIXED_SIDE_SEND,
            amount_minor=amount_minor,
        )
        return (
            self.payments(US)
            .RequestQuote(
                payment_pb2.RequestQuoteRequest(instruction=self.client.sign(instruction)),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .quote
        )

    def payment_instruction(
        self, invoice: offtake_pb2.OfftakeInvoice, amount_minor: int | None = None
    ) -> payment_pb2.PaymentInstruction:
        """The payment of ``invoice`` (or part of it) by the bank that owes it.

        The buyer's bank pays PKR to the seller's bank through the FX provider
        (the contracts here pay the seller in PKR); the seller's bank refunds
        USD to the buyer's bank.
        """
        refund = invoice.total.amount_minor < 0
        amount = amount_minor or abs(invoice.outstanding.amount_minor)
        who = PK if refund else US
        fields: dict[str, Any] = {
            "instruction_id": new_id(who),
            "participant_id": who,
            "instruction_type": type_name(payment_pb2.PaymentInstruction),
            "uetr": str(uuid.uuid4()),
            "end_to_end_id": invoice.invoice_id[:35],
            "debtor": payment_pb2.Party(**(SELLER_PARTY if refund else BUYER_PARTY)),
            "creditor": payment_pb2.Party(**(BUYER_PARTY if refund else SELLER_PARTY)),
            "creditor_agent_id": US if refund else PK,
            "remittance_information": invoice.invoice_id,
            "charge_bearer": payment_pb2.CHARGE_BEARER_DEBT,
        }
        if refund:
            fields["amount"] = common_pb2.Money(amount_minor=amount, currency="USD")
        else:
            fields["quote_id"] = self.quote(amount).quote_id
        return payment_pb2.PaymentInstruction(**fields)

    def pay(
        self, invoice: offtake_pb2.OfftakeInvoice, amount_minor: int | None = None
    ) -> offtake_pb2.PayInvoiceResponse:
        instruction = self.payment_instruction(invoice, amount_minor)
        return self.offtake(instruction.participant_id).PayInvoice(
            offtake_pb2.PayInvoiceRequest(instruction=self.client.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def fixings(self, day: date, **prices: str) -> None:
        """Publish the prices of one day (``Cu="9100.00"``), once per day in this module."""
        assert day not in self.used_dates, f"{day} is published already"
        self.used_dates.add(day)
        self.send(
            instruction(
                offtake_pb2.PublishPriceFixingsInstruction,
                OPERATOR,
                fixings=[
                    offtake_pb2.PriceFixing(
                        metal=METALS[metal], fixing_date=day.isoformat(), price_usd=price
                    )
                    for metal, price in prices.items()
                ],
            )
        )


WRITES: dict[str, tuple[str, type[Message]]] = {
    type_name(offtake_pb2.SignContractInstruction): (
        "SignContract",
        offtake_pb2.SignContractRequest,
    ),
    type_name(offtake_pb2.ChangeContractStateInstruction): (
        "ChangeContractState",
        offtake_pb2.ChangeContractStateRequest,
    ),
    type_name(offtake_pb2.PublishPriceFixingsInstruction): (
        "PublishPriceFixings",
        offtake_pb2.PublishPriceFixingsRequest,
    ),
    type_name(offtake_pb2.ShipLotInstruction): ("ShipLot", offtake_pb2.ShipLotRequest),
    type_name(offtake_pb2.IssueProvisionalInvoiceInstruction): (
        "IssueProvisionalInvoice",
        offtake_pb2.IssueProvisionalInvoiceRequest,
    ),
    type_name(offtake_pb2.RecordArrivalInstruction): (
        "RecordArrival",
        offtake_pb2.RecordArrivalRequest,
    ),
    type_name(offtake_pb2.RecordFinalAssaysInstruction): (
        "RecordFinalAssays",
        offtake_pb2.RecordFinalAssaysRequest,
    ),
    type_name(offtake_pb2.PriceLotInstruction): ("PriceLot", offtake_pb2.PriceLotRequest),
    type_name(offtake_pb2.IssueFinalInvoiceInstruction): (
        "IssueFinalInvoice",
        offtake_pb2.IssueFinalInvoiceRequest,
    ),
    type_name(offtake_pb2.ChangeLotStateInstruction): (
        "ChangeLotState",
        offtake_pb2.ChangeLotStateRequest,
    ),
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def offtake_hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[OfftakeHub]:
    with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
        for owner, currency, amount in (
            (US, "USD", US_USD_MINOR),
            (PK, "USD", PK_USD_MINOR),
            (PK, "PKR", 0),
            (FX, "USD", 0),
            (FX, "PKR", FX_PKR_MINOR),
        ):
            account_id = client.open_account(owner, currency)
            if amount:
                client.fund(account_id, amount, currency)
        yield OfftakeHub(client)


# -- instructions --------------------------------------------------------------------------------


def new_id(who: str) -> str:
    return f"{who}:{uuid.uuid4()}"


def new_contract_id() -> str:
    return f"OFT-{uuid.uuid4().hex[:10].upper()}"


def instruction(message_type: type[Message], who: str, **fields: Any) -> Any:
    return message_type(
        instruction_id=new_id(who),
        participant_id=who,
        instruction_type=type_name(message_type),
        **fields,
    )


def contract_terms(contract_id: str, **changes: Any) -> offtake_pb2.ContractTerms:
    """The worked example's contract (tests/unit/test_offtake_valuation.py), seller paid in PKR."""
    values: dict[str, Any] = {
        "contract_id": contract_id,
        "buyer": offtake_pb2.OfftakeParty(name=BUYER, bank_participant_id=US),
        "seller": offtake_pb2.OfftakeParty(name=SELLER, bank_participant_id=PK),
        "copper": offtake_pb2.CopperTerms(
            payable_percent="96.5",
            minimum_deduction_percent="1.0",
            refining_charge_usd_per_lb="0.08",
            splitting_limit_percent="0.20",
        ),
        "gold": offtake_pb2.PreciousMetalTerms(
            payable_percent="97",
            minimum_deduction_grams_per_dmt="0",
            refining_charge_usd_per_ozt="5.00",
            splitting_limit_grams_per_dmt="0.30",
        ),
        "treatment_charge_usd_per_dmt": "80.00",
        "payment_term_days": 5,
        "quotational_period": offtake_pb2.QuotationalPeriodRule(
            basis=offtake_pb2.QUOTATIONAL_PERIOD_BASIS_ARRIVAL, month_offset=1
        ),
        "penalties": [
            offtake_pb2.PenaltyTerms(
                element="As",
                threshold_percent="0.2",
                rate_usd_per_dmt_per_step="2.50",
                splitting_limit_percent="0.03",
                step_percent="0.1",
            )
        ],
        "provisional_payment_percent": "90",
        "currency": "USD",
        "seller_payment_currency": "PKR",
    }
    values.update(changes)
    return offtake_pb2.ContractTerms(**values)


def grades(**values: str) -> list[offtake_pb2.AssayGrade]:
    return [
        offtake_pb2.AssayGrade(element=element, grade=grade) for element, grade in values.items()
    ]


def weights(wet_tonnes: str, moisture_percent: str) -> offtake_pb2.LotWeights:
    return offtake_pb2.LotWeights(wet_tonnes=wet_tonnes, moisture_percent=moisture_percent)


def prices(**values: str) -> list[offtake_pb2.MetalPrice]:
    return [
        offtake_pb2.MetalPrice(metal=METALS[metal], price_usd=price)
        for metal, price in values.items()
    ]


def signed_contract(hub: OfftakeHub, **changes: Any) -> str:
    """A contract signed by both banks (ACTIVE); returns its id."""
    contract_id = new_contract_id()
    terms = contract_terms(contract_id, **changes)
    for bank in (US, PK):
        hub.send(instruction(offtake_pb2.SignContractInstruction, bank, terms=terms))
    return contract_id


@dataclass(frozen=True)
class LotPlan:
    """Everything a lot's steps say, as the banks send it."""

    lot_id: str
    bill_of_lading_date: str
    shipped: offtake_pb2.LotWeights
    provisional_grades: list[offtake_pb2.AssayGrade]
    provisional_prices: list[offtake_pb2.MetalPrice]
    arrival_date: str
    discharged: offtake_pb2.LotWeights
    buyer_grades: list[offtake_pb2.AssayGrade]
    seller_grades: list[offtake_pb2.AssayGrade]
    umpire_grades: list[offtake_pb2.AssayGrade]


LOT_1 = LotPlan(
    lot_id="1",
    bill_of_lading_date="2025-02-20",
    shipped=weights("10000.000", "8"),
    provisional_grades=grades(Cu="25", Au="5", As="0.35"),
    provisional_prices=prices(Cu="9000.00", Au="2400.00"),
    arrival_date="2025-03-18",
    discharged=weights("9990.000", "8.1"),
    buyer_grades=grades(Cu="24.80", Au="5.10", As="0.30"),
    seller_grades=grades(Cu="25.10", Au="4.95", As="0.32"),
    umpire_grades=grades(Cu="24.90"),
)
LOT_2 = LotPlan(
    lot_id="2",
    bill_of_lading_date="2025-05-02",
    shipped=weights("5000.000", "10"),
    provisional_grades=grades(Cu="26", Au="4", As="0.15"),
    provisional_prices=prices(Cu="9500.00", Au="2500.00"),
    arrival_date="2025-06-09",
    discharged=weights("4990.000", "10.5"),
    buyer_grades=grades(Cu="22.00", Au="3.00", As="0.15"),
    seller_grades=grades(Cu="22.10", Au="3.50", As="0.16"),
    umpire_grades=grades(Au="3.60"),
)
LOT_3 = LotPlan(
    lot_id="3",
    bill_of_lading_date="2025-07-10",
    shipped=weights("8000.000", "9"),
    provisional_grades=grades(Cu="24", Au="4.5", As="0.25"),
    provisional_prices=prices(Cu="9600.00", Au="2450.00"),
    arrival_date="2025-08-20",
    discharged=weights("7995.500", "9.2"),
    buyer_grades=grades(Cu="24.10", Au="4.60", As="0.26"),
    seller_grades=grades(Cu="24.20", Au="4.50", As="0.27"),
    umpire_grades=[],
)

FIXINGS: dict[date, dict[str, str]] = {
    # Lot 1's QP (April 2025) and the days around it that must not count.
    date(2025, 3, 31): {"Cu": "9300.00"},
    date(2025, 4, 1): {"Cu": "9100.00", "Au": "2410.00"},
    date(2025, 4, 2): {"Cu": "9150.50", "Au": "2395.50"},
    date(2025, 4, 3): {"Cu": "9080.00", "Au": "2420.25"},
    date(2025, 4, 4): {"Cu": "9120.25"},
    date(2025, 5, 2): {"Au": "2500.00"},
    # Lot 2's QP (July 2025).
    date(2025, 7, 1): {"Cu": "8000.00", "Au": "2300.00"},
    date(2025, 7, 2): {"Cu": "8100.00", "Au": "2320.00"},
    # Lot 3's QP (September 2025).
    date(2025, 9, 1): {"Cu": "9700.00", "Au": "2500.00"},
    date(2025, 9, 2): {"Cu": "9750.00", "Au": "2520.00"},
    date(2025, 9, 3): {"Cu": "9800.00"},
}


def step(hub: OfftakeHub, name: str, contract_id: str, plan: LotPlan) -> Any:
    """Send one lot step, signed by the bank whose step it is."""
    key = {"contract_id": contract_id, "lot_id": plan.lot_id}
    if name == "ship":
        return hub.send(
            instruction(
                offtake_pb2.ShipLotInstruction,
                PK,
                bill_of_lading_number=f"BL-{contract_id}-{plan.lot_id}",
                bill_of_lading_date=plan.bill_of_lading_date,
                weights=plan.shipped,
                provisional_grades=plan.provisional_grades,
                **key,
            )
        )
    if name == "provisional_invoice":
        return hub.send(
            instruction(
                offtake_pb2.IssueProvisionalInvoiceInstruction,
                PK,
                provisional_prices=plan.provisional_prices,
                **key,
            )
        )
    if name == "arrive":
        return hub.send(
            instruction(
                offtake_pb2.RecordArrivalInstruction,
                US,
                arrival_date=plan.arrival_date,
                weights=plan.discharged,
                **key,
            )
        )
    if name == "assay":
        return hub.send(
            instruction(
                offtake_pb2.RecordFinalAssaysInstruction,
                US,
                buyer_grades=plan.buyer_grades,
                seller_grades=plan.seller_grades,
                umpire_grades=plan.umpire_grades,
                **key,
            )
        )
    if name == "price":
        return hub.send(instruction(offtake_pb2.PriceLotInstruction, PK, **key))
    if name == "final_invoice":
        return hub.send(instruction(offtake_pb2.IssueFinalInvoiceInstruction, PK, **key))
    actions = {
        "dispute": offtake_pb2.LOT_ACTION_DISPUTE,
        "resolve_dispute": offtake_pb2.LOT_ACTION_RESOLVE_DISPUTE,
        "close": offtake_pb2.LOT_ACTION_CLOSE,
    }
    return hub.send(
        instruction(offtake_pb2.ChangeLotStateInstruction, US, action=actions[name], **key)
    )


STEP_EVENTS: dict[str, LotEvent] = {
    "ship": LotEvent.SHIPPED,
    "provisional_invoice": LotEvent.PROVISIONAL_INVOICE_ISSUED,
    "arrive": LotEvent.ARRIVED,
    "assay": LotEvent.FINAL_ASSAYS_RECORDED,
    "price": LotEvent.PRICED,
    "final_invoice": LotEvent.FINAL_INVOICE_ISSUED,
    "dispute": LotEvent.DISPUTED,
    "resolve_dispute": LotEvent.DISPUTE_RESOLVED,
    "close": LotEvent.CLOSED,
}
"""Every lot step a bank sends (payments apart), and the state-machine event it is."""


# -- checks --------------------------------------------------------------------------------------


@dataclass
class Books:
    """What the test itself counts: invoices issued and payments made, in USD cents."""

    invoiced_minor: int = 0
    received_minor: int = 0


def assert_receivable(hub: OfftakeHub, contract_id: str, books: Books) -> None:
    """The receivable on the ledger equals invoices issued minus payments received."""
    contract = hub.contract(contract_id)
    receivable = hub.net_debit(contract.receivable_account_id)
    invoiced = -hub.net_debit(contract.invoiced_account_id)
    collected = hub.net_debit(contract.collected_account_id)
    expected = books.invoiced_minor - books.received_minor
    assert (invoiced, collected) == (books.invoiced_minor, books.received_minor)
    assert receivable == invoiced - collected == expected
    assert contract.receivable.invoiced.amount_minor == books.invoiced_minor
    assert contract.receivable.received.amount_minor == books.received_minor
    assert contract.receivable.outstanding.amount_minor == expected
    assert contract.receivable.ledger_balance.amount_minor == expected
    # The same from the invoices the contract lists, and from the payments themselves.
    invoices = [invoice for lot in contract.lots for invoice in lot.invoices]
    assert sum(invoice.total.amount_minor for invoice in invoices) == books.invoiced_minor
    paid = 0
    for invoice in invoices:
        sign = -1 if invoice.total.amount_minor < 0 else 1
        for applied in invoice.payments:
            payment = (
                hub.payments(OPERATOR)
                .GetPayment(
                    payment_pb2.GetPaymentRequest(uetr=applied.uetr), timeout=CALL_TIMEOUT_SECONDS
                )
                .payment
            )
            assert payment.status == payment_pb2.PAYMENT_STATUS_ACSC
            assert payment.remittance_information == invoice.invoice_id
            usd_leg = payment.send if payment.send.currency == "USD" else payment.receive
            assert usd_leg.amount_minor == applied.amount.amount_minor
            paid += sign * usd_leg.amount_minor
    assert paid == books.received_minor


def lot_state(hub: OfftakeHub, contract_id: str, lot_id: str) -> str:
    for lot in hub.contract(contract_id).lots:
        if lot.lot_id == lot_id:
            return STATE_NAMES[lot.state]
    return "none"


def assert_steps_refused(hub: OfftakeHub, contract_id: str, plan: LotPlan) -> None:
    """Every step the lot's state does not accept: FAILED_PRECONDITION, nothing written.

    Before it is shipped the lot does not exist: every step but the shipment
    is NOT_FOUND ``lot_must_exist``.
    """
    found = lot_state(hub, contract_id, plan.lot_id)
    state = LotState.NOMINATED if found == "none" else LotState(found)
    allowed = {event for (at, event) in LOT_TRANSITIONS if at is state}
    expected = (
        (NOT_FOUND, "lot_must_exist")
        if found == "none"
        else (PRECONDITION, "lot_transition_not_allowed")
    )
    for name, event in STEP_EVENTS.items():
        if event in allowed:
            continue
        size = hub.client.journal_size()
        code, detail = refusal(functools.partial(step, hub, name, contract_id, plan))
        assert (code, detail.code) == expected, (state, name)
        if found != "none":
            assert state.value in detail.message
        assert hub.client.journal_size() == size, (state, name)


def pay_in_full(hub: OfftakeHub, invoice_id: str, books: Books) -> offtake_pb2.OfftakeInvoice:
    invoice = hub.invoice(invoice_id, US)
    response = hub.pay(invoice)
    assert response.payment.status == payment_pb2.PAYMENT_STATUS_ACSC
    assert response.payment.remittance_information == invoice_id
    amount = abs(invoice.outstanding.amount_minor)
    books.received_minor += -amount if invoice.total.amount_minor < 0 else amount
    assert response.invoice.outstanding.amount_minor == 0
    return response.invoice


# -- the three-lot contract, end to end --------------------------------------------------------


def test_three_lot_contract_end_to_end(offtake_hub: OfftakeHub, tmp_path: Path) -> None:
    hub = offtake_hub
    hub.publish_rate()
    for day, day_prices in FIXINGS.items():
        hub.fixings(day, **day_prices)
    contract_id = new_contract_id()
    terms = contract_terms(contract_id)
    books = Books()

    # Both banks sign: the first signature makes a draft, the second activates it.
    first = hub.send(instruction(offtake_pb2.SignContractInstruction, US, terms=terms))
    assert first.contract.state == offtake_pb2.OFFTAKE_CONTRACT_STATE_DRAFT
    assert (first.contract.buyer_bank_signed, first.contract.seller_bank_signed) == (True, False)
    code, detail = refusal(lambda: step(hub, "ship", contract_id, LOT_1))
    assert (code, detail.code) == (PRECONDITION, "contract_must_be_active")
    second = hub.send(instruction(offtake_pb2.SignContractInstruction, PK, terms=terms))
    assert second.contract.state == offtake_pb2.OFFTAKE_CONTRACT_STATE_ACTIVE
    assert second.contract.terms == terms
    assert second.contract.receivable_account_id == f"offtake:{contract_id}:receivable:USD"
    assert_receivable(hub, contract_id, books)

    # Lot 1: the worked example, paid in full twice.
    for name in ("ship", "provisional_invoice"):
        assert_steps_refused(hub, contract_id, LOT_1)
        response = step(hub, name, contract_id, LOT_1)
    provisional_1 = response.invoice
    assert provisional_1.invoice_id == f"PI-{contract_id}-1"
    assert provisional_1.value.amount_minor == 22_136_358_64
    assert provisional_1.total.amount_minor == 19_922_722_78
    assert [line.amount.amount_minor for line in provisional_1.lines] == [
        19_872_000_00,
        3_442_956_00,
        -736_000_00,
        -389_424_54,
        -7_172_82,
        -46_000_00,
        -2_213_635_86,
    ]
    books.invoiced_minor += 19_922_722_78
    assert_receivable(hub, contract_id, books)
    assert_steps_refused(hub, contract_id, LOT_1)
    paid = pay_in_full(hub, provisional_1.invoice_id, books)
    (payment,) = paid.payments
    assert payment.received.currency == "PKR"  # PvP: the seller's bank is paid in rupees
    assert lot_state(hub, contract_id, "1") == "provisionally_paid"
    assert_receivable(hub, contract_id, books)
    for name in ("arrive", "assay", "price"):
        assert_steps_refused(hub, contract_id, LOT_1)
        step(hub, name, contract_id, LOT_1)
        assert_receivable(hub, contract_id, books)
    assert_steps_refused(hub, contract_id, LOT_1)
    final_1 = step(hub, "final_invoice", contract_id, LOT_1).invoice
    assert final_1.value.amount_minor == 22_285_935_07
    assert final_1.total.amount_minor == 2_363_212_29
    assert final_1.lines[-1].description == (
        f"Provisional payment received: PI-{contract_id}-1 UETR {payment.uetr}"
    )
    books.invoiced_minor += 2_363_212_29
    assert_receivable(hub, contract_id, books)
    assert_steps_refused(hub, contract_id, LOT_1)
    pay_in_full(hub, final_1.invoice_id, books)
    assert lot_state(hub, contract_id, "1") == "settled"
    assert_receivable(hub, contract_id, books)
    assert_steps_refused(hub, contract_id, LOT_1)
    step(hub, "close", contract_id, LOT_1)
    assert_steps_refused(hub, contract_id, LOT_1)

    # Lot 2: the final value is below the provisional payment: a refund.
    for name in ("ship", "provisional_invoice"):
        response = step(hub, name, contract_id, LOT_2)
    assert response.invoice.total.amount_minor == 10_376_691_48
    books.invoiced_minor += 10_376_691_48
    pay_in_full(hub, response.invoice.invoice_id, books)
    for name in ("arrive", "assay", "price", "final_invoice"):
        response = step(hub, name, contract_id, LOT_2)
    refund = response.invoice
    assert refund.value.amount_minor == 8_168_381_73
    assert refund.total.amount_minor == -2_208_309_75
    books.invoiced_minor -= 2_208_309_75
    assert_receivable(hub, contract_id, books)
    # The buyer's bank does not owe a refund; the seller's bank does.
    code, detail = refusal(lambda: pay_as(hub, refund, US))
    assert (code, detail.code) == (DENIED, "bank_must_act_for_its_side")
    before = hub.net_debit(f"settlement:{PK}:USD")
    pay_in_full(hub, refund.invoice_id, books)
    assert hub.net_debit(f"settlement:{PK}:USD") - before == 2_208_309_75
    assert lot_state(hub, contract_id, "2") == "settled"
    assert_receivable(hub, contract_id, books)
    step(hub, "close", contract_id, LOT_2)

    # Lot 3: disputed and resolved; the final invoice paid in two parts.
    for name in ("ship", "provisional_invoice"):
        response = step(hub, name, contract_id, LOT_3)
    provisional_3 = response.invoice
    books.invoiced_minor += provisional_3.total.amount_minor
    step(hub, "dispute", contract_id, LOT_3)
    assert_steps_refused(hub, contract_id, LOT_3)
    disputed = hub.payment_instruction(hub.invoice(provisional_3.invoice_id, US))
    size = hub.client.journal_size()  # after the quote: the payment itself writes nothing
    code, detail = refusal(lambda: send_payment(hub, disputed))
    assert (code, detail.code) == (PRECONDITION, "lot_transition_not_allowed")
    assert hub.client.journal_size() == size
    step(hub, "resolve_dispute", contract_id, LOT_3)
    pay_in_full(hub, provisional_3.invoice_id, books)
    for name in ("arrive", "assay", "price", "final_invoice"):
        response = step(hub, name, contract_id, LOT_3)
    final_3 = response.invoice
    assert final_3.total.amount_minor > 0
    books.invoiced_minor += final_3.total.amount_minor
    part = final_3.total.amount_minor // 3
    partly = hub.pay(final_3, part).invoice
    books.received_minor += part
    assert partly.outstanding.amount_minor == final_3.total.amount_minor - part
    assert lot_state(hub, contract_id, "3") == "finally_invoiced"
    assert_receivable(hub, contract_id, books)
    code, detail = refusal(lambda: hub.pay(partly, abs(partly.outstanding.amount_minor) + 1))
    assert (code, detail.code) == (PRECONDITION, "payment_must_not_exceed_outstanding")
    pay_in_full(hub, final_3.invoice_id, books)
    assert lot_state(hub, contract_id, "3") == "settled"
    step(hub, "close", contract_id, LOT_3)
    assert_receivable(hub, contract_id, books)
    assert books.invoiced_minor == books.received_minor  # every invoice paid, every refund too

    completed = hub.send(
        instruction(
            offtake_pb2.ChangeContractStateInstruction,
            PK,
            contract_id=contract_id,
            action=offtake_pb2.CONTRACT_ACTION_COMPLETE,
        )
    )
    assert completed.contract.state == offtake_pb2.OFFTAKE_CONTRACT_STATE_COMPLETED

    # The auditor's bundle verifies, and the contract reconciles from it alone.
    directory = tmp_path / "bundle"
    export_bundle(hub, directory)
    report = verify_bundle(directory)
    assert report.ok, report.to_json()
    rebuilt = reconcile(directory, contract_id)
    server = hub.contract(contract_id, AUDITOR)
    assert rebuilt.invoiced_minor == server.receivable.invoiced.amount_minor
    assert rebuilt.received_minor == server.receivable.received.amount_minor
    assert rebuilt.receivable_minor == server.receivable.ledger_balance.amount_minor == 0
    server_invoices = {
        invoice.invoice_id: invoice for lot in server.lots for invoice in lot.invoices
    }
    assert set(rebuilt.invoices) == set(server_invoices)
    for invoice_id, invoice in rebuilt.invoices.items():
        listed = server_invoices[invoice_id]
        assert invoice.total_minor == listed.total.amount_minor
        assert invoice.paid_minor == listed.paid.amount_minor
        assert invoice.lines == [
            (line.description, line.quantity, line.unit, line.rate, line.amount.amount_minor)
            for line in listed.lines
        ]
        assert invoice.payments == sorted(payment.uetr for payment in listed.payments)


def send_payment(hub: OfftakeHub, payment: payment_pb2.PaymentInstruction) -> Any:
    return hub.offtake(payment.participant_id).PayInvoice(
        offtake_pb2.PayInvoiceRequest(instruction=hub.client.sign(payment)),
        timeout=CALL_TIMEOUT_SECONDS,
    )


def pay_as(hub: OfftakeHub, invoice: offtake_pb2.OfftakeInvoice, who: str) -> Any:
    instruction_ = hub.payment_instruction(invoice)
    instruction_.participant_id = who
    instruction_.instruction_id = new_id(who)
    instruction_.creditor_agent_id = PK if who == US else US
    return hub.offtake(who).PayInvoice(
        offtake_pb2.PayInvoiceRequest(instruction=hub.client.sign(instruction_)),
        timeout=CALL_TIMEOUT_SECONDS,
    )


# -- each side sees only its own side ------------------------------------------------------------


def third_bank_channel(hub: OfftakeHub, dev_pki: DevPki) -> grpc.Channel:
    """A registered BANK with a client certificate of its own, party to nothing."""
    participant_id = f"bank-third-{uuid.uuid4().hex[:8]}"
    certificate, key = dev_pki.certificate_authority().issue_client_certificate(participant_id)
    hub.client.register(
        target_participant_id=participant_id, certificate_common_name=participant_id
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=dev_pki.ca_certificate_path.read_bytes(),
        private_key=private_key_pem(key),
        certificate_chain=certificate_pem(certificate),
    )
    channel = grpc.secure_channel(hub.client.server.address, credentials)
    hub.client.channels[participant_id] = channel  # closed with the others
    return channel


def test_each_bank_sees_only_its_own_side(offtake_hub: OfftakeHub, dev_pki: DevPki) -> None:
    hub = offtake_hub
    hub.publish_rate()
    contract_id = signed_contract(hub)
    plan = dataclasses.replace(LOT_1, lot_id="A")
    step(hub, "ship", contract_id, plan)
    invoice = step(hub, "provisional_invoice", contract_id, plan).invoice
    hub.pay(invoice)
    receivable = f"offtake:{contract_id}:receivable:USD"

    # Both banks see the contract and its invoices; only the seller's bank its books.
    for who in (US, PK, OPERATOR, AUDITOR):
        contract = hub.contract(contract_id, who)
        assert [lot.lot_id for lot in contract.lots] == ["A"]
        assert hub.invoice(invoice.invoice_id, who).paid.amount_minor == invoice.total.amount_minor
    assert not hub.contract(contract_id, US).receivable.HasField("ledger_balance")
    assert hub.contract(contract_id, PK).receivable.ledger_balance.amount_minor == 0
    assert hub.net_debit(receivable, PK) == 0
    for account_id in (receivable, f"offtake:{contract_id}:collected:USD", f"settlement:{PK}:PKR"):
        code, detail = refusal(functools.partial(hub.net_debit, account_id, US))
        assert (code, detail.code) == (NOT_FOUND, "account_must_exist")
    code, detail = refusal(lambda: hub.net_debit(f"settlement:{US}:USD", PK))
    assert (code, detail.code) == (NOT_FOUND, "account_must_exist")

    # A third bank, and any other participant, sees nothing of it.
    third = offtake_pb2_grpc.OfftakeServiceStub(third_bank_channel(hub, dev_pki))
    for call in (
        lambda: third.GetContract(
            offtake_pb2.GetContractRequest(contract_id=contract_id), timeout=CALL_TIMEOUT_SECONDS
        ),
        lambda: hub.contract(contract_id, FX),
    ):
        code, detail = refusal(call)
        assert (code, detail.code) == (NOT_FOUND, "contract_must_exist")
    code, detail = refusal(
        lambda: third.GetInvoice(
            offtake_pb2.GetInvoiceRequest(invoice_id=invoice.invoice_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    )
    assert (code, detail.code) == (NOT_FOUND, "invoice_must_exist")
    # A contract that does not exist reads exactly the same.
    code, missing = refusal(lambda: hub.contract(new_contract_id(), US))
    assert (code, missing.code) == (NOT_FOUND, "contract_must_exist")


# -- refusals --------------------------------------------------------------------------------------


def test_signatures_activate_only_identical_terms_once(offtake_hub: OfftakeHub) -> None:
    hub = offtake_hub
    contract_id = new_contract_id()
    terms = contract_terms(contract_id)
    signed = instruction(offtake_pb2.SignContractInstruction, US, terms=terms)
    hub.send(signed)
    # The same instruction again: the original answer, nothing new.
    size = hub.client.journal_size()
    again = hub.send(signed)
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert hub.client.journal_size() == size
    cases: list[tuple[str, Message, grpc.StatusCode, str]] = [
        (
            "the buyer's bank signs twice",
            instruction(offtake_pb2.SignContractInstruction, US, terms=terms),
            PRECONDITION,
            "contract_transition_not_allowed",
        ),
        (
            "the seller's bank signs other terms",
            instruction(
                offtake_pb2.SignContractInstruction,
                PK,
                terms=contract_terms(contract_id, payment_term_days=30),
            ),
            PRECONDITION,
            "contract_terms_must_match",
        ),
        (
            "a participant that is no bank",
            instruction(
                offtake_pb2.SignContractInstruction,
                "lender",
                terms=terms,
            ),
            DENIED,
            "role_must_permit",
        ),
        (
            "one bank for both sides",
            instruction(
                offtake_pb2.SignContractInstruction,
                PK,
                terms=contract_terms(
                    new_contract_id(),
                    buyer=offtake_pb2.OfftakeParty(name=BUYER, bank_participant_id=PK),
                ),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "banks_must_be_different",
        ),
    ]
    for label, message, expected_code, expected in cases:
        size = hub.client.journal_size()
        code, detail = refusal(functools.partial(hub.send, message))
        assert (code, detail.code) == (expected_code, expected), label
        assert hub.client.journal_size() == size, label
    assert hub.contract(contract_id).state == offtake_pb2.OFFTAKE_CONTRACT_STATE_DRAFT


def test_contract_states_refuse_what_they_do_not_allow(offtake_hub: OfftakeHub) -> None:
    hub = offtake_hub
    contract_id = signed_contract(hub)
    plan = dataclasses.replace(LOT_1, lot_id="S")
    step(hub, "ship", contract_id, plan)

    def change(action: Any) -> Any:
        return hub.send(
            instruction(
                offtake_pb2.ChangeContractStateInstruction,
                US,
                contract_id=contract_id,
                action=action,
                reason="force majeure at the port",
            )
        )

    table: list[tuple[Any, str | None]] = [
        (offtake_pb2.CONTRACT_ACTION_RESUME, "contract_transition_not_allowed"),
        (offtake_pb2.CONTRACT_ACTION_COMPLETE, "lots_must_be_closed"),
        (offtake_pb2.CONTRACT_ACTION_SUSPEND, None),
        (offtake_pb2.CONTRACT_ACTION_SUSPEND, "contract_transition_not_allowed"),
        (offtake_pb2.CONTRACT_ACTION_COMPLETE, "contract_transition_not_allowed"),
        (offtake_pb2.CONTRACT_ACTION_RESUME, None),
        (offtake_pb2.CONTRACT_ACTION_TERMINATE, None),
        (offtake_pb2.CONTRACT_ACTION_RESUME, "contract_transition_not_allowed"),
        (offtake_pb2.CONTRACT_ACTION_TERMINATE, "contract_transition_not_allowed"),
    ]
    for action, refused in table:
        size = hub.client.journal_size()
        if refused is None:
            change(action)
            continue
        code, detail = refusal(functools.partial(change, action))
        assert (code, detail.code) == (PRECONDITION, refused), action
        assert hub.client.journal_size() == size
    # A terminated contract ships and invoices nothing more.
    code, detail = refusal(lambda: step(hub, "provisional_invoice", contract_id, plan))
    assert (code, detail.code) == (PRECONDITION, "contract_must_be_active")


def test_each_step_is_for_its_side(offtake_hub: OfftakeHub) -> None:
    hub = offtake_hub
    contract_id = signed_contract(hub)
    key = {"contract_id": contract_id, "lot_id": "P"}
    cases: list[tuple[Message, str]] = [
        (
            instruction(
                offtake_pb2.ShipLotInstruction,
                US,
                bill_of_lading_number="BL-1",
                bill_of_lading_date="2025-02-20",
                weights=LOT_1.shipped,
                provisional_grades=LOT_1.provisional_grades,
                **key,
            ),
            "bank_must_act_for_its_side",
        ),
        (
            instruction(
                offtake_pb2.IssueProvisionalInvoiceInstruction,
                US,
                provisional_prices=LOT_1.provisional_prices,
                **key,
            ),
            "bank_must_act_for_its_side",
        ),
        (
            instruction(offtake_pb2.IssueFinalInvoiceInstruction, US, **key),
            "bank_must_act_for_its_side",
        ),
    ]
    for message, expected in cases:
        size = hub.client.journal_size()
        code, detail = refusal(functools.partial(hub.send, message))
        assert (code, detail.code) == (DENIED, expected)
        assert hub.client.journal_size() == size


def test_prices_are_published_once_and_averaged_over_a_finished_period(
    offtake_hub: OfftakeHub,
) -> None:
    hub = offtake_hub
    day = date(2024, 1, 15)
    hub.fixings(day, Cu="8500.00")
    code, detail = refusal(
        lambda: hub.send(
            instruction(
                offtake_pb2.PublishPriceFixingsInstruction,
                OPERATOR,
                fixings=[
                    offtake_pb2.PriceFixing(
                        metal=offtake_pb2.METAL_COPPER,
                        fixing_date=day.isoformat(),
                        price_usd="8500.01",
                    )
                ],
            )
        )
    )
    assert (code, detail.code) == (grpc.StatusCode.ALREADY_EXISTS, "price_fixing_exists")
    code, detail = refusal(
        lambda: hub.send(
            instruction(
                offtake_pb2.PublishPriceFixingsInstruction,
                OPERATOR,
                fixings=[
                    offtake_pb2.PriceFixing(
                        metal=offtake_pb2.METAL_GOLD, fixing_date="2999-01-01", price_usd="1.00"
                    )
                ],
            )
        )
    )
    assert (code, detail.code) == (PRECONDITION, "fixing_date_must_not_be_future")
    code, detail = refusal(
        lambda: hub.send(
            instruction(
                offtake_pb2.PublishPriceFixingsInstruction,
                US,
                fixings=[
                    offtake_pb2.PriceFixing(
                        metal=offtake_pb2.METAL_GOLD, fixing_date="2024-01-02", price_usd="1.00"
                    )
                ],
            )
        )
    )
    assert (code, detail.code) == (DENIED, "role_must_permit")

    # A lot whose quotational period has no fixings cannot be priced.
    hub.publish_rate()
    contract_id = signed_contract(hub)
    plan = dataclasses.replace(
        LOT_1, lot_id="Q", bill_of_lading_date="2023-01-05", arrival_date="2023-02-06"
    )
    step(hub, "ship", contract_id, plan)
    hub.pay(step(hub, "provisional_invoice", contract_id, plan).invoice)
    step(hub, "arrive", contract_id, plan)
    step(hub, "assay", contract_id, plan)
    size = hub.client.journal_size()
    code, detail = refusal(lambda: step(hub, "price", contract_id, plan))
    assert (code, detail.code) == (PRECONDITION, "quotational_period_must_have_fixings")
    assert hub.client.journal_size() == size


# -- the auditor's reconciliation, from the bundle alone -------------------------------------------


def export_bundle(hub: OfftakeHub, directory: Path) -> None:
    """AuditService.ExportBundle, written to ``directory`` chunk by chunk, in order."""
    directory.mkdir(parents=True)
    offsets: dict[str, int] = {}
    for response in hub.client.audit(AUDITOR).ExportBundle(
        audit_pb2.ExportBundleRequest(), timeout=120
    ):
        assert response.path in bundle.BUNDLE_FILES
        assert response.offset == offsets.get(response.path, 0)
        with (directory / response.path).open("ab") as target:
            target.write(response.data)
        offsets[response.path] = response.offset + len(response.data)


@dataclass
class RebuiltInvoice:
    total_minor: int
    lines: list[tuple[str, str, str, str, int]]
    paid_minor: int = 0
    payments: list[str] = field(default_factory=list)


@dataclass
class RebuiltContract:
    invoiced_minor: int = 0
    received_minor: int = 0
    receivable_minor: int = 0
    invoices: dict[str, RebuiltInvoice] = field(default_factory=dict)


def signed_payload(leaf: Mapping[str, Any]) -> dict[str, Any]:
    instruction_ = leaf["instruction"]
    assert instruction_ is not None, f"leaf {leaf['index']} is not signed"
    payload = json.loads(base64.b64decode(instruction_["payload"]))
    assert payload["participant_id"] == instruction_["signer"]
    return dict(payload)


def reconcile(directory: Path, contract_id: str) -> RebuiltContract:
    """Rebuild one contract's invoices, payments and receivable from the bundle's leaves.

    Reads nothing but ``leaves.bin`` (which ``verify_bundle`` has checked) and
    the pure valuation. Every invoice is recomputed from the signed inputs
    (terms signed by both banks, shipment, arrival, assays signed by the
    banks, prices averaged from the operator's signed fixings, provisional
    payments that settled), so every line of it is explained; each payment
    applied is a settled payment whose remittance information is the
    invoice id, for the USD it moved.
    """
    leaves = [json.loads(leaf) for leaf in bundle.read_framed(directory / bundle.LEAVES_FILE)]
    events = [leaf for leaf in leaves if leaf["kind"] == "event"]
    fixings: list[PriceFixing] = []
    payments: dict[str, dict[str, Any]] = {}
    settled: set[str] = set()
    for leaf in events:
        body = leaf["body"]
        if leaf["event_type"] == "offtake_price_fixings_published":
            signed = signed_payload(leaf)
            assert signed["instruction_type"] == "settlement.v1.PublishPriceFixingsInstruction"
            for fixing in signed["fixings"]:
                metal = SYMBOLS[offtake_pb2.Metal.Value(fixing["metal"])]
                fixings.append(
                    PriceFixing(
                        metal,  # type: ignore[arg-type]
                        date.fromisoformat(fixing["fixing_date"]),
                        Decimal(fixing["price_usd"]),
                    )
                )
        if leaf["event_type"] == "payment_status":
            if body.get("payment") is not None:
                payments[body["uetr"]] = body["payment"]
            if body["status"] == "ACSC":
                settled.add(body["uetr"])

    mine = [leaf for leaf in events if leaf["body"].get("contract_id") == contract_id]
    signatures = [leaf for leaf in mine if leaf["event_type"] == "offtake_contract_signed"]
    assert {leaf["instruction"]["signer"] for leaf in signatures} == {US, PK}
    for leaf in signatures:
        assert signed_payload(leaf)["terms"]["contract_id"] == contract_id
    terms = agreement_from_document(signatures[-1]["body"]["terms"]).terms
    lots: dict[str, dict[str, Any]] = {}
    rebuilt = RebuiltContract()
    for leaf in mine:
        body = leaf["body"]
        event_type = leaf["event_type"]
        if event_type == "offtake_lot_shipped":
            signed = signed_payload(leaf)
            lots[body["lot_id"]] = {
                "weights": weights_from_document(signed["weights"]),
                "grades": grades_from_document(signed["provisional_grades"]),
                "bill_of_lading_date": date.fromisoformat(signed["bill_of_lading_date"]),
                "provisional_payments": [],
            }
        elif event_type == "offtake_lot_arrived":
            signed = signed_payload(leaf)
            lots[body["lot_id"]]["arrival"] = (
                date.fromisoformat(signed["arrival_date"]),
                weights_from_document(signed["weights"]),
            )
        elif event_type == "offtake_final_assays_recorded":
            signed = signed_payload(leaf)
            lots[body["lot_id"]]["grades_final"] = settled_grades(
                settle_assays(
                    terms,
                    grades_from_document(signed["buyer_grades"]),
                    grades_from_document(signed["seller_grades"]),
                    grades_from_document(signed.get("umpire_grades", [])) or None,
                )
            )
        elif event_type == "offtake_invoice_issued":
            signed = signed_payload(leaf)
            assert leaf["instruction"]["signer"] == PK  # the seller's bank invoices
            lot = lots[body["lot_id"]]
            invoice: Invoice
            if body["invoice"]["kind"] == "provisional":
                given = {
                    SYMBOLS[offtake_pb2.Metal.Value(price["metal"])]: Decimal(price["price_usd"])
                    for price in signed["provisional_prices"]
                }
                invoice = provisional_invoice(terms, lot["weights"], lot["grades"], given)
            else:
                arrival_day, discharged = lot["arrival"]
                period = quotational_period_of(lot["bill_of_lading_date"], arrival_day)
                averaged: dict[str, Decimal] = {
                    metal: average_price(metal, period, fixings).price_usd
                    for metal in terms.payable_metals
                }
                invoice = final_invoice(
                    terms, discharged, lot["grades_final"], averaged, lot["provisional_payments"]
                )
            lines: list[tuple[str, str, str, str, int]] = [
                (
                    line.description,
                    format(line.quantity, "f"),
                    line.unit,
                    format(line.rate, "f"),
                    line.amount_minor,
                )
                for line in invoice.lines
            ]
            logged = [
                (
                    line["description"],
                    line["quantity"],
                    line["unit"],
                    line["rate"],
                    int(line["amount_minor"]),
                )
                for line in body["invoice"]["lines"]
            ]
            assert lines == logged, f"invoice {body['invoice']['invoice_id']} is not explained"
            rebuilt.invoices[body["invoice"]["invoice_id"]] = RebuiltInvoice(
                invoice.total_minor, lines
            )
            rebuilt.invoiced_minor += invoice.total_minor
        elif event_type == "offtake_invoice_paid":
            uetr = body["uetr"]
            payment = payments[uetr]
            assert uetr in settled, f"payment {uetr} applied but never settled"
            assert payment["remittance_information"] == body["invoice_id"]
            usd_leg = int(
                payment["send_minor"]
                if payment["source_currency"] == "USD"
                else payment["receive_minor"]
            )
            assert usd_leg == int(body["amount_minor"])
            invoice_rebuilt = rebuilt.invoices[body["invoice_id"]]
            signed_amount = -usd_leg if invoice_rebuilt.total_minor < 0 else usd_leg
            invoice_rebuilt.paid_minor += signed_amount
            invoice_rebuilt.payments.append(uetr)
            rebuilt.received_minor += signed_amount
            if body["invoice_id"].startswith("PI-"):
                lots[body["lot_id"]]["provisional_payments"].append(
                    ProvisionalPayment(f"{body['invoice_id']} UETR {uetr}", usd_leg)
                )
    for invoice_rebuilt in rebuilt.invoices.values():
        invoice_rebuilt.payments.sort()
    receivable = f"offtake:{contract_id}:receivable:USD"
    for leaf in leaves:
        for posting in leaf.get("postings", ()):
            if posting["account"] == receivable:
                amount = int(posting["amount"])
                rebuilt.receivable_minor += amount if posting["side"] == "debit" else -amount
    return rebuilt


def quotational_period_of(bill_of_lading_date: date, arrival_date: date) -> QuotationalPeriod:
    """The contracts here: the month after arrival (M+1)."""
    return quotational_period(
        QuotationalPeriodRule("arrival", 1),
        bill_of_lading_date=bill_of_lading_date,
        arrival_date=arrival_date,
    )
