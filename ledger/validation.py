"""Pure checks of a command's own fields, before any state is consulted.

Each function raises the error class that names the broken rule. They run in
the precedence order documented in :mod:`ledger.errors`; a command that breaks
two rules reports the earlier one. Per command (``ledger.batch``), the codes
in order, each rule checked over all postings (or accounts) before the next:

- transaction: ``id_must_be_valid``, ``text_must_be_valid`` (code, reference),
  ``metadata_must_be_valid``, ``postings_must_be_at_least_two``,
  ``postings_must_not_exceed_limit``, then per posting ``id_must_be_valid``,
  ``text_must_be_valid`` (side) and ``amount_must_be_positive``, then
  ``currency_must_be_known``, ``amount_must_fit_int64`` (sum of one side of one
  currency), ``timeout_must_be_valid``, ``exists_with_different_body``,
  ``account_must_exist``, ``account_must_be_open``,
  ``currency_must_match_account``, ``debits_must_equal_credits``,
  ``amount_must_fit_int64`` (an account's posted plus pending totals),
  ``exceeds_credits``, ``exceeds_debits``.
- post / void of a pending: ids, text, metadata, ``amount_must_be_positive``,
  ``exists_with_different_body``, ``transaction_must_exist``,
  ``pending_expired`` / ``pending_must_be_pending``,
  ``partial_post_needs_two_postings``, ``post_amount_must_not_exceed_pending``,
  ``account_must_be_open`` (post only).
- reversal: ids, text, metadata, ``exists_with_different_body``,
  ``transaction_must_exist``, ``reversal_must_be_of_posted``,
  ``already_reversed``, ``account_must_be_open``, then the balance rules.
- account: ``id_must_be_valid`` (id, owner), ``currency_must_be_known``,
  ``text_must_be_valid`` (side), ``metadata_must_be_valid``,
  ``text_must_be_valid`` (an unknown flag), ``flags_must_be_compatible``,
  ``debit_limit_must_not_be_negative``, ``account_exists_with_different_fields``.
- status and limit changes: ``id_must_be_valid``, ``text_must_be_valid`` or
  ``debit_limit_must_not_be_negative``, ``exists_with_different_body``,
  ``account_must_exist``, ``account_must_be_open``, ``pending_must_be_pending``
  (closing an account that still has pending amounts).

A batch of more than ``MAX_BATCH`` commands is refused whole
(``batch_must_not_exceed_limit``); in a linked batch every command but the
failing one reports ``linked_command_failed``.
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


_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
"""C0 controls, DEL and lone surrogates: never part of a code or a reference."""


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
    forbidden = _FORBIDDEN_CHARACTERS.search(value)
    if forbidden is not None:
        raise TextMustBeValid(f"{field} holds a control or invalid character {forbidden.group()!r}")


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
