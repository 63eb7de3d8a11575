"""Import of a participant's pacs.008.001.08 into a :class:`PaymentMessage`.

A bank may submit an ISO 20022 customer credit transfer instead of the
protobuf instruction. The bytes are untrusted, so they pass, in this order of
precedence:

1. a size limit (:data:`XML_SIZE_MAX_BYTES`), before any parsing;
2. :func:`defusedxml.ElementTree.iterparse` with DTDs forbidden: no document
   type, hence no entity (billion laughs) and no external reference (XXE), is
   ever expanded or fetched; in the same streaming pass, depth and node
   limits (:data:`XML_DEPTH_MAX`, :data:`XML_NODES_MAX`);
3. the pacs.008.001.08 namespace on the ``Document`` root;
4. the official XSD (offline, see :mod:`.schemas`);
5. the subset the hub maps: an element it would have to drop is refused,
   never silently ignored (only the routing agents and ``TxId``, which the hub
   sets itself, are skipped);
6. mapping rules: one transaction, the elements the hub requires, known
   currencies, amounts within the currency's decimals, dates and offsets;
7. :func:`~.messages.check_payment`, the rules every payment obeys.

Every failure is an :class:`~.messages.Iso20022Invalid` with a stable code.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal
from typing import cast

import defusedxml
from defusedxml.ElementTree import iterparse as defused_iterparse

from ledger.money import CURRENCIES
from settlement.iso20022.messages import (
    ABA_CLEARING_SYSTEM,
    Account,
    Agent,
    ChargeBearer,
    Fee,
    Iso20022Invalid,
    Party,
    PaymentMessage,
    PostalAddress,
    SettlementMethod,
    check_payment,
    minor_units,
)
from settlement.iso20022.schemas import MessageName, SchemaFinding, validate

XML_SIZE_MAX_BYTES = 1 << 20
"""1 MiB: a single-transaction pacs.008 is a few kilobytes; the limit bounds
parsing and schema validation time for hostile input."""

XML_DEPTH_MAX = 16
"""The deepest element the pacs.008.001.08 XSD defines is 12 levels down
(``Document`` is level 1); deeper input is refused before schema validation."""

XML_NODES_MAX = 2_000
"""Elements plus attributes. The subset the hub maps is about 70 elements plus
12 per fee; schema validation of many unexpected siblings is slow in
:mod:`xmlschema` (about 12 s for the 260,000 empty elements 1 MiB can hold),
so the count is bounded before validation."""

PATHS_REPORTED_MAX = 20
"""Unsupported element paths listed in one error."""

_NAMESPACE = MessageName.PACS_008.namespace
_ROOT = "/Document/FIToFICstmrCdtTrf"


# --- Errors ---------------------------------------------------------------------------------


class XmlMustFitSizeLimit(Iso20022Invalid):
    code = "xml_must_fit_size_limit"


class XmlMustBeWellFormed(Iso20022Invalid):
    code = "xml_must_be_well_formed"


class XmlMustNotDeclareEntities(Iso20022Invalid):
    """The document has a DTD: the only place entities and external references are declared."""

    code = "xml_must_not_declare_entities"


class XmlMustFitDepthLimit(Iso20022Invalid):
    code = "xml_must_fit_depth_limit"


class XmlMustFitNodeLimit(Iso20022Invalid):
    code = "xml_must_fit_node_limit"


class XmlNamespaceMustBePacs008(Iso20022Invalid):
    code = "xml_namespace_must_be_pacs008"


class XmlMustMatchSchema(Iso20022Invalid):
    """The document breaks the pacs.008.001.08 XSD; ``path`` names the first invalid element."""

    code = "xml_must_match_schema"

    def __init__(self, findings: tuple[SchemaFinding, ...]) -> None:
        self.findings = findings
        self.path = findings[0].path
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(
            f"expected a document valid against {MessageName.PACS_008.value}, got "
            f"{findings[0]}{more}"
        )


class XmlElementMustBeSupported(Iso20022Invalid):
    """The document carries an element the hub does not map (it would be lost)."""

    code = "xml_element_must_be_supported"

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self.path = paths[0]
        more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
        super().__init__(f"expected only elements the hub maps, got {paths[0]}{more}")


class XmlMustContainOneTransaction(Iso20022Invalid):
    code = "xml_must_contain_one_transaction"


class XmlElementMustBePresent(Iso20022Invalid):
    """An element optional in the XSD but required by the hub is missing."""

    code = "xml_element_must_be_present"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"expected {path}, got none")


class XmlElementMustNotRepeat(Iso20022Invalid):
    code = "xml_element_must_not_repeat"


class XmlClearingSystemMustBeUsaba(Iso20022Invalid):
    code = "xml_clearing_system_must_be_usaba"


class XmlCurrencyMustBeKnown(Iso20022Invalid):
    code = "xml_currency_must_be_known"


class XmlAmountMustFitCurrency(Iso20022Invalid):
    """The amount has more decimals than its currency (e.g. ``10.001`` USD, ``5.5`` JPY)."""

    code = "xml_amount_must_fit_currency"


class XmlAmountMustBePositive(Iso20022Invalid):
    code = "xml_amount_must_be_positive"


class XmlDateMustBeCalendarDate(Iso20022Invalid):
    code = "xml_date_must_be_calendar_date"


class XmlTimestampMustBeIso8601(Iso20022Invalid):
    code = "xml_timestamp_must_be_iso8601"


class XmlTimestampMustHaveOffset(Iso20022Invalid):
    code = "xml_timestamp_must_have_offset"


# --- Import ---------------------------------------------------------------------------------


def import_pacs008(xml_bytes: bytes) -> PaymentMessage:
    """The payment in a pacs.008.001.08 document, or the first rule it breaks."""
    if len(xml_bytes) > XML_SIZE_MAX_BYTES:
        raise XmlMustFitSizeLimit(
            f"expected at most {XML_SIZE_MAX_BYTES} bytes, got {len(xml_bytes)}"
        )
    root = _parse(bytes(xml_bytes))  # a str raises TypeError: the encoding is the document's
    if root.tag != f"{{{_NAMESPACE}}}Document":
        raise XmlNamespaceMustBePacs008(
            f"expected a Document in namespace {_NAMESPACE}, got root element {root.tag:.200}"
        )
    findings = validate(MessageName.PACS_008, root)
    if findings:
        raise XmlMustMatchSchema(findings)
    _check_supported(root)
    payment = _payment(root)
    check_payment(payment)
    return payment


def _parse(xml_bytes: bytes) -> ET.Element:
    """Parse in one streaming pass, stopping at the first limit exceeded.

    Streaming means a hostile megabyte of elements costs the first few
    thousand, not a full tree: limits and well-formedness are reported in
    the order the parser meets them.
    """
    root: ET.Element | None = None
    depth = 0
    nodes = 0
    try:
        events = defused_iterparse(
            io.BytesIO(xml_bytes),
            events=("start", "end"),
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        for event, element in events:
            if event == "end":
                depth -= 1
                continue
            root = element if root is None else root
            depth += 1
            nodes += 1 + len(element.attrib)
            if depth > XML_DEPTH_MAX:
                raise XmlMustFitDepthLimit(
                    f"expected elements at most {XML_DEPTH_MAX} levels deep, got one deeper"
                )
            if nodes > XML_NODES_MAX:
                raise XmlMustFitNodeLimit(
                    f"expected at most {XML_NODES_MAX} elements and attributes, got more"
                )
    except defusedxml.DefusedXmlException as error:
        raise XmlMustNotDeclareEntities(
            f"expected no document type declaration, got one ({type(error).__name__}); "
            "ISO 20022 messages never carry a DTD"
        ) from None
    except (ET.ParseError, ValueError, LookupError) as error:
        raise XmlMustBeWellFormed(f"expected well-formed XML, got {error}") from None
    if root is None:  # pragma: no cover - expat reports "no element found" first
        raise XmlMustBeWellFormed("expected well-formed XML, got no element")
    return root


# --- The mapped subset -----------------------------------------------------------------------


def _agent_paths(prefix: str) -> set[str]:
    institution = f"{prefix}/FinInstnId"
    member = f"{institution}/ClrSysMmbId"
    return {
        prefix,
        institution,
        f"{institution}/BICFI",
        member,
        f"{member}/ClrSysId",
        f"{member}/ClrSysId/Cd",
        f"{member}/MmbId",
        f"{institution}/Nm",
    }


def _party_paths(prefix: str) -> set[str]:
    return {
        prefix,
        f"{prefix}/Nm",
        f"{prefix}/PstlAdr",
        f"{prefix}/PstlAdr/Ctry",
        f"{prefix}/PstlAdr/AdrLine",
        f"{prefix}/Id",
        f"{prefix}/Id/OrgId",
        f"{prefix}/Id/OrgId/LEI",
    }


def _account_paths(prefix: str) -> set[str]:
    return {
        prefix,
        f"{prefix}/Id",
        f"{prefix}/Id/IBAN",
        f"{prefix}/Id/Othr",
        f"{prefix}/Id/Othr/Id",
    }


_TX = f"{_ROOT}/CdtTrfTxInf"
SUPPORTED_PATHS: frozenset[str] = frozenset(
    {
        "/Document",
        _ROOT,
        f"{_ROOT}/GrpHdr",
        f"{_ROOT}/GrpHdr/MsgId",
        f"{_ROOT}/GrpHdr/CreDtTm",
        f"{_ROOT}/GrpHdr/NbOfTxs",
        f"{_ROOT}/GrpHdr/SttlmInf",
        f"{_ROOT}/GrpHdr/SttlmInf/SttlmMtd",
        _TX,
        f"{_TX}/PmtId",
        f"{_TX}/PmtId/InstrId",
        f"{_TX}/PmtId/EndToEndId",
        f"{_TX}/PmtId/UETR",
        f"{_TX}/IntrBkSttlmAmt",
        f"{_TX}/IntrBkSttlmDt",
        f"{_TX}/InstdAmt",
        f"{_TX}/XchgRate",
        f"{_TX}/ChrgBr",
        f"{_TX}/ChrgsInf",
        f"{_TX}/ChrgsInf/Amt",
        *_agent_paths(f"{_TX}/ChrgsInf/Agt"),
        *_party_paths(f"{_TX}/Dbtr"),
        *_account_paths(f"{_TX}/DbtrAcct"),
        *_agent_paths(f"{_TX}/DbtrAgt"),
        *_agent_paths(f"{_TX}/CdtrAgt"),
        *_party_paths(f"{_TX}/Cdtr"),
        *_account_paths(f"{_TX}/CdtrAcct"),
        f"{_TX}/RmtInf",
        f"{_TX}/RmtInf/Ustrd",
    }
)
"""Every element the import maps (and :func:`~.build.build_pacs008` can write)."""

SKIPPED_PATHS: frozenset[str] = frozenset(
    {
        f"{_ROOT}/GrpHdr/InstgAgt",
        f"{_ROOT}/GrpHdr/InstdAgt",
        f"{_TX}/PmtId/TxId",
        f"{_TX}/InstgAgt",
        f"{_TX}/InstdAgt",
    }
)
"""Subtrees read past: the hub knows the instructing participant from its
certificate and is itself the instructed agent; ``TxId`` is point to point."""


def _check_supported(root: ET.Element) -> None:
    unsupported: list[str] = []
    stack = [(root, "/Document")]
    while stack and len(unsupported) < PATHS_REPORTED_MAX:
        element, path = stack.pop()
        if path in SKIPPED_PATHS:
            continue
        if path not in SUPPORTED_PATHS:
            unsupported.append(path)
            continue
        children = [(child, f"{path}/{_local_name(child)}") for child in element]
        stack.extend(reversed(children))
    if unsupported:
        raise XmlElementMustBeSupported(tuple(unsupported))


def _local_name(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


# --- Mapping --------------------------------------------------------------------------------


def _payment(root: ET.Element) -> PaymentMessage:
    message = _one(root, "FIToFICstmrCdtTrf", "/Document")
    group_header = _one(message, "GrpHdr", _ROOT)
    transactions = _all(message, "CdtTrfTxInf")
    declared = _text(group_header, "NbOfTxs", f"{_ROOT}/GrpHdr")
    if len(transactions) != 1 or declared != "1":
        raise XmlMustContainOneTransaction(
            f"expected one CdtTrfTxInf and NbOfTxs 1, got {len(transactions)} and {declared}"
        )
    transaction = transactions[0]
    identification = _one(transaction, "PmtId", _TX)
    amount_minor, currency = _amount(transaction, "IntrBkSttlmAmt", zero_allowed=False)
    instructed_amount_minor: int | None = None
    instructed_currency: str | None = None
    if _optional(transaction, "InstdAmt") is not None:
        instructed_amount_minor, instructed_currency = _amount(
            transaction, "InstdAmt", zero_allowed=False
        )
    exchange_rate = _optional_text(transaction, "XchgRate")
    return PaymentMessage(
        message_id=_text(group_header, "MsgId", f"{_ROOT}/GrpHdr"),
        created_at=_timestamp(group_header, "CreDtTm", f"{_ROOT}/GrpHdr"),
        settlement_method=_settlement_method(group_header),
        uetr=_text(identification, "UETR", f"{_TX}/PmtId"),
        end_to_end_id=_text(identification, "EndToEndId", f"{_TX}/PmtId"),
        instruction_id=_optional_text(identification, "InstrId"),
        amount_minor=amount_minor,
        currency=currency,
        settlement_date=_date(transaction, "IntrBkSttlmDt", _TX),
        instructed_amount_minor=instructed_amount_minor,
        instructed_currency=instructed_currency,
        # The XSD admits "+278.50" and ".5": keep the value and its written
        # precision in the plain form the builder writes.
        exchange_rate=None if exchange_rate is None else format(Decimal(exchange_rate), "f"),
        charge_bearer=_charge_bearer(transaction),
        fees=tuple(_fee(charges) for charges in _all(transaction, "ChrgsInf")),
        debtor=_party(transaction, "Dbtr", "DbtrAcct"),
        debtor_agent=_agent(_one(transaction, "DbtrAgt", _TX), f"{_TX}/DbtrAgt"),
        creditor_agent=_agent(_one(transaction, "CdtrAgt", _TX), f"{_TX}/CdtrAgt"),
        creditor=_party(transaction, "Cdtr", "CdtrAcct"),
        remittance=_remittance(transaction),
    )


def _settlement_method(group_header: ET.Element) -> SettlementMethod:
    # The XSD's enumeration is wider (INGA, COVE): check_payment refuses those.
    settlement = _one(group_header, "SttlmInf", f"{_ROOT}/GrpHdr")
    return cast(SettlementMethod, _text(settlement, "SttlmMtd", f"{_ROOT}/GrpHdr/SttlmInf"))


def _charge_bearer(transaction: ET.Element) -> ChargeBearer:
    # The XSD's enumeration also has SLEV: check_payment refuses it.
    return cast(ChargeBearer, _text(transaction, "ChrgBr", _TX))


def _fee(charges: ET.Element) -> Fee:
    amount_minor, currency = _amount(
        charges, "Amt", zero_allowed=True, parent_path=f"{_TX}/ChrgsInf"
    )
    agent = _agent(_one(charges, "Agt", f"{_TX}/ChrgsInf"), f"{_TX}/ChrgsInf/Agt")
    return Fee(amount_minor=amount_minor, currency=currency, agent=agent)


def _party(transaction: ET.Element, name: str, account_name: str) -> Party:
    element = _one(transaction, name, _TX)
    path = f"{_TX}/{name}"
    address_element = _optional(element, "PstlAdr")
    address = None
    if address_element is not None:
        address = PostalAddress(
            country=_optional_text(address_element, "Ctry"),
            lines=tuple(line.text or "" for line in _all(address_element, "AdrLine")),
        )
    organisation = element.find(_qualified("Id/OrgId"))
    return Party(
        name=_text(element, "Nm", path),
        account=_account(_one(transaction, account_name, _TX), f"{_TX}/{account_name}"),
        lei=None if organisation is None else _optional_text(organisation, "LEI"),
        address=address,
    )


def _account(element: ET.Element, path: str) -> Account:
    identification = _one(element, "Id", path)
    iban = _optional_text(identification, "IBAN")
    if iban is not None:
        return Account.iban(iban)
    # The XSD's choice leaves Othr when there is no IBAN.
    return Account.other(_text(_one(identification, "Othr", f"{path}/Id"), "Id", f"{path}/Id/Othr"))


def _agent(element: ET.Element, path: str) -> Agent:
    institution = _one(element, "FinInstnId", path)
    institution_path = f"{path}/FinInstnId"
    member = _optional(institution, "ClrSysMmbId")
    aba = None
    if member is not None:
        system = member.findtext(_qualified("ClrSysId/Cd"))
        if system != ABA_CLEARING_SYSTEM:
            raise XmlClearingSystemMustBeUsaba(
                f"{institution_path}/ClrSysMmbId: expected clearing system "
                f"{ABA_CLEARING_SYSTEM}, got {system!r:.40}"
            )
        aba = _text(member, "MmbId", f"{institution_path}/ClrSysMmbId")
    return Agent(
        bic=_text(institution, "BICFI", institution_path),
        aba=aba,
        name=_optional_text(institution, "Nm"),
    )


def _remittance(transaction: ET.Element) -> str | None:
    information = _optional(transaction, "RmtInf")
    if information is None:
        return None
    lines = _all(information, "Ustrd")
    if len(lines) > 1:
        raise XmlElementMustNotRepeat(
            f"{_TX}/RmtInf/Ustrd: expected one unstructured remittance line, got {len(lines)}"
        )
    if not lines:
        raise XmlElementMustBePresent(f"{_TX}/RmtInf/Ustrd")
    return lines[0].text or ""


def _amount(
    parent: ET.Element, name: str, *, zero_allowed: bool, parent_path: str = _TX
) -> tuple[int, str]:
    element = _one(parent, name, parent_path)
    path = f"{parent_path}/{name}"
    currency = element.get("Ccy", "")
    if currency not in CURRENCIES:
        raise XmlCurrencyMustBeKnown(
            f"{path}: expected one of {', '.join(sorted(CURRENCIES))}, got {currency!r:.20}"
        )
    # Schema-valid, so a decimal of at most 18 digits: exact in a Decimal.
    value = Decimal((element.text or "").strip())
    amount_minor = minor_units(value, currency)
    if amount_minor is None:
        exponent = CURRENCIES[currency].exponent
        raise XmlAmountMustFitCurrency(
            f"{path}: expected at most {exponent} decimals for {currency}, got {value}"
        )
    if amount_minor < 0 or (amount_minor == 0 and not zero_allowed):
        raise XmlAmountMustBePositive(f"{path}: expected an amount above zero, got {value}")
    return amount_minor, currency


def _date(parent: ET.Element, name: str, parent_path: str) -> date:
    text = _text(parent, name, parent_path).strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        # xs:date also admits a time zone suffix and years beyond 9999.
        raise XmlDateMustBeCalendarDate(
            f"{parent_path}/{name}: expected YYYY-MM-DD, got {text!r:.40}"
        ) from None


def _timestamp(parent: ET.Element, name: str, parent_path: str) -> datetime:
    text = _text(parent, name, parent_path).strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        # xs:dateTime also admits 24:00:00 and years beyond 9999.
        raise XmlTimestampMustBeIso8601(
            f"{parent_path}/{name}: expected an ISO 8601 date and time, got {text!r:.40}"
        ) from None
    if value.utcoffset() is None:
        raise XmlTimestampMustHaveOffset(
            f"{parent_path}/{name}: expected a UTC offset (e.g. +00:00), got {text!r:.40}"
        )
    return value


# --- Element access -------------------------------------------------------------------------


def _qualified(path: str) -> str:
    return "/".join(f"{{{_NAMESPACE}}}{name}" for name in path.split("/"))


def _all(parent: ET.Element, name: str) -> list[ET.Element]:
    return parent.findall(_qualified(name))


def _optional(parent: ET.Element, name: str) -> ET.Element | None:
    # Schema-valid: elements that may repeat are read with _all, the others occur once.
    return parent.find(_qualified(name))


def _one(parent: ET.Element, name: str, parent_path: str) -> ET.Element:
    element = _optional(parent, name)
    if element is None:
        raise XmlElementMustBePresent(f"{parent_path}/{name}")
    return element


def _optional_text(parent: ET.Element, name: str) -> str | None:
    element = _optional(parent, name)
    return None if element is None else element.text or ""


def _text(parent: ET.Element, name: str, parent_path: str) -> str:
    return _one(parent, name, parent_path).text or ""
