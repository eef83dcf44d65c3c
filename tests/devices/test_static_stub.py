"""Static stubs (`--stub static`) in roots that hold no C library at all, only Debian's busybox-static and /proc:
amd64 natively, arm64 under qemu-user-static. The bundles are realistic (files, the solo example's two images, a
signature, an [update] repository on a real docker-registry); a fault a device can show (no /proc, a noexec or full
TMPDIR, files that need a glibc the system lacks) gets one line and exit 4, and nothing is installed."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from payload.elf import find_section
from payload.layout import LIBC
from testing.bundles import realistic_bundle
from testing.devices import (
    PORTABLE,
    bare_root,
    in_root_command,
    portable_stub,
    require_root_tools,
    roots_cache,
    run_in_root,
    write_project,
)
from testing.faults import sha256_of
from testing.helpers import bundler
from testing.registry import Registry
from testing.sbom import check_spdx
from tests.conftest import require_registry_tools

pytestmark = pytest.mark.slow

REPORT = '#!/bin/sh\necho "$BUNDLE_VERSION $BUNDLE_ARCH [$*]"\n'
TRAP = """#!/bin/sh
for s in HUP INT QUIT USR1 USR2 TERM WINCH; do trap "echo got $s" $s; done
echo ready
i=0
while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); [ -e /tmp/stop ] && exit 0; done
"""


@pytest.fixture(scope="module")
def devices_cache(cache_dir):
    return roots_cache(cache_dir)


def static_stub(cache, arch):
    require_root_tools(arch)
    portable_stub(cache, arch)  # the session's portable stub, which the static one is made from
    made = bundler("stub", "--static", "--arch", arch, "--cache-dir", cache)
    return Path(made.stdout.strip()), made.stderr


@pytest.fixture(scope="module")
def amd64(devices_cache):
    return static_stub(devices_cache, "amd64")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    require_registry_tools()
    with Registry(tmp_path_factory.mktemp("storage")) as running:
        yield running


@pytest.fixture(scope="module")
def releases(amd64, registry, tmp_path_factory):
    """1.0.0 and 1.0.1 of a realistic bundle with the static stub, signed by one key, 1.0.1 pushed as :stable."""
    stub, _ = amd64
    work = tmp_path_factory.mktemp("releases")
    repository = f"{registry.host}/edge/static:stable"
    old, pub = realistic_bundle(work / "old", stub, hello=REPORT, repository=repository)
    new, _ = realistic_bundle(
        work / "new", stub, hello=REPORT, version="1.0.1", key=work / "old" / "release.key", repository=repository
    )
    bundler("push", new, repository)
    return old, new, pub


@pytest.fixture
def root(devices_cache, tmp_path):
    return bare_root(tmp_path / "root", devices_cache, "amd64")


def no_libc_in(root):
    return not [p for p in Path(root).rglob("*") if p.name.startswith(("libc.", "libc-", "ld-linux", "ld-musl"))]


def test_the_static_stub_says_what_it_needs_and_lists_the_c_library_it_carries(amd64, releases, tmp_path):
    _, made = amd64
    assert "stub glibc floor: none (it carries its own); Linux 3.2 or later" in made
    old, _, _ = releases
    check_spdx(old.with_name(old.name + ".spdx.json"))
    doc = json.loads(old.with_name(old.name + ".spdx.json").read_text())
    packages = {p["name"]: p for p in doc["packages"] if p.get("versionInfo")}
    assert packages["libc6"]["licenseDeclared"] == "LGPL-2.1-or-later", packages["libc6"]
    assert packages["libc6"]["versionInfo"].startswith("2.36"), packages["libc6"]
    # The bundle's index records no glibc floor: the stub needs none, and these files none either; inspect says
    # what the stub carries and needs.
    inspected = json.loads(bundler("inspect", old, "--json").stdout)
    assert inspected.get("min_glibc") is None
    carried = inspected["stub_libc"]
    assert carried["files"][0] == "ld-linux-x86-64.so.2" and "libc.so.6" in carried["files"], carried
    assert "stub libc:  carried" in bundler("inspect", old).stdout
    # The carried C library is part of the stub the signed index pins: one flipped bit in it and the bundle fails
    # its check.
    damaged = tmp_path / "damaged"
    damaged.write_bytes(old.read_bytes())
    with open(damaged, "r+b") as f:
        offset, size = find_section(f, LIBC)
        f.seek(offset + size // 2)
        byte = f.read(1)[0]
        f.seek(offset + size // 2)
        f.write(bytes([byte ^ 1]))
    os.chmod(damaged, 0o755)
    checked = subprocess.run([damaged, "--bundle-verify"], capture_output=True, text=True)
    assert checked.returncode == 3 and "the stub" in checked.stderr, checked.stderr


def test_a_realistic_bundle_installs_runs_updates_and_rolls_back_in_a_root_without_libc(root, releases):
    old, new, _ = releases
    assert no_libc_in(root)
    app = root / "opt" / "app"
    app.write_bytes(old.read_bytes())
    os.chmod(app, 0o755)
    first = run_in_root(root, "/opt/app", "one", "two words", "")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "1.0.0 amd64 [one two words ]\n"
    assert "installing demo 1.0.0" in first.stderr
    verified = run_in_root(root, "/opt/app", "--bundle-verify")
    assert verified.returncode == 0 and "ok" in verified.stdout, verified.stderr
    # An installed start is the launcher's alone: it unpacks nothing, so a noexec TMPDIR does not stop it (a
    # start through the stub is refused there, below).
    noexec = ("/tmp2", "noexec,size=16m")
    fast = run_in_root(root, "/opt/app", "again", env={"TMPDIR": "/tmp2"}, tmpfs=noexec)
    assert fast.returncode == 0 and fast.stdout == "1.0.0 amd64 [again]\n", fast.stderr
    slow = run_in_root(root, "/opt/app", "--bundle-no-pull", env={"TMPDIR": "/tmp2"}, tmpfs=noexec)
    assert slow.returncode == 4 and "noexec" in slow.stderr, slow.stderr
    updated = run_in_root(root, "/opt/app", "--bundle-update")
    assert updated.returncode == 0 and "updated demo 1.0.0 -> 1.0.1" in updated.stdout, updated.stderr
    assert sha256_of(app) == sha256_of(new)
    assert run_in_root(root, "/opt/app", "x").stdout == "1.0.1 amd64 [x]\n"
    rolled = run_in_root(root, "/opt/app", "--bundle-rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert sha256_of(app) == sha256_of(old)
    assert run_in_root(root, "/opt/app", "y").stdout == "1.0.0 amd64 [y]\n"
    assert no_libc_in(root)


def test_what_reads_a_stub_reads_a_static_one_pull_split_and_copy(root, releases, registry, tmp_path):
    """The carried C library is outside bytes like the rest of the stub: a pull rebuilds the file byte for byte, a
    split's executable keeps it (and starts in the root with its part beside it), and a copy checks it."""
    old, new, _ = releases
    pulled = tmp_path / "pulled"
    bundler("pull", f"{registry.host}/edge/static:stable", "--output", pulled)
    assert sha256_of(pulled) == sha256_of(new)
    split = root / "opt" / "split"
    bundler("split", old, "--size", "4M", "--output", split)
    parts = sorted(p.name for p in split.parent.iterdir() if p.name.startswith("split.part"))
    assert parts and split.stat().st_size < old.stat().st_size
    ran = run_in_root(root, "/opt/split", "from", "parts")
    assert ran.returncode == 0 and ran.stdout == "1.0.0 amd64 [from parts]\n", ran.stderr
    stick = tmp_path / "stick"
    stick.mkdir()
    bundler("copy", old, stick)
    assert sha256_of(stick / old.name) == sha256_of(old)


def test_faults_in_a_root_without_libc_get_one_line_and_exit_4(root, releases, amd64, devices_cache, tmp_path):
    old, _, _ = releases
    cases = {
        "no /proc": ({"proc": False}, "mount /proc"),
        "noexec TMPDIR": ({"tmpfs": ("/tmp2", "noexec")}, "noexec mount"),
        "full TMPDIR": ({"tmpfs": ("/tmp2", "size=2m")}, "MB free"),
    }
    for what, (how, said) in cases.items():
        ran = run_in_root(root, old, env={"TMPDIR": "/tmp2"}, **how)
        assert ran.returncode == 4, (what, ran.stderr)
        assert said in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, (what, ran.stderr)
        assert not os.listdir(root / "var" / "lib"), what  # nothing installed
    # A bundle with the portable (glibc) stub says what to do there.
    script = tmp_path / "report.sh"
    script.write_text(REPORT)
    project = write_project(tmp_path / "p", {"bin/report": script}, ["bin/report"])
    glibc_app = tmp_path / "glibc-app"
    bundler("make", "--cache-dir", devices_cache, "--level", "3", "-o", glibc_app, cwd=project, env=PORTABLE)
    dead = run_in_root(root, glibc_app)
    assert dead.returncode == 4 and "--stub static" in dead.stderr, dead.stderr
    # Files that need glibc (flock is linked against it): refused before anything is written, naming the file.
    needs = write_project(tmp_path / "n", {"bin/flock": Path("/usr/bin/flock")}, ["bin/flock", "--version"])
    needy = tmp_path / "needy"
    bundler("make", "--stub", amd64[0], "--level", "3", "-o", needy, cwd=needs)
    refused = run_in_root(root, needy)
    assert refused.returncode == 4 and "no glibc" in refused.stderr and "bin/flock" in refused.stderr, refused.stderr
    assert not os.listdir(root / "var" / "lib")


@pytest.mark.parametrize("start", ["first", "installed"])
def test_every_catchable_signal_reaches_the_runtime(root, amd64, tmp_path, start):
    script = tmp_path / "trap.sh"
    script.write_text(TRAP)
    project = write_project(tmp_path / "p", {"bin/trap": script}, ["bin/trap"])
    app = root / "opt" / "trap"
    bundler("make", "--stub", amd64[0], "--level", "3", "-o", app, cwd=project)
    if start == "installed":
        (root / "tmp" / "stop").touch()
        assert run_in_root(root, "/opt/trap", env={"BUNDLE_DIR": "/tmp/r"}).returncode == 0
        (root / "tmp" / "stop").unlink()
    cmd = in_root_command(root, "/opt/trap", env={"BUNDLE_DIR": "/tmp/r"})
    sent = [
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGTERM,
        signal.SIGWINCH,
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline() == "ready\n"
        for number in sent:
            os.kill(proc.pid, number)  # the process this test started: the bundle, whatever it became
            time.sleep(0.2)  # the shell runs a trap between two sleeps; signals sent at once could merge
        (root / "tmp" / "stop").touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"got {signal.Signals(n).name[3:]}" for n in sent], err


def test_an_arm64_bundle_starts_in_an_arm64_root_without_libc_under_qemu(devices_cache, tmp_path):
    stub, made = static_stub(devices_cache, "arm64")
    assert "Linux 3.7 or later" in made
    root = bare_root(tmp_path / "root", devices_cache, "arm64")
    assert no_libc_in(root)
    app, _ = realistic_bundle(tmp_path / "b", stub, hello=REPORT, arch="arm64")
    first = run_in_root(root, app, "a b", "c")
    assert first.returncode == 0 and first.stdout == "1.0.0 arm64 [a b c]\n", first.stderr
    assert run_in_root(root, app, "--bundle-verify").returncode == 0
    again = run_in_root(root, app, "d", env={"TMPDIR": "/tmp2"}, tmpfs=("/tmp2", "noexec"))
    assert again.returncode == 0 and again.stdout == "1.0.0 arm64 [d]\n", again.stderr
