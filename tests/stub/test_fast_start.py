"""The launcher's fast path (stub/launcher.c) with the real stub and realistic bundles (files, two images, an update
repository, signed with the key pinned): an installed start execs the runtime from the start record itself (the
process the test started, nothing in TMPDIR, a noexec /tmp is no obstacle, the gc lock kept across the exec), and
every doubt hands over to the stub, which starts the runtime the same way (environment, arguments, exit code,
umask) and writes the record again.

A start went the fast way when the runtime's PID is the one Popen started: the stub's runtime is a child of
PyInstaller's bootloader."""

import ctypes
import fcntl
import functools
import json
import os
import shutil
import struct
import subprocess
import time

import pytest

from stub.root import CURRENT, LOCKS_DIR, MARKER, PINS_DIR, PROBATION, REFUSED_DIR, START_RECORD
from testing.bundles import online_bundle, realistic_bundle
from testing.helpers import bundler

# The entrypoint: what it got goes into $PROBE/ (umask, environment, arguments, then its PID, written last: the
# test waits for it); with $PROBE_HOLD it runs on until that file exists; it exits with $PROBE_EXIT (7 unless set).
PROBE = """#!/bin/sh
if [ -n "$PROBE" ]; then
    umask > "$PROBE/umask"
    env -0 > "$PROBE/env"
    printf '%s\\0' "$@" > "$PROBE/args"
    echo $$ > "$PROBE/pid.tmp" && mv "$PROBE/pid.tmp" "$PROBE/pid"
fi
if [ -n "$PROBE_HOLD" ]; then
    while [ ! -e "$PROBE_HOLD" ]; do sleep 0.05; done
fi
echo "hello $*"
exit "${PROBE_EXIT:-7}"
"""
WAIT = 120  # seconds a start may take under load before the test gives up on it (a deadline, not a measurement)


@pytest.fixture(scope="module")
def releases(stub_path, cache_dir, tmp_path_factory):
    """1.0.0, 1.1.0 and 1.2.0 of a realistic bundle whose entrypoint is PROBE, signed by one key: {version: path}."""
    work = tmp_path_factory.mktemp("fast-start")
    first, public = realistic_bundle(work / "1.0.0", stub_path, cache=cache_dir, hello=PROBE)
    made = {"1.0.0": first}
    for version in ("1.1.0", "1.2.0"):
        made[version], _ = realistic_bundle(
            work / version, stub_path, cache=cache_dir, hello=PROBE, version=version, key=public.with_suffix(".key")
        )
    return made


@pytest.fixture
def exe(releases):
    return releases["1.0.0"]


class Start:
    """One start of a bundle, as the runtime saw it."""

    def __init__(self, process, stdout, stderr, probe):
        self.code, self.stdout, self.stderr, self.started = process.returncode, stdout, stderr, process.pid
        self.probe = probe
        self.pid = int((probe / "pid").read_text()) if (probe / "pid").exists() else None

    @property
    def fast(self):
        """The launcher exec'd the runtime itself; False when the stub did (or nothing ran)."""
        assert self.pid is not None, f"the runtime did not run ({self.code}): {self.stderr[-2000:]}"
        return self.pid == self.started

    @property
    def args(self):
        return (self.probe / "args").read_bytes().split(b"\0")[:-1]

    @property
    def env(self):
        return dict(line.split(b"=", 1) for line in (self.probe / "env").read_bytes().split(b"\0")[:-1])

    @property
    def umask(self):
        return (self.probe / "umask").read_text().strip()


class Device:
    """A device's install root ($BUNDLE_DIR, so that no --bundle-* option is needed) and TMPDIR, fresh per test."""

    def __init__(self, tmp_path):
        self.work = tmp_path
        self.root = tmp_path / "root"
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.runs = 0

    def env(self, probe, extra):
        env = dict(os.environ, BUNDLE_DIR=str(self.root), TMPDIR=str(self.tmpdir), PROBE=str(probe))
        env.update(extra or {})
        return env

    def popen(self, exe, *args, env=None, prefix=()):
        """Start `exe` ARGS (behind `prefix`, which must exec it); returns (process, probe dir)."""
        self.runs += 1
        probe = self.work / f"probe-{self.runs}"
        probe.mkdir()
        process = subprocess.Popen(
            [*map(str, prefix), str(exe), *args],
            env=self.env(probe, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return process, probe

    def start(self, exe, *args, expect=7, env=None, prefix=()):
        process, probe = self.popen(exe, *args, env=env, prefix=prefix)
        stdout, stderr = process.communicate(timeout=WAIT)
        done = Start(process, stdout.decode(errors="replace"), stderr.decode(errors="replace"), probe)
        assert done.code == expect, f"exit {done.code}, not {expect}: {done.stderr[-2000:]}"
        return done

    def version(self, exe):
        return installed_id(exe)

    def record(self, exe):
        return self.root / self.version(exe) / START_RECORD


@functools.cache
def installed_id(exe):
    return json.loads(bundler("inspect", exe, "--json").stdout)["bundle_id"]


@pytest.fixture
def device(tmp_path):
    return Device(tmp_path)


def installed(device, exe):
    """Install `exe` (its first start goes through the stub) and check that the next start is a fast one."""
    first = device.start(exe, "first")
    assert not first.fast and device.record(exe).is_file()
    assert device.start(exe, "again").fast
    return device.version(exe)


def held_runtime(device, exe, *args, env=None, prefix=()):
    """Start `exe` with a runtime that runs on until released; returns (process, probe dir, release file) once the
    runtime has said its PID."""
    release = device.work / f"release-{device.runs + 1}"
    process, probe = device.popen(exe, *args, env={"PROBE_HOLD": str(release), **(env or {})}, prefix=prefix)
    deadline = time.monotonic() + WAIT
    while not (probe / "pid").exists():
        if process.poll() is not None:
            raise AssertionError(f"exit {process.returncode} before the runtime ran: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the runtime did not start in {WAIT}s")
        time.sleep(0.02)
    return process, probe, release


def finish(process, probe, release):
    release.touch()
    stdout, stderr = process.communicate(timeout=WAIT)
    return Start(process, stdout.decode(), stderr.decode(), probe)


# --- inotify, from the C library: inotifywait (inotify-tools) is not on every test machine -------------------------

IN_CHANGES = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800  # modify, attrib, close-write, moves,
# create, delete, and the directory's own deletion or move: any write to TMPDIR starts with one of them at its top


class Watch:
    """The names the kernel reports created, changed or removed directly in `directory` while the watch is on."""

    def __init__(self, directory):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_CHANGES) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def names(self):
        data = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            data += chunk
        os.close(self.fd)
        names, at = [], 0
        while at < len(data):
            _, mask, _, size = struct.unpack_from("iIII", data, at)
            names.append((data[at + 16 : at + 16 + size].rstrip(b"\0").decode(), mask))
            at += 16 + size
        return names


def listing(directory):
    return sorted((p.relative_to(directory), p.stat().st_mtime_ns) for p in directory.rglob("*"))


# --- the fast path ---------------------------------------------------------------------------------------------


def test_an_installed_start_leaves_tmpdir_untouched(device, exe):
    installed(device, exe)
    before = listing(device.tmpdir)
    watch = Watch(device.tmpdir)
    process, probe, release = held_runtime(device, exe, "x")  # TMPDIR looked at while the runtime runs, and after
    assert listing(device.tmpdir) == before
    fast = finish(process, probe, release)
    assert fast.fast and fast.code == 7 and watch.names() == [] and listing(device.tmpdir) == before
    # The stub's start (a `--` first goes to it) does unpack into TMPDIR, and the same watch sees it.
    watch = Watch(device.tmpdir)
    process, probe, release = held_runtime(device, exe, "--", "x")
    assert [p.name for p in device.tmpdir.iterdir() if p.name.startswith("_MEI")]
    slow = finish(process, probe, release)
    assert not slow.fast and slow.code == 7
    assert [name for name, _ in watch.names() if name.startswith("_MEI")]


NOEXEC_TMP = """set -e
keep=$1; shift
# Park the real /tmp, cover it with a noexec tmpfs, and put the test's own directory back at its path.
mount --rbind /tmp /mnt
mount -t tmpfs -o noexec tmpfs /tmp
case "$keep" in /tmp/*) mkdir -p "$keep" && mount --rbind "/mnt${keep#/tmp}" "$keep" ;; esac
exec "$@"
"""


def noexec_tmp(work):
    """The prefix that runs a command in a mount namespace of its own whose /tmp is an empty noexec tmpfs (the
    directory `work`, with the bundle and the root, stays where it is); skips where that cannot be made."""
    if os.geteuid() != 0:
        pytest.skip(reason="mounting a noexec /tmp in a mount namespace needs root")
    if shutil.which("unshare") is None or not os.path.isdir("/mnt"):
        pytest.skip(reason="needs unshare (util-linux) and a /mnt to park the real /tmp on")
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", NOEXEC_TMP, "sh", str(work)]
    probe = subprocess.run([*prefix, "sh", "-c", "grep ' /tmp ' /proc/self/mounts"], capture_output=True, text=True)
    if probe.returncode != 0 or "noexec" not in probe.stdout:
        pytest.skip(reason=f"cannot mount a noexec /tmp in a mount namespace here: {probe.stderr.strip()}")
    return prefix


def test_an_installed_start_runs_with_a_noexec_tmp(device, exe, tmp_path):
    prefix = noexec_tmp(os.path.commonpath([exe, tmp_path]))
    installed(device, exe)
    started = device.start(exe, "on", "noexec", env={"TMPDIR": "/tmp"}, prefix=prefix)
    assert started.fast and started.args == [b"on", b"noexec"]  # unshare and sh exec: Popen's PID is the runtime's
    # A first start needs the stub, whose bootloader unpacks its Python into TMPDIR and could not load it from
    # there: the launcher says so first, in one line (exit 4), and nothing is installed.
    other = tmp_path / "other-root"
    first = device.start(exe, expect=4, env={"TMPDIR": "/tmp", "BUNDLE_DIR": str(other)}, prefix=prefix)
    assert first.stderr == (
        f"{exe.name}: error: /tmp is on a noexec mount, and this start needs to unpack the bundle's stub there; set "
        "TMPDIR to a directory on an executable file system with about 20 MB free\n"
    )
    assert first.pid is None and not other.exists()
    # With TMPDIR elsewhere, the same first start installs and runs.
    assert device.start(exe, env={"BUNDLE_DIR": str(other)}, prefix=prefix).pid is not None


def test_the_runtime_is_the_process_that_was_started(device, exe):
    bundle_id = installed(device, exe)
    started = device.start(exe, "a")
    assert started.fast and started.args == [b"a"]
    assert started.stdout.startswith("hello a\n") and started.env[b"BUNDLE_ID"] == bundle_id.encode()
    assert started.env[b"BUNDLE_EXECUTABLE"] == str(exe).encode()


@pytest.mark.parametrize("spelling", ["{root}/", "{work}//root", "{root}/../root/.", "root"])
def test_the_root_may_be_spelled_another_way(device, exe, spelling):
    """The stub names the root as os.path.abspath does; the launcher finds the record under any spelling of it."""
    installed(device, exe)
    in_work = ["sh", "-c", 'cd "$0" && exec "$@"', str(device.work)]  # for the relative spelling
    bundle_dir = spelling.format(root=device.root, work=device.work)
    started = device.start(exe, "x", env={"BUNDLE_DIR": bundle_dir}, prefix=in_work)
    assert started.fast and started.env[b"BUNDLE_ROOT"] == str(device.root / device.version(exe)).encode()


def test_the_gc_lock_is_held_across_the_exec(device, releases):
    old = installed(device, releases["1.0.0"])
    lock = device.root / LOCKS_DIR / old
    process, probe, release = held_runtime(device, releases["1.0.0"])
    try:
        with open(lock, "rb") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Two later versions make 1.0.0 neither current nor previous: only its lock keeps it from gc.
        for version in ("1.1.0", "1.2.0"):
            device.start(releases[version])
        gc = device.start(releases["1.2.0"], "--bundle-gc", expect=0)
        assert f"in use by a running process [{old[:12]}]" in gc.stdout
        assert (device.root / old / MARKER).is_file()
    finally:
        done = finish(process, probe, release)
    assert done.fast and done.code == 7
    gc = device.start(releases["1.2.0"], "--bundle-gc", expect=0)  # the runtime is gone: so is its version
    assert f"removed 1 version(s) [{old[:12]}]" in gc.stdout and not (device.root / old).exists()


# --- fallbacks to the stub -------------------------------------------------------------------------------------


def _truncated(data):
    return data[: len(data) // 2]


def _id_flipped(data):
    fields = data.split(b"\0")
    fields[1] = (b"0" if fields[1][:1] != b"0" else b"1") + fields[1][1:]
    return b"\0".join(fields)


def _garbage(data):
    return bytes(range(256)) * 3


def _field_after_end(data):
    return data + b"LD_PRELOAD=/tmp/x.so\0"


@pytest.mark.parametrize(
    "damage",
    [_truncated, _id_flipped, _garbage, _field_after_end, None],
    ids=["truncated", "id-flipped", "garbage", "field-after-end", "removed"],
)
def test_a_damaged_or_missing_record_hands_over_and_the_stub_writes_it_again(device, exe, damage):
    installed(device, exe)
    record = device.record(exe)
    good = record.read_bytes()
    if damage is None:
        record.unlink()
    else:
        record.write_bytes(damage(good))
    slow = device.start(exe, "a b")
    assert not slow.fast and slow.args == [b"a b"] and slow.stdout.startswith("hello a b\n")
    assert record.read_bytes() == good
    assert device.start(exe, "c").fast


def test_a_version_that_is_not_current_hands_over(device, releases):
    old = installed(device, releases["1.0.0"])
    new = installed(device, releases["1.1.0"])
    (device.root / "current.tmp").symlink_to(old)
    os.replace(device.root / "current.tmp", device.root / CURRENT)
    started = device.start(releases["1.1.0"], "x")
    assert not started.fast and started.args == [b"x"]
    assert device.start(releases["1.0.0"]).fast  # current again: its record holds
    # And the refusal of a downgrade still comes from the stub: 1.0.0 when 1.1.0 is current.
    (device.root / "current.tmp").symlink_to(new)
    os.replace(device.root / "current.tmp", device.root / CURRENT)
    refused = device.start(releases["1.0.0"], expect=4)
    assert "older than the current version 1.1.0" in refused.stderr and refused.pid is None


def test_probation_hands_over_and_the_stub_counts_the_start(device, exe):
    bundle_id = installed(device, exe)
    probation = device.root / PROBATION
    probation.write_text(f"bundle\t{bundle_id}\nprevious\t{'0' * 64}\nsince\t{int(time.time())}\nstarts\t0\n")
    started = device.start(exe, "x")
    assert not started.fast and started.args == [b"x"]
    assert "starts\t1\n" in probation.read_text()  # counted: only the stub counts
    probation.unlink()
    assert device.start(exe).fast


def test_a_version_rolled_back_on_its_own_hands_over(device, exe):
    bundle_id = installed(device, exe)
    (device.root / REFUSED_DIR).mkdir()
    (device.root / REFUSED_DIR / bundle_id).write_text("reason\tits health check failed\n")
    started = device.start(exe, "x")
    assert not started.fast and started.args == [b"x"]


def test_a_changed_pin_hands_over(device, exe, tmp_path):
    installed(device, exe)
    bundler("keygen", "--out", tmp_path / "other")
    shutil.copyfile(tmp_path / "other.pub", device.root / PINS_DIR / "other.pub")
    started = device.start(exe, "x")
    assert not started.fast and started.args == [b"x"]
    assert device.start(exe).fast  # the stub recorded the pins as they are now


ANSWERS = [
    (["--bundle-help"], 0, "usage: demo-1.0.0 [BUNDLE OPTIONS]"),
    (["--bundle-info"], 0, "bundle id:  {id}"),
    (["--bundle-info", "--json"], 0, '"bundle_id": "{id}"'),
    (["--bundle-verify"], 0, "signature: intact"),
    (["--bundle-sbom"], 0, '"SPDXID": "SPDXRef-DOCUMENT"'),
    (["--bundle-status"], 0, "1.0.0 {id12} (current)"),
    (["--bundle-install"], 0, "BUNDLE_ID={id}"),
    (["--bundle-repair"], 0, "nothing to repair"),
    (["--bundle-gc"], 0, "kept current/previous [{id12}]"),
    (["--bundle-mark-good"], 0, "nothing is on probation"),
    (["--bundle-rollback"], 4, "has no previous version to roll back to"),
    (["--bundle-wait-images"], 0, "/images/hello.tar"),
    (["--bundle-no-such-option"], 2, "unknown option --bundle-no-such-option"),
]


@pytest.mark.parametrize("args, code, says", ANSWERS, ids=[" ".join(args) for args, _, _ in ANSWERS])
def test_a_bundle_option_is_answered_by_the_stub(device, exe, args, code, says):
    bundle_id = installed(device, exe)
    answered = device.start(exe, *args, expect=code)
    assert says.format(id=bundle_id, id12=bundle_id[:12]) in answered.stdout + answered.stderr
    assert answered.pid is None  # nothing ran the runtime


STARTS = [  # (the bundle's options first, what the runtime gets)
    (["--bundle-dir", "{root}"], ["x"]),
    (["--bundle-key", "{key}"], ["x"]),
    (["--bundle-no-pin"], ["x"]),
    (["--bundle-no-pull"], ["x"]),
    (["--bundle-allow-downgrade"], ["x"]),
    (["--"], ["--bundle-info", "x"]),
]


@pytest.mark.parametrize("first, passed", STARTS, ids=[first[0] for first, _ in STARTS])
def test_a_start_with_a_bundle_option_or_dashes_first_is_the_stubs(device, exe, first, passed):
    installed(device, exe)
    options = [o.format(root=device.root, key=exe.parent / "release.pub") for o in first]
    started = device.start(exe, *options, *passed)
    assert not started.fast and started.args == [a.encode() for a in passed]
    assert started.stdout.startswith(f"hello {' '.join(passed)}\n")


# --- the same start either way ---------------------------------------------------------------------------------

ODD_ARGS = ["two words", "a\nnewline", "", "--bundle-info", "-", "tab\there", "ünïcode"]


def test_the_runtime_gets_the_same_start_from_the_launcher_and_from_the_stub(device, exe):
    installed(device, exe)
    # umask 027, and LISTEN_PID as systemd's socket activation sets it: the PID it started (the bootloader moves it
    # to its child's, which becomes the runtime).
    wrapper = ["sh", "-c", 'umask 027 && export LISTEN_PID=$$ && exec "$@"', "sh"]
    env = {"LD_LIBRARY_PATH": "/opt/vendor/lib", "PROBE_EXIT": "3"}
    fast = device.start(exe, *ODD_ARGS, env=env, prefix=wrapper, expect=3)
    device.record(exe).unlink()  # the stub's start; it writes the record again
    slow = device.start(exe, *ODD_ARGS, env=env, prefix=wrapper, expect=3)
    assert fast.fast and not slow.fast
    assert fast.args == slow.args == [a.encode() for a in ODD_ARGS]
    assert fast.umask == slow.umask == "0027"
    assert fast.env[b"LISTEN_PID"] == str(fast.pid).encode() and slow.env[b"LISTEN_PID"] == str(slow.pid).encode()
    own = {b"PROBE": None, b"LISTEN_PID": None}  # each start's own probe directory and PID
    assert {**fast.env, **own} == {**slow.env, **own}
    assert fast.env[b"LD_LIBRARY_PATH"] == b"/opt/vendor/lib"
    assert fast.stdout == slow.stdout and fast.stderr == slow.stderr == ""
    assert device.start(exe).code == 7  # and the bundle's own code, 7 from the entrypoint, passes through


# --- the online variant ----------------------------------------------------------------------------------------


def test_an_image_the_online_variant_pulled_gone_hands_over_and_the_stub_pulls_it_again(
    device, image_layout, stub_path
):
    from testing.registry import Registry, push

    registry = Registry(device.work / "registry").start()
    try:
        push(image_layout, "base", registry, "test/busybox:1")
        exe = online_bundle(device.work / "online", registry.host, stub_path, script=PROBE)
        first = device.start(exe)
        assert not first.fast
        bundle_id = installed_id(exe)
        archive = device.root / bundle_id / "images" / "base.tar"
        assert archive.is_file() and device.start(exe).fast
        archive.unlink()
        again = device.start(exe, "x")
        assert not again.fast and again.args == [b"x"] and archive.is_file()
        assert device.start(exe).fast
    finally:
        registry.stop()


def test_bundle_install_writes_the_record_so_the_first_start_of_the_service_is_fast(device, exe):
    installing = device.start(exe, "--bundle-install", "serve", expect=0)
    assert installing.pid is None and f"BUNDLE_ID={device.version(exe)}" in installing.stdout
    assert device.record(exe).is_file()
    first = device.start(exe, "serve")
    assert first.fast and first.args == [b"serve"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the root to another user needs root")
@pytest.mark.parametrize("change", ["another owner", "group-writable"])
def test_a_root_another_user_could_swap_is_left_to_the_stub_which_refuses_it(device, exe, change):
    installed(device, exe)
    if change == "another owner":
        os.chown(device.root, 1000, 1000)
    else:
        os.chmod(device.root, 0o775)
    refused = device.start(exe, "x", expect=4)
    assert refused.pid is None and "who could swap what runs from it" in refused.stderr, refused.stderr
