"""armhf and riscv64: portable stubs built from source in their Debian roots under qemu (15 to 47 minutes cold each
on 2 cores, by the load), so they run in the second test command, scripts/test-arches, not in scripts/test."""

import os
import subprocess

import pytest

from bundler.build.glibc import stub_floor
from testing.devices import PORTABLE, portable_stub, require_root_tools, roots_cache, run_in_root, write_project
from testing.helpers import bundler

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("BUNDLER_TEST_ARCHES"),
        reason="armhf and riscv64 run in scripts/test-arches (about 50 min cold)",
    ),
]

MACHINES = {"arm": ("armv7l", "ARM", "bullseye"), "riscv64": ("riscv64", "RISC-V", "trixie")}


@pytest.mark.parametrize("arch", ["arm", "riscv64"])
def test_bundle_built_for_arch_runs_its_binary_under_qemu(arch, cache_dir, tmp_path):
    require_root_tools(arch)
    cache = roots_cache(cache_dir)
    stub, root, _ = portable_stub(cache, arch)
    machine, elf_name, release = MACHINES[arch]
    header = subprocess.run(["readelf", "-h", str(stub)], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert elf_name in header
    floor, floors = stub_floor(stub)
    assert any(name.startswith("libpython3") for name in floors) and floor
    project = write_project(tmp_path / "p", {"bin/uname": root / "bin" / "uname"}, ["bin/uname", "-m"])
    bundler(
        "make", "--arch", arch, "--cache-dir", cache, "--level", "3", "-o", tmp_path / "app", cwd=project, env=PORTABLE
    )
    ran = run_in_root(root, tmp_path / "app")
    assert ran.returncode == 0 and ran.stdout == machine + "\n", ran.stderr
    info = run_in_root(root, tmp_path / "app", "--bundle-info")
    assert "glibc:" in info.stdout and f"arch:       {arch}" in info.stdout
