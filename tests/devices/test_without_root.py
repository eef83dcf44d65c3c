"""Portable stubs built without root: mmdebstrap's unshare mode and our own user namespace (bundler/stubs/userns.py),
run as a real unprivileged user with subordinate ids; and the one-line failures when a host cannot do that (no
subordinate ids, user namespaces switched off, binfmt_misc not mounted for a foreign architecture)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from bundler.build.glibc import stub_floor
from testing.devices import (
    OtherUser,
    require_root_tools,
    roots_cache,
    run_in_root,
    without_user_namespaces,
    write_project,
)
from testing.devices import portable_stub as build_as_root
from testing.helpers import bundler

pytestmark = pytest.mark.slow

NOBODY = (65534, 65534)


def require_unprivileged_tools():
    missing = [t for t in ("mmdebstrap", "newuidmap", "newgidmap", "setpriv") if shutil.which(t) is None]
    if missing:
        pytest.skip(reason="needs {} (scripts/setup installs mmdebstrap and uidmap)".format(", ".join(missing)))


def one_clear_line(result):
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="session")
def debian11(cache_dir):
    require_root_tools("amd64")
    return build_as_root(roots_cache(cache_dir), "amd64")[1]


def test_a_user_without_root_builds_a_real_amd64_stub_with_mmdebstrap(userns_user, other_home, debian11, tmp_path):
    require_unprivileged_tools()
    user = OtherUser(*userns_user, other_home(*userns_user))
    cache = user.home / "cache"  # inside the user's private (0700) home: mmdebstrap's own namespace cannot enter it
    built = user.bundler("stub", "--arch", "amd64", "--cache-dir", cache)
    assert built.returncode == 0, built.stderr
    assert "(mmdebstrap from " in built.stderr and "building the portable amd64 stub" in built.stderr
    stub = Path(built.stdout.strip())
    assert stub.parent == cache / "stubs" and stub.stat().st_uid == user.uid
    # The root was unpacked in the user's namespace: its root-owned files are the user's, its system users' are
    # subordinate ids, and the user can delete all of it without root (bundler does, through the namespace).
    (root,) = (cache / "stub-roots").glob("bullseye-amd64-*-unshare")
    assert (root / "usr/bin/python3.9").stat().st_uid == user.uid
    assert any(p.stat().st_uid >= 100000 for p in (root / "var").rglob("*") if not p.is_symlink())
    # A real stub: its floor fits Debian 11, and a bundle made with it starts there.
    floor, floors = stub_floor(stub)
    assert any(name.startswith("libpython3.9") for name in floors) and floor <= (2, 31)
    script = tmp_path / "report.sh"
    script.write_text('#!/bin/sh\necho "$(uname -m) $(getconf GNU_LIBC_VERSION)"\n')
    project = write_project(tmp_path / "p", {"bin/report": script}, ["bin/report"])
    bundler("make", "--stub", stub, "--cache-dir", tmp_path / "c", "--level", "3", "-o", tmp_path / "app", cwd=project)
    ran = run_in_root(debian11, tmp_path / "app")
    assert ran.returncode == 0 and ran.stdout == "x86_64 glibc 2.31\n", ran.stderr
    # The second call finds it.
    again = user.bundler("stub", "--arch", "amd64", "--cache-dir", cache)
    assert again.returncode == 0 and Path(again.stdout.strip()) == stub and "building" not in again.stderr


@pytest.mark.parametrize("command", ["stub", "make"])
def test_without_subordinate_ids_the_build_names_the_subuid_lines_to_add(command, other_home, tmp_path):
    require_unprivileged_tools()
    user = OtherUser(*NOBODY, other_home(*NOBODY))  # nobody has no /etc/subuid lines
    write_project(user.home, {"bin/busybox": "/bin/busybox"}, ["bin/busybox"])
    args = ["--arch", "arm64", "--cache-dir", user.home / "cache"] + (
        ["-o", user.home / "app"] if command == "make" else []
    )
    message = one_clear_line(user.bundler(command, *args))
    assert "/etc/subuid" in message and "usermod --add-subuids" in message and "--stub PATH" in message
    assert not (user.home / "cache" / "stub-roots").exists() and not (user.home / "app").exists()


def test_with_user_namespaces_switched_off_the_build_says_so(userns_user, other_home):
    require_unprivileged_tools()
    user = OtherUser(*userns_user, other_home(*userns_user))
    result = without_user_namespaces(
        user.bundler_argv("stub", "--arch", "amd64", "--cache-dir", user.home / "c"), user.env(), user.home
    )
    message = one_clear_line(result)
    assert "user namespace" in message and "max_user_namespaces" in message and "--stub PATH" in message
    assert not (user.home / "c" / "stub-roots").exists()


def test_foreign_arch_without_binfmt_misc_says_what_root_must_run(userns_user, other_home):
    require_unprivileged_tools()
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        pytest.skip(reason="binfmt_misc is not mounted on this host")
    user = OtherUser(*userns_user, other_home(*userns_user))
    # A private mount namespace where binfmt_misc is not mounted (the host's stays as it is).
    unmounted = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'umount /proc/sys/fs/binfmt_misc && exec "$@"',
        "sh",
    ]
    message = one_clear_line(user.bundler("stub", "--arch", "arm64", "--cache-dir", user.home / "c", wrapper=unmounted))
    assert "binfmt_misc" in message and "mount -t binfmt_misc" in message
    assert "update-binfmts --enable qemu-aarch64" in message and "as root" in message
    assert subprocess.run(["cat", "/proc/sys/fs/binfmt_misc/status"], capture_output=True).returncode == 0
