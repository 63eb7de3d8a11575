"""The clients' own signing (clients/signing.py) and the clients' import rule.

- The worked example of common.proto, byte for byte, and its signature.
- The same bytes as the hub's encoder for every kind of field (defaults
  omitted, ``optional`` zero kept, int64 as strings, enums by name, bytes as
  base64, nested and repeated messages, non-ASCII text).
- A round trip through a running hub: instructions signed by the client code
  are accepted and stored verbatim in the journal.
- The import rule of DESIGN.md section 1: every client module, imported in a
  fresh interpreter, loads no server module, no store and none of the
  service's other dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from google.protobuf import json_format
from google.protobuf.message import Message

from clients import signing
from ledger.signing import verify_instruction
from settlement.instructions import canonical_bytes as hub_canonical_bytes
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    participant_pb2,
    payment_pb2,
)
from tests.clients.conftest import CALL_TIMEOUT_SECONDS, Operator

ROOT = Path(__file__).resolve().parents[2]

# --- common.proto, "Worked example" --------------------------------------------------------

RFC8032_TEST1_PRIVATE = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
RFC8032_TEST1_PUBLIC = bytes.fromhex(
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)
WORKED_BODY = (
    b'{"code":"TRANSFER","instruction_id":"HUBOPS:0b5c2f6e-7a52-4f27-9a4e-3f0b8f6f2c11",'
    b'"instruction_type":"settlement.v1.TransactionInstruction",'
    b'"metadata":"{\\"purpose\\":\\"prefunding top-up\\"}","participant_id":"HUBOPS",'
    b'"postings":[{"account_id":"settlement:BOFAUS3N:USD","amount_minor":"1250000",'
    b'"currency":"USD","side":"SIDE_DEBIT"},{"account_id":"settlement:HABBPKKA:USD",'
    b'"amount_minor":"1250000","currency":"USD","side":"SIDE_CREDIT"}],'
    b'"reference":"eb6305c9-1f7f-49de-aed0-16487c27b42d"}'
)
WORKED_SIGNATURE = bytes.fromhex(
    "890723219d03ea64076b6c32a539d98686ab2f63abdafd69e15ea4897069204b"
    "cc25af1e3f9c2532d4738e65d3e8eae28920048df75b686bdb4bb6e51866d003"
)


def worked_instruction() -> ledger_pb2.TransactionInstruction:
    return ledger_pb2.TransactionInstruction(
        instruction_id="HUBOPS:0b5c2f6e-7a52-4f27-9a4e-3f0b8f6f2c11",
        participant_id="HUBOPS",
        instruction_type=signing.instruction_type(ledger_pb2.TransactionInstruction),
        postings=[
            ledger_pb2.Posting(
                account_id="settlement:BOFAUS3N:USD",
                side=ledger_pb2.SIDE_DEBIT,
                amount_minor=1250000,
                currency="USD",
            ),
            ledger_pb2.Posting(
                account_id="settlement:HABBPKKA:USD",
                side=ledger_pb2.SIDE_CREDIT,
                amount_minor=1250000,
                currency="USD",
            ),
        ],
        code="TRANSFER",
        reference="eb6305c9-1f7f-49de-aed0-16487c27b42d",
        metadata='{"purpose":"prefunding top-up"}',
    )


def test_worked_example_body_is_reproduced_byte_for_byte() -> None:
    body = signing.canonical_bytes(worked_instruction())
    assert len(WORKED_BODY) == 486
    assert body == WORKED_BODY


def test_worked_example_signature_is_reproduced() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_PRIVATE)
    assert signing.public_key_bytes(key) == RFC8032_TEST1_PUBLIC
    signed = signing.sign(worked_instruction(), key)
    assert signed.instruction == WORKED_BODY
    assert signed.signature == WORKED_SIGNATURE
    Ed25519PublicKey.from_public_bytes(RFC8032_TEST1_PUBLIC).verify(
        WORKED_SIGNATURE, b"settlement.v1/signed-instruction\n" + WORKED_BODY
    )


def test_the_context_prefix_is_33_bytes_ending_in_a_line_feed() -> None:
    assert signing.INSTRUCTION_CONTEXT == b"settlement.v1/signed-instruction\n"
    assert len(signing.INSTRUCTION_CONTEXT) == 33


# --- Same bytes as the hub's encoder, field kind by field kind --------------------------------

ENCODING_CASES: list[tuple[str, Message, bytes | None]] = [
    (
        "defaults omitted, optional zero kept",
        ledger_pb2.PostPendingInstruction(
            instruction_id="bank-us:1",
            participant_id="bank-us",
            instruction_type="settlement.v1.PostPendingInstruction",
            pending_transaction_id="t-1",
            amount_minor=0,
        ),
        b'{"amount_minor":"0","instruction_id":"bank-us:1",'
        b'"instruction_type":"settlement.v1.PostPendingInstruction",'
        b'"participant_id":"bank-us","pending_transaction_id":"t-1"}',
    ),
    (
        "optional unset is omitted",
        ledger_pb2.PostPendingInstruction(
            instruction_id="bank-us:2",
            participant_id="bank-us",
            instruction_type="settlement.v1.PostPendingInstruction",
            pending_transaction_id="t-1",
        ),
        b'{"instruction_id":"bank-us:2",'
        b'"instruction_type":"settlement.v1.PostPendingInstruction",'
        b'"participant_id":"bank-us","pending_transaction_id":"t-1"}',
    ),
    (
        "bytes as padded base64, enum by name",
        participant_pb2.RegisterParticipantInstruction(
            instruction_id="operator:r",
            participant_id="operator",
            instruction_type="settlement.v1.RegisterParticipantInstruction",
            target_participant_id="bank-xx",
            role=participant_pb2.ROLE_BANK,
            signing_public_key=bytes(range(32)),
        ),
        b'{"instruction_id":"operator:r",'
        b'"instruction_type":"settlement.v1.RegisterParticipantInstruction",'
        b'"participant_id":"operator","role":"ROLE_BANK",'
        b'"signing_public_key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",'
        b'"target_participant_id":"bank-xx"}',
    ),
    (
        "uint32 as a number, int64 as a string",
        payment_pb2.RequestQuoteInstruction(
            instruction_id="bank-us:q",
            participant_id="bank-us",
            instruction_type="settlement.v1.RequestQuoteInstruction",
            fx_provider_id="fx-provider",
            source_currency="USD",
            target_currency="PKR",
            fixed_side=payment_pb2.FIXED_SIDE_SEND,
            amount_minor=9_007_199_254_740_993,
            expiry_seconds=600,
        ),
        b'{"amount_minor":"9007199254740993","expiry_seconds":600,'
        b'"fixed_side":"FIXED_SIDE_SEND","fx_provider_id":"fx-provider",'
        b'"instruction_id":"bank-us:q","instruction_type":"settlement.v1.RequestQuoteInstruction",'
        b'"participant_id":"bank-us","source_currency":"USD","target_currency":"PKR"}',
    ),
    (
        "nested messages, repeated strings, non-ASCII text",
        payment_pb2.PaymentInstruction(
            instruction_id="bank-pk:p",
            participant_id="bank-pk",
            instruction_type="settlement.v1.PaymentInstruction",
            uetr="eb6305c9-1f7f-49de-aed0-16487c27b42d",
            end_to_end_id="E2E-1",
            amount=common_pb2.Money(amount_minor=100, currency="PKR"),
            debtor=payment_pb2.Party(
                name="Muhammad Ali Jinnah Traders \u0645\u062d\u0645\u062f",
                iban="PK36SCBL0000001123456702",
                country="PK",
                address_lines=["Shahrah-e-Faisal", "Karachi \u2014 75350"],
            ),
            creditor=payment_pb2.Party(name='Quote " and \\ backslash', country="US"),
            creditor_agent_id="bank-us",
            charge_bearer=payment_pb2.CHARGE_BEARER_SHAR,
        ),
        None,
    ),
]


@pytest.mark.parametrize(
    ("message", "expected"),
    [(message, expected) for _, message, expected in ENCODING_CASES],
    ids=[name for name, _, _ in ENCODING_CASES],
)
def test_client_bytes_equal_the_hubs(message: Message, expected: bytes | None) -> None:
    ours = signing.canonical_bytes(message)
    assert ours == hub_canonical_bytes(message)
    # And an independent RFC 8785 implementation agrees on the same document.
    document = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert ours == rfc8785.dumps(document)
    if expected is not None:
        assert ours == expected


def test_signature_verifies_with_the_ledgers_verifier() -> None:
    key = Ed25519PrivateKey.generate()
    _, message, _ = ENCODING_CASES[-1]
    signed = signing.sign(message, key)
    verify_instruction(signing.public_key_bytes(key), signed.instruction, signed.signature)


def test_instruction_ids_are_fresh_and_valid() -> None:
    first, second = signing.new_instruction_id("bank-us"), signing.new_instruction_id("bank-us")
    assert first != second
    assert first.startswith("bank-us:")
    with pytest.raises(signing.SigningError, match="printable ASCII"):
        signing.check_instruction_id("has space")
    with pytest.raises(signing.SigningError, match=r"1\.\.128"):
        signing.check_instruction_id("x" * 129)


# --- Key files -----------------------------------------------------------------------------------


def _write_key(path: Path, mode: int) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(mode)
    return key


def test_signing_key_loads_from_a_private_pem(tmp_path: Path) -> None:
    key = _write_key(tmp_path / "signing.private.pem", 0o600)
    loaded = signing.load_signing_key(tmp_path / "signing.private.pem")
    assert signing.public_key_bytes(loaded) == signing.public_key_bytes(key)


def test_signing_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    _write_key(tmp_path / "k.pem", 0o644)
    with pytest.raises(signing.SigningError, match="chmod 600"):
        signing.load_signing_key(tmp_path / "k.pem")


def test_signing_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.bin"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(signing.SigningError, match="neither"):
        signing.load_signing_key(path)


# --- Round trip through a running hub -------------------------------------------------------------


def test_hub_accepts_client_signed_instructions_and_keeps_the_bytes(operator: Operator) -> None:
    """An operator's registration and a bank's own transaction, both signed by clients/signing."""
    operator_key = signing.load_signing_key(
        operator.pki.participant("operator").signing_private_key_path
    )
    bank_key = signing.load_signing_key(
        operator.pki.participant("bank-us").signing_private_key_path
    )
    account = "settlement:bank-us:USD"
    operator.fund(account, 10_000, "USD")

    instruction = ledger_pb2.TransactionInstruction(
        instruction_id=signing.new_instruction_id("bank-us"),
        participant_id="bank-us",
        instruction_type=signing.instruction_type(ledger_pb2.TransactionInstruction),
        postings=[
            ledger_pb2.Posting(
                account_id=account, side=ledger_pb2.SIDE_DEBIT, amount_minor=25, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=account, side=ledger_pb2.SIDE_CREDIT, amount_minor=25, currency="USD"
            ),
        ],
        code="SELF",
        reference="client signing round trip \u00e9",
        metadata='{"n":1}',
    )
    signed = signing.sign(instruction, bank_key)
    request = ledger_pb2.CreateTransactionRequest(instruction=signed)
    response = operator.ledger("bank-us").CreateTransaction(request, timeout=CALL_TIMEOUT_SECONDS)
    assert response.result.status == common_pb2.COMMIT_STATUS_CREATED
    assert response.transaction.signed_instruction.instruction == signed.instruction
    assert response.transaction.signed_instruction.signature == signed.signature
    again = operator.ledger("bank-us").CreateTransaction(request, timeout=CALL_TIMEOUT_SECONDS)
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert again.result.receipt == response.result.receipt

    registration = participant_pb2.RotateSigningKeyInstruction(
        instruction_id=signing.new_instruction_id("operator"),
        participant_id="operator",
        instruction_type=signing.instruction_type(participant_pb2.RotateSigningKeyInstruction),
        target_participant_id="auditor",  # signs nothing in these tests
        signing_public_key=signing.public_key_bytes(Ed25519PrivateKey.generate()),
    )
    rotated = operator.participants().RotateSigningKey(
        participant_pb2.RotateSigningKeyRequest(
            instruction=signing.sign(registration, operator_key)
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert rotated.result.status == common_pb2.COMMIT_STATUS_CREATED


def test_hub_refuses_a_non_canonical_spelling_of_the_same_instruction(operator: Operator) -> None:
    """The other side of the round trip: the hub checks the form, so ours must be exact."""
    bank_key = signing.load_signing_key(
        operator.pki.participant("bank-us").signing_private_key_path
    )
    account = "settlement:bank-us:USD"
    instruction = ledger_pb2.TransactionInstruction(
        instruction_id=signing.new_instruction_id("bank-us"),
        participant_id="bank-us",
        instruction_type=signing.instruction_type(ledger_pb2.TransactionInstruction),
        postings=[
            ledger_pb2.Posting(
                account_id=account, side=ledger_pb2.SIDE_DEBIT, amount_minor=1, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=account, side=ledger_pb2.SIDE_CREDIT, amount_minor=1, currency="USD"
            ),
        ],
    )
    spaced = json.dumps(json.loads(signing.canonical_bytes(instruction)), indent=1).encode()
    request = ledger_pb2.CreateTransactionRequest(
        instruction=common_pb2.SignedInstruction(
            instruction=spaced, signature=bank_key.sign(signing.signed_message(spaced))
        )
    )
    with pytest.raises(grpc.RpcError) as raised:
        operator.ledger("bank-us").CreateTransaction(request, timeout=CALL_TIMEOUT_SECONDS)
    error: grpc.Call = raised.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("json_must_be_canonical: ")


# --- The import rule ---------------------------------------------------------------------------

CLIENT_MODULES = tuple(
    sorted(
        f"clients.{path.stem}"
        for path in (ROOT / "clients").glob("*.py")
        if path.stem != "__init__"
    )
)
"""Every module of clients/, found on disk: a new client is held to the rule too."""


ALLOWED_LEDGER_MODULES = frozenset(
    {
        "ledger",
        "ledger.verify",
        "ledger.bundle",
        "ledger.checkpoint",
        "ledger.note",
        "ledger.merkle",
        # Standard library only, imported by the modules above (and by
        # clients/signing.py for RFC 8785).
        "ledger.canonical",
        "ledger.errors",
        "ledger.signing",
    }
)

ALLOWED_DEPENDENCIES = {
    "grpcio": "grpc",
    "protobuf": "google.protobuf",
    "cryptography": "cryptography",
    "tqdm": "tqdm",
    # `import grpc` itself loads these two, as grpc.health and grpc.reflection.
    "grpcio-health-checking": "grpc_health",
    "grpcio-reflection": "grpc_reflection",
}
"""Project dependencies a client may import (by distribution name)."""

FORBIDDEN_DEPENDENCIES = {
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "psycopg[binary]": "psycopg",
    "structlog": "structlog",
    "prometheus-client": "prometheus_client",
    "schwifty": "schwifty",
    "python-stdnum": "stdnum",
    "rapidfuzz": "rapidfuzz",
    "xmlschema": "xmlschema",
    "defusedxml": "defusedxml",
    "pycountry": "pycountry",
}
"""Every other dependency of the project, by the name it is imported as: the service's."""


def _dependency_names() -> set[str]:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = set()
    for requirement in document["project"]["dependencies"]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip()
        names.add(name.lower())
    return names


def test_every_project_dependency_is_classified_for_the_import_rule() -> None:
    """A new dependency must be listed as allowed or forbidden for the clients."""
    assert _dependency_names() == set(ALLOWED_DEPENDENCIES) | set(FORBIDDEN_DEPENDENCIES)


def _forbidden(module: str) -> bool:
    if module in {"settlement", "settlement.v1"} or module.startswith("settlement.v1."):
        return False
    if module.startswith("settlement."):
        return True
    if module == "ledger" or module.startswith("ledger."):
        return module not in ALLOWED_LEDGER_MODULES
    top = module.split(".", maxsplit=1)[0]
    return top in set(FORBIDDEN_DEPENDENCIES.values())


@pytest.mark.parametrize("module", CLIENT_MODULES)
def test_client_imports_only_the_api_the_verifier_and_the_allowed_libraries(module: str) -> None:
    """DESIGN.md section 1: clients speak to the hub only over gRPC."""
    program = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert module in loaded
    forbidden = [name for name in loaded if _forbidden(name)]
    assert forbidden == [], f"{module} loads {forbidden}"


def test_the_reference_clients_are_all_found() -> None:
    assert {
        "clients.common",
        "clients.signing",
        "clients.bank",
        "clients.us_bank",
        "clients.pk_bank",
        "clients.auditor",
    } <= set(CLIENT_MODULES)


def test_the_rule_itself_catches_a_server_module() -> None:
    assert _forbidden("settlement.instructions")
    assert _forbidden("settlement.pki")
    assert _forbidden("ledger.store")
    assert _forbidden("sqlalchemy.engine")
    assert not _forbidden("settlement.v1.payment_pb2_grpc")
    assert not _forbidden("ledger.verify")
