"""The real frozen stub under kill -9 and concurrency, on a bundle of about 30 MB of real binaries.

Every check of an install is made against the source files (testing/faults.py: install_problems), never
against what the stub wrote about itself. scripts/reliability.py runs more trials of the same kinds.
"""

import os
import random
import signal
import subprocess
import time

import pytest

from testing.faults import (
    SMALL,
    build,
    concurrent_starts,
    expected_files,
    extractions,
    install_problems,
    kill_at,
    kill_during_install,
    large_files,
    old_start_outcome,
    start,
    timed_install,
    version_dirs,
    write_project,
)


@pytest.fixture(scope="module")
def large(tmp_path_factory, cache_dir, stub_path):
    files = large_files(30)
    project = write_project(tmp_path_factory.mktemp("large"), files)
    return build(project, cache_dir), expected_files(project, files)


@pytest.fixture(scope="module")
def versions(tmp_path_factory, cache_dir, stub_path):
    """The same small bundle in versions 1.0.0 and 2.0.0 (different ids), and a 3.0.0."""
    built = {}
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        project = write_project(tmp_path_factory.mktemp("v" + version), SMALL, version=version)
        built[version] = (build(project, cache_dir), expected_files(project, SMALL))
    return built


@pytest.mark.slow
def test_kill_9_at_random_moments_then_the_next_start_completes_the_install(large, tmp_path):
    exe, expected = large
    duration = timed_install(exe, tmp_path / "timing")
    rng = random.Random(9)
    states = []
    for trial in range(6):
        root = tmp_path / f"root{trial}"
        states.append(kill_during_install(exe, root, rng.uniform(0, duration), tmp_path / "tmp"))
        recovered = start(exe, root)
        assert recovered.returncode == 0 and recovered.stdout.startswith("RAN"), (states[-1], recovered.stderr)
        assert install_problems(root, expected) == [], states[-1]
    print("crash states:", states)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point, state", [("during extraction", "extracting"), ("right after the rename", "renamed, no current link")]
)
def test_kill_9_at_the_delicate_points_then_the_next_start_repairs_everything(large, tmp_path, point, state):
    exe, expected = large
    rng = random.Random(point)
    states = []
    for trial in range(3):
        root = tmp_path / f"root{trial}"
        states.append(kill_at(exe, root, point, rng, tmp_path))
        recovered = start(exe, root)
        assert recovered.returncode == 0 and recovered.stdout.startswith("RAN"), (states[-1], recovered.stderr)
        assert install_problems(root, expected) == [], states[-1]
    assert state in states  # the kill did land where it was meant to, at least once


@pytest.mark.slow
def test_sixteen_concurrent_first_starts_extract_once_and_all_run(large, tmp_path):
    exe, expected = large
    root = tmp_path / "root"
    results = concurrent_starts([[exe, "--bundle-dir", root, f"n{i}"] for i in range(16)])
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results if r.returncode]
    assert all(r.stdout.startswith("RAN 1.0.0") for r in results)
    assert extractions(results) == 1
    assert len(version_dirs(root)) == 1 and install_problems(root, expected) == []


def test_installed_version_and_a_newer_one_started_together_both_work(versions, tmp_path):
    root = tmp_path / "root"
    (v1, _), (v2, expected2) = versions["1.0.0"], versions["2.0.0"]
    assert start(v1, root).returncode == 0
    results = concurrent_starts([[exe, "--bundle-dir", root] for exe in (v1, v2) * 4])
    old, new = results[0::2], results[1::2]
    assert [r.returncode for r in new] == [0] * 4, [r.stderr for r in new if r.returncode]
    assert [r.stdout.split()[1] for r in new] == ["2.0.0"] * 4
    # An old start runs while 1.0.0 is current; once 2.0.0 is, it is a downgrade and refused (exit 4), never
    # silently made current.
    for r in old:
        assert old_start_outcome(r, "1.0.0", "2.0.0") in ("ran", "refused"), r.stderr
    assert extractions(results) == 1  # only the new version installs; the old one takes the fast path
    assert install_problems(root, expected2) == []
    v1_id = start(v1, root, "--bundle-allow-downgrade").stdout.split()[2]  # allowed: it becomes current
    assert os.readlink(root / "current") == v1_id
    assert os.readlink(root / "previous") == new[0].stdout.split()[2]


def test_gc_spares_a_version_a_running_runtime_holds_and_removes_it_once_it_exits(versions, tmp_path):
    root = tmp_path / "root"
    (v1, _), (v2, _), (v3, expected3) = versions["1.0.0"], versions["2.0.0"], versions["3.0.0"]
    ready = tmp_path / "ready"
    # The runtime of v1 keeps running (the stub has exec'd it; it holds the lock it inherited).
    runtime = subprocess.Popen(
        [str(v1), "--bundle-dir", str(root)],
        start_new_session=True,
        env=dict(os.environ, FAULTS_HOLD=str(ready)),
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and runtime.poll() is None, "v1 did not start"
            time.sleep(0.01)
        assert start(v2, root).returncode == 0 and start(v3, root).returncode == 0
        v1_id = [
            v for v in version_dirs(root) if v not in (os.readlink(root / "current"), os.readlink(root / "previous"))
        ][0]
        collected = subprocess.run([str(v3), "--bundle-dir", str(root), "--bundle-gc"], capture_output=True, text=True)
        assert collected.returncode == 0, collected.stderr
        assert "removed 0 version(s)" in collected.stdout and v1_id[:12] in collected.stdout
        assert v1_id in version_dirs(root)
    finally:
        os.killpg(runtime.pid, signal.SIGKILL)
        runtime.wait()
    collected = subprocess.run([str(v3), "--bundle-dir", str(root), "--bundle-gc"], stdout=subprocess.PIPE, text=True)
    assert f"removed 1 version(s) [{v1_id[:12]}]" in collected.stdout
    assert len(version_dirs(root)) == 2 and install_problems(root, expected3) == []
