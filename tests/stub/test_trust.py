"""stub/trust.py: the keys a start demands (--bundle-key, pinned keys, the bundle's require_key) and pinning."""

import os
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payload.errors import IntegrityError, UsageError
from payload.signing import fingerprint
from stub import trust
from stub.root import PINS_DIR
from testing.signed import make_payload, raw, spki_pem


@pytest.fixture(scope="module")
def release():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rogue():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir()
    return str(path)


def pub_file(tmp_path, key, name="release.pub"):
    path = tmp_path / name
    path.write_text(spki_pem(key))
    return str(path)


def pinned_files(root):
    directory = os.path.join(root, PINS_DIR)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_unsigned_bundle_installs_when_nothing_demands_a_key(root, release):
    assert trust.check_before_install(make_payload(None), root) is None
    # Trust on first use: a signature nobody asked for is checked, and its key given back to pin...
    assert trust.check_before_install(make_payload(release), root) == raw(release)
    # ... unless the operator says not to
    assert trust.check_before_install(make_payload(release), root, pin_signer=False) is None


def test_after_the_first_signed_install_unsigned_and_foreign_bundles_are_refused(root, release, rogue):
    trust.pin(root, trust.check_before_install(make_payload(release), root))
    for other in (None, rogue):
        with pytest.raises(IntegrityError) as caught:
            trust.check_before_install(make_payload(other, version="2.0.0"), root)
        assert fingerprint(raw(release)) in str(caught.value)
        assert "Rotating keys" in str(caught.value)
    assert trust.check_before_install(make_payload(release, version="2.0.0"), root) == raw(release)
    assert len(pinned_files(root)) == 1


def test_an_update_needs_the_running_bundles_signer_even_with_nothing_pinned(root, release, rogue):
    with pytest.raises(IntegrityError, match="but the running bundle's signer requires a signature by key"):
        trust.check_before_install(make_payload(None), root, running_signer=raw(release))
    with pytest.raises(IntegrityError, match=re.escape(f"signed by key {fingerprint(raw(rogue))}, but the running")):
        trust.check_before_install(make_payload(rogue), root, running_signer=raw(release))
    assert trust.check_before_install(make_payload(release), root, running_signer=raw(release)) == raw(release)
    # a key the operator pinned for a rotation is accepted beside the running signer
    trust.pin(root, raw(rogue))
    assert trust.check_before_install(make_payload(rogue), root, running_signer=raw(release)) == raw(rogue)


def test_one_pin_per_key_whatever_the_file_is_called(root, release, tmp_path):
    os.makedirs(os.path.join(root, PINS_DIR))
    pub_file(tmp_path / "root", release, os.path.join(PINS_DIR, "ops.pub"))
    pub_file(tmp_path / "root", release, os.path.join(PINS_DIR, "again.pub"))
    assert trust.pinned_keys(root) == [raw(release)]
    trust.pin(root, raw(release))
    assert pinned_files(root) == ["again.pub", "ops.pub"]  # no third file for the same key


def test_keys_in_the_shared_directory_are_pinned_for_every_root_of_a_start_as_root(
    root, release, rogue, tmp_path, monkeypatch
):
    # The directory's place is the thing changed here: the real /etc is not this test's to write.
    shared = tmp_path / "etc-bundler-trusted-keys"
    shared.mkdir()
    pub_file(shared, release)
    monkeypatch.setattr(trust, "SHARED_PINS_DIR", str(shared))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(IntegrityError, match=re.escape(f"keys pinned in {shared}")):
        trust.check_before_install(make_payload(rogue), root)
    with pytest.raises(IntegrityError, match="is not signed"):
        trust.check_before_install(make_payload(None), root)
    assert trust.check_before_install(make_payload(release), root) == raw(release)
    trust.pin(root, raw(release))
    assert pinned_files(root) == []  # pinned already, in the shared directory
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a start as another user reads only its root's pins
    assert trust.pinned_keys(root) == []


def test_a_small_order_key_is_never_pinned(root):
    identity = bytes.fromhex("01" + "00" * 31)
    with pytest.raises(IntegrityError, match="small order"):
        trust.pin(root, identity)
    assert pinned_files(root) == []


def test_a_signature_present_must_hold_even_when_no_key_is_asked_for(root, release):
    tampered = make_payload(release, tamper=lambda b: b.replace(b"1.0.0", b"6.6.6"))
    with pytest.raises(IntegrityError, match="does not hold"):
        trust.check_before_install(tampered, root)


def test_operator_key_is_demanded_and_given_back_to_pin(root, release, rogue, tmp_path):
    key = pub_file(tmp_path, release)
    with pytest.raises(IntegrityError, match="requires a signature by key"):
        trust.check_before_install(make_payload(None), root, key)
    with pytest.raises(IntegrityError, match="but --bundle-key .* requires key"):
        trust.check_before_install(make_payload(rogue), root, key)
    assert trust.check_before_install(make_payload(release), root, key) == raw(release)
    assert pinned_files(root) == []  # pinning waits for the install to hold
    trust.pin(root, raw(release))
    assert trust.pinned_keys(root) == [raw(release)]


def test_a_pinned_key_refuses_unsigned_and_foreign_bundles_later(root, release, rogue):
    trust.pin(root, trust.check_before_install(make_payload(release, require=release), root))
    with pytest.raises(IntegrityError) as caught:
        trust.check_before_install(make_payload(None, version="2.0.0"), root)
    assert f"this device (keys pinned in {os.path.join(root, PINS_DIR)})" in str(caught.value)
    # A bundle that names another key as its own requirement gets nowhere either.
    with pytest.raises(IntegrityError, match=re.escape(fingerprint(raw(release)))):
        trust.check_before_install(make_payload(rogue, require=rogue), root)
    assert trust.check_before_install(make_payload(release, version="2.0.0"), root) == raw(release)  # pinned already


def test_the_operator_can_pin_a_key_by_copying_a_pub_file(root, release, rogue, tmp_path):
    os.makedirs(os.path.join(root, PINS_DIR))
    pub_file(tmp_path / "root", release, os.path.join(PINS_DIR, "ops.pub"))
    with pytest.raises(IntegrityError):
        trust.check_before_install(make_payload(rogue), root)
    trust.check_before_install(make_payload(release), root)


def test_a_broken_pin_file_is_named(root, release):
    os.makedirs(os.path.join(root, PINS_DIR))
    with open(os.path.join(root, PINS_DIR, "bad.pub"), "w") as f:
        f.write("not a key\n")
    with pytest.raises(UsageError, match="bad.pub is not a PEM public key"):
        trust.check_before_install(make_payload(release), root)


def test_pinning_is_atomic_and_idempotent(root, release):
    first = trust.pin(root, raw(release))
    assert trust.pin(root, raw(release)) == first
    assert pinned_files(root) == [os.path.basename(first)]
    assert [n for n in os.listdir(root) if ".tmp-" in n] == []
