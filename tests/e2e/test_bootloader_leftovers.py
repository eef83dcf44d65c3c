"""The one-file bootloader's $TMPDIR/_MEI* dirs, with the real frozen stub and real SIGKILLs: a killed run's dir
is removed by a later start, a live run's dir and a dir without our mark never are."""

import os
import signal
import subprocess
import time

import pytest

from testing.faults import SMALL, build, start, write_project


@pytest.fixture(scope="module")
def small(tmp_path_factory, cache_dir, stub_path):
    project = write_project(tmp_path_factory.mktemp("leftovers"), SMALL)
    return build(project, cache_dir, "--stub", stub_path)


def _mei_dirs(tmpdir):
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("_MEI"))


def _holding_run(exe, root, tmpdir, hold):
    """A run whose runtime stays up (FAULTS_HOLD), in its own process group; returns once it holds."""
    env = dict(os.environ, TMPDIR=str(tmpdir), FAULTS_HOLD=str(hold))
    proc = subprocess.Popen(
        [str(exe), "--bundle-dir", str(root)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        if hold.exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the runtime never started")


def test_a_killed_runs_tmp_dir_is_removed_by_the_next_start_and_nothing_else(small, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    root = tmp_path / "root"
    foreign = tmpdir / "_MEIforeign"  # what another PyInstaller program leaves: no mark of ours
    foreign.mkdir()
    (foreign / "libpython3.so").write_bytes(b"not ours")

    killed = _holding_run(small, root, tmpdir, tmp_path / "held-1")
    (killed_dir,) = [d for d in _mei_dirs(tmpdir) if d != foreign.name]
    assert (tmpdir / killed_dir / ".bundler-stub-alive").is_file()
    live = _holding_run(small, root, tmpdir, tmp_path / "held-2")
    (live_dir,) = [d for d in _mei_dirs(tmpdir) if d not in (foreign.name, killed_dir)]

    os.killpg(killed.pid, signal.SIGKILL)  # the bootloader and the runtime, as a power cut or an OOM kill would
    killed.wait()
    assert killed_dir in _mei_dirs(tmpdir)  # the bootloader could not clean up after itself

    later = start(small, root, env={"TMPDIR": str(tmpdir)})
    assert later.returncode == 0 and later.stdout.startswith("RAN"), later.stderr
    # The killed run's dir is gone; the live run's and the foreign one are kept; the later run's own dir was
    # removed by its bootloader when it ended.
    assert _mei_dirs(tmpdir) == sorted([foreign.name, live_dir])
    assert (foreign / "libpython3.so").read_bytes() == b"not ours"

    os.killpg(live.pid, signal.SIGTERM)  # forwarded to the runtime by the bootloader, which then cleans up
    live.wait()
    assert _mei_dirs(tmpdir) == [foreign.name]
