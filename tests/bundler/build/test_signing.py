"""bundler/build/signing.py and `bundler keygen`: keys other tools read, and the signature `make --sign` writes."""

import os
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from bundler.build.signing import PASSPHRASE_ENV, Signing, generate_keypair, load_private_key
from payload import ed25519
from payload.errors import UsageError
from payload.signing import CONTEXT, decode_block, fingerprint, load_public_key, parse_key_id
from testing.helpers import bundler


@pytest.fixture
def pair(tmp_path):
    return generate_keypair(tmp_path / "keys" / "release")


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_public_key_openssl_reads(pair):
    key_path, pub_path, printed = pair
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    # openssl, not our code, derives the public key from the private one: both files are one pair.
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(key_path), "-pubout"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    assert derived == pub_path.read_text()
    assert fingerprint(load_public_key(str(pub_path))) == printed


def test_keygen_refuses_to_overwrite_a_key(pair):
    key_path, _, _ = pair
    before = key_path.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        generate_keypair(key_path.with_suffix(""))
    assert key_path.read_bytes() == before


def test_keygen_command_prints_the_files_and_the_fingerprint(tmp_path):
    result = bundler("keygen", "--out", tmp_path / "site")
    lines = result.stdout.splitlines()
    assert lines[:2] == [str(tmp_path / "site.key"), str(tmp_path / "site.pub")]
    assert lines[2] == "key " + fingerprint(load_public_key(str(tmp_path / "site.pub")))
    again = bundler("keygen", "--out", tmp_path / "site", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_signature_block_verifies_with_the_stubs_verifier(pair):
    key_path, pub_path, _ = pair
    signing = Signing.from_paths(key_path, pub_path)
    index_bytes = b'{"name":"demo"}'
    public_key, signature = decode_block(signing.signature_block(index_bytes), "test")
    assert public_key == load_public_key(str(pub_path))
    assert ed25519.verify(public_key, CONTEXT + index_bytes, signature)
    assert not ed25519.verify(public_key, CONTEXT + index_bytes + b" ", signature)
    assert parse_key_id(signing.require_key_id, "test") == public_key


def test_not_signing_gives_an_empty_block_and_no_required_key():
    signing = Signing.from_paths()
    assert signing.signature_block(b"{}") == b"" and signing.require_key_id is None


def test_require_key_without_sign_is_refused(pair):
    with pytest.raises(UsageError, match="--require-key needs --sign"):
        Signing.from_paths(None, pair[1])


def test_require_key_of_another_pair_is_refused(pair, tmp_path):
    _, other_pub, other_fp = generate_keypair(tmp_path / "other")
    with pytest.raises(UsageError) as caught:
        Signing.from_paths(pair[0], other_pub)
    assert "is not the private key of --require-key" in str(caught.value) and other_fp in str(caught.value)


def write_pem(path, key, password=None):
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


def test_encrypted_key_needs_its_passphrase(tmp_path, monkeypatch):
    path = write_pem(tmp_path / "enc.key", Ed25519PrivateKey.generate(), b"s3cret")
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(UsageError, match="is encrypted; put its passphrase in BUNDLER_KEY_PASSPHRASE"):
        load_private_key(path)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(UsageError, match="the passphrase in BUNDLER_KEY_PASSPHRASE does not open signing key"):
        load_private_key(path)
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    assert isinstance(load_private_key(path), Ed25519PrivateKey)
    # A passphrase left in the environment does not get in the way of a plain key.
    assert isinstance(
        load_private_key(write_pem(tmp_path / "plain.key", Ed25519PrivateKey.generate())), Ed25519PrivateKey
    )


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "cannot read signing key"),
        (b"hello", "is not a PEM private key"),
        ("rsa", "is not an ed25519 key"),
    ],
)
def test_unusable_signing_keys_are_a_usage_error(tmp_path, content, words):
    path = tmp_path / "signing.key"
    if content == "rsa":
        write_pem(path, generate_private_key(public_exponent=65537, key_size=2048))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=words):
        load_private_key(path)
