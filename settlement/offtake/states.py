"""The life of an offtake contract and of each lot shipped under it, as transition tables.

Each table lists every allowed ``(state, event) -> next state``; any pair not in
it is refused with :class:`ContractTransitionNotAllowed` or
:class:`LotTransitionNotAllowed` (both :class:`~settlement.errors.FailedPrecondition`,
so FAILED_PRECONDITION on the wire), naming the state, the event and the events
the state does allow. Statuses are immutable values: ``apply_*`` returns a new
status or raises, so a refused event leaves nothing to undo.

Events are the facts that happened (``shipped``, ``buyer_bank_signed``), named
in the past tense; the service records them and calls ``apply_*`` to learn the
next status.

Contract (both banks must sign before it is active)::

    draft     --buyer_bank_signed-->    draft, or active once the seller's bank has signed too
    draft     --seller_bank_signed-->   draft, or active once the buyer's bank has signed too
    draft     --terminated-->           terminated
    active    --suspended-->            suspended
    active    --completed-->            completed
    active    --terminated-->           terminated
    suspended --resumed-->              active
    suspended --terminated-->           terminated

completed and terminated are final. A bank's signature counts once: the second
``buyer_bank_signed`` on a draft is refused like any other transition that is
not allowed.

Lot::

    nominated              --shipped-->                       shipped
    shipped                --provisional_invoice_issued-->    provisionally_invoiced
    provisionally_invoiced --provisional_payment_received-->  provisionally_paid
    provisionally_invoiced --disputed-->                      disputed
    provisionally_paid     --arrived-->                       arrived
    arrived                --final_assays_recorded-->         assayed
    assayed                --priced-->                        priced
    priced                 --final_invoice_issued-->          finally_invoiced
    finally_invoiced       --settled-->                       settled
    finally_invoiced       --disputed-->                      disputed
    settled                --closed-->                        closed
    disputed               --dispute_resolved-->              the state the dispute was raised in

closed is final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final

from ledger.errors import IntegrityError
from settlement.errors import FailedPrecondition


class ContractState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class ContractEvent(StrEnum):
    BUYER_BANK_SIGNED = "buyer_bank_signed"
    SELLER_BANK_SIGNED = "seller_bank_signed"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class LotState(StrEnum):
    NOMINATED = "nominated"
    SHIPPED = "shipped"
    PROVISIONALLY_INVOICED = "provisionally_invoiced"
    PROVISIONALLY_PAID = "provisionally_paid"
    ARRIVED = "arrived"
    ASSAYED = "assayed"
    PRICED = "priced"
    FINALLY_INVOICED = "finally_invoiced"
    SETTLED = "settled"
    CLOSED = "closed"
    DISPUTED = "disputed"


class LotEvent(StrEnum):
    SHIPPED = "shipped"
    PROVISIONAL_INVOICE_ISSUED = "provisional_invoice_issued"
    PROVISIONAL_PAYMENT_RECEIVED = "provisional_payment_received"
    ARRIVED = "arrived"
    FINAL_ASSAYS_RECORDED = "final_assays_recorded"
    PRICED = "priced"
    FINAL_INVOICE_ISSUED = "final_invoice_issued"
    SETTLED = "settled"
    CLOSED = "closed"
    DISPUTED = "disputed"
    DISPUTE_RESOLVED = "dispute_resolved"


class DisputeOutcome(Enum):
    """Where ``dispute_resolved`` leads: back to the state the dispute was raised in."""

    STATE_BEFORE_DISPUTE = "state_before_dispute"


STATE_BEFORE_DISPUTE: Final = DisputeOutcome.STATE_BEFORE_DISPUTE

_C = ContractState
_CE = ContractEvent
CONTRACT_TRANSITIONS: Mapping[tuple[ContractState, ContractEvent], ContractState] = (
    MappingProxyType(
        {
            # A signature activates the draft only when it completes the pair.
            (_C.DRAFT, _CE.BUYER_BANK_SIGNED): _C.ACTIVE,
            (_C.DRAFT, _CE.SELLER_BANK_SIGNED): _C.ACTIVE,
            (_C.DRAFT, _CE.TERMINATED): _C.TERMINATED,
            (_C.ACTIVE, _CE.SUSPENDED): _C.SUSPENDED,
            (_C.ACTIVE, _CE.COMPLETED): _C.COMPLETED,
            (_C.ACTIVE, _CE.TERMINATED): _C.TERMINATED,
            (_C.SUSPENDED, _CE.RESUMED): _C.ACTIVE,
            (_C.SUSPENDED, _CE.TERMINATED): _C.TERMINATED,
        }
    )
)
"""Every allowed contract transition; any other (state, event) pair is refused."""

_L = LotState
_LE = LotEvent
LOT_TRANSITIONS: Mapping[tuple[LotState, LotEvent], LotState | DisputeOutcome] = MappingProxyType(
    {
        (_L.NOMINATED, _LE.SHIPPED): _L.SHIPPED,
        (_L.SHIPPED, _LE.PROVISIONAL_INVOICE_ISSUED): _L.PROVISIONALLY_INVOICED,
        (_L.PROVISIONALLY_INVOICED, _LE.PROVISIONAL_PAYMENT_RECEIVED): _L.PROVISIONALLY_PAID,
        (_L.PROVISIONALLY_INVOICED, _LE.DISPUTED): _L.DISPUTED,
        (_L.PROVISIONALLY_PAID, _LE.ARRIVED): _L.ARRIVED,
        (_L.ARRIVED, _LE.FINAL_ASSAYS_RECORDED): _L.ASSAYED,
        (_L.ASSAYED, _LE.PRICED): _L.PRICED,
        (_L.PRICED, _LE.FINAL_INVOICE_ISSUED): _L.FINALLY_INVOICED,
        (_L.FINALLY_INVOICED, _LE.SETTLED): _L.SETTLED,
        (_L.FINALLY_INVOICED, _LE.DISPUTED): _L.DISPUTED,
        (_L.SETTLED, _LE.CLOSED): _L.CLOSED,
        (_L.DISPUTED, _LE.DISPUTE_RESOLVED): STATE_BEFORE_DISPUTE,
    }
)
"""Every allowed lot transition; any other (state, event) pair is refused."""

DISPUTABLE_LOT_STATES: frozenset[LotState] = frozenset(
    state for (state, event) in LOT_TRANSITIONS if event is LotEvent.DISPUTED
)
"""The invoice states: a party may dispute an invoice, not a shipment or a payment."""

FINAL_CONTRACT_STATES: frozenset[ContractState] = frozenset(
    state for state in ContractState if not any(key[0] is state for key in CONTRACT_TRANSITIONS)
)
FINAL_LOT_STATES: frozenset[LotState] = frozenset(
    state for state in LotState if not any(key[0] is state for key in LOT_TRANSITIONS)
)


# --- Errors -----------------------------------------------------------------------------------


class ContractTransitionNotAllowed(FailedPrecondition):
    """The contract's state does not accept the event; carries the evidence."""

    code = "contract_transition_not_allowed"

    def __init__(
        self, status: ContractStatus, event: ContractEvent, allowed: tuple[ContractEvent, ...]
    ) -> None:
        self.state = status.state
        self.event = event
        self.allowed_events = allowed
        super().__init__(
            f"contract in state {status.describe()} does not accept event {event.value}; "
            f"allowed: {_names(allowed)}"
        )


class LotTransitionNotAllowed(FailedPrecondition):
    """The lot's state does not accept the event; carries the evidence."""

    code = "lot_transition_not_allowed"

    def __init__(self, status: LotStatus, event: LotEvent, allowed: tuple[LotEvent, ...]) -> None:
        self.state = status.state
        self.event = event
        self.allowed_events = allowed
        super().__init__(
            f"lot in state {status.describe()} does not accept event {event.value}; "
            f"allowed: {_names(allowed)}"
        )


def _names(events: tuple[StrEnum, ...]) -> str:
    return ", ".join(event.value for event in events) or "none (final state)"


# --- Contract ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractStatus:
    """A contract's state and the bank signatures recorded while it was a draft."""

    state: ContractState = ContractState.DRAFT
    buyer_bank_signed: bool = False
    seller_bank_signed: bool = False

    def __post_init__(self) -> None:
        # Only a draft may lack a signature: an active contract was signed by both banks.
        both_signed = self.buyer_bank_signed and self.seller_bank_signed
        if self.state is ContractState.DRAFT and both_signed:
            raise IntegrityError("a contract signed by both banks must not be a draft")
        if self.state not in (ContractState.DRAFT, ContractState.TERMINATED) and not both_signed:
            raise IntegrityError(
                f"a contract in state {self.state.value} must be signed by both banks"
            )

    def describe(self) -> str:
        if self.state is not ContractState.DRAFT:
            return self.state.value
        signed = [
            side
            for side, done in (
                ("buyer", self.buyer_bank_signed),
                ("seller", self.seller_bank_signed),
            )
            if done
        ]
        return f"draft (signed by: {', '.join(signed) or 'no bank'})"


def allowed_contract_events(status: ContractStatus) -> tuple[ContractEvent, ...]:
    """The events ``status`` accepts, in table order: a recorded signature is not asked again."""
    already_signed = {
        ContractEvent.BUYER_BANK_SIGNED: status.buyer_bank_signed,
        ContractEvent.SELLER_BANK_SIGNED: status.seller_bank_signed,
    }
    return tuple(
        event
        for (state, event) in CONTRACT_TRANSITIONS
        if state is status.state and not already_signed.get(event, False)
    )


def apply_contract_event(status: ContractStatus, event: ContractEvent) -> ContractStatus:
    """The contract's status after ``event``, or :class:`ContractTransitionNotAllowed`."""
    allowed = allowed_contract_events(status)
    if event not in allowed:
        raise ContractTransitionNotAllowed(status, event, allowed)
    target = CONTRACT_TRANSITIONS[(status.state, event)]
    if event is ContractEvent.BUYER_BANK_SIGNED or event is ContractEvent.SELLER_BANK_SIGNED:
        buyer = status.buyer_bank_signed or event is ContractEvent.BUYER_BANK_SIGNED
        seller = status.seller_bank_signed or event is ContractEvent.SELLER_BANK_SIGNED
        return ContractStatus(
            state=target if buyer and seller else ContractState.DRAFT,
            buyer_bank_signed=buyer,
            seller_bank_signed=seller,
        )
    return ContractStatus(
        state=target,
        buyer_bank_signed=status.buyer_bank_signed,
        seller_bank_signed=status.seller_bank_signed,
    )


# --- Lot --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LotStatus:
    """A lot's state and, while disputed, the state the dispute was raised in."""

    state: LotState = LotState.NOMINATED
    disputed_from: LotState | None = None

    def __post_init__(self) -> None:
        if self.state is LotState.DISPUTED and self.disputed_from not in DISPUTABLE_LOT_STATES:
            raise IntegrityError(
                "a disputed lot must record the invoice state the dispute was raised in, "
                f"got {self.disputed_from}"
            )
        if self.state is not LotState.DISPUTED and self.disputed_from is not None:
            raise IntegrityError(
                f"a lot in state {self.state.value} must not record a dispute, "
                f"got disputed_from={self.disputed_from.value}"
            )

    def describe(self) -> str:
        if self.disputed_from is None:
            return self.state.value
        return f"{self.state.value} (from {self.disputed_from.value})"


def allowed_lot_events(status: LotStatus) -> tuple[LotEvent, ...]:
    """The events ``status`` accepts, in table order."""
    return tuple(event for (state, event) in LOT_TRANSITIONS if state is status.state)


def apply_lot_event(status: LotStatus, event: LotEvent) -> LotStatus:
    """The lot's status after ``event``, or :class:`LotTransitionNotAllowed`."""
    target = LOT_TRANSITIONS.get((status.state, event))
    if target is None:
        raise LotTransitionNotAllowed(status, event, allowed_lot_events(status))
    if target is STATE_BEFORE_DISPUTE:
        # LotStatus guarantees a disputed lot knows where it came from.
        if status.disputed_from is None:
            raise IntegrityError("a disputed lot must record the state it came from")
        return LotStatus(state=status.disputed_from)
    if not isinstance(target, LotState):
        raise IntegrityError(f"lot transition target must be a state, got {target!r}")
    if target is LotState.DISPUTED:
        return LotStatus(state=target, disputed_from=status.state)
    return LotStatus(state=target)
