"""The ledger's error family.

Every expected failure is a subclass of :class:`LedgerError` with a stable
``code`` (a snake_case name of the broken rule, never renamed) and a message a
person can act on. The service maps these to gRPC status codes in one place;
nothing here knows about gRPC.
"""

from __future__ import annotations

from typing import ClassVar


class LedgerError(Exception):
    """Root of every expected ledger failure.

    ``code`` names the rule that was broken; ``kind`` groups codes into the few
    classes a transport needs (invalid input, not found, conflict, failed
    precondition, resource limit).
    """

    code: ClassVar[str] = "ledger_error"
    kind: ClassVar[str] = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidInput(LedgerError):
    """The request itself is malformed, whatever the ledger's state."""

    code = "invalid_input"
    kind = "invalid"


class NotFound(LedgerError):
    """A referenced account, transaction or key does not exist."""

    code = "not_found"
    kind = "not_found"


class Conflict(LedgerError):
    """The id is taken by a different body (idempotency conflict)."""

    code = "conflict"
    kind = "conflict"


class FailedPrecondition(LedgerError):
    """The request is well formed but the ledger's state refuses it."""

    code = "failed_precondition"
    kind = "failed_precondition"


class LimitExceeded(LedgerError):
    """A named size limit (batch, metadata, postings) was exceeded."""

    code = "limit_exceeded"
    kind = "resource_exhausted"


class IntegrityError(LedgerError):
    """An invariant that must always hold does not: stop, never continue.

    Raised by the in-code invariant checks (never a bare ``assert``, which
    ``python -O`` removes).
    """

    code = "integrity_violation"
    kind = "internal"


# --- Rules, in the order they are checked (precedence). -------------------
# Codes are part of the contract: never rename one, only add new ones.


class IdMustBeValid(InvalidInput):
    """Ids are 1..128 printable ASCII characters without spaces."""

    code = "id_must_be_valid"


class TextMustBeValid(InvalidInput):
    """Code, reference and owner fields have length and character limits."""

    code = "text_must_be_valid"


class MetadataMustBeValid(InvalidInput):
    """Metadata is a small JSON object: no floats, bounded size and depth."""

    code = "metadata_must_be_valid"


class FlagsMustBeCompatible(InvalidInput):
    """An account cannot forbid both net debits and net credits."""

    code = "flags_must_be_compatible"


class LimitMustNotBeNegative(InvalidInput):
    """A debit limit (net debit cap) is zero or more minor units."""

    code = "debit_limit_must_not_be_negative"


class PostingsMustBeAtLeastTwo(InvalidInput):
    """Double entry: a transaction has at least one debit and one credit."""

    code = "postings_must_be_at_least_two"


class PostingsMustNotExceedLimit(LimitExceeded):
    """A transaction has at most MAX_POSTINGS postings."""

    code = "postings_must_not_exceed_limit"


class BatchMustNotExceedLimit(LimitExceeded):
    """A batch holds at most MAX_BATCH commands."""

    code = "batch_must_not_exceed_limit"


class AmountMustBePositive(InvalidInput):
    """Every posting moves a positive whole number of minor units."""

    code = "amount_must_be_positive"


class TimeoutMustBeValid(InvalidInput):
    """Only a pending transaction has a timeout, and it is 1..MAX seconds."""

    code = "timeout_must_be_valid"


class ExistsWithDifferentBody(Conflict):
    """The id was already used for a different request (idempotency conflict)."""

    code = "exists_with_different_body"

    def __init__(self, entry_id: str, fields: list[str]) -> None:
        self.fields = fields
        super().__init__(
            f"id {entry_id!r} was already used with a different request; "
            f"fields that differ: {', '.join(fields)}. Use a new id for a new request."
        )


class AccountNotFound(NotFound):
    """A posting names an account that does not exist."""

    code = "account_must_exist"


class AccountMustBeOpen(FailedPrecondition):
    """Frozen and closed accounts accept no new postings."""

    code = "account_must_be_open"


class CurrencyMustMatchAccount(InvalidInput):
    """A posting's currency is the currency of its account."""

    code = "currency_must_match_account"


class DebitsMustEqualCredits(InvalidInput):
    """Per currency, the sum of debits equals the sum of credits."""

    code = "debits_must_equal_credits"


class ExceedsCredits(FailedPrecondition):
    """The account's net debit (counting pending debits) would pass its cap."""

    code = "exceeds_credits"


class ExceedsDebits(FailedPrecondition):
    """The account's net credit (counting pending credits) would pass zero."""

    code = "exceeds_debits"


class TransactionNotFound(NotFound):
    """The pending or original transaction named does not exist."""

    code = "transaction_must_exist"


class PendingMustBePending(FailedPrecondition):
    """A pending transaction is posted, voided or expired at most once."""

    code = "pending_must_be_pending"


class PendingExpired(FailedPrecondition):
    """The pending transaction passed its timeout; its reservation was released."""

    code = "pending_expired"


class PostAmountMustNotExceedPending(InvalidInput):
    """A partial post moves at most the reserved amount."""

    code = "post_amount_must_not_exceed_pending"


class PartialPostNeedsTwoPostings(InvalidInput):
    """A partial amount is meaningful only for a one-debit, one-credit pending."""

    code = "partial_post_needs_two_postings"


class ReversalMustBeOfPosted(FailedPrecondition):
    """Only posted money is reversed; a pending transaction is voided instead."""

    code = "reversal_must_be_of_posted"


class AlreadyReversed(FailedPrecondition):
    """A transaction is reversed at most once."""

    code = "already_reversed"


class AccountExistsWithDifferentFields(Conflict):
    """An account id is taken by an account with other fields."""

    code = "account_exists_with_different_fields"


class LinkedCommandFailed(FailedPrecondition):
    """In an all-or-nothing batch, another command failed, so this one was not applied."""

    code = "linked_command_failed"
