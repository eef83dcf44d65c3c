"""--bundle-rollback (make `previous` current again, and `current` previous) and the downgrade check: a start of
a version older than `current` (payload/versions.py orders them) needs --bundle-allow-downgrade."""

import errno
import os

from payload import fs
from payload.errors import HostError
from payload.versions import is_older
from stub import install, locking, owner
from stub.root import CURRENT, LOCK, LOCKS_DIR, PREVIOUS, PROBATION, Installation


def _target(root, name):
    return fs.link_target(os.path.join(root, name))


def installed_version(root, bundle_id):
    """The version string recorded in an installed version dir, or None when it has no record."""
    version = Installation(root, bundle_id).index_doc().get("version")
    return version if isinstance(version, str) else None


def _describe(root, bundle_id):
    return "{} ({})".format(installed_version(root, bundle_id) or "unknown version", bundle_id[:12])


def newer_current(root, bundle_id, version):
    """The version `current` names when it is another version newer than `version`, else None."""
    current = _target(root, CURRENT)
    if current is None or current == bundle_id:
        return None
    current_version = installed_version(root, current)
    return current_version if current_version is not None and is_older(version, current_version) else None


def check_downgrade(root, bundle_id, index, allowed):
    """Refuse (exit 4) to start a version older than `current` unless allowed; True when it is such a start."""
    newer = newer_current(root, bundle_id, index.version)
    if newer is None:
        return False
    if not allowed:
        raise HostError(
            f"{index.name} {index.version} is older than the current version {newer} in {root}; add "
            "--bundle-allow-downgrade to run it (it then becomes current), or use --bundle-rollback to return to the "
            "previous version"
        )
    return True


def rollback(root, name, executable=None, bundle_id=None, only_from=None):
    """Swap `current` and `previous` under the install lock; returns a one-line summary. When `executable` (the
    bundle file running this, of `bundle_id`) is the one an update put in place of the version now made current,
    the bundle file that update kept (stub/update.py) is put back too, and this one kept in its place. A rollback
    ends a probation (stub/probation.py). With `only_from`, an automatic rollback: only away from that version,
    and one that finds the swap made (by a rollback cut short, or another start) finishes the rest."""
    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, LOCKS_DIR)):
        raise HostError(f"nothing is installed in {root}, so there is nothing to roll back; check --bundle-dir")
    install.prepare_root(root)
    owner.check(root, name)
    lock = locking.exclusive(os.path.join(root, LOCK))
    try:
        current, previous = _target(root, CURRENT), _target(root, PREVIOUS)
        if only_from is not None and only_from not in (current, previous):
            raise HostError(f"{only_from[:12]} is neither current nor previous in {root} any more")
        swapped = only_from is not None and current != only_from and previous == only_from
        if swapped:
            current, previous = previous, current  # as they stood before the swap
        elif previous is None or previous == current:
            raise HostError(
                "{} has no previous version to roll back to (current: {})".format(
                    root, _describe(root, current) if current else "none"
                )
            )
        if not Installation(root, previous).is_installed():
            raise HostError(
                f"the previous version {previous[:12]} in {root} is not completely installed; start its bundle file "
                "to install it again"
            )
        if not swapped:
            _exchange(root, current, previous)
        restored = _restore_executable(root, executable, bundle_id, current, previous)
        fs.safe_unlink(os.path.join(root, PROBATION))
    except OSError as exc:
        raise HostError(f"cannot roll back in {root}: {exc.strerror or exc}") from None
    finally:
        os.close(lock)
    return "{}: rolled back: current is now {} {}, previous {}{}".format(
        root,
        name,
        _describe(root, previous),
        _describe(root, current),
        f"; {executable} is that version's bundle file again" if restored else "",
    )


def _restore_executable(root, executable, bundle_id, current, previous):
    """Put back the bundle file of `previous` (now current) where `executable` is, when the root keeps it and
    `executable` is the file of `current` (now previous); that one is kept in turn, so a second rollback undoes
    the first. True when it did."""
    from stub.update import kept_path

    kept = kept_path(root, previous)
    if executable is None or bundle_id != current or not os.path.isfile(kept):
        return False
    if not os.path.exists(kept_path(root, current)):
        fs.link_or_copy(executable, kept_path(root, current))
    fs.link_or_copy(kept, executable)
    fs.safe_unlink(kept)  # `executable` is that file now: a rollback back keeps it again
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a, b):
    """renameat2(RENAME_EXCHANGE): swap two names in one atomic step (Linux 3.15, glibc 2.28). False when this
    libc or file system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error))


def _exchange(root, current, previous):
    """Swap what `current` and `previous` name: in one atomic rename where the kernel can. Elsewhere each link
    is replaced atomically, `current` first, so a crash in between leaves `current` naming the rolled-back
    (installed) version, and `previous` naming it too: never a root without a usable `current`."""
    if _rename_exchange(os.path.join(root, CURRENT), os.path.join(root, PREVIOUS)):
        fs.fsync_dir(root)
        return
    fs.replace_symlink(previous, os.path.join(root, CURRENT), durable=False)
    fs.replace_symlink(current, os.path.join(root, PREVIOUS))
