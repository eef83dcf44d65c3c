"""Which signature a start demands before it installs, and the keys this device has pinned.

Every key that applies must have signed the bundle (there is one signature, so in practice they name one key):
  - the operator's `--bundle-key PUB`;
  - the keys pinned in <root>/.trusted-keys/ (an operator can put .pub files there; an install verified
    against a key, by --bundle-key or by the bundle's own require_key, pins that key);
  - the bundle's own `require_key`.
A signature that is present must hold even when no key is asked for. docs/signing.md gives the threat model.
"""

import hashlib
import os

from payload import fs
from payload.errors import HostError
from payload.signing import claimed_signer_in, fingerprint, load_public_key, public_key_to_pem, required_key, signer
from stub import locking, options
from stub.root import LOCK, PINS_DIR


def pins_dir(root):
    return os.path.join(root, PINS_DIR)


def pinned_keys(root):
    """The public keys pinned under `root`, in a stable order."""
    directory = pins_dir(root)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".pub"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HostError(f"cannot read the pinned keys in {directory}: {exc.strerror}") from None
    return [load_public_key(os.path.join(directory, n)) for n in names]


def pin(root, public_key):
    """Pin `public_key` under `root` (atomically; a no-op when it is pinned already)."""
    directory = pins_dir(root)
    path = os.path.join(directory, hashlib.sha256(public_key).hexdigest()[:32] + ".pub")
    if os.path.exists(path):
        return path
    lock = locking.exclusive(os.path.join(root, LOCK))
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fs.remove_dead_temps(directory)  # left by a start killed while pinning
        fs.write_atomic(path, public_key_to_pem(public_key), mode=0o644)
    except OSError as exc:
        raise HostError(f"cannot pin key {fingerprint(public_key)} in {directory}: {exc.strerror}") from None
    finally:
        os.close(lock)
    return path


def check_before_install(payload, root, key_path=None):
    """Raise IntegrityError unless the bundle's signature satisfies every key this start trusts. Returns the
    key to pin once the install holds: the signer, when a key (--bundle-key or require_key) was checked;
    else None. Call it with the install root prepared (its ownership checked)."""
    demands = []
    if key_path:
        demands.append(([load_public_key(key_path)], f"{options.KEY} {key_path}"))
    pins = pinned_keys(root)
    if pins:
        demands.append((pins, f"this device (keys pinned in {pins_dir(root)})"))
    wanted = required_key(payload)
    if wanted is not None:
        demands.append(([wanted], "the bundle's own require_key"))
    for keys, reason in demands:
        claimed_signer_in(payload, keys, reason)
    signed_by = signer(payload)  # a signature present must hold, asked for or not
    return signed_by if key_path or wanted is not None else None
