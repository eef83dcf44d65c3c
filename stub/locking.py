"""flock-based locks: one exclusive lock for installing, and a shared lock per installed version held by
every running process (the runtime inherits it across exec), so that garbage collection spares versions in use."""

import fcntl
import os

from payload.errors import HostError


def _open(path):
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise HostError(f"cannot open lock file {path}: {exc.strerror}; choose a writable --bundle-dir") from None


def exclusive(path):
    """Block until the exclusive lock on `path` is held; returns the fd (close it to release)."""
    fd = _open(path)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def hold_shared(path):
    """Take a shared lock that outlives exec: the fd is inheritable and never closed by us."""
    fd = _open(path)
    fcntl.flock(fd, fcntl.LOCK_SH)
    os.set_inheritable(fd, True)
    return fd


def try_exclusive(path):
    """The exclusive lock if nobody holds the file shared or exclusive, else None."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
