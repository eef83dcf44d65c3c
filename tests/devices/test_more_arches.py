"""armhf and riscv64: portable stubs built from source in their Debian roots under qemu (15 to 47 minutes cold each
on 2 cores, by the load), so they run in the second test command, scripts/test-arches, not in scripts/test."""

import os
import subprocess
from pathlib import Path

import pytest

from bundler.build.glibc import stub_floor
from testing.devices import (
    PORTABLE,
    bare_root,
    portable_stub,
    require_root_tools,
    roots_cache,
    run_in_root,
    write_project,
)
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


REPORT = '#!/bin/sh\necho "$(uname -m) $BUNDLE_ARCH [$*]"\n'
BIG = 3200 << 20  # more than a 32-bit process can map at once beside its program


@pytest.mark.parametrize("arch", ["arm", "riscv64"])
def test_static_bundle_starts_in_a_root_without_libc_under_qemu(arch, cache_dir, tmp_path):
    """The static stub (the portable one with the glibc it runs on) in a root holding busybox-static alone; on
    armhf also a bundle larger than the 32-bit address space, which the launcher and the bootloader read by offset."""
    require_root_tools(arch)
    cache = roots_cache(cache_dir)
    portable_stub(cache, arch)
    made = bundler("stub", "--static", "--arch", arch, "--cache-dir", cache)
    stub = Path(made.stdout.strip())
    assert "stub glibc floor: none (it carries its own); Linux" in made.stderr
    root = bare_root(tmp_path / "root", cache, arch)
    script = tmp_path / "report.sh"
    script.write_text(REPORT)
    project = write_project(tmp_path / "p", {"bin/report": script}, ["bin/report"])
    app = tmp_path / "app"
    bundler("make", "--arch", arch, "--stub", stub, "--level", "3", "-o", app, cwd=project)
    machine = MACHINES[arch][0]
    ran = run_in_root(root, app, "a b", "c")
    assert ran.returncode == 0 and ran.stdout == f"{machine} {arch} [a b c]\n", ran.stderr
    assert run_in_root(root, app, "--bundle-verify").returncode == 0
    again = run_in_root(root, app, "d", env={"TMPDIR": "/tmp2"}, tmpfs=("/tmp2", "noexec"))
    assert again.returncode == 0 and again.stdout == f"{machine} {arch} [d]\n", again.stderr
    if arch != "arm":
        return
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(BIG >> 24):
            f.write(os.urandom(1 << 24))
    large = write_project(tmp_path / "large", {"bin/report": script, "share/big.bin": big}, ["bin/report"])
    large_app = root / "opt" / "large"
    bundler("make", "--arch", arch, "--stub", stub, "--level", "1", "-o", large_app, cwd=large)
    big.unlink()
    assert large_app.stat().st_size > BIG
    info = run_in_root(root, "/opt/large", "--bundle-info")
    assert info.returncode == 0 and f"arch:       {arch}" in info.stdout, info.stderr
    verified = run_in_root(root, "/opt/large", "--bundle-verify")
    assert verified.returncode == 0, verified.stderr
