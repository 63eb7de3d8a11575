"""The offtake contract and lot state machines, as tables.

The expected tables are written out here row by row, independently of the
module's; every (state, event) pair of the cartesian product that is not a row
must be refused with FAILED_PRECONDITION, leaving the status as it was.
"""

from __future__ import annotations

import itertools

import grpc
import pytest

from ledger.errors import IntegrityError
from settlement.errors import FailedPrecondition, grpc_status_for
from settlement.offtake.states import (
    CONTRACT_TRANSITIONS,
    DISPUTABLE_LOT_STATES,
    FINAL_CONTRACT_STATES,
    FINAL_LOT_STATES,
    LOT_TRANSITIONS,
    STATE_BEFORE_DISPUTE,
    ContractEvent,
    ContractState,
    ContractStatus,
    ContractTransitionNotAllowed,
    LotEvent,
    LotState,
    LotStatus,
    LotTransitionNotAllowed,
    allowed_contract_events,
    allowed_lot_events,
    apply_contract_event,
    apply_lot_event,
)

C = ContractState
CE = ContractEvent
L = LotState
LE = LotEvent

# (state, event, next state), in the order of the module docstring.
CONTRACT_TABLE = [
    (C.DRAFT, CE.BUYER_BANK_SIGNED, C.ACTIVE),  # once the seller's bank has signed too
    (C.DRAFT, CE.SELLER_BANK_SIGNED, C.ACTIVE),  # once the buyer's bank has signed too
    (C.DRAFT, CE.TERMINATED, C.TERMINATED),
    (C.ACTIVE, CE.SUSPENDED, C.SUSPENDED),
    (C.ACTIVE, CE.COMPLETED, C.COMPLETED),
    (C.ACTIVE, CE.TERMINATED, C.TERMINATED),
    (C.SUSPENDED, CE.RESUMED, C.ACTIVE),
    (C.SUSPENDED, CE.TERMINATED, C.TERMINATED),
]

LOT_TABLE = [
    (L.NOMINATED, LE.SHIPPED, L.SHIPPED),
    (L.SHIPPED, LE.PROVISIONAL_INVOICE_ISSUED, L.PROVISIONALLY_INVOICED),
    (L.PROVISIONALLY_INVOICED, LE.PROVISIONAL_PAYMENT_RECEIVED, L.PROVISIONALLY_PAID),
    (L.PROVISIONALLY_INVOICED, LE.DISPUTED, L.DISPUTED),
    (L.PROVISIONALLY_PAID, LE.ARRIVED, L.ARRIVED),
    (L.ARRIVED, LE.FINAL_ASSAYS_RECORDED, L.ASSAYED),
    (L.ASSAYED, LE.PRICED, L.PRICED),
    (L.PRICED, LE.FINAL_INVOICE_ISSUED, L.FINALLY_INVOICED),
    (L.FINALLY_INVOICED, LE.SETTLED, L.SETTLED),
    (L.FINALLY_INVOICED, LE.DISPUTED, L.DISPUTED),
    (L.SETTLED, LE.CLOSED, L.CLOSED),
    (L.DISPUTED, LE.DISPUTE_RESOLVED, STATE_BEFORE_DISPUTE),
]


def contract_statuses(state: ContractState) -> list[ContractStatus]:
    """Every valid status in ``state``: a draft may hold either signature or none."""
    if state is C.DRAFT:
        return [
            ContractStatus(C.DRAFT),
            ContractStatus(C.DRAFT, buyer_bank_signed=True),
            ContractStatus(C.DRAFT, seller_bank_signed=True),
        ]
    if state is C.TERMINATED:
        return [ContractStatus(C.TERMINATED), ContractStatus(C.TERMINATED, True, True)]
    return [ContractStatus(state, True, True)]


def lot_statuses(state: LotState) -> list[LotStatus]:
    if state is L.DISPUTED:
        return [LotStatus(L.DISPUTED, disputed_from=origin) for origin in DISPUTABLE_LOT_STATES]
    return [LotStatus(state)]


# --- The tables themselves --------------------------------------------------------------------


def test_contract_table_is_exactly_the_documented_one() -> None:
    assert dict(CONTRACT_TRANSITIONS) == {(s, e): t for s, e, t in CONTRACT_TABLE}
    assert {C.COMPLETED, C.TERMINATED} == FINAL_CONTRACT_STATES


def test_lot_table_is_exactly_the_documented_one() -> None:
    assert dict(LOT_TRANSITIONS) == {(s, e): t for s, e, t in LOT_TABLE}
    assert {L.CLOSED} == FINAL_LOT_STATES
    assert {L.PROVISIONALLY_INVOICED, L.FINALLY_INVOICED} == DISPUTABLE_LOT_STATES


def test_every_non_final_contract_state_can_be_terminated() -> None:
    for state in set(ContractState) - FINAL_CONTRACT_STATES:
        assert (state, CE.TERMINATED) in CONTRACT_TRANSITIONS


# --- Every pair outside the table is refused ---------------------------------------------------

CONTRACT_REFUSED = [
    (state, event)
    for state, event in itertools.product(ContractState, ContractEvent)
    if (state, event) not in {(s, e) for s, e, _ in CONTRACT_TABLE}
]
LOT_REFUSED = [
    (state, event)
    for state, event in itertools.product(LotState, LotEvent)
    if (state, event) not in {(s, e) for s, e, _ in LOT_TABLE}
]


def test_the_refused_pairs_are_the_rest_of_the_product() -> None:
    assert len(CONTRACT_REFUSED) == len(ContractState) * len(ContractEvent) - len(CONTRACT_TABLE)
    assert len(LOT_REFUSED) == len(LotState) * len(LotEvent) - len(LOT_TABLE)
    assert len(CONTRACT_REFUSED) == 5 * 6 - 8
    assert len(LOT_REFUSED) == 11 * 11 - 12


@pytest.mark.parametrize(("state", "event"), CONTRACT_REFUSED, ids=str)
def test_contract_refuses_every_pair_outside_the_table(
    state: ContractState, event: ContractEvent
) -> None:
    for status in contract_statuses(state):
        before = ContractStatus(status.state, status.buyer_bank_signed, status.seller_bank_signed)
        with pytest.raises(ContractTransitionNotAllowed) as raised:
            apply_contract_event(status, event)
        error = raised.value
        assert isinstance(error, FailedPrecondition)
        assert grpc_status_for(error) is grpc.StatusCode.FAILED_PRECONDITION
        assert error.code == "contract_transition_not_allowed"
        assert (error.state, error.event) == (state, event)
        assert error.allowed_events == allowed_contract_events(status)
        assert event not in error.allowed_events
        assert f"state {state.value}" in error.message
        assert f"event {event.value}" in error.message
        assert status == before


@pytest.mark.parametrize(("state", "event"), LOT_REFUSED, ids=str)
def test_lot_refuses_every_pair_outside_the_table(state: LotState, event: LotEvent) -> None:
    for status in lot_statuses(state):
        before = LotStatus(status.state, status.disputed_from)
        with pytest.raises(LotTransitionNotAllowed) as raised:
            apply_lot_event(status, event)
        error = raised.value
        assert isinstance(error, FailedPrecondition)
        assert grpc_status_for(error) is grpc.StatusCode.FAILED_PRECONDITION
        assert error.code == "lot_transition_not_allowed"
        assert (error.state, error.event) == (state, event)
        expected_allowed = tuple(e for s, e, _ in LOT_TABLE if s is state)
        assert error.allowed_events == expected_allowed
        assert f"state {state.value}" in error.message
        assert f"event {event.value}" in error.message
        assert status == before


def test_refusal_message_names_state_event_and_allowed_events() -> None:
    with pytest.raises(LotTransitionNotAllowed) as raised:
        apply_lot_event(LotStatus(L.SHIPPED), LE.ARRIVED)
    assert str(raised.value) == (
        "lot_transition_not_allowed: lot in state shipped does not accept event arrived; "
        "allowed: provisional_invoice_issued"
    )
    with pytest.raises(LotTransitionNotAllowed) as raised:
        apply_lot_event(LotStatus(L.CLOSED), LE.DISPUTED)
    assert raised.value.message.endswith("allowed: none (final state)")
    with pytest.raises(ContractTransitionNotAllowed) as contract_raised:
        apply_contract_event(ContractStatus(C.DRAFT, buyer_bank_signed=True), CE.SUSPENDED)
    assert contract_raised.value.message == (
        "contract in state draft (signed by: buyer) does not accept event suspended; "
        "allowed: seller_bank_signed, terminated"
    )


# --- Every pair in the table is accepted -------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [row for row in CONTRACT_TABLE if row[1] not in (CE.BUYER_BANK_SIGNED, CE.SELLER_BANK_SIGNED)],
    ids=str,
)
def test_contract_accepts_each_row(
    state: ContractState, event: ContractEvent, target: ContractState
) -> None:
    for status in contract_statuses(state):
        after = apply_contract_event(status, event)
        assert after.state is target
        assert (after.buyer_bank_signed, after.seller_bank_signed) == (
            status.buyer_bank_signed,
            status.seller_bank_signed,
        )


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [row for row in LOT_TABLE if row[2] is not STATE_BEFORE_DISPUTE],
    ids=str,
)
def test_lot_accepts_each_row(state: LotState, event: LotEvent, target: LotState) -> None:
    after = apply_lot_event(LotStatus(state), event)
    assert after.state is target
    assert after.disputed_from == (state if target is L.DISPUTED else None)


# --- Contract signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (CE.BUYER_BANK_SIGNED, CE.SELLER_BANK_SIGNED),
        (CE.SELLER_BANK_SIGNED, CE.BUYER_BANK_SIGNED),
    ],
)
def test_contract_is_active_only_when_both_banks_have_signed(
    first: ContractEvent, second: ContractEvent
) -> None:
    draft = ContractStatus()
    half_signed = apply_contract_event(draft, first)
    assert half_signed.state is C.DRAFT
    assert allowed_contract_events(half_signed) == (second, CE.TERMINATED)
    active = apply_contract_event(half_signed, second)
    assert active == ContractStatus(C.ACTIVE, buyer_bank_signed=True, seller_bank_signed=True)
    assert draft == ContractStatus()


@pytest.mark.parametrize("event", [CE.BUYER_BANK_SIGNED, CE.SELLER_BANK_SIGNED])
def test_a_bank_signs_only_once(event: ContractEvent) -> None:
    half_signed = apply_contract_event(ContractStatus(), event)
    with pytest.raises(ContractTransitionNotAllowed) as raised:
        apply_contract_event(half_signed, event)
    assert event not in raised.value.allowed_events
    assert half_signed.state is C.DRAFT


def test_contract_lifecycle() -> None:
    status = ContractStatus()
    for event, state in [
        (CE.BUYER_BANK_SIGNED, C.DRAFT),
        (CE.SELLER_BANK_SIGNED, C.ACTIVE),
        (CE.SUSPENDED, C.SUSPENDED),
        (CE.RESUMED, C.ACTIVE),
        (CE.COMPLETED, C.COMPLETED),
    ]:
        status = apply_contract_event(status, event)
        assert status.state is state
    assert allowed_contract_events(status) == ()


@pytest.mark.parametrize(
    ("state", "buyer_bank_signed", "seller_bank_signed"),
    [
        (C.DRAFT, True, True),  # both signed: it is active
        (C.ACTIVE, True, False),
        (C.SUSPENDED, False, True),
        (C.COMPLETED, False, False),
    ],
)
def test_contract_status_must_match_its_signatures(
    state: ContractState, buyer_bank_signed: bool, seller_bank_signed: bool
) -> None:
    with pytest.raises(IntegrityError):
        ContractStatus(state, buyer_bank_signed, seller_bank_signed)


# --- Lot path and disputes -----------------------------------------------------------------------


def test_lot_happy_path_from_nomination_to_closing() -> None:
    status = LotStatus()
    path = [
        (LE.SHIPPED, L.SHIPPED),
        (LE.PROVISIONAL_INVOICE_ISSUED, L.PROVISIONALLY_INVOICED),
        (LE.PROVISIONAL_PAYMENT_RECEIVED, L.PROVISIONALLY_PAID),
        (LE.ARRIVED, L.ARRIVED),
        (LE.FINAL_ASSAYS_RECORDED, L.ASSAYED),
        (LE.PRICED, L.PRICED),
        (LE.FINAL_INVOICE_ISSUED, L.FINALLY_INVOICED),
        (LE.SETTLED, L.SETTLED),
        (LE.CLOSED, L.CLOSED),
    ]
    for event, state in path:
        status = apply_lot_event(status, event)
        assert status == LotStatus(state)
    assert allowed_lot_events(status) == ()


@pytest.mark.parametrize("origin", [L.PROVISIONALLY_INVOICED, L.FINALLY_INVOICED])
def test_dispute_returns_to_the_state_it_was_raised_in(origin: LotState) -> None:
    disputed = apply_lot_event(LotStatus(origin), LE.DISPUTED)
    assert disputed == LotStatus(L.DISPUTED, disputed_from=origin)
    assert allowed_lot_events(disputed) == (LE.DISPUTE_RESOLVED,)
    assert disputed.describe() == f"disputed (from {origin.value})"
    resolved = apply_lot_event(disputed, LE.DISPUTE_RESOLVED)
    assert resolved == LotStatus(origin)
    # The lot then continues as if the dispute had not happened.
    next_event = (
        LE.PROVISIONAL_PAYMENT_RECEIVED if origin is L.PROVISIONALLY_INVOICED else LE.SETTLED
    )
    assert next_event in allowed_lot_events(resolved)


@pytest.mark.parametrize(
    ("state", "disputed_from"),
    [
        (L.DISPUTED, None),
        (L.DISPUTED, L.SHIPPED),  # only an invoice can be disputed
        (L.DISPUTED, L.DISPUTED),
        (L.PRICED, L.FINALLY_INVOICED),  # only a disputed lot records where it came from
    ],
)
def test_lot_status_must_record_exactly_one_dispute_origin(
    state: LotState, disputed_from: LotState | None
) -> None:
    with pytest.raises(IntegrityError):
        LotStatus(state, disputed_from)
