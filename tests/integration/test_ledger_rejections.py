"""Every rejection the ledger can give a command: one row each, in order of precedence.

A row names the rule it breaks, the exact error class and its stable code,
and runs against one seeded ledger per backend. After each row the ledger
must be exactly as it was (journal size, every account's four totals, status
and limit) and its invariants must hold: rules are checked before anything is
written.

Precedence rows break two rules at once and must report the earlier one. The
order is the one documented in ``ledger.validation`` (and ``ledger.errors``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from ledger import errors
from ledger.errors import (
    AccountExistsWithDifferentFields,
    AccountMustBeOpen,
    AccountNotFound,
    AlreadyReversed,
    AmountMustBePositive,
    BatchMustNotExceedLimit,
    CurrencyMustMatchAccount,
    DebitsMustEqualCredits,
    ExceedsCredits,
    ExceedsDebits,
    ExistsWithDifferentBody,
    FlagsMustBeCompatible,
    IdMustBeValid,
    LedgerError,
    LimitMustNotBeNegative,
    LinkedCommandFailed,
    MetadataMustBeValid,
    PartialPostNeedsTwoPostings,
    PendingExpired,
    PendingMustBePending,
    PostAmountMustNotExceedPending,
    PostingsMustBeAtLeastTwo,
    PostingsMustNotExceedLimit,
    ReversalMustBeOfPosted,
    TextMustBeValid,
    TimeoutMustBeValid,
    TransactionNotFound,
)
from ledger.money import INT64_MAX, AmountOverflow, UnknownCurrency
from ledger.records import (
    AccountFlag,
    AccountStatus,
    Command,
    NewAccount,
    NewTransaction,
    Posting,
    PostPending,
    Reverse,
    SetAccountStatus,
    SetDebitLimit,
    Side,
    VoidPending,
)
from ledger.store import MAX_BATCH, Ledger
from tests.integration.ledger_support import (
    DatabaseFactory,
    ManualClock,
    account,
    funded_account,
    run,
    snapshot,
    transfer,
)

DEBIT, CREDIT = Side.DEBIT, Side.CREDIT
HUGE_MINOR = INT64_MAX - 10


def seed(ledger: Ledger, clock: ManualClock) -> None:
    """The state every row runs against (figures in the comments)."""
    run(
        ledger,
        account("bank"),
        funded_account("alice"),
        funded_account("bob"),
        account("capped", debit_limit_minor=500),
        account("settle", flags=[AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS]),
        account("frozen"),
        account("closed"),
        account("bank-pkr", "PKR"),
        funded_account("alice-pkr", "PKR"),
        account("huge"),
        account("huge-sink"),
    )
    run(
        ledger,
        SetAccountStatus("freeze-frozen", "frozen", AccountStatus.FROZEN),
        SetAccountStatus("close-closed", "closed", AccountStatus.CLOSED),
        transfer("fund-alice", "bank", "alice", 1000),
        transfer("fund-alice-pkr", "bank-pkr", "alice-pkr", 5000, "PKR"),
        transfer("fund-settle", "settle", "bank", 300),
        transfer("fund-huge", "huge", "huge-sink", HUGE_MINOR),
        transfer("t-into-capped", "bank", "capped", 100),
        transfer("t-capped-out", "capped", "bank", 600),
        transfer("t-posted", "alice", "bob", 100),
        transfer("t-reversed", "alice", "bob", 50),
        Reverse("r-reversed", "t-reversed"),
        transfer("p-open", "alice", "bob", 200, pending=True, timeout_seconds=3600),
        transfer("p-posted", "alice", "bob", 10, pending=True, timeout_seconds=3600),
        PostPending("post-p-posted", "p-posted"),
        transfer("p-voided", "alice", "bob", 10, pending=True, timeout_seconds=3600),
        VoidPending("void-p-voided", "p-voided"),
        NewTransaction(
            "p-multi",
            (
                Posting("alice", DEBIT, 5, "USD"),
                Posting("bob", CREDIT, 5, "USD"),
                Posting("alice-pkr", DEBIT, 5, "PKR"),
                Posting("bank-pkr", CREDIT, 5, "PKR"),
            ),
            pending=True,
            timeout_seconds=3600,
        ),
        transfer("p-expired", "alice", "bob", 10, pending=True, timeout_seconds=1),
    )
    clock.advance(5)
    assert ledger.expire_pending() == 1
    ledger.check_invariants()
    # alice: posted 160 debits, 1050 credits, 205 pending debits: may debit 685 more.
    # bob: posted 50 debits, 160 credits (205 pending credits are no cover): may debit 110.
    # capped: net debit 500 of its cap of 500. settle: may take 300 in credits.
    assert ledger.balance("alice").debits_pending == 205
    assert ledger.balance("bob").credits_pending == 205


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(request: pytest.FixtureRequest, database_factory: DatabaseFactory) -> Iterator[Ledger]:
    with database_factory(request.param) as location:
        clock = ManualClock()
        ledger = Ledger(location, clock=clock)
        try:
            seed(ledger, clock)
            yield ledger
        finally:
            ledger.close()


# --- The table ------------------------------------------------------------------

Expected = tuple[type[LedgerError], str]


@dataclass(frozen=True)
class Row:
    commands: Sequence[Command]
    expected: Sequence[Expected]
    """Per command, the error class and its code (linked rows: one per command)."""
    linked: bool = False
    fields: Sequence[str] = ()
    """For a conflict: the fields the error must name."""


def row(
    name: str,
    command: Command | Sequence[Command],
    error: type[LedgerError],
    code: str,
    *,
    fields: Sequence[str] = (),
) -> object:
    commands = [command] if not isinstance(command, Sequence) else list(command)
    return pytest.param(Row(commands, [(error, code)] * len(commands), fields=fields), id=name)


def linked_row(
    name: str,
    commands: Sequence[Command],
    expected: Sequence[Expected],
    *,
    fields: Sequence[str] = (),
) -> object:
    return pytest.param(Row(commands, expected, linked=True, fields=fields), id=name)


def two(
    debit_account_id: str,
    credit_account_id: str,
    debit_minor: int = 10,
    credit_minor: int = 10,
    *,
    debit_currency: str = "USD",
    credit_currency: str = "USD",
) -> tuple[Posting, Posting]:
    return (
        Posting(debit_account_id, DEBIT, debit_minor, debit_currency),
        Posting(credit_account_id, CREDIT, credit_minor, credit_currency),
    )


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


LINKED_FAILED = (LinkedCommandFailed, "linked_command_failed")

ROWS = [
    # id_must_be_valid
    row("id-empty", transfer("", "alice", "bob", 1), IdMustBeValid, "id_must_be_valid"),
    row("id-with-space", transfer("a b", "alice", "bob", 1), IdMustBeValid, "id_must_be_valid"),
    row("id-129-chars", transfer("x" * 129, "alice", "bob", 1), IdMustBeValid, "id_must_be_valid"),
    row(
        "id-non-ascii", transfer("zahlung-ü", "alice", "bob", 1), IdMustBeValid, "id_must_be_valid"
    ),
    row("account-id-invalid", account("bad id"), IdMustBeValid, "id_must_be_valid"),
    row("owner-empty", account("new-1", owner=""), IdMustBeValid, "id_must_be_valid"),
    row(
        "posting-account-id-invalid",
        NewTransaction("x-1", two("al ice", "bob")),
        IdMustBeValid,
        "id_must_be_valid",
    ),
    row("pending-id-empty", PostPending("x-2", ""), IdMustBeValid, "id_must_be_valid"),
    row("original-id-invalid", Reverse("x-3", "a b"), IdMustBeValid, "id_must_be_valid"),
    row(
        "status-account-id-empty",
        SetAccountStatus("s-1", "", AccountStatus.FROZEN),
        IdMustBeValid,
        "id_must_be_valid",
    ),
    row(
        "precedence-id-before-text",
        transfer("", "alice", "bob", 1, code="c" * 33),
        IdMustBeValid,
        "id_must_be_valid",
    ),
    # text_must_be_valid
    row(
        "code-33-chars",
        transfer("x-4", "alice", "bob", 1, code="c" * 33),
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "reference-141-chars",
        transfer("x-5", "alice", "bob", 1, reference="r" * 141),
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "reference-control-character",
        transfer("x-6", "alice", "bob", 1, reference="uetr\n"),
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "void-code-33-chars",
        VoidPending("x-7", "p-open", code="c" * 33),
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "posting-side-unknown",
        NewTransaction(
            "x-82",
            (
                Posting("alice", "sideways", 10, "USD"),  # type: ignore[arg-type]
                Posting("bob", CREDIT, 10, "USD"),
            ),
        ),
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "normal-side-unknown",
        NewAccount("new-10", "owner", "USD", "sideways"),  # type: ignore[arg-type]
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "account-flag-unknown",
        NewAccount("new-11", "owner", "USD", CREDIT, flags=frozenset({"no_debits"})),  # type: ignore[arg-type]
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "account-status-unknown",
        SetAccountStatus("s-5", "alice", "dormant"),  # type: ignore[arg-type]
        TextMustBeValid,
        "text_must_be_valid",
    ),
    row(
        "precedence-text-before-metadata",
        NewTransaction("x-8", two("alice", "bob"), code="c" * 33, metadata={"rate": 1.5}),
        TextMustBeValid,
        "text_must_be_valid",
    ),
    # metadata_must_be_valid
    row(
        "metadata-float",
        NewTransaction("x-9", two("alice", "bob"), metadata={"rate": 1.5}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "metadata-nested-9-deep",
        NewTransaction("x-10", two("alice", "bob"), metadata=nested(9)),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "metadata-over-4096-bytes",
        NewTransaction("x-11", two("alice", "bob"), metadata={"note": "n" * 4100}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "metadata-unsafe-integer",
        NewTransaction("x-12", two("alice", "bob"), metadata={"n": 2**53}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "metadata-integer-key",
        NewTransaction("x-13", two("alice", "bob"), metadata={1: "one"}),  # type: ignore[dict-item]
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "metadata-lone-surrogate",
        NewTransaction("x-14", two("alice", "bob"), metadata={"s": "\ud800"}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "metadata-float-in-list",
        Reverse("x-15", "t-posted", metadata={"fx": [1, 2.5]}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "account-metadata-float",
        NewAccount("new-2", "owner", "USD", CREDIT, metadata={"limit": 1.0}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "precedence-metadata-before-flags",
        NewAccount(
            "new-3",
            "owner",
            "USD",
            CREDIT,
            flags=frozenset(AccountFlag),
            metadata={"limit": 1.0},
        ),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    row(
        "precedence-metadata-before-postings",
        NewTransaction("x-16", two("alice", "bob")[:1], metadata={"rate": 1.5}),
        MetadataMustBeValid,
        "metadata_must_be_valid",
    ),
    # flags_must_be_compatible
    row(
        "flags-both-directions",
        account("new-4", flags=AccountFlag),
        FlagsMustBeCompatible,
        "flags_must_be_compatible",
    ),
    row(
        "precedence-flags-before-limit",
        account("new-5", flags=AccountFlag, debit_limit_minor=-1),
        FlagsMustBeCompatible,
        "flags_must_be_compatible",
    ),
    # debit_limit_must_not_be_negative
    row(
        "limit-negative-on-new-account",
        account("new-6", debit_limit_minor=-1),
        LimitMustNotBeNegative,
        "debit_limit_must_not_be_negative",
    ),
    row(
        "limit-negative-set",
        SetDebitLimit("lim-1", "capped", -1),
        LimitMustNotBeNegative,
        "debit_limit_must_not_be_negative",
    ),
    row(
        "limit-beyond-int64",
        SetDebitLimit("lim-2", "capped", INT64_MAX + 1),
        LimitMustNotBeNegative,
        "debit_limit_must_not_be_negative",
    ),
    # postings_must_be_at_least_two
    row(
        "postings-none",
        NewTransaction("x-17", ()),
        PostingsMustBeAtLeastTwo,
        "postings_must_be_at_least_two",
    ),
    row(
        "postings-one",
        NewTransaction("x-18", two("alice", "bob")[:1]),
        PostingsMustBeAtLeastTwo,
        "postings_must_be_at_least_two",
    ),
    row(
        "precedence-count-before-amount",
        NewTransaction("x-19", two("alice", "bob", 0, 0)[:1]),
        PostingsMustBeAtLeastTwo,
        "postings_must_be_at_least_two",
    ),
    # postings_must_not_exceed_limit
    row(
        "postings-129",
        NewTransaction(
            "x-20",
            (
                Posting("alice", DEBIT, 128, "USD"),
                *(Posting("bob", CREDIT, 1, "USD") for _ in range(128)),
            ),
        ),
        PostingsMustNotExceedLimit,
        "postings_must_not_exceed_limit",
    ),
    # batch_must_not_exceed_limit: raised by execute itself, see test_batch_over_limit
    # amount_must_be_positive
    row(
        "amount-zero",
        transfer("x-21", "alice", "bob", 0),
        AmountMustBePositive,
        "amount_must_be_positive",
    ),
    row(
        "amount-negative",
        transfer("x-22", "alice", "bob", -5),
        AmountMustBePositive,
        "amount_must_be_positive",
    ),
    row(
        "amount-bool",
        transfer("x-23", "alice", "bob", True),
        AmountMustBePositive,
        "amount_must_be_positive",
    ),
    row(
        "amount-beyond-int64",
        transfer("x-24", "alice", "bob", INT64_MAX + 1),
        AmountMustBePositive,
        "amount_must_be_positive",
    ),
    row(
        "post-amount-zero",
        PostPending("x-25", "p-open", amount_minor=0),
        AmountMustBePositive,
        "amount_must_be_positive",
    ),
    row(
        "precedence-amount-before-currency",
        NewTransaction("x-26", two("alice", "bob", 10, 0, debit_currency="XXX")),
        AmountMustBePositive,
        "amount_must_be_positive",
    ),
    # currency_must_be_known
    row(
        "currency-unknown-in-posting",
        transfer("x-27", "alice", "bob", 10, "XXX"),
        UnknownCurrency,
        "currency_must_be_known",
    ),
    row(
        "currency-lowercase-on-account",
        account("new-7", "usd"),
        UnknownCurrency,
        "currency_must_be_known",
    ),
    # amount_must_fit_int64 (sum of one side of one currency)
    row(
        "debits-sum-beyond-int64",
        NewTransaction(
            "x-28",
            (
                Posting("alice", DEBIT, INT64_MAX, "USD"),
                Posting("alice", DEBIT, 1, "USD"),
                Posting("bob", CREDIT, INT64_MAX, "USD"),
                Posting("bob", CREDIT, 1, "USD"),
            ),
        ),
        AmountOverflow,
        "amount_must_fit_int64",
    ),
    row(
        "precedence-overflow-before-timeout",
        NewTransaction(
            "x-29",
            (
                Posting("alice", DEBIT, INT64_MAX, "USD"),
                Posting("alice", DEBIT, 1, "USD"),
                Posting("bob", CREDIT, INT64_MAX, "USD"),
            ),
            pending=True,
        ),
        AmountOverflow,
        "amount_must_fit_int64",
    ),
    # timeout_must_be_valid
    row(
        "pending-without-timeout",
        transfer("x-30", "alice", "bob", 1, pending=True),
        TimeoutMustBeValid,
        "timeout_must_be_valid",
    ),
    row(
        "posted-with-timeout",
        transfer("x-31", "alice", "bob", 1, timeout_seconds=60),
        TimeoutMustBeValid,
        "timeout_must_be_valid",
    ),
    row(
        "timeout-zero",
        transfer("x-32", "alice", "bob", 1, pending=True, timeout_seconds=0),
        TimeoutMustBeValid,
        "timeout_must_be_valid",
    ),
    row(
        "timeout-over-30-days",
        transfer("x-33", "alice", "bob", 1, pending=True, timeout_seconds=30 * 86400 + 1),
        TimeoutMustBeValid,
        "timeout_must_be_valid",
    ),
    row(
        "precedence-timeout-before-exists",
        transfer("t-posted", "alice", "bob", 100, pending=True),
        TimeoutMustBeValid,
        "timeout_must_be_valid",
    ),
    # exists_with_different_body
    row(
        "exists-different-amount",
        transfer("t-posted", "alice", "bob", 101),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["postings"],
    ),
    row(
        "exists-different-reference-and-code",
        transfer("t-posted", "alice", "bob", 100, reference="uetr-1", code="fee"),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["code", "reference"],
    ),
    row(
        "exists-different-kind",
        VoidPending("t-posted", "p-open"),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["kind", "pending", "pending_id", "postings"],
    ),
    row(
        "exists-post-different-amount",
        PostPending("post-p-posted", "p-posted", amount_minor=5),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["amount_minor"],
    ),
    row(
        "exists-reversal-different-original",
        Reverse("r-reversed", "t-posted"),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["original_id"],
    ),
    row(
        "precedence-exists-before-transaction-not-found",
        PostPending("post-p-posted", "no-such-pending"),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["pending_id"],
    ),
    row(
        "precedence-exists-before-account-not-found",
        transfer("t-posted", "nobody", "bob", 100),
        ExistsWithDifferentBody,
        "exists_with_different_body",
        fields=["postings"],
    ),
    linked_row(
        "exists-earlier-in-same-batch",
        [transfer("x-34", "alice", "bob", 1), transfer("x-34", "alice", "bob", 2)],
        [LINKED_FAILED, (ExistsWithDifferentBody, "exists_with_different_body")],
        fields=["postings"],
    ),
    # account_must_exist
    row(
        "debit-account-unknown",
        transfer("x-35", "nobody", "bob", 1),
        AccountNotFound,
        "account_must_exist",
    ),
    row(
        "credit-account-unknown",
        transfer("x-36", "alice", "nobody", 1),
        AccountNotFound,
        "account_must_exist",
    ),
    row(
        "status-account-unknown",
        SetAccountStatus("s-2", "nobody", AccountStatus.FROZEN),
        AccountNotFound,
        "account_must_exist",
    ),
    row(
        "limit-account-unknown",
        SetDebitLimit("lim-3", "nobody", 10),
        AccountNotFound,
        "account_must_exist",
    ),
    row(
        "precedence-unknown-before-frozen",
        NewTransaction("x-37", two("frozen", "nobody")),
        AccountNotFound,
        "account_must_exist",
    ),
    row(
        "precedence-unknown-before-unbalanced",
        NewTransaction("x-38", two("nobody", "bob", 10, 9)),
        AccountNotFound,
        "account_must_exist",
    ),
    # account_must_be_open
    row(
        "debit-account-frozen",
        transfer("x-39", "frozen", "bob", 1),
        AccountMustBeOpen,
        "account_must_be_open",
    ),
    row(
        "credit-account-closed",
        transfer("x-40", "bank", "closed", 1),
        AccountMustBeOpen,
        "account_must_be_open",
    ),
    row(
        "reopen-closed-account",
        SetAccountStatus("s-3", "closed", AccountStatus.OPEN),
        AccountMustBeOpen,
        "account_must_be_open",
    ),
    row(
        "precedence-frozen-before-currency",
        NewTransaction("x-41", two("alice", "frozen", debit_currency="PKR")),
        AccountMustBeOpen,
        "account_must_be_open",
    ),
    # currency_must_match_account
    row(
        "posting-currency-not-account-currency",
        NewTransaction("x-42", two("bank-pkr", "bank")),
        CurrencyMustMatchAccount,
        "currency_must_match_account",
    ),
    row(
        "precedence-currency-before-unbalanced",
        NewTransaction("x-43", two("bank-pkr", "bank", 10, 9)),
        CurrencyMustMatchAccount,
        "currency_must_match_account",
    ),
    # debits_must_equal_credits
    row(
        "unbalanced",
        NewTransaction("x-44", two("alice", "bob", 10, 9)),
        DebitsMustEqualCredits,
        "debits_must_equal_credits",
    ),
    row(
        "unbalanced-second-currency",
        NewTransaction(
            "x-45",
            (
                *two("alice", "bob"),
                *two("alice-pkr", "bank-pkr", 5, 4, debit_currency="PKR", credit_currency="PKR"),
            ),
        ),
        DebitsMustEqualCredits,
        "debits_must_equal_credits",
    ),
    row(
        "balanced-only-across-currencies",
        NewTransaction("x-46", two("bank", "bank-pkr", credit_currency="PKR")),
        DebitsMustEqualCredits,
        "debits_must_equal_credits",
    ),
    row(
        "precedence-unbalanced-before-exceeds-credits",
        NewTransaction("x-47", two("alice", "bob", 10_000, 9_999)),
        DebitsMustEqualCredits,
        "debits_must_equal_credits",
    ),
    # amount_must_fit_int64 (an account's totals)
    row(
        "account-debits-beyond-int64",
        transfer("x-48", "huge", "bank", 11),
        AmountOverflow,
        "amount_must_fit_int64",
    ),
    row(
        "pending-debits-beyond-int64-once-posted",
        transfer("x-49", "huge", "bank", 11, pending=True, timeout_seconds=60),
        AmountOverflow,
        "amount_must_fit_int64",
    ),
    row(
        "precedence-overflow-before-exceeds-credits",
        NewTransaction(
            "x-50",
            (
                Posting("alice", DEBIT, 10_000, "USD"),
                Posting("huge", DEBIT, 11, "USD"),
                Posting("bank", CREDIT, 10_011, "USD"),
            ),
        ),
        AmountOverflow,
        "amount_must_fit_int64",
    ),
    # exceeds_credits
    row(
        "debit-past-zero",
        transfer("x-51", "alice", "bob", 686),
        ExceedsCredits,
        "exceeds_credits",
    ),
    row(
        "pending-debits-count-against-cover",
        transfer("x-52", "alice", "bob", 700),
        ExceedsCredits,
        "exceeds_credits",
    ),
    row(
        "pending-credits-are-no-cover",
        transfer("x-53", "bob", "alice", 111),
        ExceedsCredits,
        "exceeds_credits",
    ),
    row(
        "pending-debit-past-zero",
        transfer("x-54", "alice", "bob", 686, pending=True, timeout_seconds=60),
        ExceedsCredits,
        "exceeds_credits",
    ),
    row(
        "debit-limit-reached",
        transfer("x-55", "capped", "bank", 1),
        ExceedsCredits,
        "exceeds_credits",
    ),
    row(
        "reversal-past-debit-limit",
        Reverse("x-56", "t-into-capped"),
        ExceedsCredits,
        "exceeds_credits",
    ),
    row(
        "precedence-exceeds-credits-before-exceeds-debits",
        NewTransaction(
            "x-57",
            (Posting("settle", CREDIT, 10_000, "USD"), Posting("alice", DEBIT, 10_000, "USD")),
        ),
        ExceedsCredits,
        "exceeds_credits",
    ),
    # exceeds_debits
    row(
        "credit-past-zero",
        transfer("x-58", "bank", "settle", 301),
        ExceedsDebits,
        "exceeds_debits",
    ),
    row(
        "pending-credit-past-zero",
        transfer("x-59", "bank", "settle", 301, pending=True, timeout_seconds=60),
        ExceedsDebits,
        "exceeds_debits",
    ),
    # transaction_must_exist
    row(
        "post-unknown-pending",
        PostPending("x-60", "no-such-pending"),
        TransactionNotFound,
        "transaction_must_exist",
    ),
    row(
        "void-unknown-pending",
        VoidPending("x-61", "no-such-pending"),
        TransactionNotFound,
        "transaction_must_exist",
    ),
    row(
        "reverse-unknown",
        Reverse("x-62", "no-such-transaction"),
        TransactionNotFound,
        "transaction_must_exist",
    ),
    row(
        "post-of-a-post",
        PostPending("x-63", "post-p-posted"),
        TransactionNotFound,
        "transaction_must_exist",
    ),
    # pending_must_be_pending
    row(
        "post-twice",
        PostPending("x-64", "p-posted"),
        PendingMustBePending,
        "pending_must_be_pending",
    ),
    row(
        "void-twice",
        VoidPending("x-65", "p-voided"),
        PendingMustBePending,
        "pending_must_be_pending",
    ),
    row(
        "post-after-void",
        PostPending("x-66", "p-voided"),
        PendingMustBePending,
        "pending_must_be_pending",
    ),
    row(
        "void-after-post",
        VoidPending("x-67", "p-posted"),
        PendingMustBePending,
        "pending_must_be_pending",
    ),
    row(
        "post-of-posted-transaction",
        PostPending("x-68", "t-posted"),
        PendingMustBePending,
        "pending_must_be_pending",
    ),
    row(
        "close-account-with-pending",
        SetAccountStatus("s-4", "alice", AccountStatus.CLOSED),
        PendingMustBePending,
        "pending_must_be_pending",
    ),
    # pending_expired
    row(
        "post-after-expiry",
        PostPending("x-69", "p-expired"),
        PendingExpired,
        "pending_expired",
    ),
    row(
        "void-after-expiry",
        VoidPending("x-70", "p-expired"),
        PendingExpired,
        "pending_expired",
    ),
    # post_amount_must_not_exceed_pending
    row(
        "post-more-than-reserved",
        PostPending("x-71", "p-open", amount_minor=201),
        PostAmountMustNotExceedPending,
        "post_amount_must_not_exceed_pending",
    ),
    # partial_post_needs_two_postings
    row(
        "partial-post-of-four-postings",
        PostPending("x-72", "p-multi", amount_minor=1),
        PartialPostNeedsTwoPostings,
        "partial_post_needs_two_postings",
    ),
    # reversal_must_be_of_posted
    row(
        "reverse-pending",
        Reverse("x-73", "p-open"),
        ReversalMustBeOfPosted,
        "reversal_must_be_of_posted",
    ),
    row(
        "reverse-posted-pending",
        Reverse("x-74", "p-posted"),
        ReversalMustBeOfPosted,
        "reversal_must_be_of_posted",
    ),
    row(
        "reverse-void",
        Reverse("x-75", "void-p-voided"),
        ReversalMustBeOfPosted,
        "reversal_must_be_of_posted",
    ),
    # already_reversed
    row(
        "reverse-twice",
        Reverse("x-76", "t-reversed"),
        AlreadyReversed,
        "already_reversed",
    ),
    # account_exists_with_different_fields
    row(
        "account-different-currency",
        funded_account("alice", "PKR"),
        AccountExistsWithDifferentFields,
        "account_exists_with_different_fields",
        fields=["currency"],
    ),
    row(
        "account-different-flags",
        account("alice"),
        AccountExistsWithDifferentFields,
        "account_exists_with_different_fields",
        fields=["flags"],
    ),
    row(
        "account-different-owner-and-limit",
        account("capped", owner="someone-else", debit_limit_minor=600),
        AccountExistsWithDifferentFields,
        "account_exists_with_different_fields",
        fields=["debit_limit", "owner"],
    ),
    # linked_command_failed
    linked_row(
        "linked-later-command-fails",
        [transfer("x-77", "alice", "bob", 1), transfer("x-78", "alice", "bob", 10_000)],
        [LINKED_FAILED, (ExceedsCredits, "exceeds_credits")],
    ),
    linked_row(
        "linked-first-command-fails",
        [
            PostPending("x-79", "p-expired"),
            transfer("x-80", "alice", "bob", 1),
            account("new-8"),
        ],
        [(PendingExpired, "pending_expired"), LINKED_FAILED, LINKED_FAILED],
    ),
    linked_row(
        "linked-needs-account-of-failed-command",
        [account("new-9", "XXX"), transfer("x-81", "alice", "new-9", 1)],
        [(UnknownCurrency, "currency_must_be_known"), LINKED_FAILED],
    ),
]


@pytest.mark.parametrize("case", ROWS)
def test_rejection(seeded: Ledger, case: Row) -> None:
    before = snapshot(seeded)
    results = seeded.execute(list(case.commands), linked=case.linked)
    assert len(results) == len(case.commands)
    for result, command, (error_class, code) in zip(
        results, case.commands, case.expected, strict=True
    ):
        assert result.id == command.id
        assert result.receipt is None
        assert type(result.error) is error_class, f"{command.id!r}: {result.error!r}"
        assert result.error.code == code
        if isinstance(result.error, ExistsWithDifferentBody):
            assert result.error.fields == list(case.fields)
        if isinstance(result.error, (ExistsWithDifferentBody, AccountExistsWithDifferentFields)):
            for field in case.fields:
                assert field in result.error.message
    assert snapshot(seeded) == before
    seeded.check_invariants()


def test_batch_over_limit(seeded: Ledger) -> None:
    """A batch of MAX_BATCH + 1 commands is refused whole, before it is looked at."""
    before = snapshot(seeded)
    commands = [transfer(f"b-{n}", "bank", "alice", 1) for n in range(MAX_BATCH + 1)]
    with pytest.raises(BatchMustNotExceedLimit) as raised:
        seeded.execute(commands)
    assert raised.value.code == "batch_must_not_exceed_limit"
    assert str(MAX_BATCH) in raised.value.message
    assert MAX_BATCH == 8000
    assert snapshot(seeded) == before
    seeded.check_invariants()


ROOTS = {
    errors.LedgerError,
    errors.InvalidInput,
    errors.NotFound,
    errors.Conflict,
    errors.FailedPrecondition,
    errors.LimitExceeded,
}
NOT_FROM_COMMANDS = {
    errors.IntegrityError: "an invariant breach, never a command's fault",
    BatchMustNotExceedLimit: "raised by execute() itself (test_batch_over_limit)",
}


def _rows() -> Iterator[Row]:
    for param in ROWS:
        (case,) = param.values  # type: ignore[attr-defined]
        assert isinstance(case, Row)
        yield case


def test_table_covers_every_rule() -> None:
    """Each error class a command can trigger has at least one row."""
    every = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, LedgerError)
    } | {UnknownCurrency, AmountOverflow}
    covered = {error for case in _rows() for error, _code in case.expected}
    assert every - ROOTS - set(NOT_FROM_COMMANDS) - covered == set()


def test_codes_are_stable() -> None:
    """The table's codes are the classes' codes: renaming one breaks the contract."""
    for case in _rows():
        for error, code in case.expected:
            assert error.code == code
