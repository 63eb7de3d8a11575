"""ledger.keys: Ed25519 key files, their permissions and formats."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger.errors import LedgerError
from ledger.keys import (
    KEY_FILE_SIZE_MAX_BYTES,
    KeyFileError,
    generate_signing_key,
    load_private_key,
    load_public_key,
    public_key_bytes,
)

SEED = bytes(range(32))
PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(SEED)
PRIVATE_PEM = PRIVATE_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
PUBLIC_RAW = PRIVATE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
PUBLIC_PEM = PRIVATE_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def write(path: Path, content: bytes, mode: int) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_error_is_a_ledger_error_with_stable_code() -> None:
    assert issubclass(KeyFileError, LedgerError)
    assert KeyFileError.code == "key_file_invalid"


def test_generate_writes_a_0600_pkcs8_private_key_and_a_public_key(tmp_path: Path) -> None:
    private_path, public_path = generate_signing_key(tmp_path / "keys", "log")
    assert private_path == tmp_path / "keys" / "log.private.pem"
    assert public_path == tmp_path / "keys" / "log.public.pem"
    assert file_mode(private_path) == 0o600
    assert file_mode(public_path) == 0o644
    assert file_mode(tmp_path / "keys") == 0o700
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")
    private_key = load_private_key(private_path)
    assert public_key_bytes(private_key) == public_key_bytes(load_public_key(public_path))


def test_generate_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    os.umask(0)
    private_path, _ = generate_signing_key(tmp_path, "log")
    assert file_mode(private_path) == 0o600


def test_generate_never_overwrites(tmp_path: Path) -> None:
    private_path, public_path = generate_signing_key(tmp_path, "log")
    before = private_path.read_bytes()
    with pytest.raises(KeyFileError, match="not to exist"):
        generate_signing_key(tmp_path, "log")
    assert private_path.read_bytes() == before
    public_path.unlink()
    with pytest.raises(KeyFileError, match="not to exist"):
        generate_signing_key(tmp_path, "log")
    assert private_path.read_bytes() == before


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "with space", "x" * 101])
def test_generate_refuses_names_unusable_as_file_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyFileError, match="usable as a file name"):
        generate_signing_key(tmp_path, name)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_private_key_with_owner_only_mode_is_accepted(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "key.pem", PRIVATE_PEM, mode)
    assert public_key_bytes(load_private_key(path)) == PUBLIC_RAW


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o610, 0o666])
def test_private_key_readable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "key.pem", PRIVATE_PEM, mode)
    with pytest.raises(KeyFileError) as raised:
        load_private_key(path)
    message = str(raised.value)
    assert str(path) in message
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message
    assert "PRIVATE KEY" not in message


def test_fix_quotes_a_path_with_spaces(tmp_path: Path) -> None:
    path = write(tmp_path / "my key.pem", PRIVATE_PEM, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600 '"):
        load_private_key(path)


def test_raw_seed_file_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "seed", SEED, 0o600)
    assert public_key_bytes(load_private_key(path)) == PUBLIC_RAW


PRIVATE_REJECTIONS: list[tuple[str, bytes, str]] = [
    ("garbage text", b"hello, world\n", "PKCS#8 PEM private key or a raw 32-byte seed"),
    ("empty file", b"", "got 0 bytes"),
    ("seed with newline", SEED + b"\n", "got 33 bytes"),
    ("seed in hex", SEED.hex().encode(), "got 64 bytes"),
    (
        "garbage PEM",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "does not parse",
    ),
    ("public key PEM", PUBLIC_PEM, "does not parse"),
    (
        "encrypted PEM",
        PRIVATE_KEY.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
        ),
        "encrypted",
    ),
    (
        "EC key",
        ec.derive_private_key(1234, ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        ),
        "expected an Ed25519 private key",
    ),
    ("too large", b"-----BEGIN " + b"A" * KEY_FILE_SIZE_MAX_BYTES, "at most 16384 bytes"),
]


@pytest.mark.parametrize(
    ("content", "message"),
    [(content, message) for _, content, message in PRIVATE_REJECTIONS],
    ids=[name for name, _, _ in PRIVATE_REJECTIONS],
)
def test_private_key_garbage_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path / "key", content, 0o600)
    with pytest.raises(KeyFileError, match=message):
        load_private_key(path)


def test_private_key_errors_never_quote_the_content(tmp_path: Path) -> None:
    damaged = PRIVATE_PEM.replace(b"MC4C", b"MC4D")
    path = write(tmp_path / "key.pem", damaged, 0o600)
    with pytest.raises(KeyFileError) as raised:
        load_private_key(path)
    body = damaged.splitlines()[1].decode()
    assert body not in str(raised.value)


def test_missing_private_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="readable key file"):
        load_private_key(tmp_path / "absent")


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="regular file"):
        load_private_key(directory)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="regular file"):
        load_private_key(fifo)


def test_public_key_from_bytes_and_files(tmp_path: Path) -> None:
    assert public_key_bytes(load_public_key(PUBLIC_RAW)) == PUBLIC_RAW
    assert public_key_bytes(load_public_key(PUBLIC_PEM)) == PUBLIC_RAW
    pem_path = write(tmp_path / "key.pub", PUBLIC_PEM, 0o644)
    raw_path = write(tmp_path / "key.raw", PUBLIC_RAW, 0o644)
    assert public_key_bytes(load_public_key(pem_path)) == PUBLIC_RAW
    assert public_key_bytes(load_public_key(str(raw_path))) == PUBLIC_RAW


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "got 0 bytes"),
        (PUBLIC_RAW[:31], "got 31 bytes"),
        (PUBLIC_RAW.hex().encode(), "got 64 bytes"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "does not parse"),
        (
            ec.derive_private_key(1234, ec.SECP256R1())
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
            "expected an Ed25519 public key",
        ),
    ],
)
def test_public_key_garbage_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        load_public_key(content)


def test_public_key_bytes_of_private_and_public_keys() -> None:
    assert public_key_bytes(PRIVATE_KEY) == PUBLIC_RAW
    assert public_key_bytes(PRIVATE_KEY.public_key()) == PUBLIC_RAW
