"""Pure checks of a command's own fields, before any state is consulted.

Each function raises the error class that names the broken rule. They run in
the precedence order documented in :mod:`ledger.errors`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ledger.errors import (
    AmountMustBePositive,
    IdMustBeValid,
    PostingsMustBeAtLeastTwo,
    PostingsMustNotExceedLimit,
    TextMustBeValid,
    TimeoutMustBeValid,
)
from ledger.money import INT64_MAX, currency
from ledger.records import Posting, Side

ID_MAX_LENGTH = 128
"""Long enough for a UUID with a readable prefix; short enough to index cheaply."""

CODE_MAX_LENGTH = 32
REFERENCE_MAX_LENGTH = 140
"""ISO 20022 ``Max140Text``, the longest reference a payment message carries."""

MAX_POSTINGS = 128
"""A cross-currency payment needs four; 128 leaves room for fee splits."""

MAX_TIMEOUT_SECONDS = 30 * 24 * 3600
"""A reservation longer than 30 days is a loan, not a pending payment."""


_ID_CHARACTERS = re.compile(r"[!-~]+")
"""Printable ASCII, no space: ids appear in URLs, logs and file names unquoted."""


def validate_id(value: str, field: str = "id") -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= ID_MAX_LENGTH:
        raise IdMustBeValid(f"{field} must be 1 to {ID_MAX_LENGTH} characters, got {value!r:.80}")
    if not _ID_CHARACTERS.fullmatch(value):
        raise IdMustBeValid(f"{field} {value!r:.80} may hold only printable ASCII without spaces")


def validate_text(value: str, field: str, max_length: int) -> None:
    if not isinstance(value, str):
        raise TextMustBeValid(f"{field} must be a string")
    if len(value) > max_length:
        raise TextMustBeValid(f"{field} is {len(value)} characters; the limit is {max_length}")
    for character in value:
        if character < " " or character == "\x7f" or "\ud800" <= character <= "\udfff":
            raise TextMustBeValid(f"{field} holds a control or invalid character {character!r}")


def validate_postings(postings: Sequence[Posting]) -> None:
    if len(postings) < 2:
        raise PostingsMustBeAtLeastTwo(
            f"a transaction needs at least one debit and one credit, got {len(postings)} posting(s)"
        )
    if len(postings) > MAX_POSTINGS:
        raise PostingsMustNotExceedLimit(
            f"a transaction has at most {MAX_POSTINGS} postings, got {len(postings)}"
        )
    for position, posting in enumerate(postings):
        validate_id(posting.account_id, f"postings[{position}].account_id")
        if not isinstance(posting.side, Side):
            raise TextMustBeValid(f"postings[{position}].side must be debit or credit")
        amount = posting.amount_minor
        if type(amount) is not int or amount <= 0:
            raise AmountMustBePositive(
                f"postings[{position}].amount_minor must be a positive integer of minor "
                f"units, got {amount!r}"
            )
        if amount > INT64_MAX:
            raise AmountMustBePositive(
                f"postings[{position}].amount_minor {amount} exceeds {INT64_MAX}"
            )
    for posting in postings:
        currency(posting.currency)


def validate_timeout(pending: bool, timeout_seconds: int | None) -> None:
    if not pending:
        if timeout_seconds is not None:
            raise TimeoutMustBeValid("timeout_seconds is only for pending transactions")
        return
    if timeout_seconds is None:
        raise TimeoutMustBeValid("a pending transaction needs timeout_seconds")
    if type(timeout_seconds) is not int or not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise TimeoutMustBeValid(
            f"timeout_seconds must be 1 to {MAX_TIMEOUT_SECONDS}, got {timeout_seconds!r}"
        )
