"""The stub: a PyInstaller one-file build of stub/ (with payload/), made once per (sources, PyInstaller,
Python, architecture) and cached."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from payload import fs
from payload import progress as progress_display
from payload.errors import BundleError, UsageError

from .arch import host_arch
from .cache import file_sha256

PROJECT = Path(__file__).resolve().parent.parent
RUN_SIDE = ("stub", "payload")
# Modules the stub never uses. Leaving them out keeps it under 10 MB and its start-up short: every start
# unpacks the stub's libraries, and `inspect` brings PyInstaller's pyi_rth_inspect hook (35-40 ms a start).
# tests/stub/test_imports.py checks that the run side needs none of them.
EXCLUDES = ("tkinter", "unittest", "pydoc", "pydoc_data", "lib2to3", "distutils", "setuptools", "pkg_resources",
            "pip", "test", "xmlrpc", "sqlite3", "multiprocessing", "asyncio", "concurrent", "curses", "readline",
            "doctest", "ftplib", "cryptography", "click", "bundler", "PyInstaller", "inspect",
            "zstandard._cffi", "_cffi_backend", "charset_normalizer")


def _sources_digest():
    sha = hashlib.sha256()
    for package in RUN_SIDE:
        for path in sorted((PROJECT / package).rglob("*.py")):
            sha.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def stub_key():
    import PyInstaller

    material = "|".join([_sources_digest(), PyInstaller.__version__, sys.version, host_arch()])
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def build_stub(cache, arch, log=print):
    """Return the path of a cached stub for `arch`, building it if needed (host architecture only)."""
    if arch != host_arch():
        raise UsageError("cannot build a stub for %s on this %s host (PyInstaller does not cross-build); build one on "
                         "a %s machine with `bundler stub` and pass it with --stub PATH" % (arch, host_arch(), arch))
    path = cache.dir("stubs") / ("stub-%s-%s" % (arch, stub_key()))
    checksum = path.with_name(path.name + ".sha256")
    if path.exists():
        try:
            recorded = checksum.read_text().strip()
        except FileNotFoundError:  # a stub cached before checksums were kept: record what it is now
            recorded = file_sha256(path)
            fs.write_atomic(checksum, recorded + "\n", temp_dir=cache.tmp)
        if file_sha256(path) == recorded:
            return path
        cache.drop(path, "it does not match the sha256 recorded when it was built")
    log("building the stub with PyInstaller (once per stub version; about a minute)...")
    with tempfile.TemporaryDirectory(prefix="bundler-stub-") as tmp:
        cmd = [sys.executable, "-m", "PyInstaller", "--onefile", "--strip", "--noconfirm", "--clean", "--log-level=WARN",
               "--name", "stub", "--distpath", os.path.join(tmp, "dist"), "--workpath", os.path.join(tmp, "build"),
               "--specpath", tmp, "--paths", str(PROJECT)]
        for module in EXCLUDES:
            cmd += ["--exclude-module", module]
        cmd.append(str(PROJECT / "stub" / "__main__.py"))
        # A private PyInstaller cache: two builds sharing ~/.cache/pyinstaller with --clean break each other.
        env = dict(os.environ, PYINSTALLER_CONFIG_DIR=str(cache.dir("pyinstaller")))
        log_path = os.path.join(tmp, "pyinstaller.log")
        if _run_with_progress(cmd, env, log_path) != 0:
            with open(log_path, errors="replace") as output:
                tail = output.read().strip().splitlines()[-5:]
            raise BundleError("PyInstaller failed to build the stub: %s" % " | ".join(tail))
        with fs.atomic_path(path, mode=0o755, temp_dir=cache.tmp) as tmp_path:
            shutil.copyfile(os.path.join(tmp, "dist", "stub"), tmp_path)
            fs.write_atomic(checksum, file_sha256(tmp_path) + "\n", temp_dir=cache.tmp)
    return path


def _run_with_progress(cmd, env, log_path):
    """Run `cmd` with its output in `log_path`; on a terminal, show the time it has taken so far. Ctrl-C stops it."""
    bar = progress_display.Bar("building the stub", unit=None) if progress_display.on_terminal() else None
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if bar is not None:
                    bar.update(0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if bar is not None:
            bar.close()
