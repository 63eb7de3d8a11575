"""The ledger's records: small immutable types with documented fields.

Commands (``NewAccount``, ``NewTransaction``, ``PostPending``, ``VoidPending``,
``Reverse``, ``SetAccountStatus``, ``SetDebitLimit``) are what callers submit;
``Account``, ``Balance``, ``Transaction`` and ``Receipt`` are what the ledger
returns. Amounts are ``int`` minor units everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ledger.errors import LedgerError

JsonObject = Mapping[str, Any]
"""A metadata object: str keys; values str, int (|n| < 2**53), bool, None, lists, objects."""


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class AccountStatus(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"
    CLOSED = "closed"


class AccountFlag(StrEnum):
    DEBITS_MUST_NOT_EXCEED_CREDITS = "debits_must_not_exceed_credits"
    CREDITS_MUST_NOT_EXCEED_DEBITS = "credits_must_not_exceed_debits"


class EntryKind(StrEnum):
    """What a journal leaf records."""

    ACCOUNT = "account"
    ACCOUNT_STATUS = "account_status"
    DEBIT_LIMIT = "debit_limit"
    TRANSACTION = "transaction"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"
    EXPIRE_PENDING = "expire_pending"
    REVERSAL = "reversal"
    SIGNING_KEY = "signing_key"
    EVENT = "event"


class TransactionState(StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    PENDING_POSTED = "pending_posted"
    PENDING_VOIDED = "pending_voided"
    PENDING_EXPIRED = "pending_expired"


@dataclass(frozen=True, slots=True)
class SignedInstruction:
    """A participant's instruction exactly as signed: kept verbatim in the leaf."""

    signer: str
    payload: bytes
    signature: bytes

    def __repr__(self) -> str:
        return f"SignedInstruction(signer={self.signer!r}, payload={len(self.payload)} bytes)"


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of a transaction: ``amount_minor`` > 0 on one side of one account."""

    account_id: str
    side: Side
    amount_minor: int
    currency: str


# --- Commands ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAccount:
    """Open an account. Retrying with identical fields is harmless."""

    id: str
    owner: str
    currency: str
    normal_side: Side
    flags: frozenset[AccountFlag] = frozenset()
    debit_limit_minor: int | None = None
    """Net debit cap: ``debits_posted + debits_pending - credits_posted`` stays at or
    below it. ``None`` with ``DEBITS_MUST_NOT_EXCEED_CREDITS`` means a cap of 0."""
    metadata: JsonObject = field(default_factory=dict)
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class NewTransaction:
    """Post (or, with ``pending``, reserve) a balanced set of postings."""

    id: str
    postings: tuple[Posting, ...]
    code: str = ""
    reference: str = ""
    metadata: JsonObject = field(default_factory=dict)
    pending: bool = False
    timeout_seconds: int | None = None
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class PostPending:
    """Post a pending transaction, in full or (two postings only) for less."""

    id: str
    pending_id: str
    amount_minor: int | None = None
    code: str = ""
    reference: str = ""
    metadata: JsonObject = field(default_factory=dict)
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class VoidPending:
    """Release a pending transaction's reservation without moving money."""

    id: str
    pending_id: str
    code: str = ""
    reference: str = ""
    metadata: JsonObject = field(default_factory=dict)
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class Reverse:
    """Undo a posted transaction with a new, mirrored one (at most once)."""

    id: str
    original_id: str
    code: str = ""
    reference: str = ""
    metadata: JsonObject = field(default_factory=dict)
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class SetAccountStatus:
    """Freeze, unfreeze or close an account (logged like every change)."""

    id: str
    account_id: str
    status: AccountStatus
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class SetDebitLimit:
    """Change an account's net debit cap (``None`` removes it)."""

    id: str
    account_id: str
    debit_limit_minor: int | None
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class RegisterSigningKey:
    """Register (or rotate) a participant's Ed25519 instruction-signing key.

    The new key signs instructions in entries after this one; a previous key of
    the same signer stops after this entry (it may sign the rotation itself).
    """

    id: str
    signer: str
    public_key: bytes
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """Log a business event that moves no money (a payment's status, a contract).

    The ledger checks and signs it into the log like any entry, so an auditor
    can rebuild a flow's history from the bundle; it never touches balances.
    """

    id: str
    event_type: str
    body: JsonObject = field(default_factory=dict)
    instruction: SignedInstruction | None = None


Command = (
    NewAccount
    | NewEvent
    | RegisterSigningKey
    | NewTransaction
    | PostPending
    | VoidPending
    | Reverse
    | SetAccountStatus
    | SetDebitLimit
)


# --- Results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where a committed command sits in the log.

    ``existed`` is true when this was an idempotent retry and the original
    receipt is returned.
    """

    id: str
    journal_index: int
    leaf_hash: bytes
    committed_at_us: int = 0
    existed: bool = False


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one command in a batch: a receipt or an error."""

    id: str
    receipt: Receipt | None = None
    error: LedgerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    owner: str
    currency: str
    normal_side: Side
    flags: frozenset[AccountFlag]
    debit_limit_minor: int | None
    metadata: JsonObject
    status: AccountStatus
    journal_index: int


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's four running totals, as of a journal index."""

    account_id: str
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    as_of_index: int | None = None

    @property
    def net_debit_posted(self) -> int:
        """Posted debits minus posted credits (negative for a net credit)."""
        return self.debits_posted - self.credits_posted


@dataclass(frozen=True, slots=True)
class Transaction:
    """A committed money-moving journal entry, as stored."""

    id: str
    kind: EntryKind
    journal_index: int
    state: TransactionState
    postings: tuple[Posting, ...]
    code: str
    reference: str
    metadata: JsonObject
    committed_at_us: int
    timeout_at_us: int | None = None
    pending_id: str | None = None
    reverses_id: str | None = None
    instruction: SignedInstruction | None = None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A participant key and the journal indexes whose instructions it may sign.

    ``last_index`` is inclusive; None while the key is current.
    """

    signer: str
    public_key: bytes
    first_index: int
    last_index: int | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a keyset-paged listing; ``next_cursor`` is None at the end."""

    items: tuple[Transaction, ...]
    next_cursor: int | None
