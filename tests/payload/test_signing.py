"""payload/signing.py: the signature block, the PEM parser of the stub, and which signatures are accepted."""

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from payload import signing
from payload.errors import IntegrityError, UsageError
from testing.signed import make_payload, raw, spki_pem


@pytest.fixture(scope="module")
def keys():
    return Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def test_pem_written_by_cryptography_parses_to_the_raw_key(keys):
    assert signing.public_key_from_pem(spki_pem(keys[0]), "k.pub") == raw(keys[0])
    # and the other way: what the stub writes (pins) is a key cryptography reads back
    pem = signing.public_key_to_pem(raw(keys[1])).encode()
    assert raw_of_loaded(pem) == raw(keys[1])


def raw_of_loaded(pem):
    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_fingerprint_is_the_one_ssh_keygen_prints(keys, tmp_path):
    openssh = keys[0].public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (tmp_path / "k.pub").write_bytes(openssh + b" test\n")
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    assert printed.split()[1] == signing.fingerprint(raw(keys[0]))


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "not a PEM public key"),
        ("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "not an ed25519 public key"),
        ("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n", "not an ed25519 public key"),
    ],
)
def test_bad_public_key_files_are_a_usage_error(text, words):
    with pytest.raises(UsageError) as caught:
        signing.public_key_from_pem(text, "k.pub")
    assert words in str(caught.value) and "k.pub" in str(caught.value)


def test_an_rsa_public_key_is_refused():
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UsageError, match="not an ed25519 public key"):
        signing.public_key_from_pem(spki_pem(rsa), "rsa.pub")


def test_load_public_key_names_a_missing_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read public key .*nope.pub"):
        signing.load_public_key(str(tmp_path / "nope.pub"))


def test_valid_signature_by_a_trusted_key_is_accepted(keys):
    payload = make_payload(keys[0])
    assert signing.verify_signature(payload, [raw(keys[1]), raw(keys[0])]) == raw(keys[0])
    assert signing.signer(payload) == raw(keys[0])


def test_unsigned_bundle_is_refused_when_a_key_is_required(keys):
    with pytest.raises(IntegrityError, match="is not signed, but --bundle-key requires a signature by key SHA256:"):
        signing.verify_signature(make_payload(None), [raw(keys[0])], "--bundle-key")


def test_signature_by_another_key_is_refused_naming_both_keys(keys):
    with pytest.raises(IntegrityError) as caught:
        signing.verify_signature(make_payload(keys[1]), [raw(keys[0])], "--bundle-key")
    assert signing.fingerprint(raw(keys[0])) in str(caught.value)
    assert signing.fingerprint(raw(keys[1])) in str(caught.value)


def test_index_changed_after_signing_is_refused(keys):
    payload = make_payload(keys[0], tamper=lambda b: b.replace(b'"1.0.0"', b'"1.0.1"'))
    with pytest.raises(IntegrityError, match="does not hold"):
        signing.verify_signature(payload, [raw(keys[0])])
    with pytest.raises(IntegrityError, match="does not hold"):
        signing.signer(payload)  # even with no trusted key asked for


def test_forged_block_claiming_the_trusted_key_is_refused(keys):
    payload = make_payload(keys[1])
    _, signature = signing.decode_block(payload.signature, "x")
    payload.signature = signing.encode_block(raw(keys[0]), signature)
    with pytest.raises(IntegrityError, match="does not hold"):
        signing.verify_signature(payload, [raw(keys[0])])


@pytest.mark.parametrize("block", [b"x", b"ed25519\x00" + b"\0" * 95, b"rsa-2048" + b"\0" * 96])
def test_damaged_signature_block_is_an_integrity_error(block):
    payload = make_payload(None)
    payload.signature = block
    with pytest.raises(IntegrityError, match="signature block is not an ed25519 signature"):
        signing.signer(payload)


def test_the_bundles_own_require_key_must_sign(keys):
    signed_by_required = make_payload(keys[0], require=keys[0])
    assert signing.verify_signature(signed_by_required, [raw(keys[0])]) == raw(keys[0])
    with pytest.raises(IntegrityError, match="the bundle's own require_key requires key"):
        signing.verify_report(make_payload(keys[1], require=keys[0]), None, "--key")
    with pytest.raises(IntegrityError, match="is not signed"):
        signing.verify_report(make_payload(None, require=keys[0]), None, "--key")


def test_require_key_that_is_no_key_is_an_integrity_error(keys):
    payload = make_payload(keys[0])
    payload.index.require_key = "ed25519:AAAA"
    with pytest.raises(IntegrityError, match="is not an ed25519 key"):
        signing.required_key(payload)


def test_verify_report_says_what_was_and_was_not_checked(keys):
    assert "none (unsigned bundle; pass --key PUB" in signing.verify_report(make_payload(None), None, "--key")
    assert "not checked against a trusted key" in signing.verify_report(make_payload(keys[0]), None, "--key")
    line = signing.verify_report(make_payload(keys[0]), raw(keys[0]), "--key")
    assert line == f"signature: ok, signed by the trusted key {signing.fingerprint(raw(keys[0]))}"


def test_describe_signature_shows_the_fingerprints(keys):
    assert signing.describe_signature(make_payload(None)) == "no"
    text = signing.describe_signature(make_payload(keys[0], require=keys[0]))
    assert text.count(signing.fingerprint(raw(keys[0]))) == 2


IDENTITY = bytes.fromhex("01" + "00" * 31)  # the neutral point: order 1


def test_a_bundle_signed_by_the_identity_key_is_refused_whatever_its_index_says():
    # R = identity and S = 0 satisfy [S]B = R + [k]A for the identity key A and any message: a forgery
    payload = make_payload(None)
    payload.signature = signing.encode_block(IDENTITY, IDENTITY + bytes(32))
    with pytest.raises(IntegrityError, match="is refused: it is a point of small order") as caught:
        signing.signer(payload)
    assert signing.fingerprint(IDENTITY) in str(caught.value)
    with pytest.raises(IntegrityError, match="small order"):
        signing.verify_signature(payload, [IDENTITY])  # even for a caller who names that key


def test_a_small_order_key_is_refused_as_a_pem_and_as_a_require_key(keys):
    pem = signing.public_key_to_pem(IDENTITY)
    with pytest.raises(UsageError, match="release.pub: key SHA256:.* is refused: it is a point of small order"):
        signing.public_key_from_pem(pem, "release.pub")
    payload = make_payload(keys[0])
    payload.index.require_key = signing.key_id(IDENTITY)
    with pytest.raises(IntegrityError, match="require_key: key SHA256:.* is refused"):
        signing.required_key(payload)
