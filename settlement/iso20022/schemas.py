"""The vendored ISO 20022 schemas: loaded once, validated against offline.

Each schema is read from this package's ``xsd/`` folder (see ``xsd/README.md``)
as bytes and compiled by :mod:`xmlschema` with resource access set to
``"none"``: the official files import nothing, so no include, import or
``xsi:schemaLocation`` hint can make validation open a file or a URL. Location
hints in a document are ignored for the same reason.

Validation returns findings as data (:class:`SchemaFinding`); the builders and
the importer turn them into their own errors.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

import xmlschema

from settlement.iso20022.messages import Iso20022Invalid

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"

SCHEMA_FINDINGS_MAX = 20
"""Findings kept per document: enough to fix a message, bounded for hostile input."""

TEXT_LENGTH_MAX = 300
"""Characters kept of a finding's path and reason, which may quote the input."""


class MessageName(StrEnum):
    """The ISO 20022 message identifiers whose schemas are vendored."""

    PACS_008 = "pacs.008.001.08"
    PACS_002 = "pacs.002.001.10"
    PACS_009 = "pacs.009.001.08"
    CAMT_053 = "camt.053.001.08"
    CAMT_054 = "camt.054.001.08"
    HEAD_001 = "head.001.001.02"

    @property
    def namespace(self) -> str:
        """The message's XML namespace, e.g. ``urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08``."""
        return NAMESPACE_PREFIX + self.value


@dataclass(frozen=True)
class SchemaFinding:
    """One schema violation: where (a path of local element names) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class MessageMustMatchSchema(Iso20022Invalid):
    """A built message does not validate against its official XSD.

    The inputs break a rule the dataclasses cannot express (a text too long, an
    identifier of the wrong shape); ``findings`` says which element and why.
    """

    code = "message_must_match_schema"

    def __init__(self, message_name: MessageName, findings: tuple[SchemaFinding, ...]) -> None:
        self.findings = findings
        first = findings[0]
        super().__init__(
            f"{message_name.value} does not match its schema at {first.path}: {first.reason}"
            + (f" (and {len(findings) - 1} more)" if len(findings) > 1 else "")
        )


_LOADED: dict[MessageName, Any] = {}
_LOADING = threading.Lock()
_NAMESPACE_IN_PATH = re.compile(r"\{[a-z][a-z0-9+.-]*:[^}]*\}")
"""``{urn:...}`` or ``{http:...}`` before a name; not the ``{8}`` of a pattern in a reason."""


def schema(message_name: MessageName) -> Any:
    """The compiled schema of one message, loaded on first use and then cached."""
    with _LOADING:
        loaded = _LOADED.get(message_name)
        if loaded is None:
            source = resources.files("settlement.iso20022") / "xsd" / f"{message_name.value}.xsd"
            loaded = xmlschema.XMLSchema(source.read_bytes(), allow="none", defuse="always")
            _LOADED[message_name] = loaded
        return loaded


def clear_cache() -> None:
    """Forget the compiled schemas (for tests that check loading itself)."""
    with _LOADING:
        _LOADED.clear()


def validate(message_name: MessageName, root: ET.Element) -> tuple[SchemaFinding, ...]:
    """Every way (up to :data:`SCHEMA_FINDINGS_MAX`) ``root`` breaks the message's XSD."""
    findings: list[SchemaFinding] = []
    errors = schema(message_name).iter_errors(root, use_location_hints=False)
    for error in errors:
        path = _NAMESPACE_IN_PATH.sub("", error.path or "/")[:TEXT_LENGTH_MAX]
        reason = _NAMESPACE_IN_PATH.sub("", error.reason or "invalid")[:TEXT_LENGTH_MAX]
        findings.append(SchemaFinding(path=path, reason=reason))
        if len(findings) >= SCHEMA_FINDINGS_MAX:
            break
    return tuple(findings)


def require_valid(message_name: MessageName, root: ET.Element) -> None:
    """Raise :class:`MessageMustMatchSchema` unless ``root`` is valid."""
    findings = validate(message_name, root)
    if findings:
        raise MessageMustMatchSchema(message_name, findings)
