"""ledger.bundle: framing, manifest, canonical JSON, trust and balances files."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import bundle, canonical
from ledger.bundle import (
    FramingError,
    NotCanonicalJson,
    decode_canonical,
    encode_canonical,
    read_framed,
    write_framed,
)
from ledger.errors import LedgerError
from tests.bundle_builder import LOG_KEY_NEW, LOG_KEY_OLD, ORIGIN, private_key, public_bytes

# --- Framing ------------------------------------------------------------------------------


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_framing_round_trip(frames: list[bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "frames.bin"
        assert write_framed(path, iter(frames)) == len(frames)
        assert list(read_framed(path)) == frames
        assert path.stat().st_size == sum(4 + len(frame) for frame in frames)


def test_frame_is_a_big_endian_length_then_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "frames.bin"
    write_framed(path, [b"ab", b""])
    assert path.read_bytes() == b"\x00\x00\x00\x02ab\x00\x00\x00\x00"


def test_empty_file_has_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert list(read_framed(path)) == []


@pytest.mark.parametrize(
    ("data", "frame", "offset", "words"),
    [
        (b"\x00\x00", 0, 0, "length header"),
        (b"\x00\x00\x00\x01a\x00\x00\x00\x05abc", 1, 5, "expected 5 bytes, got 3"),
        (b"\x00\x00\x00\x01a\x00", 1, 5, "got 1 byte(s)"),
        (b"\x00\x00\x00\x01a" + struct.pack(">I", 2**32 - 1), 1, 5, "at most 1048576"),
    ],
    ids=["truncated header", "truncated body", "truncated second header", "oversize length"],
)
def test_bad_frames_name_frame_and_offset(
    tmp_path: Path, data: bytes, frame: int, offset: int, words: str
) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    frames = read_framed(path)
    yielded: list[bytes] = []
    with pytest.raises(FramingError) as caught:
        yielded.extend(frames)
    assert len(yielded) == frame  # every frame before the bad one came through
    assert (caught.value.frame, caught.value.offset) == (frame, offset)
    assert words in caught.value.message
    assert isinstance(caught.value, LedgerError)


def test_oversize_length_is_refused_before_reading(tmp_path: Path) -> None:
    """A hostile length is refused from the header alone, whatever follows."""
    path = tmp_path / "bad.bin"
    path.write_bytes(struct.pack(">I", 2_000_000) + b"x" * 2_000_000)
    with pytest.raises(FramingError, match="at most 1048576 bytes, got 2000000"):
        next(read_framed(path))
    assert next(read_framed(path, size_max=2_000_000)) == b"x" * 2_000_000


def test_reader_streams(tmp_path: Path) -> None:
    """Frames come one at a time; the file is opened on the first next()."""
    path = tmp_path / "frames.bin"
    frames = read_framed(path)  # not created yet: nothing is read until next()
    write_framed(path, (bytes([number % 256]) * 10 for number in range(1000)))
    assert next(frames) == b"\x00" * 10
    assert next(frames) == b"\x01" * 10


def test_writer_refuses_oversize_and_non_bytes(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleFormatError, match="frame 1: expected at most"):
        write_framed(tmp_path / "x.bin", [b"a", b"b" * (bundle.FRAME_SIZE_MAX_BYTES + 1)])
    with pytest.raises(bundle.BundleFormatError, match="expected bytes, got str"):
        write_framed(tmp_path / "y.bin", ["text"])  # type: ignore[list-item]


def test_leaf_size_limit_is_one_mebibyte() -> None:
    assert bundle.LEAF_SIZE_MAX_BYTES == bundle.FRAME_SIZE_MAX_BYTES == 1024 * 1024


# --- Names, hashes and the manifest -------------------------------------------------------------


def test_file_names() -> None:
    assert (
        bundle.LEAVES_FILE,
        bundle.CHECKPOINTS_FILE,
        bundle.TRUST_FILE,
        bundle.BALANCES_FILE,
        bundle.MANIFEST_FILE,
    ) == ("leaves.bin", "checkpoints.bin", "trust.json", "balances.json", "manifest.note")
    assert list(bundle.MANIFEST_HASHED_FILES) == sorted(bundle.MANIFEST_HASHED_FILES)
    assert bundle.MANIFEST_FILE not in bundle.MANIFEST_HASHED_FILES


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "data"
    data = bytes(range(256)) * 10_000
    path.write_bytes(data)
    assert bundle.file_sha256(path) == hashlib.sha256(data).hexdigest()


HASHES = {
    "trust.json": "c" * 64,
    "leaves.bin": "a" * 64,
    "balances.json": "0" * 64,
    "checkpoints.bin": "f" * 64,
}


def test_manifest_text_lists_files_sorted_by_name() -> None:
    assert bundle.manifest_text(ORIGIN, 21, HASHES) == (
        "settlement.v1/bundle-manifest\n"
        "settlement.example/log\n"
        "21\n"
        f"{'0' * 64} balances.json\n"
        f"{'f' * 64} checkpoints.bin\n"
        f"{'a' * 64} leaves.bin\n"
        f"{'c' * 64} trust.json\n"
    )


def test_manifest_round_trip() -> None:
    manifest = bundle.parse_manifest(bundle.manifest_text(ORIGIN, 0, HASHES))
    assert (manifest.origin, manifest.tree_size, dict(manifest.file_hashes)) == (ORIGIN, 0, HASHES)


GOOD_MANIFEST = bundle.manifest_text(ORIGIN, 21, HASHES)


@pytest.mark.parametrize(
    "text",
    [
        GOOD_MANIFEST[:-1],
        GOOD_MANIFEST.replace("settlement.v1/bundle-manifest", "settlement.v2/bundle-manifest"),
        GOOD_MANIFEST.replace("\n21\n", "\n021\n"),
        GOOD_MANIFEST.replace("\n21\n", "\n+21\n"),
        GOOD_MANIFEST.replace("\n21\n", "\n\n"),
        GOOD_MANIFEST.replace("a" * 64, "A" * 64),
        GOOD_MANIFEST.replace("a" * 64 + " ", "a" * 63 + " "),
        GOOD_MANIFEST.replace(" leaves.bin", "  leaves.bin"),
        GOOD_MANIFEST.replace(" leaves.bin", " ../leaves.bin"),
        GOOD_MANIFEST + f"{'b' * 64} balances.json\n",
        "settlement.v1/bundle-manifest\nsettlement.example/log\n",
        "settlement.v1/bundle-manifest\n\n21\n",
    ],
    ids=[
        "no final newline",
        "other format",
        "leading zero",
        "sign",
        "no size",
        "uppercase hex",
        "short hash",
        "two spaces",
        "path",
        "unsorted",
        "two lines",
        "empty origin",
    ],
)
def test_parse_manifest_is_strict(text: str) -> None:
    with pytest.raises(bundle.BundleFormatError):
        bundle.parse_manifest(text)


@pytest.mark.parametrize(
    ("origin", "size", "hashes"),
    [
        ("", 1, HASHES),
        (ORIGIN, -1, HASHES),
        (ORIGIN, 2**64, HASHES),
        (ORIGIN, 1, {"manifest.note": "0" * 64}),
        (ORIGIN, 1, {"a b": "0" * 64}),
        (ORIGIN, 1, {"leaves.bin": "0" * 63}),
    ],
)
def test_manifest_text_refuses_what_cannot_be_parsed_back(
    origin: str, size: int, hashes: dict[str, str]
) -> None:
    with pytest.raises(bundle.BundleFormatError):
        bundle.manifest_text(origin, size, hashes)


# --- Canonical JSON ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-bundle.SAFE_INTEGER_MAX, max_value=bundle.SAFE_INTEGER_MAX)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(JSON_VALUES)
def test_encoder_agrees_with_the_rfc8785_package(value: Any) -> None:
    """The standard-library codec must produce the bytes ledger.canonical (rfc8785) does."""
    encoded = encode_canonical(value)
    assert encoded == canonical.encode(value)
    assert decode_canonical(encoded) == value
    assert canonical.decode(encoded) == value


def test_rfc8785_property_sorting_example() -> None:
    """RFC 8785 section 3.2.3: keys sort by UTF-16 code units, not code points."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = list(json.loads(encode_canonical(value)))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_string_escapes_are_rfc8785() -> None:
    assert encode_canonical('\u0000\b\t\n\f\r"\\\u001f\u007f\u2028é') == (
        '"\\u0000\\b\\t\\n\\f\\r\\"\\\\\\u001f\u007f\u2028é"'.encode()
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',
        b'{"b":1,"a":2}',
        b'{"a":1,"a":1}',
        b'{"a":1.0}',
        b'{"a":1e2}',
        b'{"a":-0}',
        b'{"a":NaN}',
        b'{"a":9007199254740992}',
        b'{"a":123456789012345678901234567890}',
        b'"\\u0041"',
        b'"\\/"',
        b'"\\ud800"',
        b'"\\u00e9"',
        b"\xef\xbb\xbf{}",
        b'"\xff"',
        b"{}\n",
        b"",
        b"[" * 100_000,
    ],
    ids=[
        "whitespace",
        "key order",
        "duplicate key",
        "float",
        "exponent",
        "minus zero",
        "NaN",
        "2**53",
        "huge integer",
        "needless escape",
        "escaped slash",
        "lone surrogate",
        "escaped non-ASCII",
        "byte order mark",
        "invalid UTF-8",
        "final newline",
        "empty",
        "deep nesting",
    ],
)
def test_decode_refuses_non_canonical_json(data: bytes) -> None:
    with pytest.raises(NotCanonicalJson):
        decode_canonical(data)


def test_duplicate_keys_are_named() -> None:
    with pytest.raises(NotCanonicalJson, match="'a' twice"):
        decode_canonical(b'{"a":1,"a":1}')


@pytest.mark.parametrize("value", [1.5, float("nan"), 2**53, {1: "a"}, b"bytes", "\ud800"])
def test_encode_refuses_what_rfc8785_cannot_represent(value: Any) -> None:
    with pytest.raises(NotCanonicalJson):
        encode_canonical(value)


def test_json_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    bundle.write_json(path, {"b": [1, "two", None], "a": True})
    assert path.read_bytes() == b'{"a":true,"b":[1,"two",null]}'
    assert bundle.read_json(path) == {"a": True, "b": [1, "two", None]}


def test_read_json_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b'"' + b"x" * 100 + b'"')
    with pytest.raises(bundle.BundleFormatError, match="at most 50 bytes"):
        bundle.read_json(path, size_max=50)


# --- Trust file ---------------------------------------------------------------------------------

KEY_A = public_bytes(private_key(40))


def trust_document() -> dict[str, Any]:
    return {
        "format": "settlement.v1/trust",
        "origin": ORIGIN,
        "log_keys": [
            {"vkey": LOG_KEY_OLD.verifier().vkey(), "first_tree_size": "0", "last_tree_size": "13"},
            {
                "vkey": LOG_KEY_NEW.verifier().vkey(),
                "first_tree_size": "14",
                "last_tree_size": None,
            },
        ],
        "participant_keys": [
            {
                "signer": "BANKA",
                "public_key": base64.b64encode(KEY_A).decode(),
                "first_index": "2",
                "last_index": None,
            }
        ],
    }


def test_parse_trust() -> None:
    trust = bundle.parse_trust(trust_document())
    assert trust.origin == ORIGIN
    assert [key.verifier for key in trust.log_keys] == [
        LOG_KEY_OLD.verifier(),
        LOG_KEY_NEW.verifier(),
    ]
    assert (trust.log_keys[0].covers(13), trust.log_keys[0].covers(14)) == (True, False)
    assert (trust.log_keys[1].covers(13), trust.log_keys[1].covers(2**64 - 1)) == (False, True)
    (participant,) = trust.participant_keys
    assert participant == bundle.ParticipantKey("BANKA", KEY_A, 2, None)
    assert (participant.covers(1), participant.covers(2)) == (False, True)
    assert bundle.parse_trust(bundle.trust_document(trust)) == trust


def _set(path: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        target: Any = document
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_set("format", "settlement.v2/trust"), "format"),
        (_set("origin", ""), "origin"),
        (_set("extra", 1), "unknown"),
        (_set("log_keys", []), "at least one log key"),
        (_set("log_keys.0.vkey", "not a key"), "vkey"),
        (_set("log_keys.0.vkey", "other+00000000+AAAA"), "vkey"),
        (_set("log_keys.0.first_tree_size", 0), "first_tree_size"),
        (_set("log_keys.0.last_tree_size", "014"), "last_tree_size"),
        (_set("log_keys.1.last_tree_size", "13"), "last_tree_size >= first_tree_size"),
        (_set("participant_keys.0.signer", "BANK A"), "signer"),
        (_set("participant_keys.0.public_key", base64.b64encode(b"short").decode()), "32 bytes"),
        (_set("participant_keys.0.public_key", "AAAA"), "32 bytes"),
        (_set("participant_keys.0.public_key", "A A="), "base64"),
        (_set("participant_keys.0.first_index", "-1"), "first_index"),
        (_set("participant_keys.0.last_index", _DELETE), "missing"),
    ],
)
def test_parse_trust_is_strict(change: Any, words: str) -> None:
    document = trust_document()
    change(document)
    with pytest.raises(bundle.BundleFormatError, match=words):
        bundle.parse_trust(document)


# --- Balances file ------------------------------------------------------------------------------


def balances_document() -> dict[str, Any]:
    return {
        "format": "settlement.v1/balances",
        "tree_size": "21",
        "accounts": [
            {
                "account": "A1",
                "currency": "USD",
                "debits_posted": "100",
                "credits_posted": "0",
                "debits_pending": "0",
                "credits_pending": "0",
            },
            {
                "account": "B1",
                "currency": "USD",
                "debits_posted": "0",
                "credits_posted": "100",
                "debits_pending": "0",
                "credits_pending": str(bundle.INT64_MAX),
            },
        ],
    }


def test_parse_balances() -> None:
    balances = bundle.parse_balances(balances_document())
    assert balances.tree_size == 21
    assert [item.account for item in balances.accounts] == ["A1", "B1"]
    assert balances.accounts[0].totals() == (100, 0, 0, 0)
    assert balances.accounts[1].credits_pending == 2**63 - 1
    assert bundle.balances_document(balances) == balances_document()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_set("format", "settlement.v1/trust"), "format"),
        (_set("tree_size", 21), "tree_size"),
        (_set("accounts.1.account", "A1"), "strictly increasing"),
        (_set("accounts.0.account", "Z1"), "strictly increasing"),
        (_set("accounts.0.currency", "usd"), "currency"),
        (_set("accounts.0.debits_posted", "-1"), "debits_posted"),
        (_set("accounts.0.debits_posted", "1.5"), "debits_posted"),
        (_set("accounts.0.debits_posted", str(2**63)), "at most"),
        (_set("accounts.0.extra", "0"), "unknown"),
        (_set("accounts", {}), "array"),
    ],
)
def test_parse_balances_is_strict(change: Any, words: str) -> None:
    document = balances_document()
    change(document)
    with pytest.raises(bundle.BundleFormatError, match=words):
        bundle.parse_balances(document)
