"""The service's error family, and the one table that maps errors to gRPC codes.

Domain code raises :class:`ledger.errors.LedgerError` subclasses (the ledger's
own, or the service's below); only the server's interceptor translates them,
with :func:`grpc_status_for`. Each error keeps a stable snake_case ``code``.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

from ledger.errors import LedgerError


class SettlementError(LedgerError):
    """Root of the service's own expected failures."""

    code: ClassVar[str] = "settlement_error"


class InvalidArgument(SettlementError):
    code = "invalid_argument"
    kind = "invalid"


class NotFoundError(SettlementError):
    code = "not_found"
    kind = "not_found"


class AlreadyExists(SettlementError):
    code = "already_exists"
    kind = "conflict"


class FailedPrecondition(SettlementError):
    code = "failed_precondition"
    kind = "failed_precondition"


class PermissionDenied(SettlementError):
    code = "role_must_permit"
    kind = "permission_denied"


class Unauthenticated(SettlementError):
    code = "certificate_must_identify_participant"
    kind = "unauthenticated"


class ResourceExhausted(SettlementError):
    code = "resource_exhausted"
    kind = "resource_exhausted"


class Unavailable(SettlementError):
    code = "unavailable"
    kind = "unavailable"


STATUS_BY_KIND: dict[str, grpc.StatusCode] = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "conflict": grpc.StatusCode.ALREADY_EXISTS,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "internal": grpc.StatusCode.INTERNAL,
}

STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    # A bad signature means the caller could not prove who asked: the
    # contract documents these as UNAUTHENTICATED, not as malformed input.
    "signature_invalid": grpc.StatusCode.UNAUTHENTICATED,
    "signer_must_be_known": grpc.StatusCode.UNAUTHENTICATED,
}


def grpc_status_for(error: LedgerError) -> grpc.StatusCode:
    """The canonical status code for an expected failure (the only mapping)."""
    return STATUS_BY_CODE.get(error.code, STATUS_BY_KIND.get(error.kind, grpc.StatusCode.INTERNAL))
