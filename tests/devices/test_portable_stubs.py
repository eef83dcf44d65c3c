"""Portable stubs built in Debian roots, and bundles made with them started inside such roots: amd64 in Debian 11
(glibc 2.31) natively, arm64 under qemu-user-static. The roots and stubs are built once per session (or found in
$BUNDLER_TEST_ROOTS_CACHE)."""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from bundler.build.glibc import stub_floor
from testing.devices import PORTABLE, portable_stub, require_root_tools, roots_cache, run_in_root, write_project
from testing.faults import sha256_of
from testing.helpers import ROOT, bundler, stub_bootloader
from testing.loader import ON_DEMAND, initialised

pytestmark = pytest.mark.slow

REPORT = """#!/bin/sh
echo "machine $(uname -m)"
echo "$(getconf GNU_LIBC_VERSION)"
echo "arch $BUNDLE_ARCH"
"""


@pytest.fixture(scope="session")
def devices_cache(cache_dir):
    return roots_cache(cache_dir)


@pytest.fixture(scope="session")
def amd64(devices_cache):
    require_root_tools("amd64")
    return portable_stub(devices_cache, "amd64")


@pytest.fixture(scope="session")
def arm64(devices_cache):
    require_root_tools("arm64")
    return portable_stub(devices_cache, "arm64")


def readelf(*args):
    return subprocess.run(["readelf", *map(str, args)], stdout=subprocess.PIPE, text=True, check=True).stdout


def test_amd64_bundle_made_the_default_way_starts_in_debian_11(amd64, devices_cache, tmp_path):
    stub, root, _ = amd64
    script = tmp_path / "report.sh"
    script.write_text(REPORT)
    project = write_project(tmp_path / "p", {"bin/report": script}, ["bin/report"])
    made = bundler(
        "make", "--cache-dir", devices_cache, "--level", "3", "-o", tmp_path / "app", cwd=project, env=PORTABLE
    )
    assert "building the portable" not in made.stderr  # the session's stub, found in the cache
    ran = run_in_root(root, tmp_path / "app")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["machine x86_64", "glibc 2.31", "arch amd64"]
    # An installed start is the launcher's alone: no Python, nothing of the stub's loaded (the loader's own trace).
    fast = run_in_root(root, tmp_path / "app", env={"LD_DEBUG": "files"})
    assert fast.returncode == 0 and fast.stdout == ran.stdout, fast.stderr
    assert not [p for p in initialised(fast.stderr) if "/_MEI" in p], fast.stderr
    # The stub's installed start (an option sends a start to it) loads none of the on-demand set.
    again = run_in_root(root, tmp_path / "app", "--bundle-no-pull", env={"LD_DEBUG": "files"})
    assert again.returncode == 0, again.stderr
    loaded = initialised(again.stderr)
    assert [p for p in loaded if "/_MEI" in p and "libpython3.9" in p], loaded  # the trace is the stub's
    assert not [p for p in loaded if os.path.basename(p).startswith(ON_DEMAND)], loaded
    # The same bundle with the host's stub dies there: the root really is older than this host.
    bundler(
        "make", "--stub", "host", "--cache-dir", devices_cache, "--level", "3", "-o", tmp_path / "host-app", cwd=project
    )
    dead = run_in_root(root, tmp_path / "host-app")
    assert dead.returncode != 0 and "GLIBC_2.3" in dead.stderr


def test_a_rollback_in_debian_11_unpacks_ctypes_on_python_3_9(amd64, devices_cache, tmp_path):
    """renameat2 goes through ctypes, which the stub unpacks only for a rollback: on the stub's Python 3.9 too."""
    stub, root, _ = amd64
    shutil.rmtree(root / "var/lib/rollback39", ignore_errors=True)  # the root may be kept between runs
    script = tmp_path / "report.sh"
    script.write_text('#!/bin/sh\necho "version $BUNDLE_VERSION"\n')
    for version in ("1.0.0", "1.1.0"):
        project = write_project(
            tmp_path / version, {"bin/report": script}, ["bin/report"], name="rollback39", version=version
        )
        bundler(
            "make",
            "--cache-dir",
            devices_cache,
            "--level",
            "3",
            "-o",
            tmp_path / ("app-" + version),
            cwd=project,
            env=PORTABLE,
        )
        ran = run_in_root(root, tmp_path / ("app-" + version), "--bundle-dir", "/var/lib/rollback39")
        assert ran.returncode == 0 and ran.stdout == f"version {version}\n", ran.stderr
    rolled = run_in_root(
        root,
        tmp_path / "app-1.1.0",
        "--bundle-dir",
        "/var/lib/rollback39",
        "--bundle-rollback",
        env={"LD_DEBUG": "files"},
    )
    assert rolled.returncode == 0, rolled.stderr
    assert "current is now rollback39 1.0.0" in rolled.stdout
    loaded = initialised(rolled.stderr)
    for name in ("libffi", "_ctypes.cpython-39"):
        assert [p for p in loaded if os.path.basename(p).startswith(name) and "/_MEI" in p], loaded
    again = run_in_root(root, tmp_path / "app-1.0.0", "--bundle-dir", "/var/lib/rollback39")
    assert again.returncode == 0 and again.stdout == "version 1.0.0\n", again.stderr


def test_a_truncated_cached_stub_is_built_again_not_used(amd64, devices_cache, tmp_path):
    stub, root, _ = amd64
    whole, root_inode = sha256_of(stub), root.stat().st_ino
    with open(stub, "r+b") as f:  # a full disk or a copy cut short
        f.truncate(stub.stat().st_size // 3)
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox", "uname", "-m"])
    made = bundler(
        "make", "--cache-dir", devices_cache, "--level", "3", "-o", tmp_path / "app", cwd=project, env=PORTABLE
    )
    assert f"cache entry {stub} is damaged" in made.stderr and "building the portable amd64 stub" in made.stderr
    assert root.stat().st_ino == root_inode  # only the stub is built again, in the same root
    assert sha256_of(stub) == whole  # built again byte for byte (docs/reproducible.md)
    ran = run_in_root(root, tmp_path / "app")
    assert ran.returncode == 0 and ran.stdout == "x86_64\n", ran.stderr


def test_a_stub_build_waits_for_another_build_in_its_root_and_says_so(amd64, devices_cache, tmp_path):
    """Two stub builds in one root (another checkout of bundler: another stub key) share its work dir and venv:
    the second waits on the root's build lock, held here as that other build would hold it, and says so. It
    waits for as long as the lock is held, so the order of the checks below is not a matter of timing."""
    from bundler.stubs.debian import build_lock

    stub, root, _ = amd64
    stub.unlink()  # this key must build again: only the root and its venv are cached
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(build_lock(root), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bundler", "stub", "--arch", "amd64", "--cache-dir", str(devices_cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        said = []
        while not said or "waiting for another stub build in this root" not in said[-1]:
            line = proc.stderr.readline()
            assert line, "the build ended without waiting for the lock: {}".format("".join(said))
            said.append(line)
        assert not (root / "tmp" / "bundler-stub").exists()  # nothing of this build in the root yet
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, "".join(said) + err
    assert Path(out.strip()) == stub and stub.is_file()
    assert "portable amd64 stub ready" in err


def test_lock_stubs_pins_the_portable_stub_and_a_locked_make_refuses_the_host_one(
    amd64, devices_cache, stub_path, tmp_path
):
    stub, root, _ = amd64
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox", "uname", "-m"])
    locked = bundler("lock", "--arch", "amd64", "--stubs", "--cache-dir", devices_cache, cwd=project)
    assert "building the portable" not in locked.stderr  # the session's stub, found in the cache
    rows = tomllib.loads((project / "bundle.lock").read_text())["stub"]
    assert [row["arch"] for row in rows] == ["amd64"]
    make = ("make", "--locked", "--cache-dir", devices_cache, "--level", "3")
    bundler(*make, "-o", tmp_path / "app", cwd=project, env=PORTABLE)
    index = json.loads(bundler("inspect", "--json", tmp_path / "app").stdout)
    assert index["stub_sha256"] == rows[0]["stub_sha256"]
    ran = run_in_root(root, tmp_path / "app")
    assert ran.returncode == 0 and ran.stdout == "x86_64\n", ran.stderr
    # The quick host stub is another stub: a locked make refuses it, naming both digests.
    refused = bundler(*make, "--stub", stub_path, "-o", tmp_path / "host-app", cwd=project, check=False)
    assert refused.returncode == 3 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"pinned to stub_sha256 {rows[0]['stub_sha256']}, but {stub_path} has " in refused.stderr
    assert not (tmp_path / "host-app").exists()


def test_arm64_bundle_installs_verifies_and_runs_its_arm64_binary_under_qemu(arm64, devices_cache, tmp_path):
    stub, root, _ = arm64
    uname = root / "bin" / "uname"  # a real arm64 binary, from the arm64 root itself
    assert "AArch64" in readelf("-h", uname)
    project = write_project(tmp_path / "p", {"bin/uname": uname}, ["bin/uname", "-m"])
    made = bundler(
        "make",
        "--arch",
        "arm64",
        "--cache-dir",
        devices_cache,
        "--level",
        "3",
        "-o",
        tmp_path / "app",
        cwd=project,
        env=PORTABLE,
    )
    assert re.search(r"glibc floor: \S+ \(stub \S+, files \S+\)", made.stderr), made.stderr
    assert "AArch64" in readelf("-h", tmp_path / "app")
    first = run_in_root(root, tmp_path / "app")
    assert first.returncode == 0 and first.stdout == "aarch64\n", first.stderr
    assert any(Path(root, "var/lib/devices").glob("*/bin/uname"))  # installed inside the root, as root there
    again = run_in_root(root, tmp_path / "app")
    assert again.returncode == 0 and again.stdout == "aarch64\n"
    verified = run_in_root(root, tmp_path / "app", "--bundle-verify")
    assert verified.returncode == 0 and "ok" in verified.stdout, verified.stderr
    info = json.loads(run_in_root(root, tmp_path / "app", "--bundle-info", "--json").stdout)
    assert info["arch"] == "arm64" and info["min_glibc"]


@pytest.mark.parametrize("which", ["amd64", "arm64"])
def test_portable_stub_floor_is_read_from_its_files_and_fits_debian_11(which, request, tmp_path):
    stub, root, _ = request.getfixturevalue(which)
    floor, floors = stub_floor(stub)
    assert not re.findall(r"Name: GLIBC_", readelf("-V", "-W", stub))  # the launcher in front is static
    bootloader = re.findall(r"Name: GLIBC_(\d+)\.(\d+)", readelf("-V", "-W", stub_bootloader(stub, tmp_path / "b")))
    assert floors["bootloader"] == max((int(a), int(b)) for a, b in bootloader)
    assert any(name.startswith("libpython3.9") for name in floors)
    root_glibc = subprocess.run(
        ["chroot", str(root), "getconf", "GNU_LIBC_VERSION"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.split()[1]
    assert root_glibc == "2.31" and floor <= (2, 31)
    assert stub.stat().st_size < 12e6


def test_second_stub_call_finds_the_cached_stub(arm64, devices_cache):
    stub, _, _ = arm64
    before = stub.stat().st_mtime_ns
    again = bundler("stub", "--arch", "arm64", "--cache-dir", devices_cache)
    assert Path(again.stdout.strip()) == stub and "building" not in again.stderr
    assert stub.stat().st_mtime_ns == before


def test_fetch_stubs_then_offline_make_on_a_copy_of_the_cache(arm64, devices_cache, tmp_path):
    stub, root, _ = arm64
    project = write_project(tmp_path / "p", {"bin/uname": root / "bin" / "uname"}, ["bin/uname", "-m"])
    fetched = bundler("fetch", "--arch", "arm64", "--stubs", "--cache-dir", devices_cache, cwd=project)
    assert f"portable arm64 stub: {stub}" in fetched.stderr
    # The air-gapped host: only the stubs and the fetched sources travel (no roots, no network).
    airgap = tmp_path / "airgap-cache"
    airgap.mkdir()
    for kind in ("stubs", "blobs", "maps"):
        subprocess.run(["cp", "-a", str(devices_cache / kind), str(airgap / kind)], check=True)
    made = bundler(
        "make", "--arch", "arm64", "--offline", "--cache-dir", airgap, "-o", tmp_path / "app", cwd=project, env=PORTABLE
    )
    assert "building" not in made.stderr
    assert run_in_root(root, tmp_path / "app").stdout == "aarch64\n"


def test_offline_make_without_a_cached_stub_fails_at_once_naming_fetch(tmp_path):
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox"])
    result = bundler(
        "make",
        "--arch",
        "arm64",
        "--offline",
        "--cache-dir",
        tmp_path / "cache",
        cwd=project,
        env=PORTABLE,
        check=False,
    )
    assert result.returncode == 4 and "bundler fetch --stubs --arch arm64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
