"""What bundler/stubs/build.py EXCLUDES leaves out of the frozen stub, the run side never needs.

Each start of a one-file stub unpacks every library in it, so what the run side never imports is left out. The
run side is driven here through its main paths (install, installed start, pull from a real registry over http
and over https with a token, verify, info, gc, repair, rollback, extract, install for systemd, and its error
exits) with every excluded module blocked the way the frozen stub lacks it: an import of one raises
ModuleNotFoundError. A path that needed one fails (an internal error, exit 1), and the test names the module and
who imported it. Blocked imports that the standard library makes optionally (shutil's `try: import bz2`) are
allowed: the path still has to give its normal result. tests/e2e runs the same paths with the real frozen stub.
"""

import os
import subprocess
import sys

import pytest

from bundler.stubs.build import EXCLUDES
from stub.root import PINS_DIR
from testing.bundles import images_manifest, images_project, make_bundle, online_bundle
from testing.helpers import ROOT, bundler, flip_byte
from testing.registry import BUSYBOX, ImageLayout, Registry, TokenService, push, self_signed_certificate

RUN_BLOCKED = r"""
import os, sys
BLOCKED = tuple(os.environ["STUB_BLOCKED"].split(","))
LOADED = [name for name in BLOCKED if name in sys.modules]
if LOADED:  # the blocker would never see them
    sys.exit("loaded before the blocker, cannot be watched: %s" % LOADED)


def stack():  # not traceback.format_stack: the traceback module imports re
    lines, frame = [], sys._getframe(2)
    while frame is not None:
        lines.append('  File "%s", line %d, in %s\n' % (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return "".join(reversed(lines))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
            with open(os.environ["STUB_BLOCK_LOG"], "a") as log:
                log.write("%s\n%s\0" % (name, stack()))
            raise ModuleNotFoundError("No module named %r (left out of the stub)" % name, name=name)
        return None

sys.meta_path.insert(0, Blocker())
sys.argv = sys.argv[1:]
from stub.main import main
main()
"""


def blocked_modules():
    return list(EXCLUDES)


def test_excluded_modules_are_not_loaded_at_interpreter_start():
    """The blocker can only see imports made after it is installed: the ones Python makes at its start (the
    encodings of stdio, site) must not be excluded."""
    code = "import sys; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, text=True).stdout.split()
    hit = [m for m in loaded for b in EXCLUDES if m == b or m.startswith(b + ".")]
    assert hit == [], f"loaded before any run-side code, yet excluded from the stub: {hit}"


class Runner:
    def __init__(self, tmp_path, blocked=None):
        self.log = tmp_path / "blocked.log"
        self.blocked_names = blocked_modules() if blocked is None else blocked
        self.runs = []

    def __call__(self, exe, *args, expect=0, env=None):
        environ = dict(
            os.environ,
            BUNDLE_EXECUTABLE=str(exe),
            STUB_BLOCKED=",".join(self.blocked_names),
            STUB_BLOCK_LOG=str(self.log),
            PYTHONPATH=str(ROOT),
        )
        environ.update(env or {})
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
        flags = environ.pop("STUB_PYTHON_FLAGS", "").split()
        result = subprocess.run(
            [sys.executable, *flags, "-c", RUN_BLOCKED, "bundle", *map(str, args)],
            cwd=str(ROOT),
            capture_output=True,
            env=environ,
            text=True,
        )
        self.runs.append(args)
        blocked = self.blocked()
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr, (
            f"{args}: {result.stderr}\nblocked imports so far: {blocked}"
        )
        assert result.returncode == expect, (
            f"{args} exited {result.returncode}, expected {expect}: {result.stderr}\nblocked imports: {blocked}"
        )
        return result

    def blocked(self):
        if not self.log.exists():
            return {}
        found = {}
        for record in self.log.read_text().split("\0"):
            if record.strip():
                name, _, caller = record.partition("\n")
                found.setdefault(name, caller)
        return found


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """A plain-http registry and an https one behind a token service, both holding busybox as test/busybox:1."""
    pytest.importorskip("cryptography")
    work = tmp_path_factory.mktemp("excludes-registries")
    layout = ImageLayout(work / "layout")
    layout.build("base", {"/bin/busybox": BUSYBOX})
    (work / "tls").mkdir()
    (work / "tokens").mkdir()
    tokens = TokenService(work / "tokens", users={"pusher": "secret"})
    plain = Registry(work / "plain").start()
    secure = Registry(work / "secure", token=tokens, tls=self_signed_certificate(work / "tls", "127.0.0.1"))
    try:
        secure.start()
        push(layout, "base", plain, "test/busybox:1")
        push(layout, "base", secure, "test/busybox:1", creds="pusher:secret")
        yield plain, secure, tokens
    finally:
        plain.stop()
        secure.stop()
        tokens.close()


def test_the_run_side_needs_no_excluded_module_on_its_main_paths(tmp_path, plain_stub, registries):
    plain, secure, tokens = registries
    run = Runner(tmp_path)
    exe, _ = make_bundle(tmp_path / "offline", plain_stub)
    root = tmp_path / "root"
    run(exe, "--bundle-help")
    run(exe, "--bundle-info")
    run(exe, "--bundle-info", "--json")
    run(exe, "--bundle-verify")
    assert "hello" in run(exe, "--bundle-dir", root, "a", "b", expect=7).stdout  # first start: install, exec
    assert "hello" in run(exe, "--bundle-dir", root, expect=7).stdout  # installed start
    run(exe, "--bundle-dir", root, "--bundle-install")
    run(exe, "--bundle-extract", tmp_path / "extracted")
    (root / "current" / "bin" / "hello").write_text("changed\n")
    run(exe, "--bundle-dir", root, "--bundle-repair")
    newer, _ = make_bundle(tmp_path / "newer", plain_stub, version="1.1.0")
    run(newer, "--bundle-dir", root, expect=7)
    run(newer, "--bundle-dir", root, "--bundle-rollback")
    run(exe, "--bundle-dir", root, "--bundle-gc")
    # error exits: usage, integrity, environment
    run(exe, "--bundle-no-such-option", expect=2)
    damaged = tmp_path / "damaged"
    damaged.write_bytes(exe.read_bytes())
    flip_byte(damaged, damaged.stat().st_size - 200)
    run(damaged, "--bundle-verify", expect=3)
    run(damaged, "--bundle-dir", tmp_path / "damaged-root", expect=3)
    run(exe, "--bundle-dir", "/proc/no-such-root", expect=4)
    # pulls: plain http, then https with a bearer token; a registry that is gone (exit 5)
    for registry in (secure, plain):
        online = online_bundle(tmp_path / f"online-{registry.port}", registry.host, plain_stub)
        listed = run(online, "--bundle-dir", tmp_path / f"pulled-{registry.port}")
        assert listed.stdout.split() == ["base.tar"]
    # the background puller, run here in the foreground (a start launches it detached, out of the blocker's
    # reach), then the wait for what it pulled
    background = online_bundle(tmp_path / "background", plain.host, plain_stub, pull="background")
    pulled = tmp_path / "background-root"
    assert run(background, "--bundle-dir", pulled, "--bundle-no-pull").stdout.split() == []
    run(background, "--bundle-dir", pulled, "--bundle-pull-worker")
    assert run(background, "--bundle-dir", pulled, "--bundle-wait-images", "base", "--timeout", "0").stdout
    plain.stop()
    try:
        run(online, "--bundle-dir", tmp_path / "gone-root", expect=5)
    finally:
        plain.start()
    assert any(method == "GET" for method, _, _ in tokens.requests)  # the https pull took a bearer token
    allowed = {name for name, caller in run.blocked().items() if _optional(name, caller)}
    needed = {name: caller for name, caller in run.blocked().items() if name not in allowed}
    assert not needed, "the run side imported modules the stub leaves out:\n" + "\n".join(
        "{}, imported by\n{}".format(*item) for item in needed.items()
    )
    print("blocked optional imports (absent in the stub, handled where imported):", sorted(allowed))


# Imported by nothing on an installed start: each is a measurable share of one under qemu (docs/benchmarks.md):
# re (and enum, which re brings), collections (namedtuple), contextlib and functools (generator context managers),
# ctypes (renameat2, for a rollback only).
NOT_ON_AN_INSTALLED_START = ["re", "enum", "json", "collections", "contextlib", "functools", "ctypes"]


def test_an_installed_start_imports_none_of_the_modules_it_can_do_without(tmp_path, plain_stub):
    """Python without site (`-S`): the venv's .pth files import re before any code of ours could be watched."""
    exe, _ = make_bundle(tmp_path / "offline", plain_stub)
    root = tmp_path / "root"
    assert "hello" in Runner(tmp_path)(exe, "--bundle-dir", root, expect=7).stdout  # installs (re allowed)
    (tmp_path / "installed").mkdir()
    run = Runner(tmp_path / "installed", blocked=NOT_ON_AN_INSTALLED_START)
    bare = [
        sys.executable,
        "-S",
        "-c",
        f"import sys; print(sorted(set({NOT_ON_AN_INSTALLED_START!r}) & set(sys.modules)))",
    ]
    assert subprocess.run(bare, stdout=subprocess.PIPE, text=True, check=True).stdout.strip() == "[]"
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {"STUB_PYTHON_FLAGS": "-S", "PYTHONPATH": os.pathsep.join([str(ROOT)] + site_packages)}
    assert "hello" in run(exe, "--bundle-dir", root, "x", expect=7, env=env).stdout
    assert run.blocked() == {}


def test_an_installed_start_of_a_realistic_bundle_loads_no_openssl(tmp_path, plain_stub, registries):
    """A bundle as a KubeSolo one is: files, an embedded image from a real registry, an update repository and a
    signature, with the key pinned. Its installed start must not need hashlib (OpenSSL: the frozen stub would unpack
    its on-demand set at every start) any more than a bare bundle's."""
    plain = registries[0]
    project = images_project(
        tmp_path / "project", images_manifest(plain.host, {"base": "test/busybox:1"}, online_embed=["base"])
    )
    manifest = (project / "bundle.toml").read_text()
    (project / "bundle.toml").write_text(
        manifest.replace("[variants.online]", f'[update]\nrepository = "{plain.host}/fleet/imgs"\n\n[variants.online]')
    )
    bundler("keygen", "--out", tmp_path / "release")
    exe = project / "signed"
    bundler(
        "make",
        "--stub",
        plain_stub,
        "--variant",
        "online",
        "--cache-dir",
        project / "cache",
        "--level",
        "3",
        "--insecure-registry",
        plain.host,
        "--sign",
        tmp_path / "release.key",
        "-o",
        exe,
        cwd=project,
    )
    root = tmp_path / "root"
    first = Runner(tmp_path)(exe, "--bundle-dir", root, "--bundle-key", tmp_path / "release.pub")
    assert first.stdout.split() == ["base.tar"]  # installed, the image written, the key pinned
    assert os.listdir(root / PINS_DIR)
    (tmp_path / "installed").mkdir()
    run = Runner(tmp_path / "installed", blocked=NOT_ON_AN_INSTALLED_START + ["hashlib", "_hashlib"])
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {"STUB_PYTHON_FLAGS": "-S", "PYTHONPATH": os.pathsep.join([str(ROOT)] + site_packages)}
    assert run(exe, "--bundle-dir", root, env=env).stdout.split() == ["base.tar"]
    assert run.blocked() == {}


# What a first install of a bundle without images can do without: tempfile (with random and shutil) for its temp
# names, the image archive writer and reader (tarfile, json, payload.oci); each is a visible share of a first
# install's imports (docs/benchmarks.md).
NOT_ON_A_FIRST_INSTALL_WITHOUT_IMAGES = ["tempfile", "random", "shutil", "tarfile", "payload.oci"]


def test_a_first_install_without_images_imports_no_temp_or_archive_modules(tmp_path, plain_stub):
    exe, _ = make_bundle(tmp_path / "offline", plain_stub)
    run = Runner(tmp_path, blocked=NOT_ON_A_FIRST_INSTALL_WITHOUT_IMAGES)
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {"STUB_PYTHON_FLAGS": "-S", "PYTHONPATH": os.pathsep.join([str(ROOT)] + site_packages)}
    root = tmp_path / "root"
    assert "hello" in run(exe, "--bundle-dir", root, "x", expect=7, env=env).stdout  # installs, then runs
    assert (root / "current" / "images").is_dir()  # BUNDLE_IMAGES is there all the same
    assert run(exe, "--bundle-extract", tmp_path / "extracted", env=env).stdout.strip()
    assert run.blocked() == {}


# Standard-library modules that import these inside `try: ... except ImportError`, and work without them.
OPTIONAL_IMPORTERS = {
    "bz2": ("shutil.py", "tarfile.py", "zipfile.py"),
    "_bz2": ("bz2.py",),
    "lzma": ("shutil.py", "tarfile.py", "zipfile.py"),
    "_lzma": ("lzma.py",),
    "_decimal": ("decimal.py",),
    "_pickle": ("pickle.py",),
    "_datetime": ("datetime.py",),
    "charset_normalizer": ("requests/__init__.py", "requests/compat.py"),  # answers are JSON and bytes
}


def _optional(name, caller):
    """Whether the import of `name` was made by one of its OPTIONAL_IMPORTERS (the innermost frame outside the
    import machinery)."""
    frames = [
        line.strip()
        for line in caller.splitlines()
        if line.strip().startswith("File ") and "<frozen importlib" not in line and "/importlib/__init__.py" not in line
    ]
    return bool(frames) and any(f'/{importer}", line' in frames[-1] for importer in OPTIONAL_IMPORTERS.get(name, ()))


# The extension modules and libraries that these EXCLUDES keep out of the frozen stub's archive.
LEFT_OUT_FILES = (
    "_codecs_jp",
    "_codecs_cn",
    "_multibytecodec",
    "_decimal",
    "_bz2",
    "libbz2",
    "_lzma",
    "liblzma",
    "_pickle",
    "_statistics",
    "_datetime",
)


def test_the_frozen_stub_unpacks_none_of_the_excluded_libraries(stub_path):
    from PyInstaller.archive.readers import CArchiveReader

    unpacked = [name for name, entry in CArchiveReader(str(stub_path)).toc.items() if entry[4] in "bx"]
    assert unpacked, "no unpacked files found: not a PyInstaller one-file stub?"
    found = [name for name in unpacked for left_out in LEFT_OUT_FILES if os.path.basename(name).startswith(left_out)]
    assert found == []
    assert any(os.path.basename(name).startswith("_struct") for name in unpacked)  # what stays is still there


def _euc_jp_locale(directory):
    """A ja_JP.eucJP locale compiled into `directory` (for LOCPATH), or None where localedef cannot make it."""
    if subprocess.run(["sh", "-c", "command -v localedef"], stdout=subprocess.DEVNULL).returncode != 0:
        return None
    subprocess.run(
        ["localedef", "-i", "ja_JP", "-f", "EUC-JP", str(directory / "ja_JP.eucJP")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return directory if (directory / "ja_JP.eucJP").is_dir() else None


def test_the_frozen_stub_starts_under_a_locale_whose_codec_it_left_out(stub_path, cache_dir, tmp_path):
    """Without UTF-8 mode Python takes its file-system encoding from the locale: under EUC-JP it needs the CJK
    codecs the stub leaves out and dies before any of our code runs (seen with a stub built without it)."""
    locales = _euc_jp_locale(tmp_path)
    if locales is None:
        pytest.skip(reason="localedef cannot compile ja_JP.EUC-JP here (the locales package brings it)")
    exe, _ = make_bundle(tmp_path / "build", stub_path, cache=cache_dir)
    check = subprocess.run(
        ["locale", "charmap"],
        env=dict(os.environ, LOCPATH=str(locales), LC_ALL="ja_JP.eucJP"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert check.stdout.strip() == "EUC-JP", f"the test locale did not take effect: {check.stdout!r}"
    env = dict(os.environ, LOCPATH=str(locales), LC_ALL="ja_JP.eucJP")
    result = subprocess.run(
        [str(exe), "--bundle-dir", str(tmp_path / "root"), "x"],
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
    )
    assert result.returncode == 7, result.stderr
    assert "hello x" in result.stdout
