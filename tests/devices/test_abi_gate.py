"""The ABI gate at make time: foreign ELF files and files needing a newer glibc than min_glibc are refused, by
name, before anything is compressed."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from testing.devices import PORTABLE, portable_stub, require_root_tools, roots_cache, run_in_root, write_project
from testing.helpers import bundler, run, stub_bootloader


def readelf_floor(path):
    out = subprocess.run(["readelf", "-V", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    found = re.findall(r"Name: GLIBC_(\d+)\.(\d+)", out)
    return max(((int(a), int(b)) for a, b in found), default=None)


def needing(version):
    """A real host binary whose highest glibc need is exactly `version`, as readelf sees it."""
    for candidate in ("/usr/bin/crun", "/usr/bin/ls", "/usr/bin/tee", "/usr/bin/flock", "/usr/bin/zstd"):
        if Path(candidate).exists() and readelf_floor(candidate) == version:
            return candidate
    pytest.skip(reason=f"no host binary needs exactly GLIBC_{version[0]}.{version[1]}")


HOST_TOOLS = (
    "/usr/bin/containerd",
    "/usr/bin/ctr",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/bin/crun",
    "/usr/bin/tee",
    "/usr/bin/flock",
    "/usr/bin/zstd",
    "/usr/sbin/runc",
)


def readelf_needed(path):
    out = subprocess.run(["readelf", "-d", "-W", str(path)], stdout=subprocess.PIPE, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def nothing_compressed(cache):
    return not list(Path(cache).glob("groups/*"))


def nothing_written(project):
    return not list((Path(project) / "dist").glob("*"))


def test_x86_64_file_in_an_arm64_bundle_is_refused_by_name(tmp_path):
    require_root_tools("arm64")  # the portable arm64 stub must be buildable for make to get as far as the gate
    project = write_project(tmp_path / "p", {"bin/tool": "/usr/bin/crun"}, ["bin/tool"])
    cache = tmp_path / "cache"
    result = bundler("make", "--arch", "arm64", "--cache-dir", cache, cwd=project, env=PORTABLE, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "'bin/tool'" in lines[0] and "for amd64" in lines[0] and "for arm64" in lines[0]
    assert nothing_compressed(cache) and nothing_written(project)
    assert not list((cache / "stubs").glob("stub-arm64-*")) if (cache / "stubs").exists() else True


def test_every_file_needing_more_than_min_glibc_is_refused_by_name(tmp_path):
    tools = {"bin/" + Path(p).name: p for p in HOST_TOOLS if Path(p).exists()}
    over = sorted(path for path, source in tools.items() if (readelf_floor(source) or (0, 0)) > (2, 31))
    if len(over) < 2:
        pytest.skip(reason="fewer than two host binaries need more than glibc 2.31")
    project = write_project(tmp_path / "p", tools, [over[0]], min_glibc="2.31", host_libs=["*"])
    cache = tmp_path / "cache"
    result = bundler("make", "--stub", "host", "--cache-dir", cache, cwd=project, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and '"2.31"' in lines[0]
    named = dict(re.findall(r"'([^']+)' needs glibc (\d+\.\d+)", lines[0]))
    assert sorted(named) == over, lines[0]
    assert all(named[p] == ".".join(map(str, readelf_floor(tools[p]))) for p in over)
    assert nothing_compressed(cache) and nothing_written(project)


def test_libraries_the_bundle_does_not_carry_are_refused_then_listed_once_declared(tmp_path, cache_dir, stub_path):
    if not Path("/usr/bin/crun").exists():
        pytest.skip(reason="needs crun (scripts/setup installs it)")
    needed = readelf_needed("/usr/bin/crun")
    others = sorted(n for n in needed if not re.match(r"(libc\.so|ld-linux)", n))
    assert "libcap.so.2" in others
    project = write_project(tmp_path / "p", {"bin/crun": "/usr/bin/crun"}, ["bin/crun", "--version"])
    refused = bundler("make", "--stub", stub_path, "--cache-dir", cache_dir, cwd=project, check=False)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and all(f"{n} (bin/crun)" in line for n in others), line
    assert "host_libs = [" in line and nothing_written(project)
    # Declared (one of them as a glob): made, and make and inspect name what the target must provide.
    host_libs = [n.split(".so")[0] + ".so.*" if n == "libcap.so.2" else n for n in others]
    project = write_project(
        tmp_path / "p", {"bin/crun": "/usr/bin/crun"}, ["bin/crun", "--version"], host_libs=host_libs
    )
    out = tmp_path / "app"
    made = bundler("make", "--stub", stub_path, "--cache-dir", cache_dir, "--level", "3", "-o", out, cwd=project)
    listing = ", ".join(f"{n} (bin/crun)" for n in others)
    assert f"must provide ([bundle] host_libs): {listing}" in made.stderr
    assert f"host libs:  {listing}" in bundler("inspect", out).stdout
    assert json.loads(bundler("inspect", "--json", out).stdout)["host_libs"] == {n: ["bin/crun"] for n in others}


def test_host_stub_newer_than_min_glibc_is_refused(tmp_path, cache_dir, stub_path):
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox", "true"], min_glibc="2.31")
    result = bundler("make", "--stub", stub_path, "--cache-dir", cache_dir, cwd=project, check=False)
    assert result.returncode == 2, result.stderr
    assert "stub" in result.stderr and '"2.31"' in result.stderr and nothing_written(project)


def test_make_prints_the_floor_and_the_index_records_the_highest(tmp_path, cache_dir, stub_path):
    binary = needing((2, 34))
    project = write_project(
        tmp_path / "p",
        {"bin/tool": binary, "bin/busybox": "/bin/busybox"},
        ["bin/busybox", "echo", "ran"],
        host_libs=["*"],
    )
    out = tmp_path / "app"
    result = bundler("make", "--stub", stub_path, "--cache-dir", cache_dir, "--level", "3", "-o", out, cwd=project)
    printed = re.search(r"glibc floor: (\S+) \(stub (\S+), files (\S+)\)", result.stderr)
    assert printed, result.stderr
    bootloader = readelf_floor(stub_bootloader(stub_path, tmp_path / "bootloader"))
    stub_floor = tuple(int(x) for x in printed.group(2).split("."))
    assert printed.group(3) == "2.34" and stub_floor >= bootloader
    floor = ".".join(str(n) for n in max(stub_floor, (2, 34)))
    assert printed.group(1) == floor
    # The index holds the highest; who needs it is named where the files need more than this host's stub.
    by_files = (2, 34) > stub_floor
    doc = json.loads(bundler("inspect", "--json", out).stdout)
    assert doc["min_glibc"] == floor and doc.get("min_glibc_file") == ("bin/tool" if by_files else None)
    who = "bin/tool" if by_files else "the stub"
    assert f"glibc:      {floor} or newer ({who} needs it)" in bundler("inspect", out).stdout
    info = run([out, "--bundle-info", "--json"])
    assert info.returncode == 0 and json.loads(info.stdout)["min_glibc"] == floor


def test_a_glibc_older_than_the_floor_is_refused_before_install_in_debian_11(tmp_path, cache_dir):
    """The portable stub starts on Debian 11's glibc 2.31; this host's containerd needs 2.34. The bundle's floor
    is containerd's, and the bundle says so in the root before it installs anything."""
    require_root_tools("amd64")
    containerd = "/usr/bin/containerd"
    if not Path(containerd).exists() or readelf_floor(containerd) <= (2, 31):
        pytest.skip(reason="needs this host's containerd, linked against glibc newer than 2.31")
    devices_cache = roots_cache(cache_dir)
    stub, root, _ = portable_stub(devices_cache, "amd64")
    needs = ".".join(map(str, readelf_floor(containerd)))
    script = tmp_path / "up.sh"
    script.write_text("#!/bin/sh\necho up\n")
    project = write_project(
        tmp_path / "p", {"bin/up": script, "bin/containerd": containerd}, ["bin/up"], name="floor", host_libs=[]
    )
    out = tmp_path / "app"
    made = bundler("make", "--cache-dir", devices_cache, "--level", "3", "-o", out, cwd=project, env=PORTABLE)
    assert f"the files need more than the stub (bin/containerd needs {needs})" in made.stderr, made.stderr
    doc = json.loads(bundler("inspect", "--json", out).stdout)
    assert doc["min_glibc"] == needs and doc["min_glibc_file"] == "bin/containerd"
    assert f"glibc:      {needs} or newer (bin/containerd needs it)" in bundler("inspect", out).stdout
    installed = root / "var/lib/floor"
    shutil.rmtree(installed, ignore_errors=True)  # the root may be kept between runs
    info = run_in_root(root, out, "--bundle-info")  # the stub itself starts there: only the files cannot
    assert info.returncode == 0 and f"{needs} or newer (bin/containerd needs it)" in info.stdout, info.stderr
    refused = run_in_root(root, out)
    assert refused.returncode == 4, (refused.stdout, refused.stderr)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr
    assert "bin/containerd" in lines[0] and f"glibc {needs} or newer" in lines[0] and "glibc 2.31" in lines[0]
    assert not installed.exists() and "up" not in refused.stdout


def test_min_glibc_in_the_manifest_must_be_a_version(tmp_path):
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox"], min_glibc="2.31.x")
    result = bundler("make", "--stub", "host", "--cache-dir", tmp_path / "cache", cwd=project, check=False)
    assert result.returncode == 2 and "bundle.toml:5" in result.stderr and "MAJOR.MINOR" in result.stderr
