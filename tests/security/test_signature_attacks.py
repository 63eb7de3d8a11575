"""Forged, altered, replayed and truncated signatures: all refused, nothing written.

For every mutating RPC of the Participant, Ledger and Payment services, on
SQLite and PostgreSQL, one valid instruction from a caller who may send it
(:meth:`World.valid_instruction`) is attacked before it is sent genuinely:

- signed with another participant's key;
- signed without the domain-separation prefix (a signature the same key
  made for something else);
- the signature over other bytes (another valid instruction of the type);
- the signature truncated (63, 32, 0 bytes), extended (65), or zeroed;
- a stolen instruction: another participant's genuinely signed instruction
  sent over the caller's own connection (``signer_must_be_caller``).

- its bytes under a new id, with the signature of the original.

Each is refused (UNAUTHENTICATED ``signature_invalid``, or PERMISSION_DENIED
``signer_must_be_caller``) and writes nothing. Then the genuine instruction
commits, and after that: its bytes under a new id with the old signature
are refused again (by the signature, or by a rule the original now breaks),
and the identical request is answered ALREADY_EXISTED with the original
receipt, writing nothing again.

Further: a key outside its validity range (rotated out) is refused while
the new key works, and an identical retry signed before the rotation is
still answered; bytes signed as one instruction type are refused by every
other RPC; a batch item signed by another key fails alone (or fails the
linked batch), and a batch whose own signature is forged is refused.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from ledger.keys import public_key_bytes
from settlement.instructions import canonical_bytes
from settlement.v1 import common_pb2, ledger_pb2, participant_pb2
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    OPERATOR,
    create_account,
    new_id,
    transaction,
    transfer_postings,
)
from tests.security.world import (
    FX,
    PK,
    US,
    Outcome,
    Rpc,
    World,
    call,
    outcome,
    registered_rpcs,
    rotate_instruction,
    void_pending_instruction,
)

SIGNING_PREFIX = b"settlement.v1/signed-instruction\n"

CALLER = {
    "ParticipantService": OPERATOR,
    "CreateAccount": OPERATOR,
    "CreateTransaction": PK,
    "CreateTransactionBatch": PK,
    "PostPendingTransaction": PK,
    "VoidPendingTransaction": PK,
    "ReverseTransaction": PK,
    "PublishRate": FX,
    "RequestQuote": US,
    "SubmitPayment": US,
    "ImportPacs008": US,
    "ReviewPayment": OPERATOR,
}

WRITE_RPCS = [
    rpc
    for rpc in registered_rpcs()
    if rpc.mutating
    and (rpc.name in CALLER or rpc.descriptor.containing_service.name in CALLER)
    and rpc.name != "CreateTransactionBatch"
]

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def caller_of(rpc: Rpc) -> str:
    return CALLER.get(rpc.name) or CALLER[rpc.descriptor.containing_service.name]


def other_than(who: str) -> str:
    return US if who != US else PK


def attempt(world: World, rpc: Rpc, who: str, payload: bytes, signature: bytes) -> Outcome:
    request = rpc.request_type(
        instruction=common_pb2.SignedInstruction(instruction=payload, signature=signature)
    )
    return outcome(lambda: call(world.channel(who), rpc, request))


def refused(world: World, rpc: Rpc, who: str, payload: bytes, signature: bytes) -> Outcome:
    before = world.digest()
    got = attempt(world, rpc, who, payload, signature)
    assert world.digest() == before, f"{rpc.short}: refused but written ({got})"
    return got


def with_new_id(payload: bytes, who: str) -> bytes:
    document = json.loads(payload)
    document["instruction_id"] = new_id(who)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("rpc", WRITE_RPCS, ids=lambda rpc: rpc.short)
def test_signature_attacks(world: World, rpc: Rpc, figures: dict[str, dict[str, Any]]) -> None:
    who = caller_of(rpc)
    key = world.client.keys[who]
    genuine = world.valid_instruction(rpc.path, who, who)
    payload = canonical_bytes(genuine)
    signature = key.sign(SIGNING_PREFIX + payload)
    other = canonical_bytes(world.valid_instruction(rpc.path, who, who))
    thief = other_than(who)
    attacks: dict[str, tuple[str, bytes, bytes]] = {
        "another participant's key": (
            who,
            payload,
            world.client.keys[thief].sign(SIGNING_PREFIX + payload),
        ),
        "no domain prefix": (who, payload, key.sign(payload)),
        "signature over other bytes": (who, other, signature),
        "truncated to 63 bytes": (who, payload, signature[:63]),
        "truncated to 32 bytes": (who, payload, signature[:32]),
        "empty": (who, payload, b""),
        "extended to 65 bytes": (who, payload, signature + b"\x00"),
        "zeroed": (who, payload, bytes(64)),
        "stolen by another participant": (thief, payload, signature),
        "the signed bytes under a new id": (who, with_new_id(payload, who), signature),
    }
    failures = []
    for name, (sender, sent, sent_signature) in attacks.items():
        got = refused(world, rpc, sender, sent, sent_signature)
        wanted = (
            (DENIED, {"signer_must_be_caller", "role_must_permit"})
            if sender != who
            else (UNAUTHENTICATED, {"signature_invalid"})
        )
        if name == "the signed bytes under a new id" and rpc.name == "OpenSettlementAccount":
            # Its id is not free: "settlement:<participant>:<currency>" (participant.proto).
            wanted = (grpc.StatusCode.INVALID_ARGUMENT, {"instruction_id_must_be_account_id"})
        if got.status is not wanted[0] or got.code not in wanted[1]:
            failures.append(f"{name}: {got} {got.details!r}")
    assert failures == [], f"{rpc.short}: {failures}"

    size = world.journal_size()
    first = attempt(world, rpc, who, payload, signature)
    assert first.status is grpc.StatusCode.OK, f"{rpc.short}: the genuine call failed: {first}"
    assert world.journal_size() > size
    response: Any = first.responses[0]
    assert response.result.status == common_pb2.COMMIT_STATUS_CREATED

    # Replayed under a new id after it committed: refused (by the signature, or by a
    # rule the committed original now breaks, like uetr_taken), nothing written.
    got = refused(world, rpc, who, with_new_id(payload, who), signature)
    assert got.status is not grpc.StatusCode.OK, (rpc.short, got)
    assert got.has_detail, (rpc.short, got)

    before = world.digest()
    again = attempt(world, rpc, who, payload, signature)
    assert again.status is grpc.StatusCode.OK, (rpc.short, again)
    replayed: Any = again.responses[0]
    assert replayed.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert replayed.result.receipt == response.result.receipt
    assert world.digest() == before, f"{rpc.short}: a replay wrote something"
    section = figures.setdefault(f"signature attacks ({world.backend})", {})
    section["attacks refused"] = section.get("attacks refused", 0) + len(attacks) + 1
    section["RPCs attacked"] = section.get("RPCs attacked", 0) + 1


def test_key_outside_its_validity_range(world: World) -> None:
    """A rotated-out key signs nothing new; an identical retry of its old instruction answers."""
    bank = world.new_identity()
    payer = world.client.account(bank.participant_id, debits_must_not_exceed_credits=True)
    payee = world.client.account(bank.participant_id)
    world.client.give(payer, 1_000)
    ledger_stub = ledger_pb2_grpc_stub(bank.channel)

    def send(instruction: Message, key: Any) -> Any:
        body = canonical_bytes(instruction)
        request = ledger_pb2.CreateTransactionRequest(
            instruction=common_pb2.SignedInstruction(
                instruction=body, signature=key.sign(SIGNING_PREFIX + body)
            )
        )
        return ledger_stub.CreateTransaction(request, timeout=CALL_TIMEOUT_SECONDS)

    before_rotation = transaction(bank.participant_id, transfer_postings(payer, payee, 1))
    committed = send(before_rotation, bank.key)
    assert committed.result.status == common_pb2.COMMIT_STATUS_CREATED

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    new_key = Ed25519PrivateKey.generate()
    rotation = rotate_instruction(OPERATOR, bank.participant_id)
    rotation.signing_public_key = public_key_bytes(new_key)
    world.client.participants().RotateSigningKey(
        participant_pb2.RotateSigningKeyRequest(instruction=world.sign(rotation)),
        timeout=CALL_TIMEOUT_SECONDS,
    )

    stale = transaction(bank.participant_id, transfer_postings(payer, payee, 2))
    before = world.digest()
    with pytest.raises(grpc.RpcError) as raised:
        send(stale, bank.key)
    error: Any = raised.value
    assert error.code() is UNAUTHENTICATED
    assert error.details().startswith("signature_invalid: ")
    assert world.digest() == before

    retried = send(before_rotation, bank.key)
    assert retried.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert retried.result.receipt == committed.result.receipt
    assert send(stale, new_key).result.status == common_pb2.COMMIT_STATUS_CREATED


def ledger_pb2_grpc_stub(channel: grpc.Channel) -> Any:
    from settlement.v1 import ledger_pb2_grpc

    return ledger_pb2_grpc.LedgerServiceStub(channel)


def test_signed_bytes_mean_one_instruction_type(world: World) -> None:
    """A signed void, sent to any other write RPC, is refused: a signature binds one meaning."""
    pending = world.pending_transaction(PK)
    body = canonical_bytes(void_pending_instruction(PK, pending))
    signature = world.client.keys[PK].sign(SIGNING_PREFIX + body)
    for rpc in registered_rpcs():
        if not rpc.mutating or rpc.name in ("VoidPendingTransaction", "CreateTransactionBatch"):
            continue
        got = refused(world, rpc, PK, body, signature)
        assert got.status in (grpc.StatusCode.INVALID_ARGUMENT, DENIED), (rpc.short, got)
        if got.status is grpc.StatusCode.INVALID_ARGUMENT:
            assert got.code in ("instruction_type_must_match", "instruction_must_parse"), got


def test_batch_signatures(world: World) -> None:
    """A forged item fails alone (or fails its linked batch); a forged batch is refused."""
    payer, payee = world.pairs[PK]
    honest = transaction(PK, transfer_postings(payer, payee, 1))
    forged = transaction(PK, transfer_postings(payer, payee, 2))
    key, thief_key = world.client.keys[PK], world.client.keys[US]
    items = []
    for item, signer_key in ((honest, key), (forged, thief_key)):
        body = canonical_bytes(item)
        items.append(
            common_pb2.SignedInstruction(
                instruction=body, signature=signer_key.sign(SIGNING_PREFIX + body)
            )
        )
    import hashlib

    stub = world.client.ledger(PK)
    for linked in (True, False):
        batch = ledger_pb2.TransactionBatchInstruction(
            instruction_id=new_id(PK),
            participant_id=PK,
            instruction_type="settlement.v1.TransactionBatchInstruction",
            linked=linked,
            item_sha256=[hashlib.sha256(item.instruction).digest() for item in items],
        )
        body = canonical_bytes(batch)
        size = world.journal_size()
        forged_batch = ledger_pb2.CreateTransactionBatchRequest(
            instruction=common_pb2.SignedInstruction(
                instruction=body, signature=thief_key.sign(SIGNING_PREFIX + body)
            ),
            items=items,
        )
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateTransactionBatch(forged_batch, timeout=CALL_TIMEOUT_SECONDS)
        error: Any = raised.value
        assert error.code() is UNAUTHENTICATED
        assert world.journal_size() == size
        request = ledger_pb2.CreateTransactionBatchRequest(
            instruction=common_pb2.SignedInstruction(
                instruction=body, signature=key.sign(SIGNING_PREFIX + body)
            ),
            items=items,
        )
        results = stub.CreateTransactionBatch(request, timeout=CALL_TIMEOUT_SECONDS).results
        assert results[1].status == common_pb2.COMMIT_STATUS_FAILED
        assert results[1].error.code == "signature_invalid"
        if linked:
            assert results[0].status == common_pb2.COMMIT_STATUS_FAILED
            assert world.journal_size() == size
        else:
            assert results[0].status == common_pb2.COMMIT_STATUS_CREATED
            assert world.journal_size() == size + 1
        honest = transaction(PK, transfer_postings(payer, payee, 1))
        forged = transaction(PK, transfer_postings(payer, payee, 2))
        items = []
        for item, signer_key in ((honest, key), (forged, thief_key)):
            item_body = canonical_bytes(item)
            items.append(
                common_pb2.SignedInstruction(
                    instruction=item_body, signature=signer_key.sign(SIGNING_PREFIX + item_body)
                )
            )


def test_account_creation_signed_by_a_bank_is_not_an_operator_write(world: World) -> None:
    """A bank's key cannot stand in for the operator's, even with the operator's name on it."""
    instruction = create_account(PK)
    body = canonical_bytes(instruction)
    rpc = next(rpc for rpc in registered_rpcs() if rpc.name == "CreateAccount")
    got = refused(world, rpc, OPERATOR, body, world.client.keys[PK].sign(SIGNING_PREFIX + body))
    assert (got.status, got.code) == (UNAUTHENTICATED, "signature_invalid")
