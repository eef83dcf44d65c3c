"""Debian roots for building portable stubs: which release per architecture, the mirror from the host's apt
configuration, the builder (debootstrap as root; mmdebstrap's unshare mode in a user namespace without root),
qemu-user-static through binfmt_misc, and running commands inside.

A stub built in the oldest Debian release the mirror serves for an architecture runs on that release's glibc and
on every newer one: bullseye (glibc 2.31, Python 3.9) for amd64, arm64 and armhf; trixie (glibc 2.41, Python 3.13),
its first release, for riscv64.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bundler.arch import host_arch
from bundler.stubs import userns
from payload import arches
from payload.errors import HostError, NetworkError, UsageError

APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))
MIRROR_ENV = "BUNDLER_DEBIAN_MIRROR"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
_COMPLETE = ".bundler-root-complete"
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Target:
    arch: str  # the bundle's name for it
    debian_arch: str
    release: str
    python: str  # the release's python3
    qemu: str  # binfmt_misc handler that runs it on another host
    wheel_platform: str  # pip platform tag
    from_source: tuple  # packages without wheels for it: built in the root
    minutes: int  # a cold first build on an idle 2-core host, for the progress message (docs/devices.md)

    @property
    def machine(self):
        """What `uname -m` says there (pip's platform_machine)."""
        return arches.get(self.arch).machines[0]

    @property
    def cflags(self):
        """C flags for what is compiled in the root: a 32-bit bootloader reads its file with 64-bit offsets, so a
        bundle over 2 GB starts (without them its stat() of itself fails with EOVERFLOW)."""
        return "" if arches.get(self.arch).elf_64bit else "-D_FILE_OFFSET_BITS=64"

    @property
    def packages(self):
        # The root never downloads: the host's pip does, with the host's configuration and CA bundle.
        tools = ("python3", "python3-venv", "libpython" + self.python, "binutils")
        if self.from_source:  # PyInstaller's bootloader and zstandard's C extension are compiled
            tools += ("python3-dev", "gcc", "libc6-dev", "zlib1g-dev", "libffi-dev")
        return tools


# One row per architecture of payload/arches.py: what it takes to build its stub.
TARGETS = {
    "amd64": Target("amd64", "amd64", "bullseye", "3.9", "qemu-x86_64", "manylinux2014_x86_64", (), 2),
    "arm64": Target("arm64", "arm64", "bullseye", "3.9", "qemu-aarch64", "manylinux2014_aarch64", (), 6),
    "arm": Target(
        "arm", "armhf", "bullseye", "3.9", "qemu-arm", "manylinux2014_armv7l", ("pyinstaller", "zstandard"), 15
    ),
    "riscv64": Target(
        "riscv64",
        "riscv64",
        "trixie",
        "3.13",
        "qemu-riscv64",
        "manylinux_2_39_riscv64",
        ("pyinstaller", "zstandard"),
        16,
    ),
}


def target(arch):
    try:
        return TARGETS[arch]
    except KeyError:
        raise UsageError("no portable stub for arch {!r}; use one of {}".format(arch, ", ".join(TARGETS))) from None


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
    raise HostError(
        "no Debian mirror found in the host's apt configuration ({}); pass --mirror URL or set {}".format(
            ", ".join(str(p) for p in sources), MIRROR_ENV
        )
    )


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


def builder():
    """What makes the roots here: debootstrap as root, else mmdebstrap's unshare mode (a user namespace)."""
    return "debootstrap" if os.geteuid() == 0 else "mmdebstrap"


def check_host(tgt):
    """Fail at once, naming what to install or do, when this host cannot build a stub for `tgt`."""
    if builder() == "mmdebstrap":
        return _check_unprivileged(tgt)
    missing = [tool for tool in ("debootstrap", "chroot", "unshare", "mount") if _which(tool) is None]
    if missing:
        raise HostError(
            "building the {} stub needs {}: apt-get install debootstrap util-linux, or pass --stub PATH".format(
                tgt.arch, ", ".join(missing)
            )
        )
    if tgt.arch != host_arch():
        enable_qemu(tgt)


def _which(tool):
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":" + _SYSTEM_PATH)


def _check_unprivileged(tgt):
    user = _user_name()
    tools = ("mmdebstrap", "newuidmap", "newgidmap", "unshare", "chroot", "mount")
    if tgt.arch != host_arch():
        tools += ("arch-test",)  # mmdebstrap's check that the foreign architecture runs
    missing = [tool for tool in tools if _which(tool) is None]
    if missing:
        raise HostError(
            "building the {} stub without root uses mmdebstrap in a user namespace and needs {}: "
            "apt-get install mmdebstrap uidmap{}; or run `bundler stub --arch {}` as root, or pass "
            "--stub PATH".format(tgt.arch, ", ".join(missing), " arch-test" if "arch-test" in tools else "", tgt.arch)
        )
    subids = subordinate_ids()
    if subids is None:
        free = f"{_free_subid_start()}-{_free_subid_start() + userns.IDS - 1}"
        raise HostError(
            f"building the {tgt.arch} stub without root needs subordinate ids for {user} ({userns.IDS} or more in "
            f"{SUBID_FILES[0]} and {SUBID_FILES[1]}; none or too few now): as root run `usermod --add-subuids {free} "
            f"--add-subgids {free} {user}` (a free range); or run `bundler stub --arch {tgt.arch}` as root, or pass "
            "--stub PATH"
        )
    try:
        tried = subprocess.run(
            userns.command(*subids, ["true"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        tried = subprocess.CompletedProcess([], 1, "no answer in 30 s")
    if tried.returncode != 0:
        raise HostError(
            "building the {} stub without root needs a user namespace, and making one failed ({}): "
            "check `unshare --user true` and the sysctls user.max_user_namespaces, "
            "kernel.unprivileged_userns_clone and kernel.apparmor_restrict_unprivileged_userns; or run "
            "`bundler stub --arch {}` as root, or pass --stub PATH".format(
                tgt.arch, " | ".join(tried.stdout.strip().splitlines()[-2:]) or f"exit {tried.returncode}", tgt.arch
            )
        )
    if tgt.arch != host_arch():
        enable_qemu(tgt, may_set_up=False)


def _user_name():
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _free_subid_start(files=SUBID_FILES):
    """The first id after every range in /etc/subuid and /etc/subgid (100000 when they are empty)."""
    ends = [100000]
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        ends += [
            int(start) + int(count)
            for _, start, count in (line.strip().split(":") for line in lines if line.count(":") == 2)
            if start.isdigit() and count.isdigit()
        ]
    return max(ends)


def subordinate_ids(files=SUBID_FILES):
    """((subuid start, count), (subgid start, count)) of this user's first ranges of at least userns.IDS ids from
    /etc/subuid and /etc/subgid, the ones mmdebstrap uses; None when either is missing."""
    names = {str(os.getuid()), _user_name()}
    found = []
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return None
        ranges = [
            (int(start), int(count))
            for name, start, count in (line.strip().split(":") for line in lines if line.count(":") == 2)
            if name in names and start.isdigit() and count.isdigit()
        ]
        if not ranges or ranges[0][1] < userns.IDS:
            return None
        found.append(ranges[0])
    return tuple(found)


def enable_qemu(tgt, may_set_up=True):
    """Make sure binfmt_misc runs `tgt`'s binaries through qemu-user-static; set it up when it is not and we may
    (root; without root, say what root has to run)."""
    interpreter = Path("/usr/libexec/qemu-binfmt") / (tgt.qemu.replace("qemu-", "") + "-binfmt-P")
    static = shutil.which(tgt.qemu + "-static")
    if static is None and not interpreter.exists():
        raise HostError(
            f"running {tgt.arch} binaries needs qemu-user-static: apt-get install qemu-user-static binfmt-support, "
            "or pass --stub PATH"
        )
    as_root = "" if may_set_up else " (as root; or pass --stub PATH)"
    if not (BINFMT / "status").exists() and not may_set_up:
        raise HostError(
            f"running {tgt.arch} binaries needs binfmt_misc, which is not mounted, and only root can mount it: "
            f"run `mount -t binfmt_misc binfmt_misc {BINFMT} && update-binfmts --enable {tgt.qemu}`{as_root}"
        )
    if not (BINFMT / "status").exists():
        mounted = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True
        )
        if mounted.returncode != 0:
            raise HostError(
                f"binfmt_misc is not mounted and mounting it failed ({mounted.stderr.strip()}); run `mount -t "
                f"binfmt_misc binfmt_misc {BINFMT}` on the host"
            )
    handler = BINFMT / tgt.qemu
    if not _enabled(handler) and not may_set_up:
        raise HostError(
            "running {} binaries needs the binfmt_misc handler {}, which is {}: run `update-binfmts "
            "--enable {}`{}".format(
                tgt.arch, tgt.qemu, "disabled" if handler.exists() else "not registered", tgt.qemu, as_root
            )
        )
    if not _enabled(handler):
        if shutil.which("update-binfmts") is None:
            raise HostError(f"no binfmt_misc handler {tgt.qemu}: apt-get install binfmt-support qemu-user-static")
        subprocess.run(["update-binfmts", "--enable", tgt.qemu], capture_output=True)
        if not _enabled(handler):
            raise HostError(
                f"cannot enable the binfmt_misc handler {tgt.qemu}: run `update-binfmts --enable {tgt.qemu}` (package "
                "qemu-user-static)"
            )
    flags = re.search(r"^flags: *(\S*)", handler.read_text(), re.M)
    if not flags or "F" not in flags.group(1):
        raise HostError(
            f"the binfmt_misc handler {tgt.qemu} lacks the F (fix binary) flag, so it cannot run inside a chroot; "
            f"re-register it with qemu-user-static's update-binfmts{as_root}"
        )


def _enabled(handler):
    try:
        return handler.read_text().startswith("enabled")
    except OSError:
        return False


# Roots


@contextlib.contextmanager
def locked(path, log=None, holder=None):
    """An exclusive flock on `path` (two builds of one root or stub wait for each other). With `log`, a wait is
    announced, naming what holds the lock (`holder`), so a build that seems stuck says why."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None:
                log("waiting for {} to finish (it holds {})...".format(holder or "another bundler", path))
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def build_lock(root):
    """The lock of the builds inside `root`: one stub build at a time, whatever its stub key (they share the
    root's work directory and venv)."""
    return root.with_name(root.name + ".build.lock")


def root_dir(cache, tgt):
    """Where the root for `tgt` lives in the cache (one per release, architecture, package set and builder: an
    mmdebstrap root is owned by the user and its subordinate ids, a debootstrap one by root)."""
    digest = hashlib.sha256(" ".join(tgt.packages).encode()).hexdigest()[:12]
    suffix = "" if builder() == "debootstrap" else "-unshare"
    return cache.dir("stub-roots") / f"{tgt.release}-{tgt.debian_arch}-{digest}{suffix}"


def ensure_root(cache, tgt, mirror, log=print):
    """The cached Debian root for `tgt`, made with debootstrap (root) or mmdebstrap (user namespace) when it is not
    there yet."""
    root = root_dir(cache, tgt)
    if (root / _COMPLETE).exists():
        return root
    with locked(root.with_name(root.name + ".lock"), log, "another bundler making this root"):
        if (root / _COMPLETE).exists():
            return root
        work = root.with_name(root.name + ".tmp")
        remove_root(work)
        remove_root(root)
        tool = builder()
        options = ["--variant=minbase", "--arch=" + tgt.debian_arch, "--include=" + ",".join(tgt.packages)]
        cmd, env = [tool] + options + [tgt.release, str(work), mirror], None
        if tool == "mmdebstrap":
            cmd, env = _mmdebstrap_command(options, tgt.release, work, mirror)
        run_logged(
            cmd,
            f"{tool} {tgt.release} {tgt.debian_arch}",
            work.with_name(work.name + ".log"),
            log,
            env=env,
            failure=lambda tail: NetworkError(
                f"{tool} of Debian {tgt.release} for {tgt.debian_arch} from {mirror} failed: {tail}; check that the "
                f"mirror serves {tgt.release} for {tgt.debian_arch} (override with --mirror URL or {MIRROR_ENV})"
            ),
        )
        (work / _COMPLETE).write_text(" ".join(tgt.packages) + "\n")
        os.rename(work, root)
    return root


def _mmdebstrap_command(options, release, work, mirror):
    """mmdebstrap in unshare mode, writing a tar stream that our own user namespace unpacks into `work`.

    mmdebstrap's namespace maps root to the first subordinate id, which can neither enter a private cache
    directory (mode 0700) nor leave files the user may write; unpacked in ours, the root's files belong to the user
    and its system users' files to subordinate ids. Device nodes cannot be made there and are left out (`in_root`
    binds the host's). mmdebstrap builds in $TMPDIR, which its namespace must be able to enter: /tmp otherwise.
    """
    os.makedirs(work)
    unpack = userns.command(
        *_subordinate_ids(), ["tar", "--numeric-owner", "-xpf", "-", "-C", str(work), "--exclude=./dev/*"]
    )
    mm = ["mmdebstrap", "--mode=unshare", "--format=tar"] + options + [release, "-", mirror]
    script = f"set -o pipefail; {shlex.join(mm)} | {shlex.join(unpack)}"
    return ["bash", "-c", script], dict(os.environ, TMPDIR=_shared_tmp())


def _shared_tmp():
    """$TMPDIR when other users can enter and write it (as mmdebstrap's namespace must), else /tmp."""
    chosen = os.environ.get("TMPDIR") or "/tmp"
    path = Path(chosen).resolve()
    try:
        entered = all(p.stat().st_mode & 0o001 for p in [path, *path.parents])
        return chosen if entered and path.stat().st_mode & 0o002 else "/tmp"
    except OSError:
        return "/tmp"


def _in_namespace(argv, what):
    done = subprocess.run(
        userns.command(*_subordinate_ids(), argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if done.returncode != 0:
        raise HostError("{}: {}".format(what, " | ".join(done.stdout.strip().splitlines()[-2:])))


def _subordinate_ids():
    subids = subordinate_ids()
    if subids is None:
        raise HostError(f"no subordinate ids for {_user_name()} in {SUBID_FILES[0]} and {SUBID_FILES[1]} any more")
    return subids


def remove_root(path):
    """Delete a (partial) root; first unmount whatever an interrupted build left mounted inside it."""
    if not os.path.lexists(path):
        return
    if builder() == "mmdebstrap":  # files of the root's system users belong to subordinate ids
        _in_namespace(["rm", "-rf", "--one-file-system", str(path)], f"cannot remove {path}")
        return
    prefix = str(Path(path).resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        inside = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for mountpoint in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    shutil.rmtree(path)


def in_root(root, argv, env=None):
    """The command line that runs `argv` inside `root` with a clean environment and /proc mounted in a private
    mount namespace (gone when the command ends, whatever happens to it). Without root: as the root of a user
    namespace, in a pid namespace of its own (so /proc can be mounted), with the few device nodes a build uses
    bound from the host (mmdebstrap's unshare mode leaves /dev empty)."""
    clean = {"PATH": _SYSTEM_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    clean.update(env or {})
    chrooted = ["/usr/bin/env", "-i"] + ["{}={}".format(*kv) for kv in sorted(clean.items())] + list(argv)
    if builder() == "debootstrap":
        script = 'mount -t proc proc "$1/proc" && exec chroot "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root)] + chrooted
    script = (
        f'set -e; PATH={_SYSTEM_PATH}; mount -t proc proc "$1/proc"; mount -t tmpfs -o mode=755 tmpfs "$1/dev"; '
        'for node in null zero full random urandom tty; do : > "$1/dev/$node"; '
        'mount --bind "/dev/$node" "$1/dev/$node"; done; ln -s /proc/self/fd "$1/dev/fd"; '
        'mkdir "$1/dev/shm" "$1/dev/pts"; exec chroot "$@"'
    )
    return userns.command(
        *_subordinate_ids(),
        ["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script, "sh", str(root)] + chrooted,
    )


def run_logged(cmd, what, log_path, log, failure, every=30, env=None):
    """Run `cmd` with its output in `log_path`, saying every `every` seconds how far it got; on failure raise
    failure(last lines)."""
    began = time.monotonic()
    last = [""]
    done = threading.Event()

    def progress():
        while not done.wait(every):
            log("  {}: {}{}".format(what, _elapsed(time.monotonic() - began), ", " + last[0][:100] if last[0] else ""))

    reporter = threading.Thread(target=progress, daemon=True)
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
        )
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
        lines = [line.strip() for line in Path(log_path).read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "ERROR", "error"))] or lines
        raise failure(" | ".join(errors[-2:])[:400] + f" (full log: {log_path})")
    return time.monotonic() - began


def _elapsed(seconds):
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"
