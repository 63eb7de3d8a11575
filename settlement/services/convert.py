"""Protobuf <-> ledger records, and the steps every servicer shares.

The servicers of :mod:`settlement.services` decode a request, check the
caller's role, parse the signed instruction, build ledger commands, submit
them through the sequencer and encode the answer. What they have in common
lives here:

- enum tables and message builders (accounts, balances, participants,
  transactions and journal entries; a transaction is always encoded from its
  leaf, the bytes that were signed into the log, never from a re-serialization);
- commands from instruction fields (postings, metadata text);
- the common checks of common.proto that need the journal: ``id_taken`` and
  the naming of the instruction fields that differ on
  ``exists_with_different_body`` (the ledger compares its own request fields;
  the contract names the instruction's);
- keyset page tokens;
- reads the ledger's API does not offer in bulk (leaves and states by journal
  index, a journal range with entry keys, a reference listing with a cursor),
  straight from the ledger's tables through its read connection.

Everything here that touches the database is blocking: servicers call it in
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import bindparam, func, select

from ledger import canonical
from ledger.batch import leaf_hash
from ledger.canonical import validate_metadata
from ledger.errors import (
    AccountExistsWithDifferentFields,
    ExistsWithDifferentBody,
    IntegrityError,
    LedgerError,
    LinkedCommandFailed,
    MetadataMustBeValid,
)
from ledger.records import (
    Account,
    AccountFlag,
    AccountStatus,
    Balance,
    Command,
    CommandResult,
    EntryKind,
    JsonObject,
    NewAccount,
    Posting,
    Receipt,
    Side,
    SigningKey,
    TransactionState,
)
from ledger.schema import accounts, journal, transactions
from ledger.store import Ledger, storable
from settlement.auth import PARTICIPANT_ROLES, Caller, Role
from settlement.errors import AlreadyExists, InvalidArgument, NotFoundError
from settlement.registry import Participant
from settlement.v1 import common_pb2, ledger_pb2, participant_pb2

if TYPE_CHECKING:
    from settlement.hub import Hub
    from settlement.instructions import ParsedInstruction

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of any RPC (the servicers never use it: the interceptor does)."""

# -- enums -------------------------------------------------------------------

SIDE_FROM_PROTO: Final[Mapping[int, Side]] = {
    ledger_pb2.SIDE_DEBIT: Side.DEBIT,
    ledger_pb2.SIDE_CREDIT: Side.CREDIT,
}
SIDE_TO_PROTO: Final[Mapping[Side, ledger_pb2.Side.ValueType]] = {
    Side.DEBIT: ledger_pb2.SIDE_DEBIT,
    Side.CREDIT: ledger_pb2.SIDE_CREDIT,
}
ACCOUNT_STATUS_TO_PROTO: Final[Mapping[AccountStatus, ledger_pb2.AccountStatus.ValueType]] = {
    AccountStatus.OPEN: ledger_pb2.ACCOUNT_STATUS_OPEN,
    AccountStatus.FROZEN: ledger_pb2.ACCOUNT_STATUS_FROZEN,
    AccountStatus.CLOSED: ledger_pb2.ACCOUNT_STATUS_CLOSED,
}
STATE_TO_PROTO: Final[Mapping[TransactionState, ledger_pb2.TransactionState.ValueType]] = {
    TransactionState.POSTED: ledger_pb2.TRANSACTION_STATE_POSTED,
    TransactionState.PENDING: ledger_pb2.TRANSACTION_STATE_PENDING,
    TransactionState.PENDING_POSTED: ledger_pb2.TRANSACTION_STATE_PENDING_POSTED,
    TransactionState.PENDING_VOIDED: ledger_pb2.TRANSACTION_STATE_PENDING_VOIDED,
    TransactionState.PENDING_EXPIRED: ledger_pb2.TRANSACTION_STATE_PENDING_EXPIRED,
}
TRANSACTION_KIND_TO_PROTO: Final[Mapping[EntryKind, ledger_pb2.TransactionKind.ValueType]] = {
    EntryKind.TRANSACTION: ledger_pb2.TRANSACTION_KIND_STANDARD,
    EntryKind.POST_PENDING: ledger_pb2.TRANSACTION_KIND_POST_PENDING,
    EntryKind.VOID_PENDING: ledger_pb2.TRANSACTION_KIND_VOID_PENDING,
    EntryKind.REVERSAL: ledger_pb2.TRANSACTION_KIND_REVERSAL,
}
ENTRY_KIND_TO_PROTO: Final[Mapping[EntryKind, ledger_pb2.EntryKind.ValueType]] = {
    EntryKind.ACCOUNT: ledger_pb2.ENTRY_KIND_ACCOUNT,
    EntryKind.ACCOUNT_STATUS: ledger_pb2.ENTRY_KIND_ACCOUNT_STATUS,
    EntryKind.DEBIT_LIMIT: ledger_pb2.ENTRY_KIND_DEBIT_LIMIT,
    EntryKind.TRANSACTION: ledger_pb2.ENTRY_KIND_TRANSACTION,
    EntryKind.POST_PENDING: ledger_pb2.ENTRY_KIND_POST_PENDING,
    EntryKind.VOID_PENDING: ledger_pb2.ENTRY_KIND_VOID_PENDING,
    EntryKind.EXPIRE_PENDING: ledger_pb2.ENTRY_KIND_EXPIRE_PENDING,
    EntryKind.REVERSAL: ledger_pb2.ENTRY_KIND_REVERSAL,
    EntryKind.SIGNING_KEY: ledger_pb2.ENTRY_KIND_SIGNING_KEY,
}
"""Every leaf kind the contract names. ``EntryKind.EVENT`` (business events:
registrations, later payments and contracts) has no ``settlement.v1.EntryKind``
and is not streamed."""

ROLE_TO_PROTO: Final[Mapping[Role, participant_pb2.Role.ValueType]] = {
    Role.BANK: participant_pb2.ROLE_BANK,
    Role.FX_PROVIDER: participant_pb2.ROLE_FX_PROVIDER,
    Role.LENDER: participant_pb2.ROLE_LENDER,
    Role.OPERATOR: participant_pb2.ROLE_OPERATOR,
    Role.AUDITOR: participant_pb2.ROLE_AUDITOR,
}
ROLE_FROM_PROTO: Final[Mapping[int, Role]] = {value: role for role, value in ROLE_TO_PROTO.items()}

WRITER_ROLES: Final = (*sorted(PARTICIPANT_ROLES), Role.OPERATOR)
"""Roles that may post on the ledger (participants on their own accounts)."""

_EPOCH: Final = datetime.fromtimestamp(0, UTC)
_LEAF_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


# -- errors shared by the services --------------------------------------------


class ParticipantMustExist(NotFoundError):
    """The participant named is not registered (or the caller may not see it)."""

    code = "participant_must_exist"


class IdTaken(AlreadyExists):
    """The instruction id was used by another participant (common.proto, check 6)."""

    code = "id_taken"


class PageTokenMustMatchRequest(InvalidArgument):
    """A page token is valid only with the filters and order that produced it."""

    code = "page_token_must_match_request"


# -- scalars -------------------------------------------------------------------


def timestamp(microseconds: int) -> Timestamp:
    seconds, remainder = divmod(microseconds, 1_000_000)
    return Timestamp(seconds=seconds, nanos=remainder * 1000)


def leaf_time_us(text: str) -> int:
    """Microseconds since the epoch of a leaf's RFC 3339 time (``ledger.leaf.format_time``)."""
    moment = datetime.strptime(text, _LEAF_TIME_FORMAT).replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """Canonical JSON text of a metadata object; empty when there is none."""
    return canonical.encode(dict(metadata)).decode("utf-8") if metadata else ""


def metadata_object(text: str) -> JsonObject:
    """The metadata object of an instruction's ``metadata`` text (ledger.proto limits).

    Not JSON, not an object, or values outside the allowed ones:
    ``metadata_must_be_valid``; valid but not in RFC 8785 form:
    ``json_must_be_canonical``.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MetadataMustBeValid(f"metadata is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise MetadataMustBeValid(
            f"metadata must be a JSON object as text, got a JSON {type(value).__name__}"
        )
    validate_metadata(value)
    if canonical.encode(value) != text.encode("utf-8"):
        raise canonical.NotCanonical(
            "metadata must be in RFC 8785 canonical form: keys sorted, no whitespace, "
            "no duplicate keys, minimal escapes"
        )
    return cast(JsonObject, value)


# -- results and errors ----------------------------------------------------------


def receipt_message(journal_index: int, hash_of_leaf: bytes) -> common_pb2.EntryReceipt:
    return common_pb2.EntryReceipt(journal_index=journal_index, leaf_hash=hash_of_leaf)


def commit_result(receipt: Receipt) -> common_pb2.CommitResult:
    """CREATED, or ALREADY_EXISTED with the original receipt on an identical retry."""
    return common_pb2.CommitResult(
        instruction_id=receipt.id,
        status=(
            common_pb2.COMMIT_STATUS_ALREADY_EXISTED
            if receipt.existed
            else common_pb2.COMMIT_STATUS_CREATED
        ),
        receipt=receipt_message(receipt.journal_index, receipt.leaf_hash),
        committed_at=timestamp(receipt.committed_at_us),
    )


def error_message(error: LedgerError) -> common_pb2.Error:
    """The ``settlement.v1.Error`` of a refused request or batch item."""
    return common_pb2.Error(
        code=error.code,
        message=error.message,
        fields=[str(field) for field in getattr(error, "fields", None) or ()],
    )


def failed_result(instruction_id: str, error: LedgerError) -> common_pb2.CommitResult:
    return common_pb2.CommitResult(
        instruction_id=instruction_id,
        status=common_pb2.COMMIT_STATUS_FAILED,
        error=error_message(error),
    )


def with_fields(error: LedgerError, fields: Sequence[str]) -> LedgerError:
    """Attach the instruction fields involved (the interceptor sends them as ``Error.fields``)."""
    setattr(error, "fields", list(fields))  # noqa: B010 - an optional attribute of any error
    return error


def first_error(results: Sequence[CommandResult]) -> LedgerError | None:
    """The error that decided a submit: the failing command's, not ``linked_command_failed``."""
    errors = [result.error for result in results if result.error is not None]
    for error in errors:
        if not isinstance(error, LinkedCommandFailed):
            return error
    return errors[0] if errors else None


# -- records -> messages -----------------------------------------------------------


def account_message(account: Account) -> ledger_pb2.Account:
    message = ledger_pb2.Account(
        account_id=account.id,
        owner_participant_id=account.owner,
        currency=account.currency,
        normal_side=SIDE_TO_PROTO[account.normal_side],
        debits_must_not_exceed_credits=AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS in account.flags,
        credits_must_not_exceed_debits=AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS in account.flags,
        metadata=metadata_text(account.metadata),
        status=ACCOUNT_STATUS_TO_PROTO[account.status],
        created_journal_index=account.journal_index,
    )
    if account.debit_limit_minor is not None:
        message.debit_limit_minor = account.debit_limit_minor
    return message


def balance_message(balance: Balance) -> ledger_pb2.Balance:
    return ledger_pb2.Balance(
        account_id=balance.account_id,
        currency=balance.currency,
        debits_posted_minor=balance.debits_posted,
        credits_posted_minor=balance.credits_posted,
        debits_pending_minor=balance.debits_pending,
        credits_pending_minor=balance.credits_pending,
        as_of_index=balance.as_of_index or 0,
    )


def participant_message(
    participant: Participant, keys: Iterable[SigningKey]
) -> participant_pb2.Participant:
    """A registered participant with its key history, oldest key first."""
    message = participant_pb2.Participant(
        participant_id=participant.participant_id,
        legal_name=participant.legal_name,
        role=ROLE_TO_PROTO[participant.role],
        country=participant.country,
        bic=participant.bic,
        lei=participant.lei,
        aba_routing_number=participant.aba_routing_number,
        iban_bank_code=participant.iban_bank_code,
        certificate_common_name=participant.common_name,
        registered_at=timestamp(participant.registered_at_us),
    )
    for key in sorted(keys, key=lambda key: key.first_index):
        if key.signer != participant.participant_id:
            continue
        signing_key = message.signing_keys.add(
            public_key=key.public_key, valid_from_index=key.first_index
        )
        if key.last_index is not None:
            signing_key.valid_until_index = key.last_index
    return message


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    document = canonical.decode(leaf)
    if not isinstance(document, dict):
        raise TypeError("a leaf is a JSON object")
    return document


def signed_instruction_message(document: Mapping[str, Any]) -> common_pb2.SignedInstruction | None:
    """The instruction a leaf holds, exactly as signed; None for the hub's own entries."""
    instruction = document.get("instruction")
    if not instruction:
        return None
    return common_pb2.SignedInstruction(
        instruction=base64.b64decode(instruction["payload"]),
        signature=base64.b64decode(instruction["signature"]),
    )


def _posting_message(posting: Mapping[str, str]) -> ledger_pb2.Posting:
    return ledger_pb2.Posting(
        account_id=posting["account"],
        side=SIDE_TO_PROTO[Side(posting["side"])],
        amount_minor=int(posting["amount"]),
        currency=posting["currency"],
    )


def transaction_message(
    leaf: bytes, state: TransactionState, document: Mapping[str, Any] | None = None
) -> ledger_pb2.Transaction:
    """A transaction as read back, from its leaf (the committed record) and current state."""
    if document is None:
        document = decode_leaf(leaf)
    kind = EntryKind(document["kind"])
    instruction = document.get("instruction")
    message = ledger_pb2.Transaction(
        transaction_id=document["id"],
        participant_id=instruction["signer"] if instruction else "",
        kind=TRANSACTION_KIND_TO_PROTO[kind],
        state=STATE_TO_PROTO[state],
        postings=[_posting_message(posting) for posting in document.get("postings", ())],
        code=document.get("code", ""),
        reference=document.get("reference", ""),
        metadata=metadata_text(document.get("metadata") or {}),
        committed_at=timestamp(leaf_time_us(document["committed_at"])),
        pending_transaction_id=document.get("pending_id") or "",
        original_transaction_id=document.get("reverses_id") or "",
        receipt=receipt_message(int(document["index"]), leaf_hash(leaf)),
    )
    if document.get("timeout_at"):
        message.expires_at.CopyFrom(timestamp(leaf_time_us(document["timeout_at"])))
    signed = signed_instruction_message(document)
    if signed is not None:
        message.signed_instruction.CopyFrom(signed)
    return message


def entry_id(entry_key: str) -> str:
    """The id an entry was committed under (its idempotency key without the namespace)."""
    return entry_key.partition("/")[2]


def journal_entry_message(
    row: JournalRow,
    document: Mapping[str, Any],
    state: TransactionState | None,
) -> ledger_pb2.JournalEntry:
    """One streamed journal entry; ``state`` is the transaction's state for the money kinds."""
    kind = EntryKind(document["kind"])
    message = ledger_pb2.JournalEntry(
        receipt=receipt_message(row.journal_index, leaf_hash(row.leaf)),
        committed_at=timestamp(leaf_time_us(document["committed_at"])),
        kind=ENTRY_KIND_TO_PROTO[kind],
        entry_id=entry_id(row.entry_key),
        leaf=row.leaf,
    )
    signed = signed_instruction_message(document)
    if signed is not None:
        message.signed_instruction.CopyFrom(signed)
    if kind in TRANSACTION_KIND_TO_PROTO:
        message.transaction.CopyFrom(
            transaction_message(row.leaf, state or TransactionState.POSTED, document)
        )
    return message


def leaf_accounts(document: Mapping[str, Any]) -> set[str]:
    """Every account a leaf posts to, releases from, creates or changes."""
    touched = {posting["account"] for posting in document.get("postings", ())}
    touched.update(posting["account"] for posting in document.get("releases", ()))
    if "account_id" in document:
        touched.add(document["account_id"])
    account = document.get("account")
    if isinstance(account, dict):
        touched.add(account["id"])
    return touched


# -- messages -> commands ---------------------------------------------------------


def postings_from_messages(postings: Iterable[ledger_pb2.Posting]) -> tuple[Posting, ...]:
    """Ledger postings of an instruction.

    An unspecified side is passed on as ``None`` for the ledger to refuse at its
    place in the rules (``text_must_be_valid``, after the account id, before
    the amount), so the answer follows the contract's precedence.
    """
    return tuple(
        Posting(
            account_id=posting.account_id,
            side=cast(Side, SIDE_FROM_PROTO.get(posting.side)),
            amount_minor=posting.amount_minor,
            currency=posting.currency,
        )
        for posting in postings
    )


def side_from_message(side: int) -> Side:
    """A normal side; unspecified is passed on as ``None`` for the ledger to refuse."""
    return cast(Side, SIDE_FROM_PROTO.get(side))


# -- idempotency: id_taken and the fields that differ ----------------------------------

_ID_NAMESPACES: Final = ("transaction/", "account/", "admin/", "key/", "event/")
"""The ledger's idempotency namespaces (``ledger.batch.entry_key``). An
instruction id is used once across all of them: the offline verifier reports
one signer's instruction id in two commits as ``duplicate_instruction``."""

_IN_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class PriorUse:
    """A committed instruction with the same ``instruction_id``."""

    instruction_id: str
    signer: str
    payload: bytes


# Built once: this lookup runs before every write, and building the statement
# and expanding its IN list per call cost more than the query itself.
_ENTRIES_OF_ONE_ID = (
    select(journal.c.entry_key, journal.c.leaf)
    .where(journal.c.entry_key.in_([bindparam(f"key_{n}") for n in range(len(_ID_NAMESPACES))]))
    .order_by(journal.c.journal_index)
)
_ENTRIES_BY_KEY = (
    select(journal.c.entry_key, journal.c.leaf)
    .where(journal.c.entry_key.in_(bindparam("keys", expanding=True)))
    .order_by(journal.c.journal_index)
)


def prior_uses(ledger: Ledger, instruction_ids: Iterable[str]) -> dict[str, PriorUse]:
    """Committed instructions by id: entries committed under these instruction ids.

    One indexed lookup of the id in every namespace; a leaf is decoded only
    for an entry found.
    """
    wanted = sorted(
        {instruction_id for instruction_id in instruction_ids if storable(instruction_id)}
    )
    keys = [namespace + instruction_id for instruction_id in wanted for namespace in _ID_NAMESPACES]
    found: dict[str, PriorUse] = {}
    with ledger.reading() as connection:
        for start in range(0, len(keys), _IN_CHUNK):
            if len(wanted) == 1:
                rows = connection.execute(
                    _ENTRIES_OF_ONE_ID, {f"key_{n}": key for n, key in enumerate(keys)}
                ).all()
            else:
                rows = connection.execute(
                    _ENTRIES_BY_KEY, {"keys": keys[start : start + _IN_CHUNK]}
                ).all()
            for row in rows:
                use = _prior_use(entry_id(row.entry_key), bytes(row.leaf))
                if use is not None and use.instruction_id not in found:
                    found[use.instruction_id] = use
    return found


def _prior_use(committed_id: str, leaf: bytes) -> PriorUse | None:
    instruction = decode_leaf(leaf).get("instruction")
    if not instruction:
        return None
    payload = base64.b64decode(instruction["payload"])
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    # An entry another instruction created under its own id (a funding account
    # opened by a Fund, a registration event) is not a use of this id.
    if not isinstance(document, dict) or document.get("instruction_id") != committed_id:
        return None
    return PriorUse(committed_id, instruction["signer"], payload)


def _instruction_type(payload: bytes) -> str:
    try:
        document = json.loads(payload)
    except ValueError:
        return ""
    return str(document.get("instruction_type", "")) if isinstance(document, dict) else ""


def refuse_taken_id(prior: PriorUse | None, caller: Caller, fields: Sequence[str] = ()) -> None:
    """ALREADY_EXISTS ``id_taken`` when another participant committed this id."""
    if prior is not None and prior.signer != caller.participant_id:
        raise with_fields(
            IdTaken(
                f"instruction_id {prior.instruction_id!r} is taken by another participant; "
                "choose a new id (e.g. '<participant_id>:<random UUID>')"
            ),
            fields,
        )


def differing_fields(before: bytes, after: bytes) -> list[str]:
    """Top-level instruction fields (JSON names) whose values differ."""
    old, new = json.loads(before), json.loads(after)
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def exists_with_different_body(prior: PriorUse, payload: bytes) -> ExistsWithDifferentBody:
    return ExistsWithDifferentBody(prior.instruction_id, differing_fields(prior.payload, payload))


def explain_conflict(
    ledger: Ledger, error: LedgerError, instruction_id: str, payload: bytes, caller: Caller
) -> LedgerError:
    """Restate a ledger idempotency conflict in the contract's terms.

    The ledger names its own request fields (and ``instruction_sha256``);
    common.proto wants the instruction's top-level fields that differ, and
    ``id_taken`` when the id is another participant's.
    """
    if not isinstance(error, ExistsWithDifferentBody | AccountExistsWithDifferentFields):
        return error
    prior = prior_uses(ledger, [instruction_id]).get(instruction_id)
    if prior is None:
        # Conflicts with an entry made under another id (e.g. the account was
        # opened by a different instruction): the ledger's field names stand.
        fields = [name for name in getattr(error, "fields", ()) if name != "instruction_sha256"]
        return with_fields(error, fields)
    refuse_taken_id(prior, caller)
    fields = differing_fields(prior.payload, payload)
    if isinstance(error, AccountExistsWithDifferentFields):
        return with_fields(
            AccountExistsWithDifferentFields(
                f"account {instruction_id!r} exists, opened by an instruction that differs in "
                f"{', '.join(fields)}; change it with its own RPC (e.g. SetAccountLimit) or "
                "choose another id"
            ),
            fields,
        )
    return ExistsWithDifferentBody(instruction_id, fields)


# -- committing ---------------------------------------------------------------------------


async def check_id_not_taken(
    hub: Hub, parsed: ParsedInstruction[Any], caller: Caller
) -> PriorUse | None:
    """Common check 6 (``id_taken``); returns the caller's own earlier use of the id, if any."""
    uses = await asyncio.to_thread(prior_uses, hub.ledger, [parsed.instruction_id])
    prior = uses.get(parsed.instruction_id)
    refuse_taken_id(prior, caller)
    if prior is not None and _instruction_type(prior.payload) != getattr(
        parsed.message, "instruction_type", ""
    ):
        # The caller's own id, used for an instruction of another kind (a quote
        # id sent as a transaction id): the ledger keeps those in another
        # namespace and could not catch it. Ids are unique per signer across
        # the hub (the auditor checks it), so refuse here. Same-kind conflicts
        # stay with the ledger, which names them per RPC.
        raise ExistsWithDifferentBody(
            parsed.instruction_id, differing_fields(prior.payload, parsed.signed.payload)
        )
    return prior


async def settle(
    hub: Hub, results: Sequence[CommandResult], parsed: ParsedInstruction[Any], caller: Caller
) -> list[Receipt]:
    """The receipts of a single write, or its error raised for the interceptor to map."""
    error = first_error(results)
    if error is not None:
        raise await asyncio.to_thread(
            explain_conflict,
            hub.ledger,
            error,
            parsed.instruction_id,
            parsed.signed.payload,
            caller,
        )
    receipts = [result.receipt for result in results if result.receipt is not None]
    if len(receipts) != len(results):
        raise IntegrityError("a command succeeded without a receipt")
    return receipts


async def commit(
    hub: Hub,
    commands: Sequence[Command],
    parsed: ParsedInstruction[Any],
    caller: Caller,
    *,
    linked: bool = False,
) -> list[Receipt]:
    """Submit one instruction's commands through the sequencer; raise its error, if any."""
    results = await hub.sequencer.submit(commands, linked=linked)
    return await settle(hub, results, parsed, caller)


def read_transaction(ledger: Ledger, transaction_id: str) -> ledger_pb2.Transaction:
    record = ledger.transaction(transaction_id)
    return transaction_message(ledger.leaf(record.journal_index), record.state)


def created_transaction_message(
    parsed: ParsedInstruction[Any], receipt: Receipt
) -> ledger_pb2.Transaction | None:
    """The transaction a write has just created, from its instruction and receipt.

    Field for field what :func:`read_transaction` returns right after the
    commit (a test holds the two together for every write RPC), without its
    two queries and leaf decode. None when these alone do not tell: an
    identical retry (ALREADY_EXISTED: the state is as of now, and the stored
    signature may be an earlier one), and POST_PENDING and REVERSAL, whose
    postings come from the transaction they resolve or reverse.
    """
    if receipt.existed:
        return None
    message = parsed.message
    if isinstance(message, ledger_pb2.TransactionInstruction):
        kind = ledger_pb2.TRANSACTION_KIND_STANDARD
        pending = message.pending
    elif isinstance(message, ledger_pb2.VoidPendingInstruction):
        kind = ledger_pb2.TRANSACTION_KIND_VOID_PENDING
        pending = False
    else:
        return None
    transaction = ledger_pb2.Transaction(
        transaction_id=parsed.instruction_id,
        participant_id=parsed.signed.signer,
        kind=kind,
        state=ledger_pb2.TRANSACTION_STATE_PENDING
        if pending
        else ledger_pb2.TRANSACTION_STATE_POSTED,
        code=message.code,
        reference=message.reference,
        # Parsing checked that the text is canonical; the leaf holds it as an
        # object, and an empty object reads back as no metadata.
        metadata="" if message.metadata == "{}" else message.metadata,
        committed_at=timestamp(receipt.committed_at_us),
        receipt=receipt_message(receipt.journal_index, receipt.leaf_hash),
        signed_instruction=common_pb2.SignedInstruction(
            instruction=parsed.signed.payload, signature=parsed.signed.signature
        ),
    )
    if isinstance(message, ledger_pb2.TransactionInstruction):
        transaction.postings.extend(message.postings)
        if pending:
            expires_at_us = receipt.committed_at_us + message.timeout_seconds * 1_000_000
            transaction.expires_at.CopyFrom(timestamp(expires_at_us))
    else:
        transaction.pending_transaction_id = message.pending_transaction_id
    return transaction


def created_account_message(command: NewAccount, receipt: Receipt) -> ledger_pb2.Account | None:
    """The account a write has just opened, from its command and receipt (no read).

    None for an identical retry: its status is as of now.
    """
    if receipt.existed:
        return None
    return account_message(
        Account(
            id=command.id,
            owner=command.owner,
            currency=command.currency,
            normal_side=command.normal_side,
            flags=frozenset(command.flags),
            debit_limit_minor=command.debit_limit_minor,
            metadata=command.metadata,
            status=AccountStatus.OPEN,
            journal_index=receipt.journal_index,
        )
    )


# -- paging ----------------------------------------------------------------------------

PAGE_SIZE_DEFAULT: Final = 100
PAGE_SIZE_MAX: Final = 1000


def page_size(page: common_pb2.PageRequest) -> int:
    """0 means the default; more than the maximum is the maximum (common.proto)."""
    if page.page_size == 0:
        return PAGE_SIZE_DEFAULT
    return min(page.page_size, PAGE_SIZE_MAX)


def _scope_digest(scope: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(scope)).encode("utf-8")).hexdigest()[:32]


def page_token(scope: Sequence[str], position: str) -> str:
    """An opaque token for the page after ``position``, valid only for ``scope``.

    ``scope`` holds the RPC, the filters, the order and the caller: a token is
    refused with any other request (page_token_must_match_request).
    """
    document = {"scope": _scope_digest(scope), "after": position}
    return base64.urlsafe_b64encode(json.dumps(document).encode("utf-8")).decode("ascii")


def page_position(page: common_pb2.PageRequest, scope: Sequence[str]) -> str | None:
    """Where the requested page starts (exclusive), or None for the first page."""
    if not page.page_token:
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(page.page_token.encode("ascii")))
    except (ValueError, UnicodeEncodeError, binascii.Error):
        document = None
    if (
        not isinstance(document, dict)
        or document.get("scope") != _scope_digest(scope)
        or not isinstance(document.get("after"), str)
    ):
        raise PageTokenMustMatchRequest(
            "page_token was not returned for this request: send it with the same filters "
            "and order as the request that returned it, or leave it empty for the first page"
        )
    return str(document["after"])


# -- reads in bulk ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalRow:
    journal_index: int
    entry_key: str
    leaf: bytes


def journal_rows(ledger: Ledger, start: int, stop: int) -> list[JournalRow]:
    """Journal entries with ``start <= index < stop``, in index order."""
    with ledger.reading() as connection:
        rows = connection.execute(
            select(journal.c.journal_index, journal.c.entry_key, journal.c.leaf)
            .where(journal.c.journal_index >= start)
            .where(journal.c.journal_index < stop)
            .order_by(journal.c.journal_index)
        ).all()
    return [JournalRow(int(row.journal_index), row.entry_key, bytes(row.leaf)) for row in rows]


def leaves_by_index(ledger: Ledger, indexes: Iterable[int]) -> dict[int, bytes]:
    wanted = sorted(set(indexes))
    found: dict[int, bytes] = {}
    with ledger.reading() as connection:
        for start in range(0, len(wanted), _IN_CHUNK):
            for index, leaf in connection.execute(
                select(journal.c.journal_index, journal.c.leaf).where(
                    journal.c.journal_index.in_(wanted[start : start + _IN_CHUNK])
                )
            ):
                found[int(index)] = bytes(leaf)
    return found


def states_by_index(ledger: Ledger, indexes: Iterable[int]) -> dict[int, TransactionState]:
    """Current state of the transactions committed at these journal indexes."""
    wanted = sorted(set(indexes))
    found: dict[int, TransactionState] = {}
    with ledger.reading() as connection:
        for start in range(0, len(wanted), _IN_CHUNK):
            for index, state in connection.execute(
                select(transactions.c.journal_index, transactions.c.state).where(
                    transactions.c.journal_index.in_(wanted[start : start + _IN_CHUNK])
                )
            ):
                found[int(index)] = TransactionState(state)
    return found


def reference_page(
    ledger: Ledger, reference: str, *, after: int | None, limit: int, newest_first: bool
) -> tuple[list[tuple[int, TransactionState]], int | None]:
    """Keyset page of (journal index, state) of the transactions with ``reference``."""
    query = select(transactions.c.journal_index, transactions.c.state).where(
        transactions.c.reference == reference
    )
    if newest_first:
        if after is not None:
            query = query.where(transactions.c.journal_index < after)
        query = query.order_by(transactions.c.journal_index.desc())
    else:
        if after is not None:
            query = query.where(transactions.c.journal_index > after)
        query = query.order_by(transactions.c.journal_index)
    with ledger.reading() as connection:
        rows = connection.execute(query.limit(limit + 1)).all()
    items = [(int(row.journal_index), TransactionState(row.state)) for row in rows[:limit]]
    return items, (items[-1][0] if len(rows) > limit else None)


def accounts_of_transactions(ledger: Ledger, transaction_ids: Iterable[str]) -> dict[str, set[str]]:
    """The accounts each transaction posts to or releases from (read from its leaf)."""
    wanted = sorted(
        {transaction_id for transaction_id in transaction_ids if storable(transaction_id)}
    )
    found: dict[str, set[str]] = {}
    with ledger.reading() as connection:
        for start in range(0, len(wanted), _IN_CHUNK):
            for transaction_id, leaf in connection.execute(
                select(transactions.c.id, journal.c.leaf)
                .join(journal, journal.c.journal_index == transactions.c.journal_index)
                .where(transactions.c.id.in_(wanted[start : start + _IN_CHUNK]))
            ):
                found[transaction_id] = leaf_accounts(decode_leaf(bytes(leaf)))
    return found


_LATEST_BALANCE = select(
    accounts.c.owner,
    accounts.c.currency,
    accounts.c.debits_posted,
    accounts.c.credits_posted,
    accounts.c.debits_pending,
    accounts.c.credits_pending,
    select(func.max(journal.c.journal_index)).scalar_subquery().label("last_index"),
).where(accounts.c.id == bindparam("account_id"))


def latest_balance(ledger: Ledger, account_id: str) -> tuple[str, Balance] | None:
    """An account's owner and current balance; None when the account does not exist.

    One statement, so one snapshot: the totals and the journal's last index
    agree, as in :meth:`Ledger.balance`, which takes a transaction, two
    statements and (with the owner's check before it) a second connection.
    """
    with ledger.reading() as connection:
        row = connection.execute(_LATEST_BALANCE, {"account_id": account_id}).first()
    if row is None:
        return None
    balance = Balance(
        account_id,
        row.currency,
        row.debits_posted,
        row.credits_posted,
        row.debits_pending,
        row.credits_pending,
        None if row.last_index is None else int(row.last_index),
    )
    return row.owner, balance


def owned_account_ids(ledger: Ledger, participant_id: str) -> frozenset[str]:
    return frozenset(account.id for account in ledger.accounts(owner=participant_id))


ACCOUNT_OWNERS_MAX_ENTRIES: Final = 1_000_000
"""Accounts whose owner :class:`AccountOwners` keeps (about 200 MB at 200 bytes an
entry); when full it starts again empty, which costs one lookup per account."""

_OWNERS_BY_ACCOUNT = select(accounts.c.id, accounts.c.owner).where(
    accounts.c.id.in_(bindparam("ids", expanding=True))
)


class AccountOwners:
    """The owner of each account, kept in memory as it is looked up.

    An account's owner is set when it is opened and never changes, and
    accounts are never deleted, so a cached owner is never stale and nothing
    is invalidated. A missing account is not cached: it may be opened later.
    Reading all of a participant's accounts on every write was an eighth of a
    single transaction's cost.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._owners: dict[str, str] = {}

    def cached(self, account_ids: Iterable[str]) -> dict[str, str] | None:
        """The owners of these accounts if all are cached (no database), else None."""
        owners = self._owners
        found = {}
        for account_id in account_ids:
            owner = owners.get(account_id)
            if owner is None:
                return None
            found[account_id] = owner
        return found

    def owners(self, account_ids: Iterable[str]) -> dict[str, str]:
        """The owners of the accounts that exist among these (blocking on a miss)."""
        wanted = {account_id for account_id in account_ids if storable(account_id)}
        found = {name: owner for name in wanted if (owner := self._owners.get(name)) is not None}
        missing = sorted(wanted - found.keys())
        if not missing:
            return found
        with self._ledger.reading() as connection:
            for start in range(0, len(missing), _IN_CHUNK):
                for account_id, owner in connection.execute(
                    _OWNERS_BY_ACCOUNT, {"ids": missing[start : start + _IN_CHUNK]}
                ):
                    found[account_id] = owner
        if len(self._owners) + len(missing) > ACCOUNT_OWNERS_MAX_ENTRIES:
            self._owners = {}
        self._owners.update((name, found[name]) for name in missing if name in found)
        return found
