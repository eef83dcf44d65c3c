"""--bundle-uninstall [--bundle-purge]: remove what this bundle installed under its root, and say what went.

Refused while a runtime of this root runs (a version's shared lock in .locks/ is held: every running start, its
runtime, the background puller). Under the install lock, with every version's lock held exclusively, so no start
begins one meanwhile. `current` and `previous` go first: an uninstall cut short leaves a root without `current`,
which the next start installs into again, never a `current` naming a half-removed version. `<root>/data` stays
unless --bundle-purge; the bundle file itself, and keys pinned outside the root (/etc/bundler), are not touched.
"""

import os

from payload import fs
from payload.errors import HostError
from stub import gc, install, locking, owner
from stub.root import (
    CURRENT,
    DATA_DIR,
    HEALTH_LOCK,
    HEALTH_LOG,
    KEPT_DIR,
    LOCK,
    LOCKS_DIR,
    OWNER,
    PINS_DIR,
    PREVIOUS,
    PROBATION,
    PULL_LOCK,
    PULL_LOG,
    PULLS_DIR,
    REFUSED_DIR,
    UPDATE_LOG,
    UPDATES_DIR,
    version_dirs,
)

# The root's own records, removed after the versions (the lock files last of all).
_RECORDS = (PROBATION, UPDATE_LOG, REFUSED_DIR, UPDATES_DIR, PULLS_DIR, PULL_LOG, HEALTH_LOG, OWNER)


def _count(directory):
    try:
        return len(os.listdir(directory))
    except OSError:
        return 0


def uninstall(root, name, purge):
    """Remove the installed versions, the kept bundle files, the pins and the records under `root` (and its data
    with `purge`); returns the one-line summary."""
    from stub.rollback import installed_version

    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, LOCKS_DIR)):
        data = os.path.join(root, DATA_DIR)
        if not (purge and os.path.isdir(data)):
            return f"{root}: nothing of {name} is installed there; nothing removed"
        fs.safe_rmtree(data)  # what an uninstall without --bundle-purge kept
        return f"{root}: nothing of {name} was installed there; removed its data{_remove_if_empty(root)}"
    install.prepare_root(root)
    owner.check(root, name)
    lock = locking.exclusive(os.path.join(root, LOCK))
    held = []
    try:
        versions = version_dirs(root)
        busy = []
        for bundle_id in sorted(os.listdir(os.path.join(root, LOCKS_DIR))):
            fd = locking.try_exclusive(os.path.join(root, LOCKS_DIR, bundle_id))
            if fd is None:
                busy.append(bundle_id)
            else:
                held.append(fd)
        if busy:
            names = ", ".join(f"{installed_version(root, b) or 'unknown version'} ({b[:12]})" for b in busy)
            raise HostError(
                f"{name} runs from {root} ({names}); stop it (and its service) first, then run --bundle-uninstall again"
            )
        described = [f"{installed_version(root, b) or 'unknown version'} {b[:12]}" for b in versions]
        kept_files, pins = _count(os.path.join(root, KEPT_DIR)), _count(os.path.join(root, PINS_DIR))
        for link in (CURRENT, PREVIOUS):
            fs.safe_unlink(os.path.join(root, link))
        fs.fsync_dir(root)
        for bundle_id in versions:
            gc.remove_version(root, bundle_id)
        install.remove_stale_work(root)
        for record in (KEPT_DIR, PINS_DIR) + _RECORDS:
            fs.safe_rmtree(os.path.join(root, record))
        if purge:
            fs.safe_rmtree(os.path.join(root, DATA_DIR))
        for record in (HEALTH_LOCK, PULL_LOCK, LOCKS_DIR):
            fs.safe_rmtree(os.path.join(root, record))
    except OSError as exc:
        raise HostError(f"cannot uninstall {name} from {root}: {exc.strerror or exc}") from None
    finally:
        for fd in held:
            os.close(fd)
        os.close(lock)
    fs.safe_unlink(os.path.join(root, LOCK))
    left = "; removed its data too" if purge else f"; kept {os.path.join(root, DATA_DIR)} (--bundle-purge removes it)"
    left += _remove_if_empty(root)
    return (
        f"{root}: uninstalled {name}: removed {len(versions)} version(s) [{', '.join(described) or 'none'}], "
        f"{kept_files} kept bundle file(s), {pins} pinned key(s){left}"
    )


def _remove_if_empty(root):
    try:
        os.rmdir(root)
    except OSError:
        return ""
    return f"; removed {root}"
