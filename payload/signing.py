"""Bundle signatures: what is signed, how the signature sits in the payload, and how it is checked.

What is signed: the content index bytes, behind a fixed context string. The content index holds the sha256 of
every entry, of the stub's code and the key the bundle requires, if any, so one signature covers every byte that
is installed and run, and nothing of how it is packed (the encoding table). The signature block sits right after
the content index; its bytes are specified in docs/format.md, section 6.

The public key in the block only says who claims to have signed; trust comes from the keys a caller passes
(docs/signing.md explains which keys those are and what each protects against).
"""

import base64
import binascii
import hashlib
import struct

from payload import ed25519, layout
from payload.errors import IntegrityError, UsageError

BLOCK_MAGIC = b"ed25519\x00"
BLOCK_SIZE = len(BLOCK_MAGIC) + ed25519.PUBLIC_KEY_SIZE + ed25519.SIGNATURE_SIZE
assert BLOCK_SIZE == layout.BLOCK_SIZE
CONTEXT = b"bundler index signature v1\x00"
KEY_ID_PREFIX = "ed25519:"
# DER of an Ed25519 SubjectPublicKeyInfo up to the key: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
PEM_END = "-----END PUBLIC KEY-----"


def signed_message(index_bytes):
    """The bytes a bundle signature is made over."""
    return CONTEXT + bytes(index_bytes)


def encode_block(public_key, signature):
    if len(public_key) != ed25519.PUBLIC_KEY_SIZE or len(signature) != ed25519.SIGNATURE_SIZE:
        raise ValueError("an ed25519 signature block needs a 32-byte key and a 64-byte signature")
    return BLOCK_MAGIC + bytes(public_key) + bytes(signature)


def decode_block(block, where):
    """(public key, signature) from a payload's signature block."""
    if len(block) != BLOCK_SIZE or not block.startswith(BLOCK_MAGIC):
        raise IntegrityError(
            f"{where}: the signature block is not an ed25519 signature ({len(block)} bytes); the bundle is damaged, "
            "copy it again"
        )
    key_end = len(BLOCK_MAGIC) + ed25519.PUBLIC_KEY_SIZE
    return bytes(block[len(BLOCK_MAGIC) : key_end]), bytes(block[key_end:])


def fingerprint(public_key):
    """SHA256:<base64>, exactly what `ssh-keygen -l` prints for the same key, so it can be checked by other tools."""
    wire = b"".join(struct.pack(">I", len(part)) + part for part in (b"ssh-ed25519", bytes(public_key)))
    return "SHA256:" + base64.b64encode(hashlib.sha256(wire).digest()).decode("ascii").rstrip("=")


def refuse_weak_key(public_key, where, error=IntegrityError):
    """Raise `error` when `public_key` can never be trusted (payload/ed25519.weak_public_key): such a key is
    neither verified against nor pinned. Returns the key."""
    weak = ed25519.weak_public_key(public_key)
    if weak is not None:
        raise error(f"{where}: key {fingerprint(public_key)} is refused: {weak}; use a key `bundler keygen` made")
    return public_key


def key_id(public_key):
    """The text form of a public key stored in an index (`require_key`)."""
    return KEY_ID_PREFIX + base64.b64encode(public_key).decode("ascii")


def parse_key_id(text, where):
    raw = None
    if isinstance(text, str) and text.startswith(KEY_ID_PREFIX):
        try:
            raw = base64.b64decode(text[len(KEY_ID_PREFIX) :].encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = None
    if raw is None or len(raw) != ed25519.PUBLIC_KEY_SIZE:
        raise IntegrityError(
            f"{where}: the required key {text!r} in the index is not an ed25519 key; the bundle is damaged"
        )
    return refuse_weak_key(raw, f"{where}: the index's require_key")


def required_key(payload):
    """The public key the bundle's own index requires a signature by, or None."""
    text = payload.index.require_key
    return None if text is None else parse_key_id(text, payload.path)


def public_key_from_pem(text, where):
    """The raw 32-byte key of an Ed25519 public key PEM (SubjectPublicKeyInfo), as `bundler keygen` writes."""
    start, end = text.find(PEM_BEGIN), text.find(PEM_END)
    if start < 0 or end < start:
        raise UsageError(
            f"{where} is not a PEM public key (no {PEM_BEGIN} line); pass the .pub file `bundler keygen` wrote"
        )
    body = "".join(text[start + len(PEM_BEGIN) : end].split())
    try:
        der = base64.b64decode(body.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        der = b""
    if len(der) != len(SPKI_PREFIX) + ed25519.PUBLIC_KEY_SIZE or not der.startswith(SPKI_PREFIX):
        raise UsageError(f"{where} is not an ed25519 public key; pass the .pub file `bundler keygen` wrote")
    return refuse_weak_key(der[len(SPKI_PREFIX) :], where, UsageError)


def public_key_to_pem(public_key):
    body = base64.b64encode(SPKI_PREFIX + bytes(public_key)).decode("ascii")
    return f"{PEM_BEGIN}\n{body}\n{PEM_END}\n"


def load_public_key(path):
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 10)
    except OSError as exc:
        raise UsageError(f"cannot read public key {path}: {exc.strerror}") from None
    return public_key_from_pem(data.decode("ascii", "replace"), path)


def signer(payload):
    """The public key that signed `payload`, once the signature is checked against it; None if unsigned.

    This alone proves only that the signature is intact, not who may be trusted: see verify_signature.
    """
    if not payload.signature:
        return None
    return check_block(payload.index_bytes, payload.signature, payload.path)


def check_block(index_bytes, block, where):
    """The public key of the signature block `block`, once its signature over the raw content index bytes holds
    (before anything parses them); raises IntegrityError when it does not."""
    public_key, signature = decode_block(block, where)
    refuse_weak_key(public_key, f"{where}: the signature block")
    try:
        valid = ed25519.verify(public_key, signed_message(index_bytes), signature)
    except ed25519.Ed25519Error as exc:  # decode_block fixed the lengths; kept so no error escapes raw
        raise IntegrityError(f"{where}: {exc}") from None
    if not valid:
        raise IntegrityError(
            f"{where}: the signature by key {fingerprint(public_key)} does not hold; the bundle was altered "
            "after signing or is damaged, copy it again"
        )
    return public_key


def claimed_signer_in(payload, trusted_public_keys, reason, advice="use a bundle signed with that key"):
    """Raise IntegrityError unless the signature block names one of `trusted_public_keys`. This alone checks
    no signature: pair it with signer(), as verify_signature does. `reason` says who asks for the key, `advice`
    what to do."""
    trusted = [bytes(k) for k in trusted_public_keys]
    wanted = " or ".join(fingerprint(k) for k in trusted)
    if not payload.signature:
        raise IntegrityError(
            f"{payload.path} is not signed, but {reason} requires a signature by key {wanted}; {advice}"
        )
    public_key, _ = decode_block(payload.signature, payload.path)
    if public_key not in trusted:
        raise IntegrityError(
            f"{payload.path} is signed by key {fingerprint(public_key)}, but {reason} requires key {wanted}; {advice}"
        )
    return public_key


def verify_signature(payload, trusted_public_keys, reason="the caller"):
    """Raise IntegrityError unless the bundle is validly signed by one of `trusted_public_keys`, and also
    by the key its own index requires, if any. Returns the signing key."""
    claimed_signer_in(payload, trusted_public_keys, reason)
    wanted = required_key(payload)
    if wanted is not None:
        claimed_signer_in(payload, [wanted], "the bundle's own require_key")
    return signer(payload)


def describe_signature(payload):
    """A few words for --bundle-info and `bundler inspect`: who claims to have signed, without judging trust."""
    try:
        wanted = required_key(payload)
    except IntegrityError:
        return "damaged require_key in the index"
    required = "" if wanted is None else f"; the bundle requires key {fingerprint(wanted)}"
    if not payload.signature:
        return "no" + required
    try:
        public_key, _ = decode_block(payload.signature, payload.path)
    except IntegrityError:
        return "damaged signature block" + required
    return f"yes, key {fingerprint(public_key)} (verify with the key to check it){required}"


def verify_report(payload, public_key, key_option):
    """Check the signature for `verify`: against `public_key` when given (and the bundle's own required key);
    otherwise only that a signature present holds. Returns one line; raises IntegrityError when it does not.
    `key_option` is how the caller's command line names its public-key option, for the advice in the line."""
    if public_key is not None:
        verify_signature(payload, [public_key], f"{key_option} {fingerprint(public_key)}")
        return f"signature: ok, signed by the trusted key {fingerprint(public_key)}"
    wanted = required_key(payload)
    if wanted is not None:
        claimed_signer_in(payload, [wanted], "the bundle's own require_key")
    key = signer(payload)
    if key is None:
        return f"signature: none (unsigned bundle; pass {key_option} PUB to require one)"
    return f"signature: intact, key {fingerprint(key)}, not checked against a trusted key (pass {key_option} PUB)"
