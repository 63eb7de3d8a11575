"""Interoperability with the Go reference golang.org/x/mod/sumdb/note.

Every key string, text and signature here is copied from the Go package's
note_test.go (golang/mod, sumdb/note/note_test.go, TestNewVerifier,
TestNewSigner, TestSign, TestOpen); the test names follow them. Where this
implementation is deliberately stricter than Go (a repeated signature by a
known key), the test says so.
"""

from __future__ import annotations

import pytest

from ledger.note import NoteError, NoteSigner, NoteVerifier, key_id, open_note, sign_note

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"

TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIGNATURE = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
PETER_SIGNATURE_LINE = f"— PeterNeumann {PETER_SIGNATURE}\n"
ENOCH_SIGNATURE = (
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
)
ENOCH_SIGNATURE_LINE = f"— EnochRoot {ENOCH_SIGNATURE}\n"
SIGNED_BY_PETER = TEXT + "\n" + PETER_SIGNATURE_LINE


def note(text: str) -> bytes:
    return text.encode("utf-8")


@pytest.fixture
def peter() -> NoteVerifier:
    return NoteVerifier.from_vkey(PETER_VKEY)


@pytest.fixture
def enoch() -> NoteVerifier:
    return NoteVerifier.from_vkey(ENOCH_VKEY)


# TestNewVerifier


def test_verifier_key_parses_and_round_trips(peter: NoteVerifier) -> None:
    assert peter.name == "PeterNeumann"
    assert peter.key_id == bytes.fromhex("c74f20a3")
    assert key_id("PeterNeumann", peter.public_key) == bytes.fromhex("c74f20a3")
    assert peter.vkey() == PETER_VKEY


def test_enoch_verifier_key_round_trips(enoch: NoteVerifier) -> None:
    assert enoch.key_id == bytes.fromhex("af0cfe78")
    assert enoch.vkey() == ENOCH_VKEY


def mangled(key: str) -> list[str]:
    """Go's manglings: every proper substring, and every character incremented."""
    variants = [
        key[start:end]
        for start in range(len(key) + 1)
        for end in range(start + 1, len(key) + 1)
        if (start, end) != (0, len(key))
    ]
    variants += [
        key[:index] + chr(ord(key[index]) + 1) + key[index + 1 :] for index in range(len(key))
    ]
    return variants


def test_mangled_verifier_keys_are_refused() -> None:
    accepted = []
    for variant in mangled(PETER_VKEY):
        try:
            NoteVerifier.from_vkey(variant)
        except NoteError:
            continue
        accepted.append(variant)
    assert accepted == []


@pytest.mark.parametrize(
    "vkey",
    [
        # wrong length key, with adjusted key hash
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        # unknown algorithm, with adjusted key hash
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_verifier_keys_from_go_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(vkey)


# TestNewSigner


def test_signer_key_parses_and_matches_verifier_key() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.verifier().vkey() == PETER_VKEY
    assert signer.skey() == PETER_SKEY


def test_mangled_signer_keys_are_refused() -> None:
    accepted = []
    for variant in mangled(PETER_SKEY):
        try:
            NoteSigner.from_skey(variant)
        except NoteError:
            continue
        accepted.append(variant)
    assert accepted == []


# TestSign


def test_sign_reproduces_go_output_exactly() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    assert sign_note(TEXT, [signer]) == note(SIGNED_BY_PETER)


def test_sign_refuses_text_without_final_newline() -> None:
    with pytest.raises(NoteError, match="newline"):
        sign_note("abc", [NoteSigner.from_skey(PETER_SKEY)])


# TestOpen


def test_open_one_known_one_unknown(peter: NoteVerifier) -> None:
    opened = open_note(note(TEXT + "\n" + PETER_SIGNATURE_LINE + ENOCH_SIGNATURE_LINE), [peter])
    assert opened.text == TEXT
    assert opened.signatures_verified == ["PeterNeumann"]
    assert opened.unknown_signatures == 1


def test_open_both_known(peter: NoteVerifier, enoch: NoteVerifier) -> None:
    opened = open_note(
        note(TEXT + "\n" + PETER_SIGNATURE_LINE + ENOCH_SIGNATURE_LINE), [peter, enoch]
    )
    assert opened.signatures_verified == ["PeterNeumann", "EnochRoot"]
    assert opened.unknown_signatures == 0


def test_open_with_no_known_key_is_refused() -> None:
    with pytest.raises(NoteError, match="at least one signature by a known key"):
        open_note(note(TEXT + "\n" + PETER_SIGNATURE_LINE + ENOCH_SIGNATURE_LINE), [])


def test_open_ignores_a_duplicated_but_unused_verifier(
    peter: NoteVerifier, enoch: NoteVerifier
) -> None:
    opened = open_note(note(SIGNED_BY_PETER), [enoch, peter, enoch])
    assert opened.signatures_verified == ["PeterNeumann"]


def test_open_refuses_101_signatures(peter: NoteVerifier) -> None:
    for verifiers in ([peter], []):
        with pytest.raises(NoteError, match="at most 100 signature lines, got 101"):
            open_note(note(TEXT + "\n" + PETER_SIGNATURE_LINE * 101), verifiers)


def test_open_refuses_invalid_signature_by_known_key(peter: NoteVerifier) -> None:
    corrupted = PETER_SIGNATURE_LINE[:60] + "ABCD" + PETER_SIGNATURE_LINE[60:]
    with pytest.raises(NoteError, match=r"known key PeterNeumann\+c74f20a3.*does not verify"):
        open_note(note(TEXT + "\n" + corrupted), [peter])


def test_open_repeated_signature_by_known_key_is_refused(peter: NoteVerifier) -> None:
    # Deliberately stricter than Go, which drops the repeat: no signer that
    # follows the spec writes one key's signature twice.
    with pytest.raises(NoteError, match="one signature per known key"):
        open_note(note(TEXT + "\n" + PETER_SIGNATURE_LINE * 2), [peter])


def test_open_repeated_unknown_signatures_are_ignored_and_counted_once(
    peter: NoteVerifier,
) -> None:
    enoch_corrupted = ENOCH_SIGNATURE_LINE[:60] + "ABCD" + ENOCH_SIGNATURE_LINE[60:]
    opened = open_note(
        note(
            TEXT
            + "\n"
            + PETER_SIGNATURE_LINE
            + ENOCH_SIGNATURE_LINE
            + ENOCH_SIGNATURE_LINE
            + enoch_corrupted
        ),
        [peter],
    )
    assert opened.signatures_verified == ["PeterNeumann"]
    assert opened.unknown_signatures == 2  # Go: UnverifiedSigs == [enoch, enochABCD]


@pytest.mark.parametrize(
    "message",
    [
        note(TEXT),
        note(TEXT + "\n"),
        note(TEXT + "\n" + PETER_SIGNATURE_LINE[:-1]),
        note("\x01" + TEXT + "\n" + PETER_SIGNATURE_LINE),
        b"\xff" + note(TEXT + "\n" + PETER_SIGNATURE_LINE),
        note(TEXT + "\n" + f"— Bad Name {PETER_SIGNATURE}"),
        note(TEXT + "\n" + PETER_SIGNATURE_LINE + "Unexpected line.\n"),
    ],
)
def test_open_refuses_go_bad_messages(message: bytes, peter: NoteVerifier) -> None:
    with pytest.raises(NoteError):
        open_note(message, [peter])


@pytest.mark.parametrize(
    "signature_line",
    [
        PETER_SIGNATURE_LINE.replace("PeterNeumann", "CarmenSandiego"),  # name unknown
        PETER_SIGNATURE_LINE.replace("x08g", "xxxx"),  # key ID unknown
    ],
)
def test_open_signature_matching_name_or_key_id_but_not_both_is_unknown(
    signature_line: str, peter: NoteVerifier
) -> None:
    # signed-note: "Verifiers MUST ignore signatures from unknown keys, even if
    # they share a name or ID (but not both) with a known key."
    with pytest.raises(NoteError, match="at least one signature by a known key"):
        open_note(note(TEXT + "\n" + signature_line), [peter])
    opened = open_note(note(TEXT + "\n" + PETER_SIGNATURE_LINE + signature_line), [peter])
    assert opened.unknown_signatures == 1
