"""ISO 20022 messages of the hub: pacs.008, pacs.002, pacs.009, camt.053, camt.054.

Builders take the plain dataclasses of :mod:`.messages` and return UTF-8 XML
valid against the official 2019 XSDs vendored in ``xsd/``; the importer turns
a participant's pacs.008.001.08 into a :class:`PaymentMessage`. Nothing here
touches the network, a database or gRPC.
"""

from settlement.iso20022.build import (
    build_camt053,
    build_camt054,
    build_pacs002,
    build_pacs008,
    build_pacs009,
)
from settlement.iso20022.messages import (
    Account,
    Agent,
    Fee,
    FundingTransfer,
    Iso20022Invalid,
    Notification,
    Party,
    PaymentMessage,
    PostalAddress,
    Statement,
    StatementEntry,
    StatusReason,
    StatusReport,
)
from settlement.iso20022.parse import XML_SIZE_MAX_BYTES, import_pacs008

__all__ = [
    "XML_SIZE_MAX_BYTES",
    "Account",
    "Agent",
    "Fee",
    "FundingTransfer",
    "Iso20022Invalid",
    "Notification",
    "Party",
    "PaymentMessage",
    "PostalAddress",
    "Statement",
    "StatementEntry",
    "StatusReason",
    "StatusReport",
    "build_camt053",
    "build_camt054",
    "build_pacs002",
    "build_pacs008",
    "build_pacs009",
    "import_pacs008",
]
