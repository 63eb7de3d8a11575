"""Who is calling: the participant and role behind a mutual-TLS client certificate.

The server's interceptor resolves the verified certificate's subject common
name to a :class:`Caller` and binds it for the duration of the call;
servicers and flows ask :func:`current_caller` and never look at transport
details themselves.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from enum import StrEnum

from settlement.errors import PermissionDenied, Unauthenticated


class Role(StrEnum):
    """A participant's role (``settlement.v1.Role`` without the prefix, lower case)."""

    BANK = "bank"
    FX_PROVIDER = "fx_provider"
    LENDER = "lender"
    OPERATOR = "operator"
    AUDITOR = "auditor"


PARTICIPANT_ROLES = frozenset({Role.BANK, Role.FX_PROVIDER, Role.LENDER})
"""Roles that hold accounts and see only their own."""


@dataclass(frozen=True, slots=True)
class Caller:
    participant_id: str
    role: Role
    common_name: str

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.OPERATOR, Role.AUDITOR)

    def require(self, *roles: Role) -> None:
        """Refuse the call unless the caller has one of ``roles``."""
        if self.role not in roles:
            allowed = ", ".join(role.value for role in roles)
            raise PermissionDenied(
                f"participant {self.participant_id!r} has role {self.role.value}; "
                f"this call needs one of: {allowed}"
            )

    def require_writer(self) -> None:
        if self.role is Role.AUDITOR:
            raise PermissionDenied("auditors read everything and write nothing")


_CALLER: ContextVar[Caller | None] = ContextVar("settlement_caller", default=None)


def bind_caller(caller: Caller) -> Token[Caller | None]:
    return _CALLER.set(caller)


def unbind_caller(token: Token[Caller | None]) -> None:
    _CALLER.reset(token)


def current_caller() -> Caller:
    """The authenticated caller of the current RPC (set by the auth interceptor)."""
    caller = _CALLER.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller: a client certificate is required")
    return caller
