"""An instruction id names one instruction of its signer, across every kind of write.

The ledger keeps entries of different kinds in different idempotency
namespaces, so the service itself refuses an id its caller already used for an
instruction of another kind (the offline verifier would otherwise report a
duplicate instruction id in the bundle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import grpc
import pytest

from settlement.pki import DevPki
from settlement.v1 import participant_pb2
from tests.grpc.hub_client import (
    OPERATOR,
    HubClient,
    refusal,
    registration,
    running_hub,
    transaction,
    transfer_postings,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[HubClient]:
    with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
        yield client


def test_an_id_used_for_a_registration_cannot_post_a_transaction(hub: HubClient) -> None:
    instruction, _key = registration()
    hub.participants().RegisterParticipant(
        participant_pb2.RegisterParticipantRequest(instruction=hub.sign(instruction)), timeout=30
    )
    payer, payee = hub.funded_pair(OPERATOR, 1_000)
    before = hub.journal_size()
    reused = transaction(
        OPERATOR,
        transfer_postings(payer, payee, 100),
        instruction_id=instruction.instruction_id,
    )
    code, detail = refusal(lambda: hub.write(reused))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert detail.code == "exists_with_different_body"
    assert "instruction_type" in detail.fields
    assert hub.journal_size() == before
