"""payload/ed25519.py against an independent implementation: `cryptography` (OpenSSL) signs, ours verifies."""

import os
import random
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payload import ed25519
from testing.helpers import ROOT

PYTHON39 = "/root/.pyenv/versions/3.9.18/bin/python3.9"
ORDER = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1, TEST 2 (one-byte message).
RFC_SECRET = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
RFC_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
RFC_MESSAGE = bytes.fromhex("72")
RFC_SIGNATURE = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def _keypair(seed=None):
    key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, public


def test_rfc8032_vector_holds_and_matches_cryptography():
    key, public = _keypair(RFC_SECRET)
    assert public == RFC_PUBLIC and key.sign(RFC_MESSAGE) == RFC_SIGNATURE
    assert ed25519.verify(RFC_PUBLIC, RFC_MESSAGE, RFC_SIGNATURE)


def test_signatures_by_cryptography_verify_for_random_keys_and_messages():
    rng = random.Random(8032)
    for _ in range(40):
        key, public = _keypair()
        message = os.urandom(rng.choice([0, 1, 31, 64, 1000, 70000]))
        assert ed25519.verify(public, message, key.sign(message))


def test_any_single_bit_flip_in_signature_message_or_key_is_rejected():
    key, public = _keypair()
    message = b"bundle index bytes"
    signature = key.sign(message)
    rng = random.Random(1)
    for bit in rng.sample(range(512), 24):
        bad = bytearray(signature)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not ed25519.verify(public, message, bytes(bad)), bit
    for bit in rng.sample(range(256), 12):
        bad = bytearray(public)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not ed25519.verify(bytes(bad), message, signature), bit
    assert not ed25519.verify(public, message + b"x", signature)
    assert not ed25519.verify(public, message[:-1], signature)


def test_signature_of_another_key_is_rejected():
    key, _ = _keypair()
    _, other = _keypair()
    assert not ed25519.verify(other, b"m", key.sign(b"m"))


def test_non_canonical_s_is_rejected_as_openssl_does():
    key, public = _keypair()
    signature = key.sign(b"m")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + ORDER).to_bytes(32, "little")
    assert not ed25519.verify(public, b"m", malleated)
    with pytest.raises(InvalidSignature):
        key.public_key().verify(malleated, b"m")  # the reference refuses it too


@pytest.mark.parametrize(
    "encoding",
    [
        (2**255 - 19 + 1).to_bytes(32, "little"),  # y >= p
        (2).to_bytes(32, "little"),  # y = 2: x^2 = 3 / (4d + 1) has no square root mod p
        (1 | 1 << 255).to_bytes(32, "little"),  # x = 0 with the sign bit set
    ],
)
def test_encodings_that_are_no_curve_point_are_rejected(encoding):
    assert ed25519._decode_point(encoding) is None
    assert ed25519._decode_point((3).to_bytes(32, "little")) is not None  # the decoder does accept points
    key, public = _keypair()
    signature = key.sign(b"m")
    assert not ed25519.verify(encoding, b"m", signature)
    assert not ed25519.verify(public, b"m", encoding + signature[32:])


@pytest.mark.parametrize(
    "public, signature, words",
    [
        (b"\0" * 31, b"\0" * 64, "public key must be 32 bytes, not 31"),
        (b"\0" * 33, b"\0" * 64, "public key must be 32 bytes, not 33"),
        (b"\0" * 32, b"\0" * 63, "signature must be 64 bytes, not 63"),
        (b"\0" * 32, b"", "signature must be 64 bytes, not 0"),
        ("a" * 32, b"\0" * 64, "public key must be bytes, not str"),
    ],
)
def test_malformed_lengths_and_types_raise_a_clean_error(public, signature, words):
    with pytest.raises(ed25519.Ed25519Error) as caught:
        ed25519.verify(public, b"m", signature)
    assert words in str(caught.value)


@pytest.mark.skipif(not os.path.exists(PYTHON39), reason="needs the Python 3.9 of the devices")
def test_runs_on_python_3_9():
    code = (
        "from payload import ed25519; import sys; "
        "ok = ed25519.verify(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])); "
        "bad = ed25519.verify(bytes.fromhex(sys.argv[1]), b'x', bytes.fromhex(sys.argv[3])); "
        "print(ok, bad)"
    )
    out = subprocess.run(
        [PYTHON39, "-c", code, RFC_PUBLIC.hex(), RFC_MESSAGE.hex(), RFC_SIGNATURE.hex()],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
