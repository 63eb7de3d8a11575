"""What the ISO 20022 builders take and the pacs.008 importer returns.

Small frozen dataclasses with documented fields, and the checks the XSDs cannot
express. Amounts are ``int`` minor units everywhere (``12345`` USD is 123.45
dollars); they become decimal text only in the XML, with exactly the currency's
decimals (:func:`ledger.money.format_amount`). Exchange rates are decimal
strings, never floats. Timestamps must carry their offset: a message read in
another time zone must name the same instant.

Each ``check_*`` function raises the first broken rule, in the order its
docstring lists; every error is an :class:`Iso20022Invalid` (an
:class:`~settlement.errors.InvalidArgument`) with a stable ``code``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, get_args

from ledger.money import CURRENCIES
from settlement.errors import InvalidArgument

ChargeBearer = Literal["DEBT", "CRED", "SHAR"]
"""Who pays the charges (ChargeBearerType1Code; SLEV is SEPA-only, CBPR+ refuses it)."""

SettlementMethod = Literal["CLRG", "INDA"]
"""CLRG: settled across the hub's books as a clearing system; INDA: by the instructed agent."""

CreditDebit = Literal["CRDT", "DBIT"]
"""Direction of an entry or a balance, from the account owner's side (CreditDebitCode)."""

TransactionStatus = Literal[
    "RCVD", "ACTC", "ACCP", "ACSP", "ACWC", "ACSC", "ACCC", "PDNG", "RJCT", "BLCK"
]
"""The ExternalPaymentTransactionStatus1Code values the hub reports.

RCVD received, ACTC technically valid, ACCP customer profile accepted, ACSP
settlement in process, ACWC accepted with change, ACSC settled on the debtor's
side, ACCC credited to the creditor's account, PDNG pending (e.g. held for
sanctions review), RJCT rejected (with a reason), BLCK blocked (funds frozen).
"""

OriginalMessageName = Literal["pacs.008.001.08", "pacs.009.001.08"]
"""Messages a pacs.002 can report on."""

AccountScheme = Literal["IBAN", "OTHER"]
"""IBAN: ``Id/IBAN``; OTHER: ``Id/Othr/Id`` (a US account number, a ledger account id)."""

CHARGE_BEARERS: frozenset[str] = frozenset(get_args(ChargeBearer))
SETTLEMENT_METHODS: frozenset[str] = frozenset(get_args(SettlementMethod))
CREDIT_DEBIT_CODES: frozenset[str] = frozenset(get_args(CreditDebit))
TRANSACTION_STATUSES: frozenset[str] = frozenset(get_args(TransactionStatus))
ORIGINAL_MESSAGE_NAMES: frozenset[str] = frozenset(get_args(OriginalMessageName))
STATUSES_REQUIRING_REASON: frozenset[str] = frozenset({"RJCT"})
"""A rejection without a reason code leaves the debtor's bank unable to repair or refund."""

ABA_CLEARING_SYSTEM = "USABA"
"""ExternalClearingSystemIdentification1Code of US ABA routing numbers (Fedwire)."""

AMOUNT_MINOR_MAX = 10**18 - 1
"""Largest amount a message can carry: ISO 20022 amounts have ``totalDigits`` 18.

The ledger allows up to 2**63 - 1 minor units (19 digits); the XSD does not.
"""

STATEMENT_ENTRIES_MAX = 10_000
"""Entries in one camt.053 or camt.054: validation time grows with the entries;
a longer period must be split (pagination is not implemented)."""

_ABA_ROUTING_NUMBER = re.compile(r"[0-9]{9}")
_DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


# --- Errors --------------------------------------------------------------------------------


class Iso20022Invalid(InvalidArgument):
    """Root of every ISO 20022 building and import failure."""

    code = "iso20022_invalid"


class TimestampMustHaveOffset(Iso20022Invalid):
    code = "timestamp_must_have_offset"


class SettlementMethodMustBeKnown(Iso20022Invalid):
    code = "settlement_method_must_be_known"


class ChargeBearerMustBeKnown(Iso20022Invalid):
    code = "charge_bearer_must_be_known"


class CurrencyMustBeKnown(Iso20022Invalid):
    code = "currency_must_be_known"


class AmountMustBeMinorUnits(Iso20022Invalid):
    """An amount is not an ``int`` (a float or a Decimal slipped in)."""

    code = "amount_must_be_minor_units"


class AmountMustBePositive(Iso20022Invalid):
    code = "amount_must_be_positive"


class AmountMustFitMessage(Iso20022Invalid):
    code = "amount_must_fit_message"


class InstructedAmountMustHaveCurrency(Iso20022Invalid):
    code = "instructed_amount_must_have_currency"


class ConversionMustHaveExchangeRate(Iso20022Invalid):
    code = "conversion_must_have_exchange_rate"


class ExchangeRateMustHaveConversion(Iso20022Invalid):
    code = "exchange_rate_must_have_conversion"


class ExchangeRateMustBeDecimal(Iso20022Invalid):
    code = "exchange_rate_must_be_decimal"


class ExchangeRateMustBePositive(Iso20022Invalid):
    code = "exchange_rate_must_be_positive"


class AbaMustBeNineDigits(Iso20022Invalid):
    code = "aba_must_be_nine_digits"


class StatusMustBeKnown(Iso20022Invalid):
    code = "status_must_be_known"


class OriginalMessageMustBeKnown(Iso20022Invalid):
    code = "original_message_must_be_known"


class RejectionMustHaveReason(Iso20022Invalid):
    code = "rejection_must_have_reason"


class CreditDebitMustBeKnown(Iso20022Invalid):
    code = "credit_debit_must_be_known"


class PeriodMustBeOrdered(Iso20022Invalid):
    code = "period_must_be_ordered"


class EntriesMustFitLimit(Iso20022Invalid):
    code = "entries_must_fit_limit"


class NotificationMustHaveEntries(Iso20022Invalid):
    code = "notification_must_have_entries"


class EntryMustBeInPeriod(Iso20022Invalid):
    code = "entry_must_be_in_period"


class TextMustBeXmlCharacters(Iso20022Invalid):
    """A text holds a character XML 1.0 cannot carry (a control character, a lone surrogate)."""

    code = "text_must_be_xml_characters"


class StatementMustBalance(Iso20022Invalid):
    """Opening balance plus credits minus debits is not the closing balance.

    Carries its evidence: the four figures, in minor units (balances signed,
    credit positive).
    """

    code = "statement_must_balance"

    def __init__(
        self,
        *,
        opening_minor: int,
        credits_minor: int,
        debits_minor: int,
        closing_minor: int,
        where: str,
    ) -> None:
        self.opening_minor = opening_minor
        self.credits_minor = credits_minor
        self.debits_minor = debits_minor
        self.closing_minor = closing_minor
        expected = opening_minor + credits_minor - debits_minor
        super().__init__(
            f"{where}: expected closing balance {expected} minor units (opening {opening_minor}"
            f" + credits {credits_minor} - debits {debits_minor}), got {closing_minor}"
        )


# --- Records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PostalAddress:
    """``PstlAdr``: a country and up to 7 unstructured lines of 70 characters."""

    country: str | None = None
    """ISO 3166 alpha-2 code (``Ctry``)."""
    lines: tuple[str, ...] = ()
    """``AdrLine``, in order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A cash account (``CashAccount38/Id``): an IBAN or another identifier."""

    identifier: str
    scheme: AccountScheme = "IBAN"

    @classmethod
    def iban(cls, iban: str) -> Account:
        return cls(identifier=iban, scheme="IBAN")

    @classmethod
    def other(cls, identifier: str) -> Account:
        """A non-IBAN account number (US accounts, ledger account ids), up to 34 characters."""
        return cls(identifier=identifier, scheme="OTHER")


@dataclass(frozen=True, slots=True, kw_only=True)
class Agent:
    """A financial institution (``FinInstnId``): BIC, optional ABA routing number, name."""

    bic: str
    """BICFI, 8 or 11 characters."""
    aba: str | None = None
    """US routing number, written as ``ClrSysMmbId`` with clearing system ``USABA``."""
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """A debtor or a creditor: an organisation or a person, with the account paid from or to."""

    name: str
    account: Account
    lei: str | None = None
    """Legal Entity Identifier (ISO 17442), written as ``Id/OrgId/LEI``."""
    address: PostalAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fee:
    """A charge taken by an agent (``ChrgsInf``); zero is allowed and means "none taken"."""

    amount_minor: int
    currency: str
    agent: Agent


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentMessage:
    """One customer credit transfer (pacs.008.001.08 with one ``CdtTrfTxInf``)."""

    message_id: str
    created_at: datetime
    uetr: str
    """Unique end-to-end transaction reference: a lowercase UUID version 4."""
    end_to_end_id: str
    instruction_id: str | None
    amount_minor: int
    """Interbank settlement amount, in ``currency``."""
    currency: str
    settlement_date: date
    charge_bearer: ChargeBearer
    debtor: Party
    debtor_agent: Agent
    creditor_agent: Agent
    creditor: Party
    settlement_method: SettlementMethod = "CLRG"
    instructed_amount_minor: int | None = None
    """The amount the debtor ordered, in ``instructed_currency``, before conversion."""
    instructed_currency: str | None = None
    exchange_rate: str | None = None
    """Units of ``currency`` per unit of ``instructed_currency``, a decimal string
    (``"278.5"``); present exactly when the two currencies differ."""
    fees: tuple[Fee, ...] = ()
    remittance: str | None = None
    """Unstructured remittance information (``RmtInf/Ustrd``), e.g. an invoice number."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReason:
    """``StsRsnInf``: an ExternalStatusReason1Code (AM04, AC01, RR04...) and a free text."""

    code: str
    additional_information: str | None = None
    """Up to 105 characters (``AddtlInf``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """The status of one transaction (pacs.002.001.10)."""

    message_id: str
    created_at: datetime
    original_message_id: str
    original_end_to_end_id: str
    original_uetr: str
    status: TransactionStatus
    original_message_name: OriginalMessageName = "pacs.008.001.08"
    original_instruction_id: str | None = None
    reasons: tuple[StatusReason, ...] = ()
    effective_settlement_date: date | None = None
    """When the transaction settled (``FctvIntrBkSttlmDt``), for ACSC and ACCC."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingTransfer:
    """A bank-to-bank transfer funding or defunding a settlement account (pacs.009.001.08)."""

    message_id: str
    created_at: datetime
    uetr: str
    end_to_end_id: str
    instruction_id: str | None
    amount_minor: int
    currency: str
    settlement_date: date
    debtor: Agent
    creditor: Agent
    debtor_account: Account | None = None
    creditor_account: Account | None = None
    """For funding: the participant's settlement account at the hub (``Othr/Id``)."""
    settlement_method: SettlementMethod = "CLRG"
    remittance: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementEntry:
    """One booked movement on an account (``Ntry``)."""

    entry_reference: str
    """The ledger transaction id (``NtryRef`` and ``AcctSvcrRef``, up to 35 characters)."""
    amount_minor: int
    credit_debit: CreditDebit
    booking_date: date
    value_date: date
    transaction_code: str
    """The ledger transaction code (``BkTxCd/Prtry/Cd``)."""
    end_to_end_id: str | None = None
    uetr: str | None = None
    remittance: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """An account's booked movements over whole days (camt.053.001.08).

    Balances are signed, credit positive: a participant's settlement account in
    funds has a positive (CRDT) balance. ``from_date`` and ``to_date`` are
    inclusive days in UTC.
    """

    message_id: str
    statement_id: str
    created_at: datetime
    account_id: str
    currency: str
    from_date: date
    to_date: date
    opening_minor: int
    closing_minor: int
    entries: tuple[StatementEntry, ...]
    account_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A debit or credit notification of one or more entries (camt.054.001.08)."""

    message_id: str
    notification_id: str
    created_at: datetime
    account_id: str
    currency: str
    entries: tuple[StatementEntry, ...]
    account_name: str | None = None


# --- Checks ----------------------------------------------------------------------------------


def check_payment(payment: PaymentMessage) -> None:
    """The rules of a payment beyond its XSD, in order of precedence.

    Timestamp offset; settlement method; charge bearer; settlement currency and
    amount; instructed amount and currency together; the exchange rate present
    exactly when the currencies differ, and a positive decimal; fees; ABA
    routing numbers.
    """
    check_timestamp(payment.created_at, "created_at")
    check_choice(payment.settlement_method, SETTLEMENT_METHODS, SettlementMethodMustBeKnown)
    check_choice(payment.charge_bearer, CHARGE_BEARERS, ChargeBearerMustBeKnown)
    check_currency(payment.currency, "currency")
    check_amount(payment.amount_minor, "amount_minor", zero_allowed=False)
    instructed_amount = payment.instructed_amount_minor
    instructed_currency = payment.instructed_currency
    if (instructed_amount is None) != (instructed_currency is None):
        raise InstructedAmountMustHaveCurrency(
            "expected instructed_amount_minor and instructed_currency together, got "
            f"{instructed_amount!r} and {instructed_currency!r}"
        )
    converted = instructed_currency is not None and instructed_currency != payment.currency
    if instructed_amount is not None and instructed_currency is not None:
        check_currency(instructed_currency, "instructed_currency")
        check_amount(instructed_amount, "instructed_amount_minor", zero_allowed=False)
    if converted and payment.exchange_rate is None:
        raise ConversionMustHaveExchangeRate(
            f"expected an exchange_rate converting {instructed_currency} into "
            f"{payment.currency}, got none"
        )
    if not converted and payment.exchange_rate is not None:
        raise ExchangeRateMustHaveConversion(
            f"expected no exchange_rate without a conversion into {payment.currency}, "
            f"got {payment.exchange_rate!r} with instructed currency {instructed_currency!r}"
        )
    if payment.exchange_rate is not None:
        check_exchange_rate(payment.exchange_rate)
    for index, fee in enumerate(payment.fees):
        check_currency(fee.currency, f"fees[{index}].currency")
        check_amount(fee.amount_minor, f"fees[{index}].amount_minor", zero_allowed=True)
    agents = [payment.debtor_agent, payment.creditor_agent, *(fee.agent for fee in payment.fees)]
    check_agents(agents)


def check_status_report(report: StatusReport) -> None:
    """Timestamp offset; known status; known original message; a reason for RJCT."""
    check_timestamp(report.created_at, "created_at")
    check_choice(report.status, TRANSACTION_STATUSES, StatusMustBeKnown)
    check_choice(report.original_message_name, ORIGINAL_MESSAGE_NAMES, OriginalMessageMustBeKnown)
    if report.status in STATUSES_REQUIRING_REASON and not report.reasons:
        raise RejectionMustHaveReason(
            f"expected at least one reason code for status {report.status}, got none"
        )


def check_funding_transfer(transfer: FundingTransfer) -> None:
    """Timestamp offset; settlement method; currency and amount; ABA routing numbers."""
    check_timestamp(transfer.created_at, "created_at")
    check_choice(transfer.settlement_method, SETTLEMENT_METHODS, SettlementMethodMustBeKnown)
    check_currency(transfer.currency, "currency")
    check_amount(transfer.amount_minor, "amount_minor", zero_allowed=False)
    check_agents([transfer.debtor, transfer.creditor])


def check_statement(statement: Statement) -> None:
    """Timestamp offset; ordered period; currency; entries; balances; reconciliation.

    The reconciliation is the point of a statement: opening + credits - debits
    must equal the closing balance the ledger reported, or the statement would
    tell the participant something the ledger does not say.
    """
    check_timestamp(statement.created_at, "created_at")
    if statement.from_date > statement.to_date:
        raise PeriodMustBeOrdered(
            f"expected from_date on or before to_date, got {statement.from_date.isoformat()}"
            f" after {statement.to_date.isoformat()}"
        )
    check_currency(statement.currency, "currency")
    check_entries(statement.entries)
    for index, entry in enumerate(statement.entries):
        if not statement.from_date <= entry.booking_date <= statement.to_date:
            raise EntryMustBeInPeriod(
                f"entries[{index}]: expected a booking date from {statement.from_date.isoformat()}"
                f" to {statement.to_date.isoformat()}, got {entry.booking_date.isoformat()}"
            )
    check_balance(statement.opening_minor, "opening_minor")
    check_balance(statement.closing_minor, "closing_minor")
    check_reconciles(
        statement.opening_minor,
        [(entry.credit_debit, entry.amount_minor) for entry in statement.entries],
        statement.closing_minor,
        where=f"statement {statement.statement_id}",
    )


def check_notification(notification: Notification) -> None:
    """Timestamp offset; currency; at least one entry; entries."""
    check_timestamp(notification.created_at, "created_at")
    check_currency(notification.currency, "currency")
    if not notification.entries:
        raise NotificationMustHaveEntries("expected at least one entry, got none")
    check_entries(notification.entries)


def check_reconciles(
    opening_minor: int,
    movements: Iterable[tuple[str, int]],
    closing_minor: int,
    *,
    where: str,
) -> None:
    """Raise :class:`StatementMustBalance` unless opening + credits - debits == closing."""
    credits_minor = 0
    debits_minor = 0
    for credit_debit, amount_minor in movements:
        if credit_debit == "CRDT":
            credits_minor += amount_minor
        else:
            debits_minor += amount_minor
    if opening_minor + credits_minor - debits_minor != closing_minor:
        raise StatementMustBalance(
            opening_minor=opening_minor,
            credits_minor=credits_minor,
            debits_minor=debits_minor,
            closing_minor=closing_minor,
            where=where,
        )


def check_entries(entries: tuple[StatementEntry, ...]) -> None:
    """At most :data:`STATEMENT_ENTRIES_MAX` entries; known directions; positive amounts."""
    if len(entries) > STATEMENT_ENTRIES_MAX:
        raise EntriesMustFitLimit(
            f"expected at most {STATEMENT_ENTRIES_MAX} entries, got {len(entries)}"
        )
    for index, entry in enumerate(entries):
        check_choice(entry.credit_debit, CREDIT_DEBIT_CODES, CreditDebitMustBeKnown)
        check_amount(entry.amount_minor, f"entries[{index}].amount_minor", zero_allowed=False)


def check_timestamp(value: datetime, field: str) -> None:
    if value.utcoffset() is None:
        raise TimestampMustHaveOffset(
            f"{field}: expected a timezone-aware datetime, got naive {value.isoformat()}"
        )


def check_currency(code: str, field: str) -> None:
    if code not in CURRENCIES:
        known = ", ".join(sorted(CURRENCIES))
        raise CurrencyMustBeKnown(f"{field}: expected one of {known}, got {code!r:.20}")


def check_amount(amount_minor: int, field: str, *, zero_allowed: bool) -> None:
    # bool is an int subclass: True would otherwise pass as one cent.
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise AmountMustBeMinorUnits(
            f"{field}: expected an int of minor units, got {type(amount_minor).__name__}"
        )
    if amount_minor < 0 or (amount_minor == 0 and not zero_allowed):
        bound = "zero or more" if zero_allowed else "more than zero"
        raise AmountMustBePositive(f"{field}: expected {bound} minor units, got {amount_minor}")
    if amount_minor > AMOUNT_MINOR_MAX:
        raise AmountMustFitMessage(
            f"{field}: expected at most {AMOUNT_MINOR_MAX} minor units (18 digits), "
            f"got {amount_minor}"
        )


def check_balance(balance_minor: int, field: str) -> None:
    """A signed balance: its magnitude must fit a message amount."""
    if isinstance(balance_minor, bool) or not isinstance(balance_minor, int):
        raise AmountMustBeMinorUnits(
            f"{field}: expected an int of minor units, got {type(balance_minor).__name__}"
        )
    check_amount(abs(balance_minor), field, zero_allowed=True)


def check_exchange_rate(rate: str) -> None:
    """A plain decimal string above zero: digits, optionally a point and digits.

    No exponent, no leading zeros or plus sign: one spelling per written
    precision, so that an imported rate compares equal to the one built.
    """
    if not isinstance(rate, str) or not _DECIMAL_TEXT.fullmatch(rate):
        raise ExchangeRateMustBeDecimal(
            f"expected a decimal string such as '278.5', got {rate!r:.40}"
        )
    if Decimal(rate) <= 0:
        raise ExchangeRateMustBePositive(f"expected an exchange rate above zero, got {rate}")


def minor_units(value: Decimal, currency_code: str) -> int | None:
    """``value`` in minor units of a known currency, or None if it has more decimals than that.

    Decided by value, not by spelling: ``"123.450"`` USD is 12345 minor units.
    """
    scaled = value.scaleb(CURRENCIES[currency_code].exponent)
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def check_agents(agents: Iterable[Agent]) -> None:
    for agent in agents:
        if agent.aba is not None and not _ABA_ROUTING_NUMBER.fullmatch(agent.aba):
            raise AbaMustBeNineDigits(
                f"agent {agent.bic}: expected a 9-digit ABA routing number, got {agent.aba!r:.40}"
            )


def check_choice(value: str, allowed: frozenset[str], error: type[Iso20022Invalid]) -> None:
    if value not in allowed:
        raise error(f"expected one of {', '.join(sorted(allowed))}, got {value!r:.20}")
