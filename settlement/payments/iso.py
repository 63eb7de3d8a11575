"""Payments and ledger movements as ISO 20022 messages, and a pacs.008 as a payment.

Maps :class:`~settlement.payments.projection.PaymentRecord` and an account's
postings to the dataclasses of :mod:`settlement.iso20022`, whose builders
validate every document against the official XSD before returning it.

Choices where ISO 20022 leaves room (or where the hub's data is wider than a
message field):

- **pacs.008.001.08**: ``IntrBkSttlmAmt`` is what the creditor agent receives
  (the target currency); for a cross-currency payment ``InstdAmt`` is what
  the debtor agent sends and ``XchgRate`` the quote's rate (target units per
  source unit). ``XchgRate`` is a ``BaseOneRate`` (at most 11 digits, 10 after
  the point): a rate published with more precision is written rounded half
  to even to fit (:func:`message_rate`); the exact rate, which priced the
  payment, stays in the payment record. ``SttlmMtd`` is CLRG (settled across
  the hub's books). ``IntrBkSttlmDt`` is the day the payment settled, or the
  day it was submitted while it has not. The hub's fee is not written as
  ``ChrgsInf`` (the hub has no BIC to name as the agent); it is its own entry
  in the debtor agent's statement. ``MsgId`` is ``M`` and the UETR's 32 hex
  digits; ``InstrId`` is the instruction id when it fits ``Max35Text``.
- **pacs.002.001.10**: the payment's current status with its reason code and
  text (cut to ``Max105Text``); ``MsgId`` is the UETR's hex digits, ``-`` and
  the status's sequence number.
- **camt.053.001.08 / camt.054.001.08**: one entry per posting of the
  account booked in the period (posted transactions, posted pendings,
  reversals; reservations are not booked), ``NtryRef`` and ``AcctSvcrRef``
  ``<journal index>-<n>`` (the n-th posting of the account in that entry),
  ``BkTxCd/Prtry/Cd`` the ledger transaction code (``PAYMENT``, or
  ``PAYMENT_FEE`` for the hub's fee), and for a payment's postings the
  end-to-end id, the UETR and the remittance information. Balances are
  credit positive (``credits - debits``, posted only): the opening balance is
  the account's balance after the last entry before the first day, the
  closing balance after the last entry of the last day.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Final

from sqlalchemy import func, select

from ledger.records import Account as LedgerAccount
from ledger.records import EntryKind, Side, Transaction, TransactionState
from ledger.schema import journal
from ledger.store import Ledger
from settlement import iso20022
from settlement.iso20022 import (
    Account,
    Agent,
    Notification,
    Party,
    PaymentMessage,
    PostalAddress,
    Statement,
    StatementEntry,
    StatusReason,
    StatusReport,
)
from settlement.iso20022.messages import STATEMENT_ENTRIES_MAX, EntriesMustFitLimit
from settlement.payments import projection
from settlement.payments.projection import TRANSACTION_ID_PREFIX, PartyRecord, PaymentRecord
from settlement.registry import Participant

MAX35_TEXT: Final = 35
ADDITIONAL_INFORMATION_LENGTH_MAX: Final = 105
RATE_TOTAL_DIGITS: Final = 11
RATE_FRACTION_DIGITS: Final = 10
"""``BaseOneRate``: xs:decimal with totalDigits 11 and fractionDigits 10."""
PAGE_SIZE: Final = 1000
FEE_TRANSACTION_CODE: Final = "PAYMENT_FEE"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def moment(microseconds: int) -> datetime:
    """A timezone-aware UTC datetime of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=microseconds)


def day_bounds_us(first_day: date, last_day: date) -> tuple[int, int]:
    """[start of the first day, last microsecond of the last day], UTC."""
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
    return (start - _EPOCH) // timedelta(microseconds=1), (end - _EPOCH) // timedelta(
        microseconds=1
    ) - 1


# -- rates and BICs ------------------------------------------------------------------------------


def message_rate(rate: str) -> str:
    """The rate as a ``BaseOneRate``: rounded half to even to 11 digits, 10 after the point."""
    value = Context(prec=RATE_TOTAL_DIGITS, rounding=ROUND_HALF_EVEN).plus(Decimal(rate))
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -RATE_FRACTION_DIGITS:
        value = value.quantize(Decimal(1).scaleb(-RATE_FRACTION_DIGITS), ROUND_HALF_EVEN)
    return format(value.normalize(), "f")


def same_rate(stated: str, quoted: str) -> bool:
    """A rate written in a message names the quoted rate, exactly or as :func:`message_rate`."""
    try:
        value = Decimal(stated)
    except InvalidOperation:
        return False
    return value in (Decimal(quoted), Decimal(message_rate(quoted)))


def same_bic(left: str, right: str) -> bool:
    """BIC8 and BIC11 with branch XXX name the same institution's head office."""
    return left[:8] == right[:8] and (left[8:] or "XXX") == (right[8:] or "XXX")


# -- pacs.008 and pacs.002 ---------------------------------------------------------------------


def build_pacs008(
    payment: PaymentRecord, debtor_agent: Participant, creditor_agent: Participant
) -> bytes:
    """The payment as a pacs.008.001.08 credit transfer (see the module docstring)."""
    settled = [change for change in payment.history if change.status == "ACSC"]
    settled_at_us = settled[0].committed_at_us if settled else payment.submitted_at_us
    cross = payment.cross_currency
    message = PaymentMessage(
        message_id="M" + payment.uetr.replace("-", ""),
        created_at=moment(payment.submitted_at_us),
        uetr=payment.uetr,
        end_to_end_id=payment.end_to_end_id,
        instruction_id=(
            payment.instruction_id if len(payment.instruction_id) <= MAX35_TEXT else None
        ),
        amount_minor=payment.receive_minor,
        currency=payment.target_currency,
        settlement_date=moment(settled_at_us).date(),
        charge_bearer=_charge_bearer(payment.charge_bearer),
        debtor=party(payment.debtor),
        debtor_agent=agent(debtor_agent, payment.debtor),
        creditor_agent=agent(creditor_agent, payment.creditor),
        creditor=party(payment.creditor),
        instructed_amount_minor=payment.send_minor if cross else None,
        instructed_currency=payment.source_currency if cross else None,
        exchange_rate=message_rate(payment.rate) if cross else None,
        remittance=payment.remittance_information or None,
    )
    return iso20022.build_pacs008(message)


def build_pacs002(payment: PaymentRecord) -> bytes:
    """The payment's current status as a pacs.002.001.10 status report."""
    latest = payment.history[-1]
    settled = [change for change in payment.history if change.status == "ACSC"]
    reasons: tuple[StatusReason, ...] = ()
    if latest.reason_code:
        reasons = (
            StatusReason(
                code=latest.reason_code,
                additional_information=latest.reason[:ADDITIONAL_INFORMATION_LENGTH_MAX] or None,
            ),
        )
    report = StatusReport(
        message_id=f"{payment.uetr.replace('-', '')}-{latest.sequence}",
        created_at=moment(latest.committed_at_us),
        original_message_id="M" + payment.uetr.replace("-", ""),
        original_end_to_end_id=payment.end_to_end_id,
        original_uetr=payment.uetr,
        status=_transaction_status(latest.status),
        original_instruction_id=(
            payment.instruction_id if len(payment.instruction_id) <= MAX35_TEXT else None
        ),
        reasons=reasons,
        effective_settlement_date=(moment(settled[0].committed_at_us).date() if settled else None),
    )
    return iso20022.build_pacs002(report)


def party(record: PartyRecord) -> Party:
    account = Account.iban(record.iban) if record.iban else Account.other(record.account_number)
    address = None
    if record.country or record.address_lines:
        address = PostalAddress(country=record.country or None, lines=record.address_lines)
    return Party(name=record.name, account=account, lei=record.lei or None, address=address)


def agent(participant: Participant, customer: PartyRecord) -> Agent:
    """The agent of a party: its BIC, and the routing number of the party's US account."""
    routing_number = customer.aba_routing_number or participant.aba_routing_number
    return Agent(bic=participant.bic, aba=routing_number or None)


def _charge_bearer(code: str) -> iso20022.messages.ChargeBearer:
    if code == "CRED":
        return "CRED"
    if code == "SHAR":
        return "SHAR"
    return "DEBT"


def _transaction_status(code: str) -> iso20022.messages.TransactionStatus:
    statuses: dict[str, iso20022.messages.TransactionStatus] = {
        "ACTC": "ACTC",
        "ACSP": "ACSP",
        "PDNG": "PDNG",
        "ACSC": "ACSC",
        "RJCT": "RJCT",
    }
    return statuses[code]


# -- importing a pacs.008 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportedPayment:
    """What a participant's pacs.008.001.08 says, in the terms of a payment instruction."""

    uetr: str
    end_to_end_id: str
    debtor: PartyRecord
    creditor: PartyRecord
    remittance_information: str
    charge_bearer: str
    settlement_amount_minor: int
    settlement_currency: str
    instructed_amount_minor: int | None
    instructed_currency: str | None
    exchange_rate: str | None
    debtor_agent_bic: str
    creditor_agent_bic: str


def imported_payment(xml: bytes) -> ImportedPayment:
    """Parse and validate a pacs.008.001.08 (:func:`settlement.iso20022.import_pacs008`)."""
    message = iso20022.import_pacs008(xml)
    return ImportedPayment(
        uetr=message.uetr,
        end_to_end_id=message.end_to_end_id,
        debtor=_party_record(message.debtor, message.debtor_agent),
        creditor=_party_record(message.creditor, message.creditor_agent),
        remittance_information=message.remittance or "",
        charge_bearer=message.charge_bearer,
        settlement_amount_minor=message.amount_minor,
        settlement_currency=message.currency,
        instructed_amount_minor=message.instructed_amount_minor,
        instructed_currency=message.instructed_currency,
        exchange_rate=message.exchange_rate,
        debtor_agent_bic=message.debtor_agent.bic,
        creditor_agent_bic=message.creditor_agent.bic,
    )


def _party_record(found: Party, its_agent: Agent) -> PartyRecord:
    """A message party; a non-IBAN account is a US account at its agent's routing number."""
    address = found.address or PostalAddress()
    is_iban = found.account.scheme == "IBAN"
    return PartyRecord(
        name=found.name,
        iban=found.account.identifier if is_iban else "",
        account_number="" if is_iban else found.account.identifier,
        aba_routing_number="" if is_iban else (its_agent.aba or ""),
        lei=found.lei or "",
        country=address.country or "",
        address_lines=address.lines,
    )


# -- statements ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Movements:
    """An account's booked movements over whole UTC days, with the balances around them."""

    account_id: str
    currency: str
    first_day: date
    last_day: date
    opening_minor: int
    closing_minor: int
    entries: tuple[StatementEntry, ...]


@dataclass(frozen=True, slots=True)
class _Leg:
    transaction: Transaction
    position: int
    ordinal: int
    side: Side
    amount_minor: int


def account_movements(
    ledger: Ledger, account: LedgerAccount, first_day: date, last_day: date
) -> Movements:
    """Every posting booked on ``account`` from the first to the last day (UTC), inclusive."""
    start_us, end_us = day_bounds_us(first_day, last_day)
    with ledger.reading() as connection:
        opening_index = connection.scalar(
            select(func.max(journal.c.journal_index)).where(journal.c.committed_at_us < start_us)
        )
        closing_index = connection.scalar(
            select(func.max(journal.c.journal_index)).where(journal.c.committed_at_us <= end_us)
        )
    opening = _balance(ledger, account.id, opening_index)
    closing = _balance(ledger, account.id, closing_index)
    legs: list[_Leg] = []
    if closing_index is not None and (opening_index is None or closing_index > opening_index):
        cursor = None if opening_index is None else int(opening_index)
        while True:
            page = ledger.transactions_by_account(
                account.id, limit=PAGE_SIZE, cursor=cursor, newest_first=False
            )
            for transaction in page.items:
                if transaction.journal_index > closing_index:
                    break
                if not _booked(transaction):
                    continue
                ordinal = 0
                for position, posting in enumerate(transaction.postings):
                    if posting.account_id != account.id:
                        continue
                    legs.append(
                        _Leg(transaction, position, ordinal, posting.side, posting.amount_minor)
                    )
                    ordinal += 1
            if len(legs) > STATEMENT_ENTRIES_MAX:
                raise EntriesMustFitLimit(
                    f"account {account.id} has more than {STATEMENT_ENTRIES_MAX} movements from "
                    f"{first_day} to {last_day}; ask for a shorter period"
                )
            last = page.items[-1].journal_index if page.items else None
            if page.next_cursor is None or last is None or last > closing_index:
                break
            cursor = page.next_cursor
    payments = projection.payments_by_uetr(
        ledger, {uetr for leg in legs if (uetr := payment_uetr(leg.transaction)) is not None}
    )
    entries = tuple(_entry(leg, payments) for leg in legs)
    return Movements(
        account_id=account.id,
        currency=account.currency,
        first_day=first_day,
        last_day=last_day,
        opening_minor=opening,
        closing_minor=closing,
        entries=entries,
    )


def payment_uetr(transaction: Transaction) -> str | None:
    """The UETR of a payment's ledger entry (``payment:<uetr>`` or a post of it)."""
    for name in (transaction.id, transaction.pending_id or ""):
        if name.startswith(TRANSACTION_ID_PREFIX):
            return name[len(TRANSACTION_ID_PREFIX) :].split(":", 1)[0]
    return None


def build_camt053(account: LedgerAccount, movements: Movements, now_us: int) -> bytes:
    identifier = _report_id("S", account.id, movements)
    statement = Statement(
        message_id=identifier,
        statement_id=identifier,
        created_at=moment(now_us),
        account_id=account.id,
        currency=account.currency,
        from_date=movements.first_day,
        to_date=movements.last_day,
        opening_minor=movements.opening_minor,
        closing_minor=movements.closing_minor,
        entries=movements.entries,
    )
    return iso20022.build_camt053(statement)


def build_camt054(account: LedgerAccount, movements: Movements, now_us: int) -> bytes:
    identifier = _report_id("N", account.id, movements)
    notification = Notification(
        message_id=identifier,
        notification_id=identifier,
        created_at=moment(now_us),
        account_id=account.id,
        currency=account.currency,
        entries=movements.entries,
    )
    return iso20022.build_camt054(notification)


def _report_id(prefix: str, account_id: str, movements: Movements) -> str:
    """``Max35Text``: kind, period, and a digest of the account and what the report holds."""
    digest = hashlib.sha256(
        f"{account_id}|{len(movements.entries)}|{movements.closing_minor}".encode()
    ).hexdigest()[:16]
    return f"{prefix}{movements.first_day:%Y%m%d}{movements.last_day:%Y%m%d}{digest}".upper()


def _booked(transaction: Transaction) -> bool:
    """A reservation is not booked: its legs are booked by the post that settles it."""
    return transaction.kind is not EntryKind.TRANSACTION or (
        transaction.state is TransactionState.POSTED
    )


def _balance(ledger: Ledger, account_id: str, as_of_index: int | None) -> int:
    if as_of_index is None:
        return 0
    balance = ledger.balance(account_id, as_of_index=int(as_of_index))
    return balance.credits_posted - balance.debits_posted


def _entry(leg: _Leg, payments: dict[str, PaymentRecord]) -> StatementEntry:
    transaction = leg.transaction
    day = moment(transaction.committed_at_us).date()
    uetr = payment_uetr(transaction)
    payment = None if uetr is None else payments.get(uetr)
    code = transaction.code or transaction.kind.value
    if payment is not None:
        principal_legs = 4 if payment.cross_currency else 2
        if leg.position >= principal_legs:
            code = FEE_TRANSACTION_CODE
        return StatementEntry(
            entry_reference=f"{transaction.journal_index}-{leg.ordinal}",
            amount_minor=leg.amount_minor,
            credit_debit="CRDT" if leg.side is Side.CREDIT else "DBIT",
            booking_date=day,
            value_date=day,
            transaction_code=code,
            end_to_end_id=payment.end_to_end_id,
            uetr=payment.uetr,
            remittance=payment.remittance_information or None,
        )
    return StatementEntry(
        entry_reference=f"{transaction.journal_index}-{leg.ordinal}",
        amount_minor=leg.amount_minor,
        credit_debit="CRDT" if leg.side is Side.CREDIT else "DBIT",
        booking_date=day,
        value_date=day,
        transaction_code=code[:MAX35_TEXT],
        remittance=transaction.reference or None,
    )
