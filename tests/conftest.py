import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

# Bundles made by the suite use the quick stub built from this host's Python (`make --stub host`), as they did
# before portable stubs; tests/devices/ builds portable stubs in Debian roots and clears this for its own makes.
os.environ.setdefault("BUNDLER_STUB", "host")

# Fixtures that live with their helpers (users of this host for the device tests).
pytest_plugins = ["testing.devices"]

from testing import slow  # noqa: E402
from testing.registry import BUSYBOX, ImageLayout  # noqa: E402

# A test is slow when it needs one of these (its fixtures' fixtures count) or lives in one of SLOW_FOLDERS: they
# build the real stub or a Debian root, or start a registry or containerd. testing/slow.py fails a test that
# reaches one of those parts unmarked.
SLOW_FIXTURES = {"stub_path", "cache_dir", "image_layout", "registries", "devices_cache", "roots_cache"}
SLOW_FOLDERS = {"e2e", "devices"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        folders = set(item.path.relative_to(ROOT / "tests").parts[:-1])
        if SLOW_FIXTURES & set(item.fixturenames) or SLOW_FOLDERS & folders:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("slow") is None:
        os.environ[slow.UNMARKED] = item.nodeid
    else:
        os.environ.pop(slow.UNMARKED, None)


def pytest_runtest_teardown(item):
    os.environ.pop(slow.UNMARKED, None)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One build cache for the whole session, so the real PyInstaller stub is built once."""
    return tmp_path_factory.mktemp("bundler-cache")


@pytest.fixture(scope="session")
def stub_path(cache_dir):
    """A real PyInstaller one-file stub built from this host's Python and the current sources."""
    from testing.helpers import bundler

    slow.require("builds the real PyInstaller stub")

    return Path(bundler("stub", "--host", "--cache-dir", cache_dir).stdout.strip())


ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


def require_registry_tools():
    missing = [tool for tool in ("docker-registry", "umoci", "skopeo", "htpasswd") if shutil.which(tool) is None]
    if missing:
        pytest.skip(reason=f"needs {', '.join(missing)} (scripts/setup installs them)")


@pytest.fixture(scope="session")
def image_layout(tmp_path_factory):
    require_registry_tools()
    root = tmp_path_factory.mktemp("oci-images")
    motd = root / "motd"
    motd.write_text("hello from the derived image\n")
    statement = root / "statement.json"
    statement.write_text('{"_type": "https://in-toto.io/Statement/v0.1"}\n')
    layout = ImageLayout(root / "layout")
    layout.build("base", {"/bin/busybox": BUSYBOX})
    layout.build("derived", {"/etc/motd": str(motd)}, base="base")
    layout.build("armv7", {"/bin/busybox": BUSYBOX}, architecture="arm")
    layout.build("attest", {"/statement.json": str(statement)})
    layout.add_index(
        "multi",
        [
            # Attestations first: a client that does not skip them picks the wrong manifest.
            layout.descriptor("attest", {"os": "unknown", "architecture": "unknown"}, ATTESTATION),
            layout.descriptor("attest", {"os": "linux", "architecture": "amd64"}, ATTESTATION),
            layout.descriptor("base", {"os": "linux", "architecture": "amd64"}),
            layout.descriptor("armv7", {"os": "linux", "architecture": "arm", "variant": "v7"}),
        ],
    )
    return layout


def _tmpfs(tmp_path, name, options):
    if os.geteuid() != 0:
        pytest.skip(reason="mounting a tmpfs needs root")
    mountpoint = tmp_path / name
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(reason=f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB file system, so the disk really fills up (no mock can show what a full disk leaves behind)."""
    yield from _tmpfs(tmp_path, "tiny", "size=1m")


@pytest.fixture
def read_only_tmpfs(tmp_path):
    """A real read-only file system (EROFS on every write)."""
    yield from _tmpfs(tmp_path, "ro", "ro,size=1m")


@pytest.fixture(scope="session")
def plain_stub(tmp_path_factory):
    """A stand-in for the PyInstaller stub in in-process tests: /bin/true with a `pydata` section added by objcopy
    (the way PyInstaller adds it). `bundler make --stub` and the payload writer take it; it does not run a bundle."""
    if shutil.which("objcopy") is None:
        pytest.skip(reason="needs objcopy (binutils) to add a pydata section")
    work = tmp_path_factory.mktemp("plain-stub")
    (work / "pydata").write_bytes(b"not a PyInstaller archive\n" * 8)
    stub = work / "stub"
    subprocess.run(
        [
            "objcopy",
            "--add-section",
            f"pydata={work / 'pydata'}",
            "--set-section-flags",
            "pydata=noload,readonly",
            "/bin/true",
            str(stub),
        ],
        check=True,
    )
    return stub


@pytest.fixture
def fat32_stick(tmp_path):
    """A real FAT32 file system (mkfs.vfat image mounted by fusefat): (mount point, image)."""
    from testing.fat32 import fat32

    stick = tmp_path / "fat32"
    stick.mkdir()
    with fat32(stick) as (mount, image):
        yield Path(mount), Path(image)
