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
from payload.errors import BundleError, UsageError

from .arch import host_arch

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
    if path.exists():
        return path
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
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        if result.returncode != 0:
            tail = result.stdout.strip().splitlines()[-5:]
            raise BundleError("PyInstaller failed to build the stub: %s" % " | ".join(tail))
        with fs.atomic_path(path, mode=0o755) as tmp_path:
            shutil.copyfile(os.path.join(tmp, "dist", "stub"), tmp_path)
    return path
