"""Canonical JSON (RFC 8785, JSON Canonicalization Scheme) for leaves and instructions.

Leaves and signed instructions are bytes; these bytes are what is hashed,
signed and exported. This module is the one RFC 8785 codec of the project,
standard library only, so the offline verifier uses it too. We decode
strictly: duplicate keys, floats, NaN/Infinity, integers beyond 2**53 - 1 and
any non-canonical spelling are refused, so two parties can never read one
leaf two ways. A property test holds ``encode`` against the ``rfc8785``
package.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

from ledger.errors import InvalidInput, MetadataMustBeValid

SAFE_INTEGER_MAX = 2**53 - 1
"""Largest integer RFC 8785 represents exactly (it follows IEEE 754 doubles)."""

SAFE_INTEGER_DIGITS_MAX = len(str(SAFE_INTEGER_MAX))

METADATA_MAX_BYTES = 4096
"""Metadata is annotation, not payload: 4 KiB keeps leaves small and bounded."""

METADATA_MAX_DEPTH = 8
"""Nesting limit: deep structures are a denial-of-service vector, never a need."""

EXCERPT_LENGTH_MAX = 60

MEMBER_SETS_MAX = 64
"""Sets of member names whose order :func:`join_members` remembers: the ledger's
documents use about twenty (one leaf and one request shape per entry kind)."""


class NotCanonical(InvalidInput):
    """Bytes that should be RFC 8785 JSON are not, or hold forbidden values."""

    code = "json_must_be_canonical"


def _excerpt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= EXCERPT_LENGTH_MAX else text[: EXCERPT_LENGTH_MAX - 3] + "..."


def encode(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value made of str, int, bool, None, lists and dicts.

    Integers must be within ±(2**53 - 1) (RFC 8785 section 3.2.2.3); floats
    are refused, so every number is an integer spelled in decimal. Keys sort by
    UTF-16 code units (section 3.2.3); strings escape as section 3.2.2.2 says;
    the output is UTF-8 without whitespace.
    """
    parts: list[str] = []
    try:
        _encode_value(value, parts)
    except RecursionError:
        raise NotCanonical("expected JSON nested less deeply") from None
    return "".join(parts).encode("utf-8")


_FAST_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""One encoder for the hot path: ``json.dumps`` with arguments builds a new one per call."""


def encode_trusted(value: Any) -> bytes:
    """:func:`encode` for documents the ledger built itself, on the hot path.

    When ``json.dumps`` with sorted keys gives pure ASCII, it is already the
    RFC 8785 form (code point and UTF-16 order agree on ASCII; the escapes are
    the same). It checks no value types, so it is only for documents made of
    already validated parts (no floats, safe integers): leaves and stored
    requests. Anything non-ASCII takes the strict encoder.
    """
    fast = _FAST_ENCODER.encode(value)
    if fast.isascii():
        return fast.encode("ascii")
    return encode(value)


def encode_trusted_text(value: Any) -> str:
    """:func:`encode_trusted` as text: one member value for :func:`join_members`."""
    if type(value) is str:
        # What the encoder does for a string, without its Python-level frames.
        text = encode_basestring(value)
        return text if text.isascii() else _encode_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    fast = _FAST_ENCODER.encode(value)
    if fast.isascii():
        return fast
    return encode(value).decode("utf-8")


def join_members(members: Mapping[str, str]) -> bytes:
    """RFC 8785 bytes of an object whose member values are RFC 8785 text already.

    A value that appears in two documents (a transaction's postings, in its
    leaf and in its stored request) is then encoded once. The result is
    canonical because each value is and the members are sorted: names must be
    ASCII, whose code point order is their UTF-16 order (RFC 8785 section
    3.2.3).
    """
    order = _member_order(tuple(members))
    return ("{" + ",".join([prefix + members[name] for name, prefix in order]) + "}").encode()


@functools.lru_cache(maxsize=MEMBER_SETS_MAX)
def _member_order(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, its encoding and colon) in RFC 8785 order, for one set of member names."""
    for name in names:
        if not name.isascii():
            raise NotCanonical(f"expected ASCII member names here, got {_excerpt(name)}")
    return tuple((name, _FAST_ENCODER.encode(name) + ":") for name in sorted(names))


def _utf16_order(key: str) -> bytes:
    # RFC 8785 section 3.2.3: properties sort by their UTF-16 code units;
    # big-endian UTF-16 bytes compare in exactly that order.
    return key.encode("utf-16-be")


def _encode_value(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        if abs(value) > SAFE_INTEGER_MAX:
            raise NotCanonical(
                f"expected integers within ±{SAFE_INTEGER_MAX} (RFC 8785 numbers are "
                f"doubles), got {_excerpt(value)}; send large numbers as strings"
            )
        parts.append(str(int(value)))
    elif isinstance(value, str):
        parts.append(_encode_string(value))
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for position, item in enumerate(value):
            if position:
                parts.append(",")
            _encode_value(item, parts)
        parts.append("]")
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise NotCanonical(f"expected string keys, got {_excerpt(key)}")
        try:
            keys = sorted(value, key=_utf16_order)
        except UnicodeEncodeError:
            raise NotCanonical("expected keys of valid Unicode, got a lone surrogate") from None
        parts.append("{")
        for position, key in enumerate(keys):
            if position:
                parts.append(",")
            parts.append(_encode_string(key))
            parts.append(":")
            _encode_value(value[key], parts)
        parts.append("}")
    else:
        raise NotCanonical(
            f"expected str, int, bool, None, list or dict, got {type(value).__name__} "
            "(no floats: amounts travel as integer strings)"
        )


def _encode_string(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotCanonical(
            f"expected valid Unicode, got a lone surrogate in {_excerpt(text)}"
        ) from None
    # With ensure_ascii off, the json module escapes exactly what RFC 8785
    # section 3.2.2.2 escapes (quote, backslash, \b \t \n \f \r, other C0
    # controls as lowercase \u00xx) and nothing else.
    return json.dumps(text, ensure_ascii=False)


def _refuse_float(text: str) -> Any:
    raise NotCanonical(f"expected no floating-point numbers, got {_excerpt(text)}")


def _refuse_constant(text: str) -> Any:
    raise NotCanonical(f"expected JSON, got the non-JSON constant {text}")


def _checked_int(text: str) -> int:
    # Length first: int() of a hostile 4,000-digit literal costs quadratic time.
    if len(text.lstrip("-")) > SAFE_INTEGER_DIGITS_MAX or abs(int(text)) > SAFE_INTEGER_MAX:
        raise NotCanonical(
            f"expected integers within ±{SAFE_INTEGER_MAX} (RFC 8785 numbers are doubles), "
            f"got {_excerpt(text)}"
        )
    return int(text)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise NotCanonical(f"expected unique keys, got {_excerpt(key)} twice")
        result[key] = value
    return result


def decode(data: bytes) -> Any:
    """Parse JSON strictly and require ``data`` to be exactly its RFC 8785 form.

    Refuses, with :class:`NotCanonical`: invalid UTF-8, a byte order mark, any
    JSON syntax error, floats, NaN and Infinity, integers beyond ±(2**53 - 1),
    duplicate keys, lone surrogates, and any spelling other than the canonical
    one (whitespace, key order, escapes).
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotCanonical(f"expected UTF-8, got an invalid byte at {error.start}") from None
    try:
        value = json.loads(
            text,
            parse_float=_refuse_float,
            parse_int=_checked_int,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as error:
        raise NotCanonical(f"expected JSON, got {error.msg} at position {error.pos}") from None
    except RecursionError:
        raise NotCanonical("expected JSON nested less deeply") from None
    try:
        again = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise NotCanonical("expected JSON nested less deeply") from None
    canonical = again == text if again.isascii() else encode(value) == bytes(data)
    if not canonical:
        # Duplicate keys are one way to differ; name them when they are the cause.
        json.loads(text, object_pairs_hook=_refuse_duplicates)
        raise NotCanonical("expected the RFC 8785 canonical form, got another spelling")
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
