"""Which signature a start or an update demands before it installs, and the keys this device has pinned.

Trust on first use: an install of a signed bundle pins its signer (unless --bundle-no-pin), and from then on every
install into that root needs a signature by a pinned key. Every key that applies must have signed the bundle
(there is one signature, so in practice they name one key):
  - the operator's `--bundle-key PUB`;
  - the keys pinned for the root: <root>/.trusted-keys/*.pub, and for a start as root also
    /etc/bundler/trusted-keys/*.pub, which an operator provisions once for every root (SHARED_PINS_DIR);
  - for --bundle-update, the signer of the running bundle, which counts as pinned;
  - the bundle's own `require_key`.
A signature that is present must hold even when no key is asked for. A key of small order or a non-canonical
one is never trusted nor pinned. docs/signing.md gives the threat model.
"""

import hashlib
import os

from payload import fs
from payload.errors import HostError
from payload.signing import (
    claimed_signer_in,
    fingerprint,
    load_public_key,
    public_key_to_pem,
    refuse_weak_key,
    required_key,
    signer,
)
from stub import locking, options
from stub.root import LOCK, PINS_DIR, SHARED_PINS_DIR


def pins_dir(root):
    """Where a start pins keys for `root`."""
    return os.path.join(root, PINS_DIR)


def pin_dirs(root):
    """Every directory whose keys are pinned for `root`: its own, and for a start as root the shared one."""
    return [pins_dir(root)] + ([SHARED_PINS_DIR] if os.geteuid() == 0 else [])


def pinned_keys(root):
    """The public keys pinned for `root`, each once, in a stable order."""
    keys = []
    for directory in pin_dirs(root):
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".pub"))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HostError(f"cannot read the pinned keys in {directory}: {exc.strerror}") from None
        for name in names:
            key = load_public_key(os.path.join(directory, name))
            if key not in keys:
                keys.append(key)
    return keys


def pin(root, public_key):
    """Pin `public_key` for `root` (atomically; a no-op when it is pinned already, under any name)."""
    directory = pins_dir(root)
    refuse_weak_key(public_key, f"pinning in {directory}")
    path = os.path.join(directory, hashlib.sha256(public_key).hexdigest()[:32] + ".pub")
    if os.path.exists(path) or public_key in pinned_keys(root):
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


def check_before_install(payload, root, key_path=None, pin_signer=True, running_signer=None):
    """Raise IntegrityError unless the bundle's signature satisfies every key this start trusts; `running_signer`
    (--bundle-update) is the key that signed the bundle being replaced, trusted as a pin. Returns the key to pin
    once the install holds: the signer of a signed bundle, unless `pin_signer` is false; else None. Call it with
    the install root prepared (its ownership checked)."""
    demands = []
    if key_path:
        demands.append(([load_public_key(key_path)], f"{options.KEY} {key_path}", "use a bundle signed with that key"))
    pins = pinned_keys(root)
    where = " and ".join(d for d in pin_dirs(root) if os.path.isdir(d)) or pins_dir(root)
    advice = 'use a bundle signed with that key (to trust another key, see docs/signing.md, "Rotating keys")'
    if running_signer is not None and running_signer not in pins:
        reason = f"the running bundle's signer{f' and the keys pinned in {where}' if pins else ''}"
        demands.append((pins + [running_signer], reason, advice))
    elif pins:
        demands.append((pins, f"this device (keys pinned in {where})", advice))
    wanted = required_key(payload)
    if wanted is not None:
        demands.append(([wanted], "the bundle's own require_key", "use a bundle signed with that key"))
    for keys, reason, what_to_do in demands:
        claimed_signer_in(payload, keys, reason, what_to_do)
    signed_by = signer(payload)  # a signature present must hold, asked for or not
    return signed_by if pin_signer else None
