"""Builders of ISO 20022 messages from the dataclasses in :mod:`.messages`.

Each builder checks its input (``check_*``), builds the document with
:mod:`xml.etree.ElementTree`, serializes it as UTF-8, then reads the bytes back
and validates them against the official XSD before returning them: what leaves
this module is exactly what was validated. The statement builder also
re-derives its balances from the document it wrote.

Element order and names follow the 2019 message definitions (pacs.008.001.08,
pacs.002.001.10, pacs.009.001.08, camt.053.001.08, camt.054.001.08); only the
elements the hub has data for are written.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal

from defusedxml.ElementTree import fromstring as defused_fromstring

from ledger.money import format_amount
from settlement.iso20022.messages import (
    ABA_CLEARING_SYSTEM,
    Account,
    Agent,
    FundingTransfer,
    Notification,
    Party,
    PaymentMessage,
    Statement,
    StatementEntry,
    StatusReport,
    TextMustBeXmlCharacters,
    check_funding_transfer,
    check_notification,
    check_payment,
    check_reconciles,
    check_statement,
    check_status_report,
    minor_units,
)
from settlement.iso20022.schemas import MessageName, require_valid

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

ENTRY_STATUS_BOOKED = "BOOK"
BALANCE_OPENING_BOOKED = "OPBD"
BALANCE_CLOSING_BOOKED = "CLBD"
END_OF_DAY = time(23, 59, 59, 999_999, tzinfo=UTC)
"""A statement's ``ToDtTm``: the last instant of its last day (``FrToDt`` is a
period of date-times in camt.053; the statement is of whole UTC days)."""


def build_pacs008(payment: PaymentMessage) -> bytes:
    """FIToFICustomerCreditTransfer (pacs.008.001.08) carrying one payment."""
    check_payment(payment)
    document, root = _document(MessageName.PACS_008, "FIToFICstmrCdtTrf")
    group_header = _sub(root, "GrpHdr")
    _sub(group_header, "MsgId", payment.message_id)
    _sub(group_header, "CreDtTm", format_timestamp(payment.created_at))
    _sub(group_header, "NbOfTxs", "1")
    _sub(_sub(group_header, "SttlmInf"), "SttlmMtd", payment.settlement_method)

    transaction = _sub(root, "CdtTrfTxInf")
    _payment_identification(
        transaction, payment.instruction_id, payment.end_to_end_id, payment.uetr
    )
    _amount(transaction, "IntrBkSttlmAmt", payment.amount_minor, payment.currency)
    _sub(transaction, "IntrBkSttlmDt", payment.settlement_date.isoformat())
    if payment.instructed_amount_minor is not None and payment.instructed_currency is not None:
        _amount(
            transaction, "InstdAmt", payment.instructed_amount_minor, payment.instructed_currency
        )
    if payment.exchange_rate is not None:
        _sub(transaction, "XchgRate", payment.exchange_rate)
    _sub(transaction, "ChrgBr", payment.charge_bearer)
    for fee in payment.fees:
        charges = _sub(transaction, "ChrgsInf")
        _amount(charges, "Amt", fee.amount_minor, fee.currency)
        _agent(charges, "Agt", fee.agent)
    _party(transaction, "Dbtr", payment.debtor)
    _account(transaction, "DbtrAcct", payment.debtor.account)
    _agent(transaction, "DbtrAgt", payment.debtor_agent)
    _agent(transaction, "CdtrAgt", payment.creditor_agent)
    _party(transaction, "Cdtr", payment.creditor)
    _account(transaction, "CdtrAcct", payment.creditor.account)
    if payment.remittance is not None:
        _sub(_sub(transaction, "RmtInf"), "Ustrd", payment.remittance)
    return _finish(MessageName.PACS_008, document)


def build_pacs002(report: StatusReport) -> bytes:
    """FIToFIPaymentStatusReport (pacs.002.001.10) of one transaction."""
    check_status_report(report)
    document, root = _document(MessageName.PACS_002, "FIToFIPmtStsRpt")
    group_header = _sub(root, "GrpHdr")
    _sub(group_header, "MsgId", report.message_id)
    _sub(group_header, "CreDtTm", format_timestamp(report.created_at))
    original_group = _sub(root, "OrgnlGrpInfAndSts")
    _sub(original_group, "OrgnlMsgId", report.original_message_id)
    _sub(original_group, "OrgnlMsgNmId", report.original_message_name)
    transaction = _sub(root, "TxInfAndSts")
    if report.original_instruction_id is not None:
        _sub(transaction, "OrgnlInstrId", report.original_instruction_id)
    _sub(transaction, "OrgnlEndToEndId", report.original_end_to_end_id)
    _sub(transaction, "OrgnlUETR", report.original_uetr)
    _sub(transaction, "TxSts", report.status)
    for reason in report.reasons:
        information = _sub(transaction, "StsRsnInf")
        _sub(_sub(information, "Rsn"), "Cd", reason.code)
        if reason.additional_information is not None:
            _sub(information, "AddtlInf", reason.additional_information)
    if report.effective_settlement_date is not None:
        effective = _sub(transaction, "FctvIntrBkSttlmDt")
        _sub(effective, "Dt", report.effective_settlement_date.isoformat())
    return _finish(MessageName.PACS_002, document)


def build_pacs009(transfer: FundingTransfer) -> bytes:
    """FinancialInstitutionCreditTransfer (pacs.009.001.08): one bank-to-bank transfer."""
    check_funding_transfer(transfer)
    document, root = _document(MessageName.PACS_009, "FICdtTrf")
    group_header = _sub(root, "GrpHdr")
    _sub(group_header, "MsgId", transfer.message_id)
    _sub(group_header, "CreDtTm", format_timestamp(transfer.created_at))
    _sub(group_header, "NbOfTxs", "1")
    _sub(_sub(group_header, "SttlmInf"), "SttlmMtd", transfer.settlement_method)
    transaction = _sub(root, "CdtTrfTxInf")
    _payment_identification(
        transaction, transfer.instruction_id, transfer.end_to_end_id, transfer.uetr
    )
    _amount(transaction, "IntrBkSttlmAmt", transfer.amount_minor, transfer.currency)
    _sub(transaction, "IntrBkSttlmDt", transfer.settlement_date.isoformat())
    _agent(transaction, "Dbtr", transfer.debtor)
    if transfer.debtor_account is not None:
        _account(transaction, "DbtrAcct", transfer.debtor_account)
    _agent(transaction, "Cdtr", transfer.creditor)
    if transfer.creditor_account is not None:
        _account(transaction, "CdtrAcct", transfer.creditor_account)
    if transfer.remittance is not None:
        _sub(_sub(transaction, "RmtInf"), "Ustrd", transfer.remittance)
    return _finish(MessageName.PACS_009, document)


def build_camt053(statement: Statement) -> bytes:
    """BankToCustomerStatement (camt.053.001.08) of one account over whole days.

    Opening (OPBD) and closing (CLBD) booked balances, a transaction summary
    and one ``Ntry`` per movement. Opening + credits - debits must equal the
    closing balance, both in the input and in the document as written.
    """
    check_statement(statement)
    document, root = _document(MessageName.CAMT_053, "BkToCstmrStmt")
    group_header = _sub(root, "GrpHdr")
    _sub(group_header, "MsgId", statement.message_id)
    _sub(group_header, "CreDtTm", format_timestamp(statement.created_at))
    report = _sub(root, "Stmt")
    _sub(report, "Id", statement.statement_id)
    _sub(report, "CreDtTm", format_timestamp(statement.created_at))
    period = _sub(report, "FrToDt")
    start = datetime.combine(statement.from_date, time(0, tzinfo=UTC))
    _sub(period, "FrDtTm", format_timestamp(start))
    _sub(period, "ToDtTm", format_timestamp(datetime.combine(statement.to_date, END_OF_DAY)))
    _report_account(report, statement.account_id, statement.currency, statement.account_name)
    _balance(
        report,
        BALANCE_OPENING_BOOKED,
        statement.opening_minor,
        statement.currency,
        statement.from_date,
    )
    _balance(
        report,
        BALANCE_CLOSING_BOOKED,
        statement.closing_minor,
        statement.currency,
        statement.to_date,
    )
    _summary(report, statement.entries, statement.currency)
    for entry in statement.entries:
        _entry(report, entry, statement.currency)
    data = _finish(MessageName.CAMT_053, document)
    _check_statement_as_written(data, statement)
    return data


def build_camt054(notification: Notification) -> bytes:
    """BankToCustomerDebitCreditNotification (camt.054.001.08) of entries on one account."""
    check_notification(notification)
    document, root = _document(MessageName.CAMT_054, "BkToCstmrDbtCdtNtfctn")
    group_header = _sub(root, "GrpHdr")
    _sub(group_header, "MsgId", notification.message_id)
    _sub(group_header, "CreDtTm", format_timestamp(notification.created_at))
    report = _sub(root, "Ntfctn")
    _sub(report, "Id", notification.notification_id)
    _sub(report, "CreDtTm", format_timestamp(notification.created_at))
    _report_account(
        report, notification.account_id, notification.currency, notification.account_name
    )
    _summary(report, notification.entries, notification.currency)
    for entry in notification.entries:
        _entry(report, entry, notification.currency)
    return _finish(MessageName.CAMT_054, document)


def format_timestamp(value: datetime) -> str:
    """An ISODateTime in UTC with an explicit ``+00:00`` offset.

    The XSD accepts ``Z`` too; CBPR+ requires the numeric offset form.
    """
    return value.astimezone(UTC).isoformat()


# --- Elements ---------------------------------------------------------------------------------


_XML_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
"""XML 1.0 ``Char``: control characters and lone surrogates cannot be written at all."""


def _document(message_name: MessageName, message_element: str) -> tuple[ET.Element, ET.Element]:
    # Unqualified tags under a default namespace declaration: ElementTree's
    # default_namespace option refuses the unqualified Ccy attribute.
    document = ET.Element("Document", xmlns=message_name.namespace)
    return document, _sub(document, message_element)


def _sub(parent: ET.Element, name: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, name, attributes)
    if text is not None:
        if not _XML_TEXT.fullmatch(text):
            raise TextMustBeXmlCharacters(
                f"{name}: expected text of XML 1.0 characters, got {text!r:.60}"
            )
        element.text = text
    return element


def _amount(parent: ET.Element, name: str, amount_minor: int, currency: str) -> None:
    _sub(parent, name, format_amount(amount_minor, currency), Ccy=currency)


def _payment_identification(
    parent: ET.Element, instruction_id: str | None, end_to_end_id: str, uetr: str
) -> None:
    identification = _sub(parent, "PmtId")
    if instruction_id is not None:
        _sub(identification, "InstrId", instruction_id)
    _sub(identification, "EndToEndId", end_to_end_id)
    _sub(identification, "UETR", uetr)


def _agent(parent: ET.Element, name: str, agent: Agent) -> None:
    institution = _sub(_sub(parent, name), "FinInstnId")
    _sub(institution, "BICFI", agent.bic)
    if agent.aba is not None:
        member = _sub(institution, "ClrSysMmbId")
        _sub(_sub(member, "ClrSysId"), "Cd", ABA_CLEARING_SYSTEM)
        _sub(member, "MmbId", agent.aba)
    if agent.name is not None:
        _sub(institution, "Nm", agent.name)


def _party(parent: ET.Element, name: str, party: Party) -> None:
    element = _sub(parent, name)
    _sub(element, "Nm", party.name)
    if party.address is not None:
        address = _sub(element, "PstlAdr")
        if party.address.country is not None:
            _sub(address, "Ctry", party.address.country)
        for line in party.address.lines:
            _sub(address, "AdrLine", line)
    if party.lei is not None:
        _sub(_sub(_sub(element, "Id"), "OrgId"), "LEI", party.lei)


def _account(parent: ET.Element, name: str, account: Account) -> None:
    identification = _sub(_sub(parent, name), "Id")
    if account.scheme == "IBAN":
        _sub(identification, "IBAN", account.identifier)
    else:
        _sub(_sub(identification, "Othr"), "Id", account.identifier)


def _report_account(
    parent: ET.Element, account_id: str, currency: str, account_name: str | None
) -> None:
    account = _sub(parent, "Acct")
    _sub(_sub(_sub(account, "Id"), "Othr"), "Id", account_id)
    _sub(account, "Ccy", currency)
    if account_name is not None:
        _sub(account, "Nm", account_name)


def _balance(parent: ET.Element, code: str, balance_minor: int, currency: str, on: date) -> None:
    balance = _sub(parent, "Bal")
    _sub(_sub(_sub(balance, "Tp"), "CdOrPrtry"), "Cd", code)
    # Amounts are unsigned in ISO 20022; the sign is the indicator (zero is a credit).
    _amount(balance, "Amt", abs(balance_minor), currency)
    _sub(balance, "CdtDbtInd", "DBIT" if balance_minor < 0 else "CRDT")
    _sub(_sub(balance, "Dt"), "Dt", on.isoformat())


def _summary(parent: ET.Element, entries: Iterable[StatementEntry], currency: str) -> None:
    credit_amounts = [entry.amount_minor for entry in entries if entry.credit_debit == "CRDT"]
    debit_amounts = [entry.amount_minor for entry in entries if entry.credit_debit == "DBIT"]
    net_minor = sum(credit_amounts) - sum(debit_amounts)
    summary = _sub(parent, "TxsSummry")
    totals = _sub(summary, "TtlNtries")
    _sub(totals, "NbOfNtries", str(len(credit_amounts) + len(debit_amounts)))
    _sub(totals, "Sum", format_amount(sum(credit_amounts) + sum(debit_amounts), currency))
    net = _sub(totals, "TtlNetNtry")
    _sub(net, "Amt", format_amount(abs(net_minor), currency))
    _sub(net, "CdtDbtInd", "DBIT" if net_minor < 0 else "CRDT")
    for name, amounts in (("TtlCdtNtries", credit_amounts), ("TtlDbtNtries", debit_amounts)):
        side = _sub(summary, name)
        _sub(side, "NbOfNtries", str(len(amounts)))
        _sub(side, "Sum", format_amount(sum(amounts), currency))


def _entry(parent: ET.Element, entry: StatementEntry, currency: str) -> None:
    element = _sub(parent, "Ntry")
    _sub(element, "NtryRef", entry.entry_reference)
    _amount(element, "Amt", entry.amount_minor, currency)
    _sub(element, "CdtDbtInd", entry.credit_debit)
    _sub(_sub(element, "Sts"), "Cd", ENTRY_STATUS_BOOKED)
    _sub(_sub(element, "BookgDt"), "Dt", entry.booking_date.isoformat())
    _sub(_sub(element, "ValDt"), "Dt", entry.value_date.isoformat())
    _sub(element, "AcctSvcrRef", entry.entry_reference)
    _sub(_sub(_sub(element, "BkTxCd"), "Prtry"), "Cd", entry.transaction_code)
    has_references = entry.end_to_end_id is not None or entry.uetr is not None
    if not has_references and entry.remittance is None:
        return
    details = _sub(_sub(element, "NtryDtls"), "TxDtls")
    if has_references:
        references = _sub(details, "Refs")
        if entry.end_to_end_id is not None:
            _sub(references, "EndToEndId", entry.end_to_end_id)
        if entry.uetr is not None:
            _sub(references, "UETR", entry.uetr)
    if entry.remittance is not None:
        _sub(_sub(details, "RmtInf"), "Ustrd", entry.remittance)


# --- Serialization and read-back ----------------------------------------------------------------


def _finish(message_name: MessageName, document: ET.Element) -> bytes:
    ET.indent(document)
    data = XML_DECLARATION + ET.tostring(document, encoding="unicode").encode("utf-8")
    # Validate the bytes that are returned, not the tree they came from.
    require_valid(message_name, defused_fromstring(data, forbid_dtd=True))
    return data


def _check_statement_as_written(data: bytes, statement: Statement) -> None:
    """Re-derive the balances from the document and hold them against each other."""
    namespace = {"c": MessageName.CAMT_053.namespace}
    report = defused_fromstring(data, forbid_dtd=True).find("c:BkToCstmrStmt/c:Stmt", namespace)
    balances: dict[str, int] = {}
    for balance in report.iterfind("c:Bal", namespace):
        code = balance.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=namespace)
        balances[code] = _signed_minor(balance, namespace, statement.currency)
    movements = []
    for entry in report.iterfind("c:Ntry", namespace):
        amount_minor = _signed_minor(entry, namespace, statement.currency)
        movements.append(("CRDT" if amount_minor >= 0 else "DBIT", abs(amount_minor)))
    opening_minor = balances[BALANCE_OPENING_BOOKED]
    closing_minor = balances[BALANCE_CLOSING_BOOKED]
    check_reconciles(
        opening_minor,
        movements,
        closing_minor,
        where=f"camt.053 {statement.statement_id} as written",
    )
    if (opening_minor, closing_minor) != (statement.opening_minor, statement.closing_minor):
        raise AssertionError(
            f"camt.053 as written: expected balances {statement.opening_minor} and "
            f"{statement.closing_minor}, got {opening_minor} and {closing_minor}"
        )


def _signed_minor(element: ET.Element, namespace: dict[str, str], currency: str) -> int:
    amount = minor_units(Decimal(element.findtext("c:Amt", "", namespace)), currency)
    if amount is None:
        raise AssertionError(f"camt.053 as written: an amount has more decimals than {currency}")
    indicator = element.findtext("c:CdtDbtInd", namespaces=namespace)
    return -amount if indicator == "DBIT" else amount
