"""The offtake flow: contracts signed by both banks, lots, prices, invoices, their payments.

Plain classes and functions over the hub (ledger, registry, sequencer) and
the payment flow; the servicer (:mod:`settlement.services.offtake`) decodes
requests into the orders below and encodes the views it gets back. Nothing
here knows gRPC. What is allowed and what is owed is the pure domain's
(:mod:`.states`, :mod:`.terms`, :mod:`.valuation`); this module checks the
hub's state against it, records the outcome and posts the money.

**Journal.** Every instruction is committed as one ledger event whose id is
the instruction id and whose leaf holds the signed instruction, linked with
the ledger entries it causes (offtake.proto, "What the journal holds"), so
the bundle alone rebuilds each contract; :class:`~.projection.OfftakeProjection`
keeps the read model in the same transaction.

**Receivable** (offtake.proto, "The contract on the ledger"). Three USD
accounts per contract, owned by the seller's bank and opened by the
signature that activates the contract::

    offtake:<contract>:receivable:USD   debit-normal
    offtake:<contract>:invoiced:USD     credit-normal
    offtake:<contract>:collected:USD    debit-normal

An invoice of total T posts debit receivable / credit invoiced (reversed for
a refund, T < 0); a payment applied posts debit collected / credit
receivable (reversed for a refund paid). Hence, at every journal index,
receivable = invoiced - collected = invoices issued - payments received: a
fact of the ledger's balances, and the contract row's running totals say
the same.

**Payments** go through :class:`settlement.payments.flow.PaymentFlows`
unchanged: screening, reservation, PvP settlement. The flow checks the
payment against the invoice before submitting it; once it is settled
(ACSC), the hub applies it in a commit of its own (an unsigned hub entry,
justified by the payment's signed leaf: its remittance information is the
invoice id), with ids derived from the UETR so that applying twice is
impossible and a retry after a crash, or after a held payment was released,
completes the application.

**Order of checks** is the one offtake.proto lists per RPC: the servicer's
pure decoding (INVALID_ARGUMENT), then here the idempotency check, the
contract, the caller's side, the contract's and the lot's state, the
valuation's own checks, and the signature at commit. Writes are serialized
by one lock (the hub has one writer), so every check still holds when its
commit lands.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

from ledger.errors import ExistsWithDifferentBody, IntegrityError, LedgerError, LinkedCommandFailed
from ledger.records import (
    Command,
    CommandResult,
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    Receipt,
    Side,
    SignedInstruction,
)
from settlement.auth import Caller, Role
from settlement.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFoundError,
    PermissionDenied,
    ResourceExhausted,
)
from settlement.hub import Hub
from settlement.offtake import projection
from settlement.offtake.projection import ContractRecord, InvoiceRecord, LotRecord
from settlement.offtake.states import (
    ContractEvent,
    ContractState,
    ContractStatus,
    LotEvent,
    LotState,
    LotStatus,
    apply_contract_event,
    apply_lot_event,
)
from settlement.offtake.terms import (
    CURRENCY,
    GRAMS_PER_DMT_MAX,
    PERCENT_DECIMALS_MAX,
    ContractTerms,
    CopperTerms,
    Party,
    PenaltyTerms,
    PreciousMetalTerms,
    QuotationalPeriodRule,
    TermMustBeKnown,
    check_decimal,
)
from settlement.offtake.valuation import (
    GradeMustBeGiven,
    Invoice,
    InvoiceLine,
    LotWeights,
    PriceFixing,
    ProvisionalPayment,
    QuotationalPeriodPrice,
    SettledAssay,
    average_price,
    final_invoice,
    provisional_invoice,
    quotational_period,
    settle_assays,
)
from settlement.payments import projection as payments_projection
from settlement.payments.flow import PaymentFlows, PaymentOrder, Signed, check_payment_order
from settlement.payments.projection import PaymentRecord

# -- limits and names ----------------------------------------------------------------------------

CONTRACT_ID_LENGTH_MAX: Final = 48
LOT_ID_LENGTH_MAX: Final = 24
"""Short enough that an invoice id ("PI-<contract>-<lot>", 76 characters) and a
reference built on it fit ISO 20022's Max140Text with a UETR beside it."""

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

SELLER_PAYMENT_CURRENCIES: Final = ("USD", "PKR")
"""The seller's bank is paid in US dollars, or in rupees through an FX provider (PvP)."""

PRICE_FIXINGS_PER_INSTRUCTION_MAX: Final = 100
LOTS_PER_CONTRACT_MAX: Final = 1000
"""A contract's lots are read in one view (GetContract); a mine ships far fewer under one."""
REASON_LENGTH_MAX: Final = 140

INVOICE_CODE: Final = "OFFTAKE_INVOICE"
PAYMENT_CODE: Final = "OFFTAKE_PAYMENT"
PAYMENT_ID_PREFIX: Final = "offtake-payment:"
"""Ids of the hub's entries that apply a settled payment: ``offtake-payment:<uetr>``."""

ACSC: Final = "ACSC"

InvoiceKind = Literal["provisional", "final"]
ContractAction = Literal["suspend", "resume", "complete", "terminate"]
LotAction = Literal["dispute", "resolve_dispute", "close"]

CONTRACT_ACTION_EVENTS: Final[Mapping[str, ContractEvent]] = {
    "suspend": ContractEvent.SUSPENDED,
    "resume": ContractEvent.RESUMED,
    "complete": ContractEvent.COMPLETED,
    "terminate": ContractEvent.TERMINATED,
}
LOT_ACTION_EVENTS: Final[Mapping[str, LotEvent]] = {
    "dispute": LotEvent.DISPUTED,
    "resolve_dispute": LotEvent.DISPUTE_RESOLVED,
    "close": LotEvent.CLOSED,
}
PAYMENT_EVENTS: Final[Mapping[str, LotEvent]] = {
    "provisional": LotEvent.PROVISIONAL_PAYMENT_RECEIVED,
    "final": LotEvent.SETTLED,
}
"""The lot event a fully paid invoice of each kind records."""


def receivable_account_id(contract_id: str) -> str:
    return f"offtake:{contract_id}:receivable:{CURRENCY}"


def invoiced_account_id(contract_id: str) -> str:
    return f"offtake:{contract_id}:invoiced:{CURRENCY}"


def collected_account_id(contract_id: str) -> str:
    return f"offtake:{contract_id}:collected:{CURRENCY}"


def invoice_id(kind: InvoiceKind, contract_id: str, lot_id: str) -> str:
    return f"{'PI' if kind == 'provisional' else 'FI'}-{contract_id}-{lot_id}"


# -- errors (offtake.proto names each code at its place in the order of checks) ------------------


class ContractIdMustBeValid(InvalidArgument):
    code = "contract_id_must_be_valid"


class LotIdMustBeValid(InvalidArgument):
    code = "lot_id_must_be_valid"


class DecimalMustBeValid(InvalidArgument):
    """A decimal string in plain notation: a float or an exponent is not an exact figure."""

    code = "decimal_must_be_valid"


class DateMustBeValid(InvalidArgument):
    code = "date_must_be_valid"


class MetalMustBeSpecified(InvalidArgument):
    code = "metal_must_be_specified"


class QuotationalPeriodBasisMustBeSpecified(InvalidArgument):
    code = "quotational_period_basis_must_be_specified"


class ActionMustBeSpecified(InvalidArgument):
    code = "action_must_be_specified"


class CurrencyMustBeKnown(InvalidArgument):
    code = "currency_must_be_known"


class ElementMustBeUnique(InvalidArgument):
    code = "element_must_be_unique"


class PriceMustBeUnique(InvalidArgument):
    code = "price_must_be_unique"


class FixingsMustBeInRange(InvalidArgument):
    code = "fixings_must_be_in_range"


class ArrivalDateMustNotPrecedeShipment(InvalidArgument):
    code = "arrival_date_must_not_precede_shipment"


class BankMustActForItsSide(PermissionDenied):
    """Each bank acts for its own party: the buyer's bank pays, the seller's bank invoices."""

    code = "bank_must_act_for_its_side"


class ParticipantMustExist(NotFoundError):
    code = "participant_must_exist"


class ContractMustExist(NotFoundError):
    code = "contract_must_exist"


class LotMustExist(NotFoundError):
    code = "lot_must_exist"


class InvoiceMustExist(NotFoundError):
    code = "invoice_must_exist"


class PriceFixingExists(AlreadyExists):
    """A published price is never changed: lots may already be priced with it."""

    code = "price_fixing_exists"


class ContractTermsMustMatch(FailedPrecondition):
    """Both banks sign the same terms, or the contract never becomes active."""

    code = "contract_terms_must_match"


class ContractMustBeActive(FailedPrecondition):
    code = "contract_must_be_active"


class LotsMustBeClosed(FailedPrecondition):
    code = "lots_must_be_closed"


class ReceivableMustBeZero(FailedPrecondition):
    code = "receivable_must_be_zero"


class FixingDateMustNotBeFuture(FailedPrecondition):
    code = "fixing_date_must_not_be_future"


class QuotationalPeriodMustBeOver(FailedPrecondition):
    """Prices are averaged over a whole period: an average of part of it is not the price."""

    code = "quotational_period_must_be_over"


class InvoiceMustBeOutstanding(FailedPrecondition):
    code = "invoice_must_be_outstanding"


class LotsMustNotExceedLimit(ResourceExhausted):
    code = "lots_must_not_exceed_limit"


class PaymentMustMatchInvoice(FailedPrecondition):
    code = "payment_must_match_invoice"


class PaymentMustNotExceedOutstanding(FailedPrecondition):
    code = "payment_must_not_exceed_outstanding"


def with_fields(error: LedgerError, fields: Sequence[str]) -> LedgerError:
    """Attach the instruction fields involved (sent as ``Error.fields``)."""
    setattr(error, "fields", list(fields))  # noqa: B010 - an optional attribute of any error
    return error


# -- pure checks and codecs shared with the servicer -------------------------------------------

_DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def check_contract_id(value: str, name: str = "contract_id") -> str:
    if not 1 <= len(value) <= CONTRACT_ID_LENGTH_MAX or not _IDENTIFIER.fullmatch(value):
        raise with_fields(
            ContractIdMustBeValid(
                f"{name} must be 1..{CONTRACT_ID_LENGTH_MAX} characters of [A-Za-z0-9._-] "
                f"starting with a letter or digit, got {value!r:.80}"
            ),
            [name],
        )
    return value


def check_lot_id(value: str, name: str = "lot_id") -> str:
    if not 1 <= len(value) <= LOT_ID_LENGTH_MAX or not _IDENTIFIER.fullmatch(value):
        raise with_fields(
            LotIdMustBeValid(
                f"{name} must be 1..{LOT_ID_LENGTH_MAX} characters of [A-Za-z0-9._-] "
                f"starting with a letter or digit, got {value!r:.80}"
            ),
            [name],
        )
    return value


def parse_decimal(text: str, name: str) -> Decimal:
    """A decimal string in plain notation ("9112.69", "-0.1"), exactly."""
    if not isinstance(text, str) or len(text) > 40 or not _DECIMAL_TEXT.fullmatch(text):
        raise with_fields(
            DecimalMustBeValid(
                f"{name} must be a decimal string in plain notation such as '9112.69', "
                f"got {text!r:.60}"
            ),
            [name],
        )
    return Decimal(text)


def parse_date(text: str, name: str) -> date:
    if not _DATE_TEXT.fullmatch(text):
        raise with_fields(DateMustBeValid(f"{name} must be YYYY-MM-DD, got {text!r:.40}"), [name])
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise with_fields(
            DateMustBeValid(f"{name} must be a calendar date, got {text!r}"), [name]
        ) from None


def decimal_text(value: Decimal) -> str:
    """Plain notation, as given (no exponent): the form bodies and messages carry."""
    return format(value, "f")


@dataclass(frozen=True, slots=True)
class Agreement:
    """What both banks sign: the commercial terms and how the seller's bank is paid."""

    terms: ContractTerms
    seller_payment_currency: str

    def __post_init__(self) -> None:
        if self.seller_payment_currency not in SELLER_PAYMENT_CURRENCIES:
            raise with_fields(
                CurrencyMustBeKnown(
                    "seller_payment_currency must be one of "
                    f"{', '.join(SELLER_PAYMENT_CURRENCIES)}, got {self.seller_payment_currency!r}"
                ),
                ["terms"],
            )

    @property
    def contract_id(self) -> str:
        return self.terms.contract_reference


def terms_document(agreement: Agreement) -> dict[str, Any]:
    """The agreement as JSON (decimal strings): what the events log and the row keeps."""
    terms = agreement.terms

    def party(value: Party) -> dict[str, Any]:
        return {"name": value.name, "bank_participant_id": value.bank_participant_id}

    def precious(value: PreciousMetalTerms | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {
            "metal": value.metal,
            "payable_percent": decimal_text(value.payable_percent),
            "minimum_deduction_grams_per_dmt": decimal_text(value.minimum_deduction_grams_per_dmt),
            "refining_charge_usd_per_ozt": decimal_text(value.refining_charge_usd_per_ozt),
            "splitting_limit_grams_per_dmt": decimal_text(value.splitting_limit_grams_per_dmt),
        }

    copper = terms.copper
    return {
        "contract_id": terms.contract_reference,
        "buyer": party(terms.buyer),
        "seller": party(terms.seller),
        "copper": None
        if copper is None
        else {
            "payable_percent": decimal_text(copper.payable_percent),
            "minimum_deduction_percent": decimal_text(copper.minimum_deduction_percent),
            "refining_charge_usd_per_lb": decimal_text(copper.refining_charge_usd_per_lb),
            "splitting_limit_percent": decimal_text(copper.splitting_limit_percent),
        },
        "gold": precious(terms.gold),
        "silver": precious(terms.silver),
        "treatment_charge_usd_per_dmt": decimal_text(terms.treatment_charge_usd_per_dmt),
        "payment_term_days": terms.payment_term_days,
        "quotational_period": {
            "basis": terms.quotational_period.basis,
            "month_offset": terms.quotational_period.month_offset,
        },
        "penalties": [
            {
                "element": penalty.element,
                "threshold_percent": decimal_text(penalty.threshold_percent),
                "rate_usd_per_dmt_per_step": decimal_text(penalty.rate_usd_per_dmt_per_step),
                "splitting_limit_percent": decimal_text(penalty.splitting_limit_percent),
                "step_percent": decimal_text(penalty.step_percent),
            }
            for penalty in terms.penalties
        ],
        "provisional_payment_percent": decimal_text(terms.provisional_payment_percent),
        "currency": terms.currency,
        "seller_payment_currency": agreement.seller_payment_currency,
    }


def agreement_from_document(document: Mapping[str, Any]) -> Agreement:
    """The inverse of :func:`terms_document` (for the read model and for auditors)."""

    def precious(value: Mapping[str, Any] | None) -> PreciousMetalTerms | None:
        if value is None:
            return None
        return PreciousMetalTerms(
            metal=value["metal"],
            payable_percent=Decimal(value["payable_percent"]),
            minimum_deduction_grams_per_dmt=Decimal(value["minimum_deduction_grams_per_dmt"]),
            refining_charge_usd_per_ozt=Decimal(value["refining_charge_usd_per_ozt"]),
            splitting_limit_grams_per_dmt=Decimal(value["splitting_limit_grams_per_dmt"]),
        )

    copper = document["copper"]
    terms = ContractTerms(
        contract_reference=document["contract_id"],
        buyer=Party(**document["buyer"]),
        seller=Party(**document["seller"]),
        copper=None
        if copper is None
        else CopperTerms(
            payable_percent=Decimal(copper["payable_percent"]),
            minimum_deduction_percent=Decimal(copper["minimum_deduction_percent"]),
            refining_charge_usd_per_lb=Decimal(copper["refining_charge_usd_per_lb"]),
            splitting_limit_percent=Decimal(copper["splitting_limit_percent"]),
        ),
        gold=precious(document["gold"]),
        silver=precious(document["silver"]),
        treatment_charge_usd_per_dmt=Decimal(document["treatment_charge_usd_per_dmt"]),
        payment_term_days=int(document["payment_term_days"]),
        quotational_period=QuotationalPeriodRule(
            basis=document["quotational_period"]["basis"],
            month_offset=int(document["quotational_period"]["month_offset"]),
        ),
        penalties=tuple(
            PenaltyTerms(
                element=penalty["element"],
                threshold_percent=Decimal(penalty["threshold_percent"]),
                rate_usd_per_dmt_per_step=Decimal(penalty["rate_usd_per_dmt_per_step"]),
                splitting_limit_percent=Decimal(penalty["splitting_limit_percent"]),
                step_percent=Decimal(penalty["step_percent"]),
            )
            for penalty in document["penalties"]
        ),
        provisional_payment_percent=Decimal(document["provisional_payment_percent"]),
        currency=document["currency"],
    )
    return Agreement(terms, document["seller_payment_currency"])


def weights_document(weights: LotWeights) -> dict[str, str]:
    return {
        "wet_tonnes": decimal_text(weights.wet_tonnes),
        "moisture_percent": decimal_text(weights.moisture_percent),
    }


def weights_from_document(document: Mapping[str, str]) -> LotWeights:
    return LotWeights(Decimal(document["wet_tonnes"]), Decimal(document["moisture_percent"]))


def grades_document(grades: Mapping[str, Decimal]) -> list[dict[str, str]]:
    return [{"element": element, "grade": decimal_text(grade)} for element, grade in grades.items()]


def grades_from_document(document: Iterable[Mapping[str, str]]) -> dict[str, Decimal]:
    return {item["element"]: Decimal(item["grade"]) for item in document}


def invoice_document(invoice_number: str, invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice_id": invoice_number,
        "kind": invoice.kind,
        "lines": [
            {
                "description": line.description,
                "quantity": decimal_text(line.quantity),
                "unit": line.unit,
                "rate": decimal_text(line.rate),
                "amount_minor": str(line.amount_minor),
            }
            for line in invoice.lines
        ],
        "value_minor": str(invoice.value_minor),
        "total_minor": str(invoice.total_minor),
    }


def invoice_lines_from_document(lines: Iterable[Mapping[str, str]]) -> tuple[InvoiceLine, ...]:
    """Invoice lines as logged; each one multiplies out, or ``IntegrityError`` (read-back check)."""
    return tuple(
        InvoiceLine(
            line["description"],
            Decimal(line["quantity"]),
            line["unit"],  # type: ignore[arg-type]  # checked by InvoiceLine itself
            Decimal(line["rate"]),
            int(line["amount_minor"]),
        )
        for line in lines
    )


def settled_assay_document(assay: SettledAssay) -> dict[str, Any]:
    return {
        "element": assay.element,
        "buyer_grade": decimal_text(assay.buyer_grade),
        "seller_grade": decimal_text(assay.seller_grade),
        "umpire_grade": None if assay.umpire_grade is None else decimal_text(assay.umpire_grade),
        "splitting_limit": decimal_text(assay.splitting_limit),
        "grade": decimal_text(assay.grade),
        "rule": assay.rule,
    }


def price_document(price: QuotationalPeriodPrice) -> dict[str, Any]:
    return {
        "metal": price.metal,
        "fixings": [
            {
                "fixing_date": fixing.fixing_date.isoformat(),
                "price_usd": decimal_text(fixing.price_usd),
            }
            for fixing in price.fixings
        ],
        "sum_usd": decimal_text(price.sum_usd),
        "price_usd": decimal_text(price.price_usd),
    }


# -- orders (what a bank asks for, decoded by the servicer) --------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    """The instruction behind an order: its id, the bytes as signed, an earlier use of the id."""

    instruction_id: str
    signed: SignedInstruction
    prior_payload: bytes | None = None
    """The caller's own committed instruction with this id (the common checks found it)."""


@dataclass(frozen=True, slots=True)
class Shipment:
    contract_id: str
    lot_id: str
    bill_of_lading_number: str
    bill_of_lading_date: date
    weights: LotWeights
    grades: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class Arrival:
    contract_id: str
    lot_id: str
    arrival_date: date
    weights: LotWeights


@dataclass(frozen=True, slots=True)
class FinalAssays:
    contract_id: str
    lot_id: str
    buyer_grades: Mapping[str, Decimal]
    seller_grades: Mapping[str, Decimal]
    umpire_grades: Mapping[str, Decimal]


# -- views (what the servicer encodes) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceView:
    invoice: InvoiceRecord
    payments: Mapping[str, PaymentRecord]
    """The applied payments' records, by UETR."""


@dataclass(frozen=True, slots=True)
class LotView:
    lot: LotRecord
    invoices: tuple[InvoiceView, ...]


@dataclass(frozen=True, slots=True)
class ContractView:
    contract: ContractRecord
    agreement: Agreement
    lots: tuple[LotView, ...]
    ledger_balance_minor: int | None
    """The receivable account's net debit on the ledger; None while a draft."""


# -- the flows -------------------------------------------------------------------------------------


OrderT = TypeVar("OrderT")

LotStep = Callable[[Caller, ContractRecord, LotRecord | None, OrderT, Instruction], list[Command]]
"""One lot step's rules: the commands it commits, or the error of the rule it breaks."""


@dataclass
class OfftakeFlows:
    """The offtake flows of one hub. Async methods; blocking work runs in worker threads."""

    hub: Hub
    payments: PaymentFlows
    _writes: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def today(self) -> date:
        """The hub's current UTC date (the ledger's clock, which stamps the commits)."""
        return datetime.fromtimestamp(self.hub.ledger.clock() / 1_000_000, UTC).date()

    # -- contracts ------------------------------------------------------------------------------

    async def sign_contract(
        self, caller: Caller, agreement: Agreement, instruction: Instruction
    ) -> tuple[Receipt, ContractView]:
        terms = agreement.terms
        if caller.participant_id == terms.buyer.bank_participant_id:
            side, other = "buyer", terms.seller.bank_participant_id
        elif caller.participant_id == terms.seller.bank_participant_id:
            side, other = "seller", terms.buyer.bank_participant_id
        else:
            raise BankMustActForItsSide(
                f"{caller.participant_id!r} is neither the buyer's bank "
                f"({terms.buyer.bank_participant_id!r}) nor the seller's bank "
                f"({terms.seller.bank_participant_id!r}) of contract {agreement.contract_id!r}"
            )
        registered = await asyncio.to_thread(self.hub.registry.get, other)
        if registered is None or registered.role is not Role.BANK:
            raise with_fields(
                ParticipantMustExist(
                    f"the {_other(side)}'s bank {other!r} is not a registered bank"
                ),
                ["terms"],
            )
        async with self._writes:
            existed = await self._identical(instruction)
            if existed is None:
                commands = await asyncio.to_thread(
                    self._signature_commands, caller, agreement, side, instruction
                )
                await self._commit(commands)
        receipt = existed or await self._receipt(instruction)
        return receipt, await self.contract_view(caller, agreement.contract_id)

    def _signature_commands(
        self, caller: Caller, agreement: Agreement, side: str, instruction: Instruction
    ) -> list[Command]:
        contract_id = agreement.contract_id
        document = terms_document(agreement)
        existing = projection.contract_by_id(self.hub.ledger, contract_id)
        event = (
            ContractEvent.BUYER_BANK_SIGNED if side == "buyer" else ContractEvent.SELLER_BANK_SIGNED
        )
        if existing is None:
            status = ContractStatus()
        else:
            if dict(existing.terms) != document:
                raise with_fields(
                    ContractTermsMustMatch(
                        f"contract {contract_id!r} was signed with other terms (differing: "
                        f"{', '.join(_differing(existing.terms, document))}); sign the same "
                        "terms, or use another contract id"
                    ),
                    ["terms"],
                )
            status = _contract_status(existing)
        after = apply_contract_event(status, event)
        seller_bank = agreement.terms.seller.bank_participant_id
        commands: list[Command] = [
            NewEvent(
                id=instruction.instruction_id,
                event_type=projection.CONTRACT_SIGNED,
                body={
                    "contract_id": contract_id,
                    "side": side,
                    "state": after.state.value,
                    "buyer_bank_signed": after.buyer_bank_signed,
                    "seller_bank_signed": after.seller_bank_signed,
                    "buyer_bank_id": agreement.terms.buyer.bank_participant_id,
                    "seller_bank_id": seller_bank,
                    "terms": document,
                },
                instruction=instruction.signed,
            )
        ]
        if after.state is ContractState.ACTIVE:
            for account_id, normal_side in (
                (receivable_account_id(contract_id), Side.DEBIT),
                (invoiced_account_id(contract_id), Side.CREDIT),
                (collected_account_id(contract_id), Side.DEBIT),
            ):
                commands.append(
                    NewAccount(
                        id=account_id,
                        owner=seller_bank,
                        currency=CURRENCY,
                        normal_side=normal_side,
                        metadata={"contract_id": contract_id},
                        instruction=instruction.signed,
                    )
                )
        return commands

    async def change_contract_state(
        self,
        caller: Caller,
        contract_id: str,
        action: ContractAction,
        reason: str,
        instruction: Instruction,
    ) -> tuple[Receipt, ContractView]:
        async with self._writes:
            existed = await self._identical(instruction)
            if existed is None:
                commands = await asyncio.to_thread(
                    self._contract_change_commands, caller, contract_id, action, reason, instruction
                )
                await self._commit(commands)
        receipt = existed or await self._receipt(instruction)
        return receipt, await self.contract_view(caller, contract_id)

    def _contract_change_commands(
        self,
        caller: Caller,
        contract_id: str,
        action: ContractAction,
        reason: str,
        instruction: Instruction,
    ) -> list[Command]:
        contract = self._visible_contract(caller, contract_id)
        after = apply_contract_event(_contract_status(contract), CONTRACT_ACTION_EVENTS[action])
        if action == "complete":
            lots = projection.lots_of_contract(self.hub.ledger, contract_id)
            open_lots = [lot.lot_id for lot in lots if lot.state != LotState.CLOSED.value]
            if open_lots:
                raise LotsMustBeClosed(
                    f"contract {contract_id!r} has lots that are not closed: "
                    f"{', '.join(open_lots[:10])}"
                )
            if contract.outstanding_minor != 0:
                raise ReceivableMustBeZero(
                    f"contract {contract_id!r} has a receivable of "
                    f"{_usd(contract.outstanding_minor)}; it completes at zero"
                )
        return [
            NewEvent(
                id=instruction.instruction_id,
                event_type=projection.CONTRACT_CHANGED,
                body={
                    "contract_id": contract_id,
                    "action": action,
                    "state": after.state.value,
                    "reason": reason,
                },
                instruction=instruction.signed,
            )
        ]

    # -- prices ---------------------------------------------------------------------------------

    async def publish_price_fixings(
        self, caller: Caller, fixings: Sequence[PriceFixing], instruction: Instruction
    ) -> Receipt:
        async with self._writes:
            existed = await self._identical(instruction)
            if existed is not None:
                return existed
            today = self.today()
            for position, fixing in enumerate(fixings):
                if fixing.fixing_date > today:
                    raise with_fields(
                        FixingDateMustNotBeFuture(
                            f"fixing_date {fixing.fixing_date} is after the hub's date {today}: "
                            "publish a price once it is published"
                        ),
                        [f"fixings[{position}]"],
                    )
            keys: list[tuple[str, str]] = [
                (fixing.metal, fixing.fixing_date.isoformat()) for fixing in fixings
            ]
            published = await asyncio.to_thread(projection.fixings_published, self.hub.ledger, keys)
            if published:
                first = published[0]
                raise with_fields(
                    PriceFixingExists(
                        f"{first.metal} on {first.fixing_date} was published as "
                        f"{first.price_usd} by {first.event_id!r}; a published price never "
                        "changes"
                    ),
                    [f"fixings[{keys.index((first.metal, first.fixing_date))}]"],
                )
            await self._commit(
                [
                    NewEvent(
                        id=instruction.instruction_id,
                        event_type=projection.PRICE_FIXINGS_PUBLISHED,
                        body={
                            "fixings": [
                                {
                                    "metal": fixing.metal,
                                    "fixing_date": fixing.fixing_date.isoformat(),
                                    "price_usd": decimal_text(fixing.price_usd),
                                }
                                for fixing in fixings
                            ]
                        },
                        instruction=instruction.signed,
                    )
                ]
            )
        return await self._receipt(instruction)

    # -- lots -------------------------------------------------------------------------------------

    async def ship_lot(
        self, caller: Caller, shipment: Shipment, instruction: Instruction
    ) -> tuple[Receipt, LotView]:
        return await self._lot_step(
            caller, shipment.contract_id, shipment.lot_id, instruction, self._shipment, shipment
        )

    def _shipment(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        shipment: Shipment,
        instruction: Instruction,
    ) -> list[Command]:
        self._require_side(caller, contract, "seller", "records shipments")
        self._require_active(contract)
        after = apply_lot_event(LotStatus() if lot is None else _lot_status(lot), LotEvent.SHIPPED)
        shipped = projection.lot_count(self.hub.ledger, contract.contract_id)
        if shipped >= LOTS_PER_CONTRACT_MAX:
            raise LotsMustNotExceedLimit(
                f"contract {contract.contract_id!r} has {shipped} lots, the most one contract "
                f"holds ({LOTS_PER_CONTRACT_MAX}); ship further lots under a new contract"
            )
        terms = _agreement(contract).terms
        grades = _checked_grades(terms, shipment.grades, "provisional_grades")
        return [
            _lot_event(
                instruction,
                projection.LOT_SHIPPED,
                shipment.contract_id,
                shipment.lot_id,
                after,
                {
                    "bill_of_lading_number": shipment.bill_of_lading_number,
                    "bill_of_lading_date": shipment.bill_of_lading_date.isoformat(),
                    "weights": weights_document(shipment.weights),
                    "grades": grades_document(grades),
                },
            )
        ]

    async def issue_provisional_invoice(
        self,
        caller: Caller,
        contract_id: str,
        lot_id: str,
        prices: Mapping[str, Decimal],
        instruction: Instruction,
    ) -> tuple[Receipt, InvoiceView]:
        await self._lot_step(
            caller, contract_id, lot_id, instruction, self._provisional_invoice, prices
        )
        return await self._invoice_answer(
            caller, invoice_id("provisional", contract_id, lot_id), instruction
        )

    def _provisional_invoice(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        prices: Mapping[str, Decimal],
        instruction: Instruction,
    ) -> list[Command]:
        self._require_side(caller, contract, "seller", "issues invoices")
        self._require_active(contract)
        lot = _require_lot(lot)
        after = apply_lot_event(_lot_status(lot), LotEvent.PROVISIONAL_INVOICE_ISSUED)
        terms = _agreement(contract).terms
        _refuse_unknown(terms.payable_metals, prices, "provisional_prices")
        shipment = lot.details["shipment"]
        invoice = provisional_invoice(
            terms,
            weights_from_document(shipment["weights"]),
            grades_from_document(shipment["grades"]),
            prices,
        )
        return _invoice_commands(instruction, contract, lot.lot_id, after, invoice, prices)

    async def record_arrival(
        self, caller: Caller, arrival: Arrival, instruction: Instruction
    ) -> tuple[Receipt, LotView]:
        return await self._lot_step(
            caller, arrival.contract_id, arrival.lot_id, instruction, self._arrival, arrival
        )

    def _arrival(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        arrival: Arrival,
        instruction: Instruction,
    ) -> list[Command]:
        self._require_side(caller, contract, "buyer", "records arrivals")
        self._require_active(contract)
        lot = _require_lot(lot)
        after = apply_lot_event(_lot_status(lot), LotEvent.ARRIVED)
        shipped_on = date.fromisoformat(lot.details["shipment"]["bill_of_lading_date"])
        if arrival.arrival_date < shipped_on:
            raise with_fields(
                ArrivalDateMustNotPrecedeShipment(
                    f"arrival_date {arrival.arrival_date} precedes the bill of lading date "
                    f"{shipped_on}"
                ),
                ["arrival_date"],
            )
        return [
            _lot_event(
                instruction,
                projection.LOT_ARRIVED,
                arrival.contract_id,
                arrival.lot_id,
                after,
                {
                    "arrival_date": arrival.arrival_date.isoformat(),
                    "weights": weights_document(arrival.weights),
                },
            )
        ]

    async def record_final_assays(
        self, caller: Caller, assays: FinalAssays, instruction: Instruction
    ) -> tuple[Receipt, LotView]:
        return await self._lot_step(
            caller, assays.contract_id, assays.lot_id, instruction, self._final_assays, assays
        )

    def _final_assays(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        assays: FinalAssays,
        instruction: Instruction,
    ) -> list[Command]:
        self._require_party(caller, contract)
        self._require_active(contract)
        lot = _require_lot(lot)
        after = apply_lot_event(_lot_status(lot), LotEvent.FINAL_ASSAYS_RECORDED)
        terms = _agreement(contract).terms
        _refuse_unknown(terms.assayed_elements, assays.buyer_grades, "buyer_grades")
        _refuse_unknown(terms.assayed_elements, assays.seller_grades, "seller_grades")
        settled = settle_assays(
            terms, assays.buyer_grades, assays.seller_grades, assays.umpire_grades or None
        )
        return [
            _lot_event(
                instruction,
                projection.FINAL_ASSAYS_RECORDED,
                assays.contract_id,
                assays.lot_id,
                after,
                {"assays": [settled_assay_document(assay) for assay in settled]},
            )
        ]

    async def price_lot(
        self, caller: Caller, contract_id: str, lot_id: str, instruction: Instruction
    ) -> tuple[Receipt, LotView]:
        return await self._lot_step(caller, contract_id, lot_id, instruction, self._pricing, None)

    def _pricing(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        _: None,
        instruction: Instruction,
    ) -> list[Command]:
        self._require_party(caller, contract)
        self._require_active(contract)
        lot = _require_lot(lot)
        after = apply_lot_event(_lot_status(lot), LotEvent.PRICED)
        terms = _agreement(contract).terms
        period = quotational_period(
            terms.quotational_period,
            bill_of_lading_date=date.fromisoformat(lot.details["shipment"]["bill_of_lading_date"]),
            arrival_date=date.fromisoformat(lot.details["arrival"]["arrival_date"]),
        )
        today = self.today()
        if period.last_day >= today:
            raise QuotationalPeriodMustBeOver(
                f"the quotational period of lot {lot.lot_id!r} runs {period.first_day} to "
                f"{period.last_day}; price it from the day after (the hub's date is {today})"
            )
        published = projection.fixings_between(
            self.hub.ledger,
            terms.payable_metals,
            period.first_day.isoformat(),
            period.last_day.isoformat(),
        )
        fixings = [
            PriceFixing(
                fixing.metal,  # type: ignore[arg-type]  # only metals are published
                date.fromisoformat(fixing.fixing_date),
                Decimal(fixing.price_usd),
            )
            for fixing in published
        ]
        prices = [average_price(metal, period, fixings) for metal in terms.payable_metals]
        return [
            _lot_event(
                instruction,
                projection.LOT_PRICED,
                lot.contract_id,
                lot.lot_id,
                after,
                {
                    "quotational_period": {
                        "first_day": period.first_day.isoformat(),
                        "last_day": period.last_day.isoformat(),
                    },
                    "prices": [price_document(price) for price in prices],
                },
            )
        ]

    async def issue_final_invoice(
        self, caller: Caller, contract_id: str, lot_id: str, instruction: Instruction
    ) -> tuple[Receipt, InvoiceView]:
        await self._lot_step(caller, contract_id, lot_id, instruction, self._final_invoice, None)
        return await self._invoice_answer(
            caller, invoice_id("final", contract_id, lot_id), instruction
        )

    def _final_invoice(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        _: None,
        instruction: Instruction,
    ) -> list[Command]:
        self._require_side(caller, contract, "seller", "issues invoices")
        self._require_active(contract)
        lot = _require_lot(lot)
        after = apply_lot_event(_lot_status(lot), LotEvent.FINAL_INVOICE_ISSUED)
        terms = _agreement(contract).terms
        prices = {
            price["metal"]: Decimal(price["price_usd"])
            for price in lot.details["pricing"]["prices"]
        }
        grades = {
            assay["element"]: Decimal(assay["grade"]) for assay in lot.details["assays"]["assays"]
        }
        paid = [
            ProvisionalPayment(f"{invoice.invoice_id} UETR {payment.uetr}", payment.amount_minor)
            for invoice in projection.invoices_of_lot(self.hub.ledger, lot.contract_id, lot.lot_id)
            if invoice.kind == "provisional"
            for payment in invoice.payments
        ]
        invoice = final_invoice(
            terms, weights_from_document(lot.details["arrival"]["weights"]), grades, prices, paid
        )
        if invoice.total_minor == 0:
            # Nothing is owed either way: the lot is settled by the invoice itself.
            after = apply_lot_event(after, LotEvent.SETTLED)
        return _invoice_commands(instruction, contract, lot.lot_id, after, invoice, prices)

    async def change_lot_state(
        self,
        caller: Caller,
        contract_id: str,
        lot_id: str,
        action: LotAction,
        reason: str,
        instruction: Instruction,
    ) -> tuple[Receipt, LotView]:
        return await self._lot_step(
            caller, contract_id, lot_id, instruction, self._lot_change, (action, reason)
        )

    def _lot_change(
        self,
        caller: Caller,
        contract: ContractRecord,
        lot: LotRecord | None,
        change: tuple[LotAction, str],
        instruction: Instruction,
    ) -> list[Command]:
        action, reason = change
        self._require_party(caller, contract)
        lot = _require_lot(lot)
        after = apply_lot_event(_lot_status(lot), LOT_ACTION_EVENTS[action])
        return [
            _lot_event(
                instruction,
                projection.LOT_CHANGED,
                lot.contract_id,
                lot.lot_id,
                after,
                {"action": action, "reason": reason},
            )
        ]

    # -- payments ---------------------------------------------------------------------------------

    async def pay_invoice(
        self, caller: Caller, order: PaymentOrder, signed: Signed
    ) -> tuple[Receipt, PaymentRecord, InvoiceView]:
        """Check the payment against the invoice, pay it through the payment flow, apply it."""
        check_payment_order(order)
        number = order.remittance_information
        async with self._writes:
            invoice = await asyncio.to_thread(self._visible_invoice, caller, number)
            existing = await asyncio.to_thread(
                payments_projection.payment_by_uetr, self.hub.ledger, order.uetr
            )
            # A retry of a committed payment skips the checks: the payment flow answers it.
            retry = existing is not None and existing.instruction_id == signed.instruction_id
            if not retry:
                await asyncio.to_thread(self._check_payment, caller, invoice, order)
            receipt, payment = await self.payments.submit_payment(caller, order, signed)
            if payment.status == ACSC and payment.remittance_information == invoice.invoice_id:
                applied = await asyncio.to_thread(
                    projection.applied_payment, self.hub.ledger, payment.uetr
                )
                if applied is None:
                    commands = await asyncio.to_thread(self._application_commands, payment)
                    await self._commit(commands)
        return receipt, payment, await self.invoice_view(caller, number)

    def _check_payment(self, caller: Caller, invoice: InvoiceRecord, order: PaymentOrder) -> None:
        ledger = self.hub.ledger
        contract = _require_contract(projection.contract_by_id(ledger, invoice.contract_id))
        agreement = _agreement(contract)
        refund = invoice.total_minor < 0
        payer, payee = ("seller", "buyer") if refund else ("buyer", "seller")
        self._require_side(caller, contract, payer, f"pays invoice {invoice.invoice_id}")
        if invoice.outstanding_minor == 0:
            raise InvoiceMustBeOutstanding(
                f"invoice {invoice.invoice_id} is paid in full ({_usd(invoice.total_minor)})"
            )
        lot = _require_lot(projection.lot_by_id(ledger, invoice.contract_id, invoice.lot_id))
        apply_lot_event(_lot_status(lot), PAYMENT_EVENTS[invoice.kind])
        terms = agreement.terms
        parties = {"buyer": terms.buyer, "seller": terms.seller}
        if order.creditor_agent_id != parties[payee].bank_participant_id:
            raise _mismatch(
                f"creditor_agent_id must be the {payee}'s bank "
                f"{parties[payee].bank_participant_id!r}, got {order.creditor_agent_id!r}",
                "creditor_agent_id",
            )
        for name, party, role in (
            ("debtor.name", order.debtor, payer),
            ("creditor.name", order.creditor, payee),
        ):
            if party.name != parties[role].name:
                raise _mismatch(
                    f"{name} must be the {role} {parties[role].name!r}, got {party.name!r:.140}",
                    name,
                )
        paid_in_pkr = not refund and agreement.seller_payment_currency != CURRENCY
        if paid_in_pkr:
            amount_minor, field_name = self._quoted_usd(order)
        else:
            if order.quote_id:
                raise _mismatch(
                    f"invoice {invoice.invoice_id} is paid in USD with a same-currency payment: "
                    "leave quote_id empty",
                    "quote_id",
                )
            if order.currency != CURRENCY:
                raise _mismatch(f"amount must be in {CURRENCY}, got {order.currency!r}", "amount")
            amount_minor, field_name = order.amount_minor, "amount"
        if amount_minor is not None and amount_minor > abs(invoice.outstanding_minor):
            raise with_fields(
                PaymentMustNotExceedOutstanding(
                    f"the payment is {_usd(amount_minor)}; invoice {invoice.invoice_id} has "
                    f"{_usd(abs(invoice.outstanding_minor))} outstanding"
                ),
                [field_name],
            )

    def _quoted_usd(self, order: PaymentOrder) -> tuple[int | None, str]:
        """The USD the buyer sends with a USD -> PKR quote (None: the payment flow refuses it)."""
        if not order.quote_id:
            raise _mismatch(
                "the seller is paid in PKR: pay with a USD -> PKR quote (quote_id)", "quote_id"
            )
        quote = payments_projection.quote_by_id(self.hub.ledger, order.quote_id)
        if quote is None:
            return None, "quote_id"  # quote_must_exist, answered by the payment flow
        if (quote.source_currency, quote.target_currency) != (CURRENCY, "PKR"):
            raise _mismatch(
                f"the seller is paid in PKR: the quote must convert USD to PKR, got "
                f"{quote.source_currency} to {quote.target_currency}",
                "quote_id",
            )
        return quote.send_minor, "quote_id"

    def _application_commands(self, payment: PaymentRecord) -> list[Command]:
        """Apply a settled payment to its invoice: the receivable posting and the event."""
        ledger = self.hub.ledger
        invoice = projection.invoice_by_id(ledger, payment.remittance_information)
        if invoice is None:
            raise IntegrityError(f"payment {payment.uetr} names no invoice")
        contract = _require_contract(projection.contract_by_id(ledger, invoice.contract_id))
        lot = _require_lot(projection.lot_by_id(ledger, invoice.contract_id, invoice.lot_id))
        refund = invoice.total_minor < 0
        amount_minor = usd_leg(payment)
        if amount_minor > abs(invoice.outstanding_minor):
            raise PaymentMustNotExceedOutstanding(
                f"payment {payment.uetr} settled {_usd(amount_minor)}, but invoice "
                f"{invoice.invoice_id} has {_usd(abs(invoice.outstanding_minor))} outstanding; "
                "it is not applied"
            )
        status = _lot_status(lot)
        event = PAYMENT_EVENTS[invoice.kind]
        after = apply_lot_event(status, event)  # refused (e.g. disputed meanwhile): not applied
        if amount_minor != abs(invoice.outstanding_minor):
            after = status  # paid in part: the lot waits for the rest
        contract_id = contract.contract_id
        receivable = receivable_account_id(contract_id)
        collected = collected_account_id(contract_id)
        debit, credit = (receivable, collected) if refund else (collected, receivable)
        transaction_id = PAYMENT_ID_PREFIX + payment.uetr
        payment_transaction_id = payments_projection.TRANSACTION_ID_PREFIX + payment.uetr
        return [
            NewTransaction(
                id=transaction_id,
                postings=(
                    Posting(debit, Side.DEBIT, amount_minor, CURRENCY),
                    Posting(credit, Side.CREDIT, amount_minor, CURRENCY),
                ),
                code=PAYMENT_CODE,
                reference=invoice.invoice_id,
                metadata={
                    "contract_id": contract_id,
                    "invoice_id": invoice.invoice_id,
                    "uetr": payment.uetr,
                    "payment_transaction_id": payment_transaction_id,
                },
            ),
            NewEvent(
                id=transaction_id,
                event_type=projection.INVOICE_PAID,
                body={
                    "contract_id": contract_id,
                    "lot_id": lot.lot_id,
                    "state": after.state.value,
                    "disputed_from": _state_value(after.disputed_from),
                    "invoice_id": invoice.invoice_id,
                    "refund": refund,
                    "uetr": payment.uetr,
                    "amount_minor": str(amount_minor),
                    "debtor_agent_id": payment.debtor_agent_id,
                    "creditor_agent_id": payment.creditor_agent_id,
                    "payment_transaction_id": payment_transaction_id,
                    "transaction_id": transaction_id,
                },
            ),
        ]

    # -- reads ------------------------------------------------------------------------------------

    async def contract_view(self, caller: Caller, contract_id: str) -> ContractView:
        return await asyncio.to_thread(self._contract_view, caller, contract_id)

    def _contract_view(self, caller: Caller, contract_id: str) -> ContractView:
        ledger = self.hub.ledger
        contract = self._visible_contract(caller, contract_id)
        lots = projection.lots_of_contract(ledger, contract_id)
        invoices = projection.invoices_of_contract(ledger, contract_id)
        payments = self._payments_of(invoices)
        by_lot: dict[str, list[InvoiceView]] = {lot.lot_id: [] for lot in lots}
        for invoice in invoices:
            if invoice.lot_id in by_lot:
                by_lot[invoice.lot_id].append(_invoice_view(invoice, payments))
        balance: int | None = None
        if contract.buyer_bank_signed and contract.seller_bank_signed:
            # Opened by the signature that made it active (a draft never had them).
            balance = ledger.balance(receivable_account_id(contract_id)).net_debit_posted
        return ContractView(
            contract=contract,
            agreement=_agreement(contract),
            lots=tuple(LotView(lot, tuple(by_lot[lot.lot_id])) for lot in lots),
            ledger_balance_minor=balance,
        )

    async def invoice_view(self, caller: Caller, number: str) -> InvoiceView:
        return await asyncio.to_thread(self._invoice_view, caller, number)

    def _invoice_view(self, caller: Caller, number: str) -> InvoiceView:
        invoice = self._visible_invoice(caller, number)
        return _invoice_view(invoice, self._payments_of([invoice]))

    async def lot_view(self, caller: Caller, contract_id: str, lot_id: str) -> LotView:
        return await asyncio.to_thread(self._lot_view, caller, contract_id, lot_id)

    def _lot_view(self, caller: Caller, contract_id: str, lot_id: str) -> LotView:
        ledger = self.hub.ledger
        self._visible_contract(caller, contract_id)
        lot = _require_lot(projection.lot_by_id(ledger, contract_id, lot_id))
        invoices = projection.invoices_of_lot(ledger, contract_id, lot_id)
        payments = self._payments_of(invoices)
        return LotView(lot, tuple(_invoice_view(invoice, payments) for invoice in invoices))

    def _payments_of(self, invoices: Iterable[InvoiceRecord]) -> Mapping[str, PaymentRecord]:
        uetrs = [payment.uetr for invoice in invoices for payment in invoice.payments]
        if not uetrs:
            return {}
        return payments_projection.payments_by_uetr(self.hub.ledger, uetrs)

    # -- steps ------------------------------------------------------------------------------------

    async def _lot_step(
        self,
        caller: Caller,
        contract_id: str,
        lot_id: str,
        instruction: Instruction,
        commands_for: LotStep[OrderT],
        order: OrderT,
    ) -> tuple[Receipt, LotView]:
        """Idempotency, then (under the write lock) the contract, the lot and the step's rules."""
        async with self._writes:
            existed = await self._identical(instruction)
            if existed is None:
                commands = await asyncio.to_thread(
                    self._lot_commands,
                    caller,
                    contract_id,
                    lot_id,
                    instruction,
                    commands_for,
                    order,
                )
                await self._commit(commands)
        receipt = existed or await self._receipt(instruction)
        return receipt, await self.lot_view(caller, contract_id, lot_id)

    def _lot_commands(
        self,
        caller: Caller,
        contract_id: str,
        lot_id: str,
        instruction: Instruction,
        commands_for: LotStep[OrderT],
        order: OrderT,
    ) -> list[Command]:
        contract = self._visible_contract(caller, contract_id)
        lot = projection.lot_by_id(self.hub.ledger, contract_id, lot_id)
        return commands_for(caller, contract, lot, order, instruction)

    async def _invoice_answer(
        self, caller: Caller, number: str, instruction: Instruction
    ) -> tuple[Receipt, InvoiceView]:
        receipt = await self._receipt(instruction)
        return receipt, await self.invoice_view(caller, number)

    async def _identical(self, instruction: Instruction) -> Receipt | None:
        """The idempotency check, under the write lock: an identical committed instruction.

        Returns its original receipt; raises ``exists_with_different_body`` for
        another body under the same id. Looked up again here (not only by the
        servicer's common checks) so that two identical requests racing each
        other get one commit and one ALREADY_EXISTED.
        """
        payload = instruction.signed.payload
        if instruction.prior_payload is not None and instruction.prior_payload != payload:
            raise ExistsWithDifferentBody(
                instruction.instruction_id,
                _differing_fields(instruction.prior_payload, payload),
            )
        found = await asyncio.to_thread(
            projection.event_instruction, self.hub.ledger, instruction.instruction_id
        )
        if found is None:
            if instruction.prior_payload is not None:
                raise IntegrityError(
                    f"instruction {instruction.instruction_id!r} is committed but is no "
                    "offtake event"
                )
            return None
        receipt, committed = found
        if committed != payload:
            raise ExistsWithDifferentBody(
                instruction.instruction_id, _differing_fields(committed or b"{}", payload)
            )
        return receipt

    async def _receipt(self, instruction: Instruction) -> Receipt:
        receipt = await asyncio.to_thread(
            projection.event_receipt, self.hub.ledger, instruction.instruction_id
        )
        if receipt is None:
            raise IntegrityError(f"offtake event {instruction.instruction_id!r} was not committed")
        return Receipt(
            receipt.id, receipt.journal_index, receipt.leaf_hash, receipt.committed_at_us
        )

    async def _commit(self, commands: Sequence[Command]) -> list[Receipt]:
        """One linked commit (a group of its own); the deciding error is raised."""
        results = await self.hub.sequencer.submit(commands, linked=True)
        error = _first_error(results)
        if error is not None:
            raise error
        receipts = [result.receipt for result in results if result.receipt is not None]
        if len(receipts) != len(results):
            raise IntegrityError("an offtake command succeeded without a receipt")
        return receipts

    def _visible_contract(self, caller: Caller, contract_id: str) -> ContractRecord:
        contract = projection.contract_by_id(self.hub.ledger, contract_id)
        if contract is None or not (
            caller.sees_everything or contract.is_party(caller.participant_id)
        ):
            raise with_fields(
                ContractMustExist(f"contract {contract_id!r} does not exist"), ["contract_id"]
            )
        return contract

    def _visible_invoice(self, caller: Caller, number: str) -> InvoiceRecord:
        ledger = self.hub.ledger
        invoice = projection.invoice_by_id(ledger, number) if number else None
        contract = (
            None if invoice is None else projection.contract_by_id(ledger, invoice.contract_id)
        )
        if (
            invoice is None
            or contract is None
            or not (caller.sees_everything or contract.is_party(caller.participant_id))
        ):
            raise with_fields(
                InvoiceMustExist(f"invoice {number!r:.80} does not exist"),
                ["remittance_information"],
            )
        return invoice

    @staticmethod
    def _require_side(caller: Caller, contract: ContractRecord, side: str, what: str) -> None:
        bank = contract.buyer_bank_id if side == "buyer" else contract.seller_bank_id
        if caller.participant_id != bank:
            raise BankMustActForItsSide(
                f"the {side}'s bank ({bank!r}) {what} under contract {contract.contract_id!r}, "
                f"not {caller.participant_id!r}"
            )

    @staticmethod
    def _require_party(caller: Caller, contract: ContractRecord) -> None:
        if not contract.is_party(caller.participant_id):
            raise BankMustActForItsSide(
                f"only the banks of contract {contract.contract_id!r} act on it, "
                f"not {caller.participant_id!r}"
            )

    @staticmethod
    def _require_active(contract: ContractRecord) -> None:
        if contract.state != ContractState.ACTIVE.value:
            raise ContractMustBeActive(
                f"contract {contract.contract_id!r} is {contract.state}; lots are shipped, "
                "invoiced and priced only while it is active"
            )


# -- helpers --------------------------------------------------------------------------------------


def usd_leg(payment: PaymentRecord) -> int:
    """The payment's amount in the contract currency: what it sends, or receives, in USD."""
    if payment.source_currency == CURRENCY:
        return payment.send_minor
    if payment.target_currency == CURRENCY:
        return payment.receive_minor
    raise IntegrityError(f"payment {payment.uetr} has no {CURRENCY} leg")


def _invoice_view(invoice: InvoiceRecord, payments: Mapping[str, PaymentRecord]) -> InvoiceView:
    """The invoice as read back, checked: each line multiplies out, the totals add up, and
    each applied payment moved the USD it was applied for."""
    Invoice(
        kind=invoice.kind,  # type: ignore[arg-type]  # checked by Invoice itself
        lines=invoice_lines_from_document(invoice.details["lines"]),
        value_minor=invoice.value_minor,
        total_minor=invoice.total_minor,
    )
    for applied in invoice.payments:
        payment = payments.get(applied.uetr)
        if payment is not None and usd_leg(payment) != applied.amount_minor:
            raise IntegrityError(
                f"payment {applied.uetr} moved {usd_leg(payment)} USD cents but was applied "
                f"to invoice {invoice.invoice_id} for {applied.amount_minor}"
            )
    return InvoiceView(
        invoice,
        {
            applied.uetr: payments[applied.uetr]
            for applied in invoice.payments
            if applied.uetr in payments
        },
    )


def _lot_event(
    instruction: Instruction,
    event_type: str,
    contract_id: str,
    lot_id: str,
    after: LotStatus,
    facts: Mapping[str, Any],
) -> NewEvent:
    """A lot event, committed under the instruction's id with its signature."""
    return NewEvent(
        id=instruction.instruction_id,
        event_type=event_type,
        body={
            "contract_id": contract_id,
            "lot_id": lot_id,
            "state": after.state.value,
            "disputed_from": _state_value(after.disputed_from),
            **facts,
        },
        instruction=instruction.signed,
    )


def _invoice_commands(
    instruction: Instruction,
    contract: ContractRecord,
    lot_id: str,
    after: LotStatus,
    invoice: Invoice,
    prices: Mapping[str, Decimal],
) -> list[Command]:
    """The invoice's receivable posting (none for a zero total) and its event, one id."""
    contract_id = contract.contract_id
    number = invoice_id(invoice.kind, contract_id, lot_id)
    commands: list[Command] = []
    total = invoice.total_minor
    if total != 0:
        receivable = receivable_account_id(contract_id)
        invoiced = invoiced_account_id(contract_id)
        debit, credit = (receivable, invoiced) if total > 0 else (invoiced, receivable)
        commands.append(
            NewTransaction(
                id=instruction.instruction_id,
                postings=(
                    Posting(debit, Side.DEBIT, abs(total), CURRENCY),
                    Posting(credit, Side.CREDIT, abs(total), CURRENCY),
                ),
                code=INVOICE_CODE,
                reference=number,
                metadata={"contract_id": contract_id, "invoice_id": number, "lot_id": lot_id},
                instruction=instruction.signed,
            )
        )
    commands.append(
        _lot_event(
            instruction,
            projection.INVOICE_ISSUED,
            contract_id,
            lot_id,
            after,
            {
                "invoice": invoice_document(number, invoice),
                "prices": [
                    {"metal": metal, "price_usd": decimal_text(prices[metal])}
                    for metal in _agreement(contract).terms.payable_metals
                ],
                "transaction_id": instruction.instruction_id if total != 0 else None,
            },
        )
    )
    return commands


def _agreement(contract: ContractRecord) -> Agreement:
    return agreement_from_document(contract.terms)


def _contract_status(contract: ContractRecord) -> ContractStatus:
    return ContractStatus(
        state=ContractState(contract.state),
        buyer_bank_signed=contract.buyer_bank_signed,
        seller_bank_signed=contract.seller_bank_signed,
    )


def _lot_status(lot: LotRecord) -> LotStatus:
    return LotStatus(
        state=LotState(lot.state),
        disputed_from=None if lot.disputed_from is None else LotState(lot.disputed_from),
    )


def _state_value(state: LotState | None) -> str | None:
    return None if state is None else state.value


def _require_contract(contract: ContractRecord | None) -> ContractRecord:
    if contract is None:
        raise IntegrityError("an invoice names a contract that does not exist")
    return contract


def _require_lot(lot: LotRecord | None) -> LotRecord:
    if lot is None:
        raise with_fields(LotMustExist("lot does not exist in this contract"), ["lot_id"])
    return lot


def _checked_grades(
    terms: ContractTerms, grades: Mapping[str, Decimal], name: str
) -> dict[str, Decimal]:
    """One assay grade per element the contract values, in contract order, each in range."""
    _refuse_unknown(terms.assayed_elements, grades, name)
    checked: dict[str, Decimal] = {}
    for element in terms.assayed_elements:
        if element not in grades:
            raise with_fields(
                GradeMustBeGiven(
                    f"{name}[{element}] must be given for contract {terms.contract_reference!r}"
                ),
                [name],
            )
        checked[element] = check_decimal(
            f"{name}[{element}]",
            grades[element],
            low=Decimal(0),
            high=GRAMS_PER_DMT_MAX if element in ("Au", "Ag") else Decimal(100),
            decimals_max=PERCENT_DECIMALS_MAX,
        )
    return checked


def _refuse_unknown(known: Sequence[str], given: Iterable[str], name: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise with_fields(
            TermMustBeKnown(
                f"{name} must be for {', '.join(known)} (what the contract values), "
                f"got {', '.join(unknown)}"
            ),
            [name],
        )


def _mismatch(message: str, name: str) -> LedgerError:
    return with_fields(PaymentMustMatchInvoice(message), [name])


def _other(side: str) -> str:
    return "seller" if side == "buyer" else "buyer"


def _usd(amount_minor: int) -> str:
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    return f"USD {sign}{units:,}.{cents:02d}"


def _differing(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


def _differing_fields(before: bytes, after: bytes) -> list[str]:
    """Top-level instruction fields (JSON names) whose values differ."""
    return _differing(json.loads(before), json.loads(after))


def _first_error(results: Sequence[CommandResult]) -> LedgerError | None:
    """The error that decided a linked commit: the failing command's own."""
    errors = [result.error for result in results if result.error is not None]
    for error in errors:
        if not isinstance(error, LinkedCommandFailed):
            return error
    return errors[0] if errors else None


__all__ = [
    "ACSC",
    "CONTRACT_ACTION_EVENTS",
    "INVOICE_CODE",
    "LOT_ACTION_EVENTS",
    "PAYMENT_CODE",
    "PAYMENT_ID_PREFIX",
    "Agreement",
    "Arrival",
    "ContractView",
    "FinalAssays",
    "Instruction",
    "InvoiceView",
    "LotView",
    "OfftakeFlows",
    "Shipment",
    "agreement_from_document",
    "collected_account_id",
    "invoice_id",
    "invoiced_account_id",
    "receivable_account_id",
    "terms_document",
    "usd_leg",
]
