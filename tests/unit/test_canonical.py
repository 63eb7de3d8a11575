"""ledger.canonical: RFC 8785 encoding held against the rfc8785 package; strict decoding."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import (
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    SAFE_INTEGER_MAX,
    NotCanonical,
    decode,
    encode,
    encode_trusted,
    encode_trusted_text,
    join_members,
    validate_metadata,
)
from ledger.errors import MetadataMustBeValid

# Any Unicode scalar value: every code point except the surrogates (category Cs).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
ASCII_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=12)
SAFE_INTEGERS = st.integers(-SAFE_INTEGER_MAX, SAFE_INTEGER_MAX)
SCALARS = st.none() | st.booleans() | SAFE_INTEGERS | TEXT | ASCII_TEXT


def json_documents(keys: st.SearchStrategy[str] = TEXT | ASCII_TEXT) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=25,
    )


@settings(max_examples=400, print_blob=True)
@given(json_documents())
def test_encode_is_rfc8785(document: Any) -> None:
    assert encode(document) == rfc8785.dumps(document)


@settings(max_examples=300, print_blob=True)
@given(json_documents(keys=ASCII_TEXT))
def test_encode_is_rfc8785_on_ascii_documents(document: Any) -> None:
    """The fast path (pure ASCII output) in particular."""
    assert encode(document) == rfc8785.dumps(document)


@settings(max_examples=300, print_blob=True)
@given(json_documents())
def test_trusted_encoding_is_rfc8785(document: Any) -> None:
    assert encode_trusted(document) == rfc8785.dumps(document)
    assert encode_trusted_text(document).encode("utf-8") == rfc8785.dumps(document)


@settings(max_examples=300, print_blob=True)
@given(st.dictionaries(ASCII_TEXT, json_documents(), max_size=8))
def test_joined_members_are_rfc8785(document: dict[str, Any]) -> None:
    """Members encoded one by one, then joined, give the whole document's encoding."""
    members = {name: encode_trusted_text(value) for name, value in document.items()}
    assert join_members(members) == rfc8785.dumps(document)


def test_join_members_refuses_non_ascii_names() -> None:
    """Beyond ASCII, code point order and UTF-16 order of names may differ."""
    with pytest.raises(NotCanonical, match="ASCII member names"):
        join_members({"\uffff": "1", "\U0001f600": "2"})


@settings(max_examples=300, print_blob=True)
@given(json_documents())
def test_decode_inverts_encode(document: Any) -> None:
    assert decode(encode(document)) == document


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        # UTF-16 code-unit order: U+FF61 (0xFF61) sorts after U+1F600 (0xD83D 0xDE00),
        # though its code point is smaller.
        (["\uff61", "\U0001f600"], ["\U0001f600", "\uff61"]),
        (["b", "a", "\x7f", "A"], ["A", "a", "b", "\x7f"]),
    ],
)
def test_key_order_is_utf16(keys: list[str], expected: list[str]) -> None:
    document = dict.fromkeys(keys, 1)
    assert list(decode(encode(document))) == expected


def test_known_vector() -> None:
    document = {"numbers": [333333333, 4, 0, -1], "string": '\u20ac$\x0f\nA\'B"\\\\"/', "b": True}
    assert encode(document) == (
        b'{"b":true,"numbers":[333333333,4,0,-1],"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"'
        b'\\\\\\\\\\"/"}'
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a":1,"a":2}', id="duplicate-key"),
        pytest.param(b'{"a":{"b":1,"b":1}}', id="nested-duplicate-key"),
        pytest.param(b'{"a":1.5}', id="float"),
        pytest.param(b'{"a":1.0}', id="float-integral"),
        pytest.param(b'{"a":1e2}', id="exponent"),
        pytest.param(b'{"a":NaN}', id="nan"),
        pytest.param(b'{"a":Infinity}', id="infinity"),
        pytest.param(b'{"a": 1}', id="space-after-colon"),
        pytest.param(b'{"a":1, "b":2}', id="space-after-comma"),
        pytest.param(b' {"a":1}', id="leading-space"),
        pytest.param(b'{"a":1}\n', id="trailing-newline"),
        pytest.param(b'{"b":1,"a":2}', id="keys-out-of-order"),
        pytest.param(b'{"a":"\\u00e9"}', id="needless-escape"),
        pytest.param(b'{"a":"\\/"}', id="escaped-slash"),
        pytest.param(b'{"a":-0}', id="negative-zero"),
        pytest.param(b'{"a":01}', id="leading-zero"),
        pytest.param(b'{"a":"\xff"}', id="not-utf8"),
        pytest.param(b'{"a":1', id="truncated"),
        pytest.param(b'{"a":9007199254740992}', id="unsafe-integer"),
    ],
)
def test_decode_rejects(data: bytes) -> None:
    with pytest.raises(NotCanonical) as raised:
        decode(data)
    assert raised.value.code == "json_must_be_canonical"


@settings(max_examples=200, print_blob=True)
@given(json_documents(), st.sampled_from([b" ", b"\n", b"\t"]))
def test_decode_rejects_any_added_whitespace(document: Any, space: bytes) -> None:
    canonical = encode(document)
    for position in range(len(canonical) + 1):
        spaced = canonical[:position] + space + canonical[position:]
        try:
            value = decode(spaced)
        except NotCanonical:
            continue
        # Whitespace inside a string is part of the value, not spacing.
        assert value != document


@settings(max_examples=200, print_blob=True)
@given(st.dictionaries(TEXT, SCALARS, min_size=2, max_size=6))
def test_decode_rejects_reordered_keys(document: dict[str, Any]) -> None:
    canonical_order = list(decode(encode(document)))
    reordered = "{" + ",".join(
        encode(key).decode("utf-8") + ":" + encode(document[key]).decode("utf-8")
        for key in reversed(canonical_order)
    )
    with pytest.raises(NotCanonical):
        decode((reordered + "}").encode("utf-8"))


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"rate": 0.5}, id="float"),
        pytest.param({"rate": float("nan")}, id="nan"),
        pytest.param({"list": [1, [2, 3.0]]}, id="nested-float"),
        pytest.param(nested(METADATA_MAX_DEPTH + 1), id="too-deep"),
        pytest.param({"note": "x" * METADATA_MAX_BYTES}, id="too-large"),
        pytest.param({"n": SAFE_INTEGER_MAX + 1}, id="unsafe-integer"),
        pytest.param({"n": -SAFE_INTEGER_MAX - 1}, id="unsafe-negative-integer"),
        pytest.param({1: "one"}, id="integer-key"),
        pytest.param({"s": "\udc00"}, id="lone-surrogate"),
        pytest.param({"b": b"bytes"}, id="bytes"),
        pytest.param(["not", "an", "object"], id="not-an-object"),
    ],
)
def test_metadata_rejections(metadata: Any) -> None:
    with pytest.raises(MetadataMustBeValid) as raised:
        validate_metadata(metadata)
    assert raised.value.code == "metadata_must_be_valid"


def test_metadata_limits_are_inclusive() -> None:
    assert validate_metadata(nested(METADATA_MAX_DEPTH)) == encode(nested(METADATA_MAX_DEPTH))
    padding = METADATA_MAX_BYTES - len(b'{"note":""}')
    assert len(validate_metadata({"note": "x" * padding})) == METADATA_MAX_BYTES
    assert validate_metadata({"n": SAFE_INTEGER_MAX, "m": -SAFE_INTEGER_MAX}) == (
        b'{"m":-9007199254740991,"n":9007199254740991}'
    )
    assert validate_metadata({}) == b"{}"
