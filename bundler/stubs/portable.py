"""Portable stubs: PyInstaller one-file stubs built inside a Debian root of the target architecture (under qemu
for foreign ones), so a bundle starts on that release's glibc and newer, on amd64, arm64, armhf and riscv64.

Cached in three layers, each reused by the next build: the root (release, architecture, packages), the Python
packages (downloaded by the host's pip; for armhf and riscv64 also the wheels built in the root), and the stub,
keyed by (stub sources, PyInstaller and zstandard versions, architecture, release).
"""

import hashlib
import shutil
import time

from bundler.stubs import debian
from bundler.stubs.build import (
    PROJECT,
    REPRODUCIBLE_ENV,
    cached_stub,
    install_stub,
    pyinstaller_command,
    run_side_files,
    sources_digest,
    versions,
)
from payload.elf import elf_machine
from payload.errors import BundleError, HostError

_VENV_COMPLETE = ".bundler-venv-complete"
_IN_ROOT = "/tmp/bundler-stub"


def portable_stub_key(tgt):
    pyinstaller, zstandard = versions()
    material = "|".join(
        [sources_digest(), pyinstaller, zstandard, tgt.arch, tgt.release] + [tgt.cflags] * bool(tgt.cflags)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def cached_stub_path(cache, arch):
    tgt = debian.target(arch)
    return cache.dir("stubs") / f"stub-{tgt.arch}-{tgt.release}-{portable_stub_key(tgt)}"


def check_can_build(cache, arch, offline=False, mirror=None):
    """Fail now, not after the downloads, when the portable stub for `arch` is neither cached nor buildable."""
    path = cached_stub_path(cache, arch)
    if cached_stub(cache, path):
        return
    tgt = debian.target(arch)
    if offline:
        raise HostError(
            f"no portable {arch} stub in the cache {cache.root} and --offline: run `bundler fetch --stubs --arch "
            f"{arch}` (or `bundler stub --arch {arch}`) on a connected host and copy its cache, or pass --stub PATH"
        )
    debian.check_host(tgt)
    debian.debian_mirror(mirror)


def portable_stub(cache, arch, mirror=None, offline=False, log=print):
    """The cached portable stub for `arch`, built (once) when it is not there."""
    path = cached_stub_path(cache, arch)
    if cached_stub(cache, path):
        return path
    check_can_build(cache, arch, offline, mirror)
    tgt = debian.target(arch)
    mirror = debian.debian_mirror(mirror)
    with debian.locked(path.with_name(f"{path.name}.lock"), log, "another bundler building this stub"):
        if cached_stub(cache, path):
            return path
        began = time.monotonic()
        how = "under qemu" if tgt.arch != debian.host_arch() else "natively"
        log(
            f"building the portable {arch} stub in a Debian {tgt.release} root ({how}; first time about {tgt.minutes} "
            f"min on 2 idle cores, longer under load, then cached in {cache.root})..."
        )
        root = _step(
            log,
            f"root: Debian {tgt.release} {tgt.debian_arch} ({debian.builder()} from {mirror})",
            debian.ensure_root,
            cache,
            tgt,
            mirror,
            log,
        )
        # Builds of other stub keys (another checkout of bundler) share the root's work dir and venv.
        with debian.locked(debian.build_lock(root), log, "another stub build in this root"):
            venv = _step(
                log,
                "Python packages: PyInstaller {}, zstandard {}{}".format(
                    *versions(), " (built from source in the root)" if tgt.from_source else ""
                ),
                _ensure_venv,
                cache,
                tgt,
                root,
                log,
            )
            built = _step(log, "PyInstaller one-file build of the stub", _build, root, venv, tgt, log)
            try:
                install_stub(cache, built, path)
            finally:
                shutil.rmtree(root / _IN_ROOT.lstrip("/"), ignore_errors=True)
            from bundler.sbom.stub import record

            record(path, "portable", root)  # for its SBOM: the root's packages, while the root is at hand
        log(f"portable {arch} stub ready in {debian._elapsed(time.monotonic() - began)}: {path}")
    return path


def _step(log, what, func, *args):
    began = time.monotonic()
    log(f"  {what}...")
    result = func(*args)
    log(f"  done in {debian._elapsed(time.monotonic() - began)}")
    return result


def _wheels_dir(cache, tgt):
    pyinstaller, zstandard = versions()
    flags = "-lfs" if tgt.cflags else ""  # wheels built with other C flags are other wheels
    return cache.dir("stub-wheels") / (
        f"{tgt.release}-{tgt.debian_arch}-pyinstaller{pyinstaller}-zstandard{zstandard}{flags}"
    )


def _requirements():
    pyinstaller, zstandard = versions()
    return ["pip", "pyinstaller==" + pyinstaller, "zstandard==" + zstandard, "requests"]


def _ensure_wheels(cache, tgt, log):
    """The downloaded packages for `tgt` (host pip, host configuration), cached."""
    where = _wheels_dir(cache, tgt)
    if (where / "downloads" / ".complete").exists():
        return where
    from bundler.stubs import wheels  # packaging and tomllib: only when downloading (a cached call returns at once)

    work = where / "downloads.tmp"
    shutil.rmtree(work, ignore_errors=True)
    wheels.download(_requirements(), work, tgt.python, tgt.machine, tgt.wheel_platform, tgt.from_source, log=log)
    (work / ".complete").write_text("\n".join(_requirements()) + "\n")
    shutil.rmtree(where / "downloads", ignore_errors=True)
    work.rename(where / "downloads")
    return where


def _ensure_venv(cache, tgt, root, log):
    """A venv inside the root with PyInstaller, zstandard and requests, from the cached packages."""
    pyinstaller, zstandard = versions()
    venv = f"/opt/bundler-stub-pyinstaller{pyinstaller}-zstandard{zstandard}{'-lfs' if tgt.cflags else ''}"
    if (root / venv.lstrip("/") / _VENV_COMPLETE).exists():
        return venv
    where = _ensure_wheels(cache, tgt, log)
    inside = root / _IN_ROOT.lstrip("/")
    shutil.rmtree(inside, ignore_errors=True)
    shutil.copytree(where / "downloads", inside / "downloads")
    built_cache = where / "built"
    if (built_cache / ".complete").exists():
        shutil.copytree(built_cache, inside / "built")
    pip = venv + "/bin/pip"
    links = ["--no-index", "--find-links", _IN_ROOT + "/downloads", "--find-links", _IN_ROOT + "/built"]
    script = [
        "set -e",
        *([f'export CFLAGS="{tgt.cflags}"'] if tgt.cflags else []),
        f"rm -rf {venv}",
        f"python3 -m venv {venv}",
        f"mkdir -p {_IN_ROOT}/built",
        "{} install -q {} --upgrade pip".format(pip, " ".join(links)),
    ]
    if tgt.from_source and not (built_cache / ".complete").exists():
        # Build requirements first (hatchling, setuptools, ...), then the sdists without isolation: no index here.
        script += [
            "{} install -q {} {}/downloads/*.whl".format(pip, " ".join(links), _IN_ROOT),
            "{} wheel -q --no-deps --no-build-isolation {} -w {}/built {}/downloads/*.tar.gz".format(
                pip, " ".join(links), _IN_ROOT, _IN_ROOT
            ),
        ]
    script.append("{} install -q {} {}".format(pip, " ".join(links), " ".join(_requirements()[1:])))
    script.append(f"touch {venv}/{_VENV_COMPLETE}")
    (inside / "venv.sh").write_text("\n".join(script) + "\n")
    debian.run_logged(
        # The fixed environment of the stub's own build, for the packages built from source here too.
        debian.in_root(root, ["sh", "-x", _IN_ROOT + "/venv.sh"], env=REPRODUCIBLE_ENV),
        "pip in the root",
        cache.dir("stub-roots") / f"{root.name}-venv.log",
        log,
        failure=lambda tail: BundleError(f"installing PyInstaller in the {tgt.debian_arch} root failed: {tail}"),
    )
    if tgt.from_source and not (built_cache / ".complete").exists():
        work = where / "built.tmp"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(inside / "built", work)
        (work / ".complete").write_text(f"built in Debian {tgt.release} {tgt.debian_arch}\n")
        shutil.rmtree(built_cache, ignore_errors=True)
        work.rename(built_cache)
    return venv


def _build(root, venv, tgt, log):
    inside = root / _IN_ROOT.lstrip("/")
    source = inside / "src"
    shutil.rmtree(source, ignore_errors=True)
    for relative in run_side_files():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT / relative, source / relative)
    cmd, env = pyinstaller_command(
        venv + "/bin/python", _IN_ROOT + "/src", _IN_ROOT + "/work", _IN_ROOT + "/pyinstaller", inside / "work"
    )
    debian.run_logged(
        debian.in_root(root, cmd, env=env),
        "PyInstaller",
        inside / "pyinstaller.log",
        log,
        failure=lambda tail: BundleError(f"PyInstaller failed to build the {tgt.arch} stub in its root: {tail}"),
    )
    built = inside / "work" / "dist" / "stub"
    with open(built, "rb") as f:
        machine = elf_machine(f)
    if machine != tgt.arch:
        raise BundleError(
            f"the stub built in the {tgt.arch} root is a {machine} ELF file; the root is broken: delete {root} and "
            "retry"
        )
    return built
