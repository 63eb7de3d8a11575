"""RFC 8032 section 7.1 test vectors for Ed25519: `cryptography` must reproduce them.

Values are those of RFC 8032 section 7.1 TEST 1, TEST 2, TEST 3 and
TEST SHA(abc), as transcribed in libtom/libtomcrypt tests/ed25519_test.c
(s_rfc_8032_7_1_test) and in pyca/cryptography's Ed25519 vector loader test;
the TEST SHA(abc) message is checked here against SHA-512("abc") as well.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Vector(NamedTuple):
    name: str
    secret_key: str
    public_key: str
    message: str
    signature: str


VECTORS = [
    Vector(
        name="TEST 1",
        secret_key="9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        public_key="d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        message="",
        signature=(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
    ),
    Vector(
        name="TEST 2",
        secret_key="4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        public_key="3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        message="72",
        signature=(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    ),
    Vector(
        name="TEST 3",
        secret_key="c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        public_key="fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        message="af82",
        signature=(
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
            "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        ),
    ),
    Vector(
        name="TEST SHA(abc)",
        secret_key="833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        public_key="ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        message=(
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        ),
        signature=(
            "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
            "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"
        ),
    ),
]


@pytest.mark.parametrize("vector", VECTORS, ids=[vector.name for vector in VECTORS])
def test_public_key_from_secret_key(vector: Vector) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector.secret_key))
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public_key.hex() == vector.public_key


@pytest.mark.parametrize("vector", VECTORS, ids=[vector.name for vector in VECTORS])
def test_signature_is_reproduced_exactly(vector: Vector) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector.secret_key))
    signature = private_key.sign(bytes.fromhex(vector.message))
    assert signature.hex() == vector.signature


@pytest.mark.parametrize("vector", VECTORS, ids=[vector.name for vector in VECTORS])
def test_signature_verifies_and_a_flipped_bit_does_not(vector: Vector) -> None:
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vector.public_key))
    message = bytes.fromhex(vector.message)
    signature = bytes.fromhex(vector.signature)
    public_key.verify(signature, message)
    flipped = bytes([signature[0] ^ 0x01]) + signature[1:]
    with pytest.raises(InvalidSignature):
        public_key.verify(flipped, message)


def test_sha_abc_message_is_sha512_of_abc() -> None:
    assert VECTORS[3].message == hashlib.sha512(b"abc").hexdigest()
