"""stub/gc.py on real directories, with versions held by real processes (util-linux `flock`, not our code)."""

import os
import signal
import subprocess
import time

import pytest

from stub import gc, install
from stub.root import INDEX_FILE, LOCK, LOCKS_DIR, MARKER

IDS = {name: (name[0] * 64) for name in ("a", "b", "c", "d", "e")}


def make_version(root, bundle_id):
    path = os.path.join(root, bundle_id)
    os.makedirs(os.path.join(path, "bin"))
    with open(os.path.join(path, "bin", "tool"), "w") as f:
        f.write("#!/bin/sh\n")
    with open(os.path.join(path, MARKER), "w") as f:
        f.write(bundle_id + "\n")


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "root")
    os.makedirs(os.path.join(root, LOCKS_DIR))
    for bundle_id in IDS.values():
        make_version(root, bundle_id)
    os.symlink(IDS["e"], os.path.join(root, "current"))
    os.symlink(IDS["d"], os.path.join(root, "previous"))
    os.makedirs(os.path.join(root, "data", "state"))  # the runtime's persistent data
    os.makedirs(os.path.join(root, "f" * 63))  # not a bundle id: not ours to remove
    os.makedirs(os.path.join(root, "." + IDS["a"] + install.WORK_SUFFIX + "999"))  # a crashed install
    return root


class Holder:
    """A real process that holds a version's shared lock, as a running runtime does."""

    def __init__(self, root, bundle_id):
        lock = self.lock = os.path.join(root, LOCKS_DIR, bundle_id)
        self.ready = lock + ".ready"
        self.proc = subprocess.Popen(
            ["flock", "--shared", lock, "sh", "-c", 'touch "$0"; exec sleep 30', self.ready], start_new_session=True
        )
        deadline = time.time() + 10
        while not os.path.exists(self.ready):
            assert time.time() < deadline and self.proc.poll() is None, "flock did not start"
            time.sleep(0.01)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGKILL)  # flock and its child: both hold the lock
        self.proc.wait()
        # The killed child (sleep) may outlive flock by a moment: wait until the lock is really free.
        deadline = time.time() + 10
        while subprocess.run(["flock", "--nonblock", self.lock, "true"]).returncode != 0:
            assert time.time() < deadline, "the holder's lock was not released"
            time.sleep(0.01)


def present(root):
    return sorted(n for n in os.listdir(root) if not n.startswith("."))


def test_removes_all_but_current_previous_and_versions_in_use(root):
    holder = Holder(root, IDS["b"])
    try:
        done = gc.collect(root)
    finally:
        holder.stop()
    assert sorted(done.removed) == [IDS["a"], IDS["c"]]
    assert sorted(done.kept) == [IDS["d"], IDS["e"]] and done.in_use == [IDS["b"]]
    assert present(root) == sorted([IDS["b"], IDS["d"], IDS["e"], "current", "data", "f" * 63, "previous"])
    assert os.path.isdir(os.path.join(root, "data", "state"))
    assert [n for n in os.listdir(root) if install.WORK_SUFFIX in n] == []
    # Once its process has exited, the version goes too.
    assert gc.collect(root).removed == [IDS["b"]]
    assert gc.collect(root).removed == []


def test_waits_for_an_install_in_progress(root):
    # The install lock is held by a real process: gc must not touch the root until it is released.
    started = time.time()
    proc = subprocess.Popen(["flock", os.path.join(root, LOCK), "sleep", "0.5"])
    time.sleep(0.1)
    done = gc.collect(root)
    proc.wait()
    assert time.time() - started >= 0.45 and len(done.removed) == 3


def test_a_root_where_nothing_was_installed_is_left_alone(tmp_path):
    root = tmp_path / "never"
    assert gc.collect(str(root)).removed == []
    assert not root.exists()


def test_summary_names_what_happened(root):
    text = gc.collect(root).summary()
    assert "removed 3 version(s)" in text and IDS["a"][:12] in text and "in use by a running process [none]" in text


def test_an_id_with_a_trailing_newline_is_not_a_version(root):
    make_version(root, IDS["a"] + "\n")  # not a name bundler gives a version: not ours to remove
    assert IDS["a"] + "\n" not in gc.collect(root).removed
    assert os.path.isdir(os.path.join(root, IDS["a"] + "\n"))


def _record_versions(root, versions):
    """Give each version dir the index record a real install writes (its version is what retention orders by)."""
    for name, version in versions.items():
        with open(os.path.join(root, IDS[name], INDEX_FILE), "w") as f:
            f.write(f'{{"version": "{version}"}}')


def test_retention_keeps_current_previous_then_the_newest_others_and_never_one_in_use(root):
    _record_versions(root, {"a": "1.10.0", "b": "1.2.0", "c": "1.9.0", "d": "1.11.0", "e": "1.12.0"})
    holder = Holder(root, IDS["b"])
    try:
        done = gc.collect(root, keep=3)  # e (current), d (previous), then a: 1.10.0 is newer than 1.9.0
    finally:
        holder.stop()
    assert sorted(done.kept) == sorted([IDS["a"], IDS["d"], IDS["e"]])
    assert done.removed == [IDS["c"]] and done.in_use == [IDS["b"]]
    assert sorted(gc.collect(root, keep=1).removed) == sorted([IDS["a"], IDS["b"], IDS["d"]])
    assert [n for n in present(root) if len(n) == 64] == [IDS["e"]]
