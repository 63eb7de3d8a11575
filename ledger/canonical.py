"""Canonical JSON (RFC 8785, JSON Canonicalization Scheme) for leaves and instructions.

Leaves and signed instructions are bytes; these bytes are what is hashed,
signed and exported. We encode with the ``rfc8785`` package and decode
strictly: duplicate keys, floats, NaN/Infinity and any non-canonical spelling
are refused, so two parties can never read one leaf two ways.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger.errors import InvalidInput, MetadataMustBeValid

SAFE_INTEGER_MAX = 2**53 - 1
"""Largest integer RFC 8785 represents exactly (it follows IEEE 754 doubles)."""

METADATA_MAX_BYTES = 4096
"""Metadata is annotation, not payload: 4 KiB keeps leaves small and bounded."""

METADATA_MAX_DEPTH = 8
"""Nesting limit: deep structures are a denial-of-service vector, never a need."""


class NotCanonical(InvalidInput):
    """Bytes that should be RFC 8785 JSON are not, or hold forbidden values."""

    code = "json_must_be_canonical"


def encode(value: Any) -> bytes:
    """RFC 8785 encoding. Callers pass no floats; money travels as integer strings.

    Fast path: for documents of strings, safe integers, booleans and null,
    ``json.dumps`` with sorted keys and no spaces produces exactly the RFC 8785
    bytes whenever the output is pure ASCII (key order by UTF-16 code units
    and by code points agree on ASCII; the escapes are the same). Anything
    else goes through the ``rfc8785`` package. A property test holds the two
    against each other.
    """
    fast = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if fast.isascii():
        return fast.encode("ascii")
    try:
        return bytes(rfc8785.dumps(value))
    except rfc8785.CanonicalizationError as error:
        raise NotCanonical(str(error)) from None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise NotCanonical(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_float(text: str) -> Any:
    raise NotCanonical(f"floating-point number {text} is not allowed; use an integer string")


def _safe_integer(text: str) -> int:
    # Beyond 2**53 - 1 a JSON number is not exact (RFC 8785 section 3.2.2.3,
    # I-JSON): another reader would see a different value.
    value = int(text)
    if abs(value) > SAFE_INTEGER_MAX:
        raise NotCanonical(f"integer {text} is beyond ±{SAFE_INTEGER_MAX}; use a string")
    return value


def _refuse_constant(text: str) -> Any:
    raise NotCanonical(f"{text} is not valid JSON")


def decode(data: bytes) -> Any:
    """Parse JSON strictly and require that ``data`` is exactly its RFC 8785 form."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotCanonical(f"not UTF-8 at byte {error.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_float=_refuse_float,
            parse_int=_safe_integer,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as error:
        raise NotCanonical(f"not JSON: {error.msg} at position {error.pos}") from None
    except RecursionError:
        raise NotCanonical("JSON nested too deeply") from None
    try:
        again = encode(value)
    except (rfc8785.CanonicalizationError, ValueError) as error:
        raise NotCanonical(str(error)) from None
    if again != data:
        raise NotCanonical("bytes are not the RFC 8785 canonical form of their value")
    return value


def validate_metadata(
    metadata: Mapping[str, Any],
    *,
    field: str = "metadata",
    max_bytes: int = METADATA_MAX_BYTES,
) -> bytes:
    """Check a metadata object (or event body) and return its canonical bytes.

    Allowed values: str, int with ``|n| <= 2**53 - 1``, bool, None, lists and
    objects with str keys, nested at most ``METADATA_MAX_DEPTH`` deep, at most
    ``max_bytes`` once encoded.
    """
    if not isinstance(metadata, Mapping):
        raise MetadataMustBeValid(f"{field} must be a JSON object, got {type(metadata).__name__}")
    if not metadata:
        return b"{}"
    _check_value(metadata, depth=1, path=field)
    encoded = encode(dict(metadata))
    if len(encoded) > max_bytes:
        raise MetadataMustBeValid(
            f"{field} is {len(encoded)} bytes once encoded; the limit is {max_bytes}"
        )
    return encoded


def _check_value(value: Any, depth: int, path: str) -> None:
    if depth > METADATA_MAX_DEPTH:
        raise MetadataMustBeValid(f"{path} is nested deeper than {METADATA_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool)):
        if isinstance(value, str):
            _check_string(value, path)
        return
    if isinstance(value, int):
        if abs(value) > SAFE_INTEGER_MAX:
            raise MetadataMustBeValid(
                f"{path} is {value}; integers in metadata stay within ±{SAFE_INTEGER_MAX} "
                "(send larger numbers as strings)"
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MetadataMustBeValid(f"{path} has a non-string key {key!r}")
            _check_string(key, f"{path} key")
            _check_value(item, depth + 1, f"{path}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            _check_value(item, depth + 1, f"{path}[{position}]")
        return
    raise MetadataMustBeValid(
        f"{path} has a value of type {type(value).__name__}; allowed: string, integer, "
        "boolean, null, list, object (no floats: send decimals as strings)"
    )


def _check_string(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MetadataMustBeValid(f"{path} is not valid Unicode (lone surrogate)") from None
