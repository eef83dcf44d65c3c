"""The glibc floor reader against binutils' readelf (not our code), on real ELF files and a real stub."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bundler.build.glibc import archive_elves, floor_of_file, glibc_needs, linked_names, parse_version, stub_floor
from payload.errors import IntegrityError
from testing.helpers import stub_bootloader

pytestmark = pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")


def readelf_glibc(path):
    """Every GLIBC_x.y in the version needs that `readelf -V` prints."""
    out = subprocess.run(["readelf", "-V", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    needs = out.partition(".gnu.version_r")[2]
    return {(int(a), int(b)) for a, b in re.findall(r"Name: GLIBC_(\d+)\.(\d+)(?:\.\d+)?\s", needs)}


def host_elves():
    candidates = [
        Path(p)
        for p in (
            "/usr/bin/crun",
            "/usr/bin/ls",
            "/usr/bin/python3.11",
            "/usr/bin/zstd",
            "/usr/bin/containerd-shim-runc-v2",
            "/bin/busybox",
        )
    ]
    libs = Path("/usr/lib/x86_64-linux-gnu")
    candidates += [libs / name for name in ("libc.so.6", "libm.so.6", "libcrypto.so.3", "libz.so.1")]
    return [p for p in candidates if p.exists()]


@pytest.mark.parametrize("path", host_elves(), ids=str)
def test_needs_match_readelf(path):
    with open(path, "rb") as f:
        assert glibc_needs(f, str(path)) == readelf_glibc(path)
    assert floor_of_file(path) == max(readelf_glibc(path), default=None)


def readelf_dynamic(path):
    """(SONAME or None, [NEEDED...]) as `readelf -d` prints them."""
    out = subprocess.run(["readelf", "-d", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    soname = re.findall(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return (soname[0] if soname else None), re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


@pytest.mark.parametrize("path", host_elves(), ids=str)
def test_linked_names_match_readelf(path):
    with open(path, "rb") as f:
        assert linked_names(f, str(path)) == readelf_dynamic(path)


def test_static_file_has_no_floor():
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip(reason="needs busybox-static (scripts/setup installs it)")
    assert readelf_glibc(busybox) == set() and floor_of_file(busybox) is None
    with open(busybox, "rb") as f:
        assert linked_names(f, str(busybox)) == (None, [])


def test_stub_floor_covers_the_libraries_inside_pyinstallers_archive(stub_path, tmp_path):
    from PyInstaller.archive.readers import CArchiveReader  # PyInstaller's own reader, as the independent check

    reader = CArchiveReader(str(stub_path))
    members = []
    for name in reader.toc:
        data = reader.extract(name)
        if name == "bundler-lazy-libs":  # the set unpacked on demand (payload/lazylibs.py), read with zstd's CLI
            header, _, frame = data.partition(b"\n\n")
            content = subprocess.run(["zstd", "-d", "-c"], input=frame, stdout=subprocess.PIPE, check=True).stdout
            offset = 0
            for line in header.decode().splitlines()[1:]:  # zstd decodes the files' frames one after the other
                size, _, _, path = line.split(" ", 3)
                members.append((path, content[offset : offset + int(size)]))
                offset += int(size)
            assert offset == len(content) and any(p.startswith("libcrypto") for p, _ in members)
        elif isinstance(data, bytes):
            members.append((name, data))
    expected = {}
    for name, data in members:
        if data[:4] == b"\x7fELF":
            copy = tmp_path / name.replace("/", "_")
            copy.write_bytes(data)
            expected[name] = max(readelf_glibc(copy), default=None)
    with open(stub_path, "rb") as f:
        found = dict(archive_elves(f, str(stub_path)))
    assert sorted(found) == sorted(expected) and any(n.startswith("libpython") for n in found)
    floor, floors = stub_floor(stub_path)
    assert not readelf_glibc(stub_path)  # the launcher in front is static: the bootloader's needs are its section's
    bootloader = max(readelf_glibc(stub_bootloader(stub_path, tmp_path / "bootloader")))
    assert floors.pop("bootloader") == bootloader
    assert floors == expected
    assert floor == max(v for v in list(expected.values()) + [bootloader] if v)


def test_truncated_file_is_an_integrity_error(tmp_path):
    damaged = tmp_path / "ls"
    damaged.write_bytes(Path("/usr/bin/ls").read_bytes()[:4096])
    with pytest.raises(IntegrityError, match="ls"):
        floor_of_file(damaged)


@pytest.mark.parametrize(
    "text, version", [("2.31", (2, 31)), (" 2.5 ", (2, 5)), ("2", None), ("2.31.1", None), ("two", None)]
)
def test_parse_version(text, version):
    assert parse_version(text) == version
