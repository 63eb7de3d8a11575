"""``settlement dev-pki``: what it writes, with which modes, and that it chains."""

from __future__ import annotations

import datetime
import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ledger.keys import load_private_key, load_public_key, public_key_bytes
from settlement.auth import Role
from settlement.cli import main
from settlement.pki import (
    DEMO_PARTICIPANTS,
    CertificateAuthority,
    DevPki,
    PkiError,
    aba_with_check_digit,
    create_dev_pki,
    lei_with_check_digits,
    load_dev_pki,
)

EXPECTED_PARTICIPANTS = {
    "operator": (Role.OPERATOR, "US"),
    "auditor": (Role.AUDITOR, "US"),
    "bank-us": (Role.BANK, "US"),
    "bank-pk": (Role.BANK, "PK"),
    "fx-provider": (Role.FX_PROVIDER, "US"),
    "lender": (Role.LENDER, "US"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki") / "dev")


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(certificate: x509.Certificate) -> str:
    (attribute,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def policy(pki: DevPki) -> PolicyBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return PolicyBuilder().store(Store([certificate(pki.ca_certificate_path)])).time(now)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_private_key_is_0600_and_the_directory_0700(pki: DevPki) -> None:
    private = [pki.ca_key_path, pki.server_key_path, pki.log_private_key_path]
    for participant in pki.participants.values():
        private += [participant.private_key_path, participant.signing_private_key_path]
    assert {path.name: mode(path) for path in private} == {path.name: 0o600 for path in private}
    assert mode(pki.directory) == 0o700
    # And nothing else that holds a private key lies around readable.
    for path in pki.directory.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            assert mode(path) == 0o600, path


def test_ca_and_readme_say_development_only(pki: DevPki) -> None:
    ca = certificate(pki.ca_certificate_path)
    assert "DEVELOPMENT ONLY" in common_name(ca)
    assert "DEVELOPMENT ONLY" in ca.subject.rfc4514_string()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    readme = (pki.directory / "README.txt").read_text()
    assert readme.startswith("DEVELOPMENT ONLY")


def test_server_certificate_chains_to_the_ca_for_each_name(pki: DevPki) -> None:
    server = certificate(pki.server_certificate_path)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    subjects: list[x509.DNSName | x509.IPAddress] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    for subject in subjects:
        chain = policy(pki).build_server_verifier(subject).verify(server, [])
        assert chain[-1] == certificate(pki.ca_certificate_path)
    with pytest.raises(VerificationError):
        policy(pki).build_server_verifier(x509.DNSName("example.com")).verify(server, [])
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = load_pem_private_key(pki.server_key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == server.public_key()


def test_client_certificates_name_the_participant_and_chain_to_the_ca(pki: DevPki) -> None:
    verifier = policy(pki).build_client_verifier()
    for participant in pki.participants.values():
        client = certificate(participant.certificate_path)
        assert common_name(client) == participant.participant_id
        assert participant.certificate_common_name == participant.participant_id
        verified = verifier.verify(client, [])
        assert verified.chain[-1] == certificate(pki.ca_certificate_path)
        usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        names = client.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"urn:settlement-dev:participant:{participant.participant_id}"
        ]
        key = load_pem_private_key(participant.private_key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key() == client.public_key()


def test_a_certificate_of_another_ca_does_not_chain(pki: DevPki) -> None:
    impostor, _ = CertificateAuthority.create("Impostor").issue_client_certificate("bank-us")
    with pytest.raises(VerificationError):
        policy(pki).build_client_verifier().verify(impostor, [])


def test_signing_keys_are_ed25519_pairs(pki: DevPki) -> None:
    public_keys = set()
    for participant in pki.participants.values():
        private = load_private_key(participant.signing_private_key_path)
        public = load_public_key(participant.signing_public_key_path)
        assert public_key_bytes(private) == public_key_bytes(public)
        public_keys.add(public_key_bytes(public))
    log_key = public_key_bytes(load_private_key(pki.log_private_key_path))
    assert log_key == public_key_bytes(load_public_key(pki.log_public_key_path))
    assert len(public_keys | {log_key}) == len(pki.participants) + 1


def test_participants_json_lists_everyone_with_relative_paths(pki: DevPki) -> None:
    document = json.loads((pki.directory / "participants.json").read_text())
    records = {record["participant_id"]: record for record in document["participants"]}
    assert {key: (Role(r["role"]), r["country"]) for key, r in records.items()} == (
        EXPECTED_PARTICIPANTS
    )
    for record in records.values():
        for key in ("certificate", "private_key", "signing_private_key", "signing_public_key"):
            assert not Path(record[key]).is_absolute()
            assert (pki.directory / record[key]).is_file()
        assert record["legal_name"]
    assert records["bank-us"]["bic"][4:6] == "US"
    assert records["bank-pk"]["bic"] == "HABBPKKAXXX"
    assert records["bank-pk"]["iban_bank_code"] == "HABB"
    assert load_dev_pki(pki.directory) == pki


def test_identifiers_are_syntactically_valid() -> None:
    for participant in DEMO_PARTICIPANTS:
        if participant.role in (Role.BANK, Role.FX_PROVIDER):
            assert len(participant.bic) in (8, 11)
            assert participant.bic.isalnum()
            assert participant.bic.isupper()
            assert participant.bic[4:6] == participant.country
        if participant.role in (Role.BANK, Role.FX_PROVIDER, Role.LENDER):
            # ISO 7064 MOD 97-10: the whole LEI, letters as 10..35, is 1 mod 97.
            assert int("".join(str(int(c, 36)) for c in participant.lei)) % 97 == 1
        if participant.aba_routing_number:
            digits = [int(d) for d in participant.aba_routing_number]
            assert sum(d * w for d, w in zip(digits, [3, 7, 1] * 3, strict=True)) % 10 == 0
    # Known answers: GLEIF's published example and a well-known routing number.
    assert lei_with_check_digits("5493001KJTIIGC8Y1R") == "5493001KJTIIGC8Y1R12"
    assert aba_with_check_digit("02100002") == "021000021"


def test_refuses_a_directory_with_files_unless_forced(tmp_path: Path) -> None:
    directory = tmp_path / "dev"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    with pytest.raises(PkiError, match="--force"):
        create_dev_pki(directory)
    first = create_dev_pki(directory, force=True)
    first_ca = first.ca_certificate_path.read_bytes()
    second = create_dev_pki(directory, force=True)
    assert second.ca_certificate_path.read_bytes() != first_ca
    assert (directory / "notes.txt").read_text() == "mine"
    assert mode(second.participant("bank-pk").private_key_path) == 0o600


def test_cli_writes_and_then_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "cli"
    assert main(["dev-pki", "--out", str(directory)]) == 0
    assert "DEVELOPMENT ONLY" in capsys.readouterr().out
    assert set(load_dev_pki(directory).participants) == set(EXPECTED_PARTICIPANTS)
    assert main(["dev-pki", "--out", str(directory)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["dev-pki", "--out", str(directory), "--force"]) == 0
