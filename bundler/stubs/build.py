"""The stub: a PyInstaller one-file build of stub/ (with payload/), made once and cached.

Two kinds: a portable stub built in a Debian root of the target architecture (bundler/stubs/portable.py; the
default), and one built from this host's own Python (`bundler stub --host`, `make --stub host`): quick to make,
but it needs the build host's glibc on the device.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from bundler.arch import host_arch
from bundler.build.glibc import archive_elves
from bundler.cache import file_sha256
from bundler.stubs import launcher
from payload import fs
from payload import progress as progress_display
from payload.errors import BundleError, IntegrityError

PROJECT = Path(__file__).resolve().parents[2]
RUN_SIDE = ("stub", "payload")
# Modules the stub never uses. Leaving them out keeps it under 10 MB and its start-up short: every start
# unpacks the stub's libraries, and `inspect` brings PyInstaller's pyi_rth_inspect hook, which runs at every start.
# tests/stub/test_imports.py and tests/stub/test_excludes.py check that the run side needs none of them; the
# last three lines (CJK codecs, decimal, bz2, lzma, pickle, statistics, the C datetime) make the stub and what
# every start unpacks smaller (docs/benchmarks.md gives the sizes).
EXCLUDES = (
    "tkinter",
    "unittest",
    "pydoc",
    "pydoc_data",
    "lib2to3",
    "distutils",
    "setuptools",
    "pkg_resources",
    "pip",
    "test",
    "xmlrpc",
    "sqlite3",
    "multiprocessing",
    "asyncio",
    "concurrent",
    "curses",
    "readline",
    "doctest",
    "ftplib",
    "cryptography",
    "click",
    "bundler",
    "PyInstaller",
    "inspect",
    "zstandard._cffi",
    "_cffi_backend",
    "charset_normalizer",
    "_codecs_cn",
    "_codecs_hk",
    "_codecs_iso2022",
    "_codecs_jp",
    "_codecs_kr",
    "_codecs_tw",
    "_multibytecodec",
    "_decimal",
    "decimal",
    "bz2",
    "_bz2",
    "lzma",
    "_lzma",
    "_pickle",
    "pickle",
    "statistics",
    "_statistics",
    "_datetime",
)
HOST = "host"  # `make --stub host`: the stub built from this host's Python
STATIC = "static"  # `make --stub static`: the portable stub with the C library it runs on (bundler/stubs/static.py)


def run_side_files():
    """The run side's sources, as paths relative to the project: what a stub is built from."""
    return [path.relative_to(PROJECT) for package in RUN_SIDE for path in sorted((PROJECT / package).rglob("*.py"))]


def sources_digest():
    """The digest of what a stub is built from: the run side's sources and the build's recipe (the spec, EXCLUDES
    and the environment), so a changed recipe never finds a stub of the old one under the same key."""
    sha = hashlib.sha256()
    for relative in run_side_files():
        sha.update(str(relative).encode() + b"\0" + (PROJECT / relative).read_bytes() + b"\0")
    sha.update(repr((SPEC, EXCLUDES, sorted(REPRODUCIBLE_ENV.items()))).encode())
    sha.update(launcher.recipe_digest().encode())
    return sha.hexdigest()


def versions():
    """The PyInstaller and zstandard versions of this host: portable stubs are built with the same ones."""
    return metadata.version("pyinstaller"), metadata.version("zstandard")


# The stub's PyInstaller build: a one-file, stripped build of stub/__main__.py without EXCLUDES, in UTF-8 mode (the
# file-system and stdio encodings never come from the device's locale, so a locale whose codec was left out,
# EUC-JP, GBK or Big5, cannot stop Python from starting). The libraries payload/lazylibs.py names leave PyInstaller's
# archive for one data file that stub/lazylibs.py unpacks only for an import that needs them. base_library.zip is
# written again with its members in name order: PyInstaller writes them in the order its module graph gives, which
# varies from run to run even with a fixed hash seed (two members swap places).
SPEC = """# Written by bundler/stubs/build.py.
import os
import subprocess
import sys
import zipfile

sys.path.insert(0, {project!r})
from payload import lazylibs

a = Analysis([{script!r}], pathex=[{project!r}], excludes={excludes!r})
lazy, binaries = [], []
for dest, source, kind in a.binaries:
    if lazylibs.is_lazy(dest, kind):
        stripped = os.path.join(SPECPATH, "lazy", dest)
        os.makedirs(os.path.dirname(stripped), exist_ok=True)
        subprocess.run(["strip", "-o", stripped, source], check=True)  # what strip=True does to the others
        lazy.append((dest, stripped, lazylibs.module_of(dest, kind)))
    else:
        binaries.append((dest, source, kind))
for dest, source, kind in a.datas:
    if dest == "base_library.zip":
        with zipfile.ZipFile(source) as old:
            members = [(info, old.read(info)) for info in sorted(old.infolist(), key=lambda info: info.filename)]
        with zipfile.ZipFile(source, "w") as new:
            for info, data in members:
                again = zipfile.ZipInfo(info.filename, info.date_time)
                again.compress_type, again.external_attr = info.compress_type, info.external_attr
                new.writestr(again, data)
blob = os.path.join(SPECPATH, lazylibs.BLOB)
lazylibs.pack(lazy, blob)
exe = EXE(PYZ(a.pure), a.scripts, binaries, a.datas + [(lazylibs.BLOB, blob, "DATA")],
          [("X utf8", None, "OPTION")], name="stub", strip=True, upx=False, console=True)
"""


# What makes two builds of one stub key byte-equal on any host (docs/reproducible.md). Python salts the hash of
# str with a random seed per process, and PyInstaller compiles every module in its own process: the order of a
# frozenset constant (`x in {"a", "b"}`) in the marshalled code, and the order of base_library.zip's members,
# follow that seed. A fixed SOURCE_DATE_EPOCH is for whatever in the build reads the clock (wheel's zip times for
# a package built from source in the root, PyInstaller's build stamp on other platforms).
REPRODUCIBLE_ENV = {"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "315532800"}  # 1980-01-01, the zip epoch


def pyinstaller_command(python, project, tmp, config_dir, tmp_on_host=None):
    """(command line, environment) of the PyInstaller build of the stub from the sources under `project`, working in
    `tmp` with its cache in `config_dir` (paths as `python` sees them; `tmp_on_host` is where this process sees
    `tmp`, for a build in a Debian root). Writes the spec. The one place both kinds of stub are built from."""
    os.makedirs(tmp_on_host or tmp, exist_ok=True)
    with open(os.path.join(tmp_on_host or tmp, "stub.spec"), "w") as spec:
        spec.write(
            SPEC.format(
                project=str(project), script=os.path.join(str(project), "stub", "__main__.py"), excludes=list(EXCLUDES)
            )
        )
    cmd = [
        python,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--clean",
        "--log-level=WARN",
        "--distpath",
        os.path.join(tmp, "dist"),
        "--workpath",
        os.path.join(tmp, "build"),
        os.path.join(tmp, "stub.spec"),
    ]
    return cmd, dict(REPRODUCIBLE_ENV, PYINSTALLER_CONFIG_DIR=str(config_dir))


def host_stub_key():
    material = "|".join([sources_digest(), versions()[0], sys.version, host_arch()])
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def cached_stub(cache, path):
    """Whether the stub at `path` is in the cache and still the bytes it was built as; a damaged one (truncated by
    a full disk or a copy cut short, a flipped bit) is dropped with a notice, so the caller builds it again."""
    if not path.exists():
        return False
    checksum = path.with_name(path.name + ".sha256")
    try:
        recorded = checksum.read_text().strip()
    except FileNotFoundError:  # copied without its checksum, or cached before checksums were kept
        why = _not_a_whole_stub(path)
        if why:
            cache.drop(path, why)
            return False
        recorded = file_sha256(path)
        fs.write_atomic(checksum, recorded + "\n", temp_dir=cache.tmp)
    if file_sha256(path) == recorded:
        return True
    cache.drop(path, "it does not match the sha256 recorded when it was built")
    return False


def _not_a_whole_stub(path):
    """Why the file at `path` is not a whole PyInstaller stub (ELF headers and sections within the file, an archive
    with its cookie and table of contents in `pydata`), or None."""
    try:
        with open(path, "rb") as f:
            if not archive_elves(f, str(path)):
                return "no sha256 was recorded and it holds no whole PyInstaller archive"
    except IntegrityError as exc:
        return "no sha256 was recorded and {}".format(str(exc).split(": ", 1)[-1])
    return None


def install_stub(cache, built, path):
    """Put PyInstaller's freshly built program behind the launcher of its architecture, into the cache at `path`,
    atomically, with its sha256 beside it."""
    with fs.atomic_path(path, mode=0o755, temp_dir=cache.tmp) as tmp_path:
        if launcher.has_launcher(built):  # put together already (a stub copied from another cache)
            shutil.copyfile(built, tmp_path)
        else:
            launcher.put_together(built, launcher.launcher(cache, launcher.arch_of(built)), tmp_path)
        fs.write_atomic(path.with_name(path.name + ".sha256"), file_sha256(tmp_path) + "\n", temp_dir=cache.tmp)
    return path


def host_stub(cache, log=print):
    """The cached stub built from this host's Python (built now if needed): fast, but it needs this host's glibc."""
    path = cache.dir("stubs") / (f"stub-{host_arch()}-{host_stub_key()}")
    if cached_stub(cache, path):
        return path
    log("building the stub with this host's Python and PyInstaller (once per stub version; about a minute)...")
    with tempfile.TemporaryDirectory(prefix="bundler-stub-") as tmp:
        # A private PyInstaller cache: two builds sharing ~/.cache/pyinstaller with --clean break each other.
        cmd, build_env = pyinstaller_command(sys.executable, PROJECT, tmp, cache.dir("pyinstaller"))
        env = dict(os.environ, **build_env)
        log_path = os.path.join(tmp, "pyinstaller.log")
        if _run_with_progress(cmd, env, log_path) != 0:
            with open(log_path, errors="replace") as output:
                tail = output.read().strip().splitlines()[-5:]
            raise BundleError("PyInstaller failed to build the stub: {}".format(" | ".join(tail)))
        install_stub(cache, os.path.join(tmp, "dist", "stub"), path)
    from bundler.sbom.stub import record

    record(path, "host")  # for its SBOM: what it is made of
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
