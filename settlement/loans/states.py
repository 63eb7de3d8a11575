"""A facility's life as an explicit transition table.

::

    approved --lender_signed--------> signed_by_lender --borrower_bank_signed--+
    approved --borrower_bank_signed-> signed_by_borrower_bank --lender_signed--+-> signed
    signed --conditions_precedent_met--> effective
    effective --availability_period_started--> available
    available --commitment_fully_drawn--> fully_drawn
    available --availability_period_ended--> availability_expired (undrawn cancelled)
    fully_drawn | availability_expired --repayment_period_started--> repaying
    repaying --fully_repaid--> closed
    active state --default_declared--> defaulted
    active state | defaulted --acceleration_declared--> accelerated
    defaulted | accelerated --fully_repaid--> closed

Activation needs both signed instructions, the lender's and the borrower's
bank's, in either order: the two half-signed states record which one came
first, so a second signature by the same party is refused like any other
event the table does not list. The active states (from which default and
acceleration are reachable) are ``signed``, ``effective``, ``available``,
``fully_drawn``, ``availability_expired`` and ``repaying``. ``closed`` is
final. A waiver of a default would need the state before it and is not
modelled here.

A disbursement does not change the state (``available`` stays ``available``
until the commitment is fully drawn); :mod:`settlement.loans.disbursement`
checks it.

:func:`transition` is pure: it returns the next state or raises
:class:`TransitionNotAllowed` before the caller writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from settlement.errors import FailedPrecondition


class FacilityState(StrEnum):
    APPROVED = "approved"
    SIGNED_BY_LENDER = "signed_by_lender"
    SIGNED_BY_BORROWER_BANK = "signed_by_borrower_bank"
    SIGNED = "signed"
    EFFECTIVE = "effective"
    AVAILABLE = "available"
    FULLY_DRAWN = "fully_drawn"
    AVAILABILITY_EXPIRED = "availability_expired"
    REPAYING = "repaying"
    DEFAULTED = "defaulted"
    ACCELERATED = "accelerated"
    CLOSED = "closed"


class FacilityEvent(StrEnum):
    LENDER_SIGNED = "lender_signed"
    BORROWER_BANK_SIGNED = "borrower_bank_signed"
    CONDITIONS_PRECEDENT_MET = "conditions_precedent_met"
    AVAILABILITY_PERIOD_STARTED = "availability_period_started"
    COMMITMENT_FULLY_DRAWN = "commitment_fully_drawn"
    AVAILABILITY_PERIOD_ENDED = "availability_period_ended"
    REPAYMENT_PERIOD_STARTED = "repayment_period_started"
    FULLY_REPAID = "fully_repaid"
    DEFAULT_DECLARED = "default_declared"
    ACCELERATION_DECLARED = "acceleration_declared"


State = FacilityState
Event = FacilityEvent

ACTIVE_STATES: Final = frozenset(
    {
        State.SIGNED,
        State.EFFECTIVE,
        State.AVAILABLE,
        State.FULLY_DRAWN,
        State.AVAILABILITY_EXPIRED,
        State.REPAYING,
    }
)
"""States from which an event of default or acceleration may be declared."""

DEFAULT_STATES: Final = frozenset({State.DEFAULTED, State.ACCELERATED})
"""States in which no disbursement is made."""

_ENFORCEMENT: Final[Mapping[Event, State]] = {
    Event.DEFAULT_DECLARED: State.DEFAULTED,
    Event.ACCELERATION_DECLARED: State.ACCELERATED,
}

TRANSITIONS: Final[Mapping[State, Mapping[Event, State]]] = MappingProxyType(
    {
        State.APPROVED: MappingProxyType(
            {
                Event.LENDER_SIGNED: State.SIGNED_BY_LENDER,
                Event.BORROWER_BANK_SIGNED: State.SIGNED_BY_BORROWER_BANK,
            }
        ),
        State.SIGNED_BY_LENDER: MappingProxyType({Event.BORROWER_BANK_SIGNED: State.SIGNED}),
        State.SIGNED_BY_BORROWER_BANK: MappingProxyType({Event.LENDER_SIGNED: State.SIGNED}),
        State.SIGNED: MappingProxyType(
            {Event.CONDITIONS_PRECEDENT_MET: State.EFFECTIVE, **_ENFORCEMENT}
        ),
        State.EFFECTIVE: MappingProxyType(
            {Event.AVAILABILITY_PERIOD_STARTED: State.AVAILABLE, **_ENFORCEMENT}
        ),
        State.AVAILABLE: MappingProxyType(
            {
                Event.COMMITMENT_FULLY_DRAWN: State.FULLY_DRAWN,
                Event.AVAILABILITY_PERIOD_ENDED: State.AVAILABILITY_EXPIRED,
                **_ENFORCEMENT,
            }
        ),
        State.FULLY_DRAWN: MappingProxyType(
            {Event.REPAYMENT_PERIOD_STARTED: State.REPAYING, **_ENFORCEMENT}
        ),
        State.AVAILABILITY_EXPIRED: MappingProxyType(
            {Event.REPAYMENT_PERIOD_STARTED: State.REPAYING, **_ENFORCEMENT}
        ),
        State.REPAYING: MappingProxyType({Event.FULLY_REPAID: State.CLOSED, **_ENFORCEMENT}),
        State.DEFAULTED: MappingProxyType(
            {Event.ACCELERATION_DECLARED: State.ACCELERATED, Event.FULLY_REPAID: State.CLOSED}
        ),
        State.ACCELERATED: MappingProxyType({Event.FULLY_REPAID: State.CLOSED}),
        State.CLOSED: MappingProxyType({}),
    }
)
"""Every allowed transition: ``TRANSITIONS[state][event]`` is the next state."""


class TransitionNotAllowed(FailedPrecondition):
    """The event is not allowed in the facility's state; the evidence is attached."""

    code = "transition_must_be_allowed"

    def __init__(self, from_state: State, event: Event, allowed_events: tuple[Event, ...]) -> None:
        allowed = ", ".join(allowed_events) if allowed_events else "none (final state)"
        super().__init__(
            f"event {event.value!r} is not allowed in state {from_state.value!r}; "
            f"allowed events: {allowed}"
        )
        self.from_state = from_state
        self.event = event
        self.allowed_events = allowed_events


def allowed_events(state: State) -> tuple[Event, ...]:
    """The events the state accepts, in the table's order."""
    return tuple(TRANSITIONS[state])


def transition(state: State, event: Event) -> State:
    """The state after ``event``, or :class:`TransitionNotAllowed`."""
    target = TRANSITIONS[state].get(event)
    if target is None:
        raise TransitionNotAllowed(state, event, allowed_events(state))
    return target
