"""Applying a batch of commands to the ledger's state, in memory.

The store loads the rows a batch touches (accounts, pending and original
transactions, earlier entries with the same ids), this module applies each
command in order, and the store writes the rows it produced in one database
transaction. Nothing here touches the database, so the rules are plain,
testable code.

Each command is fully checked before it changes the in-memory state, so a
failing command in an independent batch leaves no trace; in a linked batch the
store discards everything on the first failure.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from ledger.canonical import (
    decode,
    encode_trusted,
    encode_trusted_text,
    join_members,
    validate_metadata,
)
from ledger.errors import (
    AccountExistsWithDifferentFields,
    AccountMustBeOpen,
    AccountNotFound,
    AlreadyReversed,
    AmountMustBePositive,
    CurrencyMustMatchAccount,
    DebitsMustEqualCredits,
    ExceedsCredits,
    ExceedsDebits,
    ExistsWithDifferentBody,
    FlagsMustBeCompatible,
    IntegrityError,
    LimitMustNotBeNegative,
    PartialPostNeedsTwoPostings,
    PendingExpired,
    PendingMustBePending,
    PostAmountMustNotExceedPending,
    ReversalMustBeOfPosted,
    TextMustBeValid,
    TransactionNotFound,
)
from ledger.leaf import encode_leaf_members, format_time, postings_json, postings_text
from ledger.money import INT64_MAX, AmountOverflow, currency
from ledger.records import (
    AccountFlag,
    AccountStatus,
    Command,
    EntryKind,
    NewAccount,
    NewEvent,
    NewTransaction,
    Posting,
    PostPending,
    Receipt,
    RegisterSigningKey,
    Reverse,
    SetAccountStatus,
    SetDebitLimit,
    Side,
    SignedInstruction,
    TransactionState,
    VoidPending,
)
from ledger.signing import SignatureInvalid, verify_instruction
from ledger.validation import (
    CODE_MAX_LENGTH,
    ID_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    validate_id,
    validate_postings,
    validate_text,
    validate_timeout,
)

PUBLIC_KEY_SIZE = 32

EVENT_BODY_MAX_BYTES = 64 * 1024
"""An event body describes a contract or a payment: bigger than metadata, still bounded."""


class SignerMustBeKnown(SignatureInvalid):
    """An instruction names a signer with no current registered key."""

    code = "signer_must_be_known"


@dataclass(slots=True)
class KeyState:
    """A signer's current key: it signs entries from ``first_index`` on."""

    public_key: bytes
    first_index: int
    is_new: bool = False
    replaced_at: int | None = None


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 section 2.1.1 leaf hash: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def entry_key(command: Command) -> str:
    """The idempotency namespace of a command's id.

    Money-moving commands share one namespace (a post and a transaction cannot
    reuse each other's id); accounts and administrative changes have their own.
    """
    if isinstance(command, NewTransaction):  # the common case first
        return "transaction/" + command.id
    if isinstance(command, NewAccount):
        return "account/" + command.id
    if isinstance(command, (SetAccountStatus, SetDebitLimit)):
        return "admin/" + command.id
    if isinstance(command, RegisterSigningKey):
        return "key/" + command.id
    if isinstance(command, NewEvent):
        return "event/" + command.id
    return "transaction/" + command.id


def expiry_key(pending_id: str) -> str:
    return "expiry/" + pending_id


@dataclass(slots=True)
class AccountState:
    """An account as the batch sees it: identity, limits and running totals."""

    id: str
    owner: str
    currency: str
    normal_side: Side
    flags: frozenset[AccountFlag]
    debit_limit_minor: int | None
    metadata: bytes
    status: AccountStatus
    journal_index: int
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    is_new: bool = False
    dirty: bool = False

    def debit_cap(self) -> int | None:
        """Net debit cap, or None when debits are unconstrained."""
        if self.debit_limit_minor is not None:
            return self.debit_limit_minor
        if AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS in self.flags:
            return 0
        return None


@dataclass(slots=True)
class TransactionRecord:
    """A money-moving entry the batch may resolve (post, void, expire) or reverse."""

    id: str
    kind: EntryKind
    journal_index: int
    state: TransactionState
    postings: tuple[Posting, ...]
    timeout_at_us: int | None
    reversed: bool = False
    is_new: bool = False
    state_changed: bool = False


class PriorEntry(NamedTuple):
    """An entry already in the journal under the same idempotency key."""

    journal_index: int
    leaf_hash: bytes
    request: bytes
    committed_at_us: int = 0


JOURNAL_COLUMNS: Final = (
    "journal_index",
    "entry_key",
    "kind",
    "request",
    "leaf",
    "leaf_hash",
    "committed_at_us",
)
TRANSACTION_COLUMNS: Final = (
    "id",
    "journal_index",
    "kind",
    "state",
    "code",
    "reference",
    "metadata",
    "pending_id",
    "reverses_id",
    "timeout_at_us",
    "committed_at_us",
)
POSTING_COLUMNS: Final = (
    "journal_index",
    "sequence",
    "account_id",
    "currency",
    "side",
    "amount_minor",
    "effect",
)

_STATE_COLUMN = TRANSACTION_COLUMNS.index("state")


@dataclass(slots=True)
class BatchOutput:
    """Rows a batch produced, for the store to write in one transaction.

    Rows are tuples in the order of the ``*_COLUMNS`` names above: a batch of
    thousands of rows is handed to the driver as is (building and converting
    a dict per row showed up in profiles of large batches).
    """

    journal: list[tuple[Any, ...]] = field(default_factory=list)
    new_transactions: list[tuple[Any, ...]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    leaf_hashes: list[bytes] = field(default_factory=list)


class _Delta:
    """Changes to one account's four totals, computed before they are applied."""

    __slots__ = ("credits_pending", "credits_posted", "debits_pending", "debits_posted")

    def __init__(self) -> None:
        self.debits_posted = 0
        self.credits_posted = 0
        self.debits_pending = 0
        self.credits_pending = 0


class Batch:
    """One write transaction's worth of commands applied to loaded state."""

    def __init__(
        self,
        *,
        next_index: int,
        committed_at_us: int,
        accounts: dict[str, AccountState],
        transactions: dict[str, TransactionRecord],
        prior_entries: Mapping[str, PriorEntry],
        keys: dict[str, KeyState] | None = None,
        verify_signatures: bool = True,
    ) -> None:
        self.first_index = next_index
        self.next_index = next_index
        self.committed_at_us = committed_at_us
        self.accounts = accounts
        self.transactions = transactions
        self.prior_entries: dict[str, PriorEntry] = dict(prior_entries)
        self.keys: dict[str, KeyState] = {} if keys is None else keys
        self.verify_signatures = verify_signatures
        self.retired_keys: list[tuple[str, int, int]] = []
        """(signer, first_index, last_index) of stored keys this batch replaced."""
        self.new_keys: list[dict[str, Any]] = []
        """signing_keys rows this batch registered."""
        self._verified: set[tuple[str, bytes, bytes]] = set()
        self.output = BatchOutput()
        # Per currency: (posted debits - posted credits, pending debits - pending credits)
        # over everything this batch wrote; must end at zero (checked in finish()).
        self._net: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    # -- entry points --------------------------------------------------------

    def apply(self, command: Command) -> Receipt:
        """Apply one command or raise the LedgerError that names the broken rule."""
        if isinstance(command, NewTransaction):
            return self._new_transaction(command)
        if isinstance(command, PostPending):
            return self._post_pending(command)
        if isinstance(command, VoidPending):
            return self._void_pending(command)
        if isinstance(command, Reverse):
            return self._reverse(command)
        if isinstance(command, NewAccount):
            return self._new_account(command)
        if isinstance(command, SetAccountStatus):
            return self._set_status(command)
        if isinstance(command, SetDebitLimit):
            return self._set_debit_limit(command)
        if isinstance(command, RegisterSigningKey):
            return self._register_key(command)
        if isinstance(command, NewEvent):
            return self._new_event(command)
        raise TypeError(f"not a ledger command: {type(command).__name__}")

    def expire(self, pending_id: str) -> Receipt:
        """Release a pending transaction whose timeout has passed (no instruction)."""
        record = self.transactions[pending_id]
        if record.state is not TransactionState.PENDING:
            raise IntegrityError(f"expiry of {pending_id!r} in state {record.state}")
        releases = record.postings
        body = {"pending_id": pending_id, "releases": postings_json(releases)}
        receipt = self._emit(
            expiry_key(pending_id), pending_id, EntryKind.EXPIRE_PENDING, body, None, None
        )
        self._move(receipt.journal_index, (), releases)
        record.state = TransactionState.PENDING_EXPIRED
        record.state_changed = True
        return receipt

    def finish(self) -> BatchOutput:
        """Check the batch's own invariants, then hand its rows to the store."""
        for code, (posted, pending) in self._net.items():
            if posted != 0 or pending != 0:
                raise IntegrityError(
                    f"batch is unbalanced in {code}: posted net {posted}, pending net {pending}"
                )
        indexes = [row[0] for row in self.output.journal]
        if indexes != list(range(self.first_index, self.first_index + len(indexes))):
            raise IntegrityError(f"journal indexes are not contiguous: {indexes[:5]}...")
        # A transaction created in this batch may have been posted, voided or
        # expired later in the same batch: its row carries the final state.
        rows = self.output.new_transactions
        for position, row in enumerate(rows):
            state = self.transactions[row[0]].state.value
            if state != row[_STATE_COLUMN]:
                rows[position] = (*row[:_STATE_COLUMN], state, *row[_STATE_COLUMN + 1 :])
        return self.output

    # -- commands --------------------------------------------------------------

    def _new_transaction(self, command: NewTransaction) -> Receipt:
        validate_id(command.id)
        self._validate_common_text(command.code, command.reference)
        metadata = validate_metadata(command.metadata)
        validate_postings(command.postings)
        self._check_sums(command.postings)
        validate_timeout(command.pending, command.timeout_seconds)
        # The fields the request and the leaf share are encoded once (the
        # encoding was the largest cost of applying a transaction).
        legs = postings_text(command.postings)
        code = encode_trusted_text(command.code)
        reference = encode_trusted_text(command.reference)
        metadata_text = metadata.decode("utf-8")  # validate_metadata returns RFC 8785 bytes
        pending_text = encode_trusted_text(command.pending)
        request = _request_bytes(
            {
                "kind": '"transaction"',
                "postings": legs,
                "code": code,
                "reference": reference,
                "metadata": metadata_text,
                "pending": pending_text,
                "timeout_seconds": encode_trusted_text(command.timeout_seconds),
            },
            command.instruction,
        )
        key = entry_key(command)
        existed = self._prior_encoded(key, command.id, request)
        if existed is not None:
            return existed
        self._check_accounts(command.postings)
        self._check_balanced(command.postings)
        self._check_instruction(command.instruction)
        timeout_at_us = None
        if command.pending:
            timeout_at_us = self.committed_at_us + (command.timeout_seconds or 0) * 1_000_000
        posted = () if command.pending else command.postings
        pending = command.postings if command.pending else ()
        deltas = self._check_limits(posted, pending)
        body = {
            "id": encode_trusted_text(command.id),
            "code": code,
            "reference": reference,
            "metadata": metadata_text,
            "pending": pending_text,
            "timeout_at": encode_trusted_text(
                None if timeout_at_us is None else format_time(timeout_at_us)
            ),
            "postings": legs,
        }
        receipt = self._emit_encoded(
            key, command.id, EntryKind.TRANSACTION, body, request, command.instruction
        )
        state = TransactionState.PENDING if command.pending else TransactionState.POSTED
        self._record_transaction(
            command.id,
            EntryKind.TRANSACTION,
            receipt.journal_index,
            state,
            command.postings,
            code=command.code,
            reference=command.reference,
            metadata=metadata,
            timeout_at_us=timeout_at_us,
        )
        self._move(receipt.journal_index, posted, (), pending=pending, deltas=deltas)
        return receipt

    def _post_pending(self, command: PostPending) -> Receipt:
        validate_id(command.id)
        validate_id(command.pending_id, "pending_id")
        self._validate_common_text(command.code, command.reference)
        metadata = validate_metadata(command.metadata)
        if command.amount_minor is not None and (
            type(command.amount_minor) is not int or not 0 < command.amount_minor <= INT64_MAX
        ):
            raise AmountMustBePositive(
                f"amount_minor must be a positive integer, got {command.amount_minor!r}"
            )
        request = {
            "kind": "post_pending",
            "pending_id": command.pending_id,
            "amount_minor": None if command.amount_minor is None else str(command.amount_minor),
            "code": command.code,
            "reference": command.reference,
            "metadata": dict(command.metadata),
        }
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        record = self._pending(command.pending_id)
        releases = record.postings
        if command.amount_minor is None:
            posted = releases
        else:
            if len(releases) != 2:
                raise PartialPostNeedsTwoPostings(
                    f"pending {command.pending_id!r} has {len(releases)} postings; a partial "
                    "amount can be posted only for one debit and one credit. Omit amount_minor "
                    "to post in full."
                )
            reserved = releases[0].amount_minor
            if command.amount_minor > reserved:
                raise PostAmountMustNotExceedPending(
                    f"amount_minor {command.amount_minor} exceeds the {reserved} reserved by "
                    f"pending {command.pending_id!r}"
                )
            posted = tuple(
                Posting(p.account_id, p.side, command.amount_minor, p.currency) for p in releases
            )
        self._check_accounts(posted)
        self._check_instruction(command.instruction)
        body = {
            "id": command.id,
            "pending_id": command.pending_id,
            "code": command.code,
            "reference": command.reference,
            "metadata": dict(command.metadata),
            "postings": postings_json(posted),
            "releases": postings_json(releases),
        }
        receipt = self._emit(
            key, command.id, EntryKind.POST_PENDING, body, request, command.instruction
        )
        record.state = TransactionState.PENDING_POSTED
        record.state_changed = True
        self._record_transaction(
            command.id,
            EntryKind.POST_PENDING,
            receipt.journal_index,
            TransactionState.POSTED,
            posted,
            code=command.code,
            reference=command.reference,
            metadata=metadata,
            pending_id=command.pending_id,
        )
        self._move(receipt.journal_index, posted, releases)
        return receipt

    def _void_pending(self, command: VoidPending) -> Receipt:
        validate_id(command.id)
        validate_id(command.pending_id, "pending_id")
        self._validate_common_text(command.code, command.reference)
        metadata = validate_metadata(command.metadata)
        request = {
            "kind": "void_pending",
            "pending_id": command.pending_id,
            "code": command.code,
            "reference": command.reference,
            "metadata": dict(command.metadata),
        }
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        record = self._pending(command.pending_id)
        self._check_instruction(command.instruction)
        releases = record.postings
        body = {
            "id": command.id,
            "pending_id": command.pending_id,
            "code": command.code,
            "reference": command.reference,
            "metadata": dict(command.metadata),
            "releases": postings_json(releases),
        }
        receipt = self._emit(
            key, command.id, EntryKind.VOID_PENDING, body, request, command.instruction
        )
        record.state = TransactionState.PENDING_VOIDED
        record.state_changed = True
        self._record_transaction(
            command.id,
            EntryKind.VOID_PENDING,
            receipt.journal_index,
            TransactionState.POSTED,
            (),
            code=command.code,
            reference=command.reference,
            metadata=metadata,
            pending_id=command.pending_id,
        )
        self._move(receipt.journal_index, (), releases)
        return receipt

    def _reverse(self, command: Reverse) -> Receipt:
        validate_id(command.id)
        validate_id(command.original_id, "original_id")
        self._validate_common_text(command.code, command.reference)
        metadata = validate_metadata(command.metadata)
        request = {
            "kind": "reversal",
            "original_id": command.original_id,
            "code": command.code,
            "reference": command.reference,
            "metadata": dict(command.metadata),
        }
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        original = self.transactions.get(command.original_id)
        if original is None:
            raise TransactionNotFound(f"transaction {command.original_id!r} does not exist")
        if original.state is not TransactionState.POSTED or not original.postings:
            raise ReversalMustBeOfPosted(
                f"transaction {command.original_id!r} is {original.state.value}"
                f" ({original.kind.value}); only posted transactions are reversed"
                " (void a pending one instead)"
            )
        if original.reversed:
            raise AlreadyReversed(f"transaction {command.original_id!r} was already reversed")
        mirrored = tuple(
            Posting(p.account_id, _other(p.side), p.amount_minor, p.currency)
            for p in original.postings
        )
        self._check_accounts(mirrored)
        self._check_instruction(command.instruction)
        deltas = self._check_limits(mirrored, ())
        body = {
            "id": command.id,
            "reverses_id": command.original_id,
            "code": command.code,
            "reference": command.reference,
            "metadata": dict(command.metadata),
            "postings": postings_json(mirrored),
        }
        receipt = self._emit(
            key, command.id, EntryKind.REVERSAL, body, request, command.instruction
        )
        original.reversed = True
        self._record_transaction(
            command.id,
            EntryKind.REVERSAL,
            receipt.journal_index,
            TransactionState.POSTED,
            mirrored,
            code=command.code,
            reference=command.reference,
            metadata=metadata,
            reverses_id=command.original_id,
        )
        self._move(receipt.journal_index, mirrored, (), deltas=deltas)
        return receipt

    def _new_account(self, command: NewAccount) -> Receipt:
        validate_id(command.id)
        validate_id(command.owner, "owner")
        currency(command.currency)
        if not isinstance(command.normal_side, Side):
            raise TextMustBeValid("normal_side must be debit or credit")
        metadata = validate_metadata(command.metadata)
        try:
            flags = frozenset(AccountFlag(flag) for flag in command.flags)
        except ValueError:
            # Like an unknown side: a refusal of this command, not a crash of the batch.
            raise TextMustBeValid(
                f"flags must be among {', '.join(flag.value for flag in AccountFlag)}"
            ) from None
        if {
            AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS,
            AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS,
        } <= flags:
            raise FlagsMustBeCompatible(
                "an account cannot have both debits_must_not_exceed_credits and "
                "credits_must_not_exceed_debits: no posting could ever move it"
            )
        _check_limit(command.debit_limit_minor)
        account_json = {
            "id": command.id,
            "owner": command.owner,
            "currency": command.currency,
            "normal_side": command.normal_side.value,
            "flags": sorted(flag.value for flag in flags),
            "debit_limit": _limit_json(command.debit_limit_minor),
            "metadata": dict(command.metadata),
        }
        request = {"kind": "account", "account": account_json}
        key = entry_key(command)
        prior = self.prior_entries.get(key)
        if prior is not None:
            differing = _differing_fields(
                decode(prior.request),
                _as_stored(_with_instruction(request, command.instruction)),
            )
            if differing:
                raise AccountExistsWithDifferentFields(
                    f"account {command.id!r} exists with different "
                    f"{', '.join(differing)}; choose another id or match the existing account"
                )
            return Receipt(
                command.id,
                prior.journal_index,
                prior.leaf_hash,
                prior.committed_at_us,
                existed=True,
            )
        self._check_instruction(command.instruction)
        receipt = self._emit(
            key,
            command.id,
            EntryKind.ACCOUNT,
            {"account": account_json},
            request,
            command.instruction,
        )
        self.accounts[command.id] = AccountState(
            id=command.id,
            owner=command.owner,
            currency=command.currency,
            normal_side=command.normal_side,
            flags=flags,
            debit_limit_minor=command.debit_limit_minor,
            metadata=metadata,
            status=AccountStatus.OPEN,
            journal_index=receipt.journal_index,
            is_new=True,
        )
        return receipt

    def _set_status(self, command: SetAccountStatus) -> Receipt:
        validate_id(command.id)
        validate_id(command.account_id, "account_id")
        try:
            status = AccountStatus(command.status)
        except ValueError:
            raise TextMustBeValid(
                f"status must be one of {', '.join(status.value for status in AccountStatus)}"
            ) from None
        request = {
            "kind": "account_status",
            "account_id": command.account_id,
            "status": status.value,
        }
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        account = self._account(command.account_id)
        if account.status is AccountStatus.CLOSED:
            raise AccountMustBeOpen(f"account {command.account_id!r} is closed for good")
        if status is AccountStatus.CLOSED and (account.debits_pending or account.credits_pending):
            raise PendingMustBePending(
                f"account {command.account_id!r} has pending amounts; post or void them first"
            )
        self._check_instruction(command.instruction)
        receipt = self._emit(
            key,
            command.id,
            EntryKind.ACCOUNT_STATUS,
            {"account_id": command.account_id, "status": status.value},
            request,
            command.instruction,
        )
        account.status = status
        account.dirty = True
        return receipt

    def _set_debit_limit(self, command: SetDebitLimit) -> Receipt:
        validate_id(command.id)
        validate_id(command.account_id, "account_id")
        _check_limit(command.debit_limit_minor)
        request = {
            "kind": "debit_limit",
            "account_id": command.account_id,
            "debit_limit": _limit_json(command.debit_limit_minor),
        }
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        account = self._account(command.account_id)
        self._check_instruction(command.instruction)
        receipt = self._emit(
            key,
            command.id,
            EntryKind.DEBIT_LIMIT,
            {
                "account_id": command.account_id,
                "debit_limit": _limit_json(command.debit_limit_minor),
            },
            request,
            command.instruction,
        )
        account.debit_limit_minor = command.debit_limit_minor
        account.dirty = True
        return receipt

    def _new_event(self, command: NewEvent) -> Receipt:
        validate_id(command.id)
        validate_id(command.event_type, "event_type")
        validate_metadata(command.body, field="body", max_bytes=EVENT_BODY_MAX_BYTES)
        request = {"kind": "event", "event_type": command.event_type, "body": dict(command.body)}
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        self._check_instruction(command.instruction)
        return self._emit(
            key,
            command.id,
            EntryKind.EVENT,
            {"id": command.id, "event_type": command.event_type, "body": request["body"]},
            request,
            command.instruction,
        )

    def _register_key(self, command: RegisterSigningKey) -> Receipt:
        validate_id(command.id)
        validate_id(command.signer, "signer")
        if type(command.public_key) is not bytes or len(command.public_key) != PUBLIC_KEY_SIZE:
            raise TextMustBeValid(
                f"public_key must be {PUBLIC_KEY_SIZE} raw Ed25519 bytes, "
                f"got {len(command.public_key) if isinstance(command.public_key, bytes) else 0}"
            )
        encoded_key = base64.b64encode(command.public_key).decode("ascii")
        request = {"kind": "signing_key", "signer": command.signer, "public_key": encoded_key}
        key = entry_key(command)
        existed = self._prior(key, command.id, request, command.instruction)
        if existed is not None:
            return existed
        self._check_instruction(command.instruction)
        first_index = self.next_index + 1
        receipt = self._emit(
            key,
            command.id,
            EntryKind.SIGNING_KEY,
            {"signer": command.signer, "public_key": encoded_key, "first_index": str(first_index)},
            request,
            command.instruction,
        )
        previous = self.keys.get(command.signer)
        if previous is not None and previous.is_new:
            for row in self.new_keys:
                if row["signer"] == command.signer and row["last_index"] is None:
                    row["last_index"] = receipt.journal_index
        elif previous is not None:
            self.retired_keys.append((command.signer, previous.first_index, receipt.journal_index))
        self.keys[command.signer] = KeyState(command.public_key, first_index, is_new=True)
        self.new_keys.append(
            {
                "signer": command.signer,
                "first_index": first_index,
                "last_index": None,
                "public_key": command.public_key,
            }
        )
        return receipt

    # -- checks ----------------------------------------------------------------

    @staticmethod
    def _validate_common_text(code: str, reference: str) -> None:
        validate_text(code, "code", CODE_MAX_LENGTH)
        validate_text(reference, "reference", REFERENCE_MAX_LENGTH)

    @staticmethod
    def _check_sums(postings: tuple[Posting, ...]) -> None:
        """Each side of each currency sums within the signed 64-bit range.

        Amounts are positive here (validated before), so the running total of
        each side only grows: checking it after every posting checks every
        partial sum, as :func:`ledger.money.checked_sum` does.
        """
        totals: dict[tuple[str, Side], int] = {}
        for posting in postings:
            key = (posting.currency, posting.side)
            total = totals.get(key, 0) + posting.amount_minor
            if total > INT64_MAX:
                raise AmountOverflow(f"sum of amounts exceeds {INT64_MAX} minor units")
            totals[key] = total

    def _prior(
        self,
        key: str,
        entry_id: str,
        request: dict[str, Any],
        instruction: SignedInstruction | None,
    ) -> Receipt | None:
        """The original receipt when this id was used before with the same request.

        "Same" includes the exact signed instruction bytes (not the signature:
        a retry may be re-signed after a key rotation), so two different
        instructions can never share an id even when the ledger fields agree.
        """
        if key not in self.prior_entries:
            return None
        return self._prior_encoded(
            key, entry_id, encode_trusted(_with_instruction(request, instruction))
        )

    def _prior_encoded(self, key: str, entry_id: str, request: bytes) -> Receipt | None:
        """:meth:`_prior` for a request already encoded (with its instruction's hash)."""
        prior = self.prior_entries.get(key)
        if prior is None:
            return None
        differing = _differing_fields(decode(prior.request), decode(request))
        if differing:
            raise ExistsWithDifferentBody(entry_id, differing)
        return Receipt(
            entry_id, prior.journal_index, prior.leaf_hash, prior.committed_at_us, existed=True
        )

    def _account(self, account_id: str) -> AccountState:
        account = self.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"account {account_id!r} does not exist")
        return account

    def _check_accounts(self, postings: tuple[Posting, ...]) -> None:
        # One rule at a time over all postings, so the error reported is the
        # earliest in precedence whatever the order of the postings.
        for posting in postings:
            self._account(posting.account_id)
        for posting in postings:
            account = self.accounts[posting.account_id]
            if account.status is not AccountStatus.OPEN:
                raise AccountMustBeOpen(
                    f"account {posting.account_id!r} is {account.status.value}; "
                    "it accepts no new postings"
                )
        for posting in postings:
            account = self.accounts[posting.account_id]
            if account.currency != posting.currency:
                raise CurrencyMustMatchAccount(
                    f"posting in {posting.currency} to account {posting.account_id!r}, "
                    f"which holds {account.currency}"
                )

    @staticmethod
    def _check_balanced(postings: tuple[Posting, ...]) -> None:
        net: dict[str, int] = {}
        for posting in postings:
            amount = posting.amount_minor if posting.side is Side.DEBIT else -posting.amount_minor
            net[posting.currency] = net.get(posting.currency, 0) + amount
        for code, difference in sorted(net.items()):
            if difference:
                debits = sum(
                    p.amount_minor for p in postings if p.currency == code and p.side is Side.DEBIT
                )
                raise DebitsMustEqualCredits(
                    f"{code} debits total {debits} but credits total {debits - difference}; "
                    "every currency must balance"
                )

    def _check_instruction(self, instruction: SignedInstruction | None) -> None:
        """Verify a participant's signature with the signer's key current at this index.

        One signature may cover several commands of a batch (the same payload
        and signature on each): it is verified once.
        """
        if instruction is None or not self.verify_signatures:
            return
        key = self.keys.get(instruction.signer)
        if key is None:
            raise SignerMustBeKnown(f"signer {instruction.signer!r} has no registered signing key")
        fingerprint = (instruction.signer, instruction.payload, instruction.signature)
        if fingerprint in self._verified:
            return
        verify_instruction(key.public_key, instruction.payload, instruction.signature)
        self._verified.add(fingerprint)

    def _deltas(
        self,
        posted: tuple[Posting, ...],
        released: tuple[Posting, ...],
        pending: tuple[Posting, ...] = (),
    ) -> dict[str, _Delta]:
        deltas: dict[str, _Delta] = {}
        for posting in posted:
            delta = deltas.setdefault(posting.account_id, _Delta())
            if posting.side is Side.DEBIT:
                delta.debits_posted += posting.amount_minor
            else:
                delta.credits_posted += posting.amount_minor
        for posting in pending:
            delta = deltas.setdefault(posting.account_id, _Delta())
            if posting.side is Side.DEBIT:
                delta.debits_pending += posting.amount_minor
            else:
                delta.credits_pending += posting.amount_minor
        for posting in released:
            delta = deltas.setdefault(posting.account_id, _Delta())
            if posting.side is Side.DEBIT:
                delta.debits_pending -= posting.amount_minor
            else:
                delta.credits_pending -= posting.amount_minor
        return deltas

    def _check_limits(
        self, posted: tuple[Posting, ...], pending: tuple[Posting, ...]
    ) -> dict[str, _Delta]:
        """Balance flags and caps, counting pending amounts pessimistically.

        Pending debits count against the debit cap, pending credits do not count
        as cover (they may be voided). Only accounts this entry debits (or
        credits) are checked for the debit (or credit) rule, so an account
        already past a lowered cap can still be paid into.

        Returns the changes it checked, for :meth:`_move` to apply.
        """
        deltas = self._deltas(posted, (), pending)
        changes = []
        for account_id, delta in deltas.items():
            account = self.accounts[account_id]
            debits_posted = account.debits_posted + delta.debits_posted
            credits_posted = account.credits_posted + delta.credits_posted
            debits_pending = account.debits_pending + delta.debits_pending
            credits_pending = account.credits_pending + delta.credits_pending
            # Posted plus pending: posting a pending amount later moves it into the
            # posted total without another check, so it must fit already.
            if (
                debits_posted + debits_pending > INT64_MAX
                or credits_posted + credits_pending > INT64_MAX
            ):
                raise AmountOverflow(
                    f"account {account_id!r} totals (posted and pending) would exceed "
                    f"{INT64_MAX} minor units"
                )
            changes.append(
                (account, delta, debits_posted, credits_posted, debits_pending, credits_pending)
            )
        # One rule at a time over all accounts (precedence: exceeds_credits first).
        for account, delta, debits_posted, credits_posted, debits_pending, _ in changes:
            if delta.debits_posted or delta.debits_pending:
                cap = account.debit_cap()
                net_debit = debits_posted + debits_pending - credits_posted
                if cap is not None and net_debit > cap:
                    raise ExceedsCredits(
                        f"account {account.id!r} would reach a net debit of {net_debit} "
                        f"{account.currency} minor units (pending included); its cap is {cap}"
                    )
        for account, delta, debits_posted, credits_posted, _, credits_pending in changes:
            if (
                delta.credits_posted or delta.credits_pending
            ) and AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS in account.flags:
                net_credit = credits_posted + credits_pending - debits_posted
                if net_credit > 0:
                    raise ExceedsDebits(
                        f"account {account.id!r} would reach a net credit of {net_credit} "
                        f"{account.currency} minor units (pending included); it must stay at 0"
                    )
        return deltas

    def _pending(self, pending_id: str) -> TransactionRecord:
        record = self.transactions.get(pending_id)
        if record is None or record.kind is not EntryKind.TRANSACTION:
            raise TransactionNotFound(f"pending transaction {pending_id!r} does not exist")
        if record.state is TransactionState.PENDING_EXPIRED:
            raise PendingExpired(
                f"pending {pending_id!r} passed its timeout and its reservation was released"
            )
        if record.state is not TransactionState.PENDING:
            raise PendingMustBePending(
                f"transaction {pending_id!r} is {record.state.value}, not pending"
            )
        if record.timeout_at_us is not None and record.timeout_at_us <= self.committed_at_us:
            raise PendingExpired(f"pending {pending_id!r} passed its timeout")
        return record

    # -- effects -----------------------------------------------------------------

    def _emit(
        self,
        key: str,
        entry_id: str,
        kind: EntryKind,
        body: Mapping[str, Any],
        request: dict[str, Any] | None,
        instruction: SignedInstruction | None,
    ) -> Receipt:
        members = {name: encode_trusted_text(value) for name, value in body.items()}
        request_bytes = (
            encode_trusted(_with_instruction(request, instruction)) if request is not None else b""
        )
        return self._emit_encoded(key, entry_id, kind, members, request_bytes, instruction)

    def _emit_encoded(
        self,
        key: str,
        entry_id: str,
        kind: EntryKind,
        members: Mapping[str, str],
        request: bytes,
        instruction: SignedInstruction | None,
    ) -> Receipt:
        """:meth:`_emit` for a body of RFC 8785 member texts and an encoded request."""
        index = self.next_index
        leaf = encode_leaf_members(index, kind, self.committed_at_us, members, instruction)
        digest = leaf_hash(leaf)
        self.output.journal.append(
            (index, key, kind.value, request, leaf, digest, self.committed_at_us)
        )
        self.output.leaf_hashes.append(digest)
        self.prior_entries[key] = PriorEntry(index, digest, request, self.committed_at_us)
        self.next_index += 1
        return Receipt(entry_id, index, digest, self.committed_at_us)

    def _record_transaction(
        self,
        transaction_id: str,
        kind: EntryKind,
        journal_index: int,
        state: TransactionState,
        postings: tuple[Posting, ...],
        *,
        code: str,
        reference: str,
        metadata: bytes,
        timeout_at_us: int | None = None,
        pending_id: str | None = None,
        reverses_id: str | None = None,
    ) -> None:
        self.transactions[transaction_id] = TransactionRecord(
            transaction_id,
            kind,
            journal_index,
            state,
            postings,
            timeout_at_us,
            is_new=True,
        )
        self.output.new_transactions.append(
            (
                transaction_id,
                journal_index,
                kind.value,
                state.value,
                code,
                reference,
                metadata.decode("utf-8"),
                pending_id,
                reverses_id,
                timeout_at_us,
                self.committed_at_us,
            )
        )

    def _move(
        self,
        journal_index: int,
        posted: tuple[Posting, ...],
        released: tuple[Posting, ...],
        *,
        pending: tuple[Posting, ...] = (),
        deltas: dict[str, _Delta] | None = None,
    ) -> None:
        """Apply postings to account totals and record them as posting rows.

        ``deltas`` are the changes :meth:`_check_limits` computed from the
        same postings, when it ran.
        """
        rows = self.output.postings
        sequence = 0
        for effect, postings in (("posted", posted), ("pending", pending), ("released", released)):
            for posting in postings:
                rows.append(
                    (
                        journal_index,
                        sequence,
                        posting.account_id,
                        posting.currency,
                        posting.side.value,
                        posting.amount_minor,
                        effect,
                    )
                )
                sequence += 1
                sign = 1 if posting.side is Side.DEBIT else -1
                slot = 0 if effect == "posted" else 1
                direction = -1 if effect == "released" else 1
                self._net[posting.currency][slot] += sign * direction * posting.amount_minor
        if deltas is None:
            deltas = self._deltas(posted, released, pending)
        for account_id, delta in deltas.items():
            account = self.accounts[account_id]
            account.debits_posted += delta.debits_posted
            account.credits_posted += delta.credits_posted
            account.debits_pending += delta.debits_pending
            account.credits_pending += delta.credits_pending
            if account.debits_pending < 0 or account.credits_pending < 0:
                raise IntegrityError(f"account {account_id!r} pending total went negative")
            account.dirty = True


def _with_instruction(
    request: dict[str, Any], instruction: SignedInstruction | None
) -> dict[str, Any]:
    if instruction is None:
        return request
    return {**request, "instruction_sha256": hashlib.sha256(instruction.payload).hexdigest()}


def _request_bytes(members: dict[str, str], instruction: SignedInstruction | None) -> bytes:
    """A stored request from RFC 8785 member texts, with its instruction's hash."""
    if instruction is not None:
        digest = hashlib.sha256(instruction.payload).hexdigest()
        members["instruction_sha256"] = encode_trusted_text(digest)
    return join_members(members)


def _other(side: Side) -> Side:
    return Side.CREDIT if side is Side.DEBIT else Side.DEBIT


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if type(limit) is not int or limit < 0 or limit > INT64_MAX:
        raise LimitMustNotBeNegative(
            f"debit_limit_minor must be an integer from 0 to {INT64_MAX}, got {limit!r}"
        )


def _limit_json(limit: int | None) -> str | None:
    return None if limit is None else str(limit)


def _as_stored(request: dict[str, Any]) -> Any:
    """A request as it reads back from the journal (tuples become lists), for comparison."""
    return decode(encode_trusted(request))


def _differing_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Top-level (and one level into ``account``) fields whose values differ."""
    differing: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and name == "account":
            differing.extend(_differing_fields(old, new))
        else:
            differing.append(name)
    return differing


__all__ = [
    "ID_MAX_LENGTH",
    "JOURNAL_COLUMNS",
    "POSTING_COLUMNS",
    "TRANSACTION_COLUMNS",
    "AccountState",
    "Batch",
    "BatchOutput",
    "KeyState",
    "PriorEntry",
    "TransactionRecord",
    "entry_key",
    "expiry_key",
    "leaf_hash",
]
