"""The build side of signing: `bundler keygen`, and the signature `make --sign` puts in a bundle.

Keys are plain PEM: the private key as unencrypted PKCS#8 (mode 0600; an encrypted one works when its
passphrase is in BUNDLER_KEY_PASSPHRASE), the public key as SubjectPublicKeyInfo, which the stub parses with
the standard library alone (payload/signing.py).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payload.errors import UsageError
from payload.signing import encode_block, fingerprint, key_id, load_public_key, public_key_to_pem, signed_message

PASSPHRASE_ENV = "BUNDLER_KEY_PASSPHRASE"


def raw_public_key(private_key):
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _write_new(path, data, mode):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UsageError(f"{path} already exists; remove it or choose another --out prefix") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # the umask must not widen or narrow it
        out.write(data)


def generate_keypair(prefix):
    """Write PREFIX.key (private, mode 0600) and PREFIX.pub; returns (key path, pub path, fingerprint)."""
    prefix = Path(prefix)
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise UsageError(f"{path} already exists; remove it or choose another --out prefix")
    if prefix.parent != Path(""):
        prefix.parent.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(key_path, private_pem, 0o600)
    _write_new(pub_path, public_key_to_pem(raw_public_key(private_key)).encode("ascii"), 0o644)
    return key_path, pub_path, fingerprint(raw_public_key(private_key))


def load_private_key(path):
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:  # encrypted
            passphrase = os.environ.get(PASSPHRASE_ENV)
            if not passphrase:
                raise UsageError(f"signing key {path} is encrypted; put its passphrase in {PASSPHRASE_ENV}") from None
            try:
                key = serialization.load_pem_private_key(data, password=passphrase.encode())
            except ValueError:
                raise UsageError(f"the passphrase in {PASSPHRASE_ENV} does not open signing key {path}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{path} is not a PEM private key; pass the .key file `bundler keygen` wrote") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an ed25519 key; make one with `bundler keygen`")
    return key


@dataclass
class Signing:
    """What `make` does about signatures: the key to sign with and the key the bundle will demand."""

    private_key: Optional[Ed25519PrivateKey] = None
    required_public_key: Optional[bytes] = None

    @classmethod
    def from_paths(cls, sign=None, require_key=None):
        """Load both keys before the (long) build starts, and refuse a pair that could never install."""
        private_key = load_private_key(sign) if sign else None
        required = load_public_key(str(require_key)) if require_key else None
        if required is not None and private_key is None:
            raise UsageError(
                "--require-key needs --sign with the matching private key: a bundle that requires a "
                "signature must carry one"
            )
        if required is not None and raw_public_key(private_key) != required:
            raise UsageError(
                f"--sign {sign} is not the private key of --require-key {require_key} ({fingerprint(required)}); pass "
                "the matching pair"
            )
        return cls(private_key, required)

    @property
    def require_key_id(self):
        """The value for the index's `require_key`, or None."""
        return key_id(self.required_public_key) if self.required_public_key else None

    def sign(self, message):
        """(key id, ed25519 signature of `message`), or None when not signing: for the provenance's DSSE envelope
        (bundler/build/provenance.py)."""
        if self.private_key is None:
            return None
        return key_id(raw_public_key(self.private_key)), self.private_key.sign(message)

    def signature_block(self, index_bytes):
        """The payload's signature block for these index bytes (b"" when not signing)."""
        if self.private_key is None:
            return b""
        signature = self.private_key.sign(signed_message(index_bytes))
        return encode_block(raw_public_key(self.private_key), signature)
