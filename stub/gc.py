"""--bundle-gc: remove installed versions other than `current` and `previous`, sparing every version a running
process holds (it keeps a shared flock on <root>/.locks/<bundle-id> for as long as it runs).

Runs under the install lock, so no install is half-way. A version is first renamed to a work-dir name, so a
crash during removal leaves a stale work dir (cleaned by the next install), never a marked but partial version.
Lock files stay: unlinking one could let a starting process lock a file nobody else will ever look at.
"""

import os

from payload import fs
from payload.errors import HostError
from payload.rules import is_sha256
from stub import install, locking, owner
from stub.root import CURRENT, LOCK, LOCKS_DIR, PREVIOUS, version_dirs


class Collection:
    def __init__(self, root):
        self.root = root
        self.removed, self.kept, self.in_use = [], [], []

    def summary(self):
        def ids(values):
            return ", ".join(v[:12] for v in values) or "none"

        return (
            f"{self.root}: removed {len(self.removed)} version(s) [{ids(self.removed)}]; kept current/previous "
            f"[{ids(self.kept)}]; in use by a running process [{ids(self.in_use)}]"
        )


def collect(root, name=None, keep=None):
    """Remove the versions under `root` that are neither current, previous, nor in use. Returns a Collection.
    With `name`, a root that belongs to another bundle is refused (stub/owner.py). `keep` ([update] keep, after
    a version is marked good): how many versions stay, `current` first, then `previous`, then the newest others
    (1 leaves `current` alone, with nothing to roll back to); without it, `current` and `previous`."""
    root = os.path.abspath(root)
    done = Collection(root)
    if not os.path.isdir(os.path.join(root, LOCKS_DIR)):
        return done  # nothing was ever installed here
    install.prepare_root(root)
    if name is not None:
        owner.check(root, name)
    lock = locking.exclusive(os.path.join(root, LOCK))
    try:
        install.remove_stale_work(root)
        kept = _to_keep(root, keep)
        for bundle_id in version_dirs(root):
            if bundle_id in kept:
                done.kept.append(bundle_id)
                continue
            held = locking.try_exclusive(os.path.join(root, LOCKS_DIR, bundle_id))
            if held is None:
                done.in_use.append(bundle_id)
                continue
            try:
                remove_version(root, bundle_id)
            finally:
                os.close(held)
            done.removed.append(bundle_id)
        _remove_kept_executables(root, fs.link_target(os.path.join(root, PREVIOUS)) if keep != 1 else None)
    except OSError as exc:
        raise HostError(f"cannot collect old versions in {root}: {exc.strerror or exc}") from None
    finally:
        os.close(lock)
    return done


def _to_keep(root, keep):
    from payload.versions import version_key
    from stub.rollback import installed_version

    links = [fs.link_target(os.path.join(root, link)) for link in (CURRENT, PREVIOUS)]
    chosen = [b for b in dict.fromkeys(links) if b is not None]
    if keep is None:
        return set(chosen)
    others = [b for b in version_dirs(root) if b not in chosen]
    others.sort(key=lambda b: version_key(installed_version(root, b) or "0"), reverse=True)
    return set((chosen + others)[:keep])


def remove_version(root, bundle_id):
    doomed = os.path.join(root, "." + bundle_id + install.WORK_SUFFIX + f"gc-{os.getpid()}")
    os.rename(os.path.join(root, bundle_id), doomed)
    fs.fsync_dir(root)  # the version is gone for good before its files are
    fs.safe_rmtree(doomed)


def _remove_kept_executables(root, previous):
    """Bundle files an update kept (stub/update.py) serve a rollback to `previous` only: the file of `current`
    is the one that runs it."""
    from stub.root import KEPT_DIR

    directory = os.path.join(root, KEPT_DIR)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if is_sha256(name) and name != previous:
            fs.safe_unlink(os.path.join(directory, name))
