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
