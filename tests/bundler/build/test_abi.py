"""The ABI gate on real host binaries, checked against binutils' readelf (not our code): every file over
min_glibc is named, and the shared libraries that neither the bundle, glibc nor host_libs provide are refused."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bundler.build.abi import check_files, from_glibc
from bundler.build.compress import Member
from payload.errors import UsageError

pytestmark = pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")

LIBS = Path("/usr/lib/x86_64-linux-gnu")
HOST = [
    "/usr/bin/containerd",
    "/usr/bin/ctr",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/bin/crun",
    "/usr/bin/ls",
    "/usr/bin/tee",
    "/usr/bin/flock",
    "/usr/bin/zstd",
    "/usr/sbin/runc",
    "/bin/busybox",
]


def readelf_floor(path):
    out = subprocess.run(["readelf", "-V", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    needs = out.partition(".gnu.version_r")[2]
    return max(((int(a), int(b)) for a, b in re.findall(r"Name: GLIBC_(\d+)\.(\d+)", needs)), default=None)


def readelf_needed(path):
    out = subprocess.run(["readelf", "-d", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def host_files():
    found = [p for p in HOST if os.path.exists(p)]
    if "/usr/bin/crun" not in found:
        pytest.skip(reason="needs crun (scripts/setup installs it)")
    return found


def members(files):
    """{group: [Member]} for {path in bundle: source}."""
    return {
        "files": [
            Member(path, 0o755, "file", Path(source), "0" * 64, os.path.getsize(source))
            for path, source in files.items()
        ]
    }


def bundle_of(sources):
    return {f"bin/{os.path.basename(s)}": s for s in sources}


def test_min_glibc_refuses_every_file_over_it_naming_each():
    files = bundle_of(host_files())
    floor = (2, 31)
    expected = sorted(p for p, s in files.items() if (readelf_floor(s) or (0, 0)) > floor)
    assert len(expected) >= 2, "this host's binaries need no more than glibc 2.31"
    with pytest.raises(UsageError) as refused:
        check_files(members(files), "amd64", floor, host_libs=("*",))
    message = str(refused.value)
    named = re.findall(r"'([^']+)' needs glibc (\d+\.\d+)", message)
    assert sorted(p for p, _ in named) == expected, message
    for path, version in named:
        assert version == ".".join(map(str, readelf_floor(files[path])))
    assert '"2.31"' in message and len(message.splitlines()) == 1


def test_the_floor_is_the_highest_file_need_and_names_that_file():
    files = bundle_of(host_files())
    abi = check_files(members(files), "amd64", host_libs=("*",))
    floors = {p: readelf_floor(s) for p, s in files.items() if readelf_floor(s)}
    assert abi.floors == floors
    floor, path = abi.floor
    assert floor == max(floors.values()) and floors[path] == floor


def test_libraries_nobody_provides_are_refused_naming_library_and_file():
    files = bundle_of(host_files())
    wanted = {}  # soname -> paths, by readelf, without glibc's own
    for path, source in sorted(files.items()):
        for soname in readelf_needed(source):
            if not re.match(r"(libc|libm|libpthread|libdl|librt)\.so\.|ld-linux", soname):
                wanted.setdefault(soname, []).append(path)
    assert "libcap.so.2" in wanted and "bin/crun" in wanted["libcap.so.2"]
    with pytest.raises(UsageError) as refused:
        check_files(members(files), "amd64")
    message = str(refused.value)
    for soname, paths in wanted.items():
        assert f"{soname} ({', '.join(paths)})" in message, message
    assert "libc.so.6" not in message.partition("host_libs")[0] and len(message.splitlines()) == 1
    # The advice is a line to paste: with it, the same files pass, and make can list what the host provides.
    line = re.search(r"host_libs = \[(.*)\]", message).group(1)
    declared = tuple(re.findall(r'"([^"]+)"', line))
    assert sorted(declared) == sorted(wanted)
    assert check_files(members(files), "amd64", host_libs=declared).host_libs == wanted


def test_host_libs_take_globs_and_a_carried_library_needs_no_declaration():
    host_files()
    crun = "/usr/bin/crun"
    libcap = os.path.realpath(LIBS / "libcap.so.2")  # libcap.so.2.NN: carried by its soname, not its file name
    files = {"bin/crun": crun, "lib/" + os.path.basename(libcap): libcap}
    others = [s for s in readelf_needed(crun) if s != "libcap.so.2" and not from_glibc(s)]
    abi = check_files(members(files), "amd64", host_libs=tuple(s.split(".so")[0] + ".so.*" for s in others))
    assert sorted(abi.host_libs) == sorted(others) and "libcap.so.2" not in abi.host_libs
    with pytest.raises(UsageError, match=r"libsystemd\.so\.0 \(bin/crun\)"):
        check_files(members(files), "amd64", host_libs=tuple(s for s in others if "systemd" not in s))


def test_foreign_files_are_all_named():
    files = bundle_of(host_files())
    with pytest.raises(UsageError) as refused:
        check_files(members(files), "arm64", host_libs=("*",))
    elves = [p for p, s in files.items() if open(s, "rb").read(4) == b"\x7fELF"]
    message = str(refused.value)
    assert all(f"'{p}' for amd64" in message or f"'{p}' is an ELF file for amd64" in message for p in elves)
