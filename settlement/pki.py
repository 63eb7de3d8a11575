"""A throwaway development PKI: CA, server and client certificates, signing keys.

DEVELOPMENT ONLY. ``settlement dev-pki --out DIR`` writes everything a local
hub, the reference clients and the demo need to speak mutual TLS
(RFC 8446) and to sign instructions:

```
DIR/README.txt                      what this is, and that it must never be trusted
DIR/ca.pem, ca.key                  the development CA (its key stays here to issue more)
DIR/server.pem, server.key          the hub's certificate: localhost, 127.0.0.1, ::1
DIR/log.private.pem, .public.pem    the log's Ed25519 checkpoint-signing key pair
DIR/participants/<id>/client.pem    a client certificate whose subject CN is <id>
DIR/participants/<id>/client.key    its private key
DIR/participants/<id>/signing.private.pem, signing.public.pem
                                    the participant's Ed25519 instruction-signing keys
DIR/participants.json               every participant: id, role, country, BIC, LEI, ...
                                    and the paths above, relative to DIR
```

The ``server.*`` and ``ca.pem`` names are the ones ``settlement serve
--tls-dir DIR`` expects. Every private key file is created with mode 0600
(never wider, not even for an instant) and DIR itself with mode 0700.

TLS keys are ECDSA P-256 (FIPS 186-4) with SHA-256 signatures: what every
gRPC stack accepts; certificates follow the RFC 5280 profile (basic
constraints, key usage, extended key usage, subject and authority key
identifiers, subject alternative names).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.errors import LedgerError
from ledger.keys import (
    PRIVATE_KEY_FILE_MODE,
    PRIVATE_KEY_FILE_SUFFIX,
    PUBLIC_KEY_FILE_SUFFIX,
    generate_signing_key,
)
from settlement.auth import Role

DEVELOPMENT_ONLY = "DEVELOPMENT ONLY"
"""In the subject of every certificate we issue, so that none is ever mistaken
for a real one in a log, a browser or a trust store."""

ORGANIZATION_NAME = f"Settlement Hub {DEVELOPMENT_ONLY} - do not trust"
CA_COMMON_NAME = f"Settlement Hub {DEVELOPMENT_ONLY} CA"
SERVER_COMMON_NAME = "localhost"
SERVER_DNS_NAMES = ("localhost",)
SERVER_IP_ADDRESSES = ("127.0.0.1", "::1")
CLIENT_URI_PREFIX = "urn:settlement-dev:participant:"

CA_VALIDITY_DAYS = 3650
LEAF_VALIDITY_DAYS = 825
"""The CA/Browser Forum's old maximum for leaf certificates; long enough that
a development directory does not expire under a running demo."""

CLOCK_SKEW_ALLOWANCE = datetime.timedelta(hours=1)
"""Certificates start an hour in the past, so a peer whose clock runs a little
behind still accepts them."""

DIRECTORY_MODE = 0o700
PUBLIC_FILE_MODE = 0o644

CA_CERTIFICATE_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERTIFICATE_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
CLIENT_CERTIFICATE_FILE = "client.pem"
CLIENT_KEY_FILE = "client.key"
SIGNING_KEY_NAME = "signing"
LOG_KEY_NAME = "log"
PARTICIPANTS_DIRECTORY = "participants"
PARTICIPANTS_FILE = "participants.json"
README_FILE = "README.txt"

PARTICIPANTS_FILE_FORMAT = "settlement-dev-pki/v1"


class PkiError(LedgerError):
    """The development PKI cannot be written or read as asked."""

    code = "dev_pki_invalid"
    kind = "invalid"


@dataclass(frozen=True, slots=True)
class DemoParticipant:
    """A participant of the demo: what the operator registers for it.

    Identifiers are syntactically valid (ISO 9362 BIC, ISO 17442 LEI with its
    ISO 7064 MOD 97-10 check digits, ABA routing number with its 3-7-1
    checksum). The BICs are well-known ones, used as examples; the LEIs are
    invented. Nothing here is a real institution's account.
    """

    participant_id: str
    role: Role
    country: str
    legal_name: str
    bic: str = ""
    lei: str = ""
    aba_routing_number: str = ""
    iban_bank_code: str = ""


def lei_with_check_digits(prefix: str) -> str:
    """ISO 17442: the 18-character prefix followed by its two MOD 97-10 check digits."""
    if len(prefix) != 18 or not prefix.isascii() or not prefix.isalnum() or not prefix.isupper():
        raise PkiError(f"expected 18 upper-case letters or digits, got {prefix!r}")
    digits = "".join(str(int(character, 36)) for character in prefix + "00")
    return f"{prefix}{98 - int(digits) % 97:02d}"


def aba_with_check_digit(prefix: str) -> str:
    """An ABA routing number: 8 digits and the check digit of weights 3, 7, 1."""
    if len(prefix) != 8 or not prefix.isdigit():
        raise PkiError(f"expected 8 digits, got {prefix!r}")
    weights = (3, 7, 1, 3, 7, 1, 3, 7)
    total = sum(int(digit) * weight for digit, weight in zip(prefix, weights, strict=True))
    return f"{prefix}{(10 - total % 10) % 10}"


DEMO_PARTICIPANTS: tuple[DemoParticipant, ...] = (
    DemoParticipant("operator", Role.OPERATOR, "US", "Settlement Hub Operations (demo)"),
    DemoParticipant("auditor", Role.AUDITOR, "US", "Ledger Audit Partners (demo)"),
    DemoParticipant(
        "bank-us",
        Role.BANK,
        "US",
        "First Example Bank of New York (demo)",
        bic="CHASUS33XXX",
        lei=lei_with_check_digits("5493000DEMOBANKUS0"),
        aba_routing_number=aba_with_check_digit("02100002"),
    ),
    DemoParticipant(
        "bank-pk",
        Role.BANK,
        "PK",
        "Example Bank of Karachi Limited (demo)",
        bic="HABBPKKAXXX",
        lei=lei_with_check_digits("5493000DEMOBANKPK0"),
        iban_bank_code="HABB",
    ),
    DemoParticipant(
        "fx-provider",
        Role.FX_PROVIDER,
        "US",
        "Example FX Liquidity LLC (demo)",
        bic="CITIUS33XXX",
        lei=lei_with_check_digits("5493000DEMOFXPROV0"),
    ),
    DemoParticipant(
        "lender",
        Role.LENDER,
        "US",
        "Example Export Credit Agency (demo)",
        lei=lei_with_check_digits("5493000DEMOLENDER0"),
    ),
)


@dataclass(frozen=True, slots=True)
class PkiParticipant:
    """A participant of a development PKI directory, with absolute paths."""

    participant_id: str
    role: Role
    country: str
    legal_name: str
    bic: str
    lei: str
    aba_routing_number: str
    iban_bank_code: str
    certificate_common_name: str
    certificate_path: Path
    private_key_path: Path
    signing_private_key_path: Path
    signing_public_key_path: Path


@dataclass(frozen=True, slots=True)
class DevPki:
    """A development PKI directory as written by :func:`create_dev_pki`."""

    directory: Path
    participants: dict[str, PkiParticipant]

    @property
    def ca_certificate_path(self) -> Path:
        return self.directory / CA_CERTIFICATE_FILE

    @property
    def ca_key_path(self) -> Path:
        return self.directory / CA_KEY_FILE

    @property
    def server_certificate_path(self) -> Path:
        return self.directory / SERVER_CERTIFICATE_FILE

    @property
    def server_key_path(self) -> Path:
        return self.directory / SERVER_KEY_FILE

    @property
    def log_private_key_path(self) -> Path:
        return self.directory / f"{LOG_KEY_NAME}{PRIVATE_KEY_FILE_SUFFIX}"

    @property
    def log_public_key_path(self) -> Path:
        return self.directory / f"{LOG_KEY_NAME}{PUBLIC_KEY_FILE_SUFFIX}"

    def participant(self, participant_id: str) -> PkiParticipant:
        try:
            return self.participants[participant_id]
        except KeyError:
            known = ", ".join(sorted(self.participants))
            raise PkiError(
                f"expected one of the participants of {self.directory} ({known}), "
                f"got {participant_id!r}"
            ) from None

    def channel_credentials(self, participant_id: str | None) -> grpc.ChannelCredentials:
        """gRPC credentials trusting the CA and presenting ``participant_id``'s certificate.

        ``None``: trust the CA but present no client certificate (the hub
        refuses the handshake; for tests).
        """
        ca_certificate = _read(self.ca_certificate_path)
        if participant_id is None:
            return grpc.ssl_channel_credentials(root_certificates=ca_certificate)
        participant = self.participant(participant_id)
        return grpc.ssl_channel_credentials(
            root_certificates=ca_certificate,
            private_key=_read(participant.private_key_path),
            certificate_chain=_read(participant.certificate_path),
        )

    def certificate_authority(self) -> CertificateAuthority:
        """The CA with its private key, to issue more certificates (tests, new banks)."""
        return CertificateAuthority.load(self.ca_certificate_path, self.ca_key_path)


class CertificateAuthority:
    """An X.509 CA that issues server and client certificates (RFC 5280)."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey):
        self.certificate = certificate
        self.private_key = private_key

    @classmethod
    def create(cls, common_name: str = CA_COMMON_NAME) -> CertificateAuthority:
        """A new self-signed CA; it signs end-entity certificates only (path length 0)."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(common_name)
        now = _now()
        public_key = private_key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(private_key, hashes.SHA256())
        )
        return cls(certificate, private_key)

    @classmethod
    def load(cls, certificate_path: Path, private_key_path: Path) -> CertificateAuthority:
        certificate = x509.load_pem_x509_certificate(_read(certificate_path))
        private_key = load_pem_private_key(_read(private_key_path), password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise PkiError(
                f"expected an ECDSA CA key at {private_key_path}, got {type(private_key).__name__}"
            )
        return cls(certificate, private_key)

    def issue_server_certificate(
        self,
        common_name: str = SERVER_COMMON_NAME,
        dns_names: Sequence[str] = SERVER_DNS_NAMES,
        ip_addresses: Sequence[str] = SERVER_IP_ADDRESSES,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A TLS server certificate for the given names (RFC 6125: SANs, not the CN)."""
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        return self._issue(common_name, ExtendedKeyUsageOID.SERVER_AUTH, names)

    def issue_client_certificate(
        self, common_name: str
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A TLS client certificate whose subject CN names the participant.

        The hub identifies the participant by the CN (common.proto); the URI
        subject alternative name repeats it for verifiers that, like the
        CA/Browser Forum profiles, require a SAN in every leaf.
        """
        uri = f"{CLIENT_URI_PREFIX}{common_name}"
        return self._issue(
            common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [x509.UniformResourceIdentifier(uri)]
        )

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        alternative_names: Sequence[x509.GeneralName],
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        private_key = ec.generate_private_key(ec.SECP256R1())
        public_key = private_key.public_key()
        now = _now()
        ca_key_identifier = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(now + datetime.timedelta(days=LEAF_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_identifier),
                critical=False,
            )
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alternative_names), critical=False
        )
        return builder.sign(self.private_key, hashes.SHA256()), private_key


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def private_key_pem(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (RFC 5958): what gRPC's credentials load."""
    return private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def write_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 from the start and write ``content``.

    The mode is given to ``os.open``, so the file never exists with wider
    permissions; O_EXCL refuses to replace an existing file.
    """
    _write_new(path, content, PRIVATE_KEY_FILE_MODE)


def write_public_file(path: Path, content: bytes) -> None:
    _write_new(path, content, PUBLIC_FILE_MODE)


def create_dev_pki(
    directory: Path,
    *,
    force: bool = False,
    participants: Iterable[DemoParticipant] = DEMO_PARTICIPANTS,
) -> DevPki:
    """Write a development PKI into ``directory`` (see the module docstring).

    Refuses a directory that already holds files unless ``force``; with
    ``force``, only the files this function writes are replaced, nothing else
    in the directory is touched.
    """
    directory = Path(directory)
    participants = tuple(participants)
    _check_participants(participants)
    if directory.exists() and not directory.is_dir():
        raise PkiError(f"expected a directory at {directory}, got a file")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise PkiError(
            f"expected an empty or new directory at {directory}, got one with files; "
            "use --force to replace the development PKI files in it"
        )
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if force:
        _remove_previous(directory, participants)

    authority = CertificateAuthority.create()
    write_public_file(directory / CA_CERTIFICATE_FILE, certificate_pem(authority.certificate))
    write_private_file(directory / CA_KEY_FILE, private_key_pem(authority.private_key))
    server_certificate, server_key = authority.issue_server_certificate()
    write_public_file(directory / SERVER_CERTIFICATE_FILE, certificate_pem(server_certificate))
    write_private_file(directory / SERVER_KEY_FILE, private_key_pem(server_key))
    generate_signing_key(directory, LOG_KEY_NAME)

    records: list[dict[str, Any]] = []
    for participant in participants:
        folder = directory / PARTICIPANTS_DIRECTORY / participant.participant_id
        folder.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        certificate, key = authority.issue_client_certificate(participant.participant_id)
        write_public_file(folder / CLIENT_CERTIFICATE_FILE, certificate_pem(certificate))
        write_private_file(folder / CLIENT_KEY_FILE, private_key_pem(key))
        generate_signing_key(folder, SIGNING_KEY_NAME)
        records.append(_participant_record(directory, participant))

    document = {
        "format": PARTICIPANTS_FILE_FORMAT,
        "warning": f"{DEVELOPMENT_ONLY}: throwaway keys and certificates; never trust them",
        "ca_certificate": CA_CERTIFICATE_FILE,
        "server_certificate": SERVER_CERTIFICATE_FILE,
        "server_private_key": SERVER_KEY_FILE,
        "log_private_key": f"{LOG_KEY_NAME}{PRIVATE_KEY_FILE_SUFFIX}",
        "log_public_key": f"{LOG_KEY_NAME}{PUBLIC_KEY_FILE_SUFFIX}",
        "participants": records,
    }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    write_public_file(directory / PARTICIPANTS_FILE, text.encode())
    write_public_file(directory / README_FILE, _readme(participants).encode())
    return load_dev_pki(directory)


def load_dev_pki(directory: Path) -> DevPki:
    """Read ``participants.json`` of a development PKI directory."""
    directory = Path(directory)
    path = directory / PARTICIPANTS_FILE
    try:
        document = json.loads(_read(path))
    except json.JSONDecodeError as error:
        raise PkiError(f"expected JSON in {path}, got a parse error at {error.pos}") from None
    if not isinstance(document, dict) or document.get("format") != PARTICIPANTS_FILE_FORMAT:
        raise PkiError(f"expected {PARTICIPANTS_FILE_FORMAT!r} in {path}, got another format")
    participants: dict[str, PkiParticipant] = {}
    for record in document["participants"]:
        participants[record["participant_id"]] = PkiParticipant(
            participant_id=record["participant_id"],
            role=Role(record["role"]),
            country=record["country"],
            legal_name=record["legal_name"],
            bic=record["bic"],
            lei=record["lei"],
            aba_routing_number=record["aba_routing_number"],
            iban_bank_code=record["iban_bank_code"],
            certificate_common_name=record["certificate_common_name"],
            certificate_path=directory / record["certificate"],
            private_key_path=directory / record["private_key"],
            signing_private_key_path=directory / record["signing_private_key"],
            signing_public_key_path=directory / record["signing_public_key"],
        )
    return DevPki(directory=directory, participants=participants)


def _participant_record(directory: Path, participant: DemoParticipant) -> dict[str, Any]:
    folder = Path(PARTICIPANTS_DIRECTORY) / participant.participant_id
    return {
        "participant_id": participant.participant_id,
        "role": participant.role.value,
        "country": participant.country,
        "legal_name": participant.legal_name,
        "bic": participant.bic,
        "lei": participant.lei,
        "aba_routing_number": participant.aba_routing_number,
        "iban_bank_code": participant.iban_bank_code,
        "certificate_common_name": participant.participant_id,
        "certificate": str(folder / CLIENT_CERTIFICATE_FILE),
        "private_key": str(folder / CLIENT_KEY_FILE),
        "signing_private_key": str(folder / f"{SIGNING_KEY_NAME}{PRIVATE_KEY_FILE_SUFFIX}"),
        "signing_public_key": str(folder / f"{SIGNING_KEY_NAME}{PUBLIC_KEY_FILE_SUFFIX}"),
    }


def _check_participants(participants: Sequence[DemoParticipant]) -> None:
    seen: set[str] = set()
    for participant in participants:
        identifier = participant.participant_id
        # The id becomes a directory name and a certificate CN: keep it to the
        # participant id alphabet of participant.proto, which has no "/" or "..".
        if (
            not identifier
            or len(identifier) > 64
            or identifier.startswith(".")
            or not all(c.isascii() and (c.isalnum() or c in "._-") for c in identifier)
        ):
            raise PkiError(
                f"expected a participant id of [A-Za-z0-9._-]{{1,64}}, got {identifier!r}"
            )
        if identifier in seen:
            raise PkiError(f"expected unique participant ids, got {identifier!r} twice")
        seen.add(identifier)


def _remove_previous(directory: Path, participants: Sequence[DemoParticipant]) -> None:
    names = [
        CA_CERTIFICATE_FILE,
        CA_KEY_FILE,
        SERVER_CERTIFICATE_FILE,
        SERVER_KEY_FILE,
        f"{LOG_KEY_NAME}{PRIVATE_KEY_FILE_SUFFIX}",
        f"{LOG_KEY_NAME}{PUBLIC_KEY_FILE_SUFFIX}",
        PARTICIPANTS_FILE,
        README_FILE,
    ]
    paths = [directory / name for name in names]
    for participant in participants:
        folder = directory / PARTICIPANTS_DIRECTORY / participant.participant_id
        paths += [
            folder / CLIENT_CERTIFICATE_FILE,
            folder / CLIENT_KEY_FILE,
            folder / f"{SIGNING_KEY_NAME}{PRIVATE_KEY_FILE_SUFFIX}",
            folder / f"{SIGNING_KEY_NAME}{PUBLIC_KEY_FILE_SUFFIX}",
        ]
    for path in paths:
        path.unlink(missing_ok=True)


def _readme(participants: Sequence[DemoParticipant]) -> str:
    lines = [
        f"{DEVELOPMENT_ONLY} - THROWAWAY CERTIFICATES AND KEYS - NEVER TRUST THEM",
        "",
        "Written by `settlement dev-pki`. The CA below, its private key (ca.key) and every",
        "key in this directory exist only for local development, tests and demos. Anyone",
        "with this directory can impersonate the hub and every participant. Do not add",
        "ca.pem to any trust store; do not use these files with real money or real data.",
        "",
        "Files:",
        "  ca.pem, ca.key                   development CA (certificate, private key)",
        "  server.pem, server.key           hub TLS certificate: localhost, 127.0.0.1, ::1",
        "  log.private.pem, log.public.pem  the log's Ed25519 checkpoint-signing key pair",
        "  participants/<id>/client.pem     client certificate, subject CN = <id>",
        "  participants/<id>/client.key     its private key",
        "  participants/<id>/signing.private.pem, signing.public.pem",
        "                                   Ed25519 instruction-signing key pair",
        "  participants.json                participants, roles, identifiers and paths",
        "",
        "Participants:",
    ]
    lines += [
        f"  {participant.participant_id:<12} {participant.role.value:<12} {participant.country}"
        f"  {participant.bic or '-':<12} {participant.legal_name}"
        for participant in participants
    ]
    lines += [
        "",
        "Run a hub with it (mutual TLS on 127.0.0.1:50051):",
        "  settlement serve --dev-pki DIR --database settlement.db",
        "",
        "All private key files are mode 0600 and this directory 0700.",
        "",
    ]
    return "\n".join(lines)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION_NAME),
        ]
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


PKI_FILE_SIZE_MAX_BYTES = 1024 * 1024
"""Largest PKI file read; a certificate is ~1 KiB, participants.json a few."""


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            content = file.read(PKI_FILE_SIZE_MAX_BYTES + 1)
    except OSError as error:
        raise PkiError(f"expected a readable file at {path}, got {error.strerror}") from None
    if len(content) > PKI_FILE_SIZE_MAX_BYTES:
        raise PkiError(f"expected at most {PKI_FILE_SIZE_MAX_BYTES} bytes in {path}, got more")
    return content


def _write_new(path: Path, content: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, mode)
    except FileExistsError:
        raise PkiError(f"expected {path} not to exist, got an existing file") from None
    except OSError as error:
        raise PkiError(f"expected to create {path}, got {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
