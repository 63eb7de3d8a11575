"""ledger.note: signed-note encoding, opening and key strings.

Rejection tables are in the order open_note / sign_note check them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError
from ledger.note import (
    NOTE_SIZE_MAX_BYTES,
    SIGNATURES_MAX,
    NoteError,
    NoteSigner,
    NoteVerifier,
    OpenedNote,
    key_id,
    open_note,
    sign_note,
)
from ledger.signing import INSTRUCTION_CONTEXT

LOG_NAME = "settlement.example/log"
TEXT = "settlement.example/log\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def private_key(fill: int) -> Ed25519PrivateKey:
    """A fixed key per ``fill`` byte, so failures reproduce."""
    return Ed25519PrivateKey.from_private_bytes(bytes([fill]) * 32)


LOG_SIGNER = NoteSigner(LOG_NAME, private_key(1))
WITNESS_SIGNER = NoteSigner("witness.example/w1", private_key(2))
LOG_VERIFIER = LOG_SIGNER.verifier()
WITNESS_VERIFIER = WITNESS_SIGNER.verifier()

SIGNED = sign_note(TEXT, [LOG_SIGNER])
TEXT_BYTES = TEXT.encode()
LOG_LINE = SIGNED[len(TEXT_BYTES) + 1 :]


def signature_line(name: str, payload: bytes) -> bytes:
    return f"— {name} {base64.b64encode(payload).decode()}\n".encode()


def flip_last_signature_byte(line: bytes) -> bytes:
    name_part, encoded = line[:-1].rsplit(b" ", 1)
    payload = bytearray(base64.b64decode(encoded))
    payload[-1] ^= 0x01
    return name_part + b" " + base64.b64encode(bytes(payload)) + b"\n"


def test_error_is_a_ledger_error_with_stable_code() -> None:
    assert issubclass(NoteError, LedgerError)
    assert NoteError.code == "note_invalid"
    assert NoteError.kind == "invalid"


# open_note: rejections, in the order they are checked.

OPEN_REJECTIONS: list[tuple[str, bytes, str]] = [
    ("too large", b"a" * (NOTE_SIZE_MAX_BYTES + 1), "at most 1048576 bytes"),
    ("invalid UTF-8", b"\xff" + SIGNED, "UTF-8"),
    ("control character", b"\t" + SIGNED, "control characters"),
    ("carriage return line ends", SIGNED.replace(b"\n", b"\r\n"), "control characters"),
    ("missing blank line", TEXT_BYTES + LOG_LINE, "blank line"),
    ("nothing after blank line", TEXT_BYTES + b"\n", "at least one signature line"),
    ("missing final newline", SIGNED[:-1], "end in a newline"),
    (
        "missing final newline after multi-byte characters",
        TEXT_BYTES + b"\n" + ("— x " + "é" * 10 + "a").encode(),
        "end in a newline",
    ),
    (
        "too many signatures",
        TEXT_BYTES + b"\n" + LOG_LINE * (SIGNATURES_MAX + 1),
        "at most 100 signature lines, got 101",
    ),
    (
        "text starting with the instruction context",
        INSTRUCTION_CONTEXT + b"{}\n\n" + LOG_LINE,
        "instruction context",
    ),
    (
        "wrong dash: en dash",
        TEXT_BYTES + b"\n" + LOG_LINE.replace("—".encode(), "–".encode()),
        "EM DASH",
    ),
    ("wrong dash: hyphen", TEXT_BYTES + b"\n" + LOG_LINE.replace("—".encode(), b"-"), "EM DASH"),
    (
        "no space after dash",
        TEXT_BYTES + b"\n" + LOG_LINE.replace("— ".encode(), "—".encode()),
        "EM DASH",
    ),
    ("no base64 field", TEXT_BYTES + b"\n" + f"— {LOG_NAME}\n".encode(), "<key name> <base64>"),
    (
        "empty key name",
        TEXT_BYTES + b"\n" + LOG_LINE.replace(LOG_NAME.encode(), b""),
        "non-empty key name",
    ),
    (
        "key name with plus",
        TEXT_BYTES + b"\n" + LOG_LINE.replace(b"/log", b"+log"),
        "spaces or '+'",
    ),
    ("bad base64 alphabet", TEXT_BYTES + b"\n" + LOG_LINE[:-3] + b"!=\n", "canonical base64"),
    ("base64 without padding", TEXT_BYTES + b"\n" + LOG_LINE[:-2] + b"\n", "canonical base64"),
    (
        "url-safe base64",
        TEXT_BYTES
        + b"\n"
        + signature_line("a", b"\xfb\xff" * 34).replace(b"+", b"-").replace(b"/", b"_"),
        "canonical base64",
    ),
    (
        "empty base64",
        TEXT_BYTES + b"\n" + f"— {LOG_NAME} \n".encode(),
        "key ID and a signature, got 0 bytes",
    ),
    (
        "key ID only",
        TEXT_BYTES + b"\n" + signature_line(LOG_NAME, LOG_SIGNER.key_id),
        "key ID and a signature",
    ),
    ("duplicate signature lines", TEXT_BYTES + b"\n" + LOG_LINE * 2, "one signature per known key"),
    (
        "known key, flipped byte",
        TEXT_BYTES + b"\n" + flip_last_signature_byte(LOG_LINE),
        "does not verify",
    ),
    (
        "known key, truncated signature",
        TEXT_BYTES
        + b"\n"
        + signature_line(LOG_NAME, base64.b64decode(LOG_LINE.split(b" ")[-1])[:-1]),
        "does not verify",
    ),
    ("known key, signature over other text", b"other\n\n" + LOG_LINE, "does not verify"),
    (
        "only unknown keys",
        sign_note(TEXT, [WITNESS_SIGNER]),
        "at least one signature by a known key, got none among 1",
    ),
]


@pytest.mark.parametrize(
    ("note", "message"),
    [(note, message) for _, note, message in OPEN_REJECTIONS],
    ids=[name for name, _, _ in OPEN_REJECTIONS],
)
def test_open_rejects(note: bytes, message: str) -> None:
    with pytest.raises(NoteError, match=message.replace("+", r"\+")):
        open_note(note, [LOG_VERIFIER])


def test_open_rejects_str_input() -> None:
    with pytest.raises(NoteError, match="as bytes"):
        open_note(SIGNED.decode(), [LOG_VERIFIER])  # type: ignore[arg-type]


def test_open_rejects_two_trusted_keys_with_one_name_and_key_id() -> None:
    impostor = NoteSigner(LOG_NAME, private_key(3)).verifier()
    # A real collision needs 2**32 work; stand one in by overwriting the ID.
    impostor._key_id = LOG_VERIFIER.key_id
    with pytest.raises(NoteError, match="one trusted key per name and key ID"):
        open_note(SIGNED, [LOG_VERIFIER, impostor])


def test_invalid_known_signature_fails_even_with_a_valid_one() -> None:
    forged = signature_line("witness.example/w1", WITNESS_SIGNER.key_id + b"x" * 64)
    note = TEXT_BYTES + b"\n" + LOG_LINE + forged
    with pytest.raises(NoteError, match=r"witness.example/w1\+.*does not verify"):
        open_note(note, [LOG_VERIFIER, WITNESS_VERIFIER])


# open_note: acceptances.


def test_open_returns_text_and_verified_names() -> None:
    assert open_note(SIGNED, [LOG_VERIFIER]) == OpenedNote(
        text=TEXT, signatures_verified=[LOG_NAME], unknown_signatures=0
    )


def test_extra_signature_from_unknown_key_is_ignored() -> None:
    note = sign_note(TEXT, [LOG_SIGNER, WITNESS_SIGNER])
    opened = open_note(note, [LOG_VERIFIER])
    assert opened.signatures_verified == [LOG_NAME]
    assert opened.unknown_signatures == 1


def test_unknown_signature_of_any_length_or_garbage_is_ignored() -> None:
    note = SIGNED + signature_line("other.example/key", b"\x00" * 5000)
    assert open_note(note, [LOG_VERIFIER]).unknown_signatures == 1


def test_signatures_up_to_the_limit_are_accepted() -> None:
    unknown = [signature_line(f"unknown{index}", bytes(68)) for index in range(SIGNATURES_MAX - 1)]
    note = SIGNED + b"".join(unknown)
    opened = open_note(note, [LOG_VERIFIER])
    assert opened.unknown_signatures == SIGNATURES_MAX - 1


def test_both_known_signatures_are_reported_in_note_order() -> None:
    note = sign_note(TEXT, [WITNESS_SIGNER, LOG_SIGNER])
    opened = open_note(note, [LOG_VERIFIER, WITNESS_VERIFIER])
    assert opened.signatures_verified == ["witness.example/w1", LOG_NAME]


@pytest.mark.parametrize(
    "text",
    [
        "a\n",
        "\n",
        "first\n\nafter a blank line\n",
        "ends in a blank line\n\n",
        "— looks like a signature line\n",
        "non-ASCII: é, Ü, 中文, \U0001f600, and DEL \x7f\n",
    ],
)
def test_sign_then_open_round_trips(text: str) -> None:
    opened = open_note(sign_note(text, [LOG_SIGNER]), [LOG_VERIFIER])
    assert opened.text == text


@settings(print_blob=True, max_examples=50)
@given(
    st.text(
        alphabet=st.characters(
            exclude_categories=["Cs"],
            exclude_characters=[chr(code) for code in range(0x20) if code != 0x0A],
        ),
        max_size=200,
    )
)
def test_property_sign_then_open_round_trips(body: str) -> None:
    text = "x" + body + "\n"
    opened = open_note(sign_note(text, [LOG_SIGNER]), [LOG_VERIFIER])
    assert opened.text == text
    assert opened.signatures_verified == [LOG_NAME]


# sign_note: rejections.

SIGN_REJECTIONS: list[tuple[str, str, Callable[[], list[NoteSigner]], str]] = [
    ("empty text", "", lambda: [LOG_SIGNER], "non-empty note text"),
    ("no final newline", "abc", lambda: [LOG_SIGNER], "end in a newline"),
    ("control character", "a\tb\n", lambda: [LOG_SIGNER], "control characters"),
    ("lone surrogate", "a\udc80\n", lambda: [LOG_SIGNER], "valid Unicode"),
    (
        "instruction context",
        INSTRUCTION_CONTEXT.decode() + "{}\n",
        lambda: [LOG_SIGNER],
        "instruction context",
    ),
    ("no signers", TEXT, list, "at least one signer"),
    (
        "too many signers",
        TEXT,
        lambda: [
            NoteSigner(f"k{index}", private_key(index)) for index in range(SIGNATURES_MAX + 1)
        ],
        "at most 100 signers",
    ),
    ("same key twice", TEXT, lambda: [LOG_SIGNER, LOG_SIGNER], "each key to sign once"),
    ("too large", "a" * NOTE_SIZE_MAX_BYTES + "\n", lambda: [LOG_SIGNER], "at most 1048576 bytes"),
]


@pytest.mark.parametrize(
    ("text", "signers", "message"),
    [(text, signers, message) for _, text, signers, message in SIGN_REJECTIONS],
    ids=[name for name, _, _, _ in SIGN_REJECTIONS],
)
def test_sign_rejects(text: str, signers: Callable[[], list[NoteSigner]], message: str) -> None:
    with pytest.raises(NoteError, match=message):
        sign_note(text, signers())


# Keys and key strings.


@pytest.mark.parametrize(
    "name",
    [
        "",
        "has space",
        "has+plus",
        "tab\there",
        "no\u00a0break",
        "ideographic\u3000space",
        "line\u2028sep",
        "nul\x00",
    ],
)
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        NoteSigner(name, private_key(1))


def test_key_id_is_first_four_bytes_of_sha256_of_name_newline_type_key() -> None:
    import hashlib

    public_key = LOG_SIGNER.public_key
    expected = hashlib.sha256(LOG_NAME.encode() + b"\n\x01" + public_key).digest()[:4]
    assert key_id(LOG_NAME, public_key) == expected == LOG_SIGNER.key_id


@pytest.mark.parametrize("size", [0, 31, 33])
def test_key_id_refuses_wrong_public_key_size(size: int) -> None:
    with pytest.raises(NoteError, match="32-byte Ed25519 public key"):
        key_id(LOG_NAME, bytes(size))


def test_vkey_and_skey_round_trip() -> None:
    assert NoteVerifier.from_vkey(LOG_VERIFIER.vkey()) == LOG_VERIFIER
    signer = NoteSigner.from_skey(LOG_SIGNER.skey())
    assert signer.verifier() == LOG_VERIFIER
    assert sign_note(TEXT, [signer]) == SIGNED


def test_vkey_with_uppercase_key_id_is_refused() -> None:
    name, key_id_hex, key_data = LOG_VERIFIER.vkey().split("+", 2)
    with pytest.raises(NoteError, match="lowercase hex"):
        NoteVerifier.from_vkey(f"{name}+{key_id_hex.upper()}+{key_data}")


def test_vkey_with_another_keys_id_is_refused() -> None:
    name, _, key_data = LOG_VERIFIER.vkey().split("+", 2)
    with pytest.raises(NoteError, match="expected key ID"):
        NoteVerifier.from_vkey(f"{name}+{WITNESS_VERIFIER.key_id.hex()}+{key_data}")


def test_signer_repr_and_errors_hide_the_private_key() -> None:
    secret = LOG_SIGNER.skey().rsplit("+", 1)[-1]
    assert secret not in repr(LOG_SIGNER)
    assert "hidden" in repr(LOG_SIGNER)
    damaged = LOG_SIGNER.skey()[:-2] + "!!"
    with pytest.raises(NoteError) as raised:
        NoteSigner.from_skey(damaged)
    assert secret[:-2] not in str(raised.value)


def test_signer_key_without_prefix_is_refused_without_quoting_it() -> None:
    skey = LOG_SIGNER.skey()
    with pytest.raises(NoteError) as raised:
        NoteSigner.from_skey(skey.removeprefix("PRIVATE+"))
    assert skey.rsplit("+", 1)[-1] not in str(raised.value)


def test_verifier_repr_shows_the_vkey() -> None:
    assert repr(LOG_VERIFIER) == f"NoteVerifier({LOG_VERIFIER.vkey()!r})"
