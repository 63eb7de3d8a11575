"""The facility state machine: the table, and every pair outside it refused.

The expected table is written out here, independently of the module, so a
change to either shows up as a failure. Then every (state, event) pair of the
cartesian product is tried: the allowed ones give the table's state, every
other one is refused with its evidence and nothing is written.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import grpc
import pytest

from settlement.errors import FailedPrecondition, grpc_status_for
from settlement.loans.states import (
    ACTIVE_STATES,
    TRANSITIONS,
    FacilityEvent,
    FacilityState,
    TransitionNotAllowed,
    allowed_events,
    transition,
)

S = FacilityState
E = FacilityEvent

ACTIVE = (S.SIGNED, S.EFFECTIVE, S.AVAILABLE, S.FULLY_DRAWN, S.AVAILABILITY_EXPIRED, S.REPAYING)

# One row per allowed transition: (from state, event, to state).
EXPECTED_ROWS: tuple[tuple[FacilityState, FacilityEvent, FacilityState], ...] = (
    (S.APPROVED, E.LENDER_SIGNED, S.SIGNED_BY_LENDER),
    (S.APPROVED, E.BORROWER_BANK_SIGNED, S.SIGNED_BY_BORROWER_BANK),
    (S.SIGNED_BY_LENDER, E.BORROWER_BANK_SIGNED, S.SIGNED),
    (S.SIGNED_BY_BORROWER_BANK, E.LENDER_SIGNED, S.SIGNED),
    (S.SIGNED, E.CONDITIONS_PRECEDENT_MET, S.EFFECTIVE),
    (S.EFFECTIVE, E.AVAILABILITY_PERIOD_STARTED, S.AVAILABLE),
    (S.AVAILABLE, E.COMMITMENT_FULLY_DRAWN, S.FULLY_DRAWN),
    (S.AVAILABLE, E.AVAILABILITY_PERIOD_ENDED, S.AVAILABILITY_EXPIRED),
    (S.FULLY_DRAWN, E.REPAYMENT_PERIOD_STARTED, S.REPAYING),
    (S.AVAILABILITY_EXPIRED, E.REPAYMENT_PERIOD_STARTED, S.REPAYING),
    (S.REPAYING, E.FULLY_REPAID, S.CLOSED),
    *((state, E.DEFAULT_DECLARED, S.DEFAULTED) for state in ACTIVE),
    *((state, E.ACCELERATION_DECLARED, S.ACCELERATED) for state in ACTIVE),
    (S.DEFAULTED, E.ACCELERATION_DECLARED, S.ACCELERATED),
    (S.DEFAULTED, E.FULLY_REPAID, S.CLOSED),
    (S.ACCELERATED, E.FULLY_REPAID, S.CLOSED),
)
EXPECTED = {(state, event): target for state, event, target in EXPECTED_ROWS}

ALL_PAIRS = list(itertools.product(FacilityState, FacilityEvent))
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


@dataclass
class FacilityRecord:
    """A stand-in for the stored facility: state and an append-only history."""

    state: FacilityState
    history: list[tuple[FacilityState, FacilityEvent, FacilityState]] = field(default_factory=list)

    def apply(self, event: FacilityEvent) -> None:
        # The service's order: decide first, write only what was decided.
        target = transition(self.state, event)
        self.history.append((self.state, event, target))
        self.state = target


def test_the_table_is_exactly_the_expected_one() -> None:
    actual = {
        (state, event): target
        for state, events in TRANSITIONS.items()
        for event, target in events.items()
    }
    assert actual == EXPECTED
    assert set(TRANSITIONS) == set(FacilityState)
    assert len(EXPECTED_ROWS) == len(EXPECTED)  # no row written twice


def test_the_product_is_every_pair() -> None:
    assert len(ALL_PAIRS) == len(FacilityState) * len(FacilityEvent) == 12 * 10
    assert len(ILLEGAL_PAIRS) == 120 - len(EXPECTED) == 120 - 26


@pytest.mark.parametrize(
    ("state", "event", "target"), EXPECTED_ROWS, ids=[f"{s}-{e}" for s, e, _ in EXPECTED_ROWS]
)
def test_allowed_transition(
    state: FacilityState, event: FacilityEvent, target: FacilityState
) -> None:
    record = FacilityRecord(state)
    record.apply(event)
    assert record.state is target
    assert record.history == [(state, event, target)]


@pytest.mark.parametrize(
    ("state", "event"), ILLEGAL_PAIRS, ids=[f"{s}-{e}" for s, e in ILLEGAL_PAIRS]
)
def test_every_other_pair_is_refused_and_nothing_is_written(
    state: FacilityState, event: FacilityEvent
) -> None:
    record = FacilityRecord(state, history=[(S.APPROVED, E.LENDER_SIGNED, S.SIGNED_BY_LENDER)])
    history_before = list(record.history)

    with pytest.raises(TransitionNotAllowed) as refused:
        record.apply(event)

    error = refused.value
    assert isinstance(error, FailedPrecondition)
    assert error.code == "transition_must_be_allowed"
    assert grpc_status_for(error) is grpc.StatusCode.FAILED_PRECONDITION
    assert error.from_state is state
    assert error.event is event
    assert error.allowed_events == tuple(e for (s, e) in EXPECTED if s is state)
    assert f"event '{event.value}' is not allowed in state '{state.value}'" in error.message
    # Nothing written.
    assert record.state is state
    assert record.history == history_before


def test_refusal_names_the_allowed_events() -> None:
    with pytest.raises(TransitionNotAllowed) as refused:
        transition(S.AVAILABLE, E.FULLY_REPAID)
    assert str(refused.value) == (
        "transition_must_be_allowed: event 'fully_repaid' is not allowed in state 'available'; "
        "allowed events: commitment_fully_drawn, availability_period_ended, default_declared, "
        "acceleration_declared"
    )
    with pytest.raises(TransitionNotAllowed) as refused:
        transition(S.CLOSED, E.LENDER_SIGNED)
    assert refused.value.message.endswith("allowed events: none (final state)")


@pytest.mark.parametrize(
    "signatures",
    [
        (E.LENDER_SIGNED, E.BORROWER_BANK_SIGNED),
        (E.BORROWER_BANK_SIGNED, E.LENDER_SIGNED),
    ],
    ids=["lender-first", "borrower-bank-first"],
)
def test_signing_needs_both_instructions_in_either_order(
    signatures: tuple[FacilityEvent, FacilityEvent],
) -> None:
    record = FacilityRecord(S.APPROVED)
    first, second = signatures
    record.apply(first)
    record.apply(second)
    assert [target for _, _, target in record.history][-1] is S.SIGNED
    assert record.history[0][2] in (S.SIGNED_BY_LENDER, S.SIGNED_BY_BORROWER_BANK)

    half_signed = FacilityRecord(S.APPROVED)
    half_signed.apply(first)
    with pytest.raises(TransitionNotAllowed):
        half_signed.apply(first)  # the same party signing twice is not the other's signature
    assert len(half_signed.history) == 1


def test_the_whole_life_of_a_facility() -> None:
    record = FacilityRecord(S.APPROVED)
    for event in (
        E.LENDER_SIGNED,
        E.BORROWER_BANK_SIGNED,
        E.CONDITIONS_PRECEDENT_MET,
        E.AVAILABILITY_PERIOD_STARTED,
        E.AVAILABILITY_PERIOD_ENDED,
        E.REPAYMENT_PERIOD_STARTED,
        E.FULLY_REPAID,
    ):
        record.apply(event)
    assert [target for _, _, target in record.history] == [
        S.SIGNED_BY_LENDER,
        S.SIGNED,
        S.EFFECTIVE,
        S.AVAILABLE,
        S.AVAILABILITY_EXPIRED,
        S.REPAYING,
        S.CLOSED,
    ]
    assert allowed_events(S.CLOSED) == ()


def test_default_and_acceleration_are_reachable_from_the_active_states_only() -> None:
    assert frozenset(ACTIVE) == ACTIVE_STATES
    for state in FacilityState:
        events = set(allowed_events(state))
        if state in ACTIVE_STATES:
            assert {E.DEFAULT_DECLARED, E.ACCELERATION_DECLARED} <= events
        else:
            assert E.DEFAULT_DECLARED not in events


def test_every_state_is_reachable_from_approved_and_every_path_can_close() -> None:
    reached = {S.APPROVED}
    frontier = [S.APPROVED]
    while frontier:
        state = frontier.pop()
        for target in TRANSITIONS[state].values():
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(FacilityState)
    # closed is reachable from every state the facility can be in after drawing.
    for state in (*ACTIVE, S.DEFAULTED, S.ACCELERATED):
        seen = {state}
        frontier = [state]
        while frontier:
            for target in TRANSITIONS[frontier.pop()].values():
                if target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert S.CLOSED in seen, state
