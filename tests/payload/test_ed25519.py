"""payload/ed25519.py against an independent implementation: `cryptography` (OpenSSL) signs, ours verifies."""

import os
import random
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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


# RFC 8032 section 7.1: TEST 1 (empty message), TEST 3 (two bytes), TEST SHA(abc): (secret, public, message, signature)
RFC_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (RFC_SECRET.hex(), RFC_PUBLIC.hex(), RFC_MESSAGE.hex(), RFC_SIGNATURE.hex()),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]

# The canonical encodings of the eight points of small order (order 1, 2, 4, 8), as libsodium's blocklist has them.
IDENTITY = bytes.fromhex("01" + "00" * 31)
SMALL_ORDER = [
    IDENTITY,
    bytes.fromhex("ec" + "ff" * 30 + "7f"),  # y = p - 1: order 2
    bytes.fromhex("00" * 32),  # y = 0: order 4
    bytes.fromhex("00" * 31 + "80"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
]


def _keypair(seed=None):
    key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, public


def test_rfc8032_vector_holds_and_matches_cryptography():
    key, public = _keypair(RFC_SECRET)
    assert public == RFC_PUBLIC and key.sign(RFC_MESSAGE) == RFC_SIGNATURE
    assert ed25519.verify(RFC_PUBLIC, RFC_MESSAGE, RFC_SIGNATURE)


@pytest.mark.parametrize("secret, public, message, signature", RFC_VECTORS)
def test_rfc8032_section_7_1_vectors(secret, public, message, signature):
    public, message, signature = (bytes.fromhex(x) for x in (public, message, signature))
    key, derived = _keypair(bytes.fromhex(secret))
    assert derived == public and key.sign(message) == signature  # the constants are the RFC's
    assert ed25519.verify(public, message, signature)
    assert not ed25519.verify(public, message + b"\0", signature)
    assert ed25519.weak_public_key(public) is None


def _mutations(rng, public, message, signature):
    """(what, public, message, signature) variants of one valid signature, as an attacker would try them."""
    yield "valid", public, message, signature
    for _ in range(6):
        bit = rng.randrange(512)
        bad = bytearray(signature)
        bad[bit // 8] ^= 1 << (bit % 8)
        yield f"signature bit {bit}", public, message, bytes(bad)
    bit = rng.randrange(256)
    bad = bytearray(public)
    bad[bit // 8] ^= 1 << (bit % 8)
    yield f"key bit {bit}", bytes(bad), message, signature
    yield "message", public, message + b"!", signature
    s = int.from_bytes(signature[32:], "little")
    yield "S + L", public, message, signature[:32] + (s + ORDER).to_bytes(32, "little")
    yield "random bytes", public, message, bytes(rng.randrange(256) for _ in range(64))


def test_agrees_with_cryptography_on_random_and_mutated_signatures():
    rng = random.Random(25519)
    checked = {True: 0, False: 0}
    for _ in range(25):
        key, public = _keypair()
        message = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 32, 200])))
        for what, pub, msg, sig in _mutations(rng, public, message, key.sign(message)):
            try:
                Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
                reference = True
            except (InvalidSignature, ValueError):
                reference = False
            assert ed25519.verify(pub, msg, sig) is reference, what
            checked[reference] += 1
    assert checked[True] == 25 and checked[False] > 200


@pytest.mark.parametrize("point", SMALL_ORDER, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_small_order_keys_and_r_are_refused(point):
    assert ed25519._decode_point(point) is not None  # on the curve: refused for its order, not its encoding
    assert "small order" in ed25519.weak_public_key(point)
    key, public = _keypair()
    signature = key.sign(b"m")
    assert not ed25519.verify(point, b"m", signature)
    # R of small order with S = 0: [0]B = R + [k]A holds for the identity key whatever the message
    for message in (b"", b"m", b"any bundle index"):
        assert not ed25519.verify(point, message, point + bytes(32))
        assert not ed25519.verify(IDENTITY, message, point + bytes(32))


def test_the_identity_key_forgery_is_exactly_what_the_small_order_check_stops(monkeypatch):
    forged = IDENTITY + bytes(32)  # R = identity, S = 0
    assert not ed25519.verify(IDENTITY, b"any message", forged)
    # without the check, the forgery holds for every message: the check is what refuses it
    monkeypatch.setattr(ed25519, "_strong_point", ed25519._decode_point)
    assert ed25519.verify(IDENTITY, b"any message", forged)
    assert ed25519.verify(IDENTITY, b"another message", forged)


def test_strong_keys_are_not_called_weak():
    for _ in range(5):
        assert ed25519.weak_public_key(_keypair()[1]) is None
    assert "canonical" in ed25519.weak_public_key((2**255 - 19 + 1).to_bytes(32, "little"))


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
