"""Ed25519 key files: the log's signing key and participants' public keys.

Private keys are PKCS#8 PEM (RFC 8410 section 7, RFC 5958), or a raw 32-byte
seed (RFC 8032 section 5.1.5); public keys are SubjectPublicKeyInfo PEM
(RFC 8410 section 4) or the raw 32 bytes. A private key file is created with
mode 0600 from the start, never widened, and refused on load when group or
other may read it: like OpenSSH, we would rather stop than sign with a key
that others may have copied.

Nothing here logs, prints or puts key material in an error message.
Standard library and ``cryptography`` only: the offline verifier runs this.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from ledger.errors import LedgerError

ED25519_SEED_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5: the private key is a 32-octet seed."""

ED25519_PUBLIC_KEY_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5."""

PRIVATE_KEY_FILE_MODE = 0o600
"""Owner read and write, nobody else anything."""

PUBLIC_KEY_FILE_MODE = 0o644
"""A public key is public."""

KEY_DIRECTORY_MODE = 0o700
"""Mode of a key directory that :func:`generate_signing_key` creates."""

GROUP_OTHER_PERMISSION_BITS = 0o077
"""Any of these set on a private key file and we refuse to load it."""

KEY_FILE_SIZE_MAX_BYTES = 16 * 1024
"""Largest key file we read. An Ed25519 PEM is about 120 bytes; the bound stops
a wrong path (a log, a bundle) from being read whole into memory."""

KEY_FILE_NAME_LENGTH_MAX = 100
"""Longest key name usable as a file name stem."""

PRIVATE_KEY_FILE_SUFFIX = ".private.pem"
PUBLIC_KEY_FILE_SUFFIX = ".public.pem"

PEM_BEGIN = b"-----BEGIN "

_FILE_NAME_STEM = re.compile("[A-Za-z0-9][A-Za-z0-9._-]*")


class KeyFileError(LedgerError):
    """A key file is missing, unreadable, too widely readable, or not an Ed25519 key."""

    code = "key_file_invalid"
    kind = "invalid"


def _chmod_fix(path: Path) -> str:
    return f"chmod 600 {shlex.quote(str(path))}"


def _check_file_name_stem(name: str) -> None:
    if (
        not isinstance(name, str)
        or len(name) > KEY_FILE_NAME_LENGTH_MAX
        or not _FILE_NAME_STEM.fullmatch(name)
    ):
        raise KeyFileError(
            "expected a key name usable as a file name (letters, digits, '.', '_', '-', "
            f"not starting with '.', at most {KEY_FILE_NAME_LENGTH_MAX} characters), "
            f"got {str(name)[:KEY_FILE_NAME_LENGTH_MAX]!r}"
        )


def _write_new_file(path: Path, content: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` and write ``content``; never overwrite.

    The mode is given to ``os.open`` so the file never exists with wider
    permissions, not even between creation and a chmod (the umask can only
    narrow it). O_EXCL refuses an existing file: overwriting a signing key
    would lose it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"expected {path} not to exist, got an existing file") from None
    except OSError as error:
        raise KeyFileError(f"expected to create {path}, got {error.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        path.unlink(missing_ok=True)
        raise KeyFileError(f"expected to write {path}, got {error.strerror}") from None


def _fsync_directory(directory: Path) -> None:
    """Make the new directory entries durable (a lost key file is a lost key)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # Some file systems refuse fsync on directories; the files are synced.
    finally:
        os.close(descriptor)


def generate_signing_key(directory: Path, name: str) -> tuple[Path, Path]:
    """Generate an Ed25519 key pair as ``<name>.private.pem`` and ``<name>.public.pem``.

    The private key is PKCS#8 PEM, unencrypted (RFC 8410 section 7), created
    with mode 0600; the public key is SubjectPublicKeyInfo PEM (RFC 8410
    section 4), mode 0644. ``directory`` is created with mode 0700 if missing.
    Existing files are never overwritten. Returns (private path, public path).
    """
    _check_file_name_stem(name)
    directory = Path(directory)
    try:
        directory.mkdir(mode=KEY_DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as error:
        raise KeyFileError(
            f"expected a key directory at {directory}, got {error.strerror}"
        ) from None
    private_path = directory / f"{name}{PRIVATE_KEY_FILE_SUFFIX}"
    public_path = directory / f"{name}{PUBLIC_KEY_FILE_SUFFIX}"
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise KeyFileError(f"expected {path} not to exist, got an existing file")

    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = private_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    _write_new_file(private_path, private_pem, PRIVATE_KEY_FILE_MODE)
    try:
        _write_new_file(public_path, public_pem, PUBLIC_KEY_FILE_MODE)
    except KeyFileError:
        # Never leave half a pair: a private key without its public key is a
        # key nobody will be able to trust.
        private_path.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return private_path, public_path


def _read_key_file(path: Path, *, private: bool) -> bytes:
    """Read a regular key file of bounded size; for a private key, refuse it
    when group or other have any permission.

    The checks use ``fstat`` on the opened file, so they are about the file
    that is read, not one swapped in between a check and the read.
    """
    # O_NONBLOCK: opening a FIFO planted at the path must not hang us; it has
    # no effect on the regular file we go on to read.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise KeyFileError(
            f"expected a readable key file at {path}, got {error.strerror}"
        ) from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise KeyFileError(f"expected a regular file at {path}, got another kind of file")
        mode = stat.S_IMODE(status.st_mode)
        if private and mode & GROUP_OTHER_PERMISSION_BITS:
            raise KeyFileError(
                f"expected private key file {path} to deny group and other access "
                f"(mode 0600), got mode {mode:04o}; fix: {_chmod_fix(path)}"
            )
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as file:
        content = file.read(KEY_FILE_SIZE_MAX_BYTES + 1)
    if len(content) > KEY_FILE_SIZE_MAX_BYTES:
        raise KeyFileError(
            f"expected a key file of at most {KEY_FILE_SIZE_MAX_BYTES} bytes at {path}, "
            "got a larger file"
        )
    return content


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PKCS#8 PEM file or a raw 32-byte seed file.

    Refuses a file whose mode grants group or other any access, naming the
    path, the mode and the fix (``chmod 600 PATH``); an encrypted PEM; a key of
    another algorithm; anything else. Error messages never include the
    file's content.
    """
    path = Path(path)
    content = _read_key_file(path, private=True)
    if content.startswith(PEM_BEGIN):
        try:
            key = load_pem_private_key(content, password=None)
        except TypeError:
            raise KeyFileError(
                f"expected an unencrypted PKCS#8 PEM private key at {path}, got an encrypted one"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"expected a PKCS#8 PEM private key at {path}, got a PEM that does not parse"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(
                f"expected an Ed25519 private key at {path}, got {type(key).__name__}"
            )
        return key
    if len(content) == ED25519_SEED_SIZE_BYTES:
        return Ed25519PrivateKey.from_private_bytes(content)
    raise KeyFileError(
        f"expected a PKCS#8 PEM private key or a raw {ED25519_SEED_SIZE_BYTES}-byte seed "
        f"at {path}, got {len(content)} bytes of neither"
    )


def load_public_key(path_or_bytes: Path | str | bytes) -> Ed25519PublicKey:
    """Load an Ed25519 public key: SubjectPublicKeyInfo PEM or the raw 32 bytes.

    ``bytes`` are the key itself; a ``Path`` or ``str`` is a file to read.
    """
    if isinstance(path_or_bytes, bytes):
        content, source = path_or_bytes, "the given bytes"
    else:
        path = Path(path_or_bytes)
        content, source = _read_key_file(path, private=False), str(path)
    if content.startswith(PEM_BEGIN):
        try:
            key = load_pem_public_key(content)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"expected a PEM public key in {source}, got a PEM that does not parse"
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(
                f"expected an Ed25519 public key in {source}, got {type(key).__name__}"
            )
        return key
    if len(content) == ED25519_PUBLIC_KEY_SIZE_BYTES:
        try:
            return Ed25519PublicKey.from_public_bytes(content)
        except ValueError:
            raise KeyFileError(
                f"expected a valid Ed25519 public key in {source}, got 32 bytes that do not decode"
            ) from None
    raise KeyFileError(
        f"expected a PEM public key or raw {ED25519_PUBLIC_KEY_SIZE_BYTES} bytes in {source}, "
        f"got {len(content)} bytes of neither"
    )


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key (RFC 8032 section 5.1.5) of a public or private key."""
    public_key = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
