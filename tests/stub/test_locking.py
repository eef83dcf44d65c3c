"""stub/locking: real flock on real files (two open file descriptions conflict even inside one process)."""

import os
import subprocess
import sys
import threading

from stub import locking


def test_an_exclusive_lock_keeps_out_every_other_holder(tmp_path):
    path = str(tmp_path / "lock")
    held = locking.exclusive(path)
    try:
        assert locking.try_exclusive(path) is None
    finally:
        os.close(held)
    again = locking.try_exclusive(path)
    assert again is not None
    os.close(again)


def test_a_shared_lock_keeps_out_exclusive_but_not_shared(tmp_path):
    path = str(tmp_path / "version")
    shared = locking.hold_shared(path)
    try:
        assert locking.try_exclusive(path) is None
        other = locking.hold_shared(path)
        os.close(other)
    finally:
        os.close(shared)


def test_the_shared_lock_outlives_exec(tmp_path):
    """It is inheritable: a child that exec'd (the runtime) still holds it after this process lets go."""
    path = str(tmp_path / "version")
    shared = locking.hold_shared(path)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, close_fds=False
    )
    os.close(shared)
    try:
        assert locking.try_exclusive(path) is None  # the child's copy of the fd holds it
    finally:
        child.communicate(b"")
    fd = locking.try_exclusive(path)
    assert fd is not None
    os.close(fd)


def test_exclusive_waits_for_the_holder(tmp_path):
    path = str(tmp_path / "lock")
    held = locking.exclusive(path)
    got = []
    waiter = threading.Thread(target=lambda: got.append(locking.exclusive(path)))
    waiter.start()
    waiter.join(0.2)
    assert got == []  # still waiting (no timing: it simply has not got it while we hold it)
    os.close(held)
    waiter.join()
    assert len(got) == 1
    os.close(got[0])
