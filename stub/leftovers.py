"""The one-file bootloader's leftovers: it unpacks the stub's Python into $TMPDIR/_MEIxxxxxx at every start and
removes that dir when the runtime exits, but a SIGKILL of the bootloader (a power cut, an OOM kill of the group)
leaves it for good, the whole unpacked Python each time.

Each start marks its own dir and holds a shared flock on the mark for its whole life, and the runtime inherits
it across exec (as it does the version lock). A later start removes every `_MEI*` dir beside its own that is
owned by this user, carries the mark, and whose mark it can lock exclusively without waiting: only then is no
process of that run left. A dir without the mark (another PyInstaller program, or a run that died before our code
started) is never touched. The mark is created under a temporary name, locked, then renamed into place, so a mark
that can be seen is always locked by its creator while that creator lives.
"""

import fcntl
import os
import sys

from payload import fs

MARK = ".bundler-stub-alive"
_PREFIX = "_MEI"


def _bootloader_dir():
    """This run's unpack dir when running frozen as a one-file program, else None."""
    path = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not path or not os.path.basename(path).startswith(_PREFIX):
        return None
    return path


def mark_own_run():
    """Mark this run's unpack dir and hold the mark (shared, inherited across exec). Returns the fd or None."""
    own = _bootloader_dir()
    if own is None:
        return None
    temp = os.path.join(own, MARK + fs.TEMP_MARK + str(os.getpid()))
    try:
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.set_inheritable(fd, True)
        os.rename(temp, os.path.join(own, MARK))
    except OSError:
        return None  # a mark is a courtesy: never a reason not to start
    return fd


def remove_dead_runs():
    """Remove the unpack dirs of this stub's dead runs beside this run's own; returns their paths."""
    own = _bootloader_dir()
    if own is None:
        return []
    parent, removed = os.path.dirname(own), []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        if not name.startswith(_PREFIX) or path == own:
            continue
        try:
            st = os.lstat(path)
            if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.geteuid():
                continue
            fd = os.open(os.path.join(path, MARK), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # no mark: not ours, or not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live run holds it
        try:
            fs.safe_rmtree(path)
            removed.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed
