"""ledger.checkpoint: tlog-checkpoint bodies, signed and opened as notes."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    TREE_SIZE_MAX,
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from ledger.errors import LedgerError
from ledger.note import NoteError, NoteSigner, sign_note

ORIGIN = "settlement.example/log"
ROOT_HASH = bytes(range(32))
ROOT_HASH_BASE64 = base64.b64encode(ROOT_HASH).decode()

# The example of c2sp.org/tlog-checkpoint.
URL_SAFE_HASH = base64.urlsafe_b64encode(b"\xff" * 32).decode()
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def private_key(fill: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([fill]) * 32)


LOG_SIGNER = NoteSigner(ORIGIN, private_key(1))
WITNESS_SIGNER = NoteSigner("witness.example/w1", private_key(2))
LOG_VERIFIER = LOG_SIGNER.verifier()
WITNESS_VERIFIER = WITNESS_SIGNER.verifier()
CHECKPOINT = Checkpoint(origin=ORIGIN, size=7, root_hash=ROOT_HASH)


def test_error_is_a_ledger_error_with_stable_code() -> None:
    assert issubclass(CheckpointError, LedgerError)
    assert CheckpointError.code == "checkpoint_invalid"


def test_body_is_origin_size_hash_each_ending_in_newline() -> None:
    assert CHECKPOINT.body() == f"{ORIGIN}\n7\n{ROOT_HASH_BASE64}\n"
    with_extensions = Checkpoint(ORIGIN, 0, ROOT_HASH, extensions=("one", "two words"))
    assert with_extensions.body() == f"{ORIGIN}\n0\n{ROOT_HASH_BASE64}\none\ntwo words\n"


def test_spec_example_parses_and_round_trips() -> None:
    checkpoint = parse_checkpoint(SPEC_BODY)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert len(checkpoint.root_hash) == 32
    assert checkpoint.body() == SPEC_BODY


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"{ORIGIN}\n0\n{ROOT_HASH_BASE64}\n", Checkpoint(ORIGIN, 0, ROOT_HASH)),
        (
            f"{ORIGIN}\n{TREE_SIZE_MAX}\n{ROOT_HASH_BASE64}\n",
            Checkpoint(ORIGIN, TREE_SIZE_MAX, ROOT_HASH),
        ),
        (f"{ORIGIN}\n7\n{ROOT_HASH_BASE64}\next\n", Checkpoint(ORIGIN, 7, ROOT_HASH, ("ext",))),
        (
            f"origin with spaces+plus\n7\n{ROOT_HASH_BASE64}\n",
            Checkpoint("origin with spaces+plus", 7, ROOT_HASH),
        ),
    ],
)
def test_parse_accepts(body: str, expected: Checkpoint) -> None:
    assert parse_checkpoint(body) == expected


PARSE_REJECTIONS: list[tuple[str, str, str]] = [
    ("empty", "", "end in a newline"),
    ("missing final newline", f"{ORIGIN}\n7\n{ROOT_HASH_BASE64}", "end in a newline"),
    ("missing root hash line", f"{ORIGIN}\n7\n", "at least 3 lines"),
    ("missing size and hash lines", f"{ORIGIN}\n", "at least 3 lines"),
    ("empty origin", f"\n7\n{ROOT_HASH_BASE64}\n", "non-empty origin"),
    ("control character in origin", f"a\tb\n7\n{ROOT_HASH_BASE64}\n", "control characters"),
    ("leading zero", f"{ORIGIN}\n07\n{ROOT_HASH_BASE64}\n", "leading zeros"),
    ("zero with leading zero", f"{ORIGIN}\n00\n{ROOT_HASH_BASE64}\n", "leading zeros"),
    ("negative size", f"{ORIGIN}\n-1\n{ROOT_HASH_BASE64}\n", "without sign"),
    ("plus sign", f"{ORIGIN}\n+7\n{ROOT_HASH_BASE64}\n", "without sign"),
    ("surrounding space", f"{ORIGIN}\n 7\n{ROOT_HASH_BASE64}\n", "ASCII decimal"),
    ("underscore", f"{ORIGIN}\n1_000\n{ROOT_HASH_BASE64}\n", "ASCII decimal"),
    ("non-ASCII digit", f"{ORIGIN}\n\u0667\n{ROOT_HASH_BASE64}\n", "ASCII decimal"),
    ("empty size", f"{ORIGIN}\n\n{ROOT_HASH_BASE64}\n", "ASCII decimal"),
    ("size above uint64", f"{ORIGIN}\n{TREE_SIZE_MAX + 1}\n{ROOT_HASH_BASE64}\n", "from 0 to"),
    ("size far too long", f"{ORIGIN}\n{'9' * 5000}\n{ROOT_HASH_BASE64}\n", "ASCII decimal"),
    (
        "hash of 31 bytes",
        f"{ORIGIN}\n7\n{base64.b64encode(bytes(31)).decode()}\n",
        "32-byte root hash, got 31",
    ),
    (
        "hash of 33 bytes",
        f"{ORIGIN}\n7\n{base64.b64encode(bytes(33)).decode()}\n",
        "32-byte root hash, got 33",
    ),
    ("hash in hex", f"{ORIGIN}\n7\n{ROOT_HASH.hex()}\n", "32-byte root hash, got 48"),
    (
        "hash without padding",
        f"{ORIGIN}\n7\n{ROOT_HASH_BASE64.rstrip('=')}\n",
        "canonical standard base64",
    ),
    ("hash url-safe", f"{ORIGIN}\n7\n{URL_SAFE_HASH}\n", "canonical standard base64"),
    (
        "hash non-canonical trailing bits",
        f"{ORIGIN}\n7\n{ROOT_HASH_BASE64[:-2]}B=\n",
        "canonical standard base64",
    ),
    ("empty hash line", f"{ORIGIN}\n7\n\n", "32-byte root hash, got 0 bytes"),
    ("empty extension line", f"{ORIGIN}\n7\n{ROOT_HASH_BASE64}\n\n", "non-empty extension line 1"),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [(body, message) for _, body, message in PARSE_REJECTIONS],
    ids=[name for name, _, _ in PARSE_REJECTIONS],
)
def test_parse_rejects(body: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(body)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"origin": "", "size": 1, "root_hash": ROOT_HASH}, "non-empty origin"),
        ({"origin": "a\nb", "size": 1, "root_hash": ROOT_HASH}, "without newline"),
        ({"origin": ORIGIN, "size": -1, "root_hash": ROOT_HASH}, "from 0 to"),
        ({"origin": ORIGIN, "size": TREE_SIZE_MAX + 1, "root_hash": ROOT_HASH}, "from 0 to"),
        ({"origin": ORIGIN, "size": True, "root_hash": ROOT_HASH}, "as int"),
        ({"origin": ORIGIN, "size": 1, "root_hash": bytes(31)}, "32-byte root hash"),
        ({"origin": ORIGIN, "size": 1, "root_hash": ROOT_HASH.hex()}, "as bytes"),
        ({"origin": ORIGIN, "size": 1, "root_hash": ROOT_HASH, "extensions": ["x"]}, "as a tuple"),
        (
            {"origin": ORIGIN, "size": 1, "root_hash": ROOT_HASH, "extensions": ("",)},
            "non-empty extension",
        ),
        (
            {"origin": ORIGIN, "size": 1, "root_hash": ROOT_HASH, "extensions": ("a\nb",)},
            "without newline",
        ),
    ],
)
def test_construction_rejects(fields: dict[str, object], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(**fields)  # type: ignore[arg-type]


@settings(print_blob=True, max_examples=100)
@given(
    size=st.integers(min_value=0, max_value=TREE_SIZE_MAX),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20),
        max_size=3,
    ),
)
def test_property_parse_inverts_body(size: int, root_hash: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint(ORIGIN, size, root_hash, tuple(extensions))
    assert parse_checkpoint(checkpoint.body()) == checkpoint


# Signing and opening.


def test_sign_then_open_round_trips() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_SIGNER)
    assert note.startswith(CHECKPOINT.body().encode() + "\n— settlement.example/log ".encode())
    assert open_checkpoint(note, [LOG_VERIFIER], ORIGIN) == CHECKPOINT


def test_witness_cosignature_by_unknown_key_is_ignored() -> None:
    note = sign_note(CHECKPOINT.body(), [LOG_SIGNER, WITNESS_SIGNER])
    assert open_checkpoint(note, [LOG_VERIFIER], ORIGIN) == CHECKPOINT


def test_sign_refuses_a_key_not_named_after_the_origin() -> None:
    with pytest.raises(CheckpointError, match="named after the origin"):
        sign_checkpoint(CHECKPOINT, WITNESS_SIGNER)


def test_open_refuses_wrong_origin() -> None:
    other = Checkpoint("other.example/log", 7, ROOT_HASH)
    signer = NoteSigner("other.example/log", private_key(1))
    note = sign_checkpoint(other, signer)
    with pytest.raises(
        CheckpointError, match=re.escape("expected origin 'settlement.example/log', got 'other")
    ):
        open_checkpoint(note, [signer.verifier()], ORIGIN)


def test_open_refuses_a_checkpoint_signed_only_by_a_witness() -> None:
    note = sign_note(CHECKPOINT.body(), [WITNESS_SIGNER])
    with pytest.raises(CheckpointError, match=re.escape("log key named 'settlement.example/log'")):
        open_checkpoint(note, [LOG_VERIFIER, WITNESS_VERIFIER], ORIGIN)


def test_open_refuses_a_note_by_an_untrusted_key() -> None:
    impostor = NoteSigner(ORIGIN, private_key(9))
    note = sign_checkpoint(CHECKPOINT, impostor)
    with pytest.raises(NoteError, match="at least one signature by a known key"):
        open_checkpoint(note, [LOG_VERIFIER], ORIGIN)


def test_open_refuses_a_tampered_size() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_SIGNER).replace(b"\n7\n", b"\n8\n", 1)
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(note, [LOG_VERIFIER], ORIGIN)


def test_open_refuses_a_signed_note_that_is_not_a_checkpoint() -> None:
    note = sign_note("hello\n", [LOG_SIGNER])
    with pytest.raises(CheckpointError, match="at least 3 lines"):
        open_checkpoint(note, [LOG_VERIFIER], ORIGIN)


def test_open_refuses_an_empty_expected_origin() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_SIGNER)
    with pytest.raises(CheckpointError, match="non-empty expected origin"):
        open_checkpoint(note, [LOG_VERIFIER], "")
