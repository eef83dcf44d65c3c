"""Which bundle an install root belongs to: the name that first installed there, recorded in <root>/.bundle-name.

One root serves one bundle name: `current`, `previous` and `--bundle-gc` are about the versions of one bundle, so
a second name installing there would take `current` from the first and let its gc remove the other's versions.
"""

import os

from payload import fs, jsondecode
from payload.errors import HostError
from stub.root import CURRENT, INDEX_FILE, OWNER


def _recorded(root):
    try:
        with open(os.path.join(root, OWNER), "rb") as f:  # bytes: a text open() imports the locale machinery
            return f.read().decode("utf-8", "replace").strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostError(
            f"cannot read {os.path.join(root, OWNER)}: {exc.strerror}; check the install root's permissions"
        ) from None


def _current_name(root):
    """The name in the index of `current`, for a root installed before the record existed."""
    try:
        with open(os.path.join(root, CURRENT, INDEX_FILE), "rb") as f:
            return jsondecode.loads(f.read()).get("name")
    except (OSError, ValueError):
        return None


def owner(root):
    return _recorded(root) or _current_name(root)


def check(root, name):
    """Refuse (exit 4) a root that belongs to another bundle name."""
    found = owner(root)
    if found is not None and found != name:
        raise HostError(
            f"install root {root} belongs to bundle '{found}' (recorded in {os.path.join(root, OWNER)}); this is "
            f"bundle '{name}': give it its own --bundle-dir (or env BUNDLE_DIR)"
        )


def record(root, name):
    """Under the install lock, after check(): record `name` as the owner if nobody is recorded yet."""
    if _recorded(root) is None:
        fs.write_atomic(os.path.join(root, OWNER), name + "\n")
