"""ISO 20022 builders: every message validates against its official XSD, figures are exact.

Each builder validates its own output before returning it; the tests validate
the bytes again with a fresh schema call and read the figures back, so a
builder that skipped validation or wrote a rounded amount would fail here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import urllib.request
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from defusedxml.ElementTree import fromstring

from ledger.money import format_amount
from settlement.errors import InvalidArgument
from settlement.iso20022 import build, schemas
from settlement.iso20022.build import (
    build_camt053,
    build_camt054,
    build_pacs002,
    build_pacs008,
    build_pacs009,
)
from settlement.iso20022.messages import (
    AMOUNT_MINOR_MAX,
    STATEMENT_ENTRIES_MAX,
    TRANSACTION_STATUSES,
    Account,
    Agent,
    Fee,
    FundingTransfer,
    Notification,
    Party,
    PaymentMessage,
    PostalAddress,
    Statement,
    StatementEntry,
    StatementMustBalance,
    StatusReason,
    StatusReport,
)
from settlement.iso20022.schemas import MessageMustMatchSchema, MessageName

UETR = "3f1c8a2e-5b7d-4c9e-8a1f-2d3e4f5a6b7c"
CREATED_AT = datetime(2024, 5, 2, 9, 30, 15, tzinfo=UTC)
US_BANK = Agent(bic="CHASUS33XXX", aba="021000021", name="JPMorgan Chase Bank, N.A.")
PK_BANK = Agent(bic="HABBPKKA", name="Habib Bank Limited")
HUB = Agent(bic="SETLPKKA")


def payment(**changes: Any) -> PaymentMessage:
    """A converted USD -> PKR offtake payment with every optional element filled."""
    base = PaymentMessage(
        message_id="MSG-20240502-0001",
        created_at=CREATED_AT,
        uetr=UETR,
        end_to_end_id="INV-2024-0042",
        instruction_id="INSTR-0001",
        amount_minor=2_785_000_00,
        currency="PKR",
        settlement_date=date(2024, 5, 2),
        charge_bearer="SHAR",
        settlement_method="CLRG",
        instructed_amount_minor=1_000_000,
        instructed_currency="USD",
        exchange_rate="278.5",
        fees=(Fee(amount_minor=2_500, currency="USD", agent=US_BANK),),
        debtor=Party(
            name="Rocky Mountain Metals Inc",
            account=Account.other("000123456789"),
            lei="5493001KJTIIGC8Y1R12",
            address=PostalAddress(country="US", lines=("1700 Lincoln St", "Denver CO 80203")),
        ),
        debtor_agent=US_BANK,
        creditor_agent=PK_BANK,
        creditor=Party(
            name="Chagai Copper (Pvt) Ltd",
            account=Account.iban("PK36SCBL0000001123456702"),
            address=PostalAddress(country="PK", lines=("Quetta",)),
        ),
        remittance="Provisional invoice PI-2024-0042, lot 7",
    )
    return dataclasses.replace(base, **changes)


def status_report(**changes: Any) -> StatusReport:
    base = StatusReport(
        message_id="STS-0001",
        created_at=CREATED_AT,
        original_message_id="MSG-20240502-0001",
        original_end_to_end_id="INV-2024-0042",
        original_uetr=UETR,
        original_instruction_id="INSTR-0001",
        status="ACSC",
    )
    return dataclasses.replace(base, **changes)


def funding(**changes: Any) -> FundingTransfer:
    base = FundingTransfer(
        message_id="FUND-0001",
        created_at=CREATED_AT,
        uetr="9b2e4c1a-7d3f-4e8b-9a6c-1f2e3d4c5b6a",
        end_to_end_id="FUND-0001",
        instruction_id="FUND-0001",
        amount_minor=50_000_000_00,
        currency="USD",
        settlement_date=date(2024, 5, 2),
        debtor=US_BANK,
        debtor_account=Account.other("400123987"),
        creditor=HUB,
        creditor_account=Account.other("settlement:CHASUS33:USD"),
        remittance="Prefunding of settlement account",
    )
    return dataclasses.replace(base, **changes)


def entry(reference: str, amount_minor: int, credit_debit: str, **changes: Any) -> StatementEntry:
    base = StatementEntry(
        entry_reference=reference,
        amount_minor=amount_minor,
        credit_debit=credit_debit,  # type: ignore[arg-type]
        booking_date=date(2024, 5, 2),
        value_date=date(2024, 5, 2),
        transaction_code="PAYMENT",
    )
    return dataclasses.replace(base, **changes)


def statement(**changes: Any) -> Statement:
    """10,000.00 USD opening; +2,500.00, -1,200.50, +0.75; 11,300.25 closing."""
    base = Statement(
        message_id="STMT-0001",
        statement_id="STMT-CHASUS33-USD-20240502",
        created_at=CREATED_AT,
        account_id="settlement:CHASUS33:USD",
        account_name="JPMorgan Chase settlement account",
        currency="USD",
        from_date=date(2024, 5, 1),
        to_date=date(2024, 5, 2),
        opening_minor=1_000_000,
        closing_minor=1_130_025,
        entries=(
            entry(
                "tx-0001",
                250_000,
                "CRDT",
                booking_date=date(2024, 5, 1),
                value_date=date(2024, 5, 1),
                transaction_code="FUNDING",
                end_to_end_id="FUND-0001",
                uetr="9b2e4c1a-7d3f-4e8b-9a6c-1f2e3d4c5b6a",
            ),
            entry(
                "tx-0002",
                120_050,
                "DBIT",
                end_to_end_id="INV-2024-0042",
                uetr=UETR,
                remittance="Provisional invoice PI-2024-0042, lot 7",
            ),
            entry("tx-0003", 75, "CRDT", transaction_code="FEE_REFUND"),
        ),
    )
    return dataclasses.replace(base, **changes)


def notification(**changes: Any) -> Notification:
    base = Notification(
        message_id="NTFN-0001",
        notification_id="NTFN-CHASUS33-0001",
        created_at=CREATED_AT,
        account_id="settlement:CHASUS33:USD",
        currency="USD",
        entries=(entry("tx-0002", 120_050, "DBIT", end_to_end_id="INV-2024-0042", uetr=UETR),),
    )
    return dataclasses.replace(base, **changes)


def read(data: bytes, message_name: MessageName) -> ET.Element:
    """Parse as untrusted input would be, and validate again against the XSD."""
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root: ET.Element = fromstring(data, forbid_dtd=True)
    assert root.tag == f"{{{message_name.namespace}}}Document"
    assert schemas.validate(message_name, root) == ()
    return root


class Reader:
    """findtext/findall with the message's namespace and without the boilerplate."""

    def __init__(self, data: bytes, message_name: MessageName) -> None:
        self.root = read(data, message_name)
        self.namespaces = {"m": message_name.namespace}

    def _path(self, path: str) -> str:
        return "/".join(f"m:{name}" for name in path.split("/"))

    def text(self, path: str, element: ET.Element | None = None) -> str | None:
        return (element if element is not None else self.root).findtext(
            self._path(path), namespaces=self.namespaces
        )

    def one(self, path: str, element: ET.Element | None = None) -> ET.Element:
        found = (element if element is not None else self.root).find(
            self._path(path), self.namespaces
        )
        assert found is not None, path
        return found

    def all(self, path: str, element: ET.Element | None = None) -> list[ET.Element]:
        return (element if element is not None else self.root).findall(
            self._path(path), self.namespaces
        )


# --- pacs.008 -------------------------------------------------------------------------------


def test_pacs008_carries_the_payment() -> None:
    message = Reader(build_pacs008(payment()), MessageName.PACS_008)
    header = message.one("FIToFICstmrCdtTrf/GrpHdr")
    assert message.text("MsgId", header) == "MSG-20240502-0001"
    assert message.text("CreDtTm", header) == "2024-05-02T09:30:15+00:00"
    assert message.text("NbOfTxs", header) == "1"
    assert message.text("SttlmInf/SttlmMtd", header) == "CLRG"
    tx = message.one("FIToFICstmrCdtTrf/CdtTrfTxInf")
    assert message.text("PmtId/InstrId", tx) == "INSTR-0001"
    assert message.text("PmtId/EndToEndId", tx) == "INV-2024-0042"
    assert message.text("PmtId/UETR", tx) == UETR
    settled = message.one("IntrBkSttlmAmt", tx)
    assert (settled.text, settled.get("Ccy")) == ("2785000.00", "PKR")
    assert message.text("IntrBkSttlmDt", tx) == "2024-05-02"
    instructed = message.one("InstdAmt", tx)
    assert (instructed.text, instructed.get("Ccy")) == ("10000.00", "USD")
    assert message.text("XchgRate", tx) == "278.5"
    assert message.text("ChrgBr", tx) == "SHAR"
    fee = message.one("ChrgsInf/Amt", tx)
    assert (fee.text, fee.get("Ccy")) == ("25.00", "USD")
    assert message.text("ChrgsInf/Agt/FinInstnId/BICFI", tx) == "CHASUS33XXX"
    assert message.text("Dbtr/Nm", tx) == "Rocky Mountain Metals Inc"
    assert message.text("Dbtr/PstlAdr/Ctry", tx) == "US"
    lines = [line.text for line in message.all("Dbtr/PstlAdr/AdrLine", tx)]
    assert lines == ["1700 Lincoln St", "Denver CO 80203"]
    assert message.text("Dbtr/Id/OrgId/LEI", tx) == "5493001KJTIIGC8Y1R12"
    assert message.text("DbtrAcct/Id/Othr/Id", tx) == "000123456789"
    agent = message.one("DbtrAgt/FinInstnId", tx)
    assert message.text("BICFI", agent) == "CHASUS33XXX"
    assert message.text("ClrSysMmbId/ClrSysId/Cd", agent) == "USABA"
    assert message.text("ClrSysMmbId/MmbId", agent) == "021000021"
    assert message.text("Nm", agent) == "JPMorgan Chase Bank, N.A."
    assert message.text("CdtrAgt/FinInstnId/BICFI", tx) == "HABBPKKA"
    assert message.text("Cdtr/Nm", tx) == "Chagai Copper (Pvt) Ltd"
    assert message.text("CdtrAcct/Id/IBAN", tx) == "PK36SCBL0000001123456702"
    assert message.text("RmtInf/Ustrd", tx) == "Provisional invoice PI-2024-0042, lot 7"


def test_pacs008_element_order_follows_the_xsd_sequence() -> None:
    message = Reader(build_pacs008(payment()), MessageName.PACS_008)
    tx = message.one("FIToFICstmrCdtTrf/CdtTrfTxInf")
    names = [child.tag.rpartition("}")[2] for child in tx]
    assert names == [
        "PmtId",
        "IntrBkSttlmAmt",
        "IntrBkSttlmDt",
        "InstdAmt",
        "XchgRate",
        "ChrgBr",
        "ChrgsInf",
        "Dbtr",
        "DbtrAcct",
        "DbtrAgt",
        "CdtrAgt",
        "Cdtr",
        "CdtrAcct",
        "RmtInf",
    ]


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (12_345, "USD", "123.45"),
        (5, "USD", "0.05"),
        (100, "USD", "1.00"),
        (12_345, "PKR", "123.45"),
        (278_500_00, "PKR", "278500.00"),
        (12_345, "JPY", "12345"),
        (1, "JPY", "1"),
        (12_345, "KWD", "12.345"),
        (1, "KWD", "0.001"),
        (1_000, "KWD", "1.000"),
        (AMOUNT_MINOR_MAX, "USD", "9999999999999999.99"),
        (AMOUNT_MINOR_MAX, "JPY", "999999999999999999"),
    ],
)
def test_pacs008_amount_has_exactly_the_currency_decimals(
    amount_minor: int, currency: str, expected: str
) -> None:
    unconverted = payment(
        amount_minor=amount_minor,
        currency=currency,
        instructed_amount_minor=None,
        instructed_currency=None,
        exchange_rate=None,
        fees=(Fee(amount_minor=amount_minor, currency=currency, agent=PK_BANK),),
    )
    message = Reader(build_pacs008(unconverted), MessageName.PACS_008)
    tx = message.one("FIToFICstmrCdtTrf/CdtTrfTxInf")
    assert message.text("IntrBkSttlmAmt", tx) == expected
    assert message.one("IntrBkSttlmAmt", tx).get("Ccy") == currency
    assert message.text("ChrgsInf/Amt", tx) == expected


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="converted-with-everything"),
        pytest.param(
            {"instructed_amount_minor": None, "instructed_currency": None, "exchange_rate": None},
            id="unconverted",
        ),
        pytest.param(
            {
                "instructed_amount_minor": 2_785_000_00,
                "instructed_currency": "PKR",
                "exchange_rate": None,
            },
            id="instructed-in-settlement-currency",
        ),
        pytest.param({"settlement_method": "INDA"}, id="INDA"),
        pytest.param({"charge_bearer": "DEBT"}, id="DEBT"),
        pytest.param({"charge_bearer": "CRED"}, id="CRED"),
        pytest.param({"fees": ()}, id="no-fees"),
        pytest.param(
            {"fees": (Fee(amount_minor=0, currency="USD", agent=US_BANK),)}, id="zero-fee"
        ),
        pytest.param(
            {
                "fees": (
                    Fee(amount_minor=2_500, currency="USD", agent=US_BANK),
                    Fee(amount_minor=150_00, currency="PKR", agent=PK_BANK),
                )
            },
            id="two-fees",
        ),
        pytest.param({"instruction_id": None, "remittance": None}, id="minimal-identification"),
        pytest.param(
            {
                "debtor": Party(name="A", account=Account.iban("DE89370400440532013000")),
                "creditor": Party(name="B", account=Account.other("1")),
                "debtor_agent": Agent(bic="DEUTDEFF"),
                "creditor_agent": Agent(bic="HABBPKKA", aba=None, name=None),
            },
            id="minimal-parties",
        ),
        pytest.param(
            {
                "created_at": datetime(
                    2024, 5, 2, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5))
                )
            },
            id="karachi-time-with-microseconds",
        ),
        pytest.param({"exchange_rate": "0.0035906643"}, id="pkr-usd-rate-10-decimals"),
    ],
)
def test_pacs008_variants_validate(changes: dict[str, Any]) -> None:
    read(build_pacs008(payment(**changes)), MessageName.PACS_008)


def test_pacs008_writes_timestamps_in_utc_with_a_numeric_offset() -> None:
    karachi = timezone(timedelta(hours=5))
    created_at = datetime(2024, 5, 2, 14, 30, 15, 123456, tzinfo=karachi)
    message = Reader(build_pacs008(payment(created_at=created_at)), MessageName.PACS_008)
    assert message.text("FIToFICstmrCdtTrf/GrpHdr/CreDtTm") == "2024-05-02T09:30:15.123456+00:00"


def test_pacs008_keeps_non_ascii_text_in_utf8() -> None:
    name = "Société Minière — Balochistan Ω"
    data = build_pacs008(payment(creditor=dataclasses.replace(payment().creditor, name=name)))
    assert name.encode("utf-8") in data
    message = Reader(data, MessageName.PACS_008)
    assert message.text("FIToFICstmrCdtTrf/CdtTrfTxInf/Cdtr/Nm") == name


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"created_at": datetime(2024, 5, 2, 9, 30)}, "timestamp_must_have_offset"),
        ({"settlement_method": "COVE"}, "settlement_method_must_be_known"),
        ({"charge_bearer": "SLEV"}, "charge_bearer_must_be_known"),
        ({"currency": "XAU"}, "currency_must_be_known"),
        ({"amount_minor": 1.5}, "amount_must_be_minor_units"),
        ({"amount_minor": True}, "amount_must_be_minor_units"),
        ({"amount_minor": 0}, "amount_must_be_positive"),
        ({"amount_minor": -100}, "amount_must_be_positive"),
        ({"amount_minor": AMOUNT_MINOR_MAX + 1}, "amount_must_fit_message"),
        ({"instructed_currency": None}, "instructed_amount_must_have_currency"),
        ({"instructed_amount_minor": None}, "instructed_amount_must_have_currency"),
        ({"exchange_rate": None}, "conversion_must_have_exchange_rate"),
        (
            {"instructed_amount_minor": None, "instructed_currency": None},
            "exchange_rate_must_have_conversion",
        ),
        ({"instructed_currency": "PKR"}, "exchange_rate_must_have_conversion"),
        ({"exchange_rate": "2.785E+2"}, "exchange_rate_must_be_decimal"),
        ({"exchange_rate": "0278.5"}, "exchange_rate_must_be_decimal"),
        ({"exchange_rate": "278,5"}, "exchange_rate_must_be_decimal"),
        ({"exchange_rate": "0"}, "exchange_rate_must_be_positive"),
        ({"exchange_rate": "-278.5"}, "exchange_rate_must_be_positive"),
        (
            {"fees": (Fee(amount_minor=-1, currency="USD", agent=US_BANK),)},
            "amount_must_be_positive",
        ),
        ({"fees": (Fee(amount_minor=1, currency="usd", agent=US_BANK),)}, "currency_must_be_known"),
        ({"debtor_agent": Agent(bic="CHASUS33", aba="21000021")}, "aba_must_be_nine_digits"),
        ({"remittance": "invoice\x00"}, "text_must_be_xml_characters"),
        ({"uetr": UETR.upper()}, "message_must_match_schema"),
        ({"exchange_rate": "278.12345678901"}, "message_must_match_schema"),
        ({"message_id": "M" * 36}, "message_must_match_schema"),
    ],
)
def test_pacs008_refuses(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        build_pacs008(payment(**changes))
    assert raised.value.code == code


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"uetr": UETR.upper()}, "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/UETR"),
        (
            {"debtor": dataclasses.replace(payment().debtor, name="N" * 141)},
            "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/Dbtr/Nm",
        ),
        (
            {"creditor_agent": Agent(bic="HBL")},
            "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/CdtrAgt/FinInstnId/BICFI",
        ),
        (
            {"debtor": dataclasses.replace(payment().debtor, lei="5493001KJTIIGC8Y1R1")},
            "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/Dbtr/Id/OrgId/LEI",
        ),
    ],
)
def test_pacs008_schema_error_names_the_element(changes: dict[str, Any], path: str) -> None:
    with pytest.raises(MessageMustMatchSchema) as raised:
        build_pacs008(payment(**changes))
    assert raised.value.findings[0].path == path
    assert path in str(raised.value)


# --- pacs.002 -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(TRANSACTION_STATUSES))
def test_pacs002_every_status_validates(status: str) -> None:
    reasons = (StatusReason(code="AM04"),) if status == "RJCT" else ()
    message = Reader(
        build_pacs002(status_report(status=status, reasons=reasons)), MessageName.PACS_002
    )
    assert message.text("FIToFIPmtStsRpt/TxInfAndSts/TxSts") == status


def test_pacs002_rejection_carries_its_reasons() -> None:
    report = status_report(
        status="RJCT",
        reasons=(
            StatusReason(code="AM04", additional_information="Insufficient funds on CHASUS33 USD"),
            StatusReason(code="RR04"),
        ),
    )
    message = Reader(build_pacs002(report), MessageName.PACS_002)
    assert message.text("FIToFIPmtStsRpt/GrpHdr/MsgId") == "STS-0001"
    assert message.text("FIToFIPmtStsRpt/GrpHdr/CreDtTm") == "2024-05-02T09:30:15+00:00"
    group = message.one("FIToFIPmtStsRpt/OrgnlGrpInfAndSts")
    assert message.text("OrgnlMsgId", group) == "MSG-20240502-0001"
    assert message.text("OrgnlMsgNmId", group) == "pacs.008.001.08"
    tx = message.one("FIToFIPmtStsRpt/TxInfAndSts")
    assert message.text("OrgnlInstrId", tx) == "INSTR-0001"
    assert message.text("OrgnlEndToEndId", tx) == "INV-2024-0042"
    assert message.text("OrgnlUETR", tx) == UETR
    assert message.text("TxSts", tx) == "RJCT"
    reasons = message.all("StsRsnInf", tx)
    assert [message.text("Rsn/Cd", reason) for reason in reasons] == ["AM04", "RR04"]
    assert [message.text("AddtlInf", reason) for reason in reasons] == [
        "Insufficient funds on CHASUS33 USD",
        None,
    ]


@pytest.mark.parametrize(
    ("status", "code"),
    [("BLCK", "RR04"), ("PDNG", "NARR"), ("RJCT", "AC01"), ("RJCT", "AM04")],
)
def test_pacs002_status_with_reason_validates(status: str, code: str) -> None:
    report = status_report(
        status=status, reasons=(StatusReason(code=code, additional_information="Held"),)
    )
    read(build_pacs002(report), MessageName.PACS_002)


def test_pacs002_settlement_of_a_funding_transfer() -> None:
    report = status_report(
        status="ACSC",
        original_message_name="pacs.009.001.08",
        original_instruction_id=None,
        effective_settlement_date=date(2024, 5, 2),
    )
    message = Reader(build_pacs002(report), MessageName.PACS_002)
    assert message.text("FIToFIPmtStsRpt/OrgnlGrpInfAndSts/OrgnlMsgNmId") == "pacs.009.001.08"
    tx = message.one("FIToFIPmtStsRpt/TxInfAndSts")
    assert message.text("OrgnlInstrId", tx) is None
    assert message.text("FctvIntrBkSttlmDt/Dt", tx) == "2024-05-02"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"created_at": datetime(2024, 5, 2)}, "timestamp_must_have_offset"),
        ({"status": "DONE"}, "status_must_be_known"),
        ({"original_message_name": "pacs.008.001.09"}, "original_message_must_be_known"),
        ({"status": "RJCT", "reasons": ()}, "rejection_must_have_reason"),
        (
            {"status": "RJCT", "reasons": (StatusReason(code="AM04X"),)},
            "message_must_match_schema",
        ),
        (
            {"reasons": (StatusReason(code="AM04", additional_information="x" * 106),)},
            "message_must_match_schema",
        ),
    ],
)
def test_pacs002_refuses(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        build_pacs002(status_report(**changes))
    assert raised.value.code == code


# --- pacs.009 -------------------------------------------------------------------------------


def test_pacs009_carries_the_funding_transfer() -> None:
    message = Reader(build_pacs009(funding()), MessageName.PACS_009)
    assert message.text("FICdtTrf/GrpHdr/NbOfTxs") == "1"
    assert message.text("FICdtTrf/GrpHdr/SttlmInf/SttlmMtd") == "CLRG"
    tx = message.one("FICdtTrf/CdtTrfTxInf")
    assert message.text("PmtId/InstrId", tx) == "FUND-0001"
    assert message.text("PmtId/EndToEndId", tx) == "FUND-0001"
    assert message.text("PmtId/UETR", tx) == "9b2e4c1a-7d3f-4e8b-9a6c-1f2e3d4c5b6a"
    amount = message.one("IntrBkSttlmAmt", tx)
    assert (amount.text, amount.get("Ccy")) == ("50000000.00", "USD")
    assert message.text("IntrBkSttlmDt", tx) == "2024-05-02"
    assert message.text("Dbtr/FinInstnId/BICFI", tx) == "CHASUS33XXX"
    assert message.text("Dbtr/FinInstnId/ClrSysMmbId/MmbId", tx) == "021000021"
    assert message.text("DbtrAcct/Id/Othr/Id", tx) == "400123987"
    assert message.text("Cdtr/FinInstnId/BICFI", tx) == "SETLPKKA"
    assert message.text("CdtrAcct/Id/Othr/Id", tx) == "settlement:CHASUS33:USD"
    assert message.text("RmtInf/Ustrd", tx) == "Prefunding of settlement account"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="funding"),
        pytest.param(
            {
                "debtor": HUB,
                "debtor_account": Account.other("settlement:HABBPKKA:PKR"),
                "creditor": PK_BANK,
                "creditor_account": Account.iban("PK36SCBL0000001123456702"),
                "currency": "PKR",
                "amount_minor": 1_000_000_00,
            },
            id="defunding",
        ),
        pytest.param(
            {
                "debtor_account": None,
                "creditor_account": None,
                "remittance": None,
                "instruction_id": None,
            },
            id="minimal",
        ),
        pytest.param({"settlement_method": "INDA", "currency": "KWD", "amount_minor": 1}, id="KWD"),
    ],
)
def test_pacs009_variants_validate(changes: dict[str, Any]) -> None:
    read(build_pacs009(funding(**changes)), MessageName.PACS_009)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"created_at": datetime(2024, 5, 2)}, "timestamp_must_have_offset"),
        ({"settlement_method": "INGA"}, "settlement_method_must_be_known"),
        ({"currency": "BTC"}, "currency_must_be_known"),
        ({"amount_minor": 0}, "amount_must_be_positive"),
        ({"creditor": Agent(bic="SETLPKKA", aba="ABCDEFGHI")}, "aba_must_be_nine_digits"),
        ({"uetr": "not-a-uuid"}, "message_must_match_schema"),
    ],
)
def test_pacs009_refuses(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        build_pacs009(funding(**changes))
    assert raised.value.code == code


# --- camt.053 ---------------------------------------------------------------------------------


def _balances(message: Reader) -> dict[str, tuple[str | None, str | None, str | None, str | None]]:
    found = {}
    for balance in message.all("BkToCstmrStmt/Stmt/Bal"):
        code = message.text("Tp/CdOrPrtry/Cd", balance)
        assert code is not None
        amount = message.one("Amt", balance)
        found[code] = (
            amount.text,
            amount.get("Ccy"),
            message.text("CdtDbtInd", balance),
            message.text("Dt/Dt", balance),
        )
    return found


def test_camt053_balances_are_exact() -> None:
    # 10,000.00 + 2,500.00 + 0.75 - 1,200.50 = 11,300.25
    message = Reader(build_camt053(statement()), MessageName.CAMT_053)
    assert _balances(message) == {
        "OPBD": ("10000.00", "USD", "CRDT", "2024-05-01"),
        "CLBD": ("11300.25", "USD", "CRDT", "2024-05-02"),
    }


def test_camt053_statement_header_and_account() -> None:
    message = Reader(build_camt053(statement()), MessageName.CAMT_053)
    assert message.text("BkToCstmrStmt/GrpHdr/MsgId") == "STMT-0001"
    report = message.one("BkToCstmrStmt/Stmt")
    assert message.text("Id", report) == "STMT-CHASUS33-USD-20240502"
    assert message.text("CreDtTm", report) == "2024-05-02T09:30:15+00:00"
    assert message.text("FrToDt/FrDtTm", report) == "2024-05-01T00:00:00+00:00"
    assert message.text("FrToDt/ToDtTm", report) == "2024-05-02T23:59:59.999999+00:00"
    assert message.text("Acct/Id/Othr/Id", report) == "settlement:CHASUS33:USD"
    assert message.text("Acct/Ccy", report) == "USD"
    assert message.text("Acct/Nm", report) == "JPMorgan Chase settlement account"


def test_camt053_summary_is_exact() -> None:
    message = Reader(build_camt053(statement()), MessageName.CAMT_053)
    summary = message.one("BkToCstmrStmt/Stmt/TxsSummry")
    assert message.text("TtlNtries/NbOfNtries", summary) == "3"
    assert message.text("TtlNtries/Sum", summary) == "3701.25"
    assert message.text("TtlNtries/TtlNetNtry/Amt", summary) == "1300.25"
    assert message.text("TtlNtries/TtlNetNtry/CdtDbtInd", summary) == "CRDT"
    assert message.text("TtlCdtNtries/NbOfNtries", summary) == "2"
    assert message.text("TtlCdtNtries/Sum", summary) == "2500.75"
    assert message.text("TtlDbtNtries/NbOfNtries", summary) == "1"
    assert message.text("TtlDbtNtries/Sum", summary) == "1200.50"


def test_camt053_entries_carry_references() -> None:
    message = Reader(build_camt053(statement()), MessageName.CAMT_053)
    entries = message.all("BkToCstmrStmt/Stmt/Ntry")
    assert [message.text("Amt", e) for e in entries] == ["2500.00", "1200.50", "0.75"]
    assert [message.text("CdtDbtInd", e) for e in entries] == ["CRDT", "DBIT", "CRDT"]
    assert {message.text("Sts/Cd", e) for e in entries} == {"BOOK"}
    first, second, third = entries
    assert message.text("NtryRef", first) == "tx-0001"
    assert message.text("AcctSvcrRef", first) == "tx-0001"
    assert message.text("BookgDt/Dt", first) == "2024-05-01"
    assert message.text("ValDt/Dt", first) == "2024-05-01"
    assert message.text("BkTxCd/Prtry/Cd", first) == "FUNDING"
    assert message.text("NtryDtls/TxDtls/Refs/EndToEndId", first) == "FUND-0001"
    assert message.text("NtryDtls/TxDtls/Refs/UETR", second) == UETR
    assert (
        message.text("NtryDtls/TxDtls/RmtInf/Ustrd", second)
        == "Provisional invoice PI-2024-0042, lot 7"
    )
    assert message.all("NtryDtls", third) == []


@pytest.mark.parametrize(
    ("opening_minor", "movements", "closing_minor", "expected_opening", "expected_closing"),
    [
        pytest.param(-50_000, [(80_000, "CRDT")], 30_000, ("500.00", "DBIT"), ("300.00", "CRDT"),
                     id="overdrawn-then-funded"),
        pytest.param(30_000, [(80_000, "DBIT")], -50_000, ("300.00", "CRDT"), ("500.00", "DBIT"),
                     id="goes-overdrawn"),
        pytest.param(0, [], 0, ("0.00", "CRDT"), ("0.00", "CRDT"), id="empty-account"),
        pytest.param(12_345, [(12_345, "DBIT")], 0, ("123.45", "CRDT"), ("0.00", "CRDT"),
                     id="emptied"),
    ],
)  # fmt: skip
def test_camt053_signed_balances(
    opening_minor: int,
    movements: list[tuple[int, str]],
    closing_minor: int,
    expected_opening: tuple[str, str],
    expected_closing: tuple[str, str],
) -> None:
    entries = tuple(
        entry(f"tx-{index}", amount, direction)
        for index, (amount, direction) in enumerate(movements)
    )
    data = build_camt053(
        statement(opening_minor=opening_minor, closing_minor=closing_minor, entries=entries)
    )
    balances = _balances(Reader(data, MessageName.CAMT_053))
    assert balances["OPBD"][0] == expected_opening[0]
    assert balances["OPBD"][2] == expected_opening[1]
    assert balances["CLBD"][0] == expected_closing[0]
    assert balances["CLBD"][2] == expected_closing[1]


@pytest.mark.parametrize(
    ("currency", "opening_minor", "credit_minor", "closing_minor", "texts"),
    [
        ("PKR", 278_500_00, 1_50, 278_501_50, ("278500.00", "1.50", "278501.50")),
        ("JPY", 1_000_000, 1, 1_000_001, ("1000000", "1", "1000001")),
        ("KWD", 1_000, 1, 1_001, ("1.000", "0.001", "1.001")),
    ],
)
def test_camt053_currency_precision(
    currency: str,
    opening_minor: int,
    credit_minor: int,
    closing_minor: int,
    texts: tuple[str, str, str],
) -> None:
    data = build_camt053(
        statement(
            currency=currency,
            opening_minor=opening_minor,
            closing_minor=closing_minor,
            entries=(entry("tx-1", credit_minor, "CRDT"),),
        )
    )
    message = Reader(data, MessageName.CAMT_053)
    balances = _balances(message)
    entry_amount = message.one("BkToCstmrStmt/Stmt/Ntry/Amt")
    assert (balances["OPBD"][0], entry_amount.text, balances["CLBD"][0]) == texts
    assert {balances["OPBD"][1], entry_amount.get("Ccy"), balances["CLBD"][1]} == {currency}


def test_camt053_refuses_a_statement_that_does_not_balance() -> None:
    with pytest.raises(StatementMustBalance) as raised:
        build_camt053(statement(closing_minor=1_130_024))
    error = raised.value
    assert error.code == "statement_must_balance"
    assert (error.opening_minor, error.credits_minor, error.debits_minor) == (
        1_000_000,
        250_075,
        120_050,
    )
    assert error.closing_minor == 1_130_024
    assert "expected closing balance 1130025" in str(error)


def test_camt053_rechecks_the_balances_it_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    # A formatter that adds one minor unit to every figure: the input balances,
    # the document does not (3 entries, 2 credits and 1 debit).
    monkeypatch.setattr(
        build, "format_amount", lambda amount, currency: format_amount(amount + 1, currency)
    )
    with pytest.raises(StatementMustBalance, match="as written"):
        build_camt053(statement())


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"created_at": datetime(2024, 5, 2)}, "timestamp_must_have_offset"),
        ({"from_date": date(2024, 5, 3)}, "period_must_be_ordered"),
        ({"currency": "US"}, "currency_must_be_known"),
        (
            {"entries": (entry("tx-1", 1, "CRDT"),) * (STATEMENT_ENTRIES_MAX + 1)},
            "entries_must_fit_limit",
        ),
        ({"entries": (entry("tx-1", 1, "CR"),)}, "credit_debit_must_be_known"),
        ({"entries": (entry("tx-1", 0, "CRDT"),)}, "amount_must_be_positive"),
        (
            {"entries": (entry("tx-1", 1, "CRDT", booking_date=date(2024, 5, 3)),)},
            "entry_must_be_in_period",
        ),
        (
            {"entries": (entry("tx-1", 1, "CRDT", booking_date=date(2024, 4, 30)),)},
            "entry_must_be_in_period",
        ),
        ({"opening_minor": 1.5}, "amount_must_be_minor_units"),
        ({"opening_minor": -AMOUNT_MINOR_MAX - 1}, "amount_must_fit_message"),
        ({"closing_minor": 1_130_024}, "statement_must_balance"),
        ({"account_id": "settlement:" + "X" * 30}, "message_must_match_schema"),
    ],
)
def test_camt053_refuses(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        build_camt053(statement(**changes))
    assert raised.value.code == code


# --- camt.054 ---------------------------------------------------------------------------------


def test_camt054_notifies_entries() -> None:
    data = build_camt054(
        notification(
            entries=(
                entry("tx-0002", 120_050, "DBIT", end_to_end_id="INV-2024-0042", uetr=UETR),
                entry("tx-0003", 75, "CRDT", transaction_code="FEE_REFUND"),
            ),
            account_name="JPMorgan Chase settlement account",
        )
    )
    message = Reader(data, MessageName.CAMT_054)
    assert message.text("BkToCstmrDbtCdtNtfctn/GrpHdr/MsgId") == "NTFN-0001"
    report = message.one("BkToCstmrDbtCdtNtfctn/Ntfctn")
    assert message.text("Id", report) == "NTFN-CHASUS33-0001"
    assert message.text("Acct/Id/Othr/Id", report) == "settlement:CHASUS33:USD"
    assert message.text("TxsSummry/TtlNtries/NbOfNtries", report) == "2"
    assert message.text("TxsSummry/TtlNtries/TtlNetNtry/Amt", report) == "1199.75"
    assert message.text("TxsSummry/TtlNtries/TtlNetNtry/CdtDbtInd", report) == "DBIT"
    entries = message.all("Ntry", report)
    assert [(message.text("Amt", e), message.text("CdtDbtInd", e)) for e in entries] == [
        ("1200.50", "DBIT"),
        ("0.75", "CRDT"),
    ]
    assert message.text("NtryDtls/TxDtls/Refs/UETR", entries[0]) == UETR
    assert message.text("BkTxCd/Prtry/Cd", entries[1]) == "FEE_REFUND"


@pytest.mark.parametrize(("currency", "expected"), [("JPY", "120050"), ("KWD", "120.050")])
def test_camt054_currency_precision(currency: str, expected: str) -> None:
    message = Reader(build_camt054(notification(currency=currency)), MessageName.CAMT_054)
    amount = message.one("BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry/Amt")
    assert (amount.text, amount.get("Ccy")) == (expected, currency)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"created_at": datetime(2024, 5, 2)}, "timestamp_must_have_offset"),
        ({"currency": "XXX"}, "currency_must_be_known"),
        ({"entries": ()}, "notification_must_have_entries"),
        ({"entries": (entry("tx-1", -5, "DBIT"),)}, "amount_must_be_positive"),
        ({"entries": (entry("t" * 36, 5, "DBIT"),)}, "message_must_match_schema"),
    ],
)
def test_camt054_refuses(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        build_camt054(notification(**changes))
    assert raised.value.code == code


# --- Schemas ----------------------------------------------------------------------------------


def test_schemas_load_once() -> None:
    assert schemas.schema(MessageName.PACS_008) is schemas.schema(MessageName.PACS_008)


def test_schemas_load_and_validate_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    schemas.clear_cache()
    try:
        for message_name in MessageName:
            assert schemas.schema(message_name).target_namespace == message_name.namespace
        read(build_pacs008(payment()), MessageName.PACS_008)
        read(build_pacs002(status_report()), MessageName.PACS_002)
        read(build_pacs009(funding()), MessageName.PACS_009)
        read(build_camt053(statement()), MessageName.CAMT_053)
        read(build_camt054(notification()), MessageName.CAMT_054)
    finally:
        schemas.clear_cache()


def test_schema_findings_name_elements_without_namespaces() -> None:
    root = fromstring(build_pacs008(payment()), forbid_dtd=True)
    namespace = MessageName.PACS_008.namespace
    uetr = root.find(f".//{{{namespace}}}UETR")
    assert uetr is not None
    uetr.text = "nope"
    findings = schemas.validate(MessageName.PACS_008, root)
    assert [finding.path for finding in findings] == [
        "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/UETR"
    ]
    assert "urn:iso" not in findings[0].reason
    assert "[a-f0-9]{8}-" in findings[0].reason


def test_vendored_schemas_match_their_recorded_digests() -> None:
    folder = Path(schemas.__file__).parent / "xsd"
    recorded: dict[str, str] = {}
    for line in (folder / "README.md").read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name.endswith(".xsd"):
            recorded[name] = digest
    assert set(recorded) == {f"{message_name.value}.xsd" for message_name in MessageName}
    for name, digest in recorded.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
