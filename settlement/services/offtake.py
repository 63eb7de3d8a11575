"""OfftakeService (offtake.proto): contracts, lots, price fixings, invoices and their payments.

Thin: check the caller's role, parse the signed instruction (common checks 3
to 5), the common ``id_taken`` check against the journal (6), decode the
instruction into the flow's orders (the pure INVALID_ARGUMENT rules: ids,
decimal strings, dates, enums, the terms' own checks), call
:class:`settlement.offtake.flow.OfftakeFlows` and encode the views it
returns. Invoices are paid with the payment flow of the PaymentService
(one :class:`~settlement.payments.flow.PaymentFlows` per hub, shared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, TypeVar

from ledger.errors import (
    AccountExistsWithDifferentFields,
    ExistsWithDifferentBody,
    LedgerError,
    TextMustBeValid,
)
from ledger.validation import validate_id, validate_text
from settlement.auth import Caller, Role, current_caller
from settlement.hub import Hub
from settlement.instructions import ParsedInstruction, parse
from settlement.offtake import flow
from settlement.offtake.flow import (
    ActionMustBeSpecified,
    Agreement,
    ContractView,
    ElementMustBeUnique,
    FixingsMustBeInRange,
    Instruction,
    InvoiceView,
    LotView,
    MetalMustBeSpecified,
    OfftakeFlows,
    PriceMustBeUnique,
    QuotationalPeriodBasisMustBeSpecified,
    check_contract_id,
    check_lot_id,
    parse_date,
    parse_decimal,
    terms_document,
    with_fields,
)
from settlement.offtake.terms import (
    ContractTerms,
    CopperTerms,
    Metal,
    Party,
    PenaltyTerms,
    PreciousMetalTerms,
    QuotationalPeriodRule,
)
from settlement.offtake.valuation import LotWeights, PriceFixing, PriceFixingMustBeUnique
from settlement.payments.flow import PaymentFlows, PaymentSettings, Signed
from settlement.services import convert
from settlement.services.convert import Context, commit_result, receipt_message
from settlement.services.payment import money, payment_message, payment_order
from settlement.v1 import common_pb2, offtake_pb2, offtake_pb2_grpc, payment_pb2

SERVICE_NAME: Final = offtake_pb2.DESCRIPTOR.services_by_name["OfftakeService"].full_name

T = TypeVar("T")

METAL_TO_PROTO: Final[Mapping[str, offtake_pb2.Metal.ValueType]] = {
    "Cu": offtake_pb2.METAL_COPPER,
    "Au": offtake_pb2.METAL_GOLD,
    "Ag": offtake_pb2.METAL_SILVER,
}
METAL_FROM_PROTO: Final[Mapping[int, Metal]] = {
    offtake_pb2.METAL_COPPER: "Cu",
    offtake_pb2.METAL_GOLD: "Au",
    offtake_pb2.METAL_SILVER: "Ag",
}
BASIS_TO_PROTO: Final[Mapping[str, offtake_pb2.QuotationalPeriodBasis.ValueType]] = {
    "arrival": offtake_pb2.QUOTATIONAL_PERIOD_BASIS_ARRIVAL,
    "bill_of_lading": offtake_pb2.QUOTATIONAL_PERIOD_BASIS_BILL_OF_LADING,
}
BASIS_FROM_PROTO: Final[Mapping[int, str]] = {
    value: basis for basis, value in BASIS_TO_PROTO.items()
}
CONTRACT_STATE_TO_PROTO: Final[Mapping[str, offtake_pb2.OfftakeContractState.ValueType]] = {
    "draft": offtake_pb2.OFFTAKE_CONTRACT_STATE_DRAFT,
    "active": offtake_pb2.OFFTAKE_CONTRACT_STATE_ACTIVE,
    "suspended": offtake_pb2.OFFTAKE_CONTRACT_STATE_SUSPENDED,
    "completed": offtake_pb2.OFFTAKE_CONTRACT_STATE_COMPLETED,
    "terminated": offtake_pb2.OFFTAKE_CONTRACT_STATE_TERMINATED,
}
LOT_STATE_TO_PROTO: Final[Mapping[str, offtake_pb2.OfftakeLotState.ValueType]] = {
    "shipped": offtake_pb2.OFFTAKE_LOT_STATE_SHIPPED,
    "provisionally_invoiced": offtake_pb2.OFFTAKE_LOT_STATE_PROVISIONALLY_INVOICED,
    "provisionally_paid": offtake_pb2.OFFTAKE_LOT_STATE_PROVISIONALLY_PAID,
    "arrived": offtake_pb2.OFFTAKE_LOT_STATE_ARRIVED,
    "assayed": offtake_pb2.OFFTAKE_LOT_STATE_ASSAYED,
    "priced": offtake_pb2.OFFTAKE_LOT_STATE_PRICED,
    "finally_invoiced": offtake_pb2.OFFTAKE_LOT_STATE_FINALLY_INVOICED,
    "settled": offtake_pb2.OFFTAKE_LOT_STATE_SETTLED,
    "closed": offtake_pb2.OFFTAKE_LOT_STATE_CLOSED,
    "disputed": offtake_pb2.OFFTAKE_LOT_STATE_DISPUTED,
}
INVOICE_KIND_TO_PROTO: Final[Mapping[str, offtake_pb2.OfftakeInvoiceKind.ValueType]] = {
    "provisional": offtake_pb2.OFFTAKE_INVOICE_KIND_PROVISIONAL,
    "final": offtake_pb2.OFFTAKE_INVOICE_KIND_FINAL,
}
CONTRACT_ACTION_FROM_PROTO: Final[Mapping[int, flow.ContractAction]] = {
    offtake_pb2.CONTRACT_ACTION_SUSPEND: "suspend",
    offtake_pb2.CONTRACT_ACTION_RESUME: "resume",
    offtake_pb2.CONTRACT_ACTION_COMPLETE: "complete",
    offtake_pb2.CONTRACT_ACTION_TERMINATE: "terminate",
}
LOT_ACTION_FROM_PROTO: Final[Mapping[int, flow.LotAction]] = {
    offtake_pb2.LOT_ACTION_DISPUTE: "dispute",
    offtake_pb2.LOT_ACTION_RESOLVE_DISPUTE: "resolve_dispute",
    offtake_pb2.LOT_ACTION_CLOSE: "close",
}
USD: Final = "USD"


class OfftakeService(offtake_pb2_grpc.OfftakeServiceServicer):
    """Thin: decode, check the role, parse the instruction, call the flow, encode."""

    def __init__(self, hub: Hub, payments: PaymentFlows | None = None) -> None:
        self.hub = hub
        self.flows = OfftakeFlows(hub, payments or PaymentFlows(hub, PaymentSettings()))

    # -- writes -----------------------------------------------------------------------------

    async def SignContract(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.SignContractRequest, context: Context
    ) -> offtake_pb2.SignContractResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.SignContractInstruction
        )
        agreement = agreement_from_message(parsed.message.terms)
        receipt, view = await self._explained(
            parsed, caller, self.flows.sign_contract(caller, agreement, instruction)
        )
        return offtake_pb2.SignContractResponse(
            result=commit_result(receipt), contract=contract_message(view, caller)
        )

    async def ChangeContractState(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.ChangeContractStateRequest, context: Context
    ) -> offtake_pb2.ChangeContractStateResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.ChangeContractStateInstruction
        )
        message = parsed.message
        contract_id = check_contract_id(message.contract_id)
        action = CONTRACT_ACTION_FROM_PROTO.get(message.action)
        if action is None:
            raise with_fields(
                ActionMustBeSpecified("action must be SUSPEND, RESUME, COMPLETE or TERMINATE"),
                ["action"],
            )
        _check_reason(message.reason)
        receipt, view = await self._explained(
            parsed,
            caller,
            self.flows.change_contract_state(
                caller, contract_id, action, message.reason, instruction
            ),
        )
        return offtake_pb2.ChangeContractStateResponse(
            result=commit_result(receipt), contract=contract_message(view, caller)
        )

    async def PublishPriceFixings(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.PublishPriceFixingsRequest, context: Context
    ) -> offtake_pb2.PublishPriceFixingsResponse:
        caller = current_caller()
        caller.require(Role.OPERATOR)
        parsed = parse(request.instruction, offtake_pb2.PublishPriceFixingsInstruction, caller)
        instruction = await self._instruction(parsed, caller)
        fixings = price_fixings(parsed.message.fixings)
        receipt = await self._explained(
            parsed, caller, self.flows.publish_price_fixings(caller, fixings, instruction)
        )
        return offtake_pb2.PublishPriceFixingsResponse(result=commit_result(receipt))

    async def ShipLot(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.ShipLotRequest, context: Context
    ) -> offtake_pb2.ShipLotResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.ShipLotInstruction
        )
        message = parsed.message
        contract_id, lot_id = _lot_key(message)
        if not message.bill_of_lading_number.strip():
            raise with_fields(
                TextMustBeValid("bill_of_lading_number must be 1..140 characters, not blank"),
                ["bill_of_lading_number"],
            )
        _checked_text(message.bill_of_lading_number, "bill_of_lading_number")
        shipment = flow.Shipment(
            contract_id=contract_id,
            lot_id=lot_id,
            bill_of_lading_number=message.bill_of_lading_number,
            bill_of_lading_date=parse_date(message.bill_of_lading_date, "bill_of_lading_date"),
            weights=lot_weights(message.weights, "weights"),
            grades=assay_grades(message.provisional_grades, "provisional_grades"),
        )
        receipt, view = await self._explained(
            parsed, caller, self.flows.ship_lot(caller, shipment, instruction)
        )
        return offtake_pb2.ShipLotResponse(result=commit_result(receipt), lot=lot_message(view))

    async def IssueProvisionalInvoice(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.IssueProvisionalInvoiceRequest, context: Context
    ) -> offtake_pb2.IssueInvoiceResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.IssueProvisionalInvoiceInstruction
        )
        message = parsed.message
        contract_id, lot_id = _lot_key(message)
        prices = metal_prices(message.provisional_prices)
        receipt, view = await self._explained(
            parsed,
            caller,
            self.flows.issue_provisional_invoice(caller, contract_id, lot_id, prices, instruction),
        )
        return offtake_pb2.IssueInvoiceResponse(
            result=commit_result(receipt), invoice=invoice_message(view)
        )

    async def PayInvoice(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.PayInvoiceRequest, context: Context
    ) -> offtake_pb2.PayInvoiceResponse:
        caller = current_caller()
        caller.require(Role.BANK)
        parsed = parse(request.instruction, payment_pb2.PaymentInstruction, caller)
        prior = await convert.check_id_not_taken(self.hub, parsed, caller)
        signed = Signed(
            instruction_id=parsed.instruction_id,
            instruction=parsed.signed,
            prior_payload=None if prior is None else prior.payload,
        )
        receipt, payment, view = await self._explained(
            parsed,
            caller,
            self.flows.pay_invoice(caller, payment_order(parsed.message), signed),
        )
        return offtake_pb2.PayInvoiceResponse(
            result=commit_result(receipt),
            payment=payment_message(payment),
            invoice=invoice_message(view),
        )

    async def RecordArrival(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.RecordArrivalRequest, context: Context
    ) -> offtake_pb2.RecordArrivalResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.RecordArrivalInstruction
        )
        message = parsed.message
        contract_id, lot_id = _lot_key(message)
        arrival = flow.Arrival(
            contract_id=contract_id,
            lot_id=lot_id,
            arrival_date=parse_date(message.arrival_date, "arrival_date"),
            weights=lot_weights(message.weights, "weights"),
        )
        receipt, view = await self._explained(
            parsed, caller, self.flows.record_arrival(caller, arrival, instruction)
        )
        return offtake_pb2.RecordArrivalResponse(
            result=commit_result(receipt), lot=lot_message(view)
        )

    async def RecordFinalAssays(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.RecordFinalAssaysRequest, context: Context
    ) -> offtake_pb2.RecordFinalAssaysResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.RecordFinalAssaysInstruction
        )
        message = parsed.message
        contract_id, lot_id = _lot_key(message)
        assays = flow.FinalAssays(
            contract_id=contract_id,
            lot_id=lot_id,
            buyer_grades=assay_grades(message.buyer_grades, "buyer_grades"),
            seller_grades=assay_grades(message.seller_grades, "seller_grades"),
            umpire_grades=assay_grades(message.umpire_grades, "umpire_grades"),
        )
        receipt, view = await self._explained(
            parsed, caller, self.flows.record_final_assays(caller, assays, instruction)
        )
        return offtake_pb2.RecordFinalAssaysResponse(
            result=commit_result(receipt), lot=lot_message(view)
        )

    async def PriceLot(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.PriceLotRequest, context: Context
    ) -> offtake_pb2.PriceLotResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.PriceLotInstruction
        )
        contract_id, lot_id = _lot_key(parsed.message)
        receipt, view = await self._explained(
            parsed, caller, self.flows.price_lot(caller, contract_id, lot_id, instruction)
        )
        return offtake_pb2.PriceLotResponse(result=commit_result(receipt), lot=lot_message(view))

    async def IssueFinalInvoice(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.IssueFinalInvoiceRequest, context: Context
    ) -> offtake_pb2.IssueInvoiceResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.IssueFinalInvoiceInstruction
        )
        contract_id, lot_id = _lot_key(parsed.message)
        receipt, view = await self._explained(
            parsed,
            caller,
            self.flows.issue_final_invoice(caller, contract_id, lot_id, instruction),
        )
        return offtake_pb2.IssueInvoiceResponse(
            result=commit_result(receipt), invoice=invoice_message(view)
        )

    async def ChangeLotState(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.ChangeLotStateRequest, context: Context
    ) -> offtake_pb2.ChangeLotStateResponse:
        caller, parsed, instruction = await self._bank_instruction(
            request.instruction, offtake_pb2.ChangeLotStateInstruction
        )
        message = parsed.message
        contract_id, lot_id = _lot_key(message)
        action = LOT_ACTION_FROM_PROTO.get(message.action)
        if action is None:
            raise with_fields(
                ActionMustBeSpecified("action must be DISPUTE, RESOLVE_DISPUTE or CLOSE"),
                ["action"],
            )
        _check_reason(message.reason)
        receipt, view = await self._explained(
            parsed,
            caller,
            self.flows.change_lot_state(
                caller, contract_id, lot_id, action, message.reason, instruction
            ),
        )
        return offtake_pb2.ChangeLotStateResponse(
            result=commit_result(receipt), lot=lot_message(view)
        )

    # -- reads ------------------------------------------------------------------------------

    async def GetContract(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.GetContractRequest, context: Context
    ) -> offtake_pb2.GetContractResponse:
        caller = current_caller()
        view = await self.flows.contract_view(caller, request.contract_id)
        return offtake_pb2.GetContractResponse(contract=contract_message(view, caller))

    async def GetInvoice(  # noqa: N802 - the RPC's name
        self, request: offtake_pb2.GetInvoiceRequest, context: Context
    ) -> offtake_pb2.GetInvoiceResponse:
        caller = current_caller()
        try:
            view = await self.flows.invoice_view(caller, request.invoice_id)
        except flow.InvoiceMustExist as error:
            raise with_fields(error, ["invoice_id"]) from None
        return offtake_pb2.GetInvoiceResponse(invoice=invoice_message(view))

    # -- steps ------------------------------------------------------------------------------

    async def _bank_instruction(
        self, signed: common_pb2.SignedInstruction, message_type: type[Any]
    ) -> tuple[Caller, ParsedInstruction[Any], Instruction]:
        caller = current_caller()
        caller.require(Role.BANK)
        parsed = parse(signed, message_type, caller)
        return caller, parsed, await self._instruction(parsed, caller)

    async def _instruction(self, parsed: ParsedInstruction[Any], caller: Caller) -> Instruction:
        """Common check 6 (``id_taken``), and the id itself (it names the event)."""
        prior = await convert.check_id_not_taken(self.hub, parsed, caller)
        validate_id(parsed.instruction_id, "instruction_id")
        return Instruction(
            instruction_id=parsed.instruction_id,
            signed=parsed.signed,
            prior_payload=None if prior is None else prior.payload,
        )

    async def _explained(
        self, parsed: ParsedInstruction[Any], caller: Caller, call: Awaitable[T]
    ) -> T:
        """Await a flow; restate an idempotency conflict in the instruction's field names."""
        try:
            return await call
        except (ExistsWithDifferentBody, AccountExistsWithDifferentFields) as error:
            raise await asyncio.to_thread(
                convert.explain_conflict,
                self.hub.ledger,
                error,
                parsed.instruction_id,
                parsed.signed.payload,
                caller,
            ) from None


# -- messages -> orders (the pure INVALID_ARGUMENT rules) ------------------------------------


def _lot_key(message: Any) -> tuple[str, str]:
    return check_contract_id(message.contract_id), check_lot_id(message.lot_id)


def _checked_text(value: str, name: str) -> None:
    try:
        validate_text(value, name, flow.REASON_LENGTH_MAX)
    except TextMustBeValid as error:
        raise with_fields(error, [name]) from None


def _check_reason(reason: str) -> None:
    _checked_text(reason, "reason")


def lot_weights(message: offtake_pb2.LotWeights, name: str) -> LotWeights:
    wet_tonnes = parse_decimal(message.wet_tonnes, f"{name}.wet_tonnes")
    moisture_percent = parse_decimal(message.moisture_percent, f"{name}.moisture_percent")
    try:
        return LotWeights(wet_tonnes, moisture_percent)
    except LedgerError as error:
        raise with_fields(error, [name]) from None


def assay_grades(grades: Iterable[offtake_pb2.AssayGrade], name: str) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for position, grade in enumerate(grades):
        if grade.element in found:
            raise with_fields(
                ElementMustBeUnique(f"{name} names {grade.element!r:.20} twice"),
                [f"{name}[{position}]"],
            )
        found[grade.element] = parse_decimal(grade.grade, f"{name}[{position}].grade")
    return found


def metal_prices(prices: Iterable[offtake_pb2.MetalPrice]) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for position, price in enumerate(prices):
        name = f"provisional_prices[{position}]"
        metal = METAL_FROM_PROTO.get(price.metal)
        if metal is None:
            raise with_fields(MetalMustBeSpecified(f"{name}.metal must be specified"), [name])
        if metal in found:
            raise with_fields(PriceMustBeUnique(f"{name}: a second price for {metal}"), [name])
        found[metal] = parse_decimal(price.price_usd, f"{name}.price_usd")
    return found


def price_fixings(fixings: Iterable[offtake_pb2.PriceFixing]) -> list[PriceFixing]:
    given = list(fixings)
    if not 1 <= len(given) <= flow.PRICE_FIXINGS_PER_INSTRUCTION_MAX:
        raise with_fields(
            FixingsMustBeInRange(
                f"fixings must hold 1..{flow.PRICE_FIXINGS_PER_INSTRUCTION_MAX} prices, "
                f"got {len(given)}"
            ),
            ["fixings"],
        )
    checked: list[PriceFixing] = []
    seen: set[tuple[str, str]] = set()
    for position, fixing in enumerate(given):
        name = f"fixings[{position}]"
        metal = METAL_FROM_PROTO.get(fixing.metal)
        if metal is None:
            raise with_fields(MetalMustBeSpecified(f"{name}.metal must be specified"), [name])
        fixing_date = parse_date(fixing.fixing_date, f"{name}.fixing_date")
        price = parse_decimal(fixing.price_usd, f"{name}.price_usd")
        try:
            checked.append(PriceFixing(metal, fixing_date, price))
        except LedgerError as error:
            raise with_fields(error, [name]) from None
        key = (metal, fixing.fixing_date)
        if key in seen:
            raise with_fields(
                PriceFixingMustBeUnique(f"{name}: {metal} on {fixing.fixing_date} twice"), [name]
            )
        seen.add(key)
    return checked


def agreement_from_message(message: offtake_pb2.ContractTerms) -> Agreement:
    """The terms as the domain checks them: ids and decimals first, then the terms' own rules."""
    contract_id = check_contract_id(message.contract_id, "terms.contract_id")

    def number(text: str, name: str) -> Decimal:
        return parse_decimal(text, f"terms.{name}")

    copper_numbers = (
        None
        if not message.HasField("copper")
        else tuple(
            number(getattr(message.copper, name), f"copper.{name}")
            for name in (
                "payable_percent",
                "minimum_deduction_percent",
                "refining_charge_usd_per_lb",
                "splitting_limit_percent",
            )
        )
    )
    precious_numbers: dict[str, tuple[Decimal, ...] | None] = {}
    for metal_name in ("gold", "silver"):
        precious = getattr(message, metal_name)
        precious_numbers[metal_name] = (
            None
            if not message.HasField(metal_name)
            else tuple(
                number(getattr(precious, name), f"{metal_name}.{name}")
                for name in (
                    "payable_percent",
                    "minimum_deduction_grams_per_dmt",
                    "refining_charge_usd_per_ozt",
                    "splitting_limit_grams_per_dmt",
                )
            )
        )
    treatment = number(message.treatment_charge_usd_per_dmt, "treatment_charge_usd_per_dmt")
    penalty_numbers = [
        (
            penalty.element,
            number(penalty.threshold_percent, f"penalties[{position}].threshold_percent"),
            number(
                penalty.rate_usd_per_dmt_per_step,
                f"penalties[{position}].rate_usd_per_dmt_per_step",
            ),
            number(
                penalty.splitting_limit_percent, f"penalties[{position}].splitting_limit_percent"
            ),
            number(penalty.step_percent or "0.1", f"penalties[{position}].step_percent"),
        )
        for position, penalty in enumerate(message.penalties)
    ]
    provisional_percent = number(message.provisional_payment_percent, "provisional_payment_percent")
    basis = BASIS_FROM_PROTO.get(message.quotational_period.basis)
    if basis is None:
        raise with_fields(
            QuotationalPeriodBasisMustBeSpecified(
                "terms.quotational_period.basis must be ARRIVAL or BILL_OF_LADING"
            ),
            ["terms"],
        )
    try:
        terms = ContractTerms(
            contract_reference=contract_id,
            buyer=Party(message.buyer.name, message.buyer.bank_participant_id),
            seller=Party(message.seller.name, message.seller.bank_participant_id),
            copper=None if copper_numbers is None else CopperTerms(*copper_numbers),
            gold=_precious("Au", precious_numbers["gold"]),
            silver=_precious("Ag", precious_numbers["silver"]),
            treatment_charge_usd_per_dmt=treatment,
            payment_term_days=message.payment_term_days,
            quotational_period=QuotationalPeriodRule(
                basis,  # type: ignore[arg-type]  # one of BASIS_FROM_PROTO's values
                message.quotational_period.month_offset,
            ),
            penalties=tuple(PenaltyTerms(*numbers) for numbers in penalty_numbers),
            provisional_payment_percent=provisional_percent,
            currency=message.currency,
        )
        return Agreement(terms, message.seller_payment_currency)
    except LedgerError as error:
        if not getattr(error, "fields", None):
            with_fields(error, ["terms"])
        raise


def _precious(metal: str, numbers: tuple[Decimal, ...] | None) -> PreciousMetalTerms | None:
    if numbers is None:
        return None
    return PreciousMetalTerms(metal, *numbers)  # type: ignore[arg-type]  # "Au" or "Ag"


# -- views -> messages --------------------------------------------------------------------------


def usd(amount_minor: int) -> common_pb2.Money:
    return money(amount_minor, USD)


def terms_message(agreement: Agreement) -> offtake_pb2.ContractTerms:
    document = terms_document(agreement)
    message = offtake_pb2.ContractTerms(
        contract_id=document["contract_id"],
        buyer=offtake_pb2.OfftakeParty(**document["buyer"]),
        seller=offtake_pb2.OfftakeParty(**document["seller"]),
        treatment_charge_usd_per_dmt=document["treatment_charge_usd_per_dmt"],
        payment_term_days=document["payment_term_days"],
        quotational_period=offtake_pb2.QuotationalPeriodRule(
            basis=BASIS_TO_PROTO[document["quotational_period"]["basis"]],
            month_offset=document["quotational_period"]["month_offset"],
        ),
        penalties=[offtake_pb2.PenaltyTerms(**penalty) for penalty in document["penalties"]],
        provisional_payment_percent=document["provisional_payment_percent"],
        currency=document["currency"],
        seller_payment_currency=document["seller_payment_currency"],
    )
    if document["copper"] is not None:
        message.copper.CopyFrom(offtake_pb2.CopperTerms(**document["copper"]))
    for name in ("gold", "silver"):
        precious = document[name]
        if precious is not None:
            fields = {key: value for key, value in precious.items() if key != "metal"}
            getattr(message, name).CopyFrom(offtake_pb2.PreciousMetalTerms(**fields))
    return message


def contract_message(view: ContractView, caller: Caller) -> offtake_pb2.OfftakeContract:
    contract = view.contract
    active = contract.buyer_bank_signed and contract.seller_bank_signed
    receivable = offtake_pb2.Receivable(
        invoiced=usd(contract.invoiced_minor),
        received=usd(contract.received_minor),
        outstanding=usd(contract.outstanding_minor),
    )
    # The receivable account is the seller's bank's: the buyer's bank never sees its balance.
    if view.ledger_balance_minor is not None and (
        caller.sees_everything or caller.participant_id == contract.seller_bank_id
    ):
        receivable.ledger_balance.CopyFrom(usd(view.ledger_balance_minor))
    return offtake_pb2.OfftakeContract(
        contract_id=contract.contract_id,
        terms=terms_message(view.agreement),
        state=CONTRACT_STATE_TO_PROTO[contract.state],
        buyer_bank_signed=contract.buyer_bank_signed,
        seller_bank_signed=contract.seller_bank_signed,
        lots=[lot_message(lot) for lot in view.lots],
        receivable=receivable,
        receivable_account_id=flow.receivable_account_id(contract.contract_id) if active else "",
        invoiced_account_id=flow.invoiced_account_id(contract.contract_id) if active else "",
        collected_account_id=flow.collected_account_id(contract.contract_id) if active else "",
    )


def _weights_message(document: Mapping[str, str]) -> offtake_pb2.LotWeights:
    return offtake_pb2.LotWeights(
        wet_tonnes=document["wet_tonnes"], moisture_percent=document["moisture_percent"]
    )


def lot_message(view: LotView) -> offtake_pb2.OfftakeLot:
    lot = view.lot
    details = lot.details
    shipment = details["shipment"]
    arrival = details.get("arrival")
    assays = details.get("assays")
    pricing = details.get("pricing")
    message = offtake_pb2.OfftakeLot(
        contract_id=lot.contract_id,
        lot_id=lot.lot_id,
        state=LOT_STATE_TO_PROTO[lot.state],
        disputed_from=(
            LOT_STATE_TO_PROTO[lot.disputed_from]
            if lot.disputed_from is not None
            else offtake_pb2.OFFTAKE_LOT_STATE_UNSPECIFIED
        ),
        bill_of_lading_number=shipment["bill_of_lading_number"],
        bill_of_lading_date=shipment["bill_of_lading_date"],
        shipped_weights=_weights_message(shipment["weights"]),
        provisional_grades=[offtake_pb2.AssayGrade(**grade) for grade in shipment["grades"]],
        invoices=[invoice_message(invoice) for invoice in view.invoices],
    )
    if arrival is not None:
        message.arrival_date = arrival["arrival_date"]
        message.discharge_weights.CopyFrom(_weights_message(arrival["weights"]))
    if assays is not None:
        message.settled_assays.extend(
            offtake_pb2.SettledAssay(
                element=assay["element"],
                buyer_grade=assay["buyer_grade"],
                seller_grade=assay["seller_grade"],
                umpire_grade=assay["umpire_grade"] or "",
                splitting_limit=assay["splitting_limit"],
                grade=assay["grade"],
                rule=assay["rule"],
            )
            for assay in assays["assays"]
        )
    if pricing is not None:
        period = pricing["quotational_period"]
        message.quotational_period_first_day = period["first_day"]
        message.quotational_period_last_day = period["last_day"]
        message.quotational_period_prices.extend(
            offtake_pb2.QuotationalPeriodPrice(
                metal=METAL_TO_PROTO[price["metal"]],
                fixings=[
                    offtake_pb2.PriceFixing(
                        metal=METAL_TO_PROTO[price["metal"]],
                        fixing_date=fixing["fixing_date"],
                        price_usd=fixing["price_usd"],
                    )
                    for fixing in price["fixings"]
                ],
                sum_usd=price["sum_usd"],
                price_usd=price["price_usd"],
            )
            for price in pricing["prices"]
        )
    return message


def invoice_message(view: InvoiceView) -> offtake_pb2.OfftakeInvoice:
    invoice = view.invoice
    payments = []
    for applied in invoice.payments:
        payment = view.payments.get(applied.uetr)
        message = offtake_pb2.InvoicePayment(
            uetr=applied.uetr,
            amount=usd(applied.amount_minor),
            transaction_id=applied.transaction_id,
            payment_transaction_id=f"payment:{applied.uetr}",
            receipt=receipt_message(applied.journal_index, applied.leaf_hash),
        )
        if payment is not None:
            message.debtor_agent_id = payment.debtor_agent_id
            message.creditor_agent_id = payment.creditor_agent_id
            message.received.CopyFrom(money(payment.receive_minor, payment.target_currency))
        payments.append(message)
    return offtake_pb2.OfftakeInvoice(
        invoice_id=invoice.invoice_id,
        contract_id=invoice.contract_id,
        lot_id=invoice.lot_id,
        kind=INVOICE_KIND_TO_PROTO[invoice.kind],
        lines=[
            offtake_pb2.OfftakeInvoiceLine(
                description=line["description"],
                quantity=line["quantity"],
                unit=line["unit"],
                rate=line["rate"],
                amount=usd(int(line["amount_minor"])),
            )
            for line in invoice.details["lines"]
        ],
        value=usd(invoice.value_minor),
        total=usd(invoice.total_minor),
        paid=usd(invoice.paid_minor),
        outstanding=usd(invoice.outstanding_minor),
        payments=payments,
        transaction_id=invoice.transaction_id or "",
        receipt=receipt_message(invoice.journal_index, invoice.leaf_hash),
        prices=[
            offtake_pb2.MetalPrice(
                metal=METAL_TO_PROTO[price["metal"]], price_usd=price["price_usd"]
            )
            for price in invoice.details["prices"]
        ],
    )


__all__ = [
    "SERVICE_NAME",
    "OfftakeService",
    "agreement_from_message",
    "contract_message",
    "invoice_message",
    "lot_message",
    "terms_message",
]
