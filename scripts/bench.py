#!/usr/bin/env python3
"""Benchmarks of the core and the images, measured in ONE run.

Every figure is a ratio against a reference measured in the same run on the same machine (or a plain size),
printed with its goal and PASS/MISS:

    scripts/bench.py              # the full run (docs/benchmarks.md gives its duration); --no-devices leaves out
                                  # the device figures
    scripts/bench.py --quick      # smaller sizes and fewer repetitions: a smoke run

Run it with the project's Python (the one with PyInstaller and zstandard), e.g. `.venv/bin/python scripts/bench.py`.
It needs the `zstd` and `sha256sum` commands, and for the image figures (6-8) docker-registry, umoci, skopeo and
busybox-static: it builds the images from this machine's files and serves them from a docker-registry it starts
on 127.0.0.1 (no network). The containerd update downloads two Debian packages once (apt-get download, into
~/.cache/bundler-tests). docs/benchmarks.md records the figures of a full run.
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bundler.build.cuts import DEFAULT_LEVEL  # noqa: E402
from payload import fs  # noqa: E402

MB = 1000 * 1000

# Real ELF binaries for figures 4 and 5, taken in this order until the set reaches the target size.
BINARIES = (
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/bin/runc",
    "/usr/bin/crun",
    "/usr/bin/ctr",
    "/usr/lib/cni/*",
    "/usr/bin/docker-registry",
    "/usr/bin/skopeo",
    "/usr/bin/umoci",
    "/usr/bin/containerd-shim-runc-v1",
    "/usr/bin/containerd-shim",
    "/usr/bin/containerd",
)

# Real files for the images of figures 6-8 (see build_image_set), taken in sorted order up to the target size,
# none bigger than IMAGE_MAX_FILE so that a layer holds many files, as a real one does.
IMAGE_LIBS = ("/usr/lib/*-linux-gnu/*.so*",)
IMAGE_BINS = ("/usr/bin/*",)
IMAGE_MAX_FILE = 6 * MB

TRUE_SCRIPT = "#!/bin/sh\nexit 0\n"
HELLO_PY = 'print("hello, world")\n'


@dataclass(frozen=True)
class Sizes:
    payload_mb: int  # figure 1: the large payload
    binaries_mb: int  # figures 4 and 5: real binaries
    binaries: tuple  # where to take them from (globs, in order)
    level: int  # zstd level of the references (makeself, zstd per file) and of bundler's figures 6 and 7
    start_reps: int  # timed starts per program
    extract_reps: int  # timed extractions per method
    image_libs_mb: int  # figures 6-8: the shared-library layer of the `app` image
    image_bins_mb: int  # figures 6-8: its binaries layer
    pull_reps: int  # figure 8: timed rounds (each: pull, no pull, skopeo, in-process)


FULL = Sizes(
    payload_mb=300,
    binaries_mb=100,
    binaries=BINARIES,
    level=19,
    start_reps=40,
    extract_reps=15,
    image_libs_mb=28,
    image_bins_mb=14,
    pull_reps=7,
)
# A smoke run: the same code paths, small sizes, a fast level (its figures are not the goals' figures).
QUICK = Sizes(
    payload_mb=30,
    binaries_mb=8,
    binaries=("/usr/lib/cni/*",),
    level=9,
    start_reps=8,
    extract_reps=3,
    image_libs_mb=3,
    image_bins_mb=2,
    pull_reps=3,
)


@dataclass
class Figure:
    label: str
    value: Optional[float]  # None: not measured (yet)
    goal: Optional[float]  # the figure must be <= goal
    unit: str = ""  # "" for a ratio
    details: list[str] = field(default_factory=list)

    @property
    def verdict(self):
        if self.value is None:
            return "not yet measured"
        return "PASS" if self.value <= self.goal else "MISS"


# ---------------------------------------------------------------- helpers


def log(message):
    print("  .. " + message, file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Run a command, failing the benchmark loudly (with its output) when it fails."""
    result = subprocess.run([str(c) for c in cmd], capture_output=True, **kw)
    if result.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(map(str, cmd))} failed ({result.returncode}):\n"
            f"{result.stdout.decode(errors='replace')[-2000:]}{result.stderr.decode(errors='replace')[-2000:]}"
        )
    return result


def bundler(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return run([sys.executable, "-m", "bundler"] + list(args), cwd=cwd, env=env).stdout.decode().strip()


def private_pyinstaller_cache(bench_cache):
    """PyInstaller keeps a binary cache under ~/.cache/pyinstaller whose index concurrent builds corrupt
    (seen here: `IndentationError` from load_py_data_struct); give the benchmark's builds their own."""
    os.environ["PYINSTALLER_CONFIG_DIR"] = str(bench_cache / "pyinstaller")


def timed(fn, *args, **kw):
    start = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - start, result


def median(samples):
    return statistics.median(samples)


def spread(samples):
    """`median (min..max, n)` in milliseconds."""
    return (
        f"{median(samples) * 1e3:.1f} ms (min {min(samples) * 1e3:.1f}, max {max(samples) * 1e3:.1f}, n={len(samples)})"
    )


def time_starts(programs, reps, warmup=3, envs=None):
    """Start each program `reps` times, interleaved (so drift and other load hit all alike); `envs`: {name: the
    environment of that program} where it is not this process's.

    Returns {name: (wall seconds, cpu seconds)} lists; cpu is user + sys of the process and its children
    (from wait4), which other load on a shared machine disturbs far less than wall time."""
    walls = {name: [] for name in programs}
    cpus = {name: [] for name in programs}
    envs = envs or {}
    for i in range(warmup + reps):
        for name, argv in programs.items():
            start = time.perf_counter()
            proc = subprocess.Popen(
                [str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=envs.get(name)
            )
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise SystemExit(f"bench: {' '.join(map(str, argv))} exited {code}")
            if i >= warmup:
                walls[name].append(elapsed)
                cpus[name].append(usage.ru_utime + usage.ru_stime)
    return walls, cpus


def pick_binaries(target_bytes, patterns=BINARIES, max_file=None, count=None):
    """Real ELF binaries of this machine, in `patterns` order, until about `target_bytes` (none over `max_file`), or
    until there are `count` of them."""
    import glob

    chosen, total = [], 0
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            real = os.path.realpath(path)
            if not os.path.isfile(real) or real in chosen:
                continue
            with open(real, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            size = os.path.getsize(real)
            if total + size > target_bytes * 1.15 or (max_file and size > max_file):
                continue
            chosen.append(real)
            total += size
            if total >= target_bytes * 0.95 or len(chosen) == count:
                return chosen, total
    if not chosen:
        raise SystemExit(
            f"bench: none of the binaries {patterns} exist; install containerd, runc, crun and "
            "containernetworking-plugins (scripts/setup)"
        )
    return chosen, total


# ---------------------------------------------------------------- building what is measured


class Workspace:
    def __init__(self, base, stub, bench_cache):
        self.dir = Path(base)
        self.stub = stub
        self.bench_cache = bench_cache
        # A fresh build cache per run: every group is really compressed (and its time is honest).
        self.cache = self.dir / "cache"
        self.make_cpu = {}  # bundle name: CPU seconds of its `bundler make` (the process and its children)

    def make_bundle(
        self, name, files, level, options=(), version="1.0.0", launcher=None, extra=(), entrypoint=("bin/true",)
    ):
        """A real bundle (entrypoint: a script that exits 0, or `entrypoint`) built by the real CLI. `files`: (path,
        source). With `launcher` (the script's text), the script is in a group of its own: versions that differ
        only in it share every other group. `extra`: manifest lines put before the variant ([[image]], [update])."""
        project = self.dir / (name if version == "1.0.0" else f"{name}-{version}")
        project.mkdir()
        (project / "true.sh").write_text(launcher or TRUE_SCRIPT)
        lines = [
            "[bundle]",
            f'name = "{name}"',
            f'version = "{version}"',
            f"entrypoint = {json.dumps(list(entrypoint))}",
            'host_libs = ["*"]  # the bench measures sizes and times; what the binaries link is not its concern',
            "",
            "[[file]]",
            'path = "bin/true"',
            'mode = "0755"',
            'source = { url = "true.sh" }',
        ] + (['group = "launcher"'] if launcher else [])
        for path, source in files:
            lines += ["", "[[file]]", f'path = "{path}"', 'mode = "0755"', f'source = {{ url = "file://{source}" }}']
        lines += ["", *extra, "", "[variants.offline]", 'embed = "all"', ""]
        (project / "bundle.toml").write_text("\n".join(lines))
        exe = project / project.name
        seconds, cpu = _timed_process(
            [
                sys.executable,
                "-m",
                "bundler",
                "make",
                "--manifest",
                project / "bundle.toml",
                "--stub",
                self.stub,
                "--cache-dir",
                self.cache,
                "--level",
                str(level),
                "--output",
                exe,
                *options,
            ],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        self.make_cpu[name] = cpu
        return exe, seconds

    def install(self, exe):
        root = self.dir / (exe.name + "-root")
        run([exe, "--bundle-dir", root])
        if not (root / "current" / ".bundle-installed").exists():
            raise SystemExit(f"bench: {exe} did not install into {root}")
        return root


def installed_env(root):
    """The environment of an installed start as a user or a service makes it: the root from BUNDLE_DIR, no option
    (any `--bundle-*` option, `--bundle-dir` too, goes through the stub: that is the stub's path)."""
    return dict(os.environ, BUNDLE_DIR=str(root))


def open_bundle(exe):
    from payload.layout import open_payload

    f = open(exe, "rb")
    return f, open_payload(str(exe), f)


HELLO_OPTIONS = ("--onefile", "--strip", "--noconfirm", "--clean", "--log-level=WARN")


def build_hello(work, cache, reuse):
    """A bare PyInstaller hello-world one-file, built with the same PyInstaller and options as the stub.

    Returns (path, build seconds or None when `reuse` took one built by an earlier run)."""
    import PyInstaller

    key = hashlib.sha256("|".join((PyInstaller.__version__, sys.version, HELLO_PY) + HELLO_OPTIONS).encode())
    cached = cache / ("hello-" + key.hexdigest()[:24])
    if reuse and cached.exists():
        return cached, None
    src = work / "hello" / "hello.py"
    src.parent.mkdir()
    src.write_text(HELLO_PY)
    seconds, _ = timed(
        run,
        [
            sys.executable,
            "-m",
            "PyInstaller",
            *HELLO_OPTIONS,
            "--name",
            "hello",
            "--distpath",
            src.parent / "dist",
            "--workpath",
            src.parent / "build",
            "--specpath",
            src.parent,
            src,
        ],
    )
    built = src.parent / "dist" / "hello"
    cache.mkdir(parents=True, exist_ok=True)
    with fs.atomic_path(cached, mode=0o755) as tmp:
        shutil.copy2(built, tmp)
    return built, seconds


def write_random(path, size):
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 1 << 20)
            out.write(os.urandom(n))
            left -= n


# ---------------------------------------------------------------- core figures


# What figure 2 starts: a bundle as a KubeSolo one is, and the same files alone.
REALISTIC_FILES = 20  # the launcher and 19 real binaries
UPDATE_REPOSITORY = "registry.example:5000/edge/real:stable"  # never contacted: an installed start only reads it


def realistic_bundles(ws, sizes):
    """(the realistic bundle, the plain one, what they hold): 20 files, two embedded images (the solo example's,
    as OCI archives), an [update] repository, signed; and the same files without images, repository or signature.
    Level 1: what a start reads does not depend on it."""
    from bundler.arch import host_arch
    from testing.images import build_solo_images

    images = build_solo_images(ws.dir / "startup-images", architecture=host_arch())
    archives = images.write_archives(ws.dir / "startup-images" / "archives")
    binaries, total = pick_binaries(float("inf"), sizes.binaries + ("/usr/bin/*",), count=REALISTIC_FILES - 1)
    files = [(f"bin/{i:02d}-{os.path.basename(p)}", p) for i, p in enumerate(binaries)]
    key = ws.dir / "release"
    bundler("keygen", "--out", key)
    extra = [
        line
        for name, path in archives.items()
        for line in ("[[image]]", f'name = "{name}"', f'ref = "oci-archive:{path}"', "")
    ]
    extra += ["[update]", f'repository = "{UPDATE_REPOSITORY}"']
    real, _ = ws.make_bundle("real", files, level=1, options=("--sign", f"{key}.key"), extra=extra)
    plain, _ = ws.make_bundle("plain", files, level=1)
    image_bytes = sum(p.stat().st_size for p in archives.values())
    what = (
        f"{len(files) + 1} files ({total / MB:.1f} MB), {len(archives)} embedded images ({', '.join(archives)}: "
        f"{image_bytes / MB:.1f} MB of OCI archives), an [update] repository, signed, the key pinned at install"
    )
    return real, plain, what


def figure_startup(ws, sizes, stub_size, reuse_hello):
    """Figures 1, 2 and 2c: start-up of installed bundles (large and tiny payload, a realistic bundle and the same
    files alone) and of a bare hello-world."""
    from stub.root import PINS_DIR

    data = ws.dir / "random.bin"
    write_random(data, sizes.payload_mb * MB)
    tiny, _ = ws.make_bundle("tiny", [], level=1)
    big, big_build = ws.make_bundle("big", [("data/random.bin", data)], level=1)
    log(f"big bundle built in {big_build:.1f} s ({big.stat().st_size / MB:.1f} MB); building the realistic bundle")
    real, plain, real_what = realistic_bundles(ws, sizes)
    log("building a PyInstaller hello-world")
    hello, hello_build = build_hello(ws.dir, ws.bench_cache, reuse_hello)
    built = f"built in {hello_build:.1f} s" if hello_build is not None else "built by an earlier run (--quick)"
    roots = {exe: ws.install(exe) for exe in (tiny, big, real, plain)}
    if not os.listdir(roots[real] / PINS_DIR):
        raise SystemExit(f"bench: the signed {real} pinned no key in {roots[real]}")
    log(f"timing {sizes.start_reps} starts each (interleaved)")
    bundles = (("big", big), ("tiny", tiny), ("real", real), ("plain", plain))
    # The figures time installed starts as users make them (the launcher execs the runtime); the same starts
    # through the stub (`--bundle-dir`, the path of every start before the launcher) are printed under them. The
    # two kinds are timed apart: a start of about a millisecond right after one of a hundred (which unpacks the
    # stub's Python) is slower than after another short one, and only the first of the list would pay it.
    programs = {name: [exe] for name, exe in bundles}
    envs = {name: installed_env(roots[exe]) for name, exe in bundles}
    samples, cpu = time_starts(programs, sizes.start_reps, envs=envs)
    stub_programs = {f"{name}-stub": [exe, "--bundle-dir", roots[exe]] for name, exe in bundles}
    stub_samples, stub_cpu = time_starts(dict(stub_programs, hello=[hello]), sizes.start_reps)
    samples.update(stub_samples)
    cpu.update(stub_cpu)
    t = {name: median(samples[name]) for name in samples}
    c = {name: median(cpu[name]) for name in cpu}

    def through_stub(name, reference):
        return (
            f"through the stub: cpu {c[f'{name}-stub'] * 1e3:.1f} ms / {c[f'{reference}-stub'] * 1e3:.1f} ms -> "
            f"{c[f'{name}-stub'] / c[f'{reference}-stub']:.3f}; wall {t[f'{name}-stub'] * 1e3:.1f} ms / "
            f"{t[f'{reference}-stub'] * 1e3:.1f} ms -> {t[f'{name}-stub'] / t[f'{reference}-stub']:.3f}"
        )

    f, payload = open_bundle(big)
    f.close()
    section = (
        f"payload section {payload.data_size / MB:.1f} MB at offset {payload.data_offset} of a "
        f"{big.stat().st_size / MB:.1f} MB file"
    )
    hello_size = hello.stat().st_size
    fig1 = Figure(
        f"start-up, {sizes.payload_mb} MB payload / empty payload",
        t["big"] / t["tiny"],
        1.10,
        details=[
            f"installed, {sizes.payload_mb} MB payload: {spread(samples['big'])}",
            "installed, tiny payload:  {}".format(spread(samples["tiny"])),
            f"cpu time (user+sys, all processes): {c['big'] * 1e3:.1f} ms / {c['tiny'] * 1e3:.1f} ms -> "
            f"{c['big'] / c['tiny']:.3f}",
            section,
            through_stub("big", "tiny"),
        ],
    )
    fig2 = Figure(
        "installed start-up, realistic bundle / hello-world, CPU",
        c["real"] / c["hello"],
        0.6,
        details=[
            f"realistic bundle: {real_what}",
            f"  cpu time (user+sys, all processes) {c['real'] * 1e3:.1f} ms; wall {spread(samples['real'])}",
            f"hello-world --onefile --strip: cpu {c['hello'] * 1e3:.1f} ms; wall {spread(samples['hello'])}, "
            f"{hello_size / MB:.2f} MB, {built}",
            f"wall-clock ratio: {t['real'] / t['hello']:.3f}",
            f"the empty bundle (figure 2 before): cpu {c['tiny'] * 1e3:.1f} ms -> {c['tiny'] / c['hello']:.3f}; wall "
            f"{spread(samples['tiny'])} -> {t['tiny'] / t['hello']:.3f}",
            f"stub {stub_size / MB:.2f} MB vs hello-world {hello_size / MB:.2f} MB (the one-file bootloader unpacks "
            "its binaries at every start)",
            f"for context, {sizes.payload_mb} MB payload / hello-world: {t['big'] / t['hello']:.3f}",
            f"the realistic bundle through the stub: cpu {c['real-stub'] * 1e3:.1f} ms -> "
            f"{c['real-stub'] / c['hello']:.3f}; wall {spread(samples['real-stub'])} -> "
            f"{t['real-stub'] / t['hello']:.3f}",
        ],
    )
    fig2c = Figure(
        "realistic bundle / the same files alone, CPU",
        c["real"] / c["plain"],
        1.05,
        details=[
            f"the same {REALISTIC_FILES} files without images, repository or signature: cpu {c['plain'] * 1e3:.1f} ms; "
            f"wall {spread(samples['plain'])}",
            f"wall-clock ratio: {t['real'] / t['plain']:.3f}",
            through_stub("real", "plain"),
        ],
    )
    return [fig1, fig2, fig2c]


# ---------------------------------------------------------------- the launcher: installed starts without Python

# Figure L: what an installed start adds to the runtime it starts. The entrypoint is a small real binary of this
# machine with an argument that makes it print and exit, the first of these that exists.
LAUNCHER_ENTRYPOINTS = (("/usr/bin/crun", "--version"), ("/bin/true", None))
# Figure T: a runtime that lists $TMPDIR while it runs (the stub's _MEI dir lives exactly that long) and its PID.
TMPDIR_SCRIPT = '#!/bin/sh\necho "pid $$"\n[ -z "$TMPDIR" ] || find "$TMPDIR" -mindepth 1 -printf \'%y %s %p\\n\'\n'


def _tmpdir_listing(lines):
    """(entries, bytes of regular files) of `find -printf '%y %s %p'` lines."""
    entries = [line.split(" ", 2) for line in lines if line.strip()]
    return len(entries), sum(int(size) for kind, size, _ in entries if kind == "f")


def _tmpdir_start(argv, env, tmpdir):
    """One start with TMPDIR=`tmpdir` (fresh): (runtime PID == the started PID, entries and bytes in TMPDIR
    while the runtime ran, entries and bytes left after it exited)."""
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [str(a) for a in argv],
        env=dict(env, TMPDIR=str(tmpdir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    if proc.returncode != 0 or not out.startswith("pid "):
        raise SystemExit(f"bench: {' '.join(map(str, argv))} exited {proc.returncode}: {err[-1000:]}")
    first, *listing = out.splitlines()
    after = subprocess.run(
        ["find", tmpdir, "-mindepth", "1", "-printf", "%y %s %p\\n"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return int(first.split()[1]) == proc.pid, _tmpdir_listing(listing), _tmpdir_listing(after)


def figure_launcher(ws, sizes):
    """Figures L (wall and CPU) and T: an installed start of a bundle whose entrypoint is a small real binary,
    against the same installed binary run directly; the bytes an installed start writes to $TMPDIR."""
    binary, argument = next((b, a) for b, a in LAUNCHER_ENTRYPOINTS if os.path.exists(b))
    name = os.path.basename(binary)
    entrypoint = [f"bin/{name}"] + ([argument] if argument else [])
    exe, _ = ws.make_bundle("fast", [(f"bin/{name}", binary)], level=1, entrypoint=entrypoint)
    root = ws.install(exe)
    version_dir = Path(os.path.realpath(root / "current"))
    if not (version_dir / ".bundle-start").is_file():
        raise SystemExit(f"bench: the install of {exe} wrote no start record in {version_dir}")
    direct = [version_dir / entrypoint[0], *entrypoint[1:]]
    reps = max(30, sizes.start_reps)
    log(f"timing {reps} installed starts of `{' '.join(entrypoint)}` and the installed binary run directly")
    samples, cpu = time_starts(
        {"bundle": [exe], "direct": direct, "stub": [exe, "--bundle-dir", root]},
        reps,
        envs={"bundle": installed_env(root)},
    )
    t = {k: median(v) for k, v in samples.items()}
    c = {k: median(v) for k, v in cpu.items()}
    what = f"an installed start of a bundle whose entrypoint is `{' '.join(entrypoint)}` ({binary}, BUNDLE_DIR set)"
    lines = [
        what,
        f"  wall {spread(samples['bundle'])}; cpu {c['bundle'] * 1e3:.2f} ms",
        f"the installed {' '.join(map(str, direct))} run directly: wall {spread(samples['direct'])}; "
        f"cpu {c['direct'] * 1e3:.2f} ms",
        f"the same start through the stub (--bundle-dir): wall {spread(samples['stub'])}; cpu "
        f"{c['stub'] * 1e3:.1f} ms -> {t['stub'] / t['direct']:.1f} (wall), {c['stub'] / c['direct']:.1f} (cpu)",
    ]
    fig_wall = Figure("installed start / the installed entrypoint run directly", t["bundle"] / t["direct"], 1.5)
    fig_wall.details = lines
    fig_cpu = Figure(
        "installed start / the installed entrypoint run directly, CPU",
        c["bundle"] / c["direct"],
        1.5,
        details=[f"cpu {c['bundle'] * 1e3:.2f} ms / {c['direct'] * 1e3:.2f} ms, medians of {reps} interleaved"],
    )

    lister, _ = ws.make_bundle("tmpcheck", [], level=1, launcher=TMPDIR_SCRIPT)
    lister_root = ws.install(lister)
    tmp = ws.dir / "fresh-tmpdir"
    tmp.mkdir()
    same_pid, running, left = _tmpdir_start([lister], installed_env(lister_root), tmp / "installed")
    stub_pid, stub_running, stub_left = _tmpdir_start(
        [lister, "--bundle-dir", lister_root], dict(os.environ), tmp / "stub"
    )
    fig_tmp = Figure(
        "bytes written to $TMPDIR by an installed start",
        running[1] + left[1],
        0,
        unit="B",
        details=[
            f"a fresh TMPDIR; the runtime lists it while it runs, and it is listed again after: {running[0]} entries "
            f"({running[1]} bytes) while it ran, {left[0]} ({left[1]} bytes) after; the runtime is the process "
            f"started: {'yes' if same_pid else 'NO'}",
            f"the same start through the stub (--bundle-dir): {stub_running[0]} entries ({stub_running[1] / MB:.2f} "
            f"MB) while it ran, {stub_left[0]} ({stub_left[1]} bytes) after; the runtime is the process started: "
            f"{'yes' if stub_pid else 'no'}",
        ],
    )
    return [fig_wall, fig_cpu, fig_tmp]


# ---------------------------------------------------------------- start-up against makeself


def makeself_archive(work, name, files, startup, level=19):
    """A makeself archive (Debian's makeself 2.4.5) of `files` [(path inside, source file)], zstd at `level` with a
    sha256, that runs `startup` (a path inside) from a fresh extraction at every start. Returns (path, seconds)."""
    stage = Path(work) / (name + "-makeself-files")
    for inside, source in files:
        target = stage / inside
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    out = Path(work) / (name + ".run")
    seconds, _ = timed(
        run,
        [
            "makeself",
            "--zstd",
            "--complevel",
            str(level),
            "--sha256",
            "--nox11",
            "--nowait",
            "--noprogress",
            "--quiet",
            "--tar-quietly",
            stage,
            out,
            name,
            "./" + startup,
        ],
    )
    return out, seconds


def figure_startup_vs_makeself(ws, exe, files, sizes):
    """Installed start-up of the bundle `exe` built from `files` / the start of a makeself archive of the same
    files (it extracts and checks them all at every start), interleaved."""
    true_sh = ws.dir / "makeself-true.sh"
    true_sh.write_text(TRUE_SCRIPT)
    true_sh.chmod(0o755)
    root = ws.install(exe)
    log(f"makeself archive of the same {len(files) + 1} files at level {sizes.level}")
    archive, seconds = makeself_archive(
        ws.dir, exe.name, [("bin/true", true_sh)] + list(files), "bin/true", level=sizes.level
    )
    env_tmp = ws.dir / "makeself-tmp"
    env_tmp.mkdir()
    reps = max(5, sizes.start_reps // 2)
    log(f"timing {reps} starts each of the installed bundle and of its makeself archive (interleaved)")
    os.environ["TMPDIR"], old_tmp = str(env_tmp), os.environ.get("TMPDIR")
    try:
        samples, cpu = time_starts({"bundle": [exe], "makeself": [archive]}, reps, envs={"bundle": installed_env(root)})
    finally:
        if old_tmp is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old_tmp
    t_bundle, t_makeself = median(samples["bundle"]), median(samples["makeself"])
    c_bundle, c_makeself = median(cpu["bundle"]), median(cpu["makeself"])
    return Figure(
        "installed start-up / makeself archive of the same files",
        t_bundle / t_makeself,
        1.0,
        details=[
            f"installed bundle ({len(files) + 1} files): {spread(samples['bundle'])}",
            f"makeself --zstd --complevel {sizes.level} --sha256 (extracts to $TMPDIR and checks at every start): "
            f"{spread(samples['makeself'])}, {archive.stat().st_size / MB:.1f} MB, built in {seconds:.1f} s",
            f"cpu time (user+sys, all processes): {c_bundle * 1e3:.1f} ms / {c_makeself * 1e3:.1f} ms -> "
            f"{c_bundle / c_makeself:.3f}",
        ],
    )


def figure_stub_size(stub, build_seconds):
    size = stub.stat().st_size
    return Figure(
        "stub size",
        size / MB,
        10.0,
        unit="MB",
        details=[
            f"{stub.name}: {size} bytes ({size / (1 << 20):.2f} MiB); `bundler stub` took {build_seconds:.1f} s "
            "(cached when the stub sources are unchanged)"
        ],
    )


def _extract_blob(exe, out):
    """Copy the bundle's compressed groups (their zstd frames, back to back) out of its payload section into `out`."""
    f, payload = open_bundle(exe)
    with f, open(out, "wb") as dst:
        for group in payload.index.groups:
            f.seek(payload.data_offset + group.offset)
            dst.write(f.read(group.csize))
    return payload


def _cpu_timed(fn):
    """(wall seconds, CPU seconds of this whole process, all threads) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _in_process_extract(exe, dest_base, reps):
    """payload.groups.extract_group in this process, verify only (decompress + hash) and verify + write + fsync:
    {label: [(wall, cpu)]}. cpu/wall above 1 means the two threads really ran at once."""
    from payload.groups import extract_group

    f, payload = open_bundle(exe)
    index = payload.index

    def extract(dest=None):
        for group in index.groups:
            extract_group(f, payload.data_offset, group, index.entries_of(group.name), dest)

    runs = {"verify": [], "write": []}
    with f:
        for i in range(reps):
            runs["verify"].append(_cpu_timed(extract))
            dest = dest_base / f"inproc-{i}"
            dest.mkdir(parents=True)
            runs["write"].append(_cpu_timed(lambda dest=dest: extract(str(dest))))
            shutil.rmtree(dest)
    return runs


def _read_frames(exe):
    """The compressed bytes of each frame of the bundle `exe`, in the order of payload.index.frames()."""
    f, payload = open_bundle(exe)
    with f:
        frames = []
        for _, frame in payload.index.frames():
            f.seek(payload.data_offset + frame.offset)
            frames.append(f.read(frame.csize))
    return frames


def _floors(frames):
    """One thread, in this process, over the compressed `frames`, CPU seconds: (decompress alone, sha256 alone, both
    one after the other per chunk, [decompression of each frame]): what the two halves of the pipeline cost, and
    what a serial loop costs."""
    import zstandard

    from payload.groups import MAX_WINDOW

    def chunks(frames=frames):
        for frame in frames:
            dobj = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).decompressobj()
            for i in range(0, len(frame), 1 << 20):
                yield dobj.decompress(frame[i : i + (1 << 20)])

    outs, per_frame = [], []
    for frame in frames:
        start = time.process_time()
        outs += chunks([frame])
        per_frame.append(time.process_time() - start)
    start = time.process_time()
    for chunk in outs:
        hashlib.sha256(chunk).digest()
    hashing = time.process_time() - start
    del outs
    start = time.process_time()
    for chunk in chunks():
        hashlib.sha256(chunk).digest()
    return sum(per_frame), hashing, time.process_time() - start, per_frame


def _decompression_floor(index, per_frame):
    """The least time the device can spend decompressing: groups one after the other, the frames of a group
    frames_in_flight at once, from one thread's time per frame. Returns (seconds, frames at once at most)."""
    from payload.groups import frames_in_flight

    times = iter(per_frame)
    total, widest = 0.0, 1
    for group in index.groups:
        own = [next(times) for _ in group.frames]
        at_once = min(len(own), frames_in_flight(len(own)))
        total += max(max(own), sum(own) / at_once)
        widest = max(widest, at_once)
    return total, widest


def _walls_cpus(runs):
    return [w for w, _ in runs], median([c for _, c in runs])


def figure_extract(ws, exe, sizes, total):
    """Figure 4: the first install, the real stub's whole verified extraction / its floor: the installed start-up
    plus one thread's decompression of the frames on the cores the device uses (frames_in_flight). The earlier
    reference, `zstd -d | sha256sum` of the same compressed frame, is printed under it."""

    blob = ws.dir / "bins.zst"
    payload = _extract_blob(exe, blob)
    pipeline = f"set -o pipefail; zstd -q -d -c {shlex.quote(str(blob))} | sha256sum >/dev/null"
    stub_runs, zstd_runs, starts = [], [], []
    root = ws.install(exe)
    installed_start = {"bins": [exe, "--bundle-dir", root]}
    log(
        f"timing {sizes.extract_reps} verified extractions by the stub, each with two installed starts, one thread's "
        "decompression in this process and `zstd -d | sha256sum` beside it (interleaved: a slow spell of the machine "
        "hits the whole and its floor alike)"
    )
    rounds, frames = [], _read_frames(exe)
    run(["bash", "-c", pipeline])  # the page cache holds the frame and the bundle for both from here on
    time_starts(installed_start, 0, warmup=2)
    for i in range(sizes.extract_reps):
        dest = ws.dir / f"extract-{i}"
        seconds, _ = timed(run, [exe, "--bundle-extract", dest])
        stub_runs.append(seconds)
        shutil.rmtree(dest)
        starts += time_starts(installed_start, 2, warmup=0)[0]["bins"]
        seconds, _ = timed(run, ["bash", "-c", pipeline])
        zstd_runs.append(seconds)
        rounds.append(_floors(frames))
    decompress, hashing, serial, frame_times = zip(*rounds)
    per_frame = [median(times) for times in zip(*frame_times)]  # each frame's, in the order of index.frames()
    log("timing extract_group in this process")
    inproc = _in_process_extract(exe, ws.dir, sizes.extract_reps)
    t_stub, t_zstd, t_start = median(stub_runs), median(zstd_runs), median(starts)
    verify_walls, verify_cpu = _walls_cpus(inproc["verify"])
    write_walls, write_cpu = _walls_cpus(inproc["write"])
    size = sum(g.size for g in payload.index.groups)
    csize = sum(g.csize for g in payload.index.groups)
    d, h, s = median(decompress), median(hashing), median(serial)
    frames = len(payload.index.frames())
    decompression, at_once = _decompression_floor(payload.index, per_frame)
    floor = t_start + decompression
    return Figure(
        f"first install of {total / MB:.0f} MB binaries / its floor",
        t_stub / floor,
        1.15,
        details=[
            f"stub --bundle-extract DIR (whole process): {spread(stub_runs)}",
            f"floor: {floor * 1e3:.1f} ms = installed start-up {t_start * 1e3:.1f} ms + one thread's decompression of "
            f"the {frames} frame(s) (of {len(payload.index.groups)} groups), up to {at_once} at once here: "
            f"{decompression * 1e3:.1f} ms",
            f"  the stub's start-up alone (installed, same bundle): {spread(starts)}",
            f"  whole minus the floor: {(t_stub - floor) * 1e3:.1f} ms; minus in-process extract_group with write "
            f"and fsync: {(t_stub - t_start - median(write_walls)) * 1e3:.1f} ms beside the start-up",
            f"zstd -d | sha256sum ({csize / MB:.1f} MB frame -> {size / MB:.1f} MB): {spread(zstd_runs)}; stub / it: "
            f"{t_stub / t_zstd:.3f} (the verdict before, goal 0.6)",
            f"  whole minus start-up: {(t_stub - t_start) * 1e3:.1f} ms -> {(t_stub - t_start) / t_zstd:.3f} of the "
            "pipeline",
            f"in-process extract_group, verify only (decompress + sha256): {spread(verify_walls)} -> "
            f"{median(verify_walls) / t_zstd:.3f} of the pipeline; CPU {verify_cpu * 1e3:.1f} ms (cpu/wall "
            f"{verify_cpu / median(verify_walls):.2f})",
            f"in-process extract_group, verify + write + fsync: {spread(write_walls)} -> "
            f"{median(write_walls) / t_zstd:.3f} of the pipeline; CPU {write_cpu * 1e3:.1f} ms (cpu/wall "
            f"{write_cpu / median(write_walls):.2f})",
            f"one thread, CPU: decompress alone {d * 1e3:.1f} ms, sha256 alone {h * 1e3:.1f} ms, both in one loop "
            f"{s * 1e3:.1f} ms",
            f"  ideal two-core pipelining: max(decompress, sha256) = {max(d, h) * 1e3:.1f} ms -> "
            f"{max(d, h) / t_zstd:.3f} of the pipeline",
        ],
    )


def figure_framed_extract(ws, exe, files, sizes, total):
    """Figure 4 again with the same files cut into two frames (`--frame-size` half the set; the default keeps them
    in one): what decompressing frames at once gives on this machine, and what the cut costs in stored size."""
    from payload.groups import frames_in_flight

    frame_mib = total // 2 // (1 << 20)
    log(f"building the same bundle cut into two frames (--frame-size {frame_mib}M)")
    framed, make_seconds = ws.make_bundle("bins2", files, level=sizes.level, options=["--frame-size", f"{frame_mib}M"])
    blob = ws.dir / "bins2.zst"
    payload = _extract_blob(framed, blob)
    pipeline = f"set -o pipefail; zstd -q -d -c {shlex.quote(str(blob))} | sha256sum >/dev/null"
    run(["bash", "-c", pipeline])
    stub_runs, zstd_runs = [], []
    log(f"timing {sizes.extract_reps} verified extractions of the two-frame bundle, and of `zstd -d | sha256sum`")
    for i in range(sizes.extract_reps):
        dest = ws.dir / f"extract2-{i}"
        stub_runs.append(timed(run, [framed, "--bundle-extract", dest])[0])
        shutil.rmtree(dest)
        zstd_runs.append(timed(run, ["bash", "-c", pipeline])[0])
    f, one = open_bundle(exe)
    f.close()
    frames = payload.index.frames()
    return Figure(
        f"verified extract, 2 frames (--frame-size {frame_mib}M) / zstd -d | sha256sum",
        median(stub_runs) / median(zstd_runs),
        0.6,
        details=[
            f"frames: {' + '.join(f'{fr.size / MB:.1f}' for _, fr in frames)} MB of input; "
            f"{frames_in_flight(len(frames))} decompressed at once here",
            f"stub --bundle-extract DIR (whole process): {spread(stub_runs)}",
            f"zstd -d | sha256sum (the same two frames): {spread(zstd_runs)}",
            f"stored {payload.index.payload_size / MB:.2f} MB against {one.index.payload_size / MB:.2f} MB in one "
            f"frame: {100.0 * (payload.index.payload_size / one.index.payload_size - 1):+.1f}% (make took "
            f"{make_seconds:.1f} s)",
        ],
    )


def figure_split_extract(ws, exe, sizes):
    """Figure 9: verified extraction of a split bundle, streamed from its parts (each part hashed on the way) /
    the same bundle unsplit. Interleaved runs of the real stub on the same data."""
    f, payload = open_bundle(exe)
    f.close()
    part_size = max(64 << 10, payload.data_size // 4 + 1)  # four parts, the groups straddling them
    split = ws.dir / "split" / exe.name
    split.parent.mkdir()
    bundler("split", exe, "--size", str(part_size), "--output", split)
    parts = sorted(p for p in split.parent.iterdir() if ".part" in p.name)
    whole_runs, split_runs = [], []
    log(f"timing {sizes.extract_reps} verified extractions from the unsplit bundle and from its {len(parts)} parts")
    run([split, "--bundle-verify"])  # both in the page cache from here on
    for i in range(sizes.extract_reps):
        for target, runs in ((exe, whole_runs), (split, split_runs)):
            dest = ws.dir / f"split-extract-{i}"
            seconds, _ = timed(run, [target, "--bundle-extract", dest])
            runs.append(seconds)
            shutil.rmtree(dest)
    return Figure(
        f"verified extract from {len(parts)} parts / from the unsplit bundle",
        median(split_runs) / median(whole_runs),
        1.05,
        details=[
            f"unsplit, --bundle-extract DIR: {spread(whole_runs)}",
            f"split into {len(parts)} parts of at most {part_size / MB:.1f} MB: {spread(split_runs)}",
        ],
    )


def figure_build(ws, exe, make_seconds, binaries, total, level, made_at):
    """Build: the CPU time of `bundler make` of the binaries (a fresh build cache, the stub given) / that of makeself
    of the same files at the same level, run right after it; the wall-clock ratio beside it."""
    f, payload = open_bundle(exe)
    f.close()
    stored = payload.index.payload_size
    frames = len(payload.index.frames())
    log(f"building a makeself archive of the same {len(binaries)} files at level {level}")
    true_sh = ws.dir / "build-true.sh"
    true_sh.write_text(TRUE_SCRIPT)
    true_sh.chmod(0o755)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    archive, wall = makeself_archive(
        ws.dir, "build", [(os.path.basename(p), p) for p in binaries] + [("true.sh", true_sh)], "true.sh", level=level
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    make_cpu = ws.make_cpu[exe.name]
    return Figure(
        f"bundler make of {total / MB:.0f} MB binaries / makeself -19, CPU",
        make_cpu / cpu,
        1.0,
        details=[
            f"bundler make (level {made_at}, fresh cache, stub given): {make_cpu:.1f} s CPU, {make_seconds:.1f} s "
            f"wall; stores {stored / MB:.2f} MB in {frames} frame(s), each compressed on one thread",
            f"makeself --zstd --complevel {level} --sha256: {cpu:.1f} s CPU, {wall:.1f} s wall; archive "
            f"{archive.stat().st_size / MB:.2f} MB",
            f"wall-clock ratio: {make_seconds / wall:.3f} (the verdict before, goal 0.5; other work on the machine "
            "moves it far more than the CPU ratio)",
        ],
    )


def _zstd_size(cmd, stdin_paths=None):
    """Bytes that a zstd command line writes to stdout (its input: a file argument, or `stdin_paths` catenated)."""
    if stdin_paths is None:
        return len(run(cmd).stdout)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with ThreadPoolExecutor(1) as pool:
        counted = pool.submit(lambda: sum(len(b) for b in iter(lambda: proc.stdout.read(1 << 20), b"")))
        for path in stdin_paths:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, proc.stdin, 1 << 20)
        proc.stdin.close()
        total = counted.result()
    if proc.wait() != 0:
        raise SystemExit("bench: {} failed".format(" ".join(cmd)))
    return total


def figure_stored_size(exe, make_seconds, binaries, total, level, made_at):
    """Figure 5: stored size as `bundler make` stores it (solid, 32 MiB window) / one `zstd -N` per file."""
    f, payload = open_bundle(exe)
    f.close()
    stored = sum(g.csize for g in payload.index.groups)
    cores = os.cpu_count() or 1
    log(f"compressing {len(binaries)} files one by one with zstd -{level} ({cores} at a time)")
    with ThreadPoolExecutor(cores) as pool:
        per_file_seconds, sizes = timed(
            lambda: list(pool.map(lambda p: _zstd_size(["zstd", f"-{level}", "-q", "-c", p]), binaries))
        )
    per_file = sum(sizes)
    log(f"compressing them as one plain solid zstd -{level} -T0 stream")
    solid_seconds, solid = timed(
        _zstd_size, ["zstd", f"-{level}", "-T0", "-q", "-c", f"--stream-size={total}"], binaries
    )
    return Figure(
        f"stored size of {total / MB:.0f} MB binaries / one zstd -{level} per file",
        stored / per_file,
        0.55,
        details=[
            f"{len(binaries)} files, {total / MB:.1f} MB: {' '.join(os.path.basename(p) for p in binaries)}",
            f"bundler make (solid, level {made_at}, long-distance matching, 32 MiB window): {stored / MB:.2f} MB "
            f"({100.0 * stored / total:.1f}%), make took {make_seconds:.1f} s",
            f"one zstd -{level} per file (the KubeSolo way): {per_file / MB:.2f} MB "
            f"({100.0 * per_file / total:.1f}%), {per_file_seconds:.1f} s, {cores} at a time",
            f"plain solid zstd -{level} -T0 (its own default window): {solid / MB:.2f} MB "
            f"({100.0 * solid / total:.1f}%), {solid_seconds:.1f} s -> ratio {solid / per_file:.3f}",
        ],
    )


# ---------------------------------------------------------------- image figures
#
# One image set for figures 6-8, built with umoci from real files of this machine (no network) and pushed to
# Debian's docker-registry on loopback: `base` (busybox-static with its applets, one layer) and `app` (base's
# layer, shared, plus a layer of real shared libraries and a layer of real binaries). The registry's layers are
# gzip as umoci writes them (pgzip at its default level, like the Go gzip that docker and buildkit push).

IMAGE_REPOSITORY = "bench"
IMAGE_TAG = "1"
ACCEPT_MANIFESTS = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

IMAGES_MANIFEST = """[bundle]
name = "{name}"
version = "1.0.0"
entrypoint = ["bin/true"]

[[file]]
path = "bin/true"
mode = "0755"
source = {{ url = "true.sh" }}
{images}
[variants.{variant}]
embed = {embed}
{pull}"""


@dataclass
class BenchImage:
    name: str  # the [[image]] name in the bundle manifests
    digest: str  # manifest digest, as the registry serves it
    layers: list  # [(digest, size)] from the registry's manifest: what the registry stores and serves
    what: str  # what its own layers hold

    @property
    def repository(self):
        return f"{IMAGE_REPOSITORY}/{self.name}"

    def ref(self, host):
        return f"{host}/{self.repository}:{IMAGE_TAG}"


@dataclass
class ImageSet:
    host: str
    images: list[BenchImage]
    build_seconds: float

    @property
    def distinct_layers(self):
        """{digest: gzip size}: every layer once, however many images share it (as the registry stores them)."""
        return dict(layer for image in self.images for layer in image.layers)

    def describe(self):
        distinct = self.distinct_layers
        per_image = sum(size for image in self.images for _, size in image.layers)
        return [
            "images: {}".format("; ".join(f"{i.name} = {i.what}" for i in self.images)),
            f"registry gzip layers (sizes from the registry's manifests): {sum(distinct.values()) / MB:.2f} MB in "
            f"{len(distinct)} distinct layers ({per_image / MB:.2f} MB counted once per image)",
        ]


def _stage(directory, paths):
    """Copies of `paths` in a new `directory`, by base name: what one layer adds."""
    directory.mkdir(parents=True)
    for path in paths:
        target = directory / os.path.basename(path)
        if not target.exists():
            shutil.copy2(path, target)
    return directory


def _registry_image(host, name, what):
    """The image as the registry serves it: its manifest digest (checked) and its layers' sizes (each checked
    against the blob's Content-Length)."""
    import urllib.request

    image = BenchImage(name, "", [], what)
    request = urllib.request.Request(
        f"http://{host}/v2/{image.repository}/manifests/{IMAGE_TAG}", headers={"Accept": ACCEPT_MANIFESTS}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data, image.digest = response.read(), response.headers["Docker-Content-Digest"]
    if image.digest != "sha256:" + hashlib.sha256(data).hexdigest():
        raise SystemExit(f"bench: the registry's manifest of {image.repository} does not match its digest")
    for layer in json.loads(data)["layers"]:
        head = urllib.request.Request(
            "http://{}/v2/{}/blobs/{}".format(host, image.repository, layer["digest"]), method="HEAD"
        )
        with urllib.request.urlopen(head, timeout=30) as response:
            stored = int(response.headers["Content-Length"])
        if stored != layer["size"]:
            raise SystemExit(
                f"bench: the registry serves {layer['digest']} with {stored} bytes, its manifest says {layer['size']}"
            )
        image.layers.append((layer["digest"], layer["size"]))
    return image


def build_image_set(ws, sizes, registry):
    """Build `base` and `app` with umoci and push them to `registry` (testing/registry.py)."""
    from bundler.arch import host_arch
    from testing.images import busybox_applets
    from testing.registry import ImageLayout, push

    began = time.perf_counter()
    work = ws.dir / "images"
    layout = ImageLayout(work / "layout")
    applets = busybox_applets(work / "busybox")
    libs, libs_total = pick_binaries(sizes.image_libs_mb * MB, IMAGE_LIBS, max_file=IMAGE_MAX_FILE)
    bins, bins_total = pick_binaries(sizes.image_bins_mb * MB, IMAGE_BINS, max_file=IMAGE_MAX_FILE)
    log(
        f"building images with umoci: busybox, and {len(libs)} libraries ({libs_total / MB:.1f} MB) + {len(bins)} "
        f"binaries ({bins_total / MB:.1f} MB) on top"
    )
    arch = host_arch()  # what `bundler make` pins by default
    layout.build("base", files={"/bin": str(applets)}, architecture=arch)
    layout.build(
        "app",
        base="base",
        architecture=arch,
        files={
            os.path.dirname(libs[0]): str(_stage(work / "libs", libs)),
            "/usr/bin": str(_stage(work / "bins", bins)),
        },
    )
    for tag in ("base", "app"):
        push(layout, tag, registry, f"{IMAGE_REPOSITORY}/{tag}:{IMAGE_TAG}")
    images = [
        _registry_image(registry.host, "base", "busybox-static and its applets (1 layer)"),
        _registry_image(
            registry.host,
            "app",
            f"base's layer + {len(libs)} shared libraries ({libs_total / MB:.1f} MB) + {len(bins)} binaries "
            f"({bins_total / MB:.1f} MB) from {os.path.join(os.path.dirname(libs[0]), '*.so*')} and {IMAGE_BINS[0]} "
            "(3 layers)",
        ),
    ]
    if images[1].layers[0] != images[0].layers[0]:
        raise SystemExit("bench: app does not share base's layer in the registry")
    return ImageSet(registry.host, images, time.perf_counter() - began)


def _images_project(ws, name, images, host, variant, embed, pull=None):
    project = ws.dir / name
    project.mkdir()
    (project / "true.sh").write_text(TRUE_SCRIPT)
    entries = "".join(f'\n[[image]]\nname = "{i.name}"\nref = "{i.ref(host)}"\n' for i in images)
    (project / "bundle.toml").write_text(
        IMAGES_MANIFEST.format(
            name=name, images=entries, variant=variant, embed=embed, pull=f'pull = "{pull}"\n' if pull else ""
        )
    )
    return project / "bundle.toml"


def _embedded_images(ws, image_set, layers, level, goal):
    """Figures 6 and 7: the `images` group's stored size (its frames' csize, from `bundler inspect --json`) of an
    offline bundle embedding the whole set / the registry's gzip layers, each counted once."""
    manifest = _images_project(ws, "images-" + layers, image_set.images, image_set.host, "offline", '"all"')
    exe = manifest.parent / ("images-" + layers)
    log(f"bundler make --layers {layers} at level {level} of the image set")
    seconds, _ = timed(
        bundler,
        "make",
        "--manifest",
        manifest,
        "--stub",
        ws.stub,
        "--cache-dir",
        ws.cache,
        "--level",
        str(level),
        "--layers",
        layers,
        "--output",
        exe,
    )
    info = json.loads(bundler("inspect", "--json", exe))
    group = [g for g in info["encoding"]["groups"] if g["name"] == "images"]
    if len(group) != 1 or not all(i["embedded"] and i["layers"] == layers for i in info["images"]):
        raise SystemExit(f"bench: {exe} does not embed the images in one `images` group with --layers {layers}")
    group = {"csize": sum(f["csize"] for f in group[0]["frames"]), "size": sum(f["size"] for f in group[0]["frames"])}
    distinct = image_set.distinct_layers
    gzip_total = sum(distinct.values())
    per_image = sum(size for image in image_set.images for _, size in image.layers)
    label = (
        "images embedded (default) / registry gzip layers"
        if layers == "raw"
        else "images embedded --layers exact / registry gzip layers"
    )
    return Figure(
        label,
        group["csize"] / gzip_total,
        goal,
        details=image_set.describe()
        + [
            f"bundle `images` group (--layers {layers}, level {level}): {group['csize'] / MB:.2f} MB stored, holding "
            f"{group['size'] / MB:.2f} MB (layers{' uncompressed' if layers == 'raw' else ' as gzip'}, configs, "
            f"manifests); make took {seconds:.1f} s",
            f"  against the layers counted once per image: {group['csize'] / per_image:.3f}",
        ],
    )


def figure_images_embedded(ws, image_set, sizes):
    """Figure 6: stored size of the image set embedded in the default mode (layers uncompressed inside the zstd
    group) / the sum of their registry gzip layers (goal <= 0.75)."""
    return _embedded_images(ws, image_set, "raw", sizes.level, 0.75)


def figure_images_exact(ws, image_set, sizes):
    """Figure 7: the same for `--layers exact` (the registry's gzip blobs kept byte for byte; goal <= 1.0: zstd over
    gzip must at least not grow them)."""
    return _embedded_images(ws, image_set, "exact", sizes.level, 1.0)


def _timed_process(argv, env=None):
    """(wall seconds, CPU seconds of the process and its children) of a command that must succeed."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            errors.seek(0)
            raise SystemExit(
                f"bench: {' '.join(map(str, argv))} exited {code}:\n{errors.read().decode(errors='replace')[-2000:]}"
            )
    return elapsed, usage.ru_utime + usage.ru_stime


def _pull_in_process(host, image, directory):
    """What stub/images.py does for one image left out, in this process: fetch the manifest, config and layers
    by digest with RegistryClient (all verified, not fsync'ed), then write_image_archive (fsync'ed).

    Returns (seconds fetching, seconds writing the archive)."""
    from payload.oci.archive import write_image_archive
    from payload.oci.reference import parse_image_manifest, parse_reference
    from payload.oci.registry import RegistryClient

    ref = parse_reference(image.ref(host))
    pinned = ref.with_digest(image.digest)
    os.makedirs(directory)
    start = time.perf_counter()
    with RegistryClient(progress=False) as client:
        manifest_bytes = client.fetch_manifest(pinned)
        config, layers = parse_image_manifest(manifest_bytes, f"manifest of {image.name}")
        config_bytes = client.fetch_blob_bytes(pinned, config.digest, config.size)
        blobs = {}
        for layer in layers:
            blobs[layer.digest] = client.fetch_blob(
                pinned, layer.digest, os.path.join(directory, layer.digest.partition(":")[2]), layer.size
            )
    fetched = time.perf_counter()
    write_image_archive(os.path.join(directory, image.name + ".tar"), ref, manifest_bytes, config_bytes, blobs)
    return fetched - start, time.perf_counter() - fetched


def figure_image_pull(ws, image_set, sizes):
    """Figure 8: run-time pull of `app` from the loopback registry by an online bundle that leaves it out: its
    first start (install + pull) minus the first start of the same bundle with --bundle-no-pull (install only),
    each into a fresh root / `skopeo copy --src-tls-verify=false docker://HOST/IMG@DIGEST oci-archive:OUT` of
    the same image (goal <= 1.1). Medians of runs interleaved round by round, after one warm-up round."""
    image = image_set.images[-1]
    # Pulled before the entrypoint starts: the start then ends with the image in place (the default pulls it in
    # the background, after the start).
    manifest = _images_project(ws, "pull", [image], image_set.host, "online", "[]", pull="before-start")
    exe = manifest.parent / "pull"
    bundler("make", "--manifest", manifest, "--stub", ws.stub, "--cache-dir", ws.cache, "--level", "3", "--output", exe)
    archive = f"current/images/{image.name}.tar"
    skopeo_env = dict(os.environ, TMPDIR=str(ws.dir))  # skopeo stages oci-archive in TMPDIR: the same disk
    source = f"docker://{image_set.host}/{image.repository}@{image.digest}"
    runs = {"pull": [], "nopull": [], "skopeo": [], "inproc": []}
    sizes_seen = {}
    log(
        f"timing {sizes.pull_reps} first starts that pull {image.name}, without pulling, skopeo copy, and in-process "
        "pulls"
    )
    for i in range(1 + sizes.pull_reps):
        measured = i > 0
        root = ws.dir / f"pull-root-{i}"
        wall_cpu = _timed_process([exe, "--bundle-dir", root])
        if not (root / archive).is_file():
            raise SystemExit(f"bench: the online bundle's first start did not write {root / archive}")
        sizes_seen["stub"] = (root / archive).stat().st_size
        shutil.rmtree(root)
        if measured:
            runs["pull"].append(wall_cpu)
        root = ws.dir / f"nopull-root-{i}"
        wall_cpu = _timed_process([exe, "--bundle-dir", root, "--bundle-no-pull"])
        if (root / archive).exists() or not (root / "current").is_dir():
            raise SystemExit(f"bench: --bundle-no-pull did not install without pulling into {root}")
        shutil.rmtree(root)
        if measured:
            runs["nopull"].append(wall_cpu)
        out = ws.dir / f"skopeo-{i}.tar"
        wall_cpu = _timed_process(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false", source, f"oci-archive:{out}"], env=skopeo_env
        )
        sizes_seen["skopeo"] = out.stat().st_size
        out.unlink()
        if measured:
            runs["skopeo"].append(wall_cpu)
        directory = ws.dir / f"inproc-pull-{i}"
        fetch_archive = _pull_in_process(image_set.host, image, str(directory))
        shutil.rmtree(directory)
        if measured:
            runs["inproc"].append(fetch_archive)
    walls = {k: [w for w, _ in v] if k != "inproc" else [f + a for f, a in v] for k, v in runs.items()}
    cpus = {k: median([c for _, c in v]) for k, v in runs.items() if k != "inproc"}
    fetch, write = median([f for f, _ in runs["inproc"]]), median([a for _, a in runs["inproc"]])
    pull, nopull, skopeo = median(walls["pull"]), median(walls["nopull"]), median(walls["skopeo"])
    paired = median([p - n for p, n in zip(walls["pull"], walls["nopull"])])
    gzip_total = sum(size for _, size in image.layers)
    return Figure(
        "run-time image pull / skopeo copy to oci-archive",
        (pull - nopull) / skopeo,
        1.1,
        details=[
            f"image {image.name}: {gzip_total / MB:.2f} MB of gzip layers ({len(image.layers)} layers), pulled by "
            f"digest from {image_set.host}",
            "online bundle, first start that pulls it (install + pull): {}".format(spread(walls["pull"])),
            "same bundle, first start with --bundle-no-pull (install only): {}".format(spread(walls["nopull"])),
            f"  pull = difference of the medians: {(pull - nopull) * 1e3:.1f} ms (median of the per-round "
            f"differences: {paired * 1e3:.1f} ms -> {paired / skopeo:.3f})",
            "skopeo copy docker://...@digest oci-archive:OUT: {}".format(spread(walls["skopeo"])),
            "cpu time (user+sys of the process and its children; the registry's own CPU not counted):"
            " ({:.1f} - {:.1f}) / {:.1f} ms -> {:.3f}".format(
                cpus["pull"] * 1e3,
                cpus["nopull"] * 1e3,
                cpus["skopeo"] * 1e3,
                (cpus["pull"] - cpus["nopull"]) / cpus["skopeo"],
            ),
            "in-process pull (RegistryClient + write_image_archive as stub/images.py does; no interpreter start,"
            " requests already imported): {} -> {:.3f}".format(
                spread(walls["inproc"]), median(walls["inproc"]) / skopeo
            ),
            f"  of which fetching (manifest, config, layers; not fsync'ed) {fetch * 1e3:.1f} ms, writing the archive "
            f"(copy of the layers + fsync) {write * 1e3:.1f} ms",
            "archives written: stub {:.2f} MB (fsync'ed), skopeo {:.2f} MB".format(
                sizes_seen["stub"] / MB, sizes_seen["skopeo"] / MB
            ),
        ],
    )


# ---------------------------------------------------------------- report


def machine_facts():
    import PyInstaller
    import zstandard

    def first_line(cmd):
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
            return out.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unavailable"

    cpu, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    return [
        ("command", " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)),
        ("nproc", f"{os.cpu_count() or 0} (usable: {len(os.sched_getaffinity(0))})"),
        ("cpu", "{}{}".format(cpu, ", sha_ni" if " sha_ni" in flags else "")),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("python", sys.version.split()[0]),
        ("PyInstaller", PyInstaller.__version__),
        ("zstandard", "{} (libzstd {})".format(zstandard.__version__, ".".join(map(str, zstandard.ZSTD_VERSION)))),
        ("zstd CLI", first_line(["zstd", "--version"])),
        (
            "load",
            "{:.2f} {:.2f} {:.2f} at the start (a shared machine makes wall times noisy)".format(*os.getloadavg()),
        ),
    ]


def print_report(facts, figures, wall):
    print("bundler benchmarks")
    for key, value in facts:
        print(f"  {key + ':':<12} {value}")
    print()
    print(f"{'figure':<62} {'value':>10} {'goal':>8}  verdict")
    for fig in figures:
        if fig.value is None:
            value = "-"
        else:
            value = f"{fig.value:.2f} {fig.unit}" if fig.unit else f"{fig.value:.3f}"
        goal = "<= {:g}{}".format(fig.goal, " " + fig.unit if fig.unit else "")
        print(f"{fig.label!s:<62} {value!s:>10} {goal!s:>8}  {fig.verdict}")
        for line in fig.details:
            print("      " + line)
    print()
    print("whole run: {:.0f} s; load average at the end {:.2f} {:.2f} {:.2f}".format(wall, *os.getloadavg()))


def image_figures(ws, sizes):
    """Figures 6-8, against a docker-registry on loopback started (and stopped) here."""
    from testing.registry import Registry

    if shutil.which("docker-registry") is None or shutil.which("umoci") is None or shutil.which("skopeo") is None:
        raise SystemExit("bench: figures 6-8 need docker-registry, umoci and skopeo; run scripts/setup")
    registry = Registry(ws.dir / "registry-storage").start()
    try:
        image_set = build_image_set(ws, sizes, registry)
        log(f"image set built and pushed in {image_set.build_seconds:.1f} s")
        return [
            figure_images_embedded(ws, image_set, sizes),
            figure_images_exact(ws, image_set, sizes),
            figure_image_pull(ws, image_set, sizes),
        ]
    finally:
        registry.stop()
        shutil.rmtree(registry.workdir, ignore_errors=True)


# ---------------------------------------------------------------- portable stub figures


def _portable(cache, arch):
    """(stub, first `bundler stub --arch` seconds or None when it was cached already, the cached call's seconds)."""
    from bundler.cache import Cache
    from bundler.stubs.portable import cached_stub_path

    was_cached = cached_stub_path(Cache(cache), arch).exists()
    first, stub = timed(bundler, "stub", "--arch", arch, "--cache-dir", cache)
    again, _ = timed(bundler, "stub", "--arch", arch, "--cache-dir", cache)
    return Path(stub.splitlines()[-1]), (None if was_cached else first), again


def figure_portable_stub_size(cache, arch):
    from bundler.build.glibc import format_version, stub_floor

    stub, first, again = _portable(cache, arch)
    floor = stub_floor(stub)[0]
    built = f"first `bundler stub --arch {arch}` {first:.0f} s" if first is not None else "built by an earlier run"
    return Figure(
        f"portable stub size, {arch}",
        stub.stat().st_size / MB,
        10.0,
        unit="MB",
        details=[
            f"{stub.name}: {stub.stat().st_size} bytes, glibc floor {format_version(floor)}; {built}, cached call "
            f"{again:.2f} s"
        ],
    )


HELLO_IN_ROOT = "/tmp/bench-hello"


def _hello_in_root(cache, root, tgt):
    """The PyInstaller hello-world, built in the arm64 root with the stub's own venv and options."""
    from bundler.cache import Cache
    from bundler.stubs import debian, portable

    with debian.locked(debian.build_lock(root), log, "a stub build in this root"):
        venv = portable._ensure_venv(Cache(cache), tgt, root, log)
        work = root / HELLO_IN_ROOT.lstrip("/")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "hello.py").write_text(HELLO_PY)
        run(
            debian.in_root(
                root,
                [
                    venv + "/bin/python",
                    "-m",
                    "PyInstaller",
                    *HELLO_OPTIONS,
                    "--name",
                    "hello",
                    "--distpath",
                    HELLO_IN_ROOT + "/dist",
                    "--workpath",
                    HELLO_IN_ROOT + "/build",
                    "--specpath",
                    HELLO_IN_ROOT,
                    HELLO_IN_ROOT + "/hello.py",
                ],
            )
        )
    return work / "dist" / "hello"


def figure_arm64_startup(ws, cache, sizes):
    """(figure L under qemu, the arm64 start-up): an installed start of a bundle of the root's `true` / that `true`
    run directly; installed start-up of an arm64 bundle through the stub / a PyInstaller hello-world built in the
    same arm64 root. All started in that root (chroot, qemu-user-static through binfmt_misc)."""
    from bundler.cache import Cache
    from bundler.stubs import debian

    stub, _, _ = _portable(cache, "arm64")
    tgt = debian.target("arm64")
    root = debian.root_dir(Cache(cache), tgt)

    def make_arm64(manifest, output):
        options = ("--arch", "arm64", "--stub", stub, "--cache-dir", ws.cache, "--level", "3", "--output", output)
        bundler("make", "--manifest", manifest, *options)

    project = ws.dir / "arm64"
    project.mkdir()
    (project / "true.sh").write_text(TRUE_SCRIPT)
    (project / "bundle.toml").write_text(
        '[bundle]\nname = "arm64"\nversion = "1.0.0"\nentrypoint = ["bin/true"]\n'
        '\n[[file]]\npath = "bin/true"\nmode = "0755"\nsource = { url = "true.sh" }\n'
    )
    app = root / "tmp" / "bench-arm64-app"
    make_arm64(project / "bundle.toml", app)
    # Figure L under qemu: a bundle whose entrypoint is the root's own `true` (an arm64 ELF program), started
    # installed (the launcher alone) and run directly.
    fast_project = ws.dir / "arm64-fast"
    fast_project.mkdir()
    true_elf = next(p for p in (root / "usr/bin/true", root / "bin/true") if p.is_file() and not p.is_symlink())
    (fast_project / "bundle.toml").write_text(
        '[bundle]\nname = "arm64-fast"\nversion = "1.0.0"\nentrypoint = ["bin/true"]\n'
        f'\n[[file]]\npath = "bin/true"\nmode = "0755"\nsource = {{ url = "file://{true_elf}" }}\n'
    )
    fast_app = root / "tmp" / "bench-arm64-fast"
    make_arm64(fast_project / "bundle.toml", fast_app)
    hello = _hello_in_root(cache, root, tgt)
    run(["mount", "-t", "proc", "proc", root / "proc"])
    try:
        env = ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root"]
        chroot = ["chroot", str(root)] + env
        run(chroot + ["/tmp/bench-arm64-app", "--bundle-dir", "/tmp/bench-arm64-root"])  # install once
        run(chroot + ["/tmp/bench-arm64-fast", "--bundle-dir", "/tmp/bench-arm64-fast-root"])
        version = os.readlink(root / "tmp" / "bench-arm64-fast-root" / "current")
        if not (root / "tmp" / "bench-arm64-fast-root" / version / ".bundle-start").is_file():
            raise SystemExit("bench: the arm64 install wrote no start record")
        reps = max(5, sizes.start_reps // 3)
        fast_reps = max(30, reps)
        log(f"timing {reps} starts each of the arm64 bundle and hello-world under qemu")
        samples, cpu = time_starts(
            {
                "bundle": chroot + ["/tmp/bench-arm64-app", "--bundle-dir", "/tmp/bench-arm64-root"],
                "hello": chroot + [HELLO_IN_ROOT + "/dist/hello"],
            },
            reps,
            warmup=2,
        )
        log(f"timing {fast_reps} installed starts of the arm64 `true` bundle and its `true` run directly under qemu")
        fast, fast_cpu = time_starts(
            {
                "bundle": chroot + ["BUNDLE_DIR=/tmp/bench-arm64-fast-root", "/tmp/bench-arm64-fast"],
                "direct": chroot + [f"/tmp/bench-arm64-fast-root/{version}/bin/true"],
            },
            fast_reps,
            warmup=2,
        )
    finally:
        run(["umount", root / "proc"])
        app.unlink()
        fast_app.unlink()
        shutil.rmtree(root / "tmp" / "bench-arm64-root", ignore_errors=True)
        shutil.rmtree(root / "tmp" / "bench-arm64-fast-root", ignore_errors=True)
    t_bundle, t_hello = median(samples["bundle"]), median(samples["hello"])
    f_wall = {k: median(v) for k, v in fast.items()}
    f_cpu = {k: median(v) for k, v in fast_cpu.items()}
    launcher_figure = Figure(
        "arm64 under qemu: installed start / the entrypoint run directly",
        f_wall["bundle"] / f_wall["direct"],
        1.5,
        details=[
            f"installed start of a bundle whose entrypoint is the root's `true` (BUNDLE_DIR set): "
            f"{spread(fast['bundle'])}",
            f"the installed `true` run directly: {spread(fast['direct'])}",
            f"cpu time (user+sys): {f_cpu['bundle'] * 1e3:.1f} ms / {f_cpu['direct'] * 1e3:.1f} ms -> "
            f"{f_cpu['bundle'] / f_cpu['direct']:.3f}",
            "both through the same chroot and env -i (host programs), which the ratio includes on both sides",
        ],
    )
    return launcher_figure, Figure(
        "arm64 installed start-up under qemu / hello-world, same root",
        t_bundle / t_hello,
        1.15,
        details=[
            "arm64 bundle (installed, portable stub {:.2f} MB): {}".format(
                stub.stat().st_size / MB, spread(samples["bundle"])
            ),
            "hello-world --onefile --strip built in the root: {}, {:.2f} MB".format(
                spread(samples["hello"]), hello.stat().st_size / MB
            ),
            "cpu time (user+sys): {:.0f} ms / {:.0f} ms -> {:.3f}".format(
                median(cpu["bundle"]) * 1e3, median(cpu["hello"]) * 1e3, median(cpu["bundle"]) / median(cpu["hello"])
            ),
        ],
    )


def device_figures(ws, cache, sizes, arches):
    if os.geteuid() != 0:
        raise SystemExit("bench: the portable stub figures build Debian roots: run as root, or pass --no-devices")
    figures = [figure_portable_stub_size(cache, arch) for arch in arches]
    figures += figure_static(ws, cache, sizes)
    if "arm64" in arches:
        launcher_figure, startup_figure = figure_arm64_startup(ws, cache, sizes)
        figures += [startup_figure, launcher_figure]
    return figures


def figure_static(ws, cache, sizes):
    """Figures A1 and A2 (any Linux): the static stub (`--stub static`, this host's architecture) against the
    portable one it is made from, installed starts in CPU, and an installed start with a 300 MB payload against a
    small one; starts through the stub beside them. The entrypoint is busybox-static's `true`, which starts
    anywhere."""
    from bundler.arch import host_arch
    from bundler.build.glibc import describe_floor
    from payload.elf import find_section
    from payload.layout import LIBC

    arch = host_arch()
    glibc_stub, _, _ = _portable(cache, arch)
    static_stub = Path(bundler("stub", "--static", "--arch", arch, "--cache-dir", cache).splitlines()[-1])
    with open(static_stub, "rb") as f:
        carried = find_section(f, LIBC)[1]
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("bench: busybox-static is not installed; run scripts/setup")
    big = ws.dir / "payload-300M.bin"
    write_random(big, 300 * MB)
    entry = ("bin/busybox", "true")
    programs, envs = {}, {}
    for kind, stub in (("static", static_stub), ("glibc", glibc_stub)):
        kind_ws = Workspace(ws.dir / kind, stub, ws.bench_cache)
        kind_ws.dir.mkdir()
        cases = [("small", [("bin/busybox", busybox)])]
        if kind == "static":
            cases.append(("big", [("bin/busybox", busybox), ("share/payload.bin", big)]))
        for size, files in cases:
            exe, _ = kind_ws.make_bundle(f"{kind}-{size}", files, level=1, entrypoint=entry)
            root = kind_ws.install(exe)
            programs[f"{kind}-{size}"] = [exe]
            envs[f"{kind}-{size}"] = installed_env(root)
            programs[f"{kind}-{size}-stub"] = [exe, "--bundle-dir", root]
    reps = max(30, sizes.start_reps)
    log(f"timing {reps} starts of each of {len(programs)}: static and glibc stubs, installed and through the stub")
    walls, cpus = time_starts(programs, reps, envs=envs)
    c = {k: median(v) for k, v in cpus.items()}
    t = {k: median(v) for k, v in walls.items()}

    def line(name):
        return f"{name}: cpu {c[name] * 1e3:.2f} ms; wall {spread(walls[name])}"

    details = [
        f"stubs: {static_stub.name} ({static_stub.stat().st_size / MB:.1f} MB, carries {carried / MB:.2f} MB of "
        f"glibc; floor: {describe_floor(static_stub)}) and {glibc_stub.name} ({glibc_stub.stat().st_size / MB:.1f} MB)",
        *(line(name) for name in programs),
        f"through the stub: static / glibc cpu {c['static-small-stub'] / c['glibc-small-stub']:.3f}, wall "
        f"{t['static-small-stub'] / t['glibc-small-stub']:.3f}; 300 MB / small cpu "
        f"{c['static-big-stub'] / c['static-small-stub']:.3f} (each such start copies the {carried / MB:.2f} MB of "
        "glibc into memory files, whatever the payload)",
    ]
    fig_kind = Figure(
        "static stub: installed start / the glibc stub's, CPU",
        c["static-small"] / c["glibc-small"],
        1.15,
        details=details,
    )
    fig_size = Figure(
        "static stub: installed start with a 300 MB payload / a small one, CPU",
        c["static-big"] / c["static-small"],
        1.10,
        details=[f"wall {t['static-big'] / t['static-small']:.3f}; medians of {reps} interleaved starts"],
    )
    return [fig_kind, fig_size]


def figure_early_refusal(ws, reps=7):
    """`make --arch arm` of the kubesolo example (crun has no arm source) must fail before any download: its time
    against importing what `make` imports (the interpreter, the CLI, the make machinery: the floor of any make),
    interleaved."""
    manifest = ROOT / "examples" / "kubesolo" / "bundle.toml"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    refusal = [
        sys.executable,
        "-m",
        "bundler",
        "make",
        "--manifest",
        str(manifest),
        "--arch",
        "arm",
        "--cache-dir",
        str(ws.dir / "refusal-cache"),
    ]
    floor = [sys.executable, "-c", "import bundler.cli, bundler.build.make"]
    samples = {"refusal": [], "floor": []}
    for _ in range(reps):
        for name, argv in (("refusal", refusal), ("floor", floor)):
            began = time.perf_counter()
            result = subprocess.run(argv, capture_output=True, env=env, cwd=str(ws.dir))
            samples[name].append(time.perf_counter() - began)
            if name == "refusal" and result.returncode != 2:
                raise SystemExit(
                    f"bench: make --arch arm of the kubesolo example exited {result.returncode}, expected 2: "
                    f"{result.stderr.decode(errors='replace')[-500:]}"
                )
    ratio = median(samples["refusal"]) / median(samples["floor"])
    return Figure(
        "make refuses a missing arch at once (vs importing make)",
        ratio,
        1.5,
        details=[
            "make --arch arm (exit 2, nothing downloaded): {}".format(spread(samples["refusal"])),
            "import bundler.cli, bundler.build.make: {}".format(spread(samples["floor"])),
        ],
    )


def _release_bundle(ws, release, version, names, level, cache):
    """A bundle `deltas` at `version` of the containerd `release`'s files `names` (one group), made by the CLI."""
    from testing import containerd

    tree = containerd.release(release)
    project = ws.dir / ("deltas-" + version)
    project.mkdir()
    (project / "true.sh").write_text(TRUE_SCRIPT)
    lines = [
        "[bundle]",
        'name = "deltas"',
        f'version = "{version}"',
        'entrypoint = ["bin/true"]',
        "",
        "[[file]]",
        'path = "bin/true"',
        'mode = "0755"',
        'group = "launcher"',
        'source = { url = "true.sh" }',
    ]
    for name in names:
        lines += [
            "",
            "[[file]]",
            f'path = "bin/{os.path.basename(name)}"',
            'mode = "0755"',
            'group = "containerd"',
            f'source = {{ url = "file://{tree.path(name)}" }}',
        ]
    lines += ["", "[variants.offline]", 'embed = "all"', ""]
    (project / "bundle.toml").write_text("\n".join(lines))
    exe = project / "deltas"
    bundler(
        "make",
        "--manifest",
        project / "bundle.toml",
        "--stub",
        ws.stub,
        "--cache-dir",
        cache,
        "--level",
        str(level),
        "--output",
        exe,
    )
    return exe


def _disk_used(root):
    """Bytes of disk under `root`: st_blocks of every distinct inode, each hard link counted once (as du does)."""
    seen, total = set(), 0
    for dirpath, _, filenames in os.walk(root):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
            st = os.lstat(name)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def figure_shared_versions(ws, binaries, sizes):
    """The disk two installed versions use when they differ in one small file (the launcher script),
    divided by the disk one version uses (goal <= 1.05): every file the other version holds is a hard link."""
    files = [(f"bin/{i:02d}-{os.path.basename(p)}", p) for i, p in enumerate(binaries)]
    log(f"shared versions: two versions of {len(files)} files that differ in their launcher")
    old, _ = ws.make_bundle("shared", files, sizes.level, launcher=TRUE_SCRIPT)
    new, _ = ws.make_bundle("shared", files, sizes.level, version="1.0.1", launcher=TRUE_SCRIPT + "# 1.0.1\n")
    root = ws.dir / "shared-root"
    run([old, "--bundle-dir", root])
    one = _disk_used(root)
    run([new, "--bundle-dir", root])
    two = _disk_used(root)
    du = int(run(["du", "-s", "--block-size=1", root]).stdout.split()[0])
    return Figure(
        "two installed versions, one small file apart: disk / one version",
        two / one,
        1.05,
        details=[
            f"one version {one / MB:.2f} MB, both {two / MB:.2f} MB (st_blocks of distinct inodes; du -s says "
            f"{du / MB:.2f} MB)"
        ],
    )


def _installed_copy(ws, bundle, name):
    """(a copy of `bundle` as a device's app, its root) with the bundle installed there by a first start."""
    app = ws.dir / name / "app"
    app.parent.mkdir()
    shutil.copy(bundle, app)
    root = ws.dir / (name + "-root")
    run([app, "--bundle-dir", root])
    return app, root


def figure_containerd_update(ws, sizes):
    """Figures of a fleet update: a device on Debian's containerd deb12u2 updates to deb12u3 (containerd, ctr and
    the shim in one group; --quick: the shim alone) through a docker-registry on loopback, with the delta
    `push --delta-from` published: blob bytes the registry served (its access log) / the new bundle's size (goal
    <= 0.10); the update's wall time / `bundler pull` of the whole new bundle from the same registry (goal <= 1.5);
    the update's peak memory (RSS of the stub and its child, wait4), against the default delta bound."""
    from payload import delta
    from testing import containerd
    from testing.registry import Registry

    names = (containerd.SHIM,) if sizes is QUICK else containerd.BINARIES
    cache = ws.bench_cache / "deltas-cache"  # the figures time no make: reruns reuse the compressed groups
    log(f"containerd update: making the deb12u2 and deb12u3 bundles ({len(names)} files, level {sizes.level})")
    old = _release_bundle(ws, containerd.OLD, "1.0.0", names, sizes.level, cache)
    new = _release_bundle(ws, containerd.NEW, "1.0.1", names, sizes.level, cache)
    with Registry(ws.dir / "deltas-storage") as registry:
        bundler("push", old, f"{registry.host}/edge/deltas:1.0.0")
        log("containerd update: pushing 1.0.1 with a delta from 1.0.0")
        push_seconds, _ = timed(
            bundler,
            "push",
            new,
            f"{registry.host}/edge/deltas:1.0.1",
            "--delta-from",
            old,
        )
        pull_walls, update_walls, whole_walls, peaks, cpus = [], [], [], [], []
        rounds = sizes.pull_reps
        log(f"containerd update: {rounds} rounds, each: a whole pull, the update with its delta, and without")
        # Interleaved rounds, medians: one sample of each swung by a factor of 1.7 on this shared machine.
        for i in range(rounds):
            wall, _ = _timed_process(
                [
                    sys.executable,
                    "-m",
                    "bundler",
                    "pull",
                    f"{registry.host}/edge/deltas:1.0.1",
                    "--output",
                    ws.dir / f"deltas-pulled-{i}" / "app",
                ],
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
            pull_walls.append(wall)
            app, root = _installed_copy(ws, old, f"deltas-device-{i}")
            mark = len(registry.served())
            began = time.perf_counter()
            proc = subprocess.Popen(
                [str(app), "--bundle-dir", str(root), "--bundle-update", f"{registry.host}/edge/deltas:1.0.1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            update_walls.append(time.perf_counter() - began)
            said, errors = proc.stdout.read().decode(), proc.stderr.read().decode()
            if os.waitstatus_to_exitcode(status) != 0 or "as deltas" not in said:
                raise SystemExit(f"bench: the containerd update failed or used no delta:\n{said}{errors[-2000:]}")
            served = registry.blob_bytes_served(mark)
            peaks.append(usage.ru_maxrss * 1024)
            cpus.append(usage.ru_utime + usage.ru_stime)
            # The same update with deltas off (the group fetched whole): what the update costs besides the delta.
            whole_app, whole_root = _installed_copy(ws, old, f"deltas-whole-{i}")
            wall, _ = _timed_process(
                [
                    str(whole_app),
                    "--bundle-dir",
                    str(whole_root),
                    "--bundle-update",
                    f"{registry.host}/edge/deltas:1.0.1",
                    "--bundle-delta-memory",
                    "0",
                ]
            )
            whole_walls.append(wall)
    # The device encodes the patched group again at its own level: another file, the same bundle (id, signature).
    mine, pushed = (json.loads(bundler("inspect", p, "--json")) for p in (app, new))
    if (mine["bundle_id"], mine["signature"]) != (pushed["bundle_id"], pushed["signature"]):
        raise SystemExit("bench: the updated file is not the pushed 1.0.1")
    full = new.stat().st_size
    peak = max(peaks)
    update_seconds, pull_seconds, whole_seconds = median(update_walls), median(pull_walls), median(whole_walls)
    summary = said.strip().split(": ", 1)[-1]
    return [
        Figure(
            "containerd update: blob bytes served / full new bundle",
            served / full,
            0.10,
            details=[
                f"{served:,} of blobs served (registry access log) for a {full / MB:.1f} MB bundle of {len(names)} "
                f"files ({sum(containerd.release(containerd.NEW).path(n).stat().st_size for n in names) / MB:.1f} MB)",
                summary,
                f"push of 1.0.1 with its delta (the patch made): {push_seconds:.1f} s",
            ],
        ),
        Figure(
            "containerd update: update time / pulling the whole bundle",
            update_seconds / pull_seconds,
            1.5,
            details=[
                f"update {spread(update_walls)} (decode, check against the signed index and encode the group at "
                f"level {delta.REENCODE_LEVEL} in one pass, rebuild the file, install linking the decoded files)",
                f"bundler pull of 1.0.1 from the same registry: {spread(pull_walls)}",
                f"the same update with deltas off (--bundle-delta-memory 0, the group fetched whole, then "
                f"installed from it): {spread(whole_walls)}; the delta update / it: "
                f"{update_seconds / whole_seconds:.2f}",
                f"CPU of the update (stub and child): {median(cpus):.2f} s; bundle made at level "
                f"{sizes.level}, {full / MB:.1f} MB published, {app.stat().st_size / MB:.1f} MB on the device",
            ],
        ),
        Figure(
            "containerd update: peak memory of the update",
            peak / MB,
            delta.DEFAULT_MEMORY / MB,
            "MB",
            details=[
                "max RSS of the stub and its child (wait4), the largest of the rounds; the goal is the default "
                "--bundle-delta-memory"
            ],
        ),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (a smoke run)")
    parser.add_argument(
        "--cache-dir", type=Path, help="bundler cache for the stub and the hello-world (default: bundler's own default)"
    )
    parser.add_argument("--work-dir", help="where to build and install (default: a temp dir, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--arches",
        default="amd64,arm64",
        help="portable stubs to build and measure (default amd64,arm64; arm and riscv64 take 15 to 47 "
        "minutes each cold, by the load)",
    )
    parser.add_argument("--no-devices", action="store_true", help="leave out the portable stub figures")
    parser.add_argument("--devices-only", action="store_true", help="only the portable stub figures")
    parser.add_argument(
        "--only",
        choices=["containerd-update", "startup", "launcher", "install", "build", "static"],
        help="only these figures (containerd-update: the delta update of Debian's containerd, against a whole pull; "
        "startup: figures 1, 2 and 2c, the installed start-ups; launcher: figures L and T, an installed start "
        "against its entrypoint run directly and what it writes to $TMPDIR; install: figure 4, the first "
        "install; build: figures B and 5, the build's CPU and the stored size; static: figures A1 and A2, the static "
        "stub against the portable one and a 300 MB payload against a small one)",
    )
    args = parser.parse_args(argv)
    for tool in ("zstd", "sha256sum", "bash"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: `{tool}` is not installed; run scripts/setup")
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()
    facts = machine_facts()
    if args.work_dir:
        os.makedirs(args.work_dir, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bundler-bench-", dir=args.work_dir))
    try:
        from bundler.cache import default_root

        cache = args.cache_dir or default_root()
        bench_cache = cache / "bench"
        private_pyinstaller_cache(bench_cache)
        arches = [a for a in args.arches.split(",") if a]
        if args.only == "static":
            figures = figure_static(Workspace(work, None, bench_cache), cache, sizes)
            print_report(facts, figures, time.perf_counter() - began)
            return 0
        if args.devices_only:
            figures = device_figures(Workspace(work, None, bench_cache), cache, sizes, arches)
            print_report(facts, figures, time.perf_counter() - began)
            return 0
        log("building (or finding) the stub")
        stub_seconds, stub = timed(bundler, "stub", "--host", "--cache-dir", cache)
        stub = Path(stub.splitlines()[-1])
        ws = Workspace(work, stub, bench_cache)
        if args.only in ("containerd-update", "launcher"):
            only = figure_containerd_update if args.only == "containerd-update" else figure_launcher
            figures = only(ws, sizes)
            print_report(facts, figures, time.perf_counter() - began)
            return 0
        figures = (
            [] if args.only in ("install", "build") else figure_startup(ws, sizes, stub.stat().st_size, args.quick)
        )
        if args.only == "startup":
            print_report(facts, figures, time.perf_counter() - began)
            return 0
        figures += figure_launcher(ws, sizes)
        if args.only is None:
            figures.append(figure_stub_size(stub, stub_seconds))
            figures.append(figure_early_refusal(ws, reps=3 if args.quick else 7))
        binaries, total = pick_binaries(sizes.binaries_mb * MB, sizes.binaries)
        # bundler at its own default level, against the references at theirs (makeself and zstd at -19)
        made_at = DEFAULT_LEVEL if sizes is FULL else sizes.level
        log(f"building a bundle of {len(binaries)} real binaries, {total / MB:.1f} MB, at level {made_at}")
        files = [(f"bin/{i:02d}-{os.path.basename(p)}", p) for i, p in enumerate(binaries)]
        bins, make_seconds = ws.make_bundle("bins", files, level=made_at)
        if args.only in ("install", "build"):
            if args.only == "install":
                figures = [figure_extract(ws, bins, sizes, total)]
            else:
                figures = [
                    figure_build(ws, bins, make_seconds, binaries, total, sizes.level, made_at),
                    figure_stored_size(bins, make_seconds, binaries, total, sizes.level, made_at),
                ]
            print_report(facts, figures, time.perf_counter() - began)
            return 0
        figures.append(figure_startup_vs_makeself(ws, bins, files, sizes))
        figures.append(figure_build(ws, bins, make_seconds, binaries, total, sizes.level, made_at))
        figures.append(figure_extract(ws, bins, sizes, total))
        figures.append(figure_stored_size(bins, make_seconds, binaries, total, sizes.level, made_at))
        figures.append(figure_framed_extract(ws, bins, files, sizes, total))
        figures.append(figure_shared_versions(ws, binaries, sizes))
        figures += image_figures(ws, sizes)
        figures.append(figure_split_extract(ws, bins, sizes))
        figures += figure_containerd_update(ws, sizes)
        if not args.no_devices:
            figures += device_figures(ws, cache, sizes, arches)
    finally:
        if args.keep:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(facts, figures, time.perf_counter() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
