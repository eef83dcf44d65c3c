"""The ABI gate at make time: foreign ELF files and files needing a newer glibc than min_glibc are refused, by
name, before anything is compressed."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from testing.devices import PORTABLE, require_root_tools, write_project
from testing.helpers import bundler, run


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


def test_file_needing_glibc_2_34_is_refused_with_min_glibc_2_31(tmp_path):
    binary = needing((2, 34))
    project = write_project(tmp_path / "p", {"bin/tool": binary}, ["bin/tool"], min_glibc="2.31")
    cache = tmp_path / "cache"
    result = bundler("make", "--stub", "host", "--cache-dir", cache, cwd=project, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'bin/tool'" in lines[0] and "2.34" in lines[0] and '"2.31"' in lines[0]
    assert nothing_compressed(cache) and nothing_written(project)


def test_host_stub_newer_than_min_glibc_is_refused(tmp_path, cache_dir, stub_path):
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox", "true"], min_glibc="2.31")
    result = bundler("make", "--stub", stub_path, "--cache-dir", cache_dir, cwd=project, check=False)
    assert result.returncode == 2, result.stderr
    assert "stub" in result.stderr and '"2.31"' in result.stderr and nothing_written(project)


def test_make_prints_the_floor_and_the_index_records_the_stubs(tmp_path, cache_dir, stub_path):
    binary = needing((2, 34))
    project = write_project(
        tmp_path / "p", {"bin/tool": binary, "bin/busybox": "/bin/busybox"}, ["bin/busybox", "echo", "ran"]
    )
    out = tmp_path / "app"
    result = bundler("make", "--stub", stub_path, "--cache-dir", cache_dir, "--level", "3", "-o", out, cwd=project)
    printed = re.search(r"glibc floor: (\S+) \(stub (\S+), files (\S+)\)", result.stderr)
    assert printed, result.stderr
    bootloader = readelf_floor(stub_path)
    stub_floor = tuple(int(x) for x in printed.group(2).split("."))
    assert printed.group(3) == "2.34" and stub_floor >= bootloader
    assert printed.group(1) == ".".join(str(n) for n in max(stub_floor, (2, 34)))
    doc = json.loads(bundler("inspect", "--json", out).stdout)
    assert doc["min_glibc"] == printed.group(2)
    assert f"glibc:      {printed.group(2)} or newer" in bundler("inspect", out).stdout
    info = run([out, "--bundle-info", "--json"])
    assert info.returncode == 0 and json.loads(info.stdout)["min_glibc"] == printed.group(2)


def test_min_glibc_in_the_manifest_must_be_a_version(tmp_path):
    project = write_project(tmp_path / "p", {"bin/busybox": "/bin/busybox"}, ["bin/busybox"], min_glibc="2.31.x")
    result = bundler("make", "--stub", "host", "--cache-dir", tmp_path / "cache", cwd=project, check=False)
    assert result.returncode == 2 and "bundle.toml:5" in result.stderr and "MAJOR.MINOR" in result.stderr
