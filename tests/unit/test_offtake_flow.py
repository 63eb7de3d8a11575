"""The offtake flow on an in-process hub (SQLite), without the transport.

The servicer's methods are called directly with the caller bound, as the
interceptor would; refusals are the flow's errors, mapped to their status
codes by :func:`settlement.errors.grpc_status_for` (the interceptor's one
table). Each test opens a fresh hub: the demo banks are registered with the
hub's own unsigned entries, their USD settlement accounts opened and funded.

Tables, in the order offtake.proto lists the rules:

- the pure decoding of instructions (decimal strings, dates, terms);
- the lot's state machine: every step outside ``LOT_TRANSITIONS``, in every
  state a lot reaches (disputed from both invoice states included), is
  FAILED_PRECONDITION ``lot_transition_not_allowed`` and writes nothing;
- after every step, the receivable on the ledger equals invoices issued
  minus payments received, as account balances and as the contract's
  running totals;
- idempotency: an identical retry answers the original receipt, another body
  under the same id is refused, two identical requests racing commit once;
- the read model is a projection of the log: replaying the journal's offtake
  events into empty tables gives the same rows.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf.message import Message
from sqlalchemy import create_engine, select

from ledger.batch import leaf_hash
from ledger.errors import LedgerError
from ledger.keys import load_private_key, load_public_key, public_key_bytes
from ledger.records import (
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    Receipt,
    RegisterSigningKey,
    Side,
)
from ledger.schema import journal
from settlement import migrations
from settlement.auth import Caller, Role, bind_caller, unbind_caller
from settlement.errors import grpc_status_for
from settlement.hub import Hub, HubSettings, open_hub
from settlement.instructions import sign
from settlement.migrations import VERSION_TABLE
from settlement.offtake.flow import (
    DateMustBeValid,
    DecimalMustBeValid,
    agreement_from_document,
    parse_date,
    parse_decimal,
    terms_document,
)
from settlement.offtake.projection import OfftakeProjection
from settlement.offtake.states import LOT_TRANSITIONS, LotEvent, LotState
from settlement.pki import DevPki, aba_with_check_digit, create_dev_pki
from settlement.registry import registration_event
from settlement.schema import (
    metadata,
    offtake_contracts,
    offtake_invoice_payments,
    offtake_invoices,
    offtake_lots,
    offtake_price_fixings,
)
from settlement.services.convert import leaf_time_us
from settlement.services.offtake import OfftakeService, agreement_from_message, terms_message
from settlement.v1 import common_pb2, offtake_pb2, payment_pb2

US = "bank-us"
PK = "bank-pk"
OPERATOR = "operator"
BUYER = "Ohio Copper Smelting Inc."
SELLER = "Chagai Hills Mining (Pvt) Ltd"
ORIGIN = "test.settlement.example/offtake"
FUNDS_MINOR = 10_000_000_000

OFFTAKE_TABLES = (
    offtake_contracts,
    offtake_lots,
    offtake_invoices,
    offtake_invoice_payments,
    offtake_price_fixings,
)

T = TypeVar("T")


# -- pure decoding ---------------------------------------------------------------------------


def contract_terms(contract_id: str = "OFT-2025-001", **changes: Any) -> offtake_pb2.ContractTerms:
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
        "seller_payment_currency": "USD",
    }
    values.update(changes)
    return offtake_pb2.ContractTerms(**values)


def test_terms_round_trip_through_the_logged_document() -> None:
    message = contract_terms()
    agreement = agreement_from_message(message)
    document = terms_document(agreement)
    # What the event logs is plain JSON, and reads back as the same agreement and message.
    assert json.loads(json.dumps(document)) == document
    assert agreement_from_document(document) == agreement
    assert terms_message(agreement_from_document(document)) == message
    assert document["copper"]["payable_percent"] == "96.5"
    assert document["silver"] is None


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("9112.69", True),
        ("0", True),
        ("-0.1", True),
        ("25.000", True),
        ("", False),
        ("1e5", False),  # an exponent
        ("1.", False),
        (".5", False),
        ("+1", False),
        (" 1", False),
        ("01", False),
        ("NaN", False),
        ("1,000.00", False),
    ],
)
def test_decimal_strings_are_plain_notation(text: str, valid: bool) -> None:
    if valid:
        assert format(parse_decimal(text, "price_usd"), "f") == text
    else:
        with pytest.raises(DecimalMustBeValid, match="price_usd"):
            parse_decimal(text, "price_usd")


@pytest.mark.parametrize("text", ["2025-2-01", "2025-02-30", "20250201", "", "2025-02-01T00:00"])
def test_dates_are_calendar_days(text: str) -> None:
    with pytest.raises(DateMustBeValid):
        parse_date(text, "arrival_date")


TERM_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("contract id with a space", {"contract_id": "OFT 1"}, "contract_id_must_be_valid"),
    ("contract id too long", {"contract_id": "X" * 49}, "contract_id_must_be_valid"),
    (
        "a float-looking percentage",
        {
            "copper": offtake_pb2.CopperTerms(
                payable_percent="9.65e1",
                minimum_deduction_percent="1.0",
                refining_charge_usd_per_lb="0.08",
                splitting_limit_percent="0.20",
            )
        },
        "decimal_must_be_valid",
    ),
    (
        "no quotational period basis",
        {"quotational_period": offtake_pb2.QuotationalPeriodRule(month_offset=1)},
        "quotational_period_basis_must_be_specified",
    ),
    (
        "the same name on both sides",
        {"seller": offtake_pb2.OfftakeParty(name=BUYER, bank_participant_id=PK)},
        "parties_must_be_different",
    ),
    (
        "one bank for both sides",
        {"seller": offtake_pb2.OfftakeParty(name=SELLER, bank_participant_id=US)},
        "banks_must_be_different",
    ),
    (
        "a provisional share over 100 %",
        {"provisional_payment_percent": "100.5"},
        "term_must_be_in_range",
    ),
    ("a contract in rupees", {"currency": "PKR"}, "term_must_be_known"),
    ("the seller paid in euros", {"seller_payment_currency": "EUR"}, "currency_must_be_known"),
]


@pytest.mark.parametrize(
    ("change", "code"),
    [(change, code) for _, change, code in TERM_REFUSALS],
    ids=[row[0] for row in TERM_REFUSALS],
)
def test_terms_refusals(change: dict[str, Any], code: str) -> None:
    with pytest.raises(LedgerError) as raised:
        agreement_from_message(contract_terms(**change))
    assert raised.value.code == code
    assert grpc_status_for(raised.value) == grpc.StatusCode.INVALID_ARGUMENT


def test_migration_creates_exactly_the_offtake_tables() -> None:
    engine = create_engine("sqlite://")
    try:
        migrations.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "version_table": VERSION_TABLE,
                },
            )
            differences = compare_metadata(context, metadata)
        offtake = [difference for difference in differences if "offtake_" in repr(difference)]
        assert offtake == []
    finally:
        engine.dispose()


# -- an in-process hub ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("offtake-flow") / "pki")


class Refused(Exception):
    """A refusal as the transport would send it: the status and the error's code."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(f"{status.name} {code}: {message}")
        self.status = status
        self.code = code


@dataclass
class Harness:
    hub: Hub
    service: OfftakeService
    pki: DevPki

    def key(self, who: str) -> Any:
        return load_private_key(self.pki.participant(who).signing_private_key_path)

    async def call(self, method: str, request_type: type[Message], message: Message) -> Any:
        who = str(getattr(message, "participant_id"))  # noqa: B009
        role = {OPERATOR: Role.OPERATOR}.get(who, Role.BANK)
        token = bind_caller(Caller(who, role, who))
        try:
            request = request_type(instruction=sign(message, self.key(who)))
            return await getattr(self.service, method)(request, None)
        except LedgerError as error:
            raise Refused(grpc_status_for(error), error.code, error.message) from None
        finally:
            unbind_caller(token)

    async def read(self, method: str, request: Message, who: str = OPERATOR) -> Any:
        token = bind_caller(Caller(who, Role.OPERATOR if who == OPERATOR else Role.BANK, who))
        try:
            return await getattr(self.service, method)(request, None)
        finally:
            unbind_caller(token)

    def journal_size(self) -> int:
        return int(self.hub.ledger.journal_size())

    def net_debit(self, account_id: str) -> int:
        return self.hub.ledger.balance(account_id).net_debit_posted


def run(pki: DevPki, tmp_path: Path, scenario: Callable[[Harness], Awaitable[T]]) -> T:
    """Open a fresh hub, register and fund the two banks, run ``scenario``, close the hub."""

    async def main() -> T:
        operator = pki.participant(OPERATOR)
        hub = await open_hub(
            HubSettings(
                database=str(tmp_path / f"hub-{uuid.uuid4().hex[:8]}.db"),
                origin=ORIGIN,
                log_key_path=pki.log_private_key_path,
                operator_id=OPERATOR,
                operator_common_name=operator.certificate_common_name,
                operator_public_key_path=operator.signing_public_key_path,
            )
        )
        try:
            await register_banks(hub, pki)
            return await scenario(Harness(hub, OfftakeService(hub), pki))
        finally:
            await hub.close()

    return asyncio.run(main())


async def register_banks(hub: Hub, pki: DevPki) -> None:
    commands: list[Any] = [
        NewAccount(id="test-funding:USD", owner=OPERATOR, currency="USD", normal_side=Side.DEBIT)
    ]
    for who in (US, PK):
        participant = pki.participant(who)
        public_key = public_key_bytes(load_public_key(participant.signing_public_key_path))
        commands += [
            RegisterSigningKey(id=f"key:{who}", signer=who, public_key=public_key),
            registration_event(
                {
                    "participant_id": who,
                    "legal_name": participant.legal_name,
                    "role": Role.BANK.value,
                    "country": participant.country,
                    "bic": participant.bic,
                    "lei": participant.lei,
                    "aba_routing_number": participant.aba_routing_number,
                    "iban_bank_code": participant.iban_bank_code,
                    "common_name": who,
                }
            ),
            NewAccount(
                id=f"settlement:{who}:USD", owner=who, currency="USD", normal_side=Side.CREDIT
            ),
            NewTransaction(
                id=f"fund:{who}",
                postings=(
                    Posting("test-funding:USD", Side.DEBIT, FUNDS_MINOR, "USD"),
                    Posting(f"settlement:{who}:USD", Side.CREDIT, FUNDS_MINOR, "USD"),
                ),
            ),
        ]
    results = await hub.sequencer.submit(commands, linked=True)
    assert all(result.error is None for result in results), results


def instruction(message_type: type[Message], who: str, **fields: Any) -> Any:
    return message_type(
        instruction_id=f"{who}:{uuid.uuid4()}",
        participant_id=who,
        instruction_type=str(message_type.DESCRIPTOR.full_name),
        **fields,
    )


def grades(**values: str) -> list[offtake_pb2.AssayGrade]:
    return [
        offtake_pb2.AssayGrade(element=element, grade=grade) for element, grade in values.items()
    ]


def lot_weights(wet_tonnes: str, moisture_percent: str) -> offtake_pb2.LotWeights:
    return offtake_pb2.LotWeights(wet_tonnes=wet_tonnes, moisture_percent=moisture_percent)


# -- the steps of a lot, as its banks send them --------------------------------------------------


@dataclass
class Lot:
    harness: Harness
    contract_id: str
    lot_id: str

    def key(self) -> dict[str, str]:
        return {"contract_id": self.contract_id, "lot_id": self.lot_id}

    async def step(self, name: str) -> Any:
        call = self.harness.call
        if name == "ship":
            return await call(
                "ShipLot",
                offtake_pb2.ShipLotRequest,
                instruction(
                    offtake_pb2.ShipLotInstruction,
                    PK,
                    bill_of_lading_number=f"BL-{self.lot_id}",
                    bill_of_lading_date="2025-02-20",
                    weights=lot_weights("10000.000", "8"),
                    provisional_grades=grades(Cu="25", Au="5", As="0.35"),
                    **self.key(),
                ),
            )
        if name == "provisional_invoice":
            return await call(
                "IssueProvisionalInvoice",
                offtake_pb2.IssueProvisionalInvoiceRequest,
                instruction(
                    offtake_pb2.IssueProvisionalInvoiceInstruction,
                    PK,
                    provisional_prices=[
                        offtake_pb2.MetalPrice(metal=offtake_pb2.METAL_COPPER, price_usd="9000.00"),
                        offtake_pb2.MetalPrice(metal=offtake_pb2.METAL_GOLD, price_usd="2400.00"),
                    ],
                    **self.key(),
                ),
            )
        if name == "arrive":
            return await call(
                "RecordArrival",
                offtake_pb2.RecordArrivalRequest,
                instruction(
                    offtake_pb2.RecordArrivalInstruction,
                    US,
                    arrival_date="2025-03-18",
                    weights=lot_weights("9990.000", "8.1"),
                    **self.key(),
                ),
            )
        if name == "assay":
            return await call(
                "RecordFinalAssays",
                offtake_pb2.RecordFinalAssaysRequest,
                instruction(
                    offtake_pb2.RecordFinalAssaysInstruction,
                    PK,
                    buyer_grades=grades(Cu="24.80", Au="5.10", As="0.30"),
                    seller_grades=grades(Cu="25.10", Au="4.95", As="0.32"),
                    umpire_grades=grades(Cu="24.90"),
                    **self.key(),
                ),
            )
        if name == "price":
            return await call(
                "PriceLot",
                offtake_pb2.PriceLotRequest,
                instruction(offtake_pb2.PriceLotInstruction, US, **self.key()),
            )
        if name == "final_invoice":
            return await call(
                "IssueFinalInvoice",
                offtake_pb2.IssueFinalInvoiceRequest,
                instruction(offtake_pb2.IssueFinalInvoiceInstruction, PK, **self.key()),
            )
        action = {
            "dispute": offtake_pb2.LOT_ACTION_DISPUTE,
            "resolve_dispute": offtake_pb2.LOT_ACTION_RESOLVE_DISPUTE,
            "close": offtake_pb2.LOT_ACTION_CLOSE,
        }[name]
        return await call(
            "ChangeLotState",
            offtake_pb2.ChangeLotStateRequest,
            instruction(offtake_pb2.ChangeLotStateInstruction, US, action=action, **self.key()),
        )

    async def pay(self, invoice: offtake_pb2.OfftakeInvoice) -> offtake_pb2.PayInvoiceResponse:
        refund = invoice.total.amount_minor < 0
        who = PK if refund else US
        buyer = payment_pb2.Party(
            name=BUYER,
            account_number="000987654321",
            aba_routing_number=aba_with_check_digit("02100002"),
            country="US",
        )
        seller = payment_pb2.Party(name=SELLER, iban="PK36SCBL0000001123456702", country="PK")
        message = instruction(
            payment_pb2.PaymentInstruction,
            who,
            uetr=str(uuid.uuid4()),
            end_to_end_id=invoice.invoice_id[:35],
            amount=common_pb2.Money(
                amount_minor=abs(invoice.outstanding.amount_minor), currency="USD"
            ),
            debtor=seller if refund else buyer,
            creditor=buyer if refund else seller,
            creditor_agent_id=US if refund else PK,
            remittance_information=invoice.invoice_id,
        )
        response: offtake_pb2.PayInvoiceResponse = await self.harness.call(
            "PayInvoice", offtake_pb2.PayInvoiceRequest, message
        )
        assert response.payment.status == payment_pb2.PAYMENT_STATUS_ACSC
        return response

    async def state(self) -> LotState:
        contract = await self.harness.read(
            "GetContract", offtake_pb2.GetContractRequest(contract_id=self.contract_id)
        )
        for lot in contract.contract.lots:
            if lot.lot_id == self.lot_id:
                name = offtake_pb2.OfftakeLotState.Name(lot.state)
                return LotState(name.removeprefix("OFFTAKE_LOT_STATE_").lower())
        return LotState.NOMINATED


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


async def signed_contract(harness: Harness) -> str:
    contract_id = f"OFT-{uuid.uuid4().hex[:8]}"
    for bank in (US, PK):
        await harness.call(
            "SignContract",
            offtake_pb2.SignContractRequest,
            instruction(
                offtake_pb2.SignContractInstruction, bank, terms=contract_terms(contract_id)
            ),
        )
    return contract_id


async def publish_april_2025(harness: Harness) -> None:
    fixings = [
        offtake_pb2.PriceFixing(metal=metal, fixing_date=day, price_usd=price)
        for metal, day, price in (
            (offtake_pb2.METAL_COPPER, "2025-04-01", "9100.00"),
            (offtake_pb2.METAL_COPPER, "2025-04-02", "9150.50"),
            (offtake_pb2.METAL_COPPER, "2025-04-03", "9080.00"),
            (offtake_pb2.METAL_COPPER, "2025-04-04", "9120.25"),
            (offtake_pb2.METAL_GOLD, "2025-04-01", "2410.00"),
            (offtake_pb2.METAL_GOLD, "2025-04-02", "2395.50"),
            (offtake_pb2.METAL_GOLD, "2025-04-03", "2420.25"),
        )
    ]
    await harness.call(
        "PublishPriceFixings",
        offtake_pb2.PublishPriceFixingsRequest,
        instruction(offtake_pb2.PublishPriceFixingsInstruction, OPERATOR, fixings=fixings),
    )


async def refused_steps(lot: Lot) -> list[tuple[LotState, str, str]]:
    """Try every step the lot's state does not accept; each must write nothing."""
    state = await lot.state()
    allowed = {event for (at, event) in LOT_TRANSITIONS if at is state}
    outcomes = []
    for name, event in STEP_EVENTS.items():
        if event in allowed:
            continue
        size = lot.harness.journal_size()
        with pytest.raises(Refused) as raised:
            await lot.step(name)
        assert lot.harness.journal_size() == size, (state, name)
        outcomes.append((state, name, f"{raised.value.status.name} {raised.value.code}"))
    return outcomes


async def assert_receivable(harness: Harness, contract_id: str) -> int:
    """receivable = invoiced - collected on the ledger, = the contract's running totals."""
    response = await harness.read(
        "GetContract", offtake_pb2.GetContractRequest(contract_id=contract_id)
    )
    contract = response.contract
    receivable = harness.net_debit(contract.receivable_account_id)
    invoiced = -harness.net_debit(contract.invoiced_account_id)
    collected = harness.net_debit(contract.collected_account_id)
    assert receivable == invoiced - collected
    assert invoiced == contract.receivable.invoiced.amount_minor
    assert collected == contract.receivable.received.amount_minor
    assert receivable == contract.receivable.outstanding.amount_minor
    assert receivable == contract.receivable.ledger_balance.amount_minor
    invoices = [invoice for lot in contract.lots for invoice in lot.invoices]
    assert invoiced == sum(invoice.total.amount_minor for invoice in invoices)
    return receivable


# -- the lot's state machine, exhaustively -------------------------------------------------------


def test_every_step_outside_the_table_is_refused_and_writes_nothing(
    pki: DevPki, tmp_path: Path
) -> None:
    async def scenario(harness: Harness) -> list[tuple[LotState, str, str]]:
        await publish_april_2025(harness)
        contract_id = await signed_contract(harness)
        main = Lot(harness, contract_id, "1")
        disputed = Lot(harness, contract_id, "2")
        outcomes: list[tuple[LotState, str, str]] = []
        for name in ("ship", "provisional_invoice"):
            await main.step(name)
            await disputed.step(name)
            outcomes += await refused_steps(main)
            await assert_receivable(harness, contract_id)
        # Disputed while provisionally invoiced, and back.
        await disputed.step("dispute")
        outcomes += await refused_steps(disputed)
        await disputed.step("resolve_dispute")
        assert await disputed.state() is LotState.PROVISIONALLY_INVOICED
        contract = await harness.read(
            "GetContract", offtake_pb2.GetContractRequest(contract_id=contract_id)
        )
        provisional = contract.contract.lots[0].invoices[0]
        await main.pay(provisional)
        await assert_receivable(harness, contract_id)
        outcomes += await refused_steps(main)
        for name in ("arrive", "assay", "price"):
            await main.step(name)
            outcomes += await refused_steps(main)
        final = (await main.step("final_invoice")).invoice
        assert final.total.amount_minor == 2_363_212_29
        await assert_receivable(harness, contract_id)
        outcomes += await refused_steps(main)
        # Disputed while finally invoiced: no step, and no payment, until resolved.
        await main.step("dispute")
        outcomes += await refused_steps(main)
        size = harness.journal_size()
        with pytest.raises(Refused) as raised:
            await main.pay(final)
        assert (raised.value.status, raised.value.code) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "lot_transition_not_allowed",
        )
        assert harness.journal_size() == size
        await main.step("resolve_dispute")
        await main.pay(final)
        # Lot 1 is paid in full; lot 2 still owes its provisional invoice.
        assert await assert_receivable(harness, contract_id) == provisional.total.amount_minor
        outcomes += await refused_steps(main)
        await main.step("close")
        outcomes += await refused_steps(main)
        return outcomes

    outcomes = run(pki, tmp_path, scenario)
    # Every state a lot reaches was tried, with every step it refuses.
    states = {state for state, _, _ in outcomes}
    assert states == set(LotState) - {LotState.NOMINATED}
    assert {outcome for _, _, outcome in outcomes} == {
        "FAILED_PRECONDITION lot_transition_not_allowed"
    }
    expected = sum(
        1
        for state in states
        for event in STEP_EVENTS.values()
        if (state, event) not in LOT_TRANSITIONS
    ) + sum(  # the disputed state is visited twice (from each invoice state)
        1 for event in STEP_EVENTS.values() if (LotState.DISPUTED, event) not in LOT_TRANSITIONS
    )
    assert len(outcomes) == expected


# -- idempotency -------------------------------------------------------------------------------


def test_retries_answer_the_original_and_conflicts_are_refused(pki: DevPki, tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        contract_id = f"OFT-{uuid.uuid4().hex[:8]}"
        first = instruction(
            offtake_pb2.SignContractInstruction, US, terms=contract_terms(contract_id)
        )
        created = await harness.call("SignContract", offtake_pb2.SignContractRequest, first)
        assert created.result.status == common_pb2.COMMIT_STATUS_CREATED
        size = harness.journal_size()
        again = await harness.call("SignContract", offtake_pb2.SignContractRequest, first)
        assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
        assert again.result.receipt == created.result.receipt
        assert harness.journal_size() == size
        changed = offtake_pb2.SignContractInstruction()
        changed.CopyFrom(first)
        changed.terms.payment_term_days = 30
        with pytest.raises(Refused) as raised:
            await harness.call("SignContract", offtake_pb2.SignContractRequest, changed)
        assert (raised.value.status, raised.value.code) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "exists_with_different_body",
        )
        # Two identical signatures racing: one commit, one ALREADY_EXISTED.
        second = instruction(
            offtake_pb2.SignContractInstruction, PK, terms=contract_terms(contract_id)
        )
        answers = await asyncio.gather(
            harness.call("SignContract", offtake_pb2.SignContractRequest, second),
            harness.call("SignContract", offtake_pb2.SignContractRequest, second),
        )
        assert sorted(answer.result.status for answer in answers) == [
            common_pb2.COMMIT_STATUS_CREATED,
            common_pb2.COMMIT_STATUS_ALREADY_EXISTED,
        ]
        assert answers[0].result.receipt == answers[1].result.receipt
        assert answers[0].contract.state == offtake_pb2.OFFTAKE_CONTRACT_STATE_ACTIVE
        # Three accounts opened by the activating signature, once.
        assert harness.journal_size() == size + 1 + 3

    run(pki, tmp_path, scenario)


# -- the read model is a projection of the log -----------------------------------------------------


def test_the_read_model_rebuilds_from_the_journal(pki: DevPki, tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> dict[str, list[tuple[Any, ...]]]:
        await publish_april_2025(harness)
        contract_id = await signed_contract(harness)
        lot = Lot(harness, contract_id, "1")
        for name in ("ship", "provisional_invoice"):
            await lot.step(name)
        contract = await harness.read(
            "GetContract", offtake_pb2.GetContractRequest(contract_id=contract_id)
        )
        await lot.pay(contract.contract.lots[0].invoices[0])
        for name in ("arrive", "assay", "price"):
            await lot.step(name)
        await lot.pay((await lot.step("final_invoice")).invoice)
        await lot.step("close")
        return await asyncio.to_thread(read_tables, harness.hub)

    live = run(pki, tmp_path, scenario)
    database = sorted(tmp_path.glob("hub-*.db"))[-1]
    rebuilt = rebuild_from_journal(f"sqlite:///{database}", tmp_path / "rebuilt.db")
    assert rebuilt == live
    assert len(live["offtake_invoices"]) == 2
    assert len(live["offtake_invoice_payments"]) == 2


def read_tables(hub: Hub) -> dict[str, list[tuple[Any, ...]]]:
    with hub.ledger.reading() as connection:
        return {
            table.name: [
                tuple(row)
                for row in connection.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in OFFTAKE_TABLES
        }


def rebuild_from_journal(source_url: str, target: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Replay every offtake event of the journal through the projection into empty tables."""
    source = create_engine(source_url)
    engine = create_engine(f"sqlite:///{target}")
    try:
        migrations.upgrade(engine)
        with source.connect() as reading:
            rows = reading.execute(
                select(journal.c.journal_index, journal.c.leaf).order_by(journal.c.journal_index)
            ).all()
        projection = OfftakeProjection()
        with engine.begin() as connection:
            for row in rows:
                leaf = bytes(row.leaf)
                document = json.loads(leaf)
                if document["kind"] != "event":
                    continue
                command = NewEvent(
                    id=document["id"], event_type=document["event_type"], body=document["body"]
                )
                receipt = Receipt(
                    document["id"],
                    int(row.journal_index),
                    leaf_hash(leaf),
                    leaf_time_us(document["committed_at"]),
                )
                projection.project(connection, [(command, receipt)])
        with engine.connect() as connection:
            return {
                table.name: [
                    tuple(found)
                    for found in connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in OFFTAKE_TABLES
            }
    finally:
        source.dispose()
        engine.dispose()
