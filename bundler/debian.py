"""Debian roots for building portable stubs: which release per architecture, the mirror from the host's apt
configuration, debootstrap (as root), qemu-user-static through binfmt_misc, and running commands inside.

A stub built in the oldest Debian release the mirror serves for an architecture runs on that release's glibc and
on every newer one: bullseye (glibc 2.31, Python 3.9) for amd64, arm64 and armhf; trixie (glibc 2.41, Python 3.13),
its first release, for riscv64.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from payload import arches
from payload.errors import HostError, NetworkError, UsageError

from .arch import host_arch

APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))
MIRROR_ENV = "BUNDLER_DEBIAN_MIRROR"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
_COMPLETE = ".bundler-root-complete"


@dataclass(frozen=True)
class Target:
    arch: str               # the bundle's name for it
    debian_arch: str
    release: str
    python: str             # the release's python3
    qemu: str               # binfmt_misc handler that runs it on another host
    wheel_platform: str     # pip platform tag
    from_source: tuple      # packages without wheels for it: built in the root
    minutes: int            # a cold first build here (2 cores), for the progress message

    @property
    def machine(self):
        """What `uname -m` says there (pip's platform_machine)."""
        return arches.get(self.arch).machines[0]

    @property
    def packages(self):
        # The root never downloads: the host's pip does, with the host's configuration and CA bundle.
        tools = ("python3", "python3-venv", "libpython" + self.python, "binutils")
        if self.from_source:  # PyInstaller's bootloader and zstandard's C extension are compiled
            tools += ("python3-dev", "gcc", "libc6-dev", "zlib1g-dev", "libffi-dev")
        return tools


# One row per architecture of payload/arches.py: what it takes to build its stub.
TARGETS = {
    "amd64": Target("amd64", "amd64", "bullseye", "3.9", "qemu-x86_64", "manylinux2014_x86_64", (), 3),
    "arm64": Target("arm64", "arm64", "bullseye", "3.9", "qemu-aarch64", "manylinux2014_aarch64", (), 11),
    "arm": Target("arm", "armhf", "bullseye", "3.9", "qemu-arm", "manylinux2014_armv7l", ("pyinstaller", "zstandard"),
                  25),
    "riscv64": Target("riscv64", "riscv64", "trixie", "3.13", "qemu-riscv64", "manylinux_2_39_riscv64",
                      ("pyinstaller", "zstandard"), 25),
}


def target(arch):
    try:
        return TARGETS[arch]
    except KeyError:
        raise UsageError("no portable stub for arch %r; use one of %s" % (arch, ", ".join(TARGETS))) from None


# The mirror

def debian_mirror(override=None, sources=APT_SOURCES):
    """The Debian archive URL: `override`, else $BUNDLER_DEBIAN_MIRROR, else the host's apt configuration."""
    chosen = override or os.environ.get(MIRROR_ENV)
    if chosen:
        return chosen.rstrip("/")
    for uri, suites in apt_entries(sources):
        # The main archive: an entry with a plain release suite (not -security, -updates, -backports).
        if uri.startswith(("http://", "https://", "file:/")) and any("-" not in s and "/" not in s for s in suites):
            return uri.rstrip("/")
    raise HostError("no Debian mirror found in the host's apt configuration (%s); pass --mirror URL or set %s"
                    % (", ".join(str(p) for p in sources), MIRROR_ENV))


def apt_entries(sources=APT_SOURCES):
    """(uri, suites) of every enabled `deb` entry, deb822 (*.sources) and one-line (*.list, sources.list)."""
    files = []
    for path in sources:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".sources", ".list"))
        elif path.is_file():
            files.append(path)
    entries = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        entries += _deb822(text) if path.suffix == ".sources" else _one_line(text)
    return entries


def _deb822(text):
    entries = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0].lower() != "no":
            entries += [(uri, fields.get("suites", [])) for uri in fields.get("uris", [])]
    return entries


def _one_line(text):
    entries = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    return entries


# What the host needs

def check_host(tgt):
    """Fail at once, naming what to install or do, when this host cannot build a stub for `tgt`."""
    if os.geteuid() != 0:
        raise HostError("building the %s stub in a Debian root needs root (debootstrap, chroot); run `bundler stub "
                        "--arch %s` as root once (the stub is cached; copy it anywhere), or pass --stub PATH"
                        % (tgt.arch, tgt.arch))
    missing = [tool for tool in ("debootstrap", "chroot", "unshare", "mount") if shutil.which(tool) is None]
    if missing:
        raise HostError("building the %s stub needs %s: apt-get install debootstrap util-linux, or pass --stub PATH"
                        % (tgt.arch, ", ".join(missing)))
    if tgt.arch != host_arch():
        enable_qemu(tgt)


def enable_qemu(tgt):
    """Make sure binfmt_misc runs `tgt`'s binaries through qemu-user-static; set it up when it is not."""
    interpreter = Path("/usr/libexec/qemu-binfmt") / (tgt.qemu.replace("qemu-", "") + "-binfmt-P")
    static = shutil.which(tgt.qemu + "-static")
    if static is None and not interpreter.exists():
        raise HostError("running %s binaries needs qemu-user-static: apt-get install qemu-user-static binfmt-support, "
                        "or pass --stub PATH" % tgt.arch)
    if not (BINFMT / "status").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                                 text=True)
        if mounted.returncode != 0:
            raise HostError("binfmt_misc is not mounted and mounting it failed (%s); run `mount -t binfmt_misc "
                            "binfmt_misc %s` on the host" % (mounted.stderr.strip(), BINFMT))
    handler = BINFMT / tgt.qemu
    if not _enabled(handler):
        if shutil.which("update-binfmts") is None:
            raise HostError("no binfmt_misc handler %s: apt-get install binfmt-support qemu-user-static" % tgt.qemu)
        subprocess.run(["update-binfmts", "--enable", tgt.qemu], capture_output=True)
        if not _enabled(handler):
            raise HostError("cannot enable the binfmt_misc handler %s: run `update-binfmts --enable %s` (package "
                            "qemu-user-static)" % (tgt.qemu, tgt.qemu))
    flags = re.search(r"^flags: *(\S*)", handler.read_text(), re.M)
    if not flags or "F" not in flags.group(1):
        raise HostError("the binfmt_misc handler %s lacks the F (fix binary) flag, so it cannot run inside a chroot; "
                        "re-register it with qemu-user-static's update-binfmts" % tgt.qemu)


def _enabled(handler):
    try:
        return handler.read_text().startswith("enabled")
    except OSError:
        return False


# Roots

@contextlib.contextmanager
def locked(path):
    """An exclusive flock on `path` (two builds of one root or stub wait for each other)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def root_dir(cache, tgt):
    """Where the root for `tgt` lives in the cache (one per release, architecture and package set)."""
    digest = hashlib.sha256(" ".join(tgt.packages).encode()).hexdigest()[:12]
    return cache.dir("stub-roots") / ("%s-%s-%s" % (tgt.release, tgt.debian_arch, digest))


def ensure_root(cache, tgt, mirror, log=print):
    """The cached Debian root for `tgt`, made with debootstrap when it is not there yet."""
    root = root_dir(cache, tgt)
    if (root / _COMPLETE).exists():
        return root
    with locked(root.with_name(root.name + ".lock")):
        if (root / _COMPLETE).exists():
            return root
        work = root.with_name(root.name + ".tmp")
        remove_root(work)
        remove_root(root)
        cmd = ["debootstrap", "--variant=minbase", "--arch=" + tgt.debian_arch, "--include=" + ",".join(tgt.packages),
               tgt.release, str(work), mirror]
        run_logged(cmd, "debootstrap %s %s" % (tgt.release, tgt.debian_arch), work.with_name(work.name + ".log"), log,
                   failure=lambda tail: NetworkError(
                       "debootstrap of Debian %s for %s from %s failed: %s; check that the mirror serves %s for %s "
                       "(override with --mirror URL or %s)" % (tgt.release, tgt.debian_arch, mirror, tail,
                                                               tgt.release, tgt.debian_arch, MIRROR_ENV)))
        (work / _COMPLETE).write_text(" ".join(tgt.packages) + "\n")
        os.rename(work, root)
    return root


def remove_root(path):
    """Delete a (partial) root; first unmount whatever an interrupted build left mounted inside it."""
    if not os.path.lexists(path):
        return
    prefix = str(Path(path).resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        inside = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for mountpoint in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    shutil.rmtree(path)


def in_root(root, argv, env=None):
    """The command line that runs `argv` inside `root` with a clean environment and /proc mounted in a private
    mount namespace (gone when the command ends, whatever happens to it)."""
    clean = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    clean.update(env or {})
    script = 'mount -t proc proc "$1/proc" && exec chroot "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root), "/usr/bin/env",
            "-i"] + ["%s=%s" % kv for kv in sorted(clean.items())] + list(argv)


def run_logged(cmd, what, log_path, log, failure, every=30):
    """Run `cmd` with its output in `log_path`, saying every `every` seconds how far it got; on failure raise
    failure(last lines)."""
    began = time.monotonic()
    last = [""]
    done = threading.Event()

    def progress():
        while not done.wait(every):
            log("  %s: %s%s" % (what, _elapsed(time.monotonic() - began), ", " + last[0][:100] if last[0] else ""))

    reporter = threading.Thread(target=progress, daemon=True)
    with open(log_path, "w") as out:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        reporter.start()
        try:
            for line in process.stdout:
                out.write(line)
                out.flush()
                if line.strip():
                    last[0] = line.strip()
            process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            done.set()
    if process.returncode != 0:
        lines = [l.strip() for l in Path(log_path).read_text(errors="replace").splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith(("E:", "ERROR", "error"))] or lines
        raise failure(" | ".join(errors[-2:])[:400] + " (full log: %s)" % log_path)
    return time.monotonic() - began


def _elapsed(seconds):
    return "%dm%02ds" % divmod(int(seconds), 60)
